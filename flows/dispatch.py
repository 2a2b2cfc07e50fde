"""The Prefect side of the phase outbox (:mod:`models.phases.dispatch`): start the phase flow
each recorded move asks for.

Two ways, one outbox:

- ``deployment`` (a Prefect server is configured): a run of the phase's deployment
  (``plan/plan``, ...) is created with the row's idempotency key and not waited for; a worker
  runs it. Created twice (a dispatcher died between creating it and marking the row, or two
  dispatchers raced), Prefect answers with the run it already has: one run per move. A server
  that does not answer leaves the row ``pending`` with the reason, and the next dispatch (the
  ``dispatch`` deployment every few minutes, the next advance, ``aligncycle flows dispatch``)
  tries again;
- ``in-process`` (the embedded default, or a server without the phase deployments): the phase
  flow runs here, as the CLI always did.

Every run is named ``<phase>-cycle-<id>`` and tagged ``aligncycle``, ``cycle:<id>``,
``phase:<phase>`` and ``store:<id>``, whoever moved the cycle, so the Prefect UI lists a
cycle's runs by its tag.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from prefect import flow, get_run_logger

from flows.runtime import cycle_tags, store, store_tag
from models.base import utcnow
from models.db import Store
from models.enums import Phase
from models.phases import dispatch as outbox

Mode = Literal["deployment", "in-process"]

#: A claim older than this is a dead dispatcher's: another takes the row again. Longer than a
#: phase flow takes in process.
STALE_AFTER = timedelta(minutes=10)


def flow_phase(phase: Phase) -> Phase:
    """The flow a move into ``phase`` runs (closing a cycle writes the final recap report)."""
    return Phase.RECAP if phase is Phase.CLOSED else phase


def deployment_name(phase: Phase) -> str:
    p = flow_phase(phase)
    return f"{p}/{p}"


def run_name(cycle_id: int, phase: Phase) -> str:
    """The flow's own run name (``plan-cycle-7``), the same from a deployment or here."""
    return f"{flow_phase(phase)}-cycle-{cycle_id}"


def run_tags(cycle_id: int, phase: Phase) -> list[str]:
    return [*cycle_tags(cycle_id), f"phase:{flow_phase(phase)}"]


@dataclass
class Dispatched:
    key: str
    cycle_id: int
    phase: Phase
    via: Mode
    flow_run_id: str | None = None
    #: Why the run could not be started (the row stays pending).
    error: str | None = None
    #: The phase flow's result (in process only).
    report: Any = None
    #: The cycle's phase when the row came up, if it had moved on (nothing was started).
    moved_on: Phase | None = None


class DeploymentMissing(Exception):
    """The server answers, but the phase's deployment is not there (not deployed)."""


def start_deployment_run(row: outbox.Claimed) -> str:
    """Create the phase's deployment run for ``row`` (not waited for); its id."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            deployment_name(row.phase),
            parameters={"cycle_id": row.cycle_id, "today": row.today.isoformat()},
            flow_run_name=run_name(row.cycle_id, row.phase),
            tags=run_tags(row.cycle_id, row.phase),
            idempotency_key=outbox.idempotency_key(row.key, store_tag(), row.restarts),
            timeout=0,
            as_subflow=False,
        )
    except ObjectNotFound:
        raise DeploymentMissing(deployment_name(row.phase)) from None
    return str(run.id)


def restart_crashed(db: Store, since: timedelta = timedelta(days=2)) -> list[str]:
    """Rows whose deployment run crashed (its process died; Prefect's zombie automation marks
    such runs Crashed) go back to ``pending``, to start a new run. One API call. Returns the
    keys put back."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with db.unit_of_work() as s:
        started = {
            r.flow_run_id: (r.id, r.key) for r in outbox.recently_started(s, utcnow() - since)
        }
    if not started:
        return []
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(i) for i in started]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
            )
        )
    out: list[str] = []
    for run in crashed:
        row_id, key = started[str(run.id)]
        why = f"flow run {run.name} crashed: {(run.state.message if run.state else '') or ''}"
        with db.unit_of_work() as s:
            if outbox.restart(s, row_id, str(run.id), why.rstrip(": ")):
                out.append(key)
    return out


def run_in_process(row: outbox.Claimed) -> tuple[Any, str | None]:
    """Run the phase's flow here (heartbeat off, tagged like a deployment run); (its result,
    its flow run id). A failed flow raises."""
    from prefect.exceptions import MissingResult

    from flows import phases

    state = phases.run_phase(flow_phase(row.phase), row.cycle_id, row.today, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    run_id = str(flow_run_id) if flow_run_id else None
    try:
        return state.result(), run_id
    except MissingResult:
        # The flow completed, but its final state came back from the server without its
        # result (Prefect's client sends a state again after a slow answer; a rejected one is
        # answered with the server's stored copy, which holds no result). The phase ran and
        # wrote what it writes; only its summary for the terminal is missing: no reason to run
        # it again.
        if not state.is_completed():
            raise
        return None, run_id


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:500]


