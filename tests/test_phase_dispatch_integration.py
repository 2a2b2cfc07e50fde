"""One source of truth, the way a company runs it: a Prefect server on PostgreSQL with basic
authentication, ``prefect deploy --all`` from ``prefect.yaml``, the zombie-run automation made
by ``aligncycle flows setup``, a worker with heartbeats, and the web app on the same store.

- a point person advances a cycle in the web app, another through the REST API: each move's
  phase flow run is created on the server (by the move's outbox row) and a worker runs it;
- the Prefect UI at the documented address (the server on a host and port of its own, with
  ``PREFECT_UI_API_URL``), past its password prompt, lists a cycle's run under the cycle's
  tag (Chromium; a screenshot is kept);
- the Prefect server is down while a cycle is advanced: the move waits in the store and its
  run is created once the server is back;
- a worker is killed while a phase run is in the middle of its work: the automation marks the
  run Crashed, the next dispatch starts a new run, a new worker completes it, and no run is
  left Running, Pending or Paused without a process.

Not part of ``make test`` (``make test-integration``; needs PostgreSQL on 127.0.0.1:5432, or
``ALIGNCYCLE_TEST_DATABASE_URL``). About three to four minutes, most of it the minute the
automation waits without a heartbeat before it calls a run crashed; every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.pg import create_database, drop_database
from bench.prefect_server import BIN, POOL, PrefectStack, kill_tree
from models.db import Store
from models.enums import Phase
from models.phases import dispatch as outbox
from models.schemas import PersonCreate, TeamCreate
from models.services import accounts, people, playbooks
from models.services.common import person_by_email
from tests.conftest import ORG, PROJECT
from tests.test_advance_everywhere import Surfaces, execute_done, identify_ready
from tests.test_cadence_integration import PG_ADMIN
from tests.test_services import MIA, SAM

pytestmark = pytest.mark.integration

AUTH = "aligncycle:integration-only-password"
#: The server listens on HOST and browsers reach it as UI_HOST (Chromium maps the name), as
#: docs/running-for-a-company.md sets it up with PREFECT_UI_API_URL: a UI that called the
#: default 127.0.0.1 instead would find nothing there.
HOST, UI_HOST = "127.0.0.2", "prefect.internal"
WITHIN = 60  # seconds without a heartbeat before the automation calls a run crashed


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s\n{log}")
        time.sleep(0.5)


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_run(run_id: str) -> Any:
    with client() as c:
        return c.read_flow_run(run_id)


def row_of(store: Store, cycle_id: int) -> outbox.PhaseDispatch:
    with store.unit_of_work() as s:
        (row,) = outbox.for_cycle(s, cycle_id)
        s.expunge(row)
        return row


def started_run(store: Store, cycle_id: int, not_this: str | None = None) -> str:
    """The flow run the cycle's outbox row started (a new one, when ``not_this`` is given)."""

    def check() -> str | None:
        row = row_of(store, cycle_id)
        done = row.status == outbox.DispatchStatus.STARTED and row.flow_run_id != not_this
        return row.flow_run_id if done else None

    return wait_for(f"cycle {cycle_id}'s flow run started", check, 60)


