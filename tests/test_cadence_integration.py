"""The cadence the way a company runs it: a real Prefect server on PostgreSQL, a process work
pool, ``prefect deploy --all`` from ``prefect.yaml``, a worker, and the cadence flows
delivering through apprise to a local HTTP receiver.

Not part of ``make test``; CI runs it as its own step (needs PostgreSQL on 127.0.0.1:5432,
or ``ALIGNCYCLE_TEST_DATABASE_URL``)::

    .venv/bin/python -m pytest -q -m integration tests/test_cadence_integration.py

Takes about two minutes on a 2-core machine; every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.pg import create_database, drop_database
from bench.prefect_server import BIN, POOL, PrefectStack, free_port, kill_tree
from models.cadence import channels
from models.cadence.tables import Notification, NotificationStatus
from models.db import Store
from models.enums import Phase
from models.schemas import PersonCreate, TeamCreate
from models.services import people, playbooks
from models.services.common import person_by_email
from models.tables import Cycle, Event
from tests.conftest import ORG, PROJECT
from tests.test_cadence import (
    BLOCKED,
    DONE,
    LEE,
    LOU,
    MAX,
    MEG,
    MIA,
    OPEN,
    PLAYBOOK,
    SAM,
    SID,
    TODAY,
    WIP,
    Receiver,
    make_cycle,
)

pytestmark = pytest.mark.integration

PG_ADMIN = os.environ.get(
    "ALIGNCYCLE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CADENCE = (
    "execute-checkins",
    "daily-cadence",
    "overdue-reminders",
    "escalations",
    "weekly-digest",
    "recap-due",
)
#: The cadence deployments on a schedule (the daily jobs also run on their own, on demand).
SCHEDULED = ("execute-checkins", "daily-cadence", "weekly-digest", "recap-due")


def prefect_settings(api_url: str) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


def run(api_url: str, name: str, timeout: float = 180, **parameters: Any) -> Any:
    """Run a deployment through the worker, wait for its end (bounded); it completed."""
    flow_run = run_to_end(api_url, name, timeout, **parameters)
    assert flow_run.state is not None and flow_run.state.is_completed(), f"{name}: {flow_run.state}"
    return flow_run


def run_to_end(api_url: str, name: str, timeout: float = 180, **parameters: Any) -> Any:
    """Run a deployment through the worker and wait for its end (bounded), however it ends."""
    from prefect.deployments import run_deployment

    with prefect_settings(api_url):
        flow_run = run_deployment(
            f"{name}/{name}",
            parameters={"today": TODAY.isoformat(), **parameters},
            timeout=timeout,
            poll_interval=0.5,
            as_subflow=False,
        )
    assert flow_run.state is not None and flow_run.state.is_final(), f"{name}: {flow_run.state}"
    return flow_run


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def company(receiver: Receiver) -> Iterator[tuple[Store, PrefectStack]]:
    """An aligncycle store on PostgreSQL with the org, channels pointing at the receiver, and
    a Prefect server on PostgreSQL with the project deployed and one worker."""
    import hashlib

    from migrations import runner
    from models.playbook import parse_playbook

    workdir = Path(tempfile.mkdtemp(prefix="aligncycle-it-"))
    saved_home = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(workdir / "prefect-home")  # this process's client too
    store_url, store_db = create_database(PG_ADMIN, "aligncycle_it")
    store = Store(store_url)
    stack = PrefectStack(PG_ADMIN, store_url, workdir)
    try:
        runner.upgrade(store.engine)
        with store.unit_of_work() as s:
            people.create_team(s, TeamCreate(key="sales", name="Sales"))
            people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
            for name, email, team, role in ORG:
                people.create_person(s, PersonCreate(name=name, email=email, team=team, role=role))
            playbooks.sync_directory(s, PROJECT / "playbooks")
            playbooks.register(
                s, parse_playbook(PLAYBOOK), hashlib.sha256(PLAYBOOK.encode()).hexdigest(), "t"
            )
            mgr = person_by_email(s, MAX)
            for email in (SAM, MIA, LEE, MAX):
                channels.add_channel(
                    s, mgr, kind="webhook", person=email, url=receiver.url(email.split("@")[0])
                )
            # lou's URL is a Prefect Secret block, read by the worker when it sends
            channels.add_channel(s, mgr, kind="webhook", person=LOU, url="secret:lou-hook")
            channels.add_channel(
                s, mgr, kind="webhook", team="marketing", url=receiver.url("marketing")
            )
        stack.start()
        from prefect.blocks.system import Secret

        with prefect_settings(stack.api_url):
            Secret(value=receiver.url("lou")).save("lou-hook")
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("--no-prompt", "deploy", "--all")
        yield store, stack
    finally:
        if "prefect.logging.handlers" in sys.modules:  # this process ran flows: flush its logs
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            with prefect_settings(stack.api_url):
                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
        stack.stop()
        store.dispose()
        drop_database(PG_ADMIN, store_db)
        if saved_home is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = saved_home
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(company: tuple[Store, PrefectStack]) -> tuple[Store, PrefectStack]:
    """The deployments as ``prefect.yaml`` made them, their schedules proven live (the server
    scheduled runs), then switched off for the test so that no run for the real date sneaks
    in; then one worker."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    store, stack = company
    with prefect_settings(stack.api_url), get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert set(CADENCE) <= set(deployments)
        ids = [deployments[n].id for n in SCHEDULED]
        scheduled: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
            )
            if {r.deployment_id for r in scheduled} == set(ids):
                break
            time.sleep(1)
        assert {r.deployment_id for r in scheduled} == set(ids), "schedules did not fire"
        for d in deployments.values():
            for schedule in d.schedules:
                client.update_deployment_schedule(d.id, schedule.id, active=False)
        for r in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            )
        ):
            client.delete_flow_run(r.id)
    stack.start_worker()
    return store, stack


