"""A cycle's life: starting it, the point person's decision between phases, and what each
new phase starts with.

:func:`start_cycle` starts a cycle with everything it starts from (carried-over items, the
KPI baseline and KPI gaps); :func:`advance` moves it through the gate in one unit of work,
as every face (web, API, CLI, flows) does: refresh what the phase derives, check the gate,
move, write what the new phase starts with.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import (
    Phase,
    Role,
)
from models.errors import Forbidden, InvalidInput, TransitionRefused
from models.phases import agreement as agreement_phase
from models.phases import content, dispatch
from models.phases import numbers as kpi_checks
from models.phases.breaches import breach_gaps
from models.phases.carry_over import carry_over, follow_up_cycles
from models.phases.common import readiness_md
from models.phases.execute import execute_pass
from models.phases.identify import raise_gaps
from models.phases.plan import propose_actions
from models.phases.recap import build_recap
from models.rules import check_transition, counted, is_point_person
from models.schemas import (
    CycleCreate,
)
from models.services import cycles as cycle_service
from models.services import recap as recap_service
from models.services.common import as_actor, check_version, person_by_email, record_event
from models.tables import ActionItem, Cycle, Person
from models.words import phase_name, value_word


def start_cycle(
    session: Session, data: CycleCreate, actor: Person, today: date | None = None
) -> Cycle:
    """Start a cycle (``cycles.start_cycle``: its teams, point persons and checklists) with
    what it starts from: a follow-up takes over its previous cycle's open action items, and on
    a store with shared funnel data the KPI baseline is frozen and the playbook's KPI rules
    raise their gaps, so the gap analysis holds them from the first page. Every face starts
    cycles through this."""
    cycle = cycle_service.start_cycle(session, data, actor, today)
    if cycle.previous_cycle_id is not None:
        previous = cycle_service.get_cycle(session, cycle.previous_cycle_id)
        carry_over(session, previous, cycle, actor)
    agreement_phase.on_cycle_start(session, cycle, actor)  # before the baseline: its SLA is agreed
    kpi_checks.record_numbers_at_start(session, cycle)
    content.evaluate_material_questions(session, cycle)  # content questions, from the ratings
    breach_gaps(session, cycle, today)  # the earlier cycle's SLA breaches, as gaps to decide
    return cycle


class PhaseDecision(BaseModel):
    """What the point person decides at the end of a phase (the web app's advance form, the
    API, ``aligncycle cycle advance``). Checked by the domain, never by the form alone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decided_by: str = Field(
        min_length=3, max_length=320, description="Your email: a point person of this cycle."
    )
    decision: Literal["advance", "stay", "stop"] = Field(
        default="advance",
        description=(
            "advance: move to the next phase (its gate must be met); stay: keep working in "
            "this phase (give a reason); stop: decide nothing now, the cycle keeps its phase."
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
                f"{counted(len(self.proposed), 'action item')} proposed from the playbook for the "
                "accepted gaps: check their owners and due dates"
            )
        if self.checkins_written:
            return f"{counted(self.checkins_written, 'open action item')} got their first check-in"
        if self.drafted_retrospective:
            return "a draft retrospective is ready: a point person reviews and saves it"
        return None


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
    #: What the new phase started with (advancing only).
    started: PhaseStart | None = None
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
    ``expected_phase``: the phase the decision was asked in;
    ``to``: the phase the decider expects next; ``expected_version``: the cycle as they read it."""
    check_version(cycle, expected_version, f"cycle {cycle.id}")
    if expected_phase is not None and cycle.phase is not expected_phase:
        raise TransitionRefused(
            f"the cycle is in {phase_name(cycle.phase)} now, not {phase_name(expected_phase)}: "
            "someone else "
            "moved it meanwhile"
        )
    actor = _decider(session, cycle, decision)
    if decision.decision == "stop":
        return actor
    if cycle.phase is Phase.CLOSED:
        raise InvalidInput("the cycle is closed")
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
            f"the cycle is in {phase_name(cycle.phase)}"
        )
    assert target is not None
    if decision.follow_up_title and actor.role is not Role.POINT_PERSON:
        raise Forbidden(f"only point persons start cycles (you are a {value_word(actor.role)})")
    if gate:
        check_transition(
            as_actor(actor), cycle_service.facts(session, cycle), target, today, decision.reason
        )
    elif target is not cycle.phase.next:
        raise TransitionRefused(
            f"phases advance in order: the cycle is in {phase_name(cycle.phase)}, "
            f"so the next phase is {phase_name(cycle.phase.next)}, not {phase_name(target)}"
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
    """Apply the point person's decision through the domain's rules. ``advance`` is
    :func:`advance` (refresh what the phase derives, the gate, the move, what the new phase
    starts with), then the follow-up cycle when one is asked for; ``stay`` records the reason;
    ``stop`` writes nothing. All in the caller's unit of work."""
    actor = check_decision(
        session,
        cycle,
        decision,
        today,
        expected_phase,
        to=to,
        expected_version=expected_version,
        gate=False,
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
        out.message = f"cycle {cycle.id} stays in {phase_name(before)}; nothing was decided"
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
        out.message = f"cycle {cycle.id} stays in {phase_name(before)}: {decision.reason}"
        return out
    out.started = advance(
        session, cycle, actor, today=today, to=to, override_reason=decision.reason
    ).started
    out.phase = cycle.phase
    out.advanced = True
    out.message = f"cycle {cycle.id} moved from {phase_name(before)} to {phase_name(cycle.phase)}"
    if decision.follow_up_title:
        follow_up, carried = start_follow_up(session, cycle, actor, decision.follow_up_title, today)
        out.follow_up_cycle_id = follow_up.id
        out.carried_over = carried
        out.message += (
            f"; follow-up cycle {follow_up.id} started with {counted(carried, 'open action item')} "
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
        return follow_up, carry_over(session, cycle, follow_up, actor)
    data = CycleCreate(
        playbook=cycle.playbook.name,
        title=title,
        teams=[ct.team.key for ct in cycle.teams],
        point_persons=[ct.point_person.email for ct in cycle.teams if ct.point_person],
        previous_cycle_id=cycle.id,
        period_start=today,
    )
    follow_up = start_cycle(session, data, actor, today)
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
        raise_gaps(session, cycle)
    elif cycle.phase is Phase.PLAN:
        propose_actions(session, cycle, today)
    elif cycle.phase is Phase.RECAP:
        build_recap(session, cycle, today)


def start_phase(session: Session, cycle: Cycle, today: date) -> PhaseStart:
    """Write what the phase the cycle is in starts with, as its flow's writing task does
    (idempotent, so the flow running afterwards adds nothing): Plan, the playbook's proposals
    for the accepted gaps (:func:`propose_actions`); Execute, a check-in pass
    (:func:`execute_pass`); Recap, the drafted retrospective and carry-over
    (:func:`build_recap`). Closed closes the survey (answers still waiting for their batch
    are never shown: the audit log records who gave them); the recap flow then only reads
    (the report file it writes is the flow's job)."""
    out = PhaseStart(phase=cycle.phase)
    if cycle.phase is Phase.PLAN:
        out.proposed = [a.id for a in propose_actions(session, cycle, today)]
    elif cycle.phase is Phase.EXECUTE:
        out.checkins_written = execute_pass(session, cycle, today).checkins_written
    elif cycle.phase is Phase.RECAP:
        out.drafted_retrospective = build_recap(session, cycle, today).drafted_by_flow
    elif cycle.phase is Phase.CLOSED:
        recap_service.close_survey(session, cycle)
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
    # The new phase's flow is asked for with the move, in this transaction (the outbox a
    # dispatcher starts it from): whoever moved the cycle, the flow runs once.
    dispatch.record(session, cycle, today)
    return Advanced(cycle_id=cycle.id, from_phase=before, phase=cycle.phase, started=started)


# --- reading the decision context (what the cycle flow publishes) -------------------------


def decision_prompt(
    session: Session, cycle: Cycle, today: date, page_url: str | None = None
) -> str:
    """Markdown for the Prefect UI: where the cycle is, what blocks it, and where a point
    person decides (the web app's page of the cycle, or the CLI)."""
    r = cycle_service.readiness(session, cycle, today)
    where = f"on [the cycle's page]({page_url})" if page_url else "on the cycle's page"
    lines = [
        f"**Cycle {cycle.id} — {cycle.title}** is in **{phase_name(cycle.phase)}**.",
        "",
        *readiness_md(r),
        "",
        f"A point person of this cycle decides in the web app, {where}, signed in;",
        f"or from a terminal: `aligncycle cycle advance {cycle.id} --as YOUR_EMAIL`.",
    ]
    return "\n".join(lines)
