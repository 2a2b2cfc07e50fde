"""Carry-over keeps its context: due dates (moved into the new period when needed), the gaps
the work addresses, the deferred gaps; the owner is told what moved where, and the work stays
in their My work when the first cycle closes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from models import phases
from models.db import Store
from models.enums import GapDecision, GapSource, Phase
from models.phases import carry_over
from models.phases import lifecycle as advance_phase
from models.schemas import ActionItemUpdate, GapDecide, RetrospectiveRecord
from models.services import actions, cycles, gaps, recap, views
from models.tables import ActionItem, Event, Gap
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
from tests.test_services import (
    DUE,
    END,
    LEE,
    MAX,
    SAM,
    SID,
    START,
    C,
    P,
    add_action,
    add_gap,
    advance,
    answer_all,
    start,
    to_plan,
)

LATER = END + timedelta(days=10)  # the follow-up starts after the first period ended


def first_cycle_in_recap(store: Store) -> tuple[int, dict[str, int]]:
    """A cycle in Recap with an item due inside its period, one overdue, one done, and a
    deferred gap; saved and signed off, ready to close."""
    cycle_id = start(store)
    gap_id = to_plan(store, cycle_id)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        gap = gaps.get_gap(s, gap_id)
        deferred = phases.decide_gap(
            s, add_gap(s, cycle_id, "Content is missing"), GapDecide(decision="deferred"), P(s, LEE)
        )
        soon = add_action(s, cycle_id, gap, title="Soon", due_date=DUE, follow_up_date=DUE)
        overdue = add_action(s, cycle_id, gap, title="Overdue", due_date=START)
        done = add_action(s, cycle_id, gap, title="Done")
        advance(s, cycle_id)
        actions.update_action(s, done, ActionItemUpdate(status="done"), P(s, LEE))
        answer_all(s, cycle_id, Phase.EXECUTE)
        advance(s, cycle_id, override_reason="two items go to the next cycle", today=LATER)
        answer_all(s, cycle_id, Phase.RECAP)
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        ids = {"gap": gap_id, "deferred": deferred.id, "soon": soon.id, "overdue": overdue.id}
    return cycle_id, ids


def close_with_follow_up(store: Store, cycle_id: int) -> int:
    with store.unit_of_work() as s:
        decision = advance_phase.PhaseDecision(decided_by=SAM, follow_up_title="Q2")
        out = advance_phase.apply_decision(s, C(s, cycle_id), decision, LATER)
        assert out.carried_over == 2
        return out.follow_up_cycle_id


def test_carried_items_keep_their_due_dates_and_their_gaps(org: Store) -> None:
    first, ids = first_cycle_in_recap(org)
    second = close_with_follow_up(org, first)
    with org.unit_of_work() as s:
        new = C(s, second)
        assert (new.period_start, new.phase) == (LATER, Phase.IDENTIFY)
        by_title = {a.title: a for a in actions.list_actions(s, cycle_id=second)}
        assert set(by_title) == {"Soon", "Overdue"}
        # both were due before the new period started: moved to its first day
        assert by_title["Overdue"].due_date == LATER and by_title["Soon"].due_date == LATER
        assert by_title["Soon"].follow_up_date == LATER
        [carried] = by_title["Soon"].gaps
        assert carried.cycle_id == second and carried.title == "No hand-off SLA"
        assert (carried.decision, carried.source) == (GapDecision.ACCEPTED, GapSource.CARRIED)
        assert by_title["Overdue"].gaps == [carried]  # one gap, carried once
        # the deferred gap is carried too, to be decided again
        reopened = s.scalar(
            select(Gap).where(Gap.cycle_id == second, Gap.title == "Content is missing")
        )
        assert (
            reopened.decision is GapDecision.OPEN and reopened.key == f"carried:{ids['deferred']}"
        )
        blockers = cycles.readiness(s, new, LATER).blockers
        assert any(b.startswith("1 gap not decided: Content is missing") for b in blockers)
        # what the owner is told: which item moved from where to where, and its due date
        told = s.scalar(
            select(Event).where(
                Event.verb == "action.carried_over",
                Event.object_id == by_title["Overdue"].id,
            )
        )
        assert told.after == {
            "title": "Overdue",
            "from_cycle": first,
            "from_action": ids["overdue"],
            "owner": SID,
            "due_date": LATER.isoformat(),
            "due_date_before": START.isoformat(),
            "gaps": ["No hand-off SLA"],
        }
        # carrying again adds nothing
        assert carry_over.carry_over(s, C(s, first), new, None) == 0


def test_the_carried_work_stays_in_the_owners_work(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    first, _ = first_cycle_in_recap(org)
    second = close_with_follow_up(org, first)
    with org.unit_of_work() as s:
        assert C(s, first).phase is Phase.CLOSED
        mine, total, _ = views.my_actions(s, P(s, SID), today=LATER)
        assert total == 2 and {a.cycle_id for a in mine} == {second}
    page = surfaces.browser(SID).get("/my").text
    assert page.count("Carried over from the previous cycle") == 2
    assert f"Follow-up on {LATER.strftime('%-d %b %Y')}" in page  # "Soon"'s, moved with it


def test_the_carried_gaps_plan_the_new_cycle(org: Store) -> None:
    """The carried item addresses the carried gap, with its owner and due date: the new
    cycle's Plan gate is content once the deferred gap is decided."""
    first, ids = first_cycle_in_recap(org)
    second = close_with_follow_up(org, first)
    with org.unit_of_work() as s:
        reopened = s.scalar(
            select(Gap).where(Gap.cycle_id == second, Gap.key == f"carried:{ids['deferred']}")
        )
        phases.decide_gap(s, reopened, GapDecide(decision="rejected", reason="not now"), P(s, LEE))
        answer_all(s, second, Phase.IDENTIFY)
        advance(s, second, today=LATER)
        answer_all(s, second, Phase.PLAN)
        assert cycles.readiness(s, C(s, second), LATER).blockers == []
        item = s.scalar(select(ActionItem).where(ActionItem.cycle_id == second).limit(1))
        assert item.carried_from_id in (ids["soon"], ids["overdue"])