def dispatch(
    mode: Mode,
    *,
    db: Store | None = None,
    cycle_id: int | None = None,
    stale_after: timedelta = STALE_AFTER,
    limit: int = 50,
    on_start: Callable[[outbox.Claimed], None] | None = None,
) -> list[Dispatched]:
    """Start the flows of the pending rows (of one cycle, or all): claim them (committed),
    start each, mark it started, or put it back ``pending`` with the reason.

    ``deployment`` falls back to ``in-process`` for a phase whose deployment is missing; for
    all cycles, it first puts back the rows whose run crashed (:func:`restart_crashed`). A
    KeyboardInterrupt while a flow runs here puts its row back to ``pending`` (the next
    dispatch runs it) and propagates."""
    db = db or store()
    claimer = uuid.uuid4().hex[:12]
    if mode == "deployment" and cycle_id is None:
        restart_crashed(db)
    with db.unit_of_work() as s:
        claimed = outbox.claim(s, claimer, utcnow() - stale_after, cycle_id=cycle_id, limit=limit)
    out: list[Dispatched] = []
    for row in claimed:
        if on_start is not None:
            on_start(row)
        done = Dispatched(row.key, row.cycle_id, row.phase, via=mode)
        with db.unit_of_work() as s:
            done.moved_on = outbox.skip_if_moved_on(s, row, claimer)
        if done.moved_on is not None:
            out.append(done)
            continue
        try:
            if mode == "deployment":
                try:
                    done.flow_run_id = start_deployment_run(row)
                except DeploymentMissing:
                    done.via = "in-process"
                    done.report, done.flow_run_id = run_in_process(row)
            else:
                done.report, done.flow_run_id = run_in_process(row)
        except KeyboardInterrupt:
            with db.unit_of_work() as s:
                outbox.release(s, row.id, claimer, "interrupted before the flow finished")
            raise
        except Exception as exc:  # noqa: BLE001 - a server outage, a failed flow: tried again
            done.error = _reason(exc)
            with db.unit_of_work() as s:
                outbox.release(s, row.id, claimer, done.error)
            out.append(done)
            continue
        with db.unit_of_work() as s:
            outbox.mark_started(s, row.id, claimer, done.flow_run_id)
        out.append(done)
    return out


@flow(name="dispatch", flow_run_name="dispatch-phase-flows", persist_result=False)
def dispatch_flow(mode: Mode = "deployment", sweep: bool = True) -> Any:
    """The safety net behind every face's own dispatch, every few minutes:

    - start the phase flows the cycles' moves asked for and nobody started yet (a Prefect
      outage, a dispatcher that died), and again a phase run that crashed;
    - run again a cadence run that crashed (:mod:`flows.reruns`; deployment mode only);
    - deliver what nobody else will (``sweep``): invitation and reset links, and messages whose
      send failed once their backoff has passed (:func:`models.cadence.outbox.sweepable`).

    Ends Failed, named "Undelivered", when a message failed for good in this run."""
    from prefect.states import Failed

    from flows import notify
    from flows.cadence import UNDELIVERED, undelivered_message

    logger = get_run_logger()
    db = store()
    done = dispatch(mode, db=db)
    for d in done:
        if d.error:
            logger.warning("cycle %s, %s: not started yet: %s", d.cycle_id, d.phase, d.error)
        else:
            logger.info("cycle %s, %s: flow run %s (%s)", d.cycle_id, d.phase, d.flow_run_id, d.via)
    out: dict[str, Any] = {
        "started": sum(1 for d in done if not d.error),
        "waiting": sum(1 for d in done if d.error),
    }
    if mode == "deployment":
        from flows.reruns import rerun_crashed_cadence

        reruns = rerun_crashed_cadence()
        for name, run_id in reruns:
            logger.warning("cadence run %s crashed: run again as %s", name, run_id)
        out["reruns"] = len(reruns)
    if sweep:
        delivery = notify.deliver(db, sweep=True, workers=2).as_dict()
        out["delivery"] = delivery
        for err in delivery["errors"][:5]:
            logger.warning("delivery: %s", err)
        if delivery["failed"]:
            problem = undelivered_message({**delivery, "retrying": 0})
            logger.error("%s", problem)
            return Failed(name=UNDELIVERED, message=problem, data=out)
    return out
