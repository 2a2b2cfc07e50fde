"""The notification log: messages waiting to be sent, sent and failed."""

from __future__ import annotations

from fastapi import APIRouter

from aligncycle.web.api.common import Id, Limit, Offset, Page, page
from aligncycle.web.auth import ApiCtx
from models.cadence import log
from models.cadence.tables import NotificationKind, NotificationStatus

router = APIRouter()


@router.get("/notifications", response_model=Page[log.NotificationRead], tags=["notifications"])
def list_notifications(
    ctx: ApiCtx,
    status: NotificationStatus | None = None,
    kind: NotificationKind | None = None,
    cycle_id: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    """Newest first: the messages of the cycles your team takes part in (managers: all), and
    those addressed to you; a failed one says why (channel secrets masked)."""
    rows, total = log.notification_log(
        ctx.session, ctx.me, status, kind, cycle_id, limit=limit, offset=offset
    )
    return page(rows, total, limit, offset)


@router.post(
    "/notifications/{notification_id}/send-again",
    response_model=log.NotificationRead,
    tags=["notifications"],
)
def send_again(ctx: ApiCtx, notification_id: Id) -> log.NotificationRead:
    """Queue a failed message again once its channel is fixed: the next delivery run sends
    it. 409 when it did not fail, is an invitation or reset link, or its channel is gone."""
    return log.send_again(ctx.session, ctx.me, notification_id)
