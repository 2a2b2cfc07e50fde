"""The cadence in the domain: channels, reminders, escalations, check-ins, digests, recap-due,
and delivery through apprise to a local HTTP receiver. Fast; SQLite and PostgreSQL.

Dates are fixed (TODAY is a Monday) so ISO weeks and cadence periods are deterministic.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import typer
from sqlalchemy import event, func, select
from typer.testing import CliRunner

from models import phases
from models.base import utcnow
from models.cadence import (
    channels,
    checkins,
    digest,
    escalations,
    outbox,
    planning,
    recap_due,
    reminders,
    urls,
)
from models.cadence.policy import CadencePolicy
from models.cadence.tables import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from models.db import Store
from models.enums import ActionStatus, Confidence, Phase
from models.errors import Conflict, Forbidden, InvalidInput, NotFound, TransitionRefused
from models.playbook import parse_playbook
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemUpdate,
    CycleCreate,
    PersonCreate,
)
from models.services import actions, cycles, playbooks
from models.services import people as people_svc
from models.services.common import person_by_email
from models.tables import ActionItem, ChecklistItem, Cycle, Event
from tests.conftest import db_snapshot

TODAY = date(2026, 3, 2)  # a Monday
START = TODAY - timedelta(days=30)
END = TODAY + timedelta(days=30)
SAM, MIA, LEE, LOU, MAX, MEG, SID = (
    "sam@acme.test",
    "mia@acme.test",
    "lee@acme.test",
    "lou@acme.test",
    "max@acme.test",
    "meg@acme.test",
    "sid@acme.test",
)

PLAYBOOK = """
name: cadence-test
version: 1
title: Cadence test
teams: [sales, marketing]
kpis: [mql_to_sql_rate, revenue_won]
settings: {cadence: weekly}
phases:
  identify: {}
  plan: {}
  execute:
    questions:
      - {key: wrapup, text: "Wrap-up notes?", answer: text, required: false}
  recap: {}
