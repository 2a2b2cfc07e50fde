"""Action items (the plan) and their check-ins (execution)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import ActionStatus, Confidence, GapDecision, Phase
from models.errors import Forbidden, InvalidInput
from models.rules import can_update_action, require_assigner
from models.schemas import ActionItemAssign, ActionItemCreate, ActionItemUpdate, CheckInCreate
from models.services.common import (
    as_actor,
    changes,
    check_version,
    get_or_raise,
    person_by_email,
    record_event,
    snapshot,
)
from models.services.cycles import facts as cycle_facts
from models.tables import ActionItem, CheckIn, Cycle, Gap, Person, Team

ACTION_PHASES = (Phase.PLAN, Phase.EXECUTE)
UPDATE_PHASES = (Phase.PLAN, Phase.EXECUTE, Phase.RECAP)
TRACKED = [
    "title",
    "description",
    "status",
    "confidence",
    "priority",
    "due_date",
    "follow_up_date",
    "success_measure",
]


def get_action(session: Session, action_id: int) -> ActionItem:
    return get_or_raise(session, ActionItem, action_id, "action item")


def _people(
    session: Session, owner: str | None, counterpart: str | None
) -> tuple[Person | None, Person | None]:
    o = person_by_email(session, owner) if owner else None
    c = person_by_email(session, counterpart) if counterpart else None
    if o is not None and c is not None and o.team_id == c.team_id:
        raise InvalidInput(
            f"the counterpart ({c.email}) must be on the other team, not {o.team.key!r} too"
        )
    return o, c


def add_action(
    session: Session, cycle: Cycle, data: ActionItemCreate, actor: Person | None
) -> tuple[ActionItem, bool]:
    """Create an action item. ``actor`` None means created by rule (a playbook template);
    otherwise only leads and managers may. Idempotent on ``key`` when one is given."""
    if actor is not None:
        require_assigner(as_actor(actor))
    if cycle.phase not in ACTION_PHASES:
        raise InvalidInput(
            f"action items are planned in plan or execute; cycle {cycle.id} is in {cycle.phase}"
        )
    if data.key:
        existing = session.scalar(
            select(ActionItem).where(ActionItem.cycle_id == cycle.id, ActionItem.key == data.key)
        )
        if existing is not None:
            return existing, False
    gap = None
    if data.gap_id is not None:
        gap = get_or_raise(session, Gap, data.gap_id, "gap")
        if gap.cycle_id != cycle.id:
            raise InvalidInput(f"gap {gap.id} belongs to cycle {gap.cycle_id}, not {cycle.id}")
        if gap.decision is not GapDecision.ACCEPTED:
            raise InvalidInput(f"gap {gap.id} is {gap.decision}; action items address accepted gaps")
    owner, counterpart = _people(session, data.owner, data.counterpart)
    item = ActionItem(
        cycle_id=cycle.id,
        gap_id=gap.id if gap else None,
        key=data.key,
        title=data.title,
        description=data.description,
        owner_id=owner.id if owner else None,
        counterpart_id=counterpart.id if counterpart else None,
        assigned_by_id=actor.id if (actor and owner) else None,
        priority=data.priority,
        due_date=data.due_date,
        follow_up_date=data.follow_up_date,
        success_measure=data.success_measure,
    )
    session.add(item)
    record_event(
        session,
        actor=actor,
        verb="action.created",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        after=snapshot(item, ["title", "priority", "due_date", "gap_id", "key"])
        | {"owner": owner.email if owner else None},
    )
    session.flush()
    return item, True


def assign_action(
    session: Session, item: ActionItem, data: ActionItemAssign, actor: Person
) -> ActionItem:
    require_assigner(as_actor(actor), "assign or reassign action items")
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    if cycle.phase not in UPDATE_PHASES:
        raise InvalidInput(f"cycle {cycle.id} is {cycle.phase}")
    check_version(item, data.expected_version, f"action item {item.id}")
    owner, counterpart = _people(session, data.owner, data.counterpart)
    before = {
        "owner": item.owner.email if item.owner else None,
        "counterpart": item.counterpart.email if item.counterpart else None,
        "due_date": item.due_date,
    }
    item.owner_id = owner.id if owner else None
    if counterpart is not None:
        item.counterpart_id = counterpart.id
    elif item.counterpart is not None and owner is not None and item.counterpart.team_id == owner.team_id:
        item.counterpart_id = None  # the old counterpart is now on the owner's own team
    if data.due_date is not None:
        item.due_date = data.due_date
    item.assigned_by_id = actor.id
    after = {
        "owner": owner.email if owner else None,
        "counterpart": counterpart.email if counterpart else before["counterpart"],
        "due_date": item.due_date,
    }
    b, a = changes(before, after)
    record_event(
        session,
        actor=actor,
        verb="action.assigned" if before["owner"] is None else "action.reassigned",
        obj=item,
        object_type="action_item",
        cycle_id=cycle.id,
        before=b,
        after=a or after,
    )
    session.flush()
    return item


def _apply_status(item: ActionItem, status: ActionStatus | None) -> None:
    if status is None or status is item.status:
        return
    item.status = status
    item.completed_at = utcnow() if status is ActionStatus.DONE else None


def update_action(
    session: Session, item: ActionItem, data: ActionItemUpdate, actor: Person
) -> ActionItem:
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    if cycle.phase not in UPDATE_PHASES:
        raise InvalidInput(f"cycle {cycle.id} is {cycle.phase}; its action items are read-only")
    if not can_update_action(as_actor(actor), item.owner_id, cycle_facts(session, cycle)):
        raise Forbidden(f"action item {item.id} is not yours to update")
    check_version(item, data.expected_version, f"action item {item.id}")
    fields = data.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not fields:
        raise InvalidInput("nothing to update")
    if "due_date" in fields and actor.role.value not in ("lead", "manager"):
        raise Forbidden("only leads and managers move due dates")
    before = snapshot(item, TRACKED)
    _apply_status(item, fields.pop("status", None))
    for name, value in fields.items():
        if value is None and name in ("title", "confidence", "priority"):
            continue
        setattr(item, name, value)
    if item.follow_up_date and item.due_date and item.follow_up_date > item.due_date:
        raise InvalidInput("follow_up_date is after due_date")
    b, a = changes(before, snapshot(item, TRACKED))
    if a:
        record_event(
            session,
            actor=actor,
            verb="action.updated",
            obj=item,
            object_type="action_item",
            cycle_id=cycle.id,
            before=b,
            after=a,
        )
    session.flush()
    return item


def add_checkin(
    session: Session,
    item: ActionItem,
    data: CheckInCreate,
    actor: Person | None,
    today: date | None = None,
) -> tuple[CheckIn, bool]:
    """A dated progress note; also moves the item's status and confidence. ``actor`` None
    means written by a flow run (then ``key`` makes it idempotent)."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    if cycle.phase not in (Phase.EXECUTE, Phase.PLAN):
        raise InvalidInput(f"check-ins happen in plan or execute; cycle {cycle.id} is in {cycle.phase}")
    if actor is not None and not can_update_action(
        as_actor(actor), item.owner_id, cycle_facts(session, cycle)
    ):
        raise Forbidden(f"action item {item.id} is not yours to check in on")
    if data.key:
        existing = session.scalar(
            select(CheckIn).where(CheckIn.action_item_id == item.id, CheckIn.key == data.key)
        )
        if existing is not None:
            return existing, False
    before = snapshot(item, ["status", "confidence"])
    _apply_status(item, data.status)
    if data.confidence is not None:
        item.confidence = data.confidence
    checkin = CheckIn(
        action_item_id=item.id,
        key=data.key,
        on_date=data.on_date or today or date.today(),
        status=item.status,
        confidence=item.confidence,
        progress=data.progress,
        note=data.note,
        author_id=actor.id if actor else None,
    )
    session.add(checkin)
    record_event(
        session,
        actor=actor,
        verb="checkin.added",
        obj=checkin,
        object_type="check_in",
        cycle_id=cycle.id,
        before=before,
        after=snapshot(checkin, ["action_item_id", "on_date", "status", "confidence", "progress", "note"]),
    )
    session.flush()
    return checkin, True