def aligncycle(stack: PrefectStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "python"), "-c", "from aligncycle.cli import main; main()", *args],
        cwd=PROJECT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# --- the company -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def company() -> Iterator[tuple[Store, PrefectStack, Surfaces]]:
    """The store on PostgreSQL with the org; a Prefect server (basic auth; on HOST, its UI
    on, browsers reaching it as UI_HOST through PREFECT_UI_API_URL) with the project
    deployed, schedules off (the test dispatches), the zombie automation, one worker with
    heartbeats every 30 s; the web app on the store. This process is a client like the web
    app: PREFECT_API_URL and PREFECT_API_AUTH_STRING, seen by its background threads too."""
    import prefect.context
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from aligncycle.settings import get_settings
    from aligncycle.web import create_app
    from aligncycle.web.deps import WebSettings
    from migrations import runner

    workdir = Path(tempfile.mkdtemp(prefix="aligncycle-it-phases-"))
    store_url, store_db = create_database(PG_ADMIN, "aligncycle_it_phases")
    store = Store(store_url)
    stack = PrefectStack(PG_ADMIN, store_url, workdir, host=HOST, ui_host=UI_HOST)
    stack.env.update(
        PREFECT_SERVER_API_AUTH_STRING=AUTH,  # the server
        PREFECT_API_AUTH_STRING=AUTH,  # its clients: deploy, workers, flow runs, the CLI
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
        ALIGNCYCLE_DATA_DIR=str(workdir / "data"),
    )
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "ALIGNCYCLE_DATABASE_URL")}
    with ExitStack() as stack_ctx:
        try:
            runner.upgrade(store.engine)
            with store.unit_of_work() as s:
                people.create_team(s, TeamCreate(key="sales", name="Sales"))
                people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
                for name, email, team, role in ORG:
                    people.create_person(
                        s, PersonCreate(name=name, email=email, team=team, role=role)
                    )
                playbooks.sync_directory(s, PROJECT / "playbooks")
            stack.start()
            stack.cli("work-pool", "create", POOL, "--type", "process")
            stack.cli("--no-prompt", "deploy", "--all")
            os.environ["PREFECT_API_URL"] = stack.api_url  # the web app's dispatch looks here
            os.environ["ALIGNCYCLE_DATABASE_URL"] = store_url
            get_settings.cache_clear()
            updates = {PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: AUTH}
            stack_ctx.enter_context(temporary_settings(updates=updates))
            stack_ctx.enter_context(
                prefect.context._temporary_global_settings_context(
                    prefect.context.get_settings_context()
                )
            )
            with client() as c:  # the test dispatches; no schedule runs behind its back
                for d in c.read_deployments():
                    for schedule in d.schedules:
                        c.update_deployment_schedule(d.id, schedule.id, active=False)
            setup = aligncycle(stack, "flows", "setup", "--within", str(WITHIN))
            assert setup.returncode == 0, setup.stderr
            assert setup.stdout.startswith("created the automation that marks a flow run Crashed")
            stack.start_worker()
            stack.wait_for_worker()
            surfaces = Surfaces(
                create_app(store, WebSettings(data_dir=workdir, secret_key="integration"))
            )
            with store.unit_of_work() as s:
                for email in (SAM, MIA):
                    who = person_by_email(s, email)
                    raw, ws = accounts.create_session(s, who)
                    surfaces.cookies[email] = (raw, ws.csrf_token)
                    surfaces.tokens[email], _ = accounts.create_token(s, who, "integration")
            yield store, stack, surfaces
        finally:
            if "prefect.logging.handlers" in sys.modules:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
            stack.stop()
            store.dispose()
            drop_database(PG_ADMIN, store_db)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()
            shutil.rmtree(workdir, ignore_errors=True)


# --- the tests ---------------------------------------------------------------------------------


def test_the_server_refuses_clients_without_the_password(
    company: tuple[Store, PrefectStack, Surfaces],
) -> None:
    import httpx

    _, stack, _ = company
    assert httpx.get(f"{stack.api_url}/health", timeout=5).status_code == 200
    refused = httpx.post(f"{stack.api_url}/deployments/filter", json={}, timeout=5)
    assert refused.status_code == 401
    user, password = AUTH.split(":")
    ok = httpx.post(f"{stack.api_url}/deployments/filter", json={}, auth=(user, password))
    assert ok.status_code == 200 and {d["name"] for d in ok.json()} >= {"plan", "dispatch"}


