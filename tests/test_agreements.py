"""The alignment agreement of a team pair (issue 20): its first version from the playbook, a
change proposed in Plan and adopted at Recap with both point persons' sign-off, which the next
KPI computation reads its hand-off SLA from; an unsigned or rejected change changes nothing;
every version keeps who changed what and why; another team sees no agreement."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select

from aligncycle.web import seed
from models.agreement_tables import AgreementVersion
from models.base import utcnow
from models.enums import Phase
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.funnel import baseline, measure
from models.funnel.tables import CycleKpiSnapshot, Lead
from models.phases import agreement as agreement_phase
from models.schemas import CheckInCreate, PersonCreate, TeamCreate
from models.services import actions, agreement_views, agreements, cycles, people
from models.services.agreements import AmendmentCreate, Changes
from models.services.common import person_by_email
from models.tables import Cycle, Event


def _p(s, email: str):  # noqa: ANN001, ANN202
    return person_by_email(s, f"{email}@acme.test")


def _leads(s, cycle: Cycle) -> None:  # noqa: ANN001
    """Four MQLs in the cycle's period, each touched 30 hours after it became an MQL: late for
    a 24-hour hand-off, in time for a 48-hour one."""
    day = datetime.combine(cycle.period_start + timedelta(days=2), time(9), tzinfo=UTC)
    for i in range(4):
        mql = day + timedelta(days=i)
        s.add(
            Lead(
                source="crm",
                external_id=f"L{i}",
                created_at=mql,
                mql_at=mql,
                first_touch_at=mql + timedelta(hours=30),
            )
        )
    s.flush()


def _to_recap(s, c: Cycle) -> None:  # noqa: ANN001
    today = utcnow().date()
    sam = _p(s, "sam")
    acts = seed.plan_actions(s, c, [], today - timedelta(days=20))
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    for a in acts:
        actions.add_checkin(s, actions.get_action(s, a), CheckInCreate(status="done"), sam)
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    assert c.phase is Phase.RECAP


def _in_plan(s) -> tuple[Cycle, list[int]]:  # noqa: ANN001
    seed.seed_org(s)
    c = seed.start(s, "Hand-off, spring", utcnow().date() - timedelta(days=50))
    _leads(s, c)
    gap_ids = seed.to_plan(s, c, ["Leads wait too long for a first call"])
    seed.plan_actions(s, c, gap_ids, utcnow().date() - timedelta(days=20))
    assert c.phase is Phase.PLAN
    return c, gap_ids


def _sla_attainment(s, c: Cycle) -> tuple[float | None, int]:  # noqa: ANN001
    m = measure.measure_recap(s, c)
    row = s.scalar(
        select(CycleKpiSnapshot).where(
            CycleKpiSnapshot.cycle_id == c.id,
            CycleKpiSnapshot.kind == baseline.RECAP,
            CycleKpiSnapshot.kpi == "sla_attainment",
        )
    )
    assert m is not None and row is not None
    return row.value, row.sla_hours


LONGER = AmendmentCreate(
    changes=Changes(
        handoff_sla_hours=48,
        definitions={"mql": "A contact that asked for a demo or for pricing."},
    ),
    reason="Reps cover two time zones: a day is not enough to call back",
)


def test_first_version_comes_from_the_playbook_as_the_pairs_first_cycle_starts(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        seed.seed_org(s)
        c = seed.start(s, "First", utcnow().date())
        agreement = agreements.agreement_of(s, c)
        assert agreement is not None
        v = agreement_views.view(s, agreement)
        assert v.version == 1 and v.terms.handoff_sla_hours == 24
        assert "ideal customer profile" in v.terms.definitions["mql"]
        assert set(v.terms.definitions) >= {"mql", "sql", "sales_accepted", "recycled"}
        assert v.terms.cadence == "weekly" and "sla_attainment" in v.terms.kpi_targets
        # a second cycle of the same pair writes no second first version
        seed.start(s, "Second", utcnow().date())
        assert len(agreements.versions(s, agreement)) == 1
        md = agreement_views.to_markdown(v)
        assert "# The agreement of" in md and "Hand-off time" in md and "24 hours" in md


def test_an_amendment_adopted_at_recap_changes_the_sla_of_the_next_kpi_computation(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c, gap_ids = _in_plan(s)
        lee, sam, mia = _p(s, "lee"), _p(s, "sam"), _p(s, "mia")
        a = agreements.propose(s, c, LONGER.model_copy(update={"gap_ids": gap_ids}), lee)
        assert agreements.sla_hours_in_force(s, c) == 24  # proposed: nothing changes
        _to_recap(s, c)
        assert _sla_attainment(s, c) == (0.0, 24)  # every lead late for 24 hours

        assert agreement_phase.sign(s, a, sam) is False  # one team signed: nothing changes
        assert agreements.sla_hours_in_force(s, c) == 24
        assert _sla_attainment(s, c) == (0.0, 24)
        with pytest.raises(Conflict, match="already signed"):
            agreements.sign(s, a, sam)

        assert agreement_phase.sign(s, a, mia) is True  # the second signature adopts it
        assert a.status == "adopted"
        assert agreements.sla_hours_in_force(s, c) == 48
        assert _sla_attainment(s, c) == (1.0, 48)  # the same leads, in time for 48 hours

        # the next cycle of the pair freezes its baseline with the agreed SLA
        nxt = seed.start(s, "Hand-off, summer", utcnow().date())
        snap = baseline.snapshot_baseline(s, nxt)["sla_attainment"]
        assert snap.sla_hours == 48

        # the history: both versions, who changed what and why
        v = agreement_views.view(s, agreements.agreement_of(s, c))
        assert [h.number for h in v.versions] == [1, 2]
        second = v.versions[1]
        assert second.changed_by == "Lee Lead" or second.changed_by == lee.name
        assert second.reason == LONGER.reason and second.cycle_id == c.id
        changed = {ch.what: (ch.before, ch.after) for ch in second.changes}
        assert changed["Hand-off time"] == ("24 hours", "48 hours")
        assert changed["Marketing-qualified lead (MQL)"][1] == LONGER.changes.definitions["mql"]
        assert len(changed) == 2
        assert v.amendments[0].gaps == ["Leads wait too long for a first call"]
        assert len(v.amendments[0].signed_by) == 2 and v.amendments[0].waiting_for == []
        verbs = list(s.scalars(select(Event.verb).where(Event.verb.like("agreement.%"))))
        assert verbs.count("agreement.amendment_signed") == 2
        assert "agreement.amendment_proposed" in verbs and "agreement.amendment_adopted" in verbs


def test_an_unsigned_or_rejected_amendment_changes_nothing(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c, _ = _in_plan(s)
        lee, sam, mia = _p(s, "lee"), _p(s, "sam"), _p(s, "mia")
        a = agreements.propose(s, c, LONGER, lee)
        with pytest.raises(InvalidInput, match="adopted or rejected at Recap"):
            agreements.sign(s, a, sam)  # still in Plan
        _to_recap(s, c)
        agreements.sign(s, a, sam)
        assert agreements.sla_hours_in_force(s, c) == 24
        agreements.reject(s, a, mia, "Not before the new reps start")
        assert a.status == "rejected"
        with pytest.raises(Conflict, match="already rejected"):
            agreement_phase.sign(s, a, mia)
        assert agreements.sla_hours_in_force(s, c) == 24
        assert _sla_attainment(s, c) == (0.0, 24)
        assert (
            s.scalar(select(AgreementVersion.number).order_by(AgreementVersion.number.desc())) == 1
        )


def test_who_may_propose_and_sign_and_who_sees_nothing(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c, _ = _in_plan(s)
        people.create_team(s, TeamCreate(key="support", name="Support"))
        s.flush()
        people.create_person(
            s, PersonCreate(name="Ola Outside", email="ola@acme.test", team="support", role="lead")
        )
        s.flush()
        with pytest.raises(Forbidden, match="leads and point persons"):
            agreements.propose(s, c, LONGER, _p(s, "sid"))  # a member
        with pytest.raises(NotFound):
            agreements.propose(s, c, LONGER, _p(s, "ola"))  # another team
        with pytest.raises(InvalidInput, match="changes nothing"):
            agreements.propose(
                s,
                c,
                AmendmentCreate(changes=Changes(handoff_sla_hours=24), reason="same"),
                _p(s, "lee"),
            )
        with pytest.raises(InvalidInput, match="not one of this cycle"):
            agreements.propose(s, c, LONGER.model_copy(update={"gap_ids": [99999]}), _p(s, "lee"))
        a = agreements.propose(s, c, LONGER, _p(s, "mia"))  # a point person
        agreement = agreements.agreement_of(s, c)
        with pytest.raises(NotFound, match="no agreement with id"):
            agreements.visible_agreement(s, _p(s, "ola"), agreement.id)
        with pytest.raises(NotFound, match="no proposed change"):
            agreements.visible_amendment(s, _p(s, "ola"), a.id)
        assert agreements.visible_agreement(s, _p(s, "max"), agreement.id) is agreement
        assert agreements.visible_agreements(s, _p(s, "ola")) == []
        _to_recap(s, c)
        with pytest.raises(Forbidden, match="point persons"):
            agreements.sign(s, a, _p(s, "lee"))


def test_a_campaigns_conversion_before_and_after_its_materials_shipped(store) -> None:  # noqa: ANN001
    from datetime import date

    from models.funnel.campaign_effect import campaign_effect
    from models.services import campaigns
    from models.services.campaigns import CampaignCreate, MaterialCreate

    today = date(2026, 6, 30)
    shipped = date(2026, 6, 20)
    with store.unit_of_work() as s:
        seed.seed_org(s)
        c = seed.start(s, "Webinars", today - timedelta(days=5))
        agreement = agreements.agreement_of(s, c)
        lee = _p(s, "lee")
        camp = campaigns.add_campaign(
            s, agreement, CampaignCreate(name="Spring webinars", funnel_key="spring webinars"), lee
        )
        s.flush()
        bare = campaigns.add_campaign(s, agreement, CampaignCreate(name="No key"), lee)
        assert "not linked" in campaign_effect(s, bare, today=today).missing
        assert "shipping date" in campaign_effect(s, camp, today=today).missing
        campaigns.add_material(
            s, camp, MaterialCreate(title="Webinar deck", kind="deck", shipped_on=shipped), lee
        )
        s.flush()

        def lead(n: str, day: date, campaign: str, sql: bool) -> None:
            mql = datetime.combine(day, time(10), tzinfo=UTC)
            s.add(
                Lead(
                    source="crm",
                    external_id=n,
                    campaign=campaign,
                    created_at=mql,
                    mql_at=mql,
                    sql_at=mql + timedelta(days=1) if sql else None,
                )
            )

        for i in range(4):  # before: one MQL in four becomes an SQL
            lead(f"b{i}", shipped - timedelta(days=5 + i), "Spring Webinars", i == 0)
        for i in range(2):  # after: both do
            lead(f"a{i}", shipped + timedelta(days=1 + i), "Spring Webinars", True)
        lead("other", shipped + timedelta(days=2), "Autumn fair", False)  # another campaign
        s.flush()
        effect = campaign_effect(s, camp, today=today)
        assert effect.missing is None and effect.shipped_on == shipped
        rows = {r.kpi: r for r in effect.rows}
        assert (rows["mql_volume"].before, rows["mql_volume"].after) == ("4", "2")
        assert (rows["mql_to_sql_rate"].before, rows["mql_to_sql_rate"].after) == (
            "25.0%",
            "100.0%",
        )
        assert effect.after_window == (shipped, today)  # not past today


def test_the_demos_agreement_steps(store) -> None:  # noqa: ANN001
    """The demo's lines: version 1 from the playbook, lee's change in Plan, adopted at Recap."""
    from aligncycle import demo_agreement
    from models import phases
    from models.schemas import GapCreate, GapDecide
    from models.services import gaps

    with store.unit_of_work() as s:
        c, _ = _in_plan(s)
        cid = c.id
        definitions = GapCreate(
            title="Nobody agrees what an MQL is",
            category="lead_definition",
            root_cause="communication",
            severity="high",
        )
        gap, _ = gaps.add_gap(s, c, definitions, _p(s, "lee"))
        phases.decide_gap(s, gap, GapDecide(decision="accepted"), _p(s, "lee"))

    def email(user: str) -> str:
        return f"{user}@acme.test"

    first = demo_agreement.first_version(store, cid)
    assert "version 1 from the playbook (hand-off within 24 hours" in first
    assert "lee proposed change" in demo_agreement.propose(store, cid, email)
    with store.unit_of_work() as s:
        _to_recap(s, s.get(Cycle, cid))
    assert demo_agreement.adopt(store, cid, email).endswith("agreement version 2 in force")
    with store.unit_of_work() as s:
        v = agreement_views.view(s, agreements.agreement_of(s, s.get(Cycle, cid)))
        assert v.terms.definitions["mql"] == demo_agreement.MQL
        assert v.terms.kpi_targets["sla_attainment"] == 0.8
        assert v.amendments[0].gaps == ["Nobody agrees what an MQL is"]


def test_targets_are_read_as_the_page_shows_them() -> None:
    """A target typed, or sent back as the form showed it, is the same number."""
    got = Changes(
        kpi_targets={
            "sla_attainment": "80.0%",
            "handoff_latency_median_hours": "5.2 h",
            "revenue_won": "1,234.00",
            "mql_volume": "120",
        }
    ).kpi_targets
    assert got == {
        "sla_attainment": 0.8,
        "handoff_latency_median_hours": 5.2,
        "revenue_won": 1234.0,
        "mql_volume": 120.0,
    }
    with pytest.raises(ValueError, match="share"):
        Changes(kpi_targets={"win_rate": "140%"})
    with pytest.raises(ValueError, match="not a number"):
        Changes(kpi_targets={"win_rate": "lots"})
    # a word that is no unit is not taken off (it was: "12 apples" was 12); nor is a decimal
    # comma guessed
    with pytest.raises(ValueError, match="not a number: '12 apples'"):
        Changes(kpi_targets={"mql_volume": "12 apples"})
    with pytest.raises(ValueError, match="write decimals with a point"):
        Changes(kpi_targets={"handoff_latency_median_hours": "12,5 h"})
    assert Changes(kpi_targets={"sales_cycle_median_days": "14 days"}).kpi_targets == {
        "sales_cycle_median_days": 14.0
    }


def test_the_recap_does_not_close_while_a_change_waits_for_its_signatures(store) -> None:  # noqa: ANN001
    """The Recap gate names the change and who still has to sign it; once one point person
    rejects it (or both sign), the cycle closes, and a rejected change never takes effect."""
    from models.errors import TransitionRefused
    from models.schemas import RetrospectiveRecord
    from models.services import next_step, recap

    with store.unit_of_work() as s:
        c, _ = _in_plan(s)
        a = agreements.propose(s, c, LONGER, _p(s, "lee"))
        _to_recap(s, c)
        seed.answer_phase(s, c, _p(s, "sam"))
        recap.record_retrospective(s, c, RetrospectiveRecord(), _p(s, "sam"))
        recap.sign_off(s, c, _p(s, "max"))
        with pytest.raises(TransitionRefused) as refused:
            cycles.advance_cycle(s, c, _p(s, "sam"))
        message = refused.value.message
        assert "1 change to the agreement waiting to be signed or rejected" in message
        assert "“Reps cover two time zones" in message
        assert "(Sam Sales of Sales and Mia Marketing of Marketing still have to sign)" in message
        assert c.phase is Phase.RECAP

        agreement_phase.sign(s, a, _p(s, "sam"))
        step = next_step.next_step(s, c)
        [blocker] = step.blockers
        assert blocker.kind == "amendments"
        assert blocker.text.endswith("(Mia Marketing of Marketing still has to sign)")
        assert [(t.kind, t.object_id) for t in blocker.targets] == [("amendment", a.id)]
        assert not step.readiness.ready

        agreements.reject(s, a, _p(s, "mia"), "Not before the new reps start")
        assert next_step.next_step(s, c).blockers == []
        cycles.advance_cycle(s, c, _p(s, "sam"))
        assert c.phase is Phase.CLOSED
        change = agreement_views.view(s, agreements.agreement_of(s, c)).amendments[0]
        assert change.status_words == "Rejected" and agreements.sla_hours_in_force(s, c) == 24


def test_an_adopted_change_holds_no_recap(store) -> None:  # noqa: ANN001
    """A change both point persons signed is adopted: the Recap gate waits for nothing."""
    with store.unit_of_work() as s:
        c, _ = _in_plan(s)
        a = agreements.propose(s, c, LONGER, _p(s, "lee"))
        _to_recap(s, c)
        agreement_phase.sign(s, a, _p(s, "sam"))
        agreement_phase.sign(s, a, _p(s, "mia"))
        assert cycles.facts(s, c).amendments_waiting == ()


def test_targets_in_money_are_said_in_the_shared_numbers_currency(store) -> None:  # noqa: ANN001
    """As the page shows them ("50,000.00 USD"): read back, refused in another currency than
    the numbers' or on a number that is no amount, and said with it in the agreement."""
    from models.funnel.currency import set_currency
    from models.funnel.tables import Deal

    got = Changes(kpi_targets={"revenue_won": "50,000.00 usd", "mql_volume": "120"})
    assert (got.kpi_targets, got.currency) == ({"revenue_won": 50000.0, "mql_volume": 120.0}, "USD")
    assert "currency" not in got.model_dump()  # (the targets are the numbers': not stored)
    with pytest.raises(ValueError, match="SLA attainment is not an amount"):
        Changes(kpi_targets={"sla_attainment": "80 USD"})
    with store.unit_of_work() as s:
        c, _gap_ids = _in_plan(s)
        s.add(Deal(source="crm", external_id="d1", amount_cents=100, listed=True))
        s.flush()
        set_currency(s, "crm", "USD", None)
        lee = _p(s, "lee")
        euros = AmendmentCreate(
            changes=Changes(kpi_targets={"revenue_won": "60,000 EUR"}), reason="More revenue"
        )
        with pytest.raises(InvalidInput, match="amounts are in USD, not EUR: give the targets"):
            agreements.propose(s, c, euros, lee)
        dollars = AmendmentCreate(
            changes=Changes(kpi_targets={"revenue_won": "60,000.00 USD"}), reason="More revenue"
        )
        agreements.propose(s, c, dollars, lee)
        v = agreement_views.view(s, agreements.agreement_of(s, c))
        changed = {ch.what: ch.after for ch in v.amendments[0].changes}
        assert changed["Target: Revenue won"] == "60,000.00 USD"
