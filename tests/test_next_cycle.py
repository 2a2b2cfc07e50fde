"""What one cycle hands the next: the SLA breach ledger (recorded in Execute, in the digest,
evidence in the next cycle's Identify), the lead definition drift gap from sales' rejection
reasons, and cycles that start on the playbook's schedule with their point persons by role."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from models import phases
from models.breach_tables import SlaBreach
from models.cadence.digest import digest_content
from models.db import Store
from models.enums import GapCategory, GapDecision, Phase
from models.errors import NotFound
from models.funnel.tables import Lead
from models.phases import breaches
from models.phases.execute import execute_pass
from models.playbook import parse_playbook
from models.schemas import CycleCreate, GapDecide
from models.services import cycles, playbooks
from models.services.common import person_by_email
from models.tables import ActionItem, Cycle, Gap

PLAYBOOK = """
name: handoff
version: 1
title: Hand-off cycle
settings: {handoff_sla_hours: 24, cycle_length_days: 30, rejection_drift_above: 0.2,
           starts_every: month}
phases: {identify: {}, plan: {}, execute: {}, recap: {}}
"""
MARCH, APRIL = date(2024, 3, 1), date(2024, 4, 1)


def load(s, text: str = PLAYBOOK) -> None:  # noqa: ANN001
    playbooks.register(s, parse_playbook(text), hashlib.sha256(text.encode()).hexdigest(), "t")


def lead_rows(rows: list[dict]) -> list[dict]:
    """Rows for one many-row INSERT: each names every column any row names (the INSERT takes
    its columns from the first row and would drop the others' values)."""
    names = dict.fromkeys(k for r in rows for k in r)
    return [{"source": "crm"} | dict.fromkeys(names) | r for r in rows]


def add_leads(store: Store, rows: list[dict]) -> None:
    with store.engine.begin() as conn:
        conn.execute(Lead.__table__.insert(), lead_rows(rows))


def lead(i: int, day: date, wait_h: float | None, **kw) -> dict:  # noqa: ANN003
    mql = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(minutes=i)
    touch = None if wait_h is None else mql + timedelta(hours=wait_h)
    blank = dict.fromkeys(("channel", "campaign", "owner", "rejection_reason", "rejected_at"))
    row = {"external_id": f"L{day:%m}-{i}", "mql_at": mql, "first_touch_at": touch, "sql_at": None}
    return row | blank | kw


def start(s, title: str, day: date, previous: int | None = None) -> Cycle:  # noqa: ANN001
    return phases.start_cycle(
        s,
        CycleCreate(
            playbook="handoff",
            title=title,
            period_start=day,
            period_end=day + timedelta(days=29),
            point_persons=["mia@acme.test"],
            previous_cycle_id=previous,
        ),
        person_by_email(s, "sam@acme.test"),
        today=day,
    )


def to_execute(s, cycle: Cycle, day: date) -> None:  # noqa: ANN001
    sam = person_by_email(s, "sam@acme.test")
    phases.advance(s, cycle, sam, today=day)  # identify -> plan
    phases.advance(s, cycle, sam, today=day)  # plan -> execute: its first pass records breaches


def test_breaches_of_one_cycle_are_evidence_in_the_next_ones_identify(org: Store) -> None:
    # March: 5 paid-search leads waited 30 h (3 with no owner), 2 from events waited 40 h, and
    # 4 were touched within the SLA. Channels as the HubSpot profile stores them (paid_search):
    # the gaps say them in words.
    rows = [
        lead(i, date(2024, 3, 5), 30, channel="paid_search", owner=None if i < 3 else "Sam")
        for i in range(5)
    ]
    rows += [lead(10 + i, date(2024, 3, 6), 40, channel="events", owner="Sam") for i in range(2)]
    rows += [
        lead(20 + i, date(2024, 3, 7), 2, channel="paid_search", owner="Sam") for i in range(4)
    ]
    add_leads(org, rows)
    with org.unit_of_work() as s:
        load(s)
        march = start(s, "March", MARCH)
        to_execute(s, march, MARCH)  # its first pass, on 1 March, finds no lead of March yet
        march_id = march.id
        assert s.scalars(select(SlaBreach).where(SlaBreach.cycle_id == march_id)).all() == []
        execute_pass(s, march, date(2024, 3, 10))
    with org.unit_of_work() as s:
        recorded = s.scalars(select(SlaBreach).where(SlaBreach.cycle_id == march_id)).all()
        assert len(recorded) == 7
        slow = next(b for b in recorded if b.channel == "events")
        assert (slow.owner, slow.waited_hours, slow.late_hours) == ("Sam", 40.0, 16.0)
        # the weekly digest counts them beside the overdue items
        risks = digest_content(s, date(2024, 3, 20), [march_id])[march_id].risks
        assert "7 leads waited past the hand-off time (3 of them with no owner)" in risks
        # a second pass records nothing twice
        breaches.record_breaches(s, s.get(Cycle, march_id), date(2024, 3, 10))
        assert len(s.scalars(select(SlaBreach).where(SlaBreach.cycle_id == march_id)).all()) == 7
        sam = person_by_email(s, "sam@acme.test")
        m = s.get(Cycle, march_id)
        cycles.advance_cycle(s, m, sam, today=date(2024, 3, 31), override_reason="month ended")
    with org.unit_of_work() as s:
        april = start(s, "April", APRIL, previous=march_id)
        assert april.phase is Phase.IDENTIFY
        gaps = {g.title: g for g in s.scalars(select(Gap).where(Gap.cycle_id == april.id))}
        paid = gaps["Leads from paid search wait too long for sales"]
        assert paid.evidence.startswith(
            "5 leads from paid search waited over 24 h; 3 of them had no owner."
        )
        assert paid.category is GapCategory.HAND_OFF and paid.decision is GapDecision.OPEN
        events = gaps["Leads from events wait too long for sales"].evidence
        assert "2 leads from events waited over 24 h" in events
        # (a wait in hours below two days, in days from then on)
        assert events.endswith("The longest wait was 16.0 hours past the hand-off time.")
        # decided like any gap in Identify
        phases.decide_gap(
            s, paid, GapDecide(decision="accepted"), person_by_email(s, "lee@acme.test")
        )
        # starting again (a retried start) adds nothing twice
        assert len(breaches.breach_gaps(s, april, APRIL)) == 2
        assert s.query(Gap).filter(Gap.cycle_id == april.id).count() == len(gaps)


def test_the_ledger_is_recorded_as_of_the_passs_date_not_the_clock(org: Store) -> None:
    # 5 March: one lead touched after 30 h (09:01), one never touched (09:02). 6 March: one
    # never touched (09:00).
    add_leads(
        org,
        [
            lead(1, date(2024, 3, 5), 30, channel="web", owner="Sam"),
            lead(2, date(2024, 3, 5), None, channel="web"),
            lead(0, date(2024, 3, 6), None, channel="events"),
        ],
    )

    def ledger_on(day: date) -> dict[str, tuple[float, float]]:
        with org.unit_of_work() as s:
            execute_pass(s, s.get(Cycle, march_id), day)
            rows = s.scalars(select(SlaBreach).where(SlaBreach.cycle_id == march_id)).all()
            return {b.lead: (b.waited_hours, b.late_hours) for b in rows}

    with org.unit_of_work() as s:
        load(s)
        march = start(s, "March", MARCH)
        to_execute(s, march, MARCH)
        march_id = march.id
    # The pass of 6 March reads the leads as they stood at its start (the clock says 2026):
    # neither lead of 5 March had waited 24 h yet, and the touch of 6 March had not happened.
    assert ledger_on(date(2024, 3, 6)) == {}
    # 7 March: the touched lead was 6 h late; the untouched one has waited 38 h 58 min.
    on_7th = ledger_on(date(2024, 3, 7))
    assert on_7th == {"L03-1": (30.0, 6.0), "L03-2": (39.0, 15.0)}
    # a replayed pass of the same day records the same ledger, however late it runs
    assert ledger_on(date(2024, 3, 7)) == on_7th
    # the next day's pass sees the next day's lead and the untouched lead's longer wait
    assert ledger_on(date(2024, 3, 8)) == {
        "L03-1": (30.0, 6.0),
        "L03-2": (63.0, 39.0),
        "L03-0": (39.0, 15.0),
    }
    # a pass long after the period (1-30 March) measures the waits up to its end, not the clock
    assert ledger_on(date(2024, 5, 2))["L03-2"] == (615.0, 591.0)


def test_late_leads_go_to_the_managers_once_grouped_per_manager(org: Store) -> None:
    from flows.cadence import run_job
    from models.cadence.channels import add_channel
    from models.cadence.grouped import Item, messages
    from models.cadence.policy import CadencePolicy
    from models.cadence.tables import Notification, NotificationKind
    from models.schemas import PersonCreate
    from models.services import people

    text = PLAYBOOK.replace("starts_every: month}", "escalate_late_leads_after_hours: 48}")
    # 5 March: a lead touched 6 h late, one from events touched 66 h late. 7 March: two
    # paid-search leads nobody touches.
    add_leads(
        org,
        [
            lead(0, date(2024, 3, 7), None, channel="paid search"),
            lead(1, date(2024, 3, 7), None, channel="paid search", owner="Sam"),
            lead(2, date(2024, 3, 5), 30, channel="paid search", owner="Sam"),
            lead(3, date(2024, 3, 5), 90, channel="events", owner="Sam"),
        ],
    )
    with org.unit_of_work() as s:
        load(s, text)
        max_ = person_by_email(s, "max@acme.test")
        people.create_person(
            s,
            PersonCreate(
                name="Mona Boss", email="mona@acme.test", team="marketing", role="manager"
            ),
            max_,
        )
        for who in ("max", "mona", "lee"):
            add_channel(s, max_, kind="webhook", person=f"{who}@acme.test", url=f"json://h/{who}")
        march = start(s, "March", MARCH)
        march_id = march.id
        to_execute(s, march, MARCH)
        execute_pass(s, march, date(2024, 3, 10))  # the untouched ones: 15 h late

    def escalate(day: date) -> dict:
        return run_job("escalations", org, day, deliver=False)["plan"]

    def late_rows() -> list[Notification]:
        with org.unit_of_work() as s:
            rows = s.scalars(select(Notification).where(Notification.key.like("late-lead:%"))).all()
            s.expunge_all()
            return sorted(rows, key=lambda n: n.key)

    # 10 March: only the events lead is 48 h late (66 h): both managers of the two teams hear.
    first = escalate(date(2024, 3, 10))
    assert (first["late_leads"], first["planned"]) == (1, 2)
    assert sorted(n.recipient for n in late_rows()) == ["max@acme.test", "mona@acme.test"]
    body = late_rows()[0].body
    assert "the lead “L03-3” from events (its owner is Sam) came in on 5 Mar 2024" in body
    assert "waited 3.8 days for sales: 2.8 days past the hand-off time of 24 h." in body
    # the same day again: nothing twice
    assert escalate(date(2024, 3, 10))["planned"] == 0
    # 12 March's pass: the untouched leads are now 63 h late: each goes out once; the events
    # lead is not told again, though its wait is recorded anew
    with org.unit_of_work() as s:
        execute_pass(s, s.get(Cycle, march_id), date(2024, 3, 12))
    again = escalate(date(2024, 3, 12))
    assert (again["late_leads"], again["planned"]) == (3, 4)
    rows = late_rows()
    assert len(rows) == 6 and all(n.kind is NotificationKind.ESCALATION for n in rows)
    assert not any("L03-2" in n.body for n in rows)  # 6 h late: under the threshold
    assert "it has no owner" in next(n.body for n in rows if "“L03-0”" in n.body)
    with org.unit_of_work() as s:  # the ledger says so on every face
        book = breaches.ledger(s, s.get(Cycle, march_id), None)
        assert (book.total, book.managers_after_hours, book.for_managers) == (4, 48, 3)
    # delivery: one message per manager and channel, listing the late leads of the day
    items = [
        Item(n.id, n.key, n.kind, n.channel_id, n.recipient, "json://h", n.subject, n.body, 0)
        for n in rows
        if n.recipient == "max@acme.test"
    ]
    (message,) = messages(items)
    assert message.subject == "Escalations: 3 leads that waited too long need your help"
    assert message.body.startswith("Hi Max Manager,\n\n3 leads that waited too long need")
    # nobody is told while the cycle is not in Execute
    with org.unit_of_work() as s:
        s.query(Notification).delete()
        m = s.get(Cycle, march_id)
        cycles.advance_cycle(
            s,
            m,
            person_by_email(s, "sam@acme.test"),
            today=date(2024, 3, 31),
            override_reason="the month ended",
        )
    assert escalate(date(2024, 4, 1))["late_leads"] == 0
    # without the setting, a lead goes to the managers as late as an overdue item does
    overdue_rule = {"escalate_after_days": 1, "escalate_to_manager_after_days": 2}
    assert CadencePolicy().for_playbook({"settings": overdue_rule}).late_lead_hours == 72


def test_another_team_pairs_breaches_answer_like_missing_ones(org: Store) -> None:
    add_leads(org, [lead(i, date(2024, 3, 5), 30, channel="web") for i in range(2)])
    with org.unit_of_work() as s:
        load(s)
        march = start(s, "March", MARCH)
        to_execute(s, march, MARCH)
        execute_pass(s, march, date(2024, 3, 10))
        book = breaches.ledger(s, march, person_by_email(s, "mia@acme.test"))
        assert book.total == 2 and book.by_channel[0].channel == "web"
        outsider = person_by_email(s, "sam@acme.test")
        outsider.team_id = None  # a person on no team of the cycle
        with pytest.raises(NotFound, match=f"no cycle with id {march.id}"):
            breaches.ledger(s, march, outsider)
        s.rollback()


def test_rejection_reasons_become_a_lead_definition_drift_gap(org: Store) -> None:
    # February (the baseline): 20 reviewed MQLs, 8 rejected: 5 "no budget" from paid search's
    # spring campaign, 3 "student" from webinars; 12 accepted.
    rows = []
    for i in range(20):
        day = date(2024, 2, 10)
        r = lead(i, day, 2)
        decided = r["first_touch_at"] + timedelta(hours=1)
        if i < 5:
            r.update(channel="paid search", campaign="spring", rejection_reason="no budget")
            r.update(rejected_at=decided)
        elif i < 8:
            r.update(channel="webinar", rejection_reason="student", rejected_at=decided)
        else:
            r.update(channel="paid search", campaign="spring", sql_at=decided)
        rows.append(r)
    add_leads(org, rows)
    with org.unit_of_work() as s:
        load(s)
        march = start(s, "March", MARCH)
        gap = s.scalar(
            select(Gap).where(Gap.cycle_id == march.id, Gap.key == "metric:lead_definition_drift")
        )
        assert gap is not None
        assert gap.category is GapCategory.LEAD_DEFINITION and gap.decision is GapDecision.OPEN
        assert "Sales sent back 40.0% of the 20 MQLs it reviewed" in gap.evidence
        assert gap.evidence.endswith(
            "The most frequent reasons: 5 leads from paid search, campaign spring: “no budget”; "
            "3 leads from webinar: “student”."
        )
        assert "to at most 20.0%" in gap.description


# --- cycles that start on a schedule ------------------------------------------------------------


def test_a_scheduled_cycle_starts_with_point_persons_by_role_and_open_work(org: Store) -> None:
    from flows.cadence import run_job
    from models.cadence.channels import add_channel
    from models.cadence.tables import Notification
    from models.schemas import ActionItemCreate, PersonCreate, PersonUpdate
    from models.services import actions, people

    with org.unit_of_work() as s:
        load(s)
        march = start(s, "March", MARCH)
        march_id = march.id
        sam, lee = person_by_email(s, "sam@acme.test"), person_by_email(s, "lee@acme.test")
        phases.advance(s, march, sam, today=MARCH)  # identify -> plan
        actions.add_action(
            s, march, ActionItemCreate(title="Route MQLs to one queue", owner="lee@acme.test"), lee
        )
        phases.advance(s, march, sam, today=MARCH)  # plan -> execute
    # the month is not over, and March is still in Execute: nothing starts
    assert (
        run_job("scheduled-starts", org, date(2024, 3, 31), deliver=False)["plan"]["changed"] == 0
    )
    waiting = run_job("scheduled-starts", org, APRIL, deliver=False)["plan"]
    assert waiting["changed"] == 0
    assert waiting["waiting"] == [
        "“March” is still in Execute; the next cycle starts once it has reached Recap"
    ]
    with org.unit_of_work() as s:
        max_ = person_by_email(s, "max@acme.test")
        # Mia is a lead now; Pat is marketing's point person
        people.update_person(
            s, person_by_email(s, "mia@acme.test"), PersonUpdate(role="lead"), max_
        )
        people.create_person(
            s,
            PersonCreate(
                name="Pat Point", email="pat@acme.test", team="marketing", role="point_person"
            ),
            max_,
        )
        for email in ("sam@acme.test", "pat@acme.test"):
            add_channel(
                s, max_, kind="webhook", person=email, url=f"json://hooks.example.com/{email[:3]}"
            )
        m = s.get(Cycle, march_id)
        cycles.advance_cycle(
            s,
            m,
            person_by_email(s, "sam@acme.test"),
            today=date(2024, 3, 31),
            override_reason="the month ended",
        )

    out = run_job("scheduled-starts", org, date(2024, 4, 2), deliver=False)["plan"]
    assert out["changed"] == 1 and out["planned"] == 2
    with org.unit_of_work() as s:
        april = s.scalar(select(Cycle).where(Cycle.previous_cycle_id == march_id))
        assert april is not None and april.phase is Phase.IDENTIFY
        assert (april.period_start, april.period_end) == (APRIL, date(2024, 4, 30))
        assert {ct.team.key: ct.point_person.email for ct in april.teams} == {
            "sales": "sam@acme.test",
            "marketing": "pat@acme.test",
        }
        carried = s.scalars(select(ActionItem).where(ActionItem.cycle_id == april.id)).all()
        assert [(a.title, a.owner.email) for a in carried] == [
            ("Route MQLs to one queue", "lee@acme.test")
        ]
        told = s.scalars(select(Notification).where(Notification.cycle_id == april.id)).all()
        assert sorted(n.recipient for n in told) == ["pat@acme.test", "sam@acme.test"]
        pat = next(n for n in told if n.recipient == "pat@acme.test")
        assert "You are its point person for Marketing" in pat.body
        assert "1 open action item came over from the previous cycle" in pat.body
    # a re-run starts nothing twice and tells nobody twice
    again = run_job("scheduled-starts", org, date(2024, 4, 3), deliver=False)["plan"]
    assert again["changed"] == 0 and again["planned"] == 0


def test_the_playbook_page_says_when_cycles_start_and_when_rejections_raise_a_gap() -> None:
    from aligncycle.web.routes.admin_playbooks import preview

    lines = preview(parse_playbook(PLAYBOOK), {"sales": "Sales", "marketing": "Marketing"})
    assert (
        "A new cycle of the same teams starts every month, with its point persons and the open "
        "work of the previous cycle." in lines["settings"]
    )
    assert any("more than 20% of the leads it reviews" in s for s in lines["settings"])
