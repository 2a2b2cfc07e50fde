"""The cycle's late leads (its SLA breach ledger): how many leads waited past the hand-off time
during Execute, by channel, and the latest ones. The next cycle of the same teams starts with
them as gaps to decide; the page says so."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.deps import Ctx
from aligncycle.web.pages import cycle_common, page, render
from models.phases import breaches

router = APIRouter(include_in_schema=False)


@page(router, "/cycles/{cycle_id}/late-leads")
def late_leads_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    return render(
        request,
        ctx,
        "cycle_late_leads.html",
        status=status,
        tab="late",
        cycle=cycle,
        perms=perms,
        counts=counts,
        book=breaches.ledger(ctx.session, cycle, ctx.me),
    )
