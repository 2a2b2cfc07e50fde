"""What each phase of a cycle does, and the point person's decision between phases.

Plain functions over a ``Session`` (no Prefect here): the flows in ``flows/`` open one unit of
work per task and call these with ids. Every writer is idempotent on a natural key, so a phase
can be run again after a crash, a retry or on a schedule without duplicating anything:

- Identify: gaps from checklist answers (``Gap.key = checklist:<question>``) and from any other
  registered gap source (:data:`GAP_SOURCES`, the seam for KPI-based gaps). An answer's gaps
  are also recorded with the answer (``checklist.answer_item``), before anyone decides.
- Plan: action items proposed from the playbook's templates (``template:<gap id>:<template>``).
  A gap accepted during Plan gets its proposals with the decision (``gaps.decide_gap``).
- Execute: one check-in per unfinished item per day (``CheckIn.key = execute:<date>``).
- Recap: a drafted retrospective (one per cycle) and carry-over into follow-up cycles
  (``carry:<action id>``).

:func:`advance` moves a cycle on without the flows (the web, the API, ``--no-flows``): the
current phase's refresh, the gate, then what the new phase starts with, in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import (
    FINISHED_STATUSES,
    ActionStatus,
    Confidence,
    GapDecision,
    GapSource,
    Phase,
    Role,
    Severity,
)
from models.errors import Forbidden, InvalidInput, TransitionRefused
from models.playbook import OwnerSpec
from models.rules import check_transition, is_point_person
from models.schemas import (
    ActionItemCreate,
    CheckInCreate,
    CycleCreate,
    GapCreate,
    Readiness,
    RetrospectiveRecord,
)
from models.services import actions as action_service
from models.services import cycles as cycle_service
from models.services import gaps as gap_service
from models.services import recap as recap_service
from models.services.common import as_actor, check_version, person_by_email, record_event
from models.tables import ActionItem, CheckIn, ChecklistItem, Cycle, Gap, Person

_CONFIDENCE_ORDER = [Confidence.ON_TRACK, Confidence.AT_RISK, Confidence.OFF_TRACK]


# --- common ------------------------------------------------------------------------------


def require_phase(cycle: Cycle, *phases: Phase) -> None:
    """Refuse to run a phase's work on a cycle that is not in that phase."""
    if cycle.phase in phases:
        return
    wanted = " or ".join(str(p) for p in phases)
    hint = ""
    order = list(Phase)
    if order.index(cycle.phase) < order.index(phases[0]):
        hint = f" (advance it first: aligncycle cycle advance {cycle.id})"
    raise TransitionRefused(
        f"the {phases[0]} phase runs on a cycle in {wanted}; cycle {cycle.id} is in "
        f"{cycle.phase}{hint}"
    )


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


# --- identify ----------------------------------------------------------------------------

#: A gap source proposes gaps for a cycle: (what to record, who reported it or None).
GapSourceFn = Callable[[Session, Cycle], Iterable[tuple[GapCreate, Person | None]]]


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


def checklist_gap_source(session: Session, cycle: Cycle) -> list[tuple[GapCreate, Person | None]]:
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


def record_answer_gap(session: Session, cycle: Cycle, item: ChecklistItem) -> Gap | None:
    """Record the gap an Identify answer implies, as :func:`identify_gaps_from_answers` would
    (same key, idempotent): ``checklist.answer_item`` calls it with every answer given in
    Identify. Returns the gap, new or already recorded (None: the answer implies none)."""
    require_phase(cycle, Phase.IDENTIFY)
    data = answer_gap(cycle, item)
    if data is None:
        return None
    gap, _ = gap_service.add_gap(session, cycle, data, item.answered_by)
    return gap


#: Where Identify looks for gaps. Another source (e.g. funnel KPIs below target) joins with
#: :func:`register_gap_source`; its gaps need a stable ``key`` so re-runs do not duplicate them.
def funnel_gap_source(session: Session, cycle: Cycle) -> list[tuple[GapCreate, Person | None]]:
    """The playbook's KPI rules over the cycle's baseline window (shared funnel data): each
    failed rule is recorded as a ``metric`` gap with its evidence, under a fixed key."""
    from models.funnel.evidence import evaluate_gap_rules

    evaluate_gap_rules(session, cycle)  # records its gaps itself (idempotent on their keys)
    return []


GAP_SOURCES: list[GapSourceFn] = [checklist_gap_source, funnel_gap_source]


def register_gap_source(source: GapSourceFn) -> None:
    if source not in GAP_SOURCES:
        GAP_SOURCES.append(source)


