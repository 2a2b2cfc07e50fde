"""The domain logic of each phase (models.phases), without Prefect: what Identify, Plan,
Execute and Recap write, that running them again writes nothing twice, and the point person's
decision between phases."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from models import phases
from models.enums import ActionStatus, Confidence, GapSource, Phase
from models.errors import Forbidden, InvalidInput, TransitionRefused
from models.phases import common, execute, identify, plan
from models.phases import lifecycle as advance_phase
from models.phases import recap as recap_phase
from models.phases.lifecycle import PhaseDecision
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemUpdate,
    CheckInCreate,
    ChecklistAnswer,
    CycleCreate,
    GapCreate,
    GapDecide,
    PersonCreate,
    RetrospectiveRecord,
    SurveyRespond,
)
from models.services import actions, checklist, cycles, gaps, people, recap
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, Cycle, Event, Gap, Retrospective
from tests.conftest import db_snapshot

D0 = date(2030, 3, 4)  # a Monday; the cycle runs D0 .. D0+42
PLAYBOOK = "sales-marketing-handoff"

# The Identify questions of the playbook that are required, with the answer that raises no gap.
CALM = {
    "handoff_interruptions": "no",
    "inconsistent_process": "no",
    "missed_conversions": "no",
    "shared_lead_definitions": "yes",
    "handoff_sla_agreed": "yes",
    "process_documented": "yes",
    "shared_data": "yes",
    "tools_adopted": "yes",
    "shared_kpis": "yes",
    "regular_cadence": "yes",
}


def who(s, email: str):  # noqa: ANN001, ANN201
    return person_by_email(s, email)


def start(store, title: str = "Q1") -> int:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = phases.start_cycle(
            s,
            CycleCreate(
                playbook=PLAYBOOK,
                title=title,
                point_persons=["mia@acme.test"],
                period_start=D0,
                period_end=D0 + timedelta(days=42),
            ),
            who(s, "sam@acme.test"),
            today=D0,
        )
        s.flush()
        return cycle.id


def answer(s, cycle: Cycle, key: str, value: str, phase: str = "identify") -> None:  # noqa: ANN001
    # Point persons may answer any item of their cycle.
    item = checklist.find_item(s, cycle, f"{phase}.{key}")
    phases.answer(s, item, ChecklistAnswer(answer=value), who(s, "sam@acme.test"))


def answer_identify(store, cycle_id: int, **overrides: str) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cycle_id)
        for key, value in (CALM | overrides).items():
            answer(s, cycle, key, value)


def answer_phase(store, cycle_id: int, phase: Phase) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cycle_id)
        for item in checklist.list_items(s, cycle, phase):
            if item.required and item.answer is None:
                value = "yes" if item.answer_kind.value == "yes_no" else "agreed"
                answer(s, cycle, item.key, value, phase.value)


def decide_all(store, cycle_id: int, decision: str = "accepted") -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        for gap in gaps.list_gaps(s, cycles.get_cycle(s, cycle_id)):
            if gap.decision.value == "open":
                reason = "not now" if decision != "accepted" else None
                phases.decide_gap(
                    s, gap, GapDecide(decision=decision, reason=reason), who(s, "lee@acme.test")
                )


def advance(store, cycle_id: int, by: str = "sam@acme.test", today: date = D0, **kw):  # noqa: ANN001, ANN003, ANN201
    with store.unit_of_work() as s:
        return advance_phase.apply_decision(
            s, cycles.get_cycle(s, cycle_id), PhaseDecision(decided_by=by, **kw), today
        )


def count(store, model, **where) -> int:  # noqa: ANN001, ANN003
    with store.unit_of_work() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.scalar(stmt)


def to_plan(store, **overrides: str) -> int:  # noqa: ANN001
    """A cycle in plan, with gaps from ``overrides`` answers accepted."""
    cid = start(store)
    answer_identify(store, cid, **overrides)
    with store.unit_of_work() as s:
        identify.raise_gaps(s, cycles.get_cycle(s, cid))
    decide_all(store, cid)
    advance(store, cid)
    return cid


def to_execute(store, **overrides: str) -> int:  # noqa: ANN001
    cid = to_plan(store, **overrides)
    with store.unit_of_work() as s:
        plan.propose_actions(s, cycles.get_cycle(s, cid), D0 + timedelta(days=1))
        for item in actions.list_actions(s, cycle_id=cid):
            if item.owner_id is None:
                actions.assign_action(
                    s, item, ActionItemAssign(owner="lee@acme.test"), who(s, "max@acme.test")
                )
    answer_phase(store, cid, Phase.PLAN)
    advance(store, cid, today=D0 + timedelta(days=2))
    return cid


# --- identify ------------------------------------------------------------------------------


def gap_keys(store, cycle_id: int) -> set[str]:  # noqa: ANN001
    with store.unit_of_work() as s:
        return set(s.scalars(select(Gap.key).where(Gap.cycle_id == cycle_id)))


def test_identify_turns_matching_answers_into_gaps_once(org) -> None:  # noqa: ANN001
    cid = start(org)
    # "yes" raises the interruptions gap; "no" to shared definitions raises that one; a "no"
    # where the rule wants "yes" raises nothing. Each gap is recorded with its answer.
    answer_identify(
        org, cid, handoff_interruptions="yes", shared_lead_definitions="no", missed_conversions="no"
    )
    assert gap_keys(org, cid) == {
        "checklist:handoff_interruptions",
        "checklist:shared_lead_definitions",
    }
    with org.unit_of_work() as s:
        gap = s.scalar(select(Gap).where(Gap.key == "checklist:handoff_interruptions"))
        assert gap.title == "Avoidable interruptions in the MQL-to-SQL hand-off"
        assert (gap.category.value, gap.root_cause.value, gap.severity.value) == (
            "hand_off",
            "process",
            "high",
        )
        assert gap.source is GapSource.CHECKLIST
        assert gap.reported_by.email == "sam@acme.test"
        assert gap.source_ref == "identify.handoff_interruptions"

    # The Identify flow's step finds them already there: it writes nothing for the answers.
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        assert identify.raise_gaps(s, cycle) == []
    assert db_snapshot(org) == before


def test_identify_report_includes_gaps_people_added_and_flags_changed_answers(org) -> None:  # noqa: ANN001
    cid = start(org)
    answer_identify(org, cid, regular_cadence="no")
    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        gaps.add_gap(
            s,
            cycle,
            GapCreate(
                title="Leads lack a source", category="data_and_tools", root_cause="adoption"
            ),
            who(s, "sid@acme.test"),
        )
        identify.raise_gaps(s, cycle)
    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        answer(s, cycle, "regular_cadence", "yes")  # changed their mind
    with org.unit_of_work() as s:
        report = identify.identify_report(s, cycles.get_cycle(s, cid), D0)
    assert {g.title for g in report.gaps} == {
        "Leads lack a source",
        "No regular cross-team meeting or digest",
    }
    assert report.stale_gaps == ["No regular cross-team meeting or digest"]
    assert report.answered == len(CALM) and report.questions == 12
    assert not report.readiness.ready  # two gaps are undecided
    md = identify.render_identify_markdown(report)
    assert "| Leads lack a source | data_and_tools | adoption | medium | open |" in md
    assert "2 gaps not decided" in md


def test_identify_refuses_a_cycle_in_another_phase_and_writes_nothing(org) -> None:  # noqa: ANN001
    cid = to_plan(org, handoff_interruptions="yes")
    with org.unit_of_work() as s:
        answer(s, cycles.get_cycle(s, cid), "gaps_to_address", "all", "plan")
    before = db_snapshot(org)
    with pytest.raises(TransitionRefused, match="is in Plan"), org.unit_of_work() as s:
        identify.raise_gaps(s, cycles.get_cycle(s, cid))
    assert db_snapshot(org) == before


# --- plan ----------------------------------------------------------------------------------


def test_plan_proposes_one_item_per_accepted_gap_and_template_with_default_owners(org) -> None:  # noqa: ANN001
    cid = to_plan(org, handoff_sla_agreed="no", regular_cadence="no")
    today = D0  # the day the cycle entered Plan, which proposed them
    with org.unit_of_work() as s:
        made = actions.list_actions(s, cycle_id=cid)
        rows = {a.key.rsplit(":", 1)[1]: a for a in made}
        # hand_off has three templates, cadence one.
        assert set(rows) == {
            "agree_handoff_sla",
            "map_handoff_flow",
            "handoff_checklist",
            "weekly_sync_and_digest",
        }
        sla = rows["agree_handoff_sla"]  # owner {lead, sales}: Lee is the only sales lead
        assert sla.owner.email == "lee@acme.test"
        assert sla.counterpart.email == "mia@acme.test"  # the other team's point person
        assert sla.due_date == today + timedelta(days=7)
        assert [g.key for g in sla.gaps] == ["checklist:handoff_sla_agreed"]
        assert sla.success_measure.startswith("SLA published")
        assert rows["map_handoff_flow"].owner.email == "mia@acme.test"  # marketing's point person
        assert rows["handoff_checklist"].owner.email == "sam@acme.test"
        assert sla.assigned_by_id is None  # made by rule, not by a person
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        assert plan.propose_actions(s, cycles.get_cycle(s, cid), today) == []
    assert db_snapshot(org) == before


def test_plan_leaves_the_owner_to_a_lead_when_several_people_fit(org) -> None:  # noqa: ANN001
    with org.unit_of_work() as s:
        people.create_person(
            s, PersonCreate(name="Lena", email="lena@acme.test", team="sales", role="lead")
        )
    cid = to_plan(org, handoff_sla_agreed="no")
    with org.unit_of_work() as s:
        plan.propose_actions(s, cycles.get_cycle(s, cid), D0)
        report = plan.plan_report(s, cycles.get_cycle(s, cid), D0)
    sla = next(a for a in report.actions if a.key.endswith(":agree_handoff_sla"))
    assert sla.owner == "unassigned"
    assert report.unassigned == ["Agree on a hand-off SLA and publish it"]
    # The gap is still planned (its other items have owners and due dates).
    assert not any("accepted gap" in b for b in report.readiness.blockers)


def test_plan_proposes_nothing_for_deferred_gaps_and_checks_the_gate(org) -> None:  # noqa: ANN001
    cid = start(org)
    answer_identify(org, cid, regular_cadence="no")
    with org.unit_of_work() as s:
        identify.raise_gaps(s, cycles.get_cycle(s, cid))
    decide_all(org, cid, "deferred")
    advance(org, cid)
    with org.unit_of_work() as s:
        assert plan.propose_actions(s, cycles.get_cycle(s, cid), D0) == []
        report = plan.plan_report(s, cycles.get_cycle(s, cid), D0)
    assert report.actions == [] and report.accepted_gaps == 0
    assert report.readiness.blockers == [
        "3 required questions unanswered: “What are the gaps we will address this cycle, and "
        "which can…”, “How can the hand-off process become more efficient?”, “How do we make "
        "sure everyone follows the process?”"
    ]
    assert "Not ready to leave Plan" in plan.render_plan_markdown(report)


def test_plan_refuses_a_cycle_still_in_identify(org) -> None:  # noqa: ANN001
    cid = start(org)
    before = db_snapshot(org)
    with pytest.raises(TransitionRefused) as err, org.unit_of_work() as s:
        plan.propose_actions(s, cycles.get_cycle(s, cid), D0)
    assert str(err.value) == (
        "the Plan phase runs on a cycle in Plan; “Q1” is in Identify "
        "(a point person moves it on first, from Next step on the cycle's page)"
    )
    assert err.value.next_step == ("advance", cid)  # the CLI adds its command for it
    assert db_snapshot(org) == before


# --- execute -------------------------------------------------------------------------------


def test_execute_pass_checks_in_once_per_item_per_day(org) -> None:  # noqa: ANN001
    cid = to_execute(org, regular_cadence="no", handoff_sla_agreed="no")
    day = D0 + timedelta(days=5)
    with org.unit_of_work() as s:
        items = actions.list_actions(s, cycle_id=cid)
        done = items[0]
        actions.add_checkin(
            s, done, CheckInCreate(status="done", progress=100), who(s, "max@acme.test"), day
        )
        progress = CheckInCreate(status="in_progress", progress=40)
        actions.add_checkin(s, items[1], progress, who(s, "max@acme.test"), day)
        open_ids = {i.id for i in items[1:]}
    with org.unit_of_work() as s:
        report = execute.execute_pass(s, cycles.get_cycle(s, cid), day)
    assert report.checkins_written == len(open_ids)
    with org.unit_of_work() as s:
        rows = s.scalars(select(CheckIn).where(CheckIn.key == f"execute:{day.isoformat()}")).all()
        assert {c.action_item_id for c in rows} == open_ids  # none for the finished item
        assert all(c.author_id is None for c in rows)
        carried = next(c for c in rows if c.action_item_id == items[1].id)
        assert carried.progress == 40  # the last progress someone reported
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        again = execute.execute_pass(s, cycles.get_cycle(s, cid), day)
    assert again.checkins_written == 0
    assert db_snapshot(org) == before  # same day: nothing written
    with org.unit_of_work() as s:
        nxt = execute.execute_pass(s, cycles.get_cycle(s, cid), day + timedelta(days=1))
    assert nxt.checkins_written == len(open_ids)


def test_execute_report_rolls_up_progress_overdue_and_confidence(org) -> None:  # noqa: ANN001
    cid = to_execute(org, regular_cadence="no", handoff_sla_agreed="no")
    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        answer(s, cycle, "how_we_know", "SLA attainment 90% by week 4", "execute")
        items = actions.list_actions(s, cycle_id=cid)
        assert len(items) == 4
        lee = who(s, "lee@acme.test")
        actions.update_action(s, items[0], ActionItemUpdate(status="done"), lee)
        actions.update_action(s, items[1], ActionItemUpdate(status="dropped"), lee)
        due = items[2].due_date
    late_day = due + timedelta(days=3)
    with org.unit_of_work() as s:
        report = execute.execute_report(s, cycles.get_cycle(s, cid), late_day)
    assert (report.total, report.done, report.dropped, report.open) == (4, 1, 1, 2)
    assert report.percent_done == round(100 / 3, 1)  # dropped items do not count
    assert [r.title for r in report.overdue][0] == items[2].title
    assert report.overdue[0].overdue_days >= 3
    assert report.rollup is Confidence.AT_RISK  # overdue counts as at risk at least
    assert (
        report.success_measures["How will we know it is being accomplished?"]
        == "SLA attainment 90% by week 4"
    )
    assert items[0].title in report.success_measures
    with org.unit_of_work() as s:
        actions.update_action(
            s,
            actions.get_action(s, items[3].id),
            ActionItemUpdate(confidence="off_track"),
            who(s, "lee@acme.test"),
        )
    with org.unit_of_work() as s:
        report = execute.execute_report(s, cycles.get_cycle(s, cid), late_day)
    assert report.rollup is Confidence.OFF_TRACK
    assert "Overdue:" in execute.render_execute_markdown(report)


def test_execute_refuses_a_cycle_in_plan(org) -> None:  # noqa: ANN001
    cid = to_plan(org)
    before = db_snapshot(org)
    refused = pytest.raises(TransitionRefused, match="the Execute phase runs on a cycle in Execute")
    with refused, org.unit_of_work() as s:
        execute.execute_pass(s, cycles.get_cycle(s, cid), D0)
    assert db_snapshot(org) == before


# --- recap ---------------------------------------------------------------------------------


def to_recap(store) -> int:  # noqa: ANN001
    cid = to_execute(store, regular_cadence="no", handoff_sla_agreed="no")
    with store.unit_of_work() as s:
        items = actions.list_actions(s, cycle_id=cid)
        lee = who(s, "lee@acme.test")
        actions.update_action(s, items[0], ActionItemUpdate(status="done"), lee)
        actions.update_action(s, items[1], ActionItemUpdate(status="dropped"), lee)
    answer_phase(store, cid, Phase.EXECUTE)
    # After the period: unfinished items no longer hold the cycle in execute.
    advance(store, cid, today=D0 + timedelta(days=43))
    return cid


def test_recap_drafts_the_retrospective_from_what_happened_once(org) -> None:  # noqa: ANN001
    cid = to_recap(org)
    today = D0 + timedelta(days=44)
    with org.unit_of_work() as s:
        report = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
    assert report.gaps_found == 2 and report.gaps_by_decision == {"accepted": 2}
    assert report.actions_total == 4
    assert len(report.actions_done) == 1 and len(report.actions_dropped) == 1
    assert len(report.actions_late) == 2  # the two still open are past due
    assert report.drafted_by_flow and report.signed_off_by is None
    assert sorted(a for a in report.growth_areas if a.startswith("still open past")) == sorted(
        f"still open past its due date: {t}" for t in report.actions_unfinished
    )
    with org.unit_of_work() as s:
        retro = s.scalar(select(Retrospective).where(Retrospective.cycle_id == cid))
        assert retro.recorded_by_id is None
        assert retro.improvements == [f"done: {report.actions_done[0]}"]
        assert retro.facts["actions_late"] == 2
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        again = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
    assert db_snapshot(org) == before  # nothing changed, nothing rewritten
    assert again.headline == report.headline
    md = recap_phase.render_recap_markdown(report)
    assert md.startswith(f"# Recap — cycle {cid}: Q1")
    assert "## Late" in md and report.actions_late[0] in md


def test_recap_refreshes_its_own_draft_but_never_a_retrospective_a_person_recorded(org) -> None:  # noqa: ANN001
    cid = to_recap(org)
    today = D0 + timedelta(days=44)
    with org.unit_of_work() as s:
        recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        for email, score in [("sam@acme.test", 4), ("lee@acme.test", 5), ("sid@acme.test", 3)]:
            recap.respond(s, cycle, SurveyRespond(score=score), who(s, email))
        for email, score in [("mia@acme.test", 4), ("lou@acme.test", 2), ("meg@acme.test", 3)]:
            recap.respond(s, cycle, SurveyRespond(score=score), who(s, email))
    with org.unit_of_work() as s:
        report = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
    assert report.survey_responses == 6 and report.survey_mean == 3.5
    with org.unit_of_work() as s:
        retro = s.scalar(select(Retrospective).where(Retrospective.cycle_id == cid))
        assert retro.facts["survey_mean"] == 3.5  # the draft follows what happened
        recap.record_retrospective(
            s,
            cycles.get_cycle(s, cid),
            RetrospectiveRecord(improvements=["the SLA is respected"], summary="ours"),
            who(s, "sam@acme.test"),
            today,
        )
    with org.unit_of_work() as s:
        recap.respond(s, cycles.get_cycle(s, cid), SurveyRespond(score=1), who(s, "max@acme.test"))
    with org.unit_of_work() as s:
        report = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
        retro = s.scalar(select(Retrospective).where(Retrospective.cycle_id == cid))
        assert retro.improvements == ["the SLA is respected"] and retro.summary == "ours"
        assert retro.recorded_by.email == "sam@acme.test"
    assert not report.drafted_by_flow and report.summary == "ours"


def test_recap_carries_open_items_into_a_follow_up_cycle_once(org) -> None:  # noqa: ANN001
    cid = to_recap(org)
    today = D0 + timedelta(days=44)
    with org.unit_of_work() as s:
        new = phases.start_cycle(
            s,
            CycleCreate(playbook=PLAYBOOK, title="Q2", previous_cycle_id=cid),
            who(s, "sam@acme.test"),
            today=today,
        )
        s.flush()
        follow_id = new.id
    assert count(org, ActionItem, cycle_id=follow_id) == 2  # start_cycle carried the open two
    with org.unit_of_work() as s:  # one more item left open in the old cycle since
        s.add(ActionItem(cycle_id=cid, title="Late addition", status=ActionStatus.OPEN))
    with org.unit_of_work() as s:
        report = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
    assert report.carried_over == 1 and report.follow_up_cycles == [follow_id]
    with org.unit_of_work() as s:
        assert recap_phase.build_recap(s, cycles.get_cycle(s, cid), today).carried_over == 0
    assert count(org, ActionItem, cycle_id=follow_id) == 3


# --- the decision between phases ------------------------------------------------------------


def test_a_point_person_advances_and_the_decision_is_recorded(org) -> None:  # noqa: ANN001
    cid = start(org)
    answer_identify(org, cid)
    out = advance(org, cid, by="MIA@acme.test ", reason="all calm")
    assert out.advanced and (out.from_phase, out.phase) == (Phase.IDENTIFY, Phase.PLAN)
    assert out.message == f"cycle {cid} moved from Identify to Plan"
    with org.unit_of_work() as s:
        verbs = s.scalars(select(Event.verb).where(Event.cycle_id == cid).order_by(Event.id)).all()
        decision = s.scalar(select(Event).where(Event.verb == "cycle.decision"))
        assert decision.after == {"decision": "advance", "reason": "all calm"}
        assert decision.actor.email == "mia@acme.test"
    assert verbs[-2:] == ["cycle.decision", "cycle.advanced"]


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"by": "lee@acme.test"}, Forbidden, "only a point person of cycle"),
        ({"by": "nobody@acme.test"}, Exception, "unknown person"),
        ({"decision": "stay"}, InvalidInput, "staying in a phase needs a reason"),
        ({"follow_up_title": "Q2"}, InvalidInput, "a follow-up cycle is started when closing"),
        ({}, TransitionRefused, "cannot leave Identify yet: 10 required questions unanswered"),
    ],
)
def test_refused_decisions_write_nothing(org, kw, error, message) -> None:  # noqa: ANN001
    cid = start(org)
    before = db_snapshot(org)
    with pytest.raises(error, match=message):
        advance(org, cid, **kw)
    assert db_snapshot(org) == before


def test_staying_records_the_reason_and_keeps_the_phase(org) -> None:  # noqa: ANN001
    cid = start(org)
    out = advance(org, cid, decision="stay", reason="waiting for the CRM export")
    assert not out.advanced and out.phase is Phase.IDENTIFY
    with org.unit_of_work() as s:
        assert cycles.get_cycle(s, cid).phase is Phase.IDENTIFY
        event = s.scalar(select(Event).where(Event.verb == "cycle.decision"))
        assert event.after == {"decision": "stay", "reason": "waiting for the CRM export"}


def test_a_decision_asked_in_one_phase_is_refused_once_the_cycle_moved_on(org) -> None:  # noqa: ANN001
    cid = start(org)
    answer_identify(org, cid)
    advance(org, cid)
    before = db_snapshot(org)
    with pytest.raises(TransitionRefused, match="moved it meanwhile"), org.unit_of_work() as s:
        advance_phase.apply_decision(
            s,
            cycles.get_cycle(s, cid),
            PhaseDecision(decided_by="sam@acme.test"),
            D0,
            expected_phase=Phase.IDENTIFY,
        )
    assert db_snapshot(org) == before


def test_leaving_execute_early_needs_the_override_reason(org) -> None:  # noqa: ANN001
    cid = to_execute(org, regular_cadence="no")
    answer_phase(org, cid, Phase.EXECUTE)
    day = D0 + timedelta(days=10)  # inside the period, items unfinished
    with pytest.raises(TransitionRefused, match="neither done nor dropped"):
        advance(org, cid, today=day)
    out = advance(org, cid, today=day, reason="the rest moves to Q2")
    assert out.phase is Phase.RECAP
    with org.unit_of_work() as s:
        adv = s.scalar(
            select(Event).where(Event.verb == "cycle.advanced").order_by(Event.id.desc())
        )
        assert adv.after["override_reason"] == "the rest moves to Q2"


def test_closing_a_recap_can_start_the_follow_up_cycle_with_open_items(org) -> None:  # noqa: ANN001
    cid = to_recap(org)
    today = D0 + timedelta(days=45)
    answer_phase(org, cid, Phase.RECAP)
    with org.unit_of_work() as s:
        recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)
        draft = recap.get_retrospective(s, cycles.get_cycle(s, cid))
        saved = RetrospectiveRecord(  # the point person saves the draft as it is
            improvements=draft.improvements,
            growth_areas=draft.growth_areas,
            next_time=draft.next_time,
            summary=draft.summary,
        )
        recap.record_retrospective(s, cycles.get_cycle(s, cid), saved, who(s, "sam@acme.test"))
    with org.unit_of_work() as s:
        recap.sign_off(s, cycles.get_cycle(s, cid), who(s, "max@acme.test"))
    with pytest.raises(Forbidden), org.unit_of_work() as s:  # only point persons start cycles
        advance_phase.apply_decision(
            s,
            cycles.get_cycle(s, cid),
            PhaseDecision(decided_by="lee@acme.test", follow_up_title="Q2"),
            today,
        )
    out = advance(org, cid, today=today, follow_up_title="Q2 hand-off")
    assert out.phase is Phase.CLOSED and out.carried_over == 2
    with org.unit_of_work() as s:
        follow = s.get(Cycle, out.follow_up_cycle_id)
        assert follow.title == "Q2 hand-off" and follow.previous_cycle_id == cid
        assert follow.phase is Phase.IDENTIFY and follow.period_start == today
        assert {ct.point_person.email for ct in follow.teams} == {"sam@acme.test", "mia@acme.test"}
        carried = actions.list_actions(s, cycle_id=follow.id)
        assert all(i.carried_from_id is not None for i in carried) and len(carried) == 2
        final = recap_phase.build_recap(s, cycles.get_cycle(s, cid), today)  # read-only in closed
    assert final.phase is Phase.CLOSED and final.follow_up_cycles == [out.follow_up_cycle_id]
    assert final.signed_off_by == "max@acme.test"


def test_the_decision_prompt_names_the_blockers(org) -> None:  # noqa: ANN001
    cid = start(org)
    with org.unit_of_work() as s:
        text = advance_phase.decision_prompt(s, cycles.get_cycle(s, cid), D0)
    assert f"**Cycle {cid} — Q1** is in **Identify**." in text
    assert "10 required questions unanswered" in text
    assert f"aligncycle cycle advance {cid} --as YOUR_EMAIL" in text


def test_checklist_status_names_owners_and_gap_answers(org) -> None:  # noqa: ANN001
    cid = start(org)
    answer_identify(org, cid, handoff_interruptions="yes")
    with org.unit_of_work() as s:
        rows = {r.key: r for r in common.checklist(s, cycles.get_cycle(s, cid), Phase.IDENTIFY)}
    assert rows["handoff_interruptions"].owner == "mia@acme.test"  # marketing's point person
    assert rows["handoff_interruptions"].raises_gap
    assert not rows["inconsistent_process"].raises_gap
    assert rows["regular_cadence"].owner == "max@acme.test"  # the only manager
    assert rows["campaign_surprises"].answered is False
    # An item a role may answer (two sales leads) shows the role and team.
    with org.unit_of_work() as s:
        people.create_person(
            s, PersonCreate(name="Lena", email="lena@acme.test", team="sales", role="lead")
        )
    cid2 = start(org, "Q1b")
    with org.unit_of_work() as s:
        row = next(
            r
            for r in common.checklist(s, cycles.get_cycle(s, cid2), Phase.IDENTIFY)
            if r.key == "missed_conversions"
        )
    assert row.owner == "role:lead/sales"


def test_late_additions_are_not_lost(org) -> None:  # noqa: ANN001
    """A hand-made item in plan (no key) is kept next to the proposals."""
    cid = to_plan(org, regular_cadence="no")
    with org.unit_of_work() as s:
        gap = gaps.list_gaps(s, cycles.get_cycle(s, cid))[0]
        actions.add_action(
            s,
            cycles.get_cycle(s, cid),
            ActionItemCreate(gap_id=gap.id, title="Book the room", owner="lou@acme.test"),
            who(s, "lou@acme.test"),
        )
        plan.propose_actions(s, cycles.get_cycle(s, cid), D0)
        titles = [a.title for a in actions.list_actions(s, cycle_id=cid)]
    assert "Book the room" in titles and len(titles) == 2