# --- the tests -----------------------------------------------------------------------------


def test_prefect_yaml_deploys_the_cadence_on_schedules(company: tuple[Store, PrefectStack]) -> None:
    from prefect.client.orchestration import get_client

    _, stack = company
    with prefect_settings(stack.api_url), get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        pool = client.read_work_pool(POOL)
    assert pool.type == "process"
    crons = {name: [s.schedule.cron for s in deployments[name].schedules] for name in CADENCE}
    assert crons == {
        "execute-checkins": ["0 8 * * 1"],
        "daily-cadence": ["0 7 * * *"],
        "overdue-reminders": [],
        "escalations": [],
        "weekly-digest": ["30 7 * * 1-5"],
        "recap-due": ["0 6 * * *"],
    }
    assert {deployments[n].work_pool_name for n in CADENCE} == {POOL}
    # The phase flows are deployed too, to run on demand for one cycle (no schedule).
    phases = ("cycle", "identify", "plan", "execute", "recap")
    assert {n: deployments[n].schedules for n in phases} == {n: [] for n in phases}
    assert deployments["escalations"].parameters["escalate_after_days"] == 2
    assert deployments["daily-cadence"].parameters["escalate_after_days"] == 2


def test_cadence_flows_on_a_worker_send_exactly_the_expected_messages(
    deployed: tuple[Store, PrefectStack], receiver: Receiver
) -> None:
    store, stack = deployed
    make_cycle(
        store,
        [
            ("Agree SLA", SAM, 1, OPEN),
            ("Fix routing", MIA, -1, WIP),
            ("Shared dashboard", SAM, -3, OPEN),
            ("Content audit", MEG, -6, BLOCKED),
            ("Done thing", SAM, -2, DONE),
            ("Later", MIA, 10, OPEN),
        ],
        title="Q1 hand-off",
    )
    ended, _ = make_cycle(
        store, [("All done", SAM, -2, DONE)], title="ended", end=TODAY - timedelta(days=1)
    )

    run(stack.api_url, "recap-due")
    # Reminders twice at the same time (a duplicated run), escalations and the digest.
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda name: run(stack.api_url, name),
                ["overdue-reminders", "overdue-reminders", "escalations", "weekly-digest"],
            )
        )
    run(stack.api_url, "execute-checkins")

    assert receiver.received() == sorted(
        [
            ("/sam", "Recap is open: ended"),
            ("/mia", "Recap is open: ended"),
            # sam's two reminders of the day in one message
            ("/sam", "Reminders: 2 of your action items are due soon or overdue"),
            ("/mia", "Overdue: “Fix routing”"),
            ("/marketing", "Overdue: “Content audit”"),
            ("/lee", "Escalation (lead): “Shared dashboard” is overdue (Sam Sales)"),
            ("/lou", "Escalation (lead): “Content audit” is overdue (Meg Member)"),
            ("/max", "Escalation (manager): “Content audit” is overdue (Meg Member)"),
            ("/sam", "Weekly digest: Q1 hand-off (17% done, 3 risks)"),
            ("/marketing", "Weekly digest: Q1 hand-off (17% done, 3 risks)"),
            ("/sam", "Check-in: 2 action items in “Q1 hand-off”"),
            ("/mia", "Check-in: 2 action items in “Q1 hand-off”"),
            ("/marketing", "Check-in: 1 action item in “Q1 hand-off”"),
        ]
    )
    sams = next(m for m in receiver.messages if m["title"].startswith("Reminders: 2"))
    assert "1. Reminder: “Agree SLA” is due tomorrow\n" in sams["message"]
    assert "2. Overdue: “Shared dashboard”\n" in sams["message"]
    digest = next(m for m in receiver.messages if m["title"].startswith("Weekly digest"))
    assert "Due next week:\n- Agree SLA (Sam Sales), due tomorrow (3 Mar 2026)" in digest["message"]
    with store.unit_of_work() as s:
        assert s.get(Cycle, ended).phase is Phase.RECAP
        advanced = s.scalars(
            select(Event).where(Event.cycle_id == ended, Event.verb == "cycle.advanced")
        ).all()
        statuses = set(s.scalars(select(Notification.status)))
    assert [(e.actor_id, e.after["reason"]) for e in advanced if e.actor_id is None] == [
        (None, "period ended")
    ]
    assert statuses == {NotificationStatus.SENT}

    # Every flow again: nothing is sent twice.
    before = receiver.received()
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda name: run(stack.api_url, name), CADENCE))
    assert receiver.received() == before

    # The daily run as deployed: reminders, then escalations, in one flow run.
    _, new = make_cycle(
        store, [("Late brief", MIA, -6, OPEN), ("Tomorrow", MIA, 1, OPEN)], title="Q2"
    )
    run(stack.api_url, "daily-cadence")
    with store.unit_of_work() as s:
        planned = s.execute(
            select(Notification.kind, Notification.status).where(
                Notification.action_item_id.in_(new.values())
            )
        ).all()
    assert sorted((str(k), str(st)) for k, st in planned) == [
        ("escalation", "sent"),  # to the lead
        ("escalation", "sent"),  # to a manager
        ("reminder", "sent"),
        ("reminder", "sent"),
    ]
    assert sorted(set(receiver.received()) - set(before)) == [
        ("/lou", "Escalation (lead): “Late brief” is overdue (Mia Marketing)"),
        ("/max", "Escalation (manager): “Late brief” is overdue (Mia Marketing)"),
        ("/mia", "Reminders: 2 of your action items are due soon or overdue"),
    ]