def test_a_web_and_an_api_advance_each_start_their_phase_run_on_a_worker(
    company: tuple[Store, PrefectStack, Surfaces],
) -> None:
    store, stack, surfaces = company
    by_web, _ = identify_ready(store)
    by_api, _ = identify_ready(store)
    assert surfaces.advance("web", SAM, by_web)[0]
    assert surfaces.advance("api", SAM, by_api) == (True, "plan")
    with client() as c:
        plan = c.read_deployment_by_name("plan/plan")
    for cycle_id in (by_web, by_api):
        run_id = started_run(store, cycle_id)
        done = wait_for(
            f"plan run of cycle {cycle_id} completed",
            lambda run_id=run_id: (r := read_run(run_id)).state.is_final() and r,
            120,
            stack.log("worker.log"),
        )
        assert done.state.is_completed(), done.state
        assert done.deployment_id == plan.id and done.name == f"plan-cycle-{cycle_id}"
        assert {"aligncycle", f"cycle:{cycle_id}", "phase:plan"} <= set(done.tags)
    # Dispatching again starts nothing more: one run per move.
    again = aligncycle(stack, "flows", "dispatch")
    assert again.returncode == 0 and again.stdout.strip() == "nothing waits to start"


def test_the_prefect_ui_at_the_documented_address_lists_a_cycles_runs(
    company: tuple[Store, PrefectStack, Surfaces], tmp_path: Path
) -> None:
    """The operator opens ``http://prefect.internal:PORT`` (the doc's address), gives the
    server's auth string at the UI's prompt, and opens the runs filtered by the cycle's tag:
    the run of the cycle advanced in the web app is listed, and every API call the page made
    went to ``PREFECT_UI_API_URL``. A screenshot is kept (also in ALIGNCYCLE_SCREENSHOT_DIR)."""
    import httpx
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_support import ARGS, CHROMIUM

    store, stack, surfaces = company
    assert stack.ui_url is not None
    # What the doc tells the operator to check first: the UI's settings name the API's
    # public address and basic authentication.
    ui_settings = httpx.get(f"http://{HOST}:{stack.port}/ui-settings", timeout=10).json()
    assert (ui_settings["api_url"], ui_settings["auth"]) == (f"{stack.ui_url}/api", "BASIC")

    cycle_id, _ = identify_ready(store)
    assert surfaces.advance("web", SAM, cycle_id)[0]
    run_id = started_run(store, cycle_id)
    done = wait_for(
        "the plan run completed",
        lambda: (r := read_run(run_id)).state.is_final() and r,
        120,
        stack.log("worker.log"),
    )
    assert done.state.is_completed(), done.state
    others = [r.name for r in _runs_not_of(cycle_id)]

    # The browser knows the server only by its public name: UI_HOST resolves to HOST, and
    # nothing else resolves (no call leaves the machine).
    args = [*ARGS, f"--host-resolver-rules=MAP {UI_HOST} {HOST}, MAP * ~NOTFOUND"]
    api_calls: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
            page.goto(stack.ui_url)  # the documented address
            prompt = page.get_by_placeholder("admin:pass")
            expect(prompt).to_be_visible(timeout=30_000)
            prompt.fill(AUTH)  # the whole auth string, user:password, in one field
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("link", name="Runs")).to_be_visible(timeout=30_000)
            page.goto(f"{stack.ui_url}/v2/runs?tags=cycle:{cycle_id}")  # the doc's link
            row = page.get_by_role("link", name=f"plan-cycle-{cycle_id}", exact=True)
            expect(row).to_be_visible(timeout=30_000)
            expect(page.get_by_text("1 Flow run", exact=True)).to_be_visible()
            expect(page.get_by_text("Completed").first).to_be_visible()
            for name in others:  # the other cycles' runs are filtered out
                expect(page.get_by_text(name, exact=True)).to_have_count(0)
            shot = tmp_path / "prefect-ui-cycle-runs.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    if os.environ.get("ALIGNCYCLE_SCREENSHOT_DIR"):
        keep = Path(os.environ["ALIGNCYCLE_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep / shot.name)
    assert shot.stat().st_size > 10_000
    assert any("/flow_runs/" in u for u in api_calls)
    assert {u.split("/api/")[0] for u in api_calls} == {stack.ui_url}


def _runs_not_of(cycle_id: int) -> list[Any]:
    with client() as c:
        return [r for r in c.read_flow_runs() if f"cycle:{cycle_id}" not in r.tags]


def test_a_move_during_a_prefect_outage_gets_its_run_once_the_server_is_back(
    company: tuple[Store, PrefectStack, Surfaces],
) -> None:
    """The Prefect server is down: people still advance cycles in the web app; the move's
    row waits (pending), and the first dispatch after the server is back creates the run,
    which the worker (retrying meanwhile) completes."""
    store, stack, surfaces = company
    assert stack.server is not None
    kill_tree(stack.server, signal.SIGTERM)
    cycle_id, _ = identify_ready(store)
    assert surfaces.advance("web", SAM, cycle_id)[0]  # the web app does not need Prefect
    time.sleep(5)  # the move's own dispatch found no server
    row = row_of(store, cycle_id)
    assert (row.status, row.flow_run_id) == (outbox.DispatchStatus.PENDING, None)
    waiting = aligncycle(stack, "flows", "pending")
    assert f"{cycle_id} " in waiting.stdout and " Plan " in waiting.stdout
    down = aligncycle(stack, "flows", "dispatch")
    assert down.returncode == 1
    assert down.stdout.startswith(f"(no Prefect server answers at {stack.api_url}")
    assert row_of(store, cycle_id).error == f"no Prefect server answers at {stack.api_url}"

    stack.start()  # the same server and database, restarted
    up = aligncycle(stack, "flows", "dispatch")
    assert up.returncode == 0, up.stderr
    run_id = started_run(store, cycle_id)
    done = wait_for(
        "the plan run after the outage completed",
        lambda: (r := read_run(run_id)).state.is_final() and r,
        120,
        stack.log("worker.log"),
    )
    assert done.state.is_completed() and done.name == f"plan-cycle-{cycle_id}"


def test_a_worker_killed_mid_run_leaves_no_zombie_and_the_cycle_completes(
    company: tuple[Store, PrefectStack, Surfaces],
) -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    store, stack, surfaces = company
    cycle_id, _ = execute_done(store)
    lock = store.engine.connect()
    try:
        assert surfaces.advance("api", MIA, cycle_id) == (True, "recap")
        # Hold the recap run in the middle of its work: its read of the checklist waits (the
        # dispatcher reads the cycle, not the checklist, so the run is still created).
        lock.begin()
        lock.execute(text("LOCK TABLE checklist_items IN ACCESS EXCLUSIVE MODE"))
        first = started_run(store, cycle_id)
        wait_for(
            "the recap run running",
            lambda: read_run(first).state.is_running(),
            120,
            stack.log("worker.log"),
        )
        time.sleep(3)  # its first heartbeat reaches the server
        kill_tree(stack.workers[-1], signal.SIGKILL)  # the worker and its flow-run process
    finally:
        lock.rollback()
        lock.close()

    crashed = wait_for(
        "the automation marked the run crashed",
        lambda: (r := read_run(first)).state.is_crashed() and r,
        WITHIN + 60,
    )
    assert "heartbeat" in crashed.state.message
    # The next dispatch (the `dispatch` deployment does it every 2 minutes) starts a new run.
    out = aligncycle(stack, "flows", "dispatch")
    assert out.returncode == 0, out.stderr
    created = f"flow run recap-cycle-{cycle_id} created on the Prefect server; a worker runs it"
    assert out.stdout.strip() == created
    stack.start_worker()
    second = started_run(store, cycle_id, not_this=first)
    done = wait_for(
        "the new recap run completed",
        lambda: (r := read_run(second)).state.is_final() and r,
        120,
        stack.log("worker.log"),
    )
    assert done.state.is_completed(), done.state
    row = row_of(store, cycle_id)
    assert (row.restarts, row.phase) == (1, Phase.RECAP)
    with store.unit_of_work() as s:
        assert _phase(s, cycle_id) is Phase.RECAP
    with client() as c:
        alive = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING, StateType.PENDING, StateType.PAUSED]
                    )
                )
            )
        )
    assert alive == []


def _phase(s: Session, cycle_id: int) -> Phase:
    from models.services import cycles

    return cycles.get_cycle(s, cycle_id).phase
