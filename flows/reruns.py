"""Cadence runs whose process died are run again the same day.

Prefect retries a flow run that *fails* (a flow's ``retries``), not one that *crashed*: its
process is gone, and the server's retry rule (``RetryFailedFlows``) only turns Running →
Failed into a new try. A cadence run killed with its worker is marked Crashed by the zombie
automation (:mod:`flows.zombies`); without this module it would wait for its next schedule (a
day, or a week). So the ``dispatch`` flow (every 2 minutes, the same safety net that starts a
crashed phase run again) looks at the cadence runs that crashed lately and, for each, creates
a new run of its deployment with its parameters (``today`` pinned to the day it was scheduled
for), through Prefect's own deployment run and idempotency key:

- once per crashed run (the key is the crashed run's id), however many dispatchers look;
- not when a later run of the same deployment has run or is running (the next schedule came);
- at most :data:`MAX_RERUNS` times in a row: a run that crashes every time (out of memory, say)
  is not restarted forever; its Crashed runs stay in the UI for an operator.

The cadence flows are idempotent (notifications have keys, claims are stale after 10 minutes),
so a rerun plans nothing twice and sends nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

#: Deployment runs with these tags are cadence runs (``prefect.yaml``).
CADENCE_TAGS = ("aligncycle", "cadence")
#: A rerun carries ``rerun-of:<crashed run id>`` and ``rerun:<n>``.
RERUN_OF, RERUN_N = "rerun-of:", "rerun:"
MAX_RERUNS = 2
#: Crashed runs looked at: those that were due within this window.
WINDOW = timedelta(hours=20)


def rerun_depth(tags: list[str]) -> int:
    """How many crashed runs in a row came before this one (0: a scheduled or manual run)."""
    for t in tags:
        if t.startswith(RERUN_N) and t[len(RERUN_N) :].isdigit():
            return int(t[len(RERUN_N) :])
    return 0


def rerun_key(crashed_id: Any) -> str:
    return f"aligncycle:rerun:{crashed_id}"


def _day(run: Any) -> str | None:
    when = run.expected_start_time or run.start_time
    return when.astimezone().date().isoformat() if when else None


def rerun_crashed_cadence(
    now: datetime | None = None, window: timedelta = WINDOW
) -> list[tuple[str, str]]:
    """Create a new run for each cadence run that crashed lately (see the module's docstring).
    Returns (crashed run's name, new run's id) of each run asked for."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    now = now or datetime.now(UTC)
    out: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=list(CADENCE_TAGS)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=now - window),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )
        for run in crashed:
            depth = rerun_depth(list(run.tags))
            if run.deployment_id is None or depth >= MAX_RERUNS:
                continue
            later = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[run.deployment_id]),
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=run.expected_start_time
                    ),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(
                            any_=[
                                StateType.PENDING,
                                StateType.RUNNING,
                                StateType.COMPLETED,
                                StateType.FAILED,
                            ]
                        )
                    ),
                ),
                limit=5,
            )
            if any(r.id != run.id for r in later):
                continue  # a later run (the next schedule, its rerun, one by hand) ran
            asked = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{RERUN_OF}{run.id}"])),
                limit=1,
            )
            if asked:
                continue  # its rerun exists (waiting for a worker, or crashed in its turn)
            parameters = dict(run.parameters or {})
            if parameters.get("today") is None:  # every cadence flow takes it
                parameters["today"] = _day(run)
            tags = [t for t in run.tags if not t.startswith((RERUN_OF, RERUN_N))]
            base = run.name.split(" (rerun")[0]
            new = client.create_flow_run_from_deployment(
                run.deployment_id,
                parameters=parameters,
                name=f"{base} (rerun {depth + 1})",
                tags=[*tags, f"{RERUN_OF}{run.id}", f"{RERUN_N}{depth + 1}"],
                idempotency_key=rerun_key(run.id),  # two dispatchers at once: one run
            )
            out.append((run.name, str(new.id)))
    return out
