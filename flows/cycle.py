"""The cycle flow: a whole cycle, phase after phase, with the point person's sign-off between
phases.

After each phase's flow the run pauses (``pause_flow_run`` with a :class:`PhaseDecision` input:
the Prefect UI shows a form) until a point person decides: ``advance`` (the phase's gate must
be met), ``stay`` (with a reason) or ``stop`` (end this run; the cycle keeps its phase).
``aligncycle cycle advance`` resumes the waiting run with the same input. Every decision goes
through the domain (``models.phases.lifecycle.apply_decision`` → ``advance_cycle``); a refused
one is published and the run waits again.

A pause keeps this process alive while it waits (``suspend_flow_run`` would need a
deployment). The run carries the tags ``cycle:<id>`` and ``store:<id>`` so a second client can
find it.
"""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.flow_runs import pause_flow_run
from pydantic import BaseModel, ValidationError

from flows.phases import run_phase
from flows.runtime import (
    TASK,
    WRITER,
    cycle_tags,
    publish_markdown,
    store,
    tag_flow_run,
    untagged,
    without_limits,
)
from models.enums import Phase
from models.errors import Conflict, DomainError
from models.phases import lifecycle as domain
from models.phases.lifecycle import DecisionOutcome, PhaseDecision
from models.schemas import validation_message
from models.services import cycles as cycle_service

#: How long a run waits for a decision before it gives up (and ends Failed): two weeks.
DEFAULT_DECISION_TIMEOUT = 14 * 24 * 3600
#: How often a waiting run looks for the decision; a resume takes effect within this.
DEFAULT_POLL_INTERVAL = 2


class Decided(BaseModel):
    applied: bool
    message: str
    #: The cycle's phase after the decision (also when refused: someone may have moved it).
    phase: Phase
    outcome: DecisionOutcome | None = None


@task(name="current phase", **TASK)
def current_phase(cycle_id: int) -> Phase:
    with store().unit_of_work() as s:
        return cycle_service.get_cycle(s, cycle_id).phase


@task(name="decision prompt", **TASK)
def decision_prompt(cycle_id: int, today: date) -> str:
    with store().unit_of_work() as s:
        return domain.decision_prompt(s, cycle_service.get_cycle(s, cycle_id), today)


@task(name="apply the decision", **WRITER)
def decide(cycle_id: int, decision: PhaseDecision, today: date, expected: Phase) -> Decided:
    """The point person's decision through the domain's rules; a refusal is an answer too.

    ``advance`` first brings what the phase derives up to date with what was entered while the
    run waited (what the gate looks at), in the same transaction: a refusal leaves the store as
    it was."""
    try:
        with store().unit_of_work() as s:
            cycle = cycle_service.get_cycle(s, cycle_id)
            outcome = domain.apply_decision(s, cycle, decision, today, expected_phase=expected)
        return Decided(applied=True, message=outcome.message, phase=outcome.phase, outcome=outcome)
    except Conflict:
        raise  # retried
    except DomainError as exc:
        with store().unit_of_work() as s:
            phase = cycle_service.get_cycle(s, cycle_id).phase
        return Decided(applied=False, message=f"decision refused: {exc}", phase=phase)


def decision_form(description: str) -> Any:
    """The pause input: :class:`PhaseDecision` as a Prefect ``RunInput`` with the prompt."""
    from prefect.input import RunInput

    return RunInput.subclass_from_base_model_type(PhaseDecision).with_initial_data(
        description=description
    )


def _run_phase(phase: Phase, cycle_id: int, today: date | None) -> Any:
    """A phase's flow as a subflow (heartbeat off); a domain refusal is logged, not fatal."""
    try:
        return run_phase(phase, cycle_id, today)
    except DomainError as exc:
        get_run_logger().warning("%s flow refused: %s", phase, exc)
        return None


@flow(name="cycle", flow_run_name="cycle-{cycle_id}", persist_result=False)
def cycle_flow(
    cycle_id: int,
    decision_timeout: int = DEFAULT_DECISION_TIMEOUT,
    poll_interval: int = DEFAULT_POLL_INTERVAL,
    today: date | None = None,
) -> list[DecisionOutcome]:
    """Drive a cycle from its current phase to closed (or until a point person stops the run),
    waiting for the point person's decision after each phase."""
    with untagged():
        logger = get_run_logger()
        tag_flow_run(*cycle_tags(cycle_id))
        outcomes: list[DecisionOutcome] = []
        phase = current_phase(cycle_id)
        if phase is Phase.CLOSED:
            logger.info("cycle %s is closed; nothing to run", cycle_id)
            return outcomes
        _run_phase(phase, cycle_id, today)
        for round_ in itertools.count(1):
            description = decision_prompt(cycle_id, today or date.today())
            try:
                answer = pause_flow_run(
                    wait_for_input=decision_form(description),
                    timeout=decision_timeout,
                    poll_interval=poll_interval,
                    key=f"decision-{phase}-{round_}",
                )
                decision = PhaseDecision.model_validate(answer.model_dump())
            except ValidationError as exc:
                message = f"decision refused: {validation_message(exc)}"
                logger.warning(message)
                title = f"Cycle {cycle_id}: decision refused"
                publish_markdown(cycle_id, "decision", message, title)
                continue
            logger.info("decision from %s: %s", decision.decided_by, decision.decision)
            decided = decide.with_options(
                tags=without_limits([f"phase:{phase}", f"owner:{decision.decided_by.lower()}"])
            )(cycle_id, decision, today or date.today(), phase)
            publish_markdown(
                cycle_id, "decision", decided.message, f"Cycle {cycle_id}: {decided.message}"
            )
            if not decided.applied:
                logger.warning(decided.message)
                if decided.phase is not phase:  # someone else moved the cycle meanwhile
                    phase = decided.phase
                    if phase is Phase.CLOSED:
                        break
                    _run_phase(phase, cycle_id, today)
                continue
            assert decided.outcome is not None
            outcomes.append(decided.outcome)
            logger.info(decided.message)
            if decided.outcome.stopped:
                break
            if decided.outcome.advanced:
                phase = decided.phase
                # The next phase's flow; closing writes the final recap report.
                _run_phase(Phase.RECAP if phase is Phase.CLOSED else phase, cycle_id, today)
                if phase is Phase.CLOSED:
                    break
        return outcomes