def test_killing_the_worker_mid_run_sends_nothing_twice_and_loses_nothing(
    deployed: tuple[Store, PrefectStack], receiver: Receiver
) -> None:
    store, stack = deployed
    for i in range(12):
        make_cycle(store, [(f"K{i} item", SAM, 20, OPEN)], title=f"K{i}")
    next_week = (TODAY + timedelta(days=7)).isoformat()
    first = len(receiver.messages)
    receiver.hold_after = first + 6  # six digests get through, then the receiver hangs

    from prefect.deployments import run_deployment

    with prefect_settings(stack.api_url):
        run_deployment(
            "weekly-digest/weekly-digest",
            parameters={"today": next_week},
            timeout=0,
            as_subflow=False,
        )
    # The digests go to two destinations (/sam and /marketing), and a destination gets one
    # send at a time: once two sends are held, every delivery thread of the run is stuck in a
    # send, so every message acknowledged so far is marked sent. Kill then. (A kill in the
    # instant between a channel's acknowledgement and the mark is the documented
    # at-least-once window.)
    assert receiver.wait_held(2, timeout=180), stack.log("worker.log")
    worker = stack.workers[-1]
    kill_tree(worker, signal.SIGKILL)  # the worker and its flow-run process, mid-delivery
    receiver.drop_held()  # nothing held was acknowledged: the sender never knew

    with store.unit_of_work() as s:
        stuck = set(
            s.scalars(
                select(Notification.id).where(Notification.status == NotificationStatus.SENDING)
            )
        )
    assert len(stuck) >= 2  # claimed by the dead run: the two held, and any not sent yet

    stack.start_worker()
    # The re-run takes over the dead run's claims at once (the default waits 10 minutes).
    run(stack.api_url, "weekly-digest", today=next_week, stale_after_seconds=0)

    digests = [
        (m["path"], m["title"]) for m in receiver.messages[first:] if "Weekly digest" in m["title"]
    ]
    with store.unit_of_work() as s:
        running = s.scalars(select(Cycle.title).where(Cycle.phase == Phase.EXECUTE)).all()
    # Each cycle in Execute: to sam (sales has no team channel: its point person) and marketing.
    expected = {(p, title) for title in running for p in ("/sam", "/marketing")}
    assert len(running) >= 12
    assert len(digests) == len(set(digests)) == len(expected)  # nothing twice
    assert {(p, t.split(": ", 1)[1].split(" (")[0]) for p, t in digests} == expected  # none lost
    assert len(receiver.dropped) == 2  # the interrupted sends, re-sent once by the second run
    with store.unit_of_work() as s:
        this_week = f"{TODAY.isoformat()}..{(TODAY + timedelta(days=6)).isoformat()}"
        week = s.scalars(  # next week's digest covers this week, Monday to Sunday
            select(Notification).where(Notification.key.like(f"digest:%:{this_week}#%"))
        ).all()
    assert len(week) == len(expected) and {n.status for n in week} == {NotificationStatus.SENT}
    assert {n.attempts for n in week if n.id in stuck} == {2}  # taken over once, sent once