def identify_gaps_from_answers(
    session: Session, cycle: Cycle, sources: Iterable[GapSourceFn] | None = None
) -> list[Gap]:
    """Record the gaps the sources find (idempotent on each gap's key). Returns the new ones;
    gaps people added by hand are already in the analysis and are left as they are."""
    require_phase(cycle, Phase.IDENTIFY)
    created: list[Gap] = []
    for source in GAP_SOURCES if sources is None else sources:
        for data, reporter in source(session, cycle):
            gap, new = gap_service.add_gap(session, cycle, data, reporter)
            if new:
                created.append(gap)
    return created


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
            f"{i.key} ({i.owner})" for i in items if i.required and not i.answered
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


def _readiness_md(r: Readiness) -> list[str]:
    if r.ready:
        return [f"**Ready to advance** to {r.next_phase}."]
    lines = [f"**Not ready to leave {r.phase}:**", ""]
    lines += [f"- {b}" for b in r.blockers]
    if r.overridable:
        lines += ["", "A point person may advance anyway, giving a reason."]
    return lines


def render_identify_markdown(report: IdentifyReport) -> str:
    sev = Counter(g.severity for g in report.gaps)
    lines = [
        f"# Identify — cycle {report.cycle_id}: {report.title}",
        "",
        f"Checklist: {report.answered} of {report.questions} questions answered.",
        f"Gap analysis: {len(report.gaps)} gap(s)"
        + (f" ({', '.join(f'{sev[s]} {s}' for s in reversed(Severity) if sev[s])})" if sev else "")
        + (f", {len(report.new_gaps)} new this run" if report.new_gaps else "")
        + ".",
        "",
    ]
    if report.gaps:
        lines += ["| Gap | Category | Root cause | Severity | Decision |", "|---|---|---|---|---|"]
        lines += [
            f"| {_md(g.title)} | {g.category} | {g.root_cause} | {g.severity} | {g.decision} |"
            for g in report.gaps
        ]
        lines.append("")
    if report.unanswered_required:
        lines += ["Unanswered required questions:", ""]
        lines += [f"- {k}" for k in report.unanswered_required]
        lines.append("")
    if report.stale_gaps:
        lines += ["Gaps whose checklist answer has changed since (decide them):", ""]
        lines += [f"- {_md(t)}" for t in report.stale_gaps]
        lines.append("")
    return "\n".join(lines + _readiness_md(report.readiness)) + "\n"


# --- plan --------------------------------------------------------------------------------


def default_owner(session: Session, cycle: Cycle, owner: OwnerSpec | None) -> Person | None:
    """The one person a template's owner rule points at, or None (a lead assigns one)."""
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


def propose_actions(session: Session, cycle: Cycle, today: date) -> list[ActionItem]:
    """One proposed action item per accepted gap and matching playbook template. Owners are
    defaulted when exactly one person fits the template's owner; due dates come from the
    template (capped at the end of the cycle). Returns the items created by this call."""
    require_phase(cycle, Phase.PLAN)
    created: list[ActionItem] = []
    for gap in gap_service.list_gaps(session, cycle, GapDecision.ACCEPTED):
        created += propose_actions_for_gap(session, cycle, gap, today)
    return created


