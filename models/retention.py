"""Pruning the two outboxes: the phase flows cycles' moves asked for
(:mod:`models.phases.dispatch`) and the messages (:mod:`models.cadence.tables`).

Both keep a row per request for good unless pruned. A row is pruned once it is done and older
than the retention (``ALIGNCYCLE_OUTBOX_RETENTION_DAYS``, 90 days by default):

- a phase flow request that started (or was skipped: the cycle had moved on), counted from
  when it started (or was asked for). Waiting ones are never pruned;
- a message that was **sent**, counted from when it was sent. Waiting and **failed** ones are
  kept: a failed message stays in the log until someone has dealt with it. A reminder, an
  escalation or a recap notice is kept while its cycle is open, whatever its age: its row is
  also what stops the same message from being planned again (its idempotency key), and an
  item that stays overdue with the same due date would otherwise be reminded once more.

The daily cadence run prunes (``daily-cadence``), and ``aligncycle outbox prune`` on demand.
The audit log keeps what happened either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.tables import Notification, NotificationKind, NotificationStatus
from models.enums import Phase
from models.errors import InvalidInput
from models.phases.dispatch import DispatchStatus, PhaseDispatch
from models.tables import Cycle

DEFAULT_DAYS = 90
#: Messages whose row is what keeps them from being planned again while their cycle is open.
KEPT_WHILE_OPEN = (
    NotificationKind.REMINDER,
    NotificationKind.ESCALATION,
    NotificationKind.RECAP_DUE,
)


@dataclass(frozen=True)
class Pruned:
    phase_requests: int
    messages: int
    before: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "phase_requests": self.phase_requests,
            "messages": self.messages,
            "before": self.before.isoformat(timespec="seconds"),
        }


def prune_outboxes(session: Session, days: int, now: datetime | None = None) -> Pruned:
    """Delete the done rows of both outboxes older than ``days`` (see the module's docstring),
    in the caller's transaction. Two statements."""
    if days < 1:
        raise InvalidInput("the retention must be at least 1 day")
    before = (now or utcnow()) - timedelta(days=days)
    phases = session.execute(
        delete(PhaseDispatch)
        .where(
            PhaseDispatch.status.in_([DispatchStatus.STARTED, DispatchStatus.SKIPPED]),
            func.coalesce(PhaseDispatch.started_at, PhaseDispatch.created_at) < before,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    closed = select(Cycle.id).where(Cycle.phase == Phase.CLOSED)
    messages = session.execute(
        delete(Notification)
        .where(
            Notification.status == NotificationStatus.SENT,
            Notification.sent_at < before,
            or_(
                Notification.kind.not_in(KEPT_WHILE_OPEN),
                Notification.cycle_id.is_(None),
                Notification.cycle_id.in_(closed),
            ),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    return Pruned(phase_requests=phases or 0, messages=messages or 0, before=before)
