"""The notification log as people and operators read it: pending, sent and failed messages,
newest first, with the visibility rule of every other object (``models.services.access``): a
person sees the messages of the cycles their team takes part in (a manager, all of them),
and messages addressed to them.

Channel URLs are shown masked; stored errors were masked when they were written.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from models.cadence.tables import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from models.cadence.urls import mask_url, redact
from models.enums import Role
from models.errors import Conflict, NotFound
from models.services import access
from models.services.common import record_event
from models.tables import Cycle, Person
from models.words import listed

KIND_WORDS = {
    NotificationKind.CHECKIN: "check-in request",
    NotificationKind.REMINDER: "reminder",
    NotificationKind.ESCALATION: "escalation",
    NotificationKind.DIGEST: "weekly digest",
    NotificationKind.RECAP_DUE: "recap due",
    NotificationKind.CYCLE_STARTED: "new cycle started",
    NotificationKind.ACCOUNT: "sign-in link",
}
#: An account message in words, by what its link is for (its key says: ``account:invite:…``).
ACCOUNT_WORDS = {"invite": "invitation", "reset": "password-reset link"}
STATUS_WORDS = {
    NotificationStatus.PENDING: "waiting to be sent",
    NotificationStatus.SENDING: "being sent",
    NotificationStatus.SENT: "sent",
    NotificationStatus.FAILED: "failed",
}


class NotificationRead(BaseModel):
    id: int
    kind: NotificationKind
    kind_words: str = Field(description="What kind of message, in words.")
    status: NotificationStatus
    status_words: str = Field(description="Where it stands, in words.")
    recipient: str = Field(description="An email, or the teams of a digest.")
    cycle_id: int | None
    action_item_id: int | None
    subject: str
    channel: str | None = Field(description="The channel's label, else its masked URL.")
    attempts: int
    error: str | None = Field(description="Why the last attempt failed (secrets masked).")
    retry_at: datetime | None = Field(
        None, description="A failed send waiting to be tried again: not before this time."
    )
    created_at: datetime
    sent_at: datetime | None


def recipient_words(recipient: str) -> str:
    """Who a message went to, as people read it: an email, or the teams of a digest (a digest
    planned before team names were used says ``teams:sales,marketing``)."""
    if recipient.startswith("teams:"):
        return listed(k.replace("_", " ") for k in recipient[len("teams:") :].split(",") if k)
    return recipient


def kind_words(kind: NotificationKind, key: str) -> str:
    """What kind of message, in words (an account message: an invitation or a reset link)."""
    if kind is NotificationKind.ACCOUNT:
        purpose = key.split(":")[1] if key.count(":") >= 2 else ""
        return ACCOUNT_WORDS.get(purpose, KIND_WORDS[kind])
    return KIND_WORDS.get(kind, str(kind))


def status_words(status: NotificationStatus, attempts: int) -> str:
    """Where a message stands, in words (a failed send waiting for its next try says so)."""
    if status is NotificationStatus.PENDING and attempts > 0:
        return "to be tried again"
    return STATUS_WORDS.get(status, str(status))


def _visible_to(viewer: Person) -> ColumnElement[bool]:
    visible = select(Cycle.id).where(access.visible_cycles(viewer))
    return or_(Notification.cycle_id.in_(visible), Notification.recipient == viewer.email)


def notification_log(
    session: Session,
    viewer: Person | None,
    status: NotificationStatus | None = None,
    kind: NotificationKind | None = None,
    cycle_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[NotificationRead], int]:
    """One page of the log (newest first) and how many rows match in all. ``viewer`` None:
    an operator reading the whole log. A cycle the viewer may not see answers like a missing
    one."""
    if viewer is not None and cycle_id is not None:
        access.visible_cycle(session, viewer, cycle_id)
    where: list[ColumnElement[bool]] = []
    if viewer is not None and viewer.role is not Role.MANAGER:
        where.append(_visible_to(viewer))
    if status is not None:
        where.append(Notification.status == status)
    if kind is not None:
        where.append(Notification.kind == kind)
    if cycle_id is not None:
        where.append(Notification.cycle_id == cycle_id)
    total = session.scalar(select(func.count()).select_from(Notification).where(*where)) or 0
    rows = session.execute(
        select(Notification, NotificationChannel.label, NotificationChannel.url)
        .outerjoin(NotificationChannel, NotificationChannel.id == Notification.channel_id)
        .where(*where)
        .order_by(Notification.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [_read(n, label, url) for n, label, url in rows], total


def _read(n: Notification, label: str | None, url: str | None) -> NotificationRead:
    return NotificationRead(
        id=n.id,
        kind=n.kind,
        kind_words=kind_words(n.kind, n.key),
        status=n.status,
        status_words=status_words(n.status, n.attempts),
        recipient=recipient_words(n.recipient),
        cycle_id=n.cycle_id,
        action_item_id=n.action_item_id,
        subject=n.subject,
        channel=label or (mask_url(url) if url else None),
        attempts=n.attempts,
        error=redact(n.error, url) if n.error else None,
        retry_at=n.retry_at if n.status is NotificationStatus.PENDING else None,
        created_at=n.created_at,
        sent_at=n.sent_at,
    )


def send_again(session: Session, viewer: Person | None, notification_id: int) -> NotificationRead:
    """Queue a failed message again, once its channel is fixed: back to waiting, as a message
    tried once before, so the next delivery run (the sweep: the dispatch deployment, or the
    web app on the embedded default) sends it, with the usual tries and waits after a failure.
    The last error stays shown until the next try. ``viewer`` None: an operator; a person
    may send again what they may see (:func:`notification_log`), and a message they may not
    see answers like a missing one. In the caller's unit of work; recorded in the audit log."""
    stmt = select(Notification).where(Notification.id == notification_id)
    if viewer is not None and viewer.role is not Role.MANAGER:
        stmt = stmt.where(_visible_to(viewer))
    n = session.scalars(stmt.with_for_update()).first()
    if n is None:
        raise NotFound(f"no message with id {notification_id}")
    what = f"this {kind_words(n.kind, n.key)}"
    if n.status is not NotificationStatus.FAILED:
        raise Conflict(
            f"{what} is {status_words(n.status, n.attempts)}: only a message that failed can "
            "be sent again"
        )
    if n.kind is NotificationKind.ACCOUNT:
        raise Conflict(
            f"{what} is not sent again: its link may have expired; ask for a new invitation "
            "or password-reset link instead"
        )
    channel = n.channel
    if channel is None or not channel.enabled:
        raise Conflict(
            f"{what} cannot be sent again: its channel was removed or turned off; messages "
            "planned from now on go through the channels in place"
        )
    before = {"status": n.status.value, "attempts": n.attempts}
    n.status, n.attempts, n.retry_at = NotificationStatus.PENDING, 1, None
    n.claimed_by = n.claimed_at = None
    record_event(
        session,
        actor=viewer,
        verb="notification.sent_again",
        obj=n,
        cycle_id=n.cycle_id,
        before=before,
        after={"status": n.status.value, "attempts": n.attempts},
    )
    session.flush()
    return _read(n, channel.label, channel.url)
