"""A cycle's "Next step": the gate's blockers, each with the exact things to fix (the
unanswered question, the undecided gap, the item not finished), so a page can link to them.

The sentences are the gate's own (:func:`models.rules.gate_blockers`, by kind); this adds the
ids. A fixed number of queries, whatever the number of blockers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from models.agreement_tables import Amendment
from models.enums import ActionStatus, GapDecision
from models.rules import gate_blockers_by_kind
from models.schemas import Readiness
from models.services import cycles as cycle_service
from models.tables import (
    ActionItem,
    ActionItemGap,
    ChecklistItem,
    Cycle,
    Gap,
    action_is_open,
    gap_is_undecided,
)

#: At most this many things are named under one blocker (the rest: its list page).
SHOWN = 5


@dataclass
class Target:
    """One thing to fix: ``kind`` ("question", "gap", "plan", "point_person", "action",
    "amendment", "retro", "signoff"), its id (None for the recap and point persons) and its name."""

    kind: str
    object_id: int | None
    name: str


@dataclass
class Blocker:
    kind: str
    text: str
    targets: list[Target] = field(default_factory=list)
    more: int = 0


@dataclass
class NextStep:
    readiness: Readiness
    blockers: list[Blocker]


def next_step(session: Session, cycle: Cycle, today: date | None = None) -> NextStep:
    today = today or date.today()
    facts = cycle_service.facts(session, cycle)
    readiness = cycle_service.readiness_of(cycle, facts, today)
    blockers = []
    for kind, text in gate_blockers_by_kind(facts, today):
        found = _targets(session, cycle, kind)
        blockers.append(
            Blocker(kind, text, found[:SHOWN], max(0, len(found) - SHOWN) if found else 0)
        )
    return NextStep(readiness, blockers)


def _targets(session: Session, cycle: Cycle, kind: str) -> list[Target]:
    limit = SHOWN + 50  # enough to say how many more, without reading them all
    if kind == "questions":
        rows = session.execute(
            select(ChecklistItem.id, ChecklistItem.text)
            .where(
                ChecklistItem.cycle_id == cycle.id,
                ChecklistItem.phase == cycle.phase,
                ChecklistItem.required.is_(True),
                ChecklistItem.answer.is_(None),
            )
            .order_by(ChecklistItem.position)
            .limit(limit)
        ).all()
        return [Target("question", i, cycle_service.question_label(t)) for i, t in rows]
    if kind == "gaps":
        rows = session.execute(
            select(Gap.id, Gap.title)
            .where(Gap.cycle_id == cycle.id, gap_is_undecided())
            .order_by(Gap.id)
            .limit(limit)
        ).all()
        return [Target("gap", i, t) for i, t in rows]
    if kind == "plan":
        planned = (
            select(ActionItem.id)
            .join(ActionItemGap, ActionItemGap.action_item_id == ActionItem.id)
            .where(
                ActionItemGap.gap_id == Gap.id,
                ActionItem.owner_id.is_not(None),
                ActionItem.due_date.is_not(None),
                ActionItem.status != ActionStatus.DROPPED,
            )
        )
        rows = session.execute(
            select(Gap.id, Gap.title)
            .where(
                Gap.cycle_id == cycle.id,
                Gap.decision == GapDecision.ACCEPTED,
                ~exists(planned),
            )
            .order_by(Gap.id)
            .limit(limit)
        ).all()
        return [Target("plan", i, t) for i, t in rows]
    if kind == "point_persons":
        return [
            Target("point_person", None, ct.team.name)
            for ct in cycle.teams
            if not ct.point_person_id
        ]
    if kind == "actions":
        rows = session.execute(
            select(ActionItem.id, ActionItem.title)
            .where(ActionItem.cycle_id == cycle.id, action_is_open())
            .order_by(ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id)
            .limit(limit)
        ).all()
        return [Target("action", i, t) for i, t in rows]
    if kind == "amendments":
        rows = session.scalars(
            select(Amendment)
            .where(Amendment.cycle_id == cycle.id, Amendment.status == "proposed")
            .order_by(Amendment.id)
            .limit(limit)
        ).all()
        return [Target("amendment", a.id, a.label) for a in rows]
    if kind in ("retro", "signoff"):
        return [Target(kind, None, cycle.title)]
    return []
