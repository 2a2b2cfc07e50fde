"""Identify: where does the hand-off break? The gap analysis.

Answering an Identify question records the gap its answer implies (:func:`answer`), at once,
so the gate sees it before anybody refreshes anything. :func:`raise_gaps` records every gap the
analysis implies (answers, the playbook's KPI rules over the shared numbers, and content
questions over the materials' ratings, :mod:`models.phases.content`); both are
idempotent on the gap's key (``checklist:<question>``, ``kpi:<rule>``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import (
    GapDecision,
    GapSource,
    Phase,
    Severity,
)
from models.errors import Forbidden
from models.funnel import baseline
from models.phases import content
from models.phases import numbers as kpi_checks
from models.phases.common import checklist, md, readiness_md, require_phase
from models.phases.recurring import escalate_recurring
from models.rules import can_decide_gap, counted
from models.schemas import (
    ChecklistAnswer,
    GapCreate,
    Readiness,
)
from models.services import checklist as checklist_service
from models.services import cycles as cycle_service
from models.services import gaps as gap_service
from models.services.access import require_visible
from models.services.common import as_actor
from models.tables import ChecklistItem, Cycle, Gap, Person
from models.words import question_label


def answer_gap(cycle: Cycle, item: ChecklistItem) -> GapCreate | None:
    """The gap an Identify answer implies (its question's ``gap`` rule matches), or None."""
    if item.phase is not Phase.IDENTIFY or item.answer is None:
        return None
    q = cycle_service.spec(cycle).question(Phase.IDENTIFY, item.key)
    if q is None or q.gap is None or item.answer != q.gap.when.value:
        return None
    return GapCreate(
        key=f"checklist:{item.key}",
        title=q.gap.title,
        description=q.text,
        category=q.gap.category,
        root_cause=q.gap.root_cause,
        severity=q.gap.severity,
        evidence=item.evidence or item.note,
        source=GapSource.CHECKLIST,
        source_ref=f"identify.{item.key}",
    )


class Answered(BaseModel):
    """What an answer did: the item as saved, and the gap it raised (Identify), if any."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    item: ChecklistItem
    gap: Gap | None = None
    #: The gap was recorded by this answer (not by an earlier one).
    gap_is_new: bool = False


def answer(session: Session, item: ChecklistItem, data: ChecklistAnswer, actor: Person) -> Answered:
    """Answer a checklist item (the single-record rules: who, which phase, the version), and
    in Identify record the gap the answer implies, at once: the gap analysis people see and the
    gate hold it before anyone refreshes anything. Every face answers through this."""
    item = checklist_service.answer_item(session, item, data, actor)
    cycle = cycle_service.get_cycle(session, item.cycle_id)
    if cycle.phase is not Phase.IDENTIFY:
        return Answered(item=item)
    gap_data = answer_gap(cycle, item)
    if gap_data is None:
        return Answered(item=item)
    gap, new = gap_service.add_gap(session, cycle, gap_data, item.answered_by)
    return Answered(item=item, gap=gap, gap_is_new=new)


def answer_gaps(session: Session, cycle: Cycle) -> list[tuple[GapCreate, Person | None]]:
    """Gaps from Identify answers that match their question's ``gap`` rule."""
    items = session.scalars(
        select(ChecklistItem)
        .where(
            ChecklistItem.cycle_id == cycle.id,
            ChecklistItem.phase == Phase.IDENTIFY,
            ChecklistItem.answer.is_not(None),
        )
        .order_by(ChecklistItem.position)
    ).unique()
    return [
        (data, item.answered_by) for item in items if (data := answer_gap(cycle, item)) is not None
    ]


def raise_gaps(session: Session, cycle: Cycle) -> list[Gap]:
    """Record every gap the analysis implies: from the answers (as :func:`answer` does) and
    from the playbook's KPI rules over the cycle's baseline (shared funnel data). Idempotent on
    each gap's key; returns the gaps new in this call. Gaps people added by hand are already in
    the analysis and are left as they are."""
    require_phase(cycle, Phase.IDENTIFY)
    before = {g.id for g in gap_service.list_gaps(session, cycle)}
    for data, reporter in answer_gaps(session, cycle):
        gap_service.add_gap(session, cycle, data, reporter)
    if baseline.has_funnel_data(session):  # no data: no empty baseline frozen, no KPI gaps
        kpi_checks.evaluate_gap_rules(session, cycle)  # records its gaps (``metric:<rule>``)
    content.evaluate_material_questions(session, cycle)  # content questions, from the ratings
    session.flush()
    escalate_recurring(session, cycle)  # a gap back for the Nth time goes to the managers, once
    return [g for g in gap_service.list_gaps(session, cycle) if g.id not in before]


def kpi_gaps(session: Session, cycle: Cycle, actor: Person) -> list[Gap]:
    """A person runs the playbook's KPI checks against the cycle's baseline now (leads,
    managers and the cycle's point persons, as for deciding gaps): the gaps of the failed
    checks, recorded or already there (re-running records nothing twice)."""
    require_visible(actor, cycle, "cycle", cycle.id)
    if not can_decide_gap(as_actor(actor), cycle_service.permission_facts(cycle)):
        raise Forbidden("only leads, managers and the cycle's point persons run the KPI checks")
    return kpi_checks.evaluate_gap_rules(session, cycle)


class GapRow(BaseModel):
    id: int
    key: str
    title: str
    category: str
    root_cause: str
    severity: str
    source: str
    decision: str
    reported_by: str | None = None


class IdentifyReport(BaseModel):
    cycle_id: int
    title: str
    answered: int
    questions: int
    unanswered_required: list[str]
    gaps: list[GapRow]
    new_gaps: list[int] = Field(default_factory=list)
    #: Checklist gaps whose answer has since changed (decide them: reject with a reason).
    stale_gaps: list[str] = Field(default_factory=list)
    readiness: Readiness


def _gap_row(gap: Gap) -> GapRow:
    return GapRow(
        id=gap.id,
        key=gap.key,
        title=gap.title,
        category=gap.category.value,
        root_cause=gap.root_cause.value,
        severity=gap.severity.value,
        source=gap.source.value,
        decision=gap.decision.value,
        reported_by=gap.reported_by.email if gap.reported_by else None,
    )


def identify_report(
    session: Session, cycle: Cycle, today: date, new_gap_ids: Iterable[int] = ()
) -> IdentifyReport:
    items = checklist(session, cycle, Phase.IDENTIFY)
    gaps = gap_service.list_gaps(session, cycle)
    live = {f"checklist:{i.key}" for i in items if i.raises_gap}
    stale = [
        g.title
        for g in gaps
        if g.source is GapSource.CHECKLIST
        and g.key.startswith("checklist:")
        and g.key not in live
        and g.decision is GapDecision.OPEN
    ]
    return IdentifyReport(
        cycle_id=cycle.id,
        title=cycle.title,
        answered=sum(i.answered for i in items),
        questions=len(items),
        unanswered_required=[
            f"“{question_label(i.text)}” ({i.owner})"
            for i in items
            if i.required and not i.answered
        ],
        gaps=[_gap_row(g) for g in gaps],
        new_gaps=list(new_gap_ids),
        stale_gaps=stale,
        readiness=cycle_service.readiness(session, cycle, today),
    )


def gaps_table(report: IdentifyReport) -> list[dict[str, Any]]:
    return [
        {
            "gap": g.title,
            "category": g.category,
            "root cause": g.root_cause,
            "severity": g.severity,
            "source": g.source,
            "decision": g.decision,
        }
        for g in report.gaps
    ]


def render_identify_markdown(report: IdentifyReport) -> str:
    sev = Counter(g.severity for g in report.gaps)
    lines = [
        f"# Identify — cycle {report.cycle_id}: {report.title}",
        "",
        f"Checklist: {report.answered} of {report.questions} questions answered.",
        f"Gap analysis: {counted(len(report.gaps), 'gap')}"
        + (f" ({', '.join(f'{sev[s]} {s}' for s in reversed(Severity) if sev[s])})" if sev else "")
        + (f", {len(report.new_gaps)} new this run" if report.new_gaps else "")
        + ".",
        "",
    ]
    if report.gaps:
        lines += ["| Gap | Category | Root cause | Severity | Decision |", "|---|---|---|---|---|"]
        lines += [
            f"| {md(g.title)} | {g.category} | {g.root_cause} | {g.severity} | {g.decision} |"
            for g in report.gaps
        ]
        lines.append("")
    if report.unanswered_required:
        lines += ["Unanswered required questions:", ""]
        lines += [f"- {k}" for k in report.unanswered_required]
        lines.append("")
    if report.stale_gaps:
        lines += ["Gaps whose checklist answer has changed since (decide them):", ""]
        lines += [f"- {md(t)}" for t in report.stale_gaps]
        lines.append("")
    return "\n".join(lines + readiness_md(report.readiness)) + "\n"
