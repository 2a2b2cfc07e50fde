"""Advancing a cycle from the face (CLI, web): the point person's typed decision.

Two paths, one set of rules (``models.phases.lifecycle.apply_decision`` →
``models.services.cycles.advance_cycle``):

- a Prefect server answers (``PREFECT_API_URL``) and a cycle run waits for this cycle: the
  decision resumes that paused run (its input is the decision); the run applies it, and this
  waits until the run has taken it (or ended) and reports the outcome;
- otherwise, in this process: bring what the current phase derives up to date (the same
  idempotent domain step its flow runs) and apply the decision, in one unit of work; then run
  the next phase's flow (against a temporary local Prefect server when the configured one does
  not answer).

A decision the domain refuses (not a point person, gate not met, ...) raises a
:class:`~models.errors.DomainError` with a one-line message, and nothing is written or resumed:
a refusal rolls back the refresh too. (What people enter is turned into what the gates look at
when they enter it, e.g. an Identify answer records its gap, so nothing is lost by that.)
Prefect is imported only when a flow has to run or a server is asked.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select

from aligncycle.settings import get_settings
from models.db import Store
from models.enums import Phase, Severity
from models.errors import DomainError, InvalidInput
from models.phases import lifecycle as domain
from models.phases.carry_over import follow_up_cycles
from models.phases.execute import ExecuteReport
from models.phases.identify import IdentifyReport
from models.phases.lifecycle import DecisionOutcome, PhaseDecision
from models.phases.plan import PlanReport
from models.phases.recap import RecapReport
from models.rules import counted
from models.schemas import parse_input
from models.services import cycles as cycle_service
from models.tables import Event


class OrchestrationError(DomainError):
    """The decision could not be handed to the waiting run, or the run did not take it."""

    code = "orchestration"


class Interrupted(OrchestrationError):
    """Ctrl-C (or SIGTERM) while advancing: the message says what was and was not recorded."""

    code = "interrupted"


@dataclass
class AdvanceResult:
    outcome: DecisionOutcome | None
    #: "waiting-run": a paused cycle run took the decision; "in-process": flows ran here.
    via: Literal["waiting-run", "in-process"]
    #: What the CLI prints, one line each.
    lines: list[str] = field(default_factory=list)
    run_name: str | None = None
    report: Any = None


def _store() -> Store:
    return Store(get_settings().effective_database_url)


def log_file() -> Path:
    return get_settings().data_dir / "logs" / "prefect.log"


# --- the Prefect server and the waiting run ------------------------------------------------


def quiet_prefect() -> None:
    """Load Prefect with aligncycle's quiet defaults (call before any other Prefect import)."""
    import flows.runtime  # noqa: F401


def configured_api_url() -> str | None:
    quiet_prefect()
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def server_url(url: str | None = None) -> str | None:
    """The (configured) Prefect API URL if a server answers there, else None."""
    import httpx

    url = url or configured_api_url()
    if not url:
        return None
    try:
        ok = httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        ok = False
    return url if ok else None


@contextmanager
def _without_dead_server(url: str | None, alive: bool) -> Iterator[list[str]]:
    """Flows run in this process; if the configured server does not answer, against a
    temporary local one instead (yields the note to show)."""
    if not url or alive:
        yield []
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield [f"(no Prefect server answers at {url}: the flow ran in this process)"]


