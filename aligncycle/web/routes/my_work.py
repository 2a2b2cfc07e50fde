"""My work: what waits for the signed-in person."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    MY_WORK_PAGE,
    page,
    page_number,
    pager,
    render,
)
from aligncycle.web.perms import CyclePerms
from models.services import views as v

router = APIRouter(include_in_schema=False)


@page(router, "/my")
def my_page(request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200) -> Response:
    s = ctx.session
    page = page_number(query or {})
    questions = v.my_checklist(s, ctx.me)
    items, total, overdue = v.my_actions(
        s, ctx.me, limit=MY_WORK_PAGE, offset=(page - 1) * MY_WORK_PAGE
    )
    cycle_ids = {c.id for _, c in questions} | {a.cycle_id for a in items}
    by_id = v.cycles_by_id(s, cycle_ids)
    perms = {cid: CyclePerms.of(ctx.me, c) for cid, c in by_id.items()}
    latest = v.checkins_by_action(s, [a.id for a in items])
    return render(
        request,
        ctx,
        "my_work.html",
        status=status,
        questions=questions,
        items=items,
        overdue=overdue,
        cycles=by_id,
        perms=perms,
        latest=latest,
        pager=pager(total, page, MY_WORK_PAGE),
        forms=forms or {},
    )