"""
STRICT = PLAYBOOK.replace("name: cadence-test", "name: cadence-strict").replace(
    "required: false", "required: true"
)


# --- a local HTTP receiver for apprise's json:// URLs --------------------------------------


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records every JSON message apprise posts.

    ``messages`` holds the acknowledged ones (answered 200); ``posts`` every post, answered or
    not, as (path, time.monotonic()). With ``hold_after=N``, every
    message after the N-th is held unanswered (``holding`` is set) until :meth:`drop_held`,
    which closes those connections without an answer: a sender that died meanwhile never
    learned whether they arrived, and they do not count as delivered.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.posts: list[tuple[str, float]] = []
        self.dropped: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.status = 200
        self.hold_after: int | None = None
        self.holding = threading.Event()
        self.held = 0
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                status = receiver.on_message(self.path, payload)
                if status is None:  # dropped: no answer at all
                    self.close_connection = True
                    return
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def on_message(self, path: str, payload: dict[str, Any]) -> int | None:
        message = {"path": path, **payload}
        with self.lock:
            self.posts.append((path, time.monotonic()))
            hold = self.hold_after is not None and len(self.messages) >= self.hold_after
            if not hold:
                if self.status == 200:
                    self.messages.append(message)
                return self.status
        with self.lock:
            self.held += 1
        self.holding.set()
        self.released.wait(timeout=300)
        with self.lock:
            self.dropped.append(message)
        return None

    def wait_held(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages are held at once (every sender is stuck in a send)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.held >= count:
                    return True
            time.sleep(0.02)
        return False

    def drop_held(self) -> None:
        """Answer nothing to the held messages, and take every later one normally."""
        with self.lock:
            self.hold_after = None
        self.released.set()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.strip('/')}"

    def paths(self) -> list[str]:
        with self.lock:
            return sorted(m["path"] for m in self.messages)

    def received(self) -> list[tuple[str, str]]:
        """(path, title) of every acknowledged message, sorted."""
        with self.lock:
            return sorted((m["path"], m["title"]) for m in self.messages)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# --- building cycles in Execute -------------------------------------------------------------


@pytest.fixture
def world(org: Store, receiver: Receiver) -> Store:
    """The org, the test playbooks, and channels: personal webhooks for sam, mia, lee, lou and
    max; a team webhook for marketing (meg has none of her own); nothing for sid or for the
    sales team."""
    with org.unit_of_work() as s:
        for text in (PLAYBOOK, STRICT):
            playbooks.register(
                s, parse_playbook(text), hashlib.sha256(text.encode()).hexdigest(), "t.yaml"
            )
        mgr = person_by_email(s, MAX)
        for email in (SAM, MIA, LEE, LOU, MAX):
            channels.add_channel(
                s, mgr, kind="webhook", person=email, url=receiver.url(email.split("@")[0])
            )
        channels.add_channel(
            s, mgr, kind="webhook", team="marketing", url=receiver.url("marketing")
        )
    return org


def make_cycle(
    store: Store,
    items: list[tuple[str, str | None, int | None, ActionStatus]],
    title: str = "Q1",
    playbook: str = "cadence-test",
    start: date = START,
    end: date = END,
) -> tuple[int, dict[str, int]]:
    """A cycle moved to Execute through the services, with action items (title, owner, due in
    N days from TODAY, status). Returns (cycle id, {title: action id})."""
    with store.unit_of_work() as s:
        sam, lee = person_by_email(s, SAM), person_by_email(s, LEE)
        c = phases.start_cycle(
            s,
            CycleCreate(
                playbook=playbook,
                title=title,
                period_start=start,
                period_end=end,
                point_persons=[MIA],
            ),
            sam,
            today=start,
        )
        cycles.advance_cycle(s, c, sam, today=start)
        ids = {}
        for t, owner, due, _ in items:
            a, _ = actions.add_action(
                s,
                c,
                ActionItemCreate(
                    title=t,
                    owner=owner,
                    due_date=TODAY + timedelta(days=due) if due is not None else None,
                ),
                lee,
            )
            ids[t] = a.id
        cycles.advance_cycle(s, c, sam, today=start)
        s.flush()
        for t, _, _, status in items:
            s.get(ActionItem, ids[t]).status = status
        assert c.phase is Phase.EXECUTE
        return c.id, ids


def rows(store: Store, kind: NotificationKind | None = None) -> list[Notification]:
    with store.unit_of_work() as s:
        stmt = select(Notification).order_by(Notification.key)
        if kind is not None:
            stmt = stmt.where(Notification.kind == kind)
        return list(s.scalars(stmt))


def backoff_passed(store: Store) -> None:
    """As if the wait before the next try of every failed send were over."""
    from sqlalchemy import update

    with store.unit_of_work() as s:
        s.execute(
            update(Notification)
            .where(Notification.retry_at.is_not(None))
            .values(retry_at=utcnow() - timedelta(seconds=1))
        )


def recipients(store: Store, kind: NotificationKind) -> list[tuple[str, str]]:
    """(base key without the channel, recipient) of each planned notification of a kind."""
    return sorted((n.key.split("#")[0], n.recipient) for n in rows(store, kind))


def plan(store: Store, fn: Any, today: date = TODAY, **kw: Any) -> planning.PlanResult:
    with store.unit_of_work() as s:
        return fn(s, today, **kw)


OPEN, WIP, DONE, BLOCKED = (
    ActionStatus.OPEN,
    ActionStatus.IN_PROGRESS,
    ActionStatus.DONE,
    ActionStatus.BLOCKED,
)


# --- reminders ------------------------------------------------------------------------------


def test_reminders_go_to_owners_of_items_due_soon_or_overdue_once(world: Store) -> None:
    cid, ids = make_cycle(
        world,
        [
            ("soon", SAM, 1, OPEN),
            ("today", MIA, 0, WIP),
            ("later", SAM, 5, OPEN),
            ("late", SAM, -1, WIP),
            ("finished", SAM, 1, DONE),
            ("unowned", None, 1, OPEN),
            ("no date", SAM, None, OPEN),
        ],
    )
    result = plan(world, reminders.plan_reminders)
    assert (result.candidates, result.planned, result.already) == (3, 3, 0)
    assert recipients(world, NotificationKind.REMINDER) == sorted(
        [
            (f"reminder:{ids['soon']}:2026-03-03:soon:p{_pid(world, SAM)}", SAM),
            (f"reminder:{ids['today']}:2026-03-02:soon:p{_pid(world, MIA)}", MIA),
            (f"reminder:{ids['late']}:2026-03-01:overdue:p{_pid(world, SAM)}", SAM),
        ]
    )
    late = next(n for n in rows(world) if n.action_item_id == ids["late"])
    assert late.subject == "Overdue: “late”"
    assert "1 day overdue (was due 1 Mar 2026)" in late.body
    assert late.cycle_id == cid and late.status is NotificationStatus.PENDING

    again = plan(world, reminders.plan_reminders)  # a retried or duplicated run
    assert (again.planned, again.already) == (0, 3)
    tomorrow = plan(world, reminders.plan_reminders, TODAY + timedelta(days=1))
    # "later" (due in 5) is not yet in the 2-day window; "soon" is now due today: same due
    # date, already reminded; "today" has become overdue: one new overdue reminder.
    assert tomorrow.planned == 1
    assert len(rows(world, NotificationKind.REMINDER)) == 4


def test_reminders_are_re_armed_when_the_due_date_moves(world: Store) -> None:
    _, ids = make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    with world.unit_of_work() as s:
        actions.update_action(
            s,
            s.get(ActionItem, ids["soon"]),
            ActionItemUpdate(due_date=TODAY + timedelta(days=2)),
            person_by_email(s, LEE),
        )
    assert plan(world, reminders.plan_reminders).planned == 1


def test_a_person_without_a_channel_is_reached_on_their_team_channel_or_reported(
    world: Store,
) -> None:
    _, ids = make_cycle(world, [("meg's", MEG, 1, OPEN), ("sid's", SID, 1, OPEN)])
    result = plan(world, reminders.plan_reminders)
    assert result.planned == 1
    (n,) = rows(world)
    assert n.recipient == MEG and n.action_item_id == ids["meg's"]
    with world.unit_of_work() as s:
        assert s.get(NotificationChannel, n.channel_id).team.key == "marketing"
    sid_item = ids["sid's"]
    assert result.unreachable == [f"reminder:{sid_item}:2026-03-03:soon:p{_pid(world, SID)}"]


def test_reminder_window_follows_the_policy_and_bad_policies_are_refused() -> None:
    assert CadencePolicy().for_playbook({"settings": {"cadence": "weekly"}}) == CadencePolicy()
    custom = CadencePolicy().for_playbook(
        {"settings": {"remind_days_before": 5, "escalate_after_days": 1, "cadence": "daily"}}
    )
    assert (custom.remind_days_before, custom.escalate_after_days, custom.cadence_days) == (5, 1, 1)
    with pytest.raises(InvalidInput, match="remind_days_before"):
        CadencePolicy(remind_days_before=-1)
    with pytest.raises(InvalidInput, match="escalate_after_days must be at least 1"):
        CadencePolicy(escalate_after_days=0)
    with pytest.raises(InvalidInput, match="cadence must be one of"):
        CadencePolicy(cadence="hourly")


def test_wider_reminder_window(world: Store) -> None:
    make_cycle(world, [("later", SAM, 5, OPEN)])
    assert plan(world, reminders.plan_reminders).planned == 0
    assert (
        plan(world, reminders.plan_reminders, policy=CadencePolicy(remind_days_before=5)).planned
        == 1
    )


# --- escalations ----------------------------------------------------------------------------


def test_escalation_to_the_lead_then_to_a_manager(world: Store) -> None:
    _, ids = make_cycle(
        world,
        [
            ("one day late", SAM, -1, OPEN),
            ("two days late", SAM, -2, WIP),
            ("five days late", SAM, -5, BLOCKED),
            ("meg six late", MEG, -6, OPEN),
            ("done late", SAM, -9, DONE),
        ],
    )
    result = plan(world, escalations.plan_escalations)
    sam = _pid(world, SAM)
    lee, lou, mx = _pid(world, LEE), _pid(world, LOU), _pid(world, MAX)
    assert recipients(world, NotificationKind.ESCALATION) == sorted(
        [
            (f"escalation:{ids['two days late']}:2026-02-28:lead:p{lee}", LEE),
            (f"escalation:{ids['five days late']}:2026-02-25:lead:p{lee}", LEE),
            (f"escalation:{ids['five days late']}:2026-02-25:manager:p{mx}", MAX),
            # marketing has no manager: any manager
            (f"escalation:{ids['meg six late']}:2026-02-24:lead:p{lou}", LOU),
            (f"escalation:{ids['meg six late']}:2026-02-24:manager:p{mx}", MAX),
        ]
    )
    assert sam not in (lee, lou, mx)
    assert result.planned == 5
    body = next(
        n.body for n in rows(world) if n.key.startswith(f"escalation:{ids['two days late']}")
    )
    assert "Sam Sales (sam@acme.test, Sales)" in body and "2 days overdue" in body
    assert plan(world, escalations.plan_escalations).planned == 0  # idempotent


def test_escalation_goes_to_the_lead_who_assigned_the_item(world: Store) -> None:
    with world.unit_of_work() as s:
        people_svc.create_person(
            s, PersonCreate(name="Lea Lead", email="lea@acme.test", team="sales", role="lead")
        )
        s.flush()
        channels.add_channel(
            s, person_by_email(s, MAX), kind="webhook", person="lea@acme.test", url="json://h/lea"
        )
    _, ids = make_cycle(world, [("by lee", SAM, -3, OPEN), ("by max", SID, -3, OPEN)])
    with world.unit_of_work() as s:  # max (a manager) reassigns sid's item
        actions.assign_action(
            s,
            s.get(ActionItem, ids["by max"]),
            ActionItemAssign(owner=SID),
            person_by_email(s, MAX),
        )
    plan(world, escalations.plan_escalations)
    got = {(n.action_item_id, n.recipient) for n in rows(world, NotificationKind.ESCALATION)}
    # lee assigned the first: only lee hears of it; the second goes to every sales lead.
    assert got == {
        (ids["by lee"], LEE),
        (ids["by max"], LEE),
        (ids["by max"], "lea@acme.test"),
    }


def test_escalation_grace_periods_come_from_the_policy(world: Store) -> None:
    make_cycle(world, [("two days late", SAM, -2, OPEN)])
    policy = CadencePolicy(escalate_after_days=3, escalate_to_manager_after_days=1)
    assert plan(world, escalations.plan_escalations, policy=policy).planned == 0
    assert (
        plan(world, escalations.plan_escalations, TODAY + timedelta(days=1), policy=policy).planned
        == 1
    )
    later = plan(world, escalations.plan_escalations, TODAY + timedelta(days=2), policy=policy)
    assert later.planned == 1  # the manager
    assert {n.recipient for n in rows(world)} == {LEE, MAX}


def test_cycles_outside_execute_get_no_reminders(world: Store) -> None:
    cid, _ = make_cycle(world, [("late", SAM, -5, OPEN)])
    with world.unit_of_work() as s:
        s.get(Cycle, cid).phase = Phase.RECAP
    assert plan(world, reminders.plan_reminders).candidates == 0
    assert plan(world, escalations.plan_escalations).candidates == 0


def test_planning_is_set_based(world: Store) -> None:
    """The number of queries does not grow with the number of cycles and items."""

    def queries(fn: Any) -> int:
        count = 0

        def on_execute(*_: Any) -> None:
            nonlocal count
            count += 1

        event.listen(world.engine, "before_cursor_execute", on_execute)
        try:
            plan(world, fn)
        finally:
            event.remove(world.engine, "before_cursor_execute", on_execute)
        return count

    def items(n: int) -> list[tuple[str, str, int, ActionStatus]]:
        return [
            (f"item {i}", (SAM, MEG, MIA)[i % 3], (-6, -3, 1, 0)[i % 4], OPEN) for i in range(n)
        ]

    make_cycle(world, items(4), title="small")
    small = {fn.__name__: queries(fn) for fn in _PLANNERS}
    with world.unit_of_work() as s:
        s.query(Notification).delete()
    for i in range(3):
        make_cycle(world, items(20), title=f"big {i}")
    big = {fn.__name__: queries(fn) for fn in _PLANNERS}
    assert big == small
    assert len(rows(world, NotificationKind.REMINDER)) > 60  # the big run did plan 64 items' worth


_PLANNERS = (
    reminders.plan_reminders,
    escalations.plan_escalations,
    checkins.plan_checkins,
    digest.plan_digests,
)


# --- execute check-ins: confidence and requests --------------------------------------------


def test_confidence_flags_are_raised_from_the_facts_never_lowered(world: Store) -> None:
    _, ids = make_cycle(
        world,
        [
            ("late", SAM, -1, WIP),
            ("soon, not started", SAM, 1, OPEN),
            ("soon, started", SAM, 1, WIP),
            ("far", SAM, 10, OPEN),
            ("late but done", SAM, -3, DONE),
        ],
    )
    with world.unit_of_work() as s:
        s.get(ActionItem, ids["far"]).confidence = Confidence.OFF_TRACK  # a person's call
        version_before = s.get(ActionItem, ids["late"]).version
    with world.unit_of_work() as s:
        assert checkins.update_confidence(s, TODAY) == 2
    with world.unit_of_work() as s:
        got = {t: s.get(ActionItem, i).confidence for t, i in ids.items()}
        late = s.get(ActionItem, ids["late"])
        assert late.version == version_before + 1
        logged = s.scalars(
            select(Event)
            .where(Event.object_type == "action_item", Event.actor_id.is_(None))
            .where(Event.verb == "action.updated")
        ).all()
    assert got == {
        "late": Confidence.OFF_TRACK,
        "soon, not started": Confidence.AT_RISK,
        "soon, started": Confidence.ON_TRACK,
        "far": Confidence.OFF_TRACK,
        "late but done": Confidence.ON_TRACK,
    }
    assert sorted(e.after["reason"] for e in logged) == [
        "due 3 Mar 2026 and not started",
        "overdue since 1 Mar 2026",
    ]
    with world.unit_of_work() as s:
        assert checkins.update_confidence(s, TODAY) == 0


def test_a_write_based_on_a_read_before_the_flag_update_is_a_conflict(world: Store) -> None:
    _, ids = make_cycle(world, [("late", SAM, -1, WIP)])
    with world.unit_of_work() as s:
        version = s.get(ActionItem, ids["late"]).version
    with world.unit_of_work() as s:
        checkins.update_confidence(s, TODAY)
    with pytest.raises(Conflict), world.unit_of_work() as s:
        actions.update_action(
            s,
            s.get(ActionItem, ids["late"]),
            ActionItemUpdate(confidence=Confidence.ON_TRACK, expected_version=version),
            person_by_email(s, SAM),
        )


def test_checkin_requests_once_per_cadence_period_per_owner(world: Store) -> None:
    cid, _ = make_cycle(
        world, [("a", SAM, 3, OPEN), ("b", SAM, 9, WIP), ("c", MIA, 9, OPEN), ("d", MIA, 9, DONE)]
    )
    first = plan(world, checkins.plan_checkins)
    assert first.planned == 2
    sam = next(n for n in rows(world) if n.recipient == SAM)
    assert sam.key == f"checkin:{cid}:p{_pid(world, SAM)}:n4#c{sam.channel_id}"  # day 30 // 7
    assert "- “a”: due in 3 days (5 Mar 2026); open, on track" in sam.body
    assert plan(world, checkins.plan_checkins, TODAY + timedelta(days=1)).planned == 0  # same week
    assert (
        plan(world, checkins.plan_checkins, TODAY + timedelta(days=5)).planned == 2
    )  # next period


def test_checkin_cadence_comes_from_the_playbook(world: Store) -> None:
    daily = PLAYBOOK.replace("name: cadence-test", "name: cadence-daily").replace(
        "cadence: weekly", "cadence: daily"
    )
    with world.unit_of_work() as s:
        playbooks.register(
            s, parse_playbook(daily), hashlib.sha256(daily.encode()).hexdigest(), "d"
        )
    make_cycle(world, [("a", SAM, 3, OPEN)], title="weekly")
    make_cycle(world, [("b", SAM, 3, OPEN)], title="daily", playbook="cadence-daily")
    assert plan(world, checkins.plan_checkins).planned == 2
    tomorrow = plan(world, checkins.plan_checkins, TODAY + timedelta(days=1))
    assert tomorrow.planned == 1  # only the daily cycle asks again
    newest = max(rows(world), key=lambda n: n.id)
    assert newest.subject == "Check-in: 1 action item in “daily”"


# --- weekly digest --------------------------------------------------------------------------


def test_digest_content_progress_kpis_risks_and_next_week(world: Store) -> None:
    cid, _ = make_cycle(
        world,
        [
            ("done", SAM, -3, DONE),
            ("late", SAM, -2, WIP),
            ("blocked", MIA, 10, BLOCKED),
            ("next week", MIA, 4, OPEN),
            ("unowned", None, 12, OPEN),
            ("dropped", SAM, 2, ActionStatus.DROPPED),
            ("far", SAM, 20, OPEN),
        ],
    )
    with world.unit_of_work() as s:
        d = digest.digest_content(s, TODAY)[cid]
    assert (d.total, d.done, d.dropped, d.percent_done) == (7, 1, 1, 17)
    assert d.kpis == [digest.NO_FUNNEL_DATA]
    assert d.risks == [
        "late (Sam Sales): 2 days overdue (was due 28 Feb 2026)",
        "blocked (Mia Marketing): blocked",
        "unowned (no owner): no owner",
    ]
    assert d.due_next_week == ["next week (Mia Marketing), due in 4 days (6 Mar 2026)"]
    text = d.text(TODAY)
    assert "Progress: 1 of 6 action items done (17%)" in text
    assert "Cycle “Q1” (31 Jan 2026 to 1 Apr 2026, 30 days left)" in text


def test_digest_kpis_come_from_the_funnel_next_to_the_cycle_baseline(world: Store) -> None:
    from datetime import UTC, datetime

    from models.funnel.tables import CycleKpiSnapshot, FunnelRecord

    cid, _ = make_cycle(world, [("a", SAM, 3, OPEN)])
    mql = datetime(2026, 2, 27, 9, tzinfo=UTC)  # in the last 7 days before TODAY
    with world.engine.begin() as conn:
        conn.execute(
            FunnelRecord.__table__.insert(),
            [
                {
                    "source": "t",
                    "external_id": str(i),
                    "mql_at": mql,
                    "sql_at": mql + timedelta(days=1) if i == 0 else None,
                }
                for i in range(4)
            ]
            + [
                {
                    "source": "t",
                    "external_id": "old",
                    "mql_at": mql - timedelta(days=30),
                    "sql_at": None,
                }
            ],
        )
        conn.execute(
            CycleKpiSnapshot.__table__.insert(),
            [
                {
                    "cycle_id": cid,
                    "kind": "baseline",
                    "kpi": "mql_to_sql_rate",
                    "value": 0.1,
                    "numerator": 1,
                    "sample_size": 10,
                    "window_start": START - timedelta(days=42),
                    "window_end": START - timedelta(days=1),
                    "sla_hours": 24,
                    "computed_at": datetime(2026, 1, 31, tzinfo=UTC),
                }
            ],
        )
    with world.unit_of_work() as s:
        kpis = digest.digest_content(s, TODAY)[cid].kpis
    assert kpis[:3] == [
        "MQL→SQL rate: 25.0% in the last 7 days (baseline 10.0%)",  # the playbook's KPIs first
        "Revenue won: no data in the last 7 days",
        "MQL volume: 4 in the last 7 days",
    ]
    assert "Win rate: no data in the last 7 days" in kpis


def test_digest_money_says_its_currency(world: Store) -> None:
    """A revenue line of the digest says the currency of the amounts, as the Numbers page."""
    from datetime import UTC, datetime

    from models.funnel.tables import Deal, FunnelRecord, SourceCurrency

    cid, _ = make_cycle(world, [("a", SAM, 3, OPEN)])
    won = datetime(2026, 2, 27, 9, tzinfo=UTC)  # in the last 7 days before TODAY
    with world.unit_of_work() as s:
        s.add(FunnelRecord(source="t", external_id="l1", mql_at=won))
        s.add(Deal(source="t", external_id="d1", listed=True, won_at=won, amount_cents=125000))
        s.add(SourceCurrency(source="t", currency="EUR"))
    with world.unit_of_work() as s:
        kpis = digest.digest_content(s, TODAY)[cid].kpis
    assert "Revenue won: 1,250.00 EUR in the last 7 days" in kpis


def test_the_digest_says_which_source_was_last_imported_before_its_days(world: Store) -> None:
    """The figures of a source last imported before the days a digest covers lack what
    happened in it since: the digest says so beside them; a source imported on one of those
    days is not named."""
    from datetime import UTC, datetime

    from models.funnel.tables import FunnelImport, FunnelRecord

    cid, _ = make_cycle(world, [("a", SAM, 3, OPEN)])
    at = datetime(2026, 2, 27, 9, tzinfo=UTC)
    with world.unit_of_work() as s:
        s.add(FunnelRecord(source="crm", external_id="l1", mql_at=at))
        s.add(FunnelRecord(source="forms", external_id="f1", mql_at=at))
        for source, days in (("crm", 10), ("forms", 2)):
            started = datetime.combine(TODAY, datetime.min.time(), UTC) - timedelta(days=days)
            s.add(
                FunnelImport(
                    source=source,
                    mapping="m",
                    files=[f"{source}.csv"],
                    started_at=started,
                    finished_at=started,
                )
            )
    with world.unit_of_work() as s:
        kpis = digest.digest_content(s, TODAY)[cid].kpis
    assert kpis[-1] == (
        "“crm” was last imported on 20 Feb 2026, before the days these figures cover: what "
        "happened in it since is not in them"
    )
    assert not [line for line in kpis if "forms" in line]


def test_a_failing_kpi_query_does_not_stop_the_digest(
    world: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from models.funnel import kpis as funnel_kpis
    from models.funnel.tables import FunnelRecord

    def broken(session: Any, **kw: Any) -> Any:
        session.execute(text("SELECT no_such_column FROM funnel_records"))

    monkeypatch.setattr(funnel_kpis, "compute_kpis", broken)
    make_cycle(world, [("a", SAM, 3, OPEN)])
    with world.engine.begin() as conn:
        conn.execute(FunnelRecord.__table__.insert(), [{"source": "t", "external_id": "1"}])
    result = plan(world, digest.plan_digests)  # on PostgreSQL: the transaction survives
    assert result.planned == 2
    assert all("KPIs:\n- figures unavailable (" in n.body for n in rows(world))


def test_digest_goes_to_both_teams_once_a_week(world: Store) -> None:
    cid, _ = make_cycle(world, [("a", SAM, 3, OPEN)])
    result = plan(world, digest.plan_digests)
    assert result.planned == 2
    # sales has no team channel: its point person (sam) gets it; marketing's team channel does
    with world.unit_of_work() as s:
        targets = sorted(
            (c.team.key if c.team else c.person.email)
            for c in s.scalars(
                select(NotificationChannel).join(
                    Notification, Notification.channel_id == NotificationChannel.id
                )
            ).unique()
        )
    assert targets == ["marketing", SAM]
    # the week before, Monday to Sunday, named in the key
    assert {n.key.split("#")[0] for n in rows(world)} == {f"digest:{cid}:2026-02-23..2026-03-01"}
    assert "This digest covers 23 Feb 2026 to 1 Mar 2026." in rows(world)[0].body
    assert plan(world, digest.plan_digests).planned == 0  # a re-run of the day: nothing new
    assert plan(world, digest.plan_digests, TODAY + timedelta(days=6)).planned == 0  # Sunday
    assert plan(world, digest.plan_digests, TODAY + timedelta(days=7)).planned == 2


# --- recap due ------------------------------------------------------------------------------


def test_recap_opens_when_the_period_is_over_recorded_as_the_system(world: Store) -> None:
    over, _ = make_cycle(
        world,
        [("unfinished", SAM, -1, WIP)],
        title="over",
        start=START,
        end=TODAY - timedelta(days=1),
    )
    running, _ = make_cycle(world, [("a", SAM, 1, OPEN)], title="running")
    ends_today, _ = make_cycle(world, [], title="ends today", end=TODAY)
    with world.unit_of_work() as s:
        due = recap_due.open_recaps_due(s, TODAY)
        result = recap_due.plan_recap_due(s, TODAY, due)
    assert due.opened == [over] and due.blocked == {}
    with world.unit_of_work() as s:
        phases = {c.id: c.phase for c in s.scalars(select(Cycle))}
        (ev,) = s.scalars(
            select(Event)
            .where(Event.cycle_id == over, Event.verb == "cycle.advanced")
            .where(Event.actor_id.is_(None))
        ).all()
    assert phases == {over: Phase.RECAP, running: Phase.EXECUTE, ends_today: Phase.EXECUTE}
    assert ev.before == {"phase": "execute"}
    assert ev.after == {"phase": "recap", "reason": "period ended", "by": "system"}
    assert recipients(world, NotificationKind.RECAP_DUE) == sorted(
        [
            (f"recap-due:{over}:2026-03-01:opened:p{_pid(world, SAM)}", SAM),
            (f"recap-due:{over}:2026-03-01:opened:p{_pid(world, MIA)}", MIA),
        ]
    )
    assert result.changed == 1
    with world.unit_of_work() as s:  # the system's move asks for the recap flow, like any move
        from models.phases import dispatch as phase_outbox

        asked = [(r.key, r.status, r.today) for r in phase_outbox.waiting(s)]
    assert asked == [(f"cycle:{over}:recap", "pending", TODAY)]
    with world.unit_of_work() as s:
        again = recap_due.open_recaps_due(s, TODAY)
    assert again.opened == [] and again.blocked == {}


def test_recap_due_respects_the_execute_gate(world: Store) -> None:
    cid, _ = make_cycle(world, [], playbook="cadence-strict", end=TODAY - timedelta(days=1))
    with world.unit_of_work() as s:
        due = recap_due.open_recaps_due(s, TODAY)
        recap_due.plan_recap_due(s, TODAY, due)
        recap_due.plan_recap_due(
            s, TODAY, recap_due.open_recaps_due(s, TODAY)
        )  # the next day's run
    assert due.opened == []
    assert due.blocked == {cid: ["1 required question unanswered: “Wrap-up notes?”"]}
    blocked = rows(world, NotificationKind.RECAP_DUE)
    assert len(blocked) == 2  # sam and mia, once
    assert (
        "cannot move to Recap yet: 1 required question unanswered: “Wrap-up notes?”"
        in blocked[0].body
    )
    with world.unit_of_work() as s:
        s.scalars(select(ChecklistItem).where(ChecklistItem.cycle_id == cid)).one().answer = "ok"
    with world.unit_of_work() as s:
        assert recap_due.open_recaps_due(s, TODAY).opened == [cid]


def test_the_single_cycle_system_transition_refuses_and_changes_nothing(world: Store) -> None:
    cid, _ = make_cycle(world, [("a", SAM, 1, OPEN)])
    before = db_snapshot(world)
    with pytest.raises(TransitionRefused, match="runs to 1 Apr 2026"), world.unit_of_work() as s:
        recap_due.open_recap_when_period_over(s, s.get(Cycle, cid), TODAY)
    assert db_snapshot(world) == before
    with world.unit_of_work() as s:
        c = recap_due.open_recap_when_period_over(s, s.get(Cycle, cid), END + timedelta(days=1))
        assert c.phase is Phase.RECAP
    with (
        pytest.raises(TransitionRefused, match="is in Recap, not Execute"),
        world.unit_of_work() as s,
    ):
        recap_due.open_recap_when_period_over(s, s.get(Cycle, cid), END + timedelta(days=2))


# --- channels -------------------------------------------------------------------------------


def test_channels_add_list_remove_with_masked_secrets(world: Store) -> None:
    with world.unit_of_work() as s:
        lee = person_by_email(s, LEE)
        slack = channels.add_channel(
            s, lee, kind="slack", team="sales", url="slack://T1ABC/B2DEF/secrettoken/#sales"
        )
        mail = channels.add_channel(
            s,
            person_by_email(s, SID),
            kind="email",
            person=SID,
            url="mailtos://sid:hunter2@mail.acme.test?to=sid@acme.test",
        )
        env = channels.add_channel(s, lee, kind="teams", team="sales", url="env:SALES_TEAMS_URL")
    assert slack.url == "slack://***/***#***" and "secrettoken" not in slack.url
    assert mail.url == "mailtos://sid:***@mail.acme.test?***"
    assert env.url == "env:SALES_TEAMS_URL"
    with world.unit_of_work() as s:
        listed = channels.list_channels(s, team="sales")
        assert [c.owner for c in listed] == ["team:sales", "team:sales"]
        logged = s.scalars(select(Event).where(Event.verb == "channel.added")).all()
    assert not any(
        "hunter2" in json.dumps(e.after) or "secrettoken" in json.dumps(e.after) for e in logged
    )
    make_cycle(world, [("a", SID, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    with world.unit_of_work() as s:
        channels.remove_channel(s, mail.id, person_by_email(s, MAX))
    (n,) = rows(world)
    assert n.channel_id is None and n.status is NotificationStatus.FAILED
    assert n.error == "channel removed before delivery"


@pytest.mark.parametrize(
    ("actor", "data", "error", "message"),
    [
        (
            MEG,
            {"kind": "webhook", "team": "marketing", "url": "json://x"},
            Forbidden,
            "you cannot configure notification channels for the team Marketing",
        ),
        (
            SID,
            {"kind": "webhook", "person": LEE, "url": "json://x"},
            Forbidden,
            "you cannot configure notification channels for lee@acme.test",
        ),
        (
            LOU,
            {"kind": "webhook", "person": SID, "url": "json://x"},
            Forbidden,
            "you cannot configure notification channels for sid@acme.test",
        ),
        (
            MAX,
            {"kind": "slack", "team": "sales", "url": "json://x"},
            InvalidInput,
            "not a slack apprise URL (expected slack://..., or env:NAME / secret:NAME)",
        ),
        (
            MAX,
            {"kind": "teams", "team": "sales", "url": "https://evil.test/workflows/x"},
            InvalidInput,
            "not a teams apprise URL",
        ),
        (
            MAX,
            {"kind": "webhook", "url": "json://x"},
            InvalidInput,
            "a channel belongs to a team or to a person: give exactly one",
        ),
        (MAX, {"kind": "pager", "team": "sales", "url": "json://x"}, InvalidInput, "kind: Input"),
        (
            MAX,
            {"kind": "webhook", "team": "support", "url": "json://x"},
            NotFound,
            "unknown team 'support'",
        ),
        (
            MAX,
            {"kind": "webhook", "person": "nobody@acme.test", "url": "json://x"},
            NotFound,
            "unknown person",
        ),
        (MAX, {"kind": "webhook", "person": MIA, "url": " "}, InvalidInput, "url"),
    ],
)
def test_bad_channel_input_is_refused_and_changes_nothing(
    world: Store, actor: str, data: dict[str, str], error: type[Exception], message: str
) -> None:
    before = db_snapshot(world)
    with pytest.raises(error) as exc, world.unit_of_work() as s:
        channels.add_channel(s, person_by_email(s, actor), **data)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert db_snapshot(world) == before


def test_a_channel_configured_twice_is_refused(world: Store, receiver: Receiver) -> None:
    before = db_snapshot(world)
    with pytest.raises(InvalidInput, match="already configured"), world.unit_of_work() as s:
        channels.add_channel(
            s, person_by_email(s, SAM), kind="webhook", person=SAM, url=receiver.url("sam")
        )
    assert db_snapshot(world) == before


# Every kind of apprise URL we accept, with the secrets it carries: (kind, URL, what is shown,
# the secrets that must never be shown).
SECRET_URLS = [
    (
        "webhook",
        "jsons://hook:pw-Hunter2@hooks.acme.test/hooks/TOKEN7f3a9/?token=QS8812&+X-Api-Key=HDR66",
        "jsons://hook:***@hooks.acme.test/***?***",
        ["pw-Hunter2", "TOKEN7f3a9", "QS8812", "HDR66"],
    ),
    ("webhook", "json://127.0.0.1:9/sid", "json://127.0.0.1:9/***", []),
    (
        "email",
        "mailtos://alerts:pw-Smtp77@smtp.acme.test/sam@acme.test?pass=QPW55",
        "mailtos://alerts:***@smtp.acme.test/sam@acme.test?***",
        ["pw-Smtp77", "QPW55"],
    ),
    (
        "email",
        "sendgrid://SG.KEY5512:alerts@acme.test/sam@acme.test",
        "sendgrid://***@acme.test/***",
        ["SG.KEY5512"],
    ),
    (
        "email",
        "ses://alerts@acme.test/AKIA8811/SESSECRET99/us-east-1/",
        "ses://***@acme.test/***",
        ["AKIA8811", "SESSECRET99"],
    ),
    (
        "slack",
        "slack://T1ABC/B2DEF/SLACKTOKEN42/#sales",
        "slack://***/***#***",
        ["T1ABC", "B2DEF", "SLACKTOKEN42"],
    ),
    ("slack", "slack://bot@xoxb-4411-BOTTOKEN/#sales", "slack://***@***/#***", ["xoxb-4411"]),
    (
        "slack",
        "https://hooks.slack.com/services/T000AAA/B000BBB/HOOKTOKEN31",
        "https://hooks.slack.com/***",
        ["T000AAA", "B000BBB", "HOOKTOKEN31"],
    ),
    (
        "teams",
        "workflows://prod-12.westus.logic.azure.com/WORKFLOW81/SIGNATURE81/",
        "workflows://prod-12.westus.logic.azure.com/***",
        ["WORKFLOW81", "SIGNATURE81"],
    ),
    (
        "teams",
        "https://prod-12.westus.logic.azure.com:443/workflows/WF9/triggers/manual/paths/invoke"
        "?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=SIG771",
        "https://prod-12.westus.logic.azure.com:443/***?***",
        ["WF9", "SIG771"],
    ),
    ("webhook", "json://u:pa/ss44@host.test/x", "json://***", ["pa/ss44", "ss44"]),
    ("teams", "secret:marketing-teams", "secret:marketing-teams", []),
]


@pytest.mark.parametrize(("kind", "url", "shown", "secrets"), SECRET_URLS)
def test_channel_urls_are_shown_with_every_secret_masked(
    kind: str, url: str, shown: str, secrets: list[str]
) -> None:
    from models.cadence.tables import ChannelKind

    assert urls.check_channel_url(ChannelKind(kind), url) == url  # a URL we accept
    assert urls.mask_url(url) == shown
    text = f"failed: POST {url} and {url.split('://')[-1]} -> 401"
    assert not [x for x in secrets if x in urls.redact(text, url)]


def test_no_channel_secret_reaches_cli_output_or_the_audit_log(world: Store) -> None:
    from aligncycle import cli_common
    from aligncycle.cli import app

    def run(*args: str) -> str:
        cli_common.reset_store()
        r = CliRunner().invoke(app, list(args), env={"ALIGNCYCLE_ACTOR": None})
        assert r.exit_code == 0, r.output
        return r.output

    hook = SECRET_URLS[0]
    out = [run("notify", "channel", "add", "webhook", hook[1], "--person", SID, "--as", SID)]
    out += [
        run("notify", "channel", "list"),
        run("notify", "channel", "list", "--json"),
        run("events"),
        run("events", "--json"),
    ]
    (ch,) = [c for c in json.loads(out[2]) if c["owner"] == SID]
    assert ch["url"] == hook[2]
    out.append(run("notify", "channel", "remove", str(ch["id"]), "--as", SID))
    out.append(run("events", "--json"))
    with world.unit_of_work() as s:
        logged = [
            json.dumps([e.before, e.after])
            for e in s.scalars(select(Event).where(Event.verb.like("channel.%")).order_by(Event.id))
        ]
    assert len(logged) == 8  # the world's six, and this one added and removed
    assert hook[2] in logged[-1] and hook[2] in logged[-2]  # the masked form is kept
    leaked = [x for x in hook[3] for text in [*out, *logged] if x in text]
    assert leaked == []


# --- delivery -------------------------------------------------------------------------------


def test_delivery_sends_each_planned_message_once(world: Store, receiver: Receiver) -> None:
    from flows.notify import deliver

    make_cycle(world, [("soon", SAM, 1, OPEN), ("meg's", MEG, 0, OPEN), ("late", MIA, -1, WIP)])
    plan(world, reminders.plan_reminders)
    result = deliver(world, [NotificationKind.REMINDER], workers=2)
    assert (result.sent, result.failed, result.retrying) == (3, 0, 0)
    assert receiver.paths() == ["/marketing", "/mia", "/sam"]
    sam = next(m for m in receiver.messages if m["path"] == "/sam")
    assert sam["title"] == "Reminder: “soon” is due tomorrow"
    assert "Hi Sam Sales" in sam["message"]
    assert {n.status for n in rows(world)} == {NotificationStatus.SENT}
    # planning and delivering again sends nothing twice
    plan(world, reminders.plan_reminders)
    assert deliver(world, [NotificationKind.REMINDER]).sent == 0
    assert len(receiver.messages) == 3


def test_a_persons_reminders_of_the_day_are_one_message_listing_each_item(
    world: Store, receiver: Receiver
) -> None:
    from flows.notify import deliver

    make_cycle(
        world,
        [("Agree SLA", SAM, 1, OPEN), ("Fix routing", SAM, -2, WIP), ("Later", SAM, 9, OPEN)],
    )
    make_cycle(world, [("Shared dashboard", SAM, 0, OPEN), ("Mia task", MIA, 1, OPEN)], title="Q2")
    plan(world, reminders.plan_reminders)
    result = deliver(world, [NotificationKind.REMINDER])
    assert (result.sent, result.messages, result.failed, result.retrying) == (4, 2, 0, 0)
    assert receiver.paths() == ["/mia", "/sam"]
    sam = next(m for m in receiver.messages if m["path"] == "/sam")
    assert sam["title"] == "Reminders: 3 of your action items are due soon or overdue"
    text = sam["message"]
    assert text.startswith("Hi Sam Sales,\n\n3 of your action items need your attention today:")
    assert text.count("Hi Sam Sales") == 1
    for line in (
        "1. Reminder: “Agree SLA” is due tomorrow\nYour action item “Agree SLA” in cycle “Q1” "
        "is due tomorrow (3 Mar 2026).",
        "2. Overdue: “Fix routing”\nYour action item “Fix routing” in cycle “Q1” is 2 days "
        "overdue (was due 28 Feb 2026).",
        "3. Reminder: “Shared dashboard” is due today\nYour action item “Shared dashboard” in "
        "cycle “Q2” is due today (2 Mar 2026).",
    ):
        assert line in text
    for n in rows(world, NotificationKind.REMINDER):  # each item's reference is in it
        if n.recipient == SAM:
            assert f"(ref {n.key.split('#')[0]})" in text
    assert "Later" not in text
    # the item's state in words, not keys
    assert "overdue (was due 28 Feb 2026). Status: in progress, confidence: on track." in text
    assert "in_progress" not in text and "on_track" not in text
    mia = next(m for m in receiver.messages if m["path"] == "/mia")
    assert mia["title"] == "Reminder: “Mia task” is due tomorrow"  # one item: as planned
    assert {n.status for n in rows(world)} == {NotificationStatus.SENT}

    # The same day again: nothing new. The next day: only what crossed a threshold.
    plan(world, reminders.plan_reminders)
    assert deliver(world).sent == 0
    plan(world, reminders.plan_reminders, TODAY + timedelta(days=2))
    again = deliver(world, [NotificationKind.REMINDER])
    assert (again.sent, again.messages) == (3, 2)
    assert len(receiver.messages) == 4
    sam2 = [m for m in receiver.messages if m["path"] == "/sam"][-1]
    assert sam2["title"] == "Reminders: 2 of your action items are due soon or overdue"
    assert "“Agree SLA” in cycle “Q1” is 1 day overdue" in sam2["message"]
    assert "“Shared dashboard” in cycle “Q2” is 2 days overdue" in sam2["message"]


def test_a_grouped_message_is_split_at_its_size_and_a_refused_one_retried_whole(
    world: Store, receiver: Receiver
) -> None:
    from flows.notify import deliver

    make_cycle(world, [(f"item {i}", SAM, -3, OPEN) for i in range(5)])
    plan(world, reminders.plan_reminders)
    plan(world, escalations.plan_escalations)
    receiver.status = 500
    refused = deliver(world, [NotificationKind.REMINDER], max_items=2)
    assert (refused.sent, refused.messages, refused.retrying) == (0, 0, 5)
    assert len(refused.errors) == 3  # three messages refused: 2 + 2 + 1 items
    assert {n.status for n in rows(world, NotificationKind.REMINDER)} == {
        NotificationStatus.PENDING
    }
    receiver.status = 200
    backoff_passed(world)
    result = deliver(world, [NotificationKind.REMINDER], max_items=2)
    assert (result.sent, result.messages) == (5, 3)  # 2 + 2 + 1 items
    titles = [m["title"] for m in receiver.messages]
    assert sorted(titles) == [
        "Overdue: “item 4”",
        "Reminders: 2 of your action items are due soon or overdue",
        "Reminders: 2 of your action items are due soon or overdue",
    ]
    listed = "".join(m["message"] for m in receiver.messages)
    assert all(f"“item {i}” in cycle “Q1” is 3 days overdue" in listed for i in range(5))
    # Escalations: lee (who assigned them) gets one message about the five.
    esc = deliver(world, [NotificationKind.ESCALATION])
    assert (esc.sent, esc.messages) == (5, 1)
    lee = receiver.messages[-1]
    assert lee["path"] == "/lee"
    assert lee["title"] == "Escalations: 5 overdue action items need your help"
    assert lee["message"].startswith("Hi Lee Saleslead,\n\n5 overdue action items")
    assert lee["message"].count("Sam Sales (sam@acme.test, Sales) has an overdue action") == 5


def test_a_claim_takes_whole_groups_as_many_as_fit(world: Store) -> None:
    make_cycle(
        world,
        [("s1", SAM, 1, OPEN), ("m1", MIA, 1, OPEN), ("s2", SAM, 0, OPEN)]
        + [("s3", SAM, -1, OPEN), ("m2", MIA, 0, OPEN), ("l1", LEE, 1, OPEN)],
    )
    plan(world, reminders.plan_reminders)
    stale = utcnow() - timedelta(minutes=10)

    def claim(limit: int) -> list[str]:
        with world.unit_of_work() as s:
            got = outbox.claim_groups(s, "worker-a", stale, limit=limit)
        return sorted(o.recipient for o in got)

    assert claim(limit=1) == [SAM] * 3  # a group larger than the limit is taken whole
    assert claim(limit=2) == [MIA] * 2  # mia's two fit; lee's one more would not
    assert claim(limit=2) == [LEE]
    assert claim(limit=3) == []


def test_delivery_only_takes_its_own_kinds(world: Store, receiver: Receiver) -> None:
    from flows.notify import deliver

    make_cycle(world, [("late", SAM, -3, OPEN)])
    plan(world, reminders.plan_reminders)
    plan(world, escalations.plan_escalations)
    assert deliver(world, [NotificationKind.ESCALATION]).sent == 1
    assert receiver.paths() == ["/lee"]
    assert {n.kind: n.status for n in rows(world)}[NotificationKind.REMINDER] == "pending"


def test_a_refused_message_is_retried_then_failed_with_the_reason(
    world: Store, receiver: Receiver
) -> None:
    from flows.notify import deliver

    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    receiver.status = 500
    waits = []
    for _ in range(2):
        r = deliver(world)
        assert (r.sent, r.retrying, r.failed) == (0, 1, 0)
        (n,) = rows(world)
        waits.append(round((n.retry_at - utcnow()).total_seconds() / 10) * 10)
        # Not tried again before its backoff has passed, by any deliverer.
        assert deliver(world).as_dict()["retrying"] == 0 and rows(world)[0].attempts == n.attempts
        backoff_passed(world)
    assert waits == [30, 120]  # the wait grows with each failed try
    (n,) = rows(world)
    assert n.status is NotificationStatus.PENDING and n.attempts == 2 and n.error
    assert deliver(world).failed == 1
    (n,) = rows(world)
    assert n.status is NotificationStatus.FAILED and n.attempts == 3
    receiver.status = 200
    assert deliver(world).sent == 0 and receiver.messages == []


def test_a_failed_send_is_retried_with_backoff_within_the_same_run(
    world: Store, receiver: Receiver
) -> None:
    """A channel that refuses twice, then accepts: sent by the third attempt of the same call,
    after each backoff delay in turn; counted once, as sent."""
    from flows.notify import deliver

    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    receiver.status = 500
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        if len(waited) == 2:
            receiver.status = 200  # the channel is back before the third attempt

    r = deliver(world, retry_delays=(30, 120), sleep=sleep)
    assert (r.sent, r.retrying, r.failed, r.errors) == (1, 0, 0, [])
    assert waited == [30, 120]
    (n,) = rows(world)
    assert n.status is NotificationStatus.SENT and n.attempts == 3
    assert receiver.paths() == ["/sam"]


def test_an_unreachable_channel_ends_failed_within_the_run_and_the_flow_says_so(
    world: Store, receiver: Receiver
) -> None:
    from flows.cadence import undelivered_message
    from flows.notify import deliver

    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    receiver.status = 500
    waited: list[float] = []
    r = deliver(world, retry_delays=(30, 120), sleep=waited.append)
    assert (r.sent, r.retrying, r.failed) == (0, 0, 1) and waited == [30, 120]
    (n,) = rows(world)
    assert n.status is NotificationStatus.FAILED and n.attempts == 3
    message = undelivered_message(r.as_dict())
    assert message is not None
    assert message.startswith("1 message could not be delivered (1 failed for good); first: ")
    # The message is named in words (what, to whom, which channel), not by its key.
    assert f"; first: the reminder to {SAM} on channel {n.channel_id}: " in message
    assert undelivered_message({"sent": 3, "failed": 0, "retrying": 0}) is None


@pytest.mark.prefect
def test_a_cadence_run_with_undeliverable_messages_ends_in_a_state_that_says_so(
    world: Store, receiver: Receiver, prefect_server: str, data_dir: Any
) -> None:
    from flows.cadence import overdue_reminders

    make_cycle(world, [("soon", SAM, 1, OPEN)])
    receiver.status = 500
    state = overdue_reminders(today=TODAY, retry_delays_seconds=[0.1, 0.1], return_state=True)
    assert state.is_failed() and state.name == "Undelivered"
    assert state.message.startswith("1 message could not be delivered (1 failed for good)")
    assert state.result(raise_on_failure=False)["delivery"]["failed"] == 1
    (n,) = rows(world)
    assert n.status is NotificationStatus.FAILED and n.attempts == 3


def test_env_indirection_and_a_missing_variable(
    world: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.notify import deliver

    with world.unit_of_work() as s:
        channels.add_channel(
            s, person_by_email(s, SID), kind="webhook", person=SID, url="env:SID_HOOK"
        )
    make_cycle(world, [("sid's", SID, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    monkeypatch.delenv("SID_HOOK", raising=False)
    r = deliver(world, secrets=None)
    assert r.retrying == 1 and "the environment variable SID_HOOK is not set" in r.errors[0]
    monkeypatch.setenv("SID_HOOK", receiver.url("sid-secret"))
    backoff_passed(world)
    assert deliver(world, secrets=None).sent == 1
    assert receiver.paths() == ["/sid-secret"]


def test_a_failed_send_keeps_no_secret_of_the_url_in_the_log_or_the_output(
    world: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    from flows.notify import deliver

    hook = "json://hook:PW9931@127.0.0.1:9/hooks/PATH7731/?token=QT5521"
    monkeypatch.setenv("SID_HOOK", hook)  # the store holds env:SID_HOOK; the worker the URL
    with world.unit_of_work() as s:
        sid = person_by_email(s, SID)
        channels.add_channel(s, sid, kind="webhook", person=SID, url="env:SID_HOOK")
    make_cycle(world, [("sid's", SID, 1, OPEN)])
    plan(world, reminders.plan_reminders)

    def refused(url: str, title: str, body: str) -> str | None:
        # what an HTTP library says about a request that failed: the URL and its path
        parts = urlsplit(url)
        raise ConnectionError(f"Max retries exceeded with url: {parts.path}?{parts.query} ({url})")

    result = deliver(world, secrets=None, sender=refused)
    (n,) = rows(world)
    assert result.retrying == 1 and n.status is NotificationStatus.PENDING
    assert "ConnectionError: Max retries exceeded with url: " in n.error
    for text in (result.errors[0], n.error):
        assert not [x for x in ("PW9931", "PATH7731", "QT5521") if x in text], text


def test_a_claim_is_exclusive_and_a_dead_deliverers_claim_is_taken_over(world: Store) -> None:
    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    (n,) = rows(world)
    now = utcnow()
    with world.unit_of_work() as s:
        first = outbox.claim(s, n.id, "worker-a", stale_before=now - timedelta(minutes=10))
        assert first is not None and first.attempts == 1
    with world.unit_of_work() as s:  # worker-a is busy sending: nobody else may take it
        assert outbox.claim(s, n.id, "worker-b", stale_before=now - timedelta(minutes=10)) is None
        assert outbox.deliverable_ids(s, None, now - timedelta(minutes=10)) == []
    # worker-a died: once its claim is stale, the next run takes the message again
    with world.unit_of_work() as s:
        assert outbox.deliverable_ids(s, None, utcnow() + timedelta(seconds=1)) == [n.id]
        again = outbox.claim(s, n.id, "worker-b", stale_before=utcnow() + timedelta(seconds=1))
        assert again is not None and again.attempts == 2
    with world.unit_of_work() as s:
        assert not outbox.mark_sent(s, n.id, "worker-a")  # the dead worker's late mark is ignored
        assert outbox.mark_sent(s, n.id, "worker-b")
    with world.unit_of_work() as s:
        assert outbox.claim(s, n.id, "worker-c", stale_before=utcnow() + timedelta(days=1)) is None


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli(world: Store) -> Iterator[Any]:
    from aligncycle import cli_cadence
    from aligncycle.cli_common import ErrorMappingGroup, reset_store

    app = typer.Typer(cls=ErrorMappingGroup, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    cli_cadence.register(app)
    reset_store()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    yield run
    reset_store()


def test_cli_channel_add_list_remove(world: Store, cli: Any) -> None:
    r = cli(
        "notify",
        "channel",
        "add",
        "webhook",
        "json://127.0.0.1:9/sid",
        "--person",
        SID,
        "--as",
        SID,
    )
    assert r.exit_code == 0, r.output
    assert "added channel" in r.output
    r = cli("notify", "channel", "list", "--person", SID, "--json")
    (ch,) = json.loads(r.output)
    assert ch["owner"] == SID and ch["url"] == "json://127.0.0.1:9/***"  # the path may hold a token
    r = cli("notify", "channel", "remove", str(ch["id"]), "--as", SID)
    assert r.exit_code == 0
    assert json.loads(cli("notify", "channel", "list", "--person", SID, "--json").output) == []


def test_cli_refuses_bad_channels_with_one_line_and_changes_nothing(world: Store, cli: Any) -> None:
    before = db_snapshot(world)
    for args, code, text in [
        (["webhook", "json://x", "--team", "sales", "--as", MEG], 1, "cannot configure"),
        (
            ["slack", "slack://nope", "--team", "sales", "--as", LEE],
            1,
            "apprise does not understand",
        ),
        (["email", "json://x", "--team", "sales", "--as", LEE], 1, "not a email apprise URL"),
        (["webhook", "json://x", "--team", "sales"], 2, "say who is acting"),
        (["webhook", "json://x", "--as", LEE], 1, "give exactly one"),
    ]:
        r = cli("notify", "channel", "add", *args)
        assert r.exit_code == code, (args, r.output)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and text in lines[0] and lines[0].startswith("error: ")
    assert cli("notify", "channel", "remove", "999", "--as", MAX).exit_code == 1
    assert db_snapshot(world) == before


def test_cli_cadence_run_without_prefect(world: Store, cli: Any, receiver: Receiver) -> None:
    make_cycle(world, [("soon", SAM, 1, OPEN), ("late", SAM, -3, OPEN)])
    r = cli(
        "cadence",
        "run",
        "overdue-reminders",
        "--today",
        TODAY.isoformat(),
        "--without-prefect",
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["plan"]["planned"] == 2 and out["delivery"]["sent"] == 2
    assert out["delivery"]["messages"] == 1  # sam's two reminders of the day, in one message
    assert receiver.paths() == ["/sam"]
    r = cli("cadence", "run", "escalations", "--today", TODAY.isoformat(), "--without-prefect")
    assert r.exit_code == 0 and "planned 1" in r.output and "sent 1" in r.output
    bad = cli("cadence", "run", "hourly-nags", "--without-prefect")
    assert bad.exit_code == 2 and "unknown cadence job 'hourly-nags'" in bad.output
    bad = cli("cadence", "run", "escalations", "--today", "tomorrow", "--without-prefect")
    assert bad.exit_code == 2


def _pid(store: Store, email: str) -> int:
    with store.unit_of_work() as s:
        return person_by_email(s, email).id


def test_notification_keys_are_unique_in_the_store(world: Store) -> None:
    make_cycle(world, [("soon", SAM, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    (n,) = rows(world)
    with pytest.raises(Exception), world.unit_of_work() as s:  # noqa: B017, PT011
        s.add(
            Notification(
                key=n.key, recipient=SAM, kind=NotificationKind.REMINDER, subject="x", body="x"
            )
        )
    with world.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_deliverer_killed_mid_run_loses_nothing_and_sends_nothing_twice(
    world: Store, receiver: Receiver
) -> None:
    from flows.notify import deliver, send

    # Six destinations (meg's go to the marketing channel), one or two reminders each: six
    # grouped messages carrying nine notifications.
    people = (SAM, MIA, LEE, LOU, MAX, MEG)
    make_cycle(world, [(f"item {i}", people[i % 6], 1, OPEN) for i in range(9)])
    plan(world, reminders.plan_reminders)
    carried = {SAM: 2, MIA: 2, LEE: 2, LOU: 1, MAX: 1, MEG: 1}
    calls = 0

    class Killed(BaseException):
        pass

    def dies_at_the_fourth(url: str, title: str, body: str) -> str | None:
        nonlocal calls
        calls += 1
        if calls >= 4:  # the process is dead from the fourth send on: nothing more goes out
            raise Killed
        return send(url, title, body)

    with pytest.raises(Killed):
        deliver(world, workers=2, sender=dies_at_the_fourth)
    assert len(receiver.messages) == 3
    arrived = sum(carried[p] for p in carried if f"/{p.split('@')[0]}" in receiver.paths())
    arrived += carried[MEG] if "/marketing" in receiver.paths() else 0
    stuck = [n for n in rows(world) if n.status is NotificationStatus.SENDING]
    sent = [n for n in rows(world) if n.status is NotificationStatus.SENT]
    assert stuck and len(sent) == arrived and len(stuck) == 9 - arrived  # all claimed at once
    # A normal re-run leaves the dead deliverer's claims alone until they are stale ...
    assert deliver(world).sent == 0
    # ... and takes them once they are: every message arrived exactly once.
    assert deliver(world, stale_after=timedelta(0)).sent == len(stuck)
    assert len(receiver.received()) == 6 == len(set(receiver.received()))
    assert sorted(receiver.paths()) == ["/lee", "/lou", "/marketing", "/max", "/mia", "/sam"]
    assert {n.status for n in rows(world)} == {NotificationStatus.SENT}
    assert sorted(n.attempts for n in rows(world)) == [1] * arrived + [2] * len(stuck)


def test_secret_indirection_reads_the_url_when_sending(world: Store, receiver: Receiver) -> None:
    from flows.notify import deliver

    with world.unit_of_work() as s:
        ch = channels.add_channel(
            s, person_by_email(s, SID), kind="slack", person=SID, url="secret:sid-slack"
        )
        assert channels.secret_names(s) == ["sid-slack"]
    assert ch.url == "secret:sid-slack"  # the store holds no secret
    make_cycle(world, [("sid's", SID, 1, OPEN)])
    plan(world, reminders.plan_reminders)
    asked: list[list[str]] = []

    def secrets(names: list[str]) -> dict[str, str]:
        asked.append(list(names))
        return {"sid-slack": receiver.url("from-the-secret")}

    assert deliver(world, secrets=secrets).sent == 1
    assert asked == [["sid-slack"]] and receiver.paths() == ["/from-the-secret"]


def test_a_slow_destination_holds_up_only_its_own_messages(world: Store) -> None:
    """Sends to one destination never overlap (apprise paces some services, e.g. Slack), and
    the other threads go on with other destinations meanwhile."""
    from flows.notify import deliver

    # sam's reminders all go to /sam; meg's (team channel) to /marketing; mia's to /mia.
    make_cycle(
        world,
        [(f"s{i}", SAM, 1, OPEN) for i in range(3)]
        + [(f"o{i}", (MEG, MIA)[i % 2], 1, OPEN) for i in range(6)],
    )
    plan(world, reminders.plan_reminders)
    log: list[tuple[str, str]] = []
    active: dict[str, int] = {}
    overlap = False
    lock = threading.Lock()

    def sender(url: str, title: str, body: str) -> None:
        nonlocal overlap
        with lock:
            active[url] = active.get(url, 0) + 1
            overlap |= active[url] > 1
            log.append(("start", url))
        if url.endswith("/sam"):
            time.sleep(0.3)
        with lock:
            active[url] -= 1
            log.append(("end", url))

    assert deliver(world, workers=2, sender=sender, max_items=1).sent == 9  # one send each
    assert not overlap
    second_sam = [
        i for i, (what, url) in enumerate(log) if what == "start" and url.endswith("/sam")
    ][1]
    others_done = [
        i for i, (what, url) in enumerate(log) if what == "end" and not url.endswith("/sam")
    ]
    assert len(others_done) == 6 and max(others_done) < second_sam
