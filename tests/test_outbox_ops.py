"""The outboxes as operators and people rely on them, without Prefect: an invitation whose send
failed is tried again after a backoff by the sweep (and shows in the log meanwhile), the
sweep leaves a cadence run's own messages alone, and ``aligncycle outbox prune`` deletes what
is done and old, never what waits, failed, or still stops a reminder from going out twice."""

# ruff: noqa: F811 - the cadence tests' fixtures, used here by name

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from flows import notify
from models.base import utcnow
from models.cadence import reminders
from models.cadence.tables import Notification, NotificationKind, NotificationStatus
from models.db import Store
from models.enums import Phase
from models.phases.dispatch import DispatchStatus, PhaseDispatch
from models.services import accounts, invitations
from models.services.common import person_by_email
from models.tables import Cycle
from tests.test_cadence import (  # noqa: F401 - fixtures
    MAX,
    OPEN,
    SAM,
    TODAY,
    Receiver,
    backoff_passed,
    make_cycle,
    plan,
    receiver,
    rows,
    world,
)
from tests.test_notify_log import cli

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "s" * 40


def invite(store: Store, email: str = SAM) -> str:
    """A manager sends ``email`` an invitation (planned on their own channel); the link."""
    with store.unit_of_work() as s:
        sent = invitations.send_link(
            s,
            person_by_email(s, email),
            invitations.Purpose.INVITE,
            person_by_email(s, MAX),
            secret=SECRET,
            base_url="https://align.example.com",
        )
        assert sent.sent
        return sent.link


def account_rows(store: Store) -> list[Notification]:
    return rows(store, NotificationKind.ACCOUNT)


def test_an_invitation_whose_send_failed_is_retried_by_the_sweep_after_its_backoff(
    world: Store, receiver: Receiver, tmp_path: Path
) -> None:
    link = invite(world)
    receiver.status = 503
    # What the web app and `person invite` do right after the request: one try.
    first = notify.deliver(world, [NotificationKind.ACCOUNT])
    assert (first.sent, first.retrying) == (0, 1)
    (n,) = account_rows(world)
    assert n.status is NotificationStatus.PENDING and n.attempts == 1 and n.error
    assert 20 < (n.retry_at - utcnow()).total_seconds() <= 30

    # The log says what it is, that it will be tried again, when, and why it failed.
    (logged,) = json.loads(cli("notify", "log", "--kind", "account", "--json"))
    assert (logged["kind_words"], logged["status_words"]) == ("invitation", "to be tried again")
    assert logged["retry_at"] and "503" in logged["error"]
    line = cli("notify", "log", "--kind", "account").splitlines()[2]
    assert "invitation" in line and "to be tried again after" in line
    app = create_app(world, WebSettings(data_dir=tmp_path, secret_key=SECRET))
    from aligncycle.web.auth import SESSION_COOKIE

    with world.unit_of_work() as s:
        raw, _ = accounts.create_session(s, person_by_email(s, MAX))
    browser = TestClient(app, follow_redirects=False)
    browser.cookies.set(SESSION_COOKIE, raw)
    page = browser.get("/notifications").text.split("<table>")[1]
    assert "Invitation" in page and "To be tried again" in page and "next try after" in page

    # The sweep (the dispatch flow's, the web worker's) does not try it before its backoff.
    receiver.status = 200
    assert notify.deliver(world, sweep=True).as_dict()["sent"] == 0
    assert receiver.messages == []
    backoff_passed(world)
    swept = notify.deliver(world, sweep=True)
    assert (swept.sent, swept.retrying, swept.failed) == (1, 0, 0)
    (n,) = account_rows(world)
    assert (n.status, n.attempts, n.error, n.retry_at) == (NotificationStatus.SENT, 2, None, None)
    (message,) = receiver.messages
    assert link in message["message"]


def test_an_invitation_that_never_goes_through_ends_failed_and_is_reported(
    world: Store, receiver: Receiver
) -> None:
    invite(world)
    receiver.status = 500
    notify.deliver(world, [NotificationKind.ACCOUNT])
    backoff_passed(world)
    assert notify.deliver(world, sweep=True).retrying == 1
    backoff_passed(world)
    last = notify.deliver(world, sweep=True)
    assert (last.failed, last.retrying) == (1, 0)
    (n,) = account_rows(world)
    assert (n.status, n.attempts) == (NotificationStatus.FAILED, 3)
    (failed,) = json.loads(cli("notify", "log", "--status", "failed", "--json"))
    assert failed["kind_words"] == "invitation" and failed["retry_at"] is None
    backoff_passed(world)
    assert notify.deliver(world, sweep=True).as_dict()["sent"] == 0  # failed stays failed


def test_notify_send_sends_a_due_invitation_now(world: Store, receiver: Receiver) -> None:
    """The operator's sweep, by hand (the embedded default without the web app running)."""
    invite(world)
    receiver.status = 503
    notify.deliver(world, [NotificationKind.ACCOUNT])
    receiver.status = 200
    assert cli("notify", "send") == "sent 0 messages; 0 to be tried again, 0 failed\n"
    backoff_passed(world)
    assert cli("notify", "send") == "sent 1 message; 0 to be tried again, 0 failed\n"
    assert [n.status for n in account_rows(world)] == [NotificationStatus.SENT]


