"""What every cadence planner shares: the unfinished action items of cycles in Execute, the
message to plan, the wording of due dates, and storing planned messages once per key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.tables import Notification, NotificationKind, NotificationStatus
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, Phase
from models.tables import ActionItem, Cycle

INSERT_BATCH = 500
IN_CHUNK = 900  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


def chunks(seq: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


# --- the candidates -----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenItem:
    """An unfinished action item of a cycle in Execute, as the planners read it."""

    id: int
    cycle_id: int
    cycle_title: str
    playbook_id: int
    title: str
    due: date | None
    owner_id: int | None
    status: ActionStatus
    confidence: Confidence
    assigned_by_id: int | None


_ITEM_COLS = (
    ActionItem.id,
    ActionItem.cycle_id,
    Cycle.title,
    Cycle.playbook_id,
    ActionItem.title,
    ActionItem.due_date,
    ActionItem.owner_id,
    ActionItem.status,
    ActionItem.confidence,
    ActionItem.assigned_by_id,
)


def open_items(session: Session, *conditions: Any) -> list[OpenItem]:
    """The unfinished items of cycles in Execute that meet ``conditions`` (one query)."""
    stmt = (
        select(*_ITEM_COLS)
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(
            Cycle.phase == Phase.EXECUTE,
            ActionItem.status.not_in(FINISHED_STATUSES),
            *conditions,
        )
        .order_by(ActionItem.cycle_id, ActionItem.id)
    )
    return [OpenItem(*row) for row in session.execute(stmt)]


# --- the messages -------------------------------------------------------------------------


@dataclass
class Planned:
    """A message to plan: delivered to each of ``channels`` under ``key#c<channel>``."""

    key: str
    kind: NotificationKind
    recipient: str
    channels: list[int]
    subject: str
    body: str
    cycle_id: int | None = None
    action_item_id: int | None = None


@dataclass
class PlanResult:
    """What a planning run did: ``planned`` new notifications, ``already`` planned before (a
    re-run), ``unreachable`` messages with nobody or no channel to send them to."""

    kind: str
    candidates: int = 0
    planned: int = 0
    already: int = 0
    unreachable: list[str] = field(default_factory=list)
    changed: int = 0  # rows changed by the run besides notifications (confidence, phases)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "candidates": self.candidates,
            "planned": self.planned,
            "already": self.already,
            "unreachable": len(self.unreachable),
            "changed": self.changed,
            **self.details,
        }


def footer(key: str) -> str:
    return f"\n\n(ref {key})"


def due_text(due: date, today: date) -> str:
    days = (due - today).days
    if days == 0:
        return f"due today ({due.isoformat()})"
    if days == 1:
        return f"due tomorrow ({due.isoformat()})"
    if days > 1:
        return f"due in {days} days ({due.isoformat()})"
    late = -days
    return f"{late} day{'s' if late != 1 else ''} overdue (was due {due.isoformat()})"


# --- storing them once --------------------------------------------------------------------


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose key is new: the keys already stored are looked up first (one
    query per 900 keys), the rest go in with ``INSERT ... ON CONFLICT (key) DO NOTHING`` (so a
    concurrent run planning the same messages inserts each key once). Returns how many were
    new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect!r}")
    existing: set[str] = set()
    for chunk in chunks([r["key"] for r in rows]):
        existing.update(
            session.scalars(select(Notification.key).where(Notification.key.in_(chunk)))
        )
    new = [r for r in rows if r["key"] not in existing]
    if not new:
        return 0
    table = Notification.__table__
    stmt = (
        dialect_insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    )
    now = utcnow()
    defaults = {
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "cycle_id": None,
        "action_item_id": None,
    }
    inserted = 0
    for batch in chunks(new, INSERT_BATCH):
        inserted += len(session.execute(stmt, [defaults | r for r in batch]).all())
    return inserted


def store_plan(session: Session, messages: list[Planned], result: PlanResult) -> PlanResult:
    """Store each message once per channel (a key planned before inserts nothing); a message
    without a channel is counted as unreachable."""
    rows: list[dict[str, Any]] = []
    for m in messages:
        if not m.channels:
            result.unreachable.append(m.key)
            continue
        for cid in dict.fromkeys(m.channels):
            rows.append(
                {
                    "key": f"{m.key}#c{cid}",
                    "channel_id": cid,
                    "recipient": m.recipient[:320],
                    "kind": m.kind,
                    "cycle_id": m.cycle_id,
                    "action_item_id": m.action_item_id,
                    "subject": m.subject[:300],
                    "body": m.body,
                }
            )
    new = _insert_ignore(session, rows)
    result.planned += new
    result.already += len(rows) - new
    return result
