"""My work: everyone's inbox. What waits for the signed-in person, each entry a sentence with
a link to the exact place, and one-click actions where they are safe (answer a yes/no
question, mark an item done) through the same forms and domain calls as everywhere else."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.deps import Ctx
from aligncycle.web.inbox_words import SECTIONS, entries
from aligncycle.web.pages import (
    MY_WORK_PAGE,
    page,
    page_number,
    pager,
    render,
)
from aligncycle.web.perms import CyclePerms
from models.services import inbox as inbox_service
from models.services import views as v

router = APIRouter(include_in_schema=False)

GROUPS = {"overdue": "Overdue", "week": "Due this week", "later": "Later"}


@page(router, "/my")
def my_page(request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200) -> Response:
    s = ctx.session
    page = page_number(query or {})
    box = inbox_service.inbox(s, ctx.me, limit=MY_WORK_PAGE, offset=(page - 1) * MY_WORK_PAGE)
    today = date.today()
    by_id = v.cycles_by_id(s, {a.cycle_id for a in box.owned})
    perms = {cid: CyclePerms.of(ctx.me, c) for cid, c in by_id.items()}
    # each item's latest check-in and how many: the histories come when their box is opened
    latest = v.checkin_summaries(s, [a.id for a in box.owned])
    groups: dict[str, list] = {k: [] for k in GROUPS}
    for a in box.owned:
        groups[inbox_service.due_group(a, today)].append(a)
    return render(
        request,
        ctx,
        "my_work.html",
        status=status,
        box=box,
        sections={k: t for k, t in SECTIONS.items() if k in box.totals},
        found=entries(box, ctx.me, today),
        groups=[(k, GROUPS[k], items) for k, items in groups.items() if items],
        cycles=by_id,
        perms=perms,
        latest=latest,
        pager=pager(box.totals["owned"], page, MY_WORK_PAGE),
        forms=forms or {},
        waiting=box.count,  # the menu's count: the same totals, not counted a second time
    )
