"""The delivery bookkeeping of planned notifications: which are deliverable, claiming a batch
(or a person's notifications on a channel together) for one deliverer, marking them sent or
failed (with the backoff before the next try), and reading the log.

**Backoff.** A send that fails puts its rows back to ``pending`` with ``retry_at`` = now +
:data:`BACKOFF` for the attempt that failed (30 s after the first, 2 minutes after the
second, ...); no deliverer takes them before then. After the last attempt they are
``failed``. Whoever delivers next — the cadence run's own retries, the scheduled sweep of the
``dispatch`` flow, the web app's background worker on the embedded default — honours it.

**The sweep** (:func:`sweepable`) delivers what nobody else will: invitation and reset links
(sent once right after the request that made them), and any message tried before whose next
try is due (a refused send, or one left ``sending`` by a deliverer that died). It leaves
alone messages a cadence run planned and has not tried yet: they are that run's to send
(``cadence run --plan-only`` sends nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
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

#: How long a message whose send failed waits before it is tried again, by the attempt that
#: failed (the first: 30 s; the second: 2 minutes; later ones: the last value).
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))


def retry_after(attempts: int) -> timedelta:
    """The wait before the next try of a message whose ``attempts``-th send failed."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def _deliverable(stale_before: datetime, due_by: datetime | None = None) -> Any:
    """Pending (and, with ``due_by``, its next try due by then), or ``sending`` with a claim
    older than ``stale_before`` (a deliverer that died)."""
    pending: Any = Notification.status == NotificationStatus.PENDING
    if due_by is not None:
        pending = and_(
            pending, or_(Notification.retry_at.is_(None), Notification.retry_at <= due_by)
        )
    return or_(
        pending,
        and_(
            Notification.status == NotificationStatus.SENDING,
            Notification.claimed_at < stale_before,
        ),
    )


def sweepable() -> Any:
    """What a sweep delivers (see the module's docstring): account links, and messages tried
    before."""
    return or_(Notification.kind == NotificationKind.ACCOUNT, Notification.attempts > 0)


def deliverable_ids(
    session: Session,
    kinds: Sequence[NotificationKind] | None,
    stale_before: datetime,
    after_id: int = 0,
    limit: int = 200,
) -> list[int]:
    """Ids of notifications to deliver, in order: pending ones, and ones left ``sending`` by a
    deliverer that stopped before ``stale_before`` (a crash: see :func:`claim_batch`); a failed
    send's rows once their next try is due."""
    stmt = select(Notification.id).where(
        Notification.id > after_id, _deliverable(stale_before, utcnow())
    )
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

    Rows named by ``ids`` are taken whether or not their backoff has passed (a deliverer's own
    retry after its own wait); otherwise only rows whose next try is due.
    """
    due_by = None if ids is not None else utcnow()
    pick = select(Notification.id).where(
        Notification.id > after_id, _deliverable(stale_before, due_by)
    )
    if kinds:
        pick = pick.where(Notification.kind.in_(list(kinds)))
    if ids is not None:
        pick = pick.where(Notification.id.in_(list(ids)))
    return _claim(
        session, claimer, stale_before, pick.order_by(Notification.id).limit(limit), due_by
    )


def claim_groups(
    session: Session,
    claimer: str,
    stale_before: datetime,
    kinds: Sequence[NotificationKind] | None = None,
    groups: int = 200,
    limit: int = 2000,
    sweep: bool = False,
) -> list[Outgoing]:
    """Like :func:`claim_batch`, but whole groups at a time: every deliverable notification of
    up to ``groups`` (channel, recipient, kind) triples, as many groups as fit in ``limit`` rows
    (at least one, however large), so that one person's reminders of the day on one channel
    are claimed, and sent, together. Rows this claimer tried already in its run (marked back
    to ``pending`` after a failure) are left for the next run, and so are rows whose backoff
    has not passed. ``sweep``: only what a sweep delivers (:func:`sweepable`). Three statements
    per call, whatever the number of rows."""
    now = utcnow()
    group = func.coalesce(Notification.channel_id, -Notification.id)
    not_mine = or_(Notification.claimed_by.is_(None), Notification.claimed_by != claimer)
    wanted = [_deliverable(stale_before, now), not_mine]
    if kinds:
        wanted.append(Notification.kind.in_(list(kinds)))
    if sweep:
        wanted.append(sweepable())
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
    return _claim(session, claimer, stale_before, pick, now)


def _claim(
    session: Session,
    claimer: str,
    stale_before: datetime,
    pick: Select,
    due_by: datetime | None,
) -> list[Outgoing]:
    """Claim the rows ``pick`` selects (still deliverable) for ``claimer``, and read them."""
    table = Notification.__table__
    pending: Any = table.c.status == NotificationStatus.PENDING
    if due_by is not None:
        pending = and_(pending, or_(table.c.retry_at.is_(None), table.c.retry_at <= due_by))
    claimable = or_(
        pending,
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
    sent = {
        "status": NotificationStatus.SENT,
        "sent_at": utcnow(),
        "error": None,
        "retry_at": None,
    }
    return _mark(session, notification_id, claimer, **sent)


def mark_failed(
    session: Session | Connection,
    notification_id: int | Sequence[int],
    claimer: str,
    error: str,
    final: bool,
    attempts: int = 1,
) -> int:
    """Record a failed attempt: back to ``pending``, not to be tried again before the backoff
    of its ``attempts``-th try has passed (:func:`retry_after`), or ``failed``."""
    if final:
        return _mark(
            session,
            notification_id,
            claimer,
            status=NotificationStatus.FAILED,
            error=error[:2000],
            retry_at=None,
        )
    return _mark(
        session,
        notification_id,
        claimer,
        status=NotificationStatus.PENDING,
        error=error[:2000],
        retry_at=utcnow() + retry_after(attempts),
    )


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