def propose_actions_for_gap(
    session: Session, cycle: Cycle, gap: Gap, today: date
) -> list[ActionItem]:
    """:func:`propose_actions` for one accepted gap: what ``gaps.decide_gap`` records when a
    gap is accepted during Plan (idempotent). Returns the items created by this call."""
    require_phase(cycle, Phase.PLAN)
    if gap.decision is not GapDecision.ACCEPTED:
        return []
    created: list[ActionItem] = []
    for template in cycle_service.spec(cycle).action_templates.get(gap.category, []):
        owner = default_owner(session, cycle, template.owner)
        counterpart = _counterpart(cycle, owner)
        due = today + timedelta(days=template.due_in_days)
        if due > cycle.period_end >= today:
            due = cycle.period_end
        item, new = action_service.add_action(
            session,
            cycle,
            ActionItemCreate(
                key=f"template:{gap.id}:{template.key}",
                gap_id=gap.id,
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


class ActionRow(BaseModel):
    id: int
    key: str | None
    title: str
    gap: str | None
    owner: str
    counterpart: str | None
    priority: str
    due_date: date | None
    status: str
    confidence: str
    success_measure: str | None = None
    overdue_days: int = 0


def _action_row(item: ActionItem, today: date) -> ActionRow:
    overdue = (
        (today - item.due_date).days
        if item.due_date and item.due_date < today and item.status not in FINISHED_STATUSES
        else 0
    )
    return ActionRow(
        id=item.id,
        key=item.key,
        title=item.title,
        gap=item.gap.title if item.gap else None,
        owner=action_owner_label(item),
        counterpart=item.counterpart.email if item.counterpart else None,
        priority=item.priority.value,
        due_date=item.due_date,
        status=item.status.value,
        confidence=item.confidence.value,
        success_measure=item.success_measure,
        overdue_days=overdue,
    )


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
        actions=[_action_row(i, today) for i in items],
        proposed=list(proposed_ids),
        unassigned=[i.title for i in items if i.owner_id is None and not i.status.finished],
        readiness=cycle_service.readiness(session, cycle, today),
    )


def actions_table(rows: list[ActionRow]) -> list[dict[str, Any]]:
    return [
        {
            "action": r.title,
            "gap": r.gap or "",
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
        f"{len(report.actions)} action item(s) for {report.accepted_gaps} accepted gap(s)"
        + (f"; {len(report.proposed)} proposed from the playbook now" if report.proposed else "")
        + ".",
        "",
    ]
    if report.actions:
        lines += ["| Action | Gap | Owner | Due | Priority | Status |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {_md(a.title)} | {_md(a.gap or '')} | {a.owner} | "
            f"{a.due_date.isoformat() if a.due_date else ''} | {a.priority} | {a.status} |"
            for a in report.actions
        ]
        lines.append("")
    if report.unassigned:
        lines += ["Waiting for a lead to assign an owner:", ""]
        lines += [f"- {_md(t)}" for t in report.unassigned]
        lines.append("")
    return "\n".join(lines + _readiness_md(report.readiness)) + "\n"


# --- execute -----------------------------------------------------------------------------


def checkin_key(today: date) -> str:
    return f"execute:{today.isoformat()}"


def unfinished_actions(session: Session, cycle: Cycle) -> list[ActionItem]:
    return action_service.list_actions(session, cycle_id=cycle.id, open_only=True)


def checkin_item(session: Session, item: ActionItem, today: date) -> tuple[CheckIn | None, bool]:
    """The Execute pass's check-in on one item: a dated snapshot of its status and
    confidence, its last known progress, and how overdue it is. One per item per day;
    finished items get none. Returns (check-in or None, created)."""
    cycle = cycle_service.get_cycle(session, item.cycle_id)
    require_phase(cycle, Phase.EXECUTE)
    if item.status in FINISHED_STATUSES:
        return None, False
    last_progress = session.scalar(
        select(CheckIn.progress)
        .where(CheckIn.action_item_id == item.id, CheckIn.progress.is_not(None))
        .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
        .limit(1)
    )
    if item.due_date is None:
        note = "no due date"
    elif item.due_date < today:
        note = f"overdue by {(today - item.due_date).days} day(s) (due {item.due_date.isoformat()})"
    else:
        note = f"due in {(item.due_date - today).days} day(s)"
    return action_service.add_checkin(
        session,
        item,
        CheckInCreate(
            key=checkin_key(today),
            on_date=today,
            progress=last_progress,
            note=f"execute pass: {item.status.value}, {item.confidence.value}, {note}",
        ),
        None,
        today,
    )


class ExecuteReport(BaseModel):
    cycle_id: int
    title: str
    on_date: date
    total: int
    done: int
    dropped: int
    open: int
    percent_done: float
    overdue: list[ActionRow]
    confidence: dict[str, int]
    #: The cycle's overall confidence: the worst of its open items (overdue counts as at risk).
    rollup: Confidence
    #: "How will we know": the execute checklist's answers and each item's success measure.
    success_measures: dict[str, str]
    checkins_written: int = 0
    actions: list[ActionRow]
    readiness: Readiness


def execute_report(
    session: Session, cycle: Cycle, today: date, checkins_written: int = 0
) -> ExecuteReport:
    items = action_service.list_actions(session, cycle_id=cycle.id)
    rows = [_action_row(i, today) for i in items]
    status = Counter(i.status for i in items)
    open_items = [i for i in items if i.status not in FINISHED_STATUSES]
    done, dropped = status.get(ActionStatus.DONE, 0), status.get(ActionStatus.DROPPED, 0)
    counted = len(items) - dropped
    rollup = Confidence.ON_TRACK
    for i in open_items:
        level = i.confidence
        if action_service.is_overdue(i, today) and level is Confidence.ON_TRACK:
            level = Confidence.AT_RISK
        if _CONFIDENCE_ORDER.index(level) > _CONFIDENCE_ORDER.index(rollup):
            rollup = level
    measures: dict[str, str] = {}
    for s in checklist(session, cycle, Phase.EXECUTE):
        if s.answer:
            measures[s.text] = s.answer
    for i in items:
        if i.success_measure and i.status is not ActionStatus.DROPPED:
            measures[i.title] = i.success_measure
    return ExecuteReport(
        cycle_id=cycle.id,
        title=cycle.title,
        on_date=today,
        total=len(items),
        done=done,
        dropped=dropped,
        open=len(open_items),
        percent_done=round(100 * done / counted, 1) if counted else 0.0,
        overdue=[r for r in rows if r.overdue_days > 0],
        confidence=dict(Counter(i.confidence.value for i in open_items)),
        rollup=rollup,
        success_measures=measures,
        checkins_written=checkins_written,
        actions=rows,
        readiness=cycle_service.readiness(session, cycle, today),
    )


def execute_pass(session: Session, cycle: Cycle, today: date) -> ExecuteReport:
    """One check-in pass over the cycle, then the progress report. Safe to run again."""
    require_phase(cycle, Phase.EXECUTE)
    written = 0
    for item in unfinished_actions(session, cycle):
        _, new = checkin_item(session, item, today)
        written += new
    return execute_report(session, cycle, today, written)


def render_execute_markdown(report: ExecuteReport) -> str:
    spread = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(report.confidence.items()))
    lines = [
        f"# Execute — cycle {report.cycle_id}: {report.title} ({report.on_date.isoformat()})",
        "",
        f"Progress: {report.done} of {report.total - report.dropped} action item(s) done "
        f"({report.percent_done:g}%), {report.dropped} dropped, {report.open} open.",
        f"Confidence: {report.rollup.value.replace('_', ' ')} ({spread or 'nothing open'}).",
        "",
    ]
    if report.overdue:
        lines += ["Overdue:", ""]
        lines += [
            f"- {_md(r.title)} — {r.owner}, due {r.due_date}, {r.overdue_days} day(s) late"
            for r in report.overdue
        ]
        lines.append("")
    if report.success_measures:
        lines += ["How we will know:", ""]
        lines += [f"- {_md(k)}: {_md(v)}" for k, v in report.success_measures.items()]
        lines.append("")
    return "\n".join(lines + _readiness_md(report.readiness)) + "\n"


# --- recap -------------------------------------------------------------------------------


class RecapSection(BaseModel):
    """A section another part of the domain adds to the recap (e.g. KPI deltas)."""

    title: str
    lines: list[str]


#: Extra recap sections: each source returns a section for the cycle, or None. The seam for
#: the funnel's KPI deltas (register with :func:`register_recap_section`).
RecapSectionFn = Callable[[Session, Cycle, date], RecapSection | None]


def funnel_recap_section(session: Session, cycle: Cycle, today: date) -> RecapSection | None:
    """Did we see improvements? Every KPI and action target measured against the baseline,
    and where the survey's sentiment and the numbers disagree."""
    from models.funnel.evidence import measure_recap

    measurement = measure_recap(session, cycle, today=today)
    if measurement.measured == "no data" and not measurement.targets:
        return None
    return RecapSection(title="The numbers: KPIs against the baseline", lines=measurement.summary)


RECAP_SECTIONS: list[RecapSectionFn] = [funnel_recap_section]


def register_recap_section(source: RecapSectionFn) -> None:
    if source not in RECAP_SECTIONS:
        RECAP_SECTIONS.append(source)


class DecidedGap(BaseModel):
    title: str
    decision: str
    reason: str | None = None


class RecapReport(BaseModel):
    cycle_id: int
    title: str
    phase: Phase
    period_start: date
    period_end: date
    playbook: str
    on_date: date
    gaps_found: int
    gaps_by_decision: dict[str, int]
    decided_gaps: list[DecidedGap]
    actions_total: int
    actions_done: list[str]
    actions_dropped: list[str]
    actions_late: list[str]
    actions_unfinished: list[str]
    survey_responses: int
    survey_mean: float | None
    survey_by_team: dict[str, float | None]
    survey_comments: list[str]
    improvements: list[str]
    growth_areas: list[str]
    next_time: list[str]
    summary: str | None
    drafted_by_flow: bool
    signed_off_by: str | None
    follow_up_cycles: list[int] = Field(default_factory=list)
    carried_over: int = 0
    sections: list[RecapSection] = Field(default_factory=list)

    @property
    def headline(self) -> str:
        mean = f"{self.survey_mean:g}" if self.survey_mean is not None else "n/a"
        return (
            f"{self.gaps_found} gap(s) found, {self.gaps_by_decision.get('accepted', 0)} accepted; "
            f"actions: {len(self.actions_done)} done, {len(self.actions_late)} late, "
            f"{len(self.actions_dropped)} dropped of {self.actions_total}; "
            f"survey mean {mean} ({self.survey_responses} response(s)); "
            f"{len(self.growth_areas)} growth area(s)"
        )


def _draft(facts: dict[str, Any], done: list[str]) -> RetrospectiveRecord:
    unfinished = facts["actions_unfinished"]
    return RetrospectiveRecord(
        improvements=[f"done: {t}" for t in done],
        next_time=(
            [f"carry the {unfinished} open action item(s) into the next cycle"]
            if unfinished
            else []
        ),
        summary=(
            f"{facts['actions_done']} of {facts['actions_total']} action item(s) done, "
            f"{facts['actions_late']} late; {len(facts['unresolved_gaps'])} gap(s) unresolved."
        ),
    )


def _labels(items: list[ActionItem]) -> dict[int, str]:
    """Item titles, with the gap added where two items share a title (one template proposed
    for two gaps of the same category)."""
    count = Counter(i.title for i in items)
    return {
        i.id: f"{i.title} (gap: {i.gap.title})" if count[i.title] > 1 and i.gap else i.title
        for i in items
    }


def follow_up_cycles(session: Session, cycle: Cycle) -> list[Cycle]:
    return list(
        session.scalars(select(Cycle).where(Cycle.previous_cycle_id == cycle.id).order_by(Cycle.id))
    )


def build_recap(
    session: Session,
    cycle: Cycle,
    today: date,
    sections: Iterable[RecapSectionFn] | None = None,
) -> RecapReport:
    """The recap from what happened. In recap, drafts the retrospective when nobody has
    recorded one yet (and refreshes a still unsigned draft of its own); a retrospective a
    person recorded is never touched. Carries open items into follow-up cycles started from
    this one. In closed, only reads."""
    require_phase(cycle, Phase.RECAP, Phase.CLOSED)
    items = action_service.list_actions(session, cycle_id=cycle.id)
    label = _labels(items)
    done = [label[i.id] for i in items if i.status is ActionStatus.DONE]
    carried = 0
    facts = recap_service.cycle_facts(session, cycle, today)
    if cycle.phase is Phase.RECAP:
        retro = recap_service.get_retrospective(session, cycle)
        own_draft = retro is not None and retro.recorded_by_id is None
        if retro is None or (own_draft and retro.signed_off_at is None and retro.facts != facts):
            draft = _draft(facts, done)
            if retro is not None:
                draft = draft.model_copy(update={"expected_version": retro.version})
            recap_service.record_retrospective(session, cycle, draft, None, today)
        for follow_up in follow_up_cycles(session, cycle):
            if follow_up.phase is not Phase.CLOSED:
                carried += cycle_service.carry_over(session, cycle, follow_up, None)
    retro = recap_service.get_retrospective(session, cycle)
    gaps = gap_service.list_gaps(session, cycle)
    survey = recap_service.summarize_survey(session, cycle)
    return RecapReport(
        cycle_id=cycle.id,
        title=cycle.title,
        phase=cycle.phase,
        period_start=cycle.period_start,
        period_end=cycle.period_end,
        playbook=f"{cycle.playbook.name}@{cycle.playbook.version}",
        on_date=today,
        gaps_found=len(gaps),
        gaps_by_decision=dict(Counter(g.decision.value for g in gaps)),
        decided_gaps=[
            DecidedGap(title=g.title, decision=g.decision.value, reason=g.decision_reason)
            for g in gaps
            if g.decision is not GapDecision.OPEN
        ],
        actions_total=len(items),
        actions_done=done,
        actions_dropped=[label[i.id] for i in items if i.status is ActionStatus.DROPPED],
        actions_late=[label[i.id] for i in items if recap_service._late(i, today)],
        actions_unfinished=[label[i.id] for i in items if i.status not in FINISHED_STATUSES],
        survey_responses=survey.responses,
        survey_mean=survey.mean,
        survey_by_team={t.team: t.mean for t in survey.by_team},
        survey_comments=survey.comments,
        improvements=list(retro.improvements) if retro else [],
        growth_areas=list(retro.growth_areas) if retro else list(facts["growth_areas"]),
        next_time=list(retro.next_time) if retro else [],
        summary=retro.summary if retro else None,
        drafted_by_flow=retro is not None and retro.recorded_by_id is None,
        signed_off_by=retro.signed_off_by.email if retro and retro.signed_off_by else None,
        follow_up_cycles=[c.id for c in follow_up_cycles(session, cycle)],
        carried_over=carried,
        sections=[
            section
            for source in (RECAP_SECTIONS if sections is None else sections)
            if (section := source(session, cycle, today)) is not None
        ],
    )


def render_recap_markdown(report: RecapReport) -> str:
    def section(title: str, entries: list[str]) -> list[str]:
        if not entries:
            return [f"## {title}", "", "None.", ""]
        return [f"## {title}", ""] + [f"- {_md(e)}" for e in entries] + [""]

    mean = f"{report.survey_mean:g} / 5" if report.survey_mean is not None else "no responses"
    lines = [
        f"# Recap — cycle {report.cycle_id}: {report.title}",
        "",
        f"Playbook {report.playbook}, {report.period_start.isoformat()} to "
        f"{report.period_end.isoformat()}; report of {report.on_date.isoformat()} "
        f"(cycle in {report.phase}).",
        "",
        f"**{report.headline}.**",
        "",
    ]
    if report.summary:
        lines += [_md(report.summary), ""]
    lines += ["## Gaps", ""]
    if report.decided_gaps:
        lines += ["| Gap | Decision | Reason |", "|---|---|---|"]
        lines += [
            f"| {_md(g.title)} | {g.decision} | {_md(g.reason or '')} |"
            for g in report.decided_gaps
        ]
    else:
        lines.append("No gaps were decided.")
    lines.append("")
    lines += section("Done", report.actions_done)
    lines += section("Late", report.actions_late)
    lines += section("Dropped", report.actions_dropped)
    lines += section("Still open", report.actions_unfinished)
    lines += ["## Team survey", "", f"Mean score: {mean} ({report.survey_responses} response(s))."]
    if report.survey_by_team:
        lines += [""] + [
            f"- {team}: {m:g}" if m is not None else f"- {team}: n/a"
            for team, m in report.survey_by_team.items()
        ]
    if report.survey_comments:
        lines += ["", "Comments:", ""] + [f"- “{_md(c)}”" for c in report.survey_comments]
    lines.append("")
    for extra in report.sections:
        lines += [f"## {extra.title}", ""] + [_md(x) for x in extra.lines] + [""]
    lines += section("Improvements", report.improvements)
    lines += section("Growth areas", report.growth_areas)
    lines += section("Next time", report.next_time)
    retro_by = (
        "drafted by the recap flow" if report.drafted_by_flow else "recorded by a point person"
    )
    signed = (
        f"signed off by {report.signed_off_by}" if report.signed_off_by else "not signed off yet"
    )
    lines += [f"Retrospective {retro_by}; {signed}."]
    if report.follow_up_cycles:
        ids = ", ".join(str(i) for i in report.follow_up_cycles)
        lines += ["", f"Follow-up cycle(s): {ids}; open action items are carried over."]
    return "\n".join(lines) + "\n"


def recap_filename(cycle_id: int) -> str:
    return f"cycle-{cycle_id}-recap.md"


# --- the point person's decision between phases --------------------------------------------


class PhaseDecision(BaseModel):
    """What the point person decides at the end of a phase (the form in the Prefect UI, or
    ``aligncycle cycle advance``). Checked by the domain, never by the form alone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decided_by: str = Field(
        min_length=3, max_length=320, description="Your email: a point person of this cycle."
    )
    decision: Literal["advance", "stay", "stop"] = Field(
        default="advance",
        description=(
            "advance: move to the next phase (its gate must be met); stay: keep working in "
            "this phase (give a reason); stop: end this waiting run, the cycle keeps its phase."
        ),
    )
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description=(
            "Why you stay; or, advancing out of execute with unfinished action items, why "
            "that is acceptable (the override reason)."
        ),
    )
    follow_up_title: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "Only when closing a recap: start the next cycle with this title; open action items "
            "are carried into it."
        ),
    )


class DecisionOutcome(BaseModel):
    cycle_id: int
    decision: str
    decided_by: str
    from_phase: Phase
    phase: Phase
    advanced: bool = False
    stopped: bool = False
    follow_up_cycle_id: int | None = None
    carried_over: int = 0
    message: str


def _decider(session: Session, cycle: Cycle, decision: PhaseDecision) -> Person:
    actor = person_by_email(session, decision.decided_by)
    if actor.id not in cycle_service.point_person_ids(cycle):
        raise Forbidden(f"only a point person of cycle {cycle.id} decides on its phases")
    return actor


def check_decision(
    session: Session,
    cycle: Cycle,
    decision: PhaseDecision,
    today: date,
    expected_phase: Phase | None = None,
    *,
    to: Phase | None = None,
    expected_version: int | None = None,
    gate: bool = True,
) -> Person:
    """Every check :func:`apply_decision` makes, without writing. Returns the decider.
    ``gate=False`` leaves out the phase's gate (who decides, and what, only).
    ``expected_phase``: the phase the decision was asked in (a waiting run knows it);
    ``to``: the phase the decider expects next; ``expected_version``: the cycle as they read it."""
    check_version(cycle, expected_version, f"cycle {cycle.id}")
    if expected_phase is not None and cycle.phase is not expected_phase:
        raise TransitionRefused(
            f"cycle {cycle.id} is in {cycle.phase} now, not {expected_phase}: someone else "
            "moved it meanwhile"
        )
    actor = _decider(session, cycle, decision)
    if decision.decision == "stop":
        return actor
    if cycle.phase is Phase.CLOSED:
        raise InvalidInput(f"cycle {cycle.id} is closed")
    if decision.decision == "stay":
        if not decision.reason:
            raise InvalidInput("staying in a phase needs a reason")
        if decision.follow_up_title:
            raise InvalidInput("a follow-up cycle is started when closing a recap, not staying")
        return actor
    target = to or cycle.phase.next
    if decision.follow_up_title and target is not Phase.CLOSED:
        raise InvalidInput(
            "a follow-up cycle is started when closing a recap; "
            f"cycle {cycle.id} is in {cycle.phase}"
        )
    assert target is not None
    if decision.follow_up_title and actor.role is not Role.POINT_PERSON:
        raise Forbidden(f"only point persons start cycles (you are a {actor.role})")
    if gate:
        check_transition(
            as_actor(actor), cycle_service.facts(session, cycle), target, today, decision.reason
        )
    elif target is not cycle.phase.next:
        raise TransitionRefused(
            f"phases advance in order: the cycle is in {cycle.phase}, "
            f"so the next phase is {cycle.phase.next}, not {target}"
        )
    return actor


def apply_decision(
    session: Session,
    cycle: Cycle,
    decision: PhaseDecision,
    today: date,
    expected_phase: Phase | None = None,
    *,
    to: Phase | None = None,
    expected_version: int | None = None,
) -> DecisionOutcome:
    """Apply the point person's decision through the domain's rules (``advance_cycle``).
    ``stay`` records the reason; ``stop`` writes nothing (it only ends a waiting run)."""
    actor = check_decision(
        session, cycle, decision, today, expected_phase, to=to, expected_version=expected_version
    )
    before = cycle.phase
    out = DecisionOutcome(
        cycle_id=cycle.id,
        decision=decision.decision,
        decided_by=actor.email,
        from_phase=before,
        phase=before,
        message="",
    )
    if decision.decision == "stop":
        out.stopped = True
        out.message = f"cycle {cycle.id} stays in {before}; the waiting run ends"
        return out
    record_event(
        session,
        actor=actor,
        verb="cycle.decision",
        obj=cycle,
        cycle_id=cycle.id,
        before={"phase": before},
        after={"decision": decision.decision, "reason": decision.reason},
    )
    if decision.decision == "stay":
        out.message = f"cycle {cycle.id} stays in {before}: {decision.reason}"
        return out
    cycle_service.advance_cycle(
        session, cycle, actor, to=to, override_reason=decision.reason, today=today
    )
    out.phase = cycle.phase
    out.advanced = True
    out.message = f"cycle {cycle.id} advanced from {before} to {cycle.phase}"
    if decision.follow_up_title:
        follow_up, carried = start_follow_up(session, cycle, actor, decision.follow_up_title, today)
        out.follow_up_cycle_id = follow_up.id
        out.carried_over = carried
        out.message += (
            f"; follow-up cycle {follow_up.id} started with {carried} open action item(s) "
            "carried over"
        )
    return out


def start_follow_up(
    session: Session, cycle: Cycle, actor: Person, title: str, today: date
) -> tuple[Cycle, int]:
    """Start the next cycle from this one (same playbook, newest version; same teams and
    point persons), carrying over its open action items. Returns (cycle, items carried).
    Idempotent: an existing follow-up is reused and only what is missing is carried."""
    existing = follow_up_cycles(session, cycle)
    if existing:
        follow_up = existing[0]
        return follow_up, cycle_service.carry_over(session, cycle, follow_up, actor)
    data = CycleCreate(
        playbook=cycle.playbook.name,
        title=title,
        teams=[ct.team.key for ct in cycle.teams],
        point_persons=[ct.point_person.email for ct in cycle.teams if ct.point_person],
        previous_cycle_id=cycle.id,
        period_start=today,
    )
    follow_up = cycle_service.start_cycle(session, data, actor, today)
    session.flush()
    carried = session.scalar(
        select(func.count())
        .select_from(ActionItem)
        .where(ActionItem.cycle_id == follow_up.id, ActionItem.carried_from_id.is_not(None))
    )
    return follow_up, carried or 0


def refresh_phase(session: Session, cycle: Cycle, today: date) -> None:
    """Bring what the current phase derives from people's input up to date, as its flow's
    writing task does (idempotent): Identify's gaps from answers, Plan's proposals, Recap's
    drafted retrospective. Execute derives nothing its gate looks at.

    Called in the decision's own unit of work, just before it, so the gate sees everything:
    a refused decision rolls this back too. The gate does not depend on it to see what people
    entered: an Identify answer records the gaps it implies, and a gap accepted in Plan its
    proposals, when they are entered. This catches up on what the phase's flow would write:
    the KPI-rule gaps (when neither the Identify flow nor ``kpi gaps`` ran), proposals for gaps
    accepted in Identify (when the Plan flow did not run), the recap's draft."""
    if cycle.phase is Phase.IDENTIFY:
        identify_gaps_from_answers(session, cycle)
    elif cycle.phase is Phase.PLAN:
        propose_actions(session, cycle, today)
    elif cycle.phase is Phase.RECAP:
        build_recap(session, cycle, today)


class PhaseStart(BaseModel):
    """What a phase starts with: what :func:`start_phase` wrote on entering it."""

    phase: Phase
    #: Plan: the action items proposed now from the playbook for the accepted gaps.
    proposed: list[int] = Field(default_factory=list)
    #: Execute: the check-ins the first check-in pass wrote (one per open item).
    checkins_written: int = 0
    #: Recap: the retrospective is the drafted one (nobody had recorded one yet).
    drafted_retrospective: bool = False

    @property
    def summary(self) -> str | None:
        """One line for people, or None when the phase started with nothing new."""
        if self.proposed:
            return (
                f"{len(self.proposed)} action item(s) proposed from the playbook for the "
                "accepted gaps: check their owners and due dates"
            )
        if self.checkins_written:
            return f"{self.checkins_written} open action item(s) got their first check-in"
        if self.drafted_retrospective:
            return "a draft retrospective is ready to review, complete and sign off"
        return None


def start_phase(session: Session, cycle: Cycle, today: date) -> PhaseStart:
    """Write what the phase the cycle is in starts with, as its flow's writing task does
    (idempotent, so the flow running afterwards adds nothing): Plan, the playbook's proposals
    for the accepted gaps (:func:`propose_actions`); Execute, a check-in pass
    (:func:`execute_pass`); Recap, the drafted retrospective and carry-over
    (:func:`build_recap`). Closed starts with nothing: the recap flow then only reads (the
    report file it writes is the flow's job)."""
    out = PhaseStart(phase=cycle.phase)
    if cycle.phase is Phase.PLAN:
        out.proposed = [a.id for a in propose_actions(session, cycle, today)]
    elif cycle.phase is Phase.EXECUTE:
        out.checkins_written = execute_pass(session, cycle, today).checkins_written
    elif cycle.phase is Phase.RECAP:
        out.drafted_retrospective = build_recap(session, cycle, today).drafted_by_flow
    return out


class Advanced(BaseModel):
    """What :func:`advance` did: the move, and what the new phase started with."""

    cycle_id: int
    from_phase: Phase
    phase: Phase
    started: PhaseStart


def advance(
    session: Session,
    cycle: Cycle,
    actor: Person,
    *,
    today: date,
    to: Phase | None = None,
    override_reason: str | None = None,
    expected_version: int | None = None,
) -> Advanced:
    """Advance the cycle as the phase flows would, without them (the web, the API,
    ``cycle advance --no-flows``), in the caller's unit of work: bring what the current phase
    derives up to date (:func:`refresh_phase`), move through the gate
    (``cycles.advance_cycle``: who, which phase, the gate), then write what the new phase
    starts with (:func:`start_phase`).

    ``expected_version`` is the cycle as the person read it, compared before anything is
    written. A refusal raises a :class:`~models.errors.DomainError` before the caller commits,
    so the refresh is rolled back with it; the refresh is not even tried for someone who may
    not advance the cycle (or towards a phase that is not next)."""
    check_version(cycle, expected_version, f"cycle {cycle.id}")
    before = cycle.phase
    may_try = (
        before is not Phase.CLOSED
        and (to is None or to is before.next)
        and is_point_person(as_actor(actor), cycle_service.permission_facts(cycle))
    )
    if may_try:
        refresh_phase(session, cycle, today)
    # The version was compared above, as read; a concurrent move still fails on the row's
    # version counter when this flushes.
    cycle_service.advance_cycle(
        session, cycle, actor, to=to, override_reason=override_reason, today=today
    )
    started = start_phase(session, cycle, today)
    return Advanced(cycle_id=cycle.id, from_phase=before, phase=cycle.phase, started=started)


# --- reading the decision context (what the pause form shows) ------------------------------


def decision_prompt(session: Session, cycle: Cycle, today: date) -> str:
    """Markdown shown with the decision form: where the cycle is and what blocks it."""
    r = cycle_service.readiness(session, cycle, today)
    lines = [
        f"**Cycle {cycle.id} — {cycle.title}** is in **{cycle.phase}**.",
        "",
        *_readiness_md(r),
        "",
        "Decide as a point person of this cycle: `advance`, `stay` (with a reason) or `stop`.",
        f"From a terminal: `aligncycle cycle advance {cycle.id} --as YOUR_EMAIL`.",
    ]
    return "\n".join(lines)


def _md(text: str) -> str:
    """Keep user text from breaking a Markdown table or list."""
    return " ".join(str(text).split()).replace("|", "\\|")