def list_checkins(session: Session, item: ActionItem) -> list[CheckIn]:
    return list(
        session.scalars(
            select(CheckIn).where(CheckIn.action_item_id == item.id).order_by(CheckIn.on_date, CheckIn.id)
        )
    )


def action_query(
    *,
    cycle_id: int | None = None,
    owner_id: int | None = None,
    team: str | None = None,
    status: ActionStatus | None = None,
    open_only: bool = False,
    due_before: date | None = None,
    confidence: Confidence | None = None,
) -> Select[tuple[ActionItem]]:
    stmt = select(ActionItem)
    if cycle_id is not None:
        stmt = stmt.where(ActionItem.cycle_id == cycle_id)
    if owner_id is not None:
        stmt = stmt.where(ActionItem.owner_id == owner_id)
    if team is not None:
        stmt = stmt.join(Person, ActionItem.owner_id == Person.id).join(Team).where(Team.key == team)
    if status is not None:
        stmt = stmt.where(ActionItem.status == status)
    if open_only:
        stmt = stmt.where(ActionItem.status.not_in((ActionStatus.DONE, ActionStatus.DROPPED)))
    if due_before is not None:
        stmt = stmt.where(ActionItem.due_date <= due_before)
    if confidence is not None:
        stmt = stmt.where(ActionItem.confidence == confidence)
    return stmt.order_by(ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id)


def list_actions(session: Session, **filters) -> list[ActionItem]:  # noqa: ANN003
    return list(session.scalars(action_query(**filters)).unique())


def is_overdue(item: ActionItem, today: date) -> bool:
    return (
        item.due_date is not None
        and item.due_date < today
        and item.status not in (ActionStatus.DONE, ActionStatus.DROPPED)
    )
