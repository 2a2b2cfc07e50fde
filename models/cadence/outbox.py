"""The delivery bookkeeping of planned notifications: which are deliverable, claiming a batch
(or a person's notifications on a channel together) for one deliverer, marking them sent or
failed, and reading the log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.grouped import Item
from models.cadence.tables import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from models.claims import claim_ids

#: A claimed notification, with what the deliverer needs to send it.
Outgoing = Item


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
    pick = select(Notification.id).where(Notification.id > after_id, _deliverable(stale_before))
    if kinds:
        pick = pick.where(Notification.kind.in_(list(kinds)))
    if ids is not None:
        pick = pick.where(Notification.id.in_(list(ids)))
    return _claim(session, claimer, stale_before, pick.order_by(Notification.id).limit(limit))


def claim_groups(
    session: Session,
    claimer: str,
    stale_before: datetime,
    kinds: Sequence[NotificationKind] | None = None,
    groups: int = 200,
    limit: int = 2000,
) -> list[Outgoing]:
    """Like :func:`claim_batch`, but whole groups at a time: every deliverable notification of
    up to ``groups`` (channel, recipient, kind) triples, as many groups as fit in ``limit`` rows
    (at least one, however large), so that one person's reminders of the day on one channel
    are claimed, and sent, together. Rows this claimer tried already in its run (marked back
    to ``pending`` after a failure) are left for the next run. Three statements per call,
    whatever the number of rows."""
    group = func.coalesce(Notification.channel_id, -Notification.id)
    not_mine = or_(Notification.claimed_by.is_(None), Notification.claimed_by != claimer)
    wanted = [_deliverable(stale_before), not_mine]
    if kinds:
        wanted.append(Notification.kind.in_(list(kinds)))
    heads = session.execute(
        select(group, Notification.recipient, Notification.kind, func.count())
        .where(*wanted)
        .group_by(group, Notification.recipient, Notification.kind)
        .order_by(func.min(Notification.id))
        .limit(groups)
    ).all()
    chosen: list[tuple[Any, ...]] = []
    rows = 0
    for *key, count in heads:
        if chosen and rows + count > limit:
            break
        chosen.append(tuple(key))
        rows += count
    if not chosen:
        return []
    pick = (
        select(Notification.id)
        .where(*wanted, tuple_(group, Notification.recipient, Notification.kind).in_(chosen))
        .order_by(Notification.id)
    )
    return _claim(session, claimer, stale_before, pick)


def _claim(session: Session, claimer: str, stale_before: datetime, pick: Select) -> list[Outgoing]:
    """Claim the rows ``pick`` selects (still deliverable) for ``claimer``, and read them."""
    table = Notification.__table__
    claimable = or_(
        table.c.status == NotificationStatus.PENDING,
        and_(table.c.status == NotificationStatus.SENDING, table.c.claimed_at < stale_before),
    )
    claimed = claim_ids(session, table, pick, claimable, NotificationStatus.SENDING, claimer)
    if not claimed:
        return []
    rows = session.execute(
        select(
            Notification.id,
            Notification.key,
            Notification.kind,
            Notification.channel_id,
            Notification.recipient,
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
            channel_id=n.channel_id,
            recipient=n.recipient,
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


def mark_sent(
    session: Session | Connection, notification_id: int | Sequence[int], claimer: str
) -> int:
    """Record a sent message (only by the deliverer that claimed it, while it is ``sending``):
    one row, or the rows a grouped message carried, in one statement. Returns how many rows
    were marked (0: the claim went stale and another deliverer took them).

    Like :func:`mark_failed`, it also takes a Core connection in a transaction: a deliverer
    marks each message in a transaction of its own, the hot path of delivery, where an ORM
    session costs about 0.6 ms more CPU per message than a connection."""
    sent = {"status": NotificationStatus.SENT, "sent_at": utcnow(), "error": None}
    return _mark(session, notification_id, claimer, **sent)


def mark_failed(
    session: Session | Connection,
    notification_id: int | Sequence[int],
    claimer: str,
    error: str,
    final: bool,
) -> int:
    """Record a failed attempt: back to ``pending`` (the next run tries again) or ``failed``."""
    status = NotificationStatus.FAILED if final else NotificationStatus.PENDING
    return _mark(session, notification_id, claimer, status=status, error=error[:2000])


def _mark(
    session: Session | Connection, ids: int | Sequence[int], claimer: str, **values: Any
) -> int:
    """Set ``values`` on rows this claimer holds (``sending``); how many it still held (a
    claim gone stale was taken by another deliverer)."""
    table = Notification.__table__
    ids = [ids] if isinstance(ids, int) else list(ids)
    if not ids:
        return 0
    done = session.execute(
        update(table)
        .where(
            table.c.id.in_(ids),
            table.c.claimed_by == claimer,
            table.c.status == NotificationStatus.SENDING,
        )
        .values(**values)
    )
    return done.rowcount


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