def find_waiting_run(cycle_id: int) -> Any | None:
    """The paused cycle run waiting for a decision on this cycle of this store, if any."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.runtime import store_tag

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"cycle:{cycle_id}", f"store:{store_tag()}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=5,
        )
    for run in runs:
        details = run.state.state_details if run.state else None
        if details is not None and details.run_input_keyset:
            return run
    return None


def _progressed(run: Any, pause_key: str | None) -> bool:
    state = run.state
    if state is None:
        return False
    if state.is_final():
        return True
    return state.is_paused() and state.state_details.pause_key != pause_key


def _wait_for_run(run_id: Any, pause_key: str | None, timeout: float) -> Any | None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if _progressed(run, pause_key):
                return run
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)


def _last_event_id(store: Store, cycle_id: int) -> int:
    with store.unit_of_work() as s:
        return s.scalar(select(func.max(Event.id)).where(Event.cycle_id == cycle_id)) or 0


def _resume(
    store: Store, run: Any, decision: PhaseDecision, cycle_id: int, today: date, wait: float
) -> AdvanceResult:
    from prefect.flow_runs import resume_flow_run

    with store.unit_of_work() as s:
        before = cycle_service.get_cycle(s, cycle_id).phase
    mark = _last_event_id(store, cycle_id)
    pause_key = run.state.state_details.pause_key
    try:
        resume_flow_run(run.id, run_input=decision.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - Prefect raises several kinds here
        raise OrchestrationError(
            f"could not resume the waiting run {run.name!r}: {str(exc).splitlines()[0]}"
        ) from None
    after_run = _wait_for_run(run.id, pause_key, wait)
    if after_run is None:
        raise OrchestrationError(
            f"the waiting run {run.name!r} took the decision but did not finish the step "
            f"within {wait:g} s; see the Prefect UI"
        )
    with store.unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        applied = s.scalar(
            select(Event)
            .where(Event.cycle_id == cycle_id, Event.id > mark, Event.verb == "cycle.decision")
            .order_by(Event.id.desc())
            .limit(1)
        )
        follow: list[Any] = []
        if decision.decision == "stop":
            message = f"the cycle run {run.name!r} ended; cycle {cycle_id} stays in {cycle.phase}"
        elif applied is None:
            # Refused in the run (the gate changed while it refreshed): same rules, same words.
            domain.check_decision(s, cycle, decision, today)
            raise OrchestrationError(
                f"the waiting run {run.name!r} did not apply the decision; see its logs in the "
                "Prefect UI"
            )
        elif decision.decision == "stay":
            message = f"cycle {cycle_id} stays in {cycle.phase}: {decision.reason}"
        else:
            message = f"cycle {cycle_id} advanced from {before} to {cycle.phase}"
            follow = follow_up_cycles(s, cycle) if decision.follow_up_title else []
            if follow:
                message += f"; follow-up cycle {follow[0].id} started"
        outcome = DecisionOutcome(
            cycle_id=cycle_id,
            decision=decision.decision,
            decided_by=decision.decided_by,
            from_phase=before,
            phase=cycle.phase,
            advanced=cycle.phase is not before,
            stopped=decision.decision == "stop",
            follow_up_cycle_id=follow[0].id if decision.decision == "advance" and follow else None,
            message=message,
        )
    lines = [message, f"(the waiting cycle run {run.name!r} took the decision)"]
    if after_run.state.is_paused():
        lines.append(f"the run now waits for the next decision on cycle {cycle_id}")
    return AdvanceResult(outcome=outcome, via="waiting-run", lines=lines, run_name=run.name)


# --- in this process -----------------------------------------------------------------------


def clip(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summarize(report: Any) -> list[str]:
    """A phase flow's result for the terminal: what it found, then whether the phase may end
    (``aligncycle cycle readiness`` lists every blocker)."""
    if isinstance(report, IdentifyReport):
        sev = Counter(g.severity for g in report.gaps)
        spread = ", ".join(f"{sev[s]} {s}" for s in reversed(Severity) if sev[s])
        line = (
            f"identify: {report.answered}/{report.questions} questions answered; "
            f"{counted(len(report.gaps), 'gap')} in the analysis"
            + (f" ({spread})" if spread else "")
        )
    elif isinstance(report, PlanReport):
        line = (
            f"plan: {counted(len(report.actions), 'action item')} for "
            f"{counted(report.accepted_gaps, 'accepted gap')}, {len(report.unassigned)} waiting "
            "for an owner"
        )
    elif isinstance(report, ExecuteReport):
        line = (
            f"execute: {report.done}/{report.total - report.dropped} done "
            f"({report.percent_done:.0f}%), {len(report.overdue)} overdue, "
            f"confidence {report.rollup.value.replace('_', ' ')}"
        )
    elif hasattr(report, "report") and isinstance(report.report, RecapReport):
        return [f"recap: {report.report.headline}", f"report: {report.url}"]
    else:
        return []
    ready = report.readiness
    if ready.ready:
        return [line, f"ready to advance to {ready.next_phase}"]
    more = f" (and {len(ready.blockers) - 1} more)" if len(ready.blockers) > 1 else ""
    return [line, clip(f"not ready yet: {ready.blockers[0]}", 100 - len(more)) + more]


def _in_process(
    store: Store,
    decision: PhaseDecision,
    cycle_id: int,
    today: date,
    to: Phase | None = None,
    expected_version: int | None = None,
    expected_phase: Phase | None = None,
) -> AdvanceResult:
    from flows.phases import run_phase
    from flows.runtime import enable_log_file

    enable_log_file(log_file())
    try:
        # Everything the domain records (refresh, gate, move, what the new phase starts with)
        # commits together, before any flow runs: an interruption before the commit changes
        # nothing, one after it leaves a complete cycle (the flow only publishes its report).
        with store.unit_of_work() as s:
            cycle = cycle_service.get_cycle(s, cycle_id)
            outcome = domain.apply_decision(
                s, cycle, decision, today, expected_phase, to=to, expected_version=expected_version
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: nothing changed, cycle {cycle_id} is where it was"
        ) from None
    lines = [outcome.message]
    if outcome.started is not None and outcome.started.summary:
        lines.append(f"{outcome.phase}: {outcome.started.summary}")
    report = None
    if outcome.advanced:
        # The next phase's flow (idempotent: it finds what the domain recorded, and publishes
        # its report and artifacts); closing writes the final recap report.
        next_phase = Phase.RECAP if outcome.phase is Phase.CLOSED else outcome.phase
        try:
            report = run_phase(next_phase, cycle_id, today)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: cycle {cycle_id} moved to {outcome.phase} with everything it "
                f"starts with recorded; only the {next_phase} flow's report was not published"
            ) from None
        lines += summarize(report)
    return AdvanceResult(outcome=outcome, via="in-process", lines=lines, report=report)


# --- the entry points ----------------------------------------------------------------------


def advance(
    cycle_id: int,
    decided_by: str | None,
    *,
    decision: Literal["advance", "stay", "stop"] = "advance",
    reason: str | None = None,
    follow_up_title: str | None = None,
    to: Phase | None = None,
    expected_version: int | None = None,
    today: date | None = None,
    use_server: bool = True,
    wait: float = 120.0,
) -> AdvanceResult:
    """``aligncycle cycle advance``: the point person's decision on a cycle.

    Raises :class:`~models.errors.DomainError` (one-line message) when refused; nothing is
    written or resumed then. ``use_server=False`` never looks for a waiting run (the demo)."""
    if not decided_by:
        raise InvalidInput("say who decides: --as EMAIL (a point person of the cycle)")
    today = today or date.today()
    choice = parse_input(
        PhaseDecision,
        decided_by=decided_by,
        decision=decision,
        reason=reason or None,
        follow_up_title=follow_up_title or None,
    )
    store = _store()
    try:
        with store.unit_of_work() as s:
            # Who decides, and what: refused here, nothing is written or resumed.
            cycle = cycle_service.get_cycle(s, cycle_id)
            checks = {"to": to, "expected_version": expected_version}
            domain.check_decision(s, cycle, choice, today, gate=False, **checks)
            asked_in = cycle.phase  # the decision is about this phase, whoever moves first
        url = configured_api_url()
        alive = bool(url and server_url(url))
        if use_server and alive:
            run = find_waiting_run(cycle_id)
            if run is not None:
                with store.unit_of_work() as s:  # the gate too, before waking the run
                    domain.check_decision(s, cycle_service.get_cycle(s, cycle_id), choice, today)
                return _resume(store, run, choice, cycle_id, today, wait)
        if choice.decision == "stop":
            raise InvalidInput(f"no cycle run waits for a decision on cycle {cycle_id}")
        if choice.decision == "stay":
            with store.unit_of_work() as s:
                cycle = cycle_service.get_cycle(s, cycle_id)
                outcome = domain.apply_decision(s, cycle, choice, today)
            return AdvanceResult(outcome=outcome, via="in-process", lines=[outcome.message])
        with _without_dead_server(url, alive) as note:
            result = _in_process(store, choice, cycle_id, today, to, expected_version, asked_in)
        result.lines += note
        return result
    finally:
        store.dispose()


def run_cycle(
    cycle_id: int,
    *,
    decision_timeout: int | None = None,
    poll_interval: int | None = None,
    on_start: Callable[[], None] | None = None,
) -> list[DecisionOutcome]:
    """``aligncycle cycle run``: drive the cycle, waiting for decisions between phases (blocks
    while it waits; best with a Prefect server, so the UI's form can answer too)."""
    quiet_prefect()
    from prefect import tags

    from flows.cycle import DEFAULT_DECISION_TIMEOUT, DEFAULT_POLL_INTERVAL, cycle_flow
    from flows.runtime import cycle_tags, enable_log_file

    enable_log_file(log_file())
    with _store().unit_of_work() as s:
        cycle_service.get_cycle(s, cycle_id)  # NotFound before starting anything
    if on_start is not None:
        on_start()
    with tags(*cycle_tags(cycle_id)):
        return cycle_flow(
            cycle_id=cycle_id,
            decision_timeout=decision_timeout or DEFAULT_DECISION_TIMEOUT,
            poll_interval=poll_interval or DEFAULT_POLL_INTERVAL,
        )
