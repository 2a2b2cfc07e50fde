"""Messages: the notifications of the signed-in person's teams' cycles and their own, waiting,
sent or failed (and why), as ``aligncycle notify log`` lists them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.deps import Ctx
from aligncycle.web.pages import page, page_number, pager, render
from models.cadence import log
from models.cadence.tables import NotificationStatus

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
#: The filter's choices, in the page's words ("" = every message).
SHOWN = {
    "": "All messages",
    NotificationStatus.FAILED.value: "Failed",
    NotificationStatus.PENDING.value: "Waiting to be sent",
    NotificationStatus.SENT.value: "Sent",
}


@page(router, "/notifications")
def notifications_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    query = query or {}
    wanted = query.get("status", "")
    if wanted not in SHOWN:
        wanted = ""
    number = page_number(query)
    rows, total = log.notification_log(
        ctx.session,
        ctx.me,
        NotificationStatus(wanted) if wanted else None,
        limit=PER_PAGE,
        offset=(number - 1) * PER_PAGE,
    )
    return render(
        request,
        ctx,
        "notifications.html",
        status=status,
        rows=rows,
        shown=SHOWN,
        wanted=wanted,
        base=f"/notifications?status={wanted}" if wanted else "/notifications",
        pager=pager(total, number, PER_PAGE),
        forms=forms or {},
    )
