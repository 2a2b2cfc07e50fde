"""Advancing a cycle from the faces (CLI, web, API), and starting the flow the move asks for.

One source of truth: the store. Every face moves a cycle through the same domain transition
(``models.phases.lifecycle.apply_decision`` → ``advance``), which writes, in the move's own
transaction, the phase outbox row asking for the new phase's flow
(:mod:`models.phases.dispatch`). Then the flow is started from that row (:mod:`flows.dispatch`):

- a Prefect server is configured and answers: a run of the phase's deployment, created with
  the row's idempotency key (a worker runs it; the Prefect UI shows it, whoever advanced);
- no server (the embedded default), or ``use_server=False`` (the demo): the flow runs here;
- a configured server that does not answer: the row stays pending and the next dispatch (the
  ``dispatch`` deployment, the next advance, ``aligncycle flows dispatch``) starts it.

No process waits for a decision: the decision is made by a signed-in person in the web app,
or through the CLI or the API, and checked by the domain. A decision the domain refuses (not a
point person, gate not met, ...) raises a :class:`~models.errors.DomainError` with a one-line
message, and nothing is written: a refusal rolls back the refresh too. Prefect is imported
only when a flow has to start or a server is asked.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from aligncycle.settings import get_settings
from models.db import Store
from models.enums import Phase, Severity
from models.errors import DomainError, InvalidInput
from models.phases import dispatch as outbox
from models.phases import lifecycle as domain
from models.phases.execute import ExecuteReport
from models.phases.identify import IdentifyReport
from models.phases.lifecycle import DecisionOutcome, PhaseDecision
from models.phases.plan import PlanReport
from models.phases.recap import RecapReport
from models.rules import counted
from models.schemas import parse_input
from models.services import cycles as cycle_service
from models.words import phase_name


class OrchestrationError(DomainError):
    """The decision could not be handed to the waiting run, or the run did not take it."""

    code = "orchestration"


class Interrupted(OrchestrationError):
    """Ctrl-C (or SIGTERM) while advancing: the message says what was and was not recorded."""

    code = "interrupted"


@dataclass
class AdvanceResult:
    outcome: DecisionOutcome | None
    #: "deployment": the next phase's flow run was created on the Prefect server;
    #: "in-process": it ran here (or nothing had to run); "pending": it starts later.
    via: Literal["deployment", "in-process", "pending"]
    #: What the CLI prints, one line each.
    lines: list[str] = field(default_factory=list)
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


def _move(
    store: Store,
    decision: PhaseDecision,
    cycle_id: int,
    today: date,
    to: Phase | None = None,
    expected_version: int | None = None,
    expected_phase: Phase | None = None,
) -> DecisionOutcome:
    """The decision through the domain, in one unit of work: the refresh, the gate, the move,
    what the new phase starts with, and the outbox row asking for its flow commit together,
    before any flow starts. An interruption before the commit changes nothing."""
    try:
        with store.unit_of_work() as s:
            cycle = cycle_service.get_cycle(s, cycle_id)
            return domain.apply_decision(
                s, cycle, decision, today, expected_phase, to=to, expected_version=expected_version
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: nothing changed, cycle {cycle_id} is where it was"
        ) from None


def dispatch(
    cycle_id: int | None = None,
    *,
    use_server: bool = True,
    store: Store | None = None,
    to_log_file: bool = True,
) -> tuple[list[Any], list[str]]:
    """Start the flows the outbox asks for (of one cycle, or all) and say what happened, one
    line each: as deployment runs when a Prefect server answers (``use_server``), else here.
    Raises :class:`Interrupted` on Ctrl-C while a flow runs here (its row stays pending).
    ``to_log_file``: Prefect's logs to the data dir's log file (a command's terminal stays
    clean); the web process keeps its own logging."""
    quiet_prefect()
    from flows.dispatch import dispatch as start
    from flows.dispatch import flow_phase
    from flows.runtime import enable_log_file

    if to_log_file:
        enable_log_file(log_file())
    url = configured_api_url()
    alive = bool(url and server_url(url))
    own = store is None
    store = store or _store()
    try:
        if use_server and url and not alive:
            with store.unit_of_work() as s:
                waiting = outbox.waiting(s, cycle_id)
                outbox.note(s, [w.id for w in waiting], f"no Prefect server answers at {url}")
            return [], [
                f"(no Prefect server answers at {url}: the {flow_phase(w.phase)} flow of cycle "
                f"{w.cycle_id} starts once it does, or now with `aligncycle flows dispatch`)"
                for w in waiting
            ]
        mode = "deployment" if (use_server and alive) else "in-process"
        moved_to: list[Any] = []
        try:
            with _without_dead_server(url, alive) as note:
                done = start(
                    mode, db=store, cycle_id=cycle_id, on_start=lambda row: moved_to.append(row)
                )
        except KeyboardInterrupt:
            row = moved_to[-1]
            raise Interrupted(
                f"interrupted: cycle {row.cycle_id} moved to {phase_name(row.phase)} with "
                f"everything it starts with recorded; only the {flow_phase(row.phase)} flow's "
                "report was not published (`aligncycle flows dispatch` runs it)"
            ) from None
        lines: list[str] = []
        for d in done:
            name = f"{flow_phase(d.phase)}-cycle-{d.cycle_id}"
            if d.moved_on is not None:
                lines.append(
                    f"the {flow_phase(d.phase)} flow of cycle {d.cycle_id} is not needed any "
                    f"more: the cycle has moved on to {phase_name(d.moved_on)}"
                )
            elif d.error:
                lines.append(
                    f"the {flow_phase(d.phase)} flow of cycle {d.cycle_id} has not started: "
                    f"{d.error} (tried again at the next dispatch)"
                )
            elif d.via == "deployment":
                lines.append(f"flow run {name} created on the Prefect server; a worker runs it")
            else:
                lines += summarize(d.report)
        return done, lines + note
    finally:
        if own:
            store.dispose()


def _dispatch_quietly(cycle_id: int) -> None:
    try:
        dispatch(cycle_id)
    except BaseException:  # noqa: BLE001 - the row stays pending; the next dispatch retries
        logging.getLogger(__name__).warning(
            "starting the flow of cycle %s failed; the next dispatch tries again",
            cycle_id,
            exc_info=True,
        )


def dispatch_after_commit(session: Any, cycle_id: int, worker: Any = None) -> None:
    """For the web app and the API: once this session's transaction (the move) commits, start
    the new phase's flow without making the request wait for it.

    - ``worker`` (the web process's background worker, running on the embedded default:
      :mod:`aligncycle.web.flows_worker`): it is woken, and runs the flow in this process;
    - else, a Prefect server configured in this process's environment (``PREFECT_API_URL``):
      a background thread creates the deployment run (one API call);
    - else the row stays pending: the next ``aligncycle cycle advance`` or
      ``aligncycle flows dispatch`` runs it, and the move itself already wrote everything the
      phase starts with."""
    running = worker is not None and getattr(worker, "running", False)
    if not running and not os.environ.get("PREFECT_API_URL"):
        return
    from sqlalchemy import event

    def after_commit(_session: Any) -> None:
        if running:
            worker.wake()
            return
        threading.Thread(
            target=_dispatch_quietly, args=(cycle_id,), name=f"dispatch-{cycle_id}", daemon=True
        ).start()

    event.listen(session, "after_commit", after_commit, once=True)


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
) -> AdvanceResult:
    """``aligncycle cycle advance``: the point person's decision on a cycle, then the new
    phase's flow (see the module's docstring).

    Raises :class:`~models.errors.DomainError` (one-line message) when refused; nothing is
    written then. ``use_server=False`` runs the flow here even with a server (the demo)."""
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
            # Who decides, and what: refused here, nothing is written.
            cycle = cycle_service.get_cycle(s, cycle_id)
            checks = {"to": to, "expected_version": expected_version}
            domain.check_decision(s, cycle, choice, today, gate=False, **checks)
            asked_in = cycle.phase  # the decision is about this phase, whoever moves first
        if choice.decision == "stop":
            raise InvalidInput(
                f"no cycle run waits for a decision on cycle {cycle_id}: nothing to stop "
                "(cycles wait in the store; advance or stay)"
            )
        outcome = _move(store, choice, cycle_id, today, to, expected_version, asked_in)
        lines = [outcome.message]
        if outcome.started is not None and outcome.started.summary:
            lines.append(f"{phase_name(outcome.phase)}: {outcome.started.summary}")
        if not outcome.advanced:
            return AdvanceResult(outcome=outcome, via="in-process", lines=lines)
        done, more = dispatch(cycle_id, use_server=use_server, store=store)
        ok = [d for d in done if not d.error and d.moved_on is None]
        ran_here = [d for d in ok if d.via == "in-process"]
        via: Literal["deployment", "in-process", "pending"] = (
            "deployment"
            if any(d.via == "deployment" for d in ok)
            else "in-process"
            if ran_here
            else "pending"
        )
        report = ran_here[-1].report if ran_here else None
        return AdvanceResult(outcome=outcome, via=via, lines=lines + more, report=report)
    finally:
        store.dispose()
