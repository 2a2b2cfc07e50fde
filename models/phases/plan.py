"""Plan: action items with owners and due dates for the accepted gaps.

:func:`decide_gap` is the one way a gap is decided with its consequences: a gap accepted
during Plan gets the playbook's proposals at once. :func:`propose_actions` proposes for every
accepted gap: one item per template in the cycle (idempotent on ``template:<template>``),
linked to every accepted gap it addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import (
    ActionStatus,
    GapDecision,
    Phase,
)
from models.phases.common import ActionRow, action_row, md, readiness_md, require_phase
from models.playbook import OwnerSpec
from models.rules import counted
from models.schemas import (
    ActionItemCreate,
    GapDecide,
    Readiness,
)
from models.services import actions as action_service
from models.services import cycles as cycle_service
from models.services import gaps as gap_service
from models.tables import ActionItem, Cycle, Gap, Person


def default_owner(session: Session, cycle: Cycle, owner: OwnerSpec | None) -> Person | None:
    """The one person of the cycle's teams a template's owner rule points at, or None (a lead
    assigns one)."""
    if owner is None:
        return None
    person_id, _team_id = cycle_service.owner_for(session, owner, cycle.teams)
    return session.get(Person, person_id) if person_id is not None else None


def _counterpart(cycle: Cycle, owner: Person | None) -> Person | None:
    """The point person of another team of the cycle: the owner's partner across the aisle."""
    if owner is None:
        return None
    for ct in cycle.teams:
        if ct.team_id != owner.team_id and ct.point_person is not None:
            return ct.point_person
    return None


def template_key(template_key: str) -> str:
    """A proposal's natural key in its cycle: one item per template, whatever the number of
    gaps it addresses."""
    return f"template:{template_key}"


def propose_actions(session: Session, cycle: Cycle, today: date) -> list[ActionItem]:
    """The playbook's proposals for every accepted gap: one action item per template of the
    gaps' categories, addressing every accepted gap it applies to (four hand-off gaps get one
    hand-off SLA, linked to all four). Owners are defaulted when exactly one person of the
    cycle's teams fits the template's owner; due dates come from the template (capped at the
    end of the cycle). Idempotent. Returns the items created by this call."""
    require_phase(cycle, Phase.PLAN)
    created: list[ActionItem] = []
    for gap in gap_service.list_gaps(session, cycle, GapDecision.ACCEPTED):
        created += propose_actions_for_gap(session, cycle, gap, today)
    return created


def propose_actions_for_gap(
    session: Session, cycle: Cycle, gap: Gap, today: date
) -> list[ActionItem]:
    """:func:`propose_actions` for one accepted gap: what a gap accepted during Plan gets. A
    template already proposed in the cycle (for another gap) is linked to this gap instead of
    being copied; a dropped one is left alone (the team decided against it). Idempotent.
    Returns the items created by this call."""
    require_phase(cycle, Phase.PLAN)
    if gap.decision is not GapDecision.ACCEPTED:
        return []
    created: list[ActionItem] = []
    for template in cycle_service.spec(cycle).action_templates.get(gap.category, []):
        key = template_key(template.key)
        existing = session.scalar(
            select(ActionItem).where(ActionItem.cycle_id == cycle.id, ActionItem.key == key)
        )
        if existing is not None:
            if existing.status is not ActionStatus.DROPPED:
                action_service.link_gap(session, existing, gap.id, None)
            continue
        owner = default_owner(session, cycle, template.owner)
        counterpart = _counterpart(cycle, owner)
        due = today + timedelta(days=template.due_in_days)
        if due > cycle.period_end >= today:
            due = cycle.period_end
        item, new = action_service.add_action(
            session,
            cycle,
            ActionItemCreate(
                key=key,
                gap_ids=[gap.id],
                title=template.title,
                description=template.description,
                owner=owner.email if owner else None,
                counterpart=counterpart.email if counterpart else None,
                priority=template.priority,
                due_date=due,
                success_measure=template.success_measure,
            ),
            None,
        )
        if new:
            created.append(item)
    return created


def decide_gap(
    session: Session, gap: Gap, data: GapDecide, actor: Person, today: date | None = None
) -> Gap:
    """Accept, defer or reject a gap (the single-record rules: who, which phase, unfinished
    work); a gap newly accepted during Plan gets the playbook's proposed action items at once,
    as the Plan flow would propose them. Every face decides through this."""
    was = gap.decision
    gap = gap_service.decide_gap(session, gap, data, actor)
    cycle = cycle_service.get_cycle(session, gap.cycle_id)
    if (
        cycle.phase is Phase.PLAN
        and gap.decision is GapDecision.ACCEPTED
        and was is not gap.decision
    ):
        propose_actions_for_gap(session, cycle, gap, today or date.today())
    return gap


class PlanReport(BaseModel):
    cycle_id: int
    title: str
    accepted_gaps: int
    actions: list[ActionRow]
    proposed: list[int] = Field(default_factory=list)
    unassigned: list[str] = Field(default_factory=list)
    readiness: Readiness


def plan_report(
    session: Session, cycle: Cycle, today: date, proposed_ids: Iterable[int] = ()
) -> PlanReport:
    items = action_service.list_actions(session, cycle_id=cycle.id)
    return PlanReport(
        cycle_id=cycle.id,
        title=cycle.title,
        accepted_gaps=len(gap_service.list_gaps(session, cycle, GapDecision.ACCEPTED)),
        actions=[action_row(i, today) for i in items],
        proposed=list(proposed_ids),
        unassigned=[i.title for i in items if i.owner_id is None and not i.status.finished],
        readiness=cycle_service.readiness(session, cycle, today),
    )


def actions_table(rows: list[ActionRow]) -> list[dict[str, Any]]:
    return [
        {
            "action": r.title,
            "gaps": "; ".join(r.gaps),
            "owner": r.owner,
            "counterpart": r.counterpart or "",
            "priority": r.priority,
            "due": r.due_date.isoformat() if r.due_date else "",
            "status": r.status,
            "confidence": r.confidence,
        }
        for r in rows
    ]


def render_plan_markdown(report: PlanReport) -> str:
    lines = [
        f"# Plan — cycle {report.cycle_id}: {report.title}",
        "",
        f"{counted(len(report.actions), 'action item')} for "
        f"{counted(report.accepted_gaps, 'accepted gap')}"
        + (f"; {len(report.proposed)} proposed from the playbook now" if report.proposed else "")
        + ".",
        "",
    ]
    if report.actions:
        lines += [
            "| Action | Gaps | Owner | Due | Priority | Status |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {md(a.title)} | {md('; '.join(a.gaps))} | {a.owner} | "
            f"{a.due_date.isoformat() if a.due_date else ''} | {a.priority} | {a.status} |"
            for a in report.actions
        ]
        lines.append("")
    if report.unassigned:
        lines += ["Waiting for a lead to assign an owner:", ""]
        lines += [f"- {md(t)}" for t in report.unassigned]
        lines.append("")
    return "\n".join(lines + readiness_md(report.readiness)) + "\n"
