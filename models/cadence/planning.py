"""What every cadence planner shares: the unfinished action items of cycles in Execute, the
message to plan, the wording of due dates, and storing planned messages once per key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.tables import Notification, NotificationKind, NotificationStatus
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, Phase
from models.tables import ActionItem, Cycle
from models.words import counted, day

if TYPE_CHECKING:
    from models.cadence.directory import Directory

INSERT_BATCH = 500  # rows per multi-row VALUES insert (SQLite)
UNNEST_BATCH = 5000  # rows per unnest() insert (PostgreSQL): one array per column
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


class Addressee(Protocol):
    """Whoever a message goes to: a person's id (their channels) and email."""

    @property
    def id(self) -> int: ...

    @property
    def email(self) -> str: ...


def message_to(
    directory: Directory,
    person: Addressee,
    *,
    key: str,
    kind: NotificationKind,
    subject: str,
    body: str,
    cycle_id: int | None = None,
    action_item_id: int | None = None,
) -> Planned:
    """A message to one person, on the channels they get messages on, its body ending with its
    reference (:func:`footer`): how every planner addresses a person."""
    return Planned(
        key=key,
        kind=kind,
        recipient=person.email,
        channels=directory.channels_for_person(person.id),
        subject=subject,
        body=body + footer(key),
        cycle_id=cycle_id,
        action_item_id=action_item_id,
    )


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


#: How a message says an item's status and confidence (people read words, not keys).
STATUS_WORDS = {
    ActionStatus.OPEN: "open",
    ActionStatus.IN_PROGRESS: "in progress",
    ActionStatus.BLOCKED: "blocked",
    ActionStatus.AWAITING_SIGNOFF: "waiting for sign-off",
    ActionStatus.DONE: "done",
    ActionStatus.DROPPED: "dropped",
    ActionStatus.CARRIED_OVER: "carried over",
}
CONFIDENCE_WORDS = {
    Confidence.ON_TRACK: "on track",
    Confidence.AT_RISK: "at risk",
    Confidence.OFF_TRACK: "off track",
}


def state_text(item: OpenItem) -> str:
    """``Status: in progress, confidence: on track``: an item's state in words."""
    status = STATUS_WORDS.get(item.status, str(item.status).replace("_", " "))
    confidence = CONFIDENCE_WORDS.get(item.confidence, str(item.confidence).replace("_", " "))
    return f"Status: {status}, confidence: {confidence}"


def footer(key: str) -> str:
    return f"\n\n(ref {key})"


def due_text(due: date, today: date) -> str:
    days = (due - today).days
    if days == 0:
        return f"due today ({day(due)})"
    if days == 1:
        return f"due tomorrow ({day(due)})"
    if days > 1:
        return f"due in {days} days ({day(due)})"
    late = -days
    return f"{counted(late, 'day')} overdue (was due {day(due)})"


# --- storing them once --------------------------------------------------------------------


_COLUMNS = (
    "key",
    "channel_id",
    "recipient",
    "kind",
    "cycle_id",
    "action_item_id",
    "subject",
    "body",
)


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose key is not stored yet, with ``INSERT ... ON CONFLICT (key) DO
    NOTHING RETURNING id``: a key planned before (a re-run, or a concurrent run planning the
    same messages) inserts nothing, and no lookup of the keys comes first. The unique index on
    ``key`` decides, so the cost does not hang on the planner's statistics (an ``IN (...)``
    lookup of 900 keys took 0.7 s each on PostgreSQL once they were stale after a day's
    inserts). Returns how many were new.

    On PostgreSQL the rows go as one array per column, unnested by the server
    (:data:`UNNEST_BATCH` rows a statement): about four times cheaper per row than a
    multi-row ``VALUES`` list with a bind per value. On SQLite, multi-row ``VALUES``
    (:data:`INSERT_BATCH` rows a statement)."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    table = Notification.__table__
    now = utcnow()
    inserted = 0
    if dialect == "postgresql":
        for batch in chunks(rows, UNNEST_BATCH):
            params = {c: [r.get(c) for r in batch] for c in _COLUMNS}
            inserted += len(session.execute(_unnest_insert(), params | {"now": now}).all())
        return inserted
    if dialect != "sqlite":  # pragma: no cover - the store supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect!r}")
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    defaults = {
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "cycle_id": None,
        "action_item_id": None,
    }
    for batch in chunks(rows, INSERT_BATCH):
        inserted += len(session.execute(stmt, [defaults | r for r in batch]).all())
    return inserted


@lru_cache(maxsize=1)
def _unnest_insert() -> Any:
    """``INSERT INTO notifications (...) SELECT ... FROM unnest(:key, :channel_id, ...)
    ON CONFLICT (key) DO NOTHING RETURNING id`` (PostgreSQL), built once."""
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    table = Notification.__table__
    arrays = [bindparam(c, type_=ARRAY(table.c[c].type)) for c in _COLUMNS]
    src = func.unnest(*arrays).table_valued(*_COLUMNS).render_derived(name="src")
    fixed = {
        "status": literal(NotificationStatus.PENDING.value),
        "attempts": literal(0),
        "created_at": bindparam("now", type_=table.c.created_at.type),
    }
    return (
        pg_insert(table)
        .from_select([*_COLUMNS, *fixed], select(*(src.c[c] for c in _COLUMNS), *fixed.values()))
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.id)
    )


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
    new = _insert_new(session, rows)
    result.planned += new
    result.already += len(rows) - new
    return result
