"""The audit log (read side)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import Event


def list_events(
    session: Session, cycle_id: int | None = None, limit: int | None = 200, offset: int = 0
) -> list[Event]:
    stmt = select(Event).order_by(Event.id)
    if cycle_id is not None:
        stmt = stmt.where(Event.cycle_id == cycle_id)
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    return list(session.scalars(stmt).unique())