def test_the_sweep_leaves_a_cadence_runs_own_messages_to_it(
    world: Store, receiver: Receiver
) -> None:
    """Planned and never tried (``cadence run --plan-only``, or a run about to deliver): not
    the sweep's to send. Tried and refused: the sweep takes it once its backoff passed."""
    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    assert notify.deliver(world, sweep=True).as_dict()["sent"] == 0
    (n,) = rows(world, NotificationKind.REMINDER)
    assert (n.status, n.attempts) == (NotificationStatus.PENDING, 0)
    receiver.status = 500
    notify.deliver(world, [NotificationKind.REMINDER])
    receiver.status = 200
    backoff_passed(world)
    assert notify.deliver(world, sweep=True).sent == 1


# --- pruning ----------------------------------------------------------------------------------


def _age(store: Store, days: int, *ids: int) -> None:
    when = utcnow() - timedelta(days=days)
    with store.unit_of_work() as s:
        s.execute(
            update(Notification)
            .where(Notification.id.in_(ids))
            .values(status=NotificationStatus.SENT, sent_at=when, created_at=when, attempts=1)
        )


def test_outbox_prune_deletes_what_is_done_and_old_and_keeps_the_rest(
    world: Store, receiver: Receiver
) -> None:
    open_cycle, _ = make_cycle(world, [("soon", SAM, 1, OPEN)], title="Open")
    closed_cycle, _ = make_cycle(world, [("late", SAM, 1, OPEN)], title="Closed")
    plan(world, reminders.plan_reminders)
    invite(world)
    by_cycle = {n.cycle_id: n.id for n in rows(world, NotificationKind.REMINDER)}
    (link,) = [n.id for n in account_rows(world)]
    _age(world, 100, by_cycle[open_cycle], by_cycle[closed_cycle], link)
    old = utcnow() - timedelta(days=100)
    with world.unit_of_work() as s:
        s.get(Cycle, closed_cycle).phase = Phase.CLOSED
        s.add_all(
            [
                PhaseDispatch(
                    key=f"cycle:{open_cycle}:plan",
                    cycle_id=open_cycle,
                    phase=Phase.PLAN,
                    today=TODAY,
                    status=DispatchStatus.STARTED,
                    created_at=old,
                    started_at=old,
                ),
                PhaseDispatch(  # asked for long ago and never started: kept
                    key=f"cycle:{open_cycle}:execute",
                    cycle_id=open_cycle,
                    phase=Phase.EXECUTE,
                    today=TODAY,
                    status=DispatchStatus.PENDING,
                    created_at=old,
                ),
                PhaseDispatch(  # started yesterday: kept
                    key=f"cycle:{closed_cycle}:plan",
                    cycle_id=closed_cycle,
                    phase=Phase.PLAN,
                    today=TODAY,
                    status=DispatchStatus.STARTED,
                    created_at=utcnow() - timedelta(days=1),
                    started_at=utcnow() - timedelta(days=1),
                ),
            ]
        )
        failed = Notification(
            key="digest:old-and-failed",
            recipient="teams:sales",
            kind=NotificationKind.DIGEST,
            subject="an old digest",
            body="-",
            status=NotificationStatus.FAILED,
            attempts=3,
            error="refused",
            created_at=old,
        )
        s.add(failed)

    out = cli("outbox", "prune")
    assert out == (
        "pruned 1 started phase flow request and 2 sent messages older than 90 days; waiting "
        "and failed ones are kept\n"
    )
    with world.unit_of_work() as s:
        left = {(r.key, r.status) for r in s.scalars(select(PhaseDispatch))}
        assert left == {
            (f"cycle:{open_cycle}:execute", DispatchStatus.PENDING),
            (f"cycle:{closed_cycle}:plan", DispatchStatus.STARTED),
        }
    kept = {(n.kind, n.cycle_id, n.status) for n in rows(world)}
    assert kept == {
        # the open cycle's reminder: its row is what stops it from going out again
        (NotificationKind.REMINDER, open_cycle, NotificationStatus.SENT),
        (NotificationKind.DIGEST, None, NotificationStatus.FAILED),
    }
    # The open cycle's item is still due soon: planning again sends nobody a second reminder.
    assert plan(world, reminders.plan_reminders).planned == 0
    assert json.loads(cli("outbox", "prune", "--older-than", "1", "--json"))["messages"] == 0


@pytest.mark.parametrize("days", ["0", "abc"])
def test_outbox_prune_refuses_a_bad_retention_in_one_line(world: Store, days: str) -> None:
    before = rows(world)
    out = cli("outbox", "prune", "--older-than", days, code=2)
    assert "--older-than" in out and "Traceback" not in out
    assert rows(world) == before
