"""The delivery bookkeeping of planned notifications: which are deliverable, claiming a batch
for one deliverer, marking each sent or failed, and reading the log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.tables import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)


@dataclass(frozen=True)
class Outgoing:
    """A claimed notification, with what the deliverer needs to send it."""

    id: int
    key: str
    kind: NotificationKind
    url: str | None  # None: the channel was removed or disabled
    subject: str
    body: str
    attempts: int


def _deliverable(stale_before: datetime) -> Any:
    return or_(
        Notification.status == NotificationStatus.PENDING,
        and_(
            Notification.status == NotificationStatus.SENDING,
            Notification.claimed_at < stale_before,
        ),
    )


def deliverable_ids(
    session: Session,
    kinds: Sequence[NotificationKind] | None,
    stale_before: datetime,
    after_id: int = 0,
    limit: int = 200,
) -> list[int]:
    """Ids of notifications to deliver, in order: pending ones, and ones left ``sending`` by a
    deliverer that stopped before ``stale_before`` (a crash: see :func:`claim_batch`)."""
    stmt = select(Notification.id).where(Notification.id > after_id, _deliverable(stale_before))
    if kinds:
        stmt = stmt.where(Notification.kind.in_(list(kinds)))
    return list(session.scalars(stmt.order_by(Notification.id).limit(limit)))


def claim_batch(
    session: Session,
    claimer: str,
    stale_before: datetime,
    kinds: Sequence[NotificationKind] | None = None,
    after_id: int = 0,
    limit: int = 50,
    ids: Sequence[int] | None = None,
) -> list[Outgoing]:
    """Take up to ``limit`` deliverable notifications (``pending``, or ``sending`` with a claim
    older than ``stale_before``) for sending: one UPDATE, so two deliverers never take the same
    row. The caller commits the claim before sending, and marks each row as soon as it is sent.

    The at-least-once window: a deliverer that dies after a send reached the channel and
    before :func:`mark_sent` committed leaves that row ``sending``; once the claim is stale a
    later run takes it again and that one message goes out twice. A death at any other moment
    sends nothing twice and loses nothing: claimed rows that were not sent yet are taken again
    once stale, sent rows never are.
    """
    table = Notification.__table__
    pick = select(Notification.id).where(Notification.id > after_id, _deliverable(stale_before))
    if kinds:
        pick = pick.where(Notification.kind.in_(list(kinds)))
    if ids is not None:
        pick = pick.where(Notification.id.in_(list(ids)))
    pick = pick.order_by(Notification.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = (
        session.execute(
            update(table)
            .where(
                table.c.id.in_(pick.scalar_subquery()),
                or_(
                    table.c.status == NotificationStatus.PENDING,
                    and_(
                        table.c.status == NotificationStatus.SENDING,
                        table.c.claimed_at < stale_before,
                    ),
                ),
            )
            .values(
                status=NotificationStatus.SENDING,
                claimed_by=claimer,
                claimed_at=utcnow(),
                attempts=table.c.attempts + 1,
            )
            .returning(table.c.id)
        )
        .scalars()
        .all()
    )
    if not claimed:
        return []
    rows = session.execute(
        select(
            Notification.id,
            Notification.key,
            Notification.kind,
            NotificationChannel.url,
            NotificationChannel.enabled,
            Notification.subject,
            Notification.body,
            Notification.attempts,
        )
        .outerjoin(NotificationChannel, NotificationChannel.id == Notification.channel_id)
        .where(Notification.id.in_(claimed))
        .order_by(Notification.id)
    ).all()
    return [
        Outgoing(
            id=n.id,
            key=n.key,
            kind=n.kind,
            url=n.url if n.enabled else None,
            subject=n.subject,
            body=n.body,
            attempts=n.attempts,
        )
        for n in rows
    ]


def claim(
    session: Session, notification_id: int, claimer: str, stale_before: datetime
) -> Outgoing | None:
    """Take one notification for sending, or None if it is sent or another deliverer has it
    (see :func:`claim_batch`)."""
    got = claim_batch(session, claimer, stale_before, ids=[notification_id], limit=1)
    return got[0] if got else None


def mark_sent(session: Session | Connection, notification_id: int, claimer: str) -> bool:
    """Record a sent message (only by the deliverer that claimed it, while it is ``sending``).

    Like :func:`mark_failed`, it also takes a Core connection in a transaction: a deliverer
    marks each message in a transaction of its own, the hot path of delivery, where an ORM
    session costs about 0.6 ms more CPU per message than a connection."""
    sent = {"status": NotificationStatus.SENT, "sent_at": utcnow(), "error": None}
    return _mark(session, notification_id, claimer, **sent)


def mark_failed(
    session: Session | Connection, notification_id: int, claimer: str, error: str, final: bool
) -> bool:
    """Record a failed attempt: back to ``pending`` (the next run tries again) or ``failed``."""
    status = NotificationStatus.FAILED if final else NotificationStatus.PENDING
    return _mark(session, notification_id, claimer, status=status, error=error[:2000])


def _mark(session: Session | Connection, notification_id: int, claimer: str, **values: Any) -> bool:
    """Set ``values`` on a row this claimer holds (``sending``); False when it no longer does
    (its claim went stale and another deliverer took the row)."""
    table = Notification.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == notification_id,
            table.c.claimed_by == claimer,
            table.c.status == NotificationStatus.SENDING,
        )
        .values(**values)
    )
    return done.rowcount == 1


def notification_counts(
    session: Session, kinds: Sequence[NotificationKind] | None = None
) -> dict[str, int]:
    stmt = select(Notification.status, func.count()).group_by(Notification.status)
    if kinds:
        stmt = stmt.where(Notification.kind.in_(list(kinds)))
    return {str(s): n for s, n in session.execute(stmt)}


def list_notifications(
    session: Session,
    kind: NotificationKind | None = None,
    status: NotificationStatus | None = None,
    cycle_id: int | None = None,
    limit: int = 100,
) -> list[Notification]:
    stmt = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    if status is not None:
        stmt = stmt.where(Notification.status == status)
    if cycle_id is not None:
        stmt = stmt.where(Notification.cycle_id == cycle_id)
    return list(session.scalars(stmt))
