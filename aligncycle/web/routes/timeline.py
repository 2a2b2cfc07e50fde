"""A cycle's timeline (its audit log, told as sentences)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    PAGE_SIZE,
    cycle_common,
    page,
    page_number,
    pager,
    render,
)
from models.services import story
from models.services import views as v

router = APIRouter(include_in_schema=False)


@page(router, "/cycles/{cycle_id}/timeline")
def timeline_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    page = page_number(query or {})
    events, total = v.timeline(ctx.session, cycle, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(
        request,
        ctx,
        "cycle_timeline.html",
        status=status,
        tab="timeline",
        cycle=cycle,
        perms=perms,
        counts=counts,
        entries=story.tell(ctx.session, events),
        pager=pager(total, page),
        forms=forms or {},
    )
