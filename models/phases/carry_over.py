"""Carry-over: a follow-up cycle takes over its previous cycle's unfinished action items.

Used when a follow-up cycle starts (:func:`models.phases.lifecycle.start_cycle`) and by the
recap of the previous cycle, which carries what is still open into its follow-up (idempotent
on ``carry:<action id>``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import FINISHED_STATUSES, ActionStatus
from models.services.common import record_event
from models.tables import ActionItem, Cycle, Person


def follow_up_cycles(session: Session, cycle: Cycle) -> list[Cycle]:
    return list(
        session.scalars(select(Cycle).where(Cycle.previous_cycle_id == cycle.id).order_by(Cycle.id))
    )


def carry_over(session: Session, previous: Cycle, cycle: Cycle, actor: Person | None) -> int:
    """Copy the previous cycle's unfinished action items into ``cycle`` (idempotent)."""
    items = session.scalars(
        select(ActionItem)
        .where(ActionItem.cycle_id == previous.id, ActionItem.status.not_in(FINISHED_STATUSES))
        .order_by(ActionItem.id)
    ).all()
    existing = set(session.scalars(select(ActionItem.key).where(ActionItem.cycle_id == cycle.id)))
    count = 0
    for item in items:
        key = f"carry:{item.id}"
        if key in existing:
            continue
        copy = ActionItem(
            cycle_id=cycle.id,
            key=key,
            title=item.title,
            description=item.description,
            owner_id=item.owner_id,
            counterpart_id=item.counterpart_id,
            assigned_by_id=item.assigned_by_id,
            priority=item.priority,
            status=(
                ActionStatus.BLOCKED if item.status is ActionStatus.BLOCKED else ActionStatus.OPEN
            ),
            confidence=item.confidence,
            success_measure=item.success_measure,
            carried_from_id=item.id,
        )
        session.add(copy)
        record_event(
            session,
            actor=actor,
            verb="action.carried_over",
            obj=copy,
            object_type="action_item",
            cycle_id=cycle.id,
            after={"title": copy.title, "from_cycle": previous.id, "from_action": item.id},
        )
        count += 1
    return count
