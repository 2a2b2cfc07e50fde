"""What runs on its own, under the session's Prefect server: the web process's background
worker on the embedded default (a cycle advanced in the web app or the API gets its phase flow
run, without anyone running ``flows dispatch``), the ``dispatch`` flow's sweep of messages,
crashed cadence runs run again, and the daily run's pruning of the outboxes."""

# ruff: noqa: F811 - the cadence tests' fixtures, used here by name

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import flows  # noqa: F401 - Prefect's quiet defaults before Prefect loads
from aligncycle.web import create_app
from aligncycle.web.auth import SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from models.base import utcnow
from models.cadence.tables import Notification, NotificationKind, NotificationStatus
from models.db import Store
from models.enums import Phase
from models.phases import dispatch as outbox
from models.services import accounts
from tests.test_advance_everywhere import identify_ready, phase_of
from tests.test_cadence import (  # noqa: F401 - fixtures
    OPEN,
    TODAY,
    Receiver,
    backoff_passed,
    make_cycle,
    receiver,
    rows,
    world,
)
from tests.test_outbox_ops import account_rows, invite
from tests.test_services import SAM, P

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.prefect

#: Generous: the first phase flow of a session waits for the Prefect server's first answers.
WAIT = 120


def flow_run(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


@pytest.fixture
def embedded(
    prefect_server: str, org: Store, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The org's store, as on the embedded default: no Prefect server configured for the web
    app (its flows reach the session's server through Prefect's settings, as a temporary
    local server would be reached)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return org


@pytest.mark.parametrize("surface", ["web", "api"])
def test_a_cycle_advanced_in_the_web_app_gets_its_phase_flow_run_by_the_web_process(
    embedded: Store, data_dir: Path, surface: str
) -> None:
    cycle_id, _ = identify_ready(embedded)
    app = create_app(embedded, WebSettings(data_dir=data_dir, secret_key="test-secret"))
    with embedded.unit_of_work() as s:
        raw, ws = accounts.create_session(s, P(s, SAM))
        token, _ = accounts.create_token(s, P(s, SAM), "tests")
    with TestClient(app, follow_redirects=False) as client:  # the app's lifespan runs
        worker = app.state.flows_worker
        assert worker is not None and worker.running
        assert worker.wait_idle(WAIT)  # its first pass: nothing waited
        if surface == "web":
            client.cookies.set(SESSION_COOKIE, raw)
            page = client.get(f"/cycles/{cycle_id}").text
            version = re.search(
                rf'action="/cycles/{cycle_id}/advance".*?name="version" value="(\d+)"', page, re.S
            ).group(1)
            resp = client.post(
                f"/cycles/{cycle_id}/advance", data={"csrf": ws.csrf_token, "version": version}
            )
            assert resp.status_code == 303
        else:
            resp = client.post(
                f"/api/v1/cycles/{cycle_id}/advance",
                headers={"Authorization": f"Bearer {token}"},
                json={},
            )
            assert resp.status_code == 200 and resp.json()["phase"] == "plan"
        # Answered at once; the flow runs in the background, woken by the move's commit.
        assert worker.wait_idle(WAIT), "the background worker did not finish"
        assert worker.last_error is None
    assert app.state.flows_worker is None and not worker.running  # stopped with the app
    with embedded.unit_of_work() as s:
        (row,) = outbox.for_cycle(s, cycle_id)
        assert (row.phase, row.status, row.attempts) == (Phase.PLAN, "started", 1)
    run = flow_run(row.flow_run_id)
    assert run.name == f"plan-cycle-{cycle_id}" and run.state.is_completed()
    assert {"aligncycle", f"cycle:{cycle_id}", "phase:plan"} <= set(run.tags)
    assert phase_of(embedded, cycle_id) is Phase.PLAN


def test_with_a_prefect_server_configured_the_web_process_leaves_flows_to_it(
    embedded: Store, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    app = create_app(embedded, WebSettings(data_dir=data_dir, secret_key="test-secret"))
    with TestClient(app):
        assert app.state.flows_worker is None
    forced = WebSettings(data_dir=data_dir, secret_key="test-secret", web_runs_flows=False)
    monkeypatch.delenv("PREFECT_API_URL")
    app = create_app(embedded, forced)
    with TestClient(app):
        assert app.state.flows_worker is None


# --- the dispatch flow's sweep ---------------------------------------------------------------


def test_the_dispatch_flow_delivers_a_failed_invitation_and_says_when_one_failed_for_good(
    prefect_server: str, world: Store, receiver: Receiver, data_dir: Path
) -> None:
    from flows.dispatch import dispatch_flow
    from flows.notify import deliver

    invite(world)
    receiver.status = 503
    deliver(world, [NotificationKind.ACCOUNT])  # the try right after the request
    receiver.status = 200
    backoff_passed(world)
    state = dispatch_flow("in-process", return_state=True)
    assert state.is_completed() and state.result()["delivery"]["sent"] == 1
    (n,) = account_rows(world)
    assert n.status is NotificationStatus.SENT

    invite(world)
    receiver.status = 500
    with world.unit_of_work() as s:  # its last try is due
        s.execute(
            update(Notification)
            .where(Notification.status == NotificationStatus.PENDING)
            .values(attempts=2, retry_at=utcnow() - timedelta(seconds=1))
        )
    state = dispatch_flow("in-process", return_state=True)
    assert state.is_failed() and state.name == "Undelivered"
    assert state.message.startswith("1 message could not be delivered (1 failed for good)")
    assert [n.status for n in account_rows(world)].count(NotificationStatus.FAILED) == 1


# --- crashed cadence runs -------------------------------------------------------------------


def test_a_crashed_cadence_run_is_run_again_the_same_day_but_not_forever(
    prefect_server: str,
) -> None:
    """The zombie automation marked the daily run Crashed (its worker was killed): the next
    dispatch creates one new run of its deployment for the same day; a rerun that crashes too
    is run again up to twice; a crash after which a later run already ran is left alone."""
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Running

    from flows.cadence import daily_cadence
    from flows.reruns import MAX_RERUNS, rerun_crashed_cadence

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(daily_cadence)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="daily-cadence-test",
            tags=["aligncycle", "cadence"],
            parameters={"remind_days_before": 2},
            paused=True,
        )
    try:

        def crash(run_id: Any) -> None:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, Running(), force=True)
                client.set_flow_run_state(run_id, Crashed(message="no heartbeat"), force=True)

        with get_client(sync_client=True) as client:
            first = client.create_flow_run_from_deployment(deployment_id)
        crash(first.id)
        chain = [first]
        for n in range(1, MAX_RERUNS + 1):
            (asked,) = rerun_crashed_cadence()
            assert rerun_crashed_cadence() == []  # once per crashed run
            again = flow_run(asked[1])
            assert again.deployment_id == deployment_id
            assert again.parameters == {
                "remind_days_before": 2,
                "today": first.expected_start_time.astimezone().date().isoformat(),
            }
            assert {"cadence", f"rerun-of:{chain[-1].id}", f"rerun:{n}"} <= set(again.tags)
            chain.append(again)
            crash(again.id)
        assert rerun_crashed_cadence() == []  # crashed three times in a row: left to a person

        # A crash followed by a run that completed (the next schedule): nothing to catch up.
        with get_client(sync_client=True) as client:
            crashed = client.create_flow_run_from_deployment(deployment_id)
            crash(crashed.id)
            later = client.create_flow_run_from_deployment(deployment_id)
            client.set_flow_run_state(later.id, Running(), force=True)
            client.set_flow_run_state(later.id, Completed(), force=True)
        assert rerun_crashed_cadence() == []
        # Crashes older than the window are the next schedule's.
        assert rerun_crashed_cadence(now=datetime.now(UTC) + timedelta(days=2)) == []
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


# --- the daily run prunes the outboxes --------------------------------------------------------


def test_the_daily_cadence_run_prunes_what_is_done_and_old(
    prefect_server: str,
    world: Store,
    receiver: Receiver,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.cadence import daily_cadence

    monkeypatch.setenv("ALIGNCYCLE_OUTBOX_RETENTION_DAYS", "30")
    invite(world)
    with world.unit_of_work() as s:
        s.execute(
            update(Notification).values(
                status=NotificationStatus.SENT, sent_at=utcnow() - timedelta(days=31), attempts=1
            )
        )
    state = daily_cadence(return_state=True)
    assert state.is_completed()
    assert state.result()["pruned"]["messages"] == 1
    assert rows(world) == []


def test_a_daily_run_that_could_not_deliver_says_so_and_still_prunes(
    prefect_server: str, world: Store, receiver: Receiver, data_dir: Path
) -> None:
    from flows.cadence import daily_cadence

    invite(world)
    with world.unit_of_work() as s:  # sent long ago
        s.execute(
            update(Notification).values(
                status=NotificationStatus.SENT, sent_at=utcnow() - timedelta(days=91), attempts=1
            )
        )
    make_cycle(world, [("late", SAM, -3, OPEN)])
    receiver.status = 500
    state = daily_cadence(today=TODAY, retry_delays_seconds=[], return_state=True)
    assert state.is_failed() and state.name == "Undelivered"
    assert state.message.startswith("overdue-reminders: 1 message could not be delivered")
    assert "escalations: " in state.message
    # The reminder and the escalation wait for another try; the old invitation was pruned.
    assert {(n.kind, n.status) for n in rows(world)} == {
        (NotificationKind.REMINDER, NotificationStatus.PENDING),
        (NotificationKind.ESCALATION, NotificationStatus.PENDING),
    }
