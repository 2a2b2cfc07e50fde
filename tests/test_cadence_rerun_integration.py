"""A cadence run killed with its worker is run again the same day, the way a company runs it:
the company of ``tests/test_phase_dispatch_integration.py`` (a Prefect server on PostgreSQL
with basic auth, ``prefect deploy --all``, the zombie automation of ``aligncycle flows setup``,
a worker with heartbeats), and a channel to a local receiver.

The daily run is killed (worker and flow-run process) while it sends; the automation marks it
Crashed; the next ``dispatch`` run (its deployment, on a new worker) creates one new run of
``daily-cadence`` for the same day, which completes; nothing is left Running or Pending.

Not part of ``make test``; needs PostgreSQL on 127.0.0.1:5432 (or
``ALIGNCYCLE_TEST_DATABASE_URL``). About three to four minutes, most of it the automation's
wait without a heartbeat::

    .venv/bin/python -m pytest -q -m integration tests/test_cadence_rerun_integration.py
"""

# ruff: noqa: F811 - the company fixture, used here by name

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.prefect_server import PrefectStack, kill_tree
from models.cadence import channels
from models.db import Store
from models.playbook import parse_playbook
from models.services import playbooks
from models.services.common import person_by_email
from tests.test_advance_everywhere import Surfaces
from tests.test_cadence import MAX, OPEN, PLAYBOOK, SAM, TODAY, Receiver, make_cycle
from tests.test_phase_dispatch_integration import (  # noqa: F401 - the fixture
    WITHIN,
    client,
    company,
    read_run,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_killed_daily_cadence_run_is_run_again_the_same_day(
    company: tuple[Store, PrefectStack, Surfaces], receiver: Receiver
) -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment

    store, stack, _ = company
    with store.unit_of_work() as s:
        playbooks.register(
            s, parse_playbook(PLAYBOOK), hashlib.sha256(PLAYBOOK.encode()).hexdigest(), "t"
        )
        channels.add_channel(
            s, person_by_email(s, MAX), kind="webhook", person=SAM, url=receiver.url("sam")
        )
    make_cycle(store, [("late", SAM, -1, OPEN)])
    receiver.hold_after = len(receiver.messages)  # the first send hangs: the run is mid-send

    first = run_deployment(
        "daily-cadence/daily-cadence",
        parameters={"today": TODAY.isoformat()},
        timeout=0,
        as_subflow=False,
    ).id
    assert receiver.wait_held(1, timeout=180), stack.log("worker.log")
    time.sleep(3)  # its heartbeat reaches the server
    kill_tree(stack.workers[-1], signal.SIGKILL)  # the worker and its flow-run process
    receiver.drop_held()
    crashed = wait_for(
        "the automation marked the daily run crashed",
        lambda: (r := read_run(first)).state.is_crashed() and r,
        WITHIN + 90,
    )

    # The next dispatch run (every 2 minutes; here at once) asks for the rerun.
    stack.start_worker()
    dispatch = run_deployment("dispatch/dispatch", timeout=0, as_subflow=False).id
    ran = wait_for(
        "the dispatch run finished",
        lambda: (r := read_run(dispatch)).state.is_final() and r,
        180,
        stack.log("worker.log"),
    )
    assert ran.state.is_completed(), ran.state

    def reruns() -> list[Any]:
        with client() as c:
            return c.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"rerun-of:{first}"]))
            )

    (rerun,) = wait_for("the rerun asked for", reruns, 30)
    assert rerun.deployment_id == crashed.deployment_id
    assert rerun.parameters["today"] == TODAY.isoformat()
    done = wait_for(
        "the rerun completed",
        lambda: (r := read_run(rerun.id)).state.is_final() and r,
        180,
        stack.log("worker.log"),
    )
    assert done.state.is_completed(), done.state
    # Asked for once: another dispatch creates nothing more.
    again = run_deployment("dispatch/dispatch", timeout=180, as_subflow=False)
    assert again.state.is_completed() and len(reruns()) == 1
    with client() as c:
        alive = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                )
            )
        )
    assert alive == []
