"""The settings in force for a team pair (issue 20): the shared KPIs' targets and the cadence
come from the agreement's version in force, else the playbook. An adopted change moves the
next gap check and the next check-in plan; an unsigned or rejected one changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, update

from aligncycle.web import seed
from models.agreement_tables import AgreementVersion
from models.base import utcnow
from models.breach_tables import SlaBreach
from models.cadence import checkins, digest
from models.enums import Phase
from models.funnel.tables import Lead
from models.phases import agreement as agreement_phase
from models.phases import breaches
from models.phases import numbers as kpi_checks
from models.schemas import CheckInCreate
from models.services import actions, agreements, cycles
from models.services.agreements import AmendmentCreate, Changes
from models.services.common import person_by_email
from models.tables import Cycle, Gap

TIGHTER = AmendmentCreate(
    changes=Changes(kpi_targets={"sla_attainment": "90%"}, cadence="daily"),
    reason="Touch nine leads in ten in time, and talk every day while we fix it",
)


def _p(s, name: str):  # noqa: ANN001, ANN202
    return person_by_email(s, f"{name}@acme.test")


def _leads_before(s, today) -> None:  # noqa: ANN001
    """25 MQLs in the fortnight before ``today``: 21 touched in 2 hours, 4 after 30 hours
    (84% within a 24-hour hand-off: over the playbook's 80%, under a 90% target)."""
    for i in range(25):
        mql = datetime.combine(today - timedelta(days=3 + i % 12), time(9), tzinfo=UTC)
        late = i < 4
        s.add(
            Lead(
                source="crm",
                external_id=f"T{i}",
                created_at=mql,
                mql_at=mql,
                first_touch_at=mql + timedelta(hours=30 if late else 2),
            )
        )
    s.flush()


def _first_cycle_in_recap(s, today, change: AmendmentCreate = TIGHTER) -> tuple[Cycle, object]:  # noqa: ANN001
    """The pair's first cycle, with ``change`` proposed in Plan, now at Recap (not signed)."""
    seed.seed_org(s)
    c = seed.start(s, "Hand-off, spring", today - timedelta(days=50))
    gap_ids = seed.to_plan(s, c, ["Leads wait too long for a first call"])
    acts = seed.plan_actions(s, c, gap_ids, today - timedelta(days=20))
    amendment = agreements.propose(s, c, change, _p(s, "lee"))
    sam = _p(s, "sam")
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    for a in acts:
        actions.add_checkin(s, actions.get_action(s, a), CheckInCreate(status="done"), sam)
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    assert c.phase is Phase.RECAP
    return c, amendment


def _metric_gap(s, c: Cycle) -> Gap | None:  # noqa: ANN001
    return s.scalar(select(Gap).where(Gap.cycle_id == c.id, Gap.key == "metric:sla_attainment_low"))


def test_an_adopted_target_moves_the_next_gap_check_an_unsigned_one_does_not(store) -> None:  # noqa: ANN001
    today = utcnow().date()
    with store.unit_of_work() as s:
        first, amendment = _first_cycle_in_recap(s, today)
        _leads_before(s, today)
        nxt = seed.start(s, "Hand-off, summer", today)  # its baseline: the 25 MQLs, 84%
        before = agreements.settings_in_force(s, nxt)
        assert before.targets["sla_attainment"] == 0.8  # the playbook's threshold
        assert before.agreed_targets == {} and before.cadence == "weekly"

        kpi_checks.evaluate_gap_rules(s, nxt)
        assert _metric_gap(s, nxt) is None  # 84% is over the playbook's 80%

        agreement_phase.sign(s, amendment, _p(s, "sam"))  # one signature: nothing changes
        kpi_checks.evaluate_gap_rules(s, nxt)
        assert _metric_gap(s, nxt) is None
        assert agreements.settings_in_force(s, nxt).targets["sla_attainment"] == 0.8

        assert agreement_phase.sign(s, amendment, _p(s, "mia")) is True  # adopted
        now = agreements.settings_in_force(s, nxt)
        assert now.targets["sla_attainment"] == 0.9 and now.cadence == "daily"
        assert now.version == 2
        kpi_checks.evaluate_gap_rules(s, nxt)
        gap = _metric_gap(s, nxt)
        assert gap is not None
        assert "84.0%" in gap.evidence and "under the agreed target of 90.0%" in gap.evidence
        sentence = now.target_sentence("sla_attainment", 0.84)
        assert sentence == "Agreed target 90.0% (version 2 of the agreement): not met."
        # the SLA stays the one agreed before (the change did not touch it)
        assert agreements.sla_hours_in_force(s, nxt) == 24


def test_a_rejected_change_leaves_targets_and_cadence_as_they_were(store) -> None:  # noqa: ANN001
    today = utcnow().date()
    with store.unit_of_work() as s:
        first, amendment = _first_cycle_in_recap(s, today)
        agreements.reject(s, amendment, _p(s, "mia"), "Not this quarter")
        in_force = agreements.settings_in_force(s, first)
        assert in_force.agreed_targets == {} and in_force.cadence == "weekly"
        assert in_force.version == 1


def test_the_setting_in_force_on_a_date_is_that_days_version(store) -> None:  # noqa: ANN001
    today = utcnow().date()
    with store.unit_of_work() as s:
        first, amendment = _first_cycle_in_recap(s, today)
        agreement_phase.sign(s, amendment, _p(s, "sam"))
        agreement_phase.sign(s, amendment, _p(s, "mia"))
        ten_days_ago = utcnow() - timedelta(days=10)
        s.execute(
            update(AgreementVersion)
            .where(AgreementVersion.number == 1)
            .values(created_at=ten_days_ago)
        )
        s.expire_all()
        first = s.get(Cycle, first.id)
        assert agreements.settings_in_force(s, first, today - timedelta(days=5)).cadence == (
            "weekly"
        )
        assert agreements.settings_in_force(s, first, today).cadence == "daily"
        # before the agreement had any version: the playbook's
        early = agreements.settings_in_force(s, first, today - timedelta(days=30))
        assert early.version is None and early.cadence == "weekly"


def test_the_check_in_planner_asks_as_often_as_the_agreement_in_force_says(store) -> None:  # noqa: ANN001
    today = utcnow().date()
    with store.unit_of_work() as s:
        first, amendment = _first_cycle_in_recap(s, today)
        nxt = seed.start(s, "Hand-off, summer", today - timedelta(days=10))
        gap_ids = seed.to_plan(s, nxt, ["Reps do not know the new scoring"])
        seed.plan_actions(s, nxt, gap_ids, today + timedelta(days=10))
        seed.answer_phase(s, nxt, _p(s, "sam"))
        cycles.advance_cycle(s, nxt, _p(s, "sam"))
        assert nxt.phase is Phase.EXECUTE
        nxt_id = nxt.id

    def keys(s) -> set[str]:  # noqa: ANN001
        """The check-in messages the planner asks for today (nobody has a channel in the
        seed: each is reported with its key)."""
        result = checkins.plan_checkins(s, today)
        return {k for k in result.unreachable if k.startswith(f"checkin:{nxt_id}:")}

    with store.unit_of_work() as s:
        weekly = keys(s)
        assert weekly and all(k.endswith(":n1") for k in weekly)  # 10 days: the 2nd week
    with store.unit_of_work() as s:
        a = s.get(type(amendment), amendment.id)
        agreement_phase.sign(s, a, _p(s, "sam"))
        assert keys(s) == weekly  # one signature: still weekly
        agreement_phase.sign(s, a, _p(s, "mia"))
        daily = keys(s)  # adopted: daily, the 11th day's check-in
        assert daily and all(k.endswith(":n10") for k in daily)


def test_the_digest_uses_the_agreed_sla_and_shows_the_agreed_target(store) -> None:  # noqa: ANN001
    today = utcnow().date()
    with store.unit_of_work() as s:
        first, amendment = _first_cycle_in_recap(s, today)
        agreement_phase.sign(s, amendment, _p(s, "sam"))
        agreement_phase.sign(s, amendment, _p(s, "mia"))
        _leads_before(s, today)
        nxt = seed.start(s, "Hand-off, summer", today - timedelta(days=10))
        gap_ids = seed.to_plan(s, nxt, ["Reps do not know the new scoring"])
        seed.plan_actions(s, nxt, gap_ids, today + timedelta(days=10))
        seed.answer_phase(s, nxt, _p(s, "sam"))
        cycles.advance_cycle(s, nxt, _p(s, "sam"))
        lines = digest.digest_content(s, today)[nxt.id].kpis
        sla = next(line for line in lines if line.startswith("SLA attainment"))
        assert "agreed target 90.0%" in sla


def test_the_drift_gap_compares_with_the_agreed_rejection_share(org) -> None:  # noqa: ANN001
    """The playbook opts in at 20%; the two teams agreed at most 50%, then 30%: 40% of the
    baseline's reviewed MQLs sent back raises the gap only against the 30% version."""
    from models.agreement_tables import Agreement
    from models.services.agreements import Terms
    from models.tables import Team
    from tests.test_next_cycle import MARCH, add_leads, lead, load, start

    rows = []
    for i in range(20):  # February: 20 reviewed MQLs, 8 sent back
        r = lead(i, date(2024, 2, 10), 2)
        decided = r["first_touch_at"] + timedelta(hours=1)
        r.update(rejection_reason="no budget", rejected_at=decided) if i < 8 else r.update(
            sql_at=decided
        )
        rows.append(r)
    add_leads(org, rows)
    key = "metric:lead_definition_drift"

    def agree(s, a: Agreement, number: int, share: float) -> None:  # noqa: ANN001
        terms = Terms(kpi_targets={"sales_rejection_rate": share}).model_dump()
        s.add(AgreementVersion(agreement_id=a.id, number=number, terms=terms, reason="agreed"))
        s.flush()

    with org.unit_of_work() as s:
        load(s)
        ids = sorted(s.scalars(select(Team.id).where(Team.key.in_(["sales", "marketing"]))))
        a = Agreement(team_a_id=ids[0], team_b_id=ids[1])
        s.add(a)
        s.flush()
        agree(s, a, 1, 0.5)
        march = start(s, "March", MARCH)  # its baseline: 40% sent back, within the agreed 50%
        assert s.scalar(select(Gap).where(Gap.cycle_id == march.id, Gap.key == key)) is None
        agree(s, a, 2, 0.3)  # a later version: at most 30%
        kpi_checks.evaluate_gap_rules(s, march)
        gap = s.scalar(select(Gap).where(Gap.cycle_id == march.id, Gap.key == key))
        assert gap is not None
        assert "the agreed target is at most 30.0%" in gap.evidence
        assert "to at most 30.0%" in gap.description


@pytest.mark.parametrize("signed", [False, True], ids=["proposed only", "adopted"])
def test_late_leads_are_counted_against_the_agreed_hand_off_time(store, signed: bool) -> None:  # noqa: ANN001
    """The late-lead record reads the hand-off time in force over the period: 4 leads touched
    after 30 hours are late under the playbook's 24 hours, and none under an adopted 48-hour
    change; a change only proposed leaves the 24 hours."""
    today = utcnow().date()
    with store.unit_of_work() as s:
        weekends = AmendmentCreate(changes=Changes(handoff_sla_hours=48), reason="Weekends")
        c, amendment = _first_cycle_in_recap(s, today, weekends)
        if signed:
            agreement_phase.sign(s, amendment, _p(s, "sam"))
            agreement_phase.sign(s, amendment, _p(s, "mia"))
        # as if each version had been agreed before the period began
        for number, days in ((1, 61), (2, 60)):
            s.execute(
                update(AgreementVersion)
                .where(AgreementVersion.number == number)
                .values(created_at=utcnow() - timedelta(days=days))
            )
        _leads_before(s, c.period_end)
        assert breaches.record_breaches(s, c, today) == (0 if signed else 4)
        recorded = s.scalars(select(SlaBreach.sla_hours).where(SlaBreach.cycle_id == c.id))
        assert set(recorded) == (set() if signed else {24.0})


def _digest_world(s, today, signed: bool, adopted_on: date) -> int:  # noqa: ANN001
    """The pair's next cycle in Execute (started 25 days ago: before every week the tests'
    digests cover, whatever today's weekday; on a Monday one starts 21 days ago), each team
    with a channel; the first cycle's change to a daily cadence signed by both (``signed``:
    adopted on ``adopted_on``) or by nobody; the agreement's first version is older than both."""
    from models.cadence.tables import ChannelKind, NotificationChannel

    first, amendment = _first_cycle_in_recap(s, today)
    nxt = seed.start(s, "Hand-off, summer", today - timedelta(days=25))
    gap_ids = seed.to_plan(s, nxt, ["Reps do not know the new scoring"])
    seed.plan_actions(s, nxt, gap_ids, today + timedelta(days=10))
    seed.answer_phase(s, nxt, _p(s, "sam"))
    cycles.advance_cycle(s, nxt, _p(s, "sam"))
    assert nxt.phase is Phase.EXECUTE
    for ct in nxt.teams:
        s.add(NotificationChannel(team_id=ct.team_id, kind=ChannelKind.WEBHOOK, url="json://x"))
    if signed:
        agreement_phase.sign(s, amendment, _p(s, "sam"))
        agreement_phase.sign(s, amendment, _p(s, "mia"))
    at = datetime.combine(adopted_on, time(10), tzinfo=UTC)
    for number, created in ((1, at - timedelta(days=40)), (2, at)):
        s.execute(
            update(AgreementVersion)
            .where(AgreementVersion.number == number)
            .values(created_at=created)
        )
    s.flush()
    return nxt.id


def _digests(s, today, cycle_id: int) -> tuple[object, dict[str, object]]:  # noqa: ANN001
    """Plan the day's digests; the cycle's stored digests by key (channel suffix dropped)."""
    from models.cadence.tables import Notification, NotificationKind

    result = digest.plan_digests(s, today)
    stored = s.scalars(
        select(Notification).where(
            Notification.kind == NotificationKind.DIGEST, Notification.cycle_id == cycle_id
        )
    )
    return result, {n.key.split("#")[0]: n for n in stored}


def _a_tuesday(today: date) -> date:
    """A Tuesday 7 to 13 days before ``today``."""
    return today - timedelta(days=(today.weekday() - 1) % 7 + 7)


@pytest.mark.parametrize("signed", [True, False])
def test_the_digest_comes_as_often_as_the_agreement_in_force_says(store, signed: bool) -> None:  # noqa: ANN001
    from models.words import day

    today = utcnow().date()
    tuesday = _a_tuesday(today)
    wednesday, monday = tuesday + timedelta(days=1), tuesday + timedelta(days=6)
    with store.unit_of_work() as s:
        cid = _digest_world(s, today, signed, adopted_on=tuesday)
    with store.unit_of_work() as s:
        result, sent = _digests(s, wednesday, cid)
    if signed:  # daily since Tuesday: Wednesday's digest covers Tuesday
        assert set(sent) == {f"digest:{cid}:{tuesday}..{tuesday}"}
        assert result.planned == 2  # one to each team's channel
        (message,) = {(n.subject.split(":")[0], n.body) for n in sent.values()}
        assert message[0] == "Daily digest"
        assert (
            f"This digest covers {day(tuesday)}. The two teams get it every working day"
            in (message[1])
        )
        with store.unit_of_work() as s:  # the day run again: nothing new
            again, _ = _digests(s, wednesday, cid)
        assert (again.planned, again.already) == (0, 2)
    else:  # nobody signed: still weekly, on Mondays, about the week before
        assert sent == {} and result.planned == 0
        with store.unit_of_work() as s:
            result, sent = _digests(s, monday, cid)
        week = f"digest:{cid}:{monday - timedelta(days=7)}..{monday - timedelta(days=1)}"
        assert set(sent) == {week} and result.planned == 2
        assert all(n.subject.startswith("Weekly digest") for n in sent.values())


def test_a_cadence_changed_mid_cycle_neither_repeats_nor_skips_a_day(store) -> None:  # noqa: ANN001
    from models.words import day, period

    today = utcnow().date()
    tuesday = _a_tuesday(today)
    monday = tuesday - timedelta(days=1)
    with store.unit_of_work() as s:
        cid = _digest_world(s, today, True, adopted_on=tuesday)
    with store.unit_of_work() as s:  # Monday, still weekly: the week before
        _, sent = _digests(s, monday, cid)
    week = f"digest:{cid}:{monday - timedelta(days=7)}..{monday - timedelta(days=1)}"
    assert set(sent) == {week}
    with store.unit_of_work() as s:  # daily from Tuesday: Wednesday's covers Monday too
        _, sent = _digests(s, tuesday + timedelta(days=1), cid)
        _, later = _digests(s, tuesday + timedelta(days=2), cid)
    new = f"digest:{cid}:{monday}..{tuesday}"
    assert set(sent) == {week, new}
    assert (
        f"This digest covers {period(monday, tuesday)}. It picks up where the last one ended "
        f"({day(monday - timedelta(days=1))})." in sent[new].body
    )
    wednesday = tuesday + timedelta(days=1)
    assert set(later) == {week, new, f"digest:{cid}:{wednesday}..{wednesday}"}
