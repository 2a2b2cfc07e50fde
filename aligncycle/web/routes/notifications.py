"""Messages: the notifications of the signed-in person's teams' cycles and their own, waiting,
sent or failed (and why), as ``aligncycle notify log`` lists them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import act, page, page_number, pager, render
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


@router.post("/notifications/{notification_id}/send-again")
def send_again_post(request: Request, notification_id: int, ctx: PageCtx) -> Response:
    """A failed message, queued again (its channel fixed): the next delivery run sends it."""

    def run(_data: dict[str, str]) -> str:
        sent = log.send_again(ctx.session, ctx.me, notification_id)
        return (
            f"The {sent.kind_words} to {sent.recipient} will be sent again with the next "
            "delivery, within a few minutes."
        )

    return act(
        request,
        ctx,
        form_id=f"send-again-{notification_id}",
        default_next="/notifications?status=failed",
        run=run,
    )
