"""Claiming outbox rows: the one step both outboxes share (phase runs to start,
``models/phases/dispatch.py``; messages to send, ``models/cadence/outbox.py``).

One UPDATE takes the rows a query picks, if they are still claimable, for one claimer and
counts the attempt; on PostgreSQL the pick skips rows another claimer has locked. So two
workers never take the same row. The caller commits the claim before acting on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, Table, update
from sqlalchemy.orm import Session

from models.base import utcnow


def claim_ids(
    session: Session,
    table: Table,
    pick: Select[Any],
    claimable: ColumnElement[bool],
    status: Any,
    claimer: str,
) -> list[int]:
    """The ids of the rows ``pick`` selects that are still ``claimable``, now ``status`` and
    claimed by ``claimer`` (their attempts counted)."""
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    return list(
        session.execute(
            update(table)
            .where(table.c.id.in_(pick.scalar_subquery()), claimable)
            .values(
                status=status,
                claimed_by=claimer,
                claimed_at=utcnow(),
                attempts=table.c.attempts + 1,
            )
            .returning(table.c.id)
        ).scalars()
    )
