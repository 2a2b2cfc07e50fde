"""Helpers shared by the services: loading rows, actors, the audit log, version checks."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.errors import Conflict, NotFound
from models.rules import Actor
from models.tables import Base, Event, Person

T = TypeVar("T", bound=Base)


def get_or_raise(session: Session, model: type[T], ident: int, label: str | None = None) -> T:
    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"no {label or model.__name__.lower()} with id {ident}")
    return row


def person_by_email(session: Session, email: str) -> Person:
    email = email.strip().lower()
    person = session.scalar(select(Person).where(Person.email == email))
    if person is None:
        raise NotFound(f"unknown person {email!r}")
    if not person.active:
        raise NotFound(f"person {email!r} is deactivated")
    return person


def as_actor(person: Person) -> Actor:
    return Actor(id=person.id, role=person.role, team_id=person.team_id, name=person.name)


def check_version(row: Any, expected: int | None, label: str) -> None:
    """Optimistic concurrency: refuse a write based on an outdated read."""
    if expected is not None and row.version != expected:
        raise Conflict(
            f"{label} was changed by someone else since you read it; reload it to see their "
            "change, then make yours again"
        )


def flush_unique(session: Session, error: Exception) -> None:
    """Flush, turning a unique-key violation into ``error``.

    For rows with a natural key (gap key, action key, one survey answer per person, ...): the
    service looked first, but a concurrent writer may have inserted the same key since. The
    caller's unit of work then rolls back, so the refused operation changes nothing.
    """
    try:
        session.flush()
    except IntegrityError:
        raise error from None


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def snapshot(row: Any, fields: list[str]) -> dict[str, Any]:
    return {f: _plain(getattr(row, f)) for f in fields}


def record_event(
    session: Session,
    *,
    actor: Person | Actor | None,
    verb: str,
    obj: Any | None = None,
    object_type: str | None = None,
    object_id: int | None = None,
    cycle_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Event:
    """Append one entry to the audit log (flushes, so the object has its id)."""
    if obj is not None:
        session.flush()
        object_type = object_type or obj.__tablename__.removesuffix("s")
        object_id = object_id if object_id is not None else obj.id
    event = Event(
        actor_id=actor.id if actor is not None else None,
        verb=verb,
        object_type=object_type or "",
        object_id=object_id,
        cycle_id=cycle_id,
        before={k: _plain(v) for k, v in before.items()} if before else None,
        after={k: _plain(v) for k, v in after.items()} if after else None,
    )
    session.add(event)
    return event


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Only the fields that changed, as (before, after)."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}