def test_cli_cadence_run_is_a_flow_run_on_the_server(
    deployed: tuple[Store, PrefectStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aligncycle cadence run NAME`` runs the flow in-process, recorded by the server."""
    import typer
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from typer.testing import CliRunner

    from aligncycle import cli_cadence
    from aligncycle.cli_common import ErrorMappingGroup, reset_store

    store, stack = deployed
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", store.engine.url.render_as_string(False))
    reset_store()
    app = typer.Typer(cls=ErrorMappingGroup, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    cli_cadence.register(app)

    def escalation_runs() -> int:
        with get_client(sync_client=True) as client:
            only = FlowFilter(name=FlowFilterName(any_=["escalations"]))
            return len(client.read_flow_runs(flow_filter=only))

    with prefect_settings(stack.api_url):
        before = escalation_runs()
        r = CliRunner().invoke(
            app, ["cadence", "run", "escalations", "--today", TODAY.isoformat(), "--json"]
        )
        after = escalation_runs()
    reset_store()
    assert r.exit_code == 0, r.output
    assert '"planned": 0' in r.output  # everything was escalated by the earlier runs
    assert after == before + 1


def test_an_unreachable_channel_is_retried_with_backoff_and_reported(
    deployed: tuple[Store, PrefectStack],
) -> None:
    """Sid's reminder goes to two channels that cannot take it: a receiver that answers 500
    and a port nobody listens on. The run on the worker tries each message three times,
    backing off between the tries (its ``retry_delays_seconds``: 30 s then 2 minutes as
    deployed, 2 s then 5 s here), marks both failed with the reason, and ends Failed in a
    state named Undelivered that says so; ``aligncycle notify log`` lists both, with why."""
    import json
    import subprocess

    store, stack = deployed
    refusing = Receiver()
    refusing.status = 500
    nobody = free_port()  # bound and released: nothing listens there
    try:
        with store.unit_of_work() as s:
            mgr = person_by_email(s, MAX)
            channels.add_channel(s, mgr, kind="webhook", person=SID, url=refusing.url("sid"))
            channels.add_channel(
                s, mgr, kind="webhook", person=SID, url=f"json://127.0.0.1:{nobody}/sid"
            )
        cycle_id, _ = make_cycle(store, [("Unheard brief", SID, -1, OPEN)], title="Unheard")
        ended = run_to_end(stack.api_url, "overdue-reminders", retry_delays_seconds=[2, 5])
        tries = [at for path, at in refusing.posts if path == "/sid"]
    finally:
        refusing.close()

    assert len(tries) == 3, stack.log("worker.log")
    first_wait, second_wait = tries[1] - tries[0], tries[2] - tries[1]
    assert 2 <= first_wait < second_wait and 5 <= second_wait < 60  # backing off: 2 s, 5 s
    assert ended.state.is_failed() and ended.state.name == "Undelivered", ended.state
    said = ended.state.message
    assert said.startswith("2 messages could not be delivered (2 failed for good); first: ")
    assert f"the reminder to {SID} on channel " in said  # in words, not the message's key
    assert "error=500" in said or "Connection error" in said

    log = subprocess.run(
        [str(BIN / "python"), "-c", "from aligncycle.cli import main; main()"]
        + ["notify", "log", "--status", "failed", "--cycle", str(cycle_id), "--json"],
        cwd=PROJECT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert log.returncode == 0, log.stderr
    rows = json.loads(log.stdout)
    assert sorted((r["recipient"], r["status"], r["attempts"]) for r in rows) == [
        (SID, "failed", 3),
        (SID, "failed", 3),
    ]
    errors = sorted(r["error"] for r in rows)
    assert errors[0] == "A Connection error occurred sending JSON notification to 127.0.0.1."
    assert errors[1].startswith("Failed to send JSON POST notification") and "500" in errors[1]
