"""What every phase shares: the phase guard, owner labels, a checklist as a phase run sees it,
an action item as the reports show it, and the Markdown helpers of the reports.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import (
    Phase,
    Role,
)
from models.errors import InvalidInput, TransitionRefused
from models.schemas import (
    Readiness,
)
from models.services import cycles as cycle_service
from models.tables import ActionItem, ChecklistItem, Cycle
from models.words import phase_name


def require_phase(cycle: Cycle, *phases: Phase) -> None:
    """Refuse to run a phase's work on a cycle that is not in that phase."""
    if cycle.phase in phases:
        return
    wanted = " or ".join(phase_name(p) for p in phases)
    hint = ""
    order = list(Phase)
    early = order.index(cycle.phase) < order.index(phases[0])
    if early:
        hint = " (a point person moves it on first, from Next step on the cycle's page)"
    error = TransitionRefused(
        f"the {phase_name(phases[0])} phase runs on a cycle in {wanted}; “{cycle.title}” is in "
        f"{phase_name(cycle.phase)}{hint}"
    )
    raise error.resolved_by("advance", cycle.id) if early else error


def owner_label(item: ChecklistItem) -> str:
    """Who owes the answer: a person's email, or the role (and team) that may answer."""
    if item.owner is not None:
        return item.owner.email
    role = (item.owner_role or Role.POINT_PERSON).value
    return f"role:{role}/{item.owner_team.key}" if item.owner_team else f"role:{role}"


def action_owner_label(item: ActionItem) -> str:
    return item.owner.email if item.owner is not None else "unassigned"


class ChecklistStatus(BaseModel):
    """One checklist item as a phase run sees it."""

    item_id: int
    phase: Phase
    key: str
    text: str
    owner: str
    required: bool
    answered: bool
    answer: str | None = None
    answered_by: str | None = None
    #: Identify only: the answer matches the question's gap rule.
    raises_gap: bool = False


def checklist(session: Session, cycle: Cycle, phase: Phase) -> list[ChecklistStatus]:
    items = session.scalars(
        select(ChecklistItem)
        .where(ChecklistItem.cycle_id == cycle.id, ChecklistItem.phase == phase)
        .order_by(ChecklistItem.position)
    ).unique()
    return [_status(cycle, item) for item in items]


def item_status(session: Session, item_id: int) -> ChecklistStatus:
    item = session.get(ChecklistItem, item_id)
    if item is None:
        raise InvalidInput(f"no checklist item with id {item_id}")
    cycle = cycle_service.get_cycle(session, item.cycle_id)
    return _status(cycle, item)


def _status(cycle: Cycle, item: ChecklistItem) -> ChecklistStatus:
    raises_gap = False
    if item.phase is Phase.IDENTIFY and item.answer is not None:
        q = cycle_service.spec(cycle).question(Phase.IDENTIFY, item.key)
        raises_gap = bool(q and q.gap and item.answer == q.gap.when.value)
    return ChecklistStatus(
        item_id=item.id,
        phase=item.phase,
        key=item.key,
        text=item.text,
        owner=owner_label(item),
        required=item.required,
        answered=item.answer is not None,
        answer=item.answer,
        answered_by=item.answered_by.email if item.answered_by else None,
        raises_gap=raises_gap,
    )


class ActionRow(BaseModel):
    id: int
    key: str | None
    title: str
    #: The titles of the gaps it addresses.
    gaps: list[str] = Field(default_factory=list)
    owner: str
    counterpart: str | None
    priority: str
    due_date: date | None
    status: str
    confidence: str
    success_measure: str | None = None
    overdue_days: int = 0


def action_row(item: ActionItem, today: date) -> ActionRow:
    return ActionRow(
        id=item.id,
        key=item.key,
        title=item.title,
        gaps=[g.title for g in item.gaps],
        owner=action_owner_label(item),
        counterpart=item.counterpart.email if item.counterpart else None,
        priority=item.priority.value,
        due_date=item.due_date,
        status=item.status.value,
        confidence=item.confidence.value,
        success_measure=item.success_measure,
        overdue_days=item.days_overdue(today),
    )


def readiness_md(r: Readiness) -> list[str]:
    if r.ready:
        return [f"**Ready to advance** to {phase_name(r.next_phase)}."]
    lines = [f"**Not ready to leave {phase_name(r.phase)}:**", ""]
    lines += [f"- {b}" for b in r.blockers]
    if r.overridable:
        lines += ["", "A point person may advance anyway, giving a reason."]
    return lines


def md(text: str) -> str:
    """Keep user text from breaking a Markdown table or list."""
    return " ".join(str(text).split()).replace("|", "\\|")
