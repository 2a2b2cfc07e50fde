"""The domain services against a real (migrated) store, with the ``org`` fixture's people.

A refused operation runs inside ``store.unit_of_work()`` and must leave every row as it was
(``db_snapshot``), with a one-line message that says what to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from models import phases
from models.db import Store
from models.enums import (
    ActionStatus,
    AnswerKind,
    Confidence,
    GapDecision,
    GapSource,
    Phase,
    Role,
)
from models.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TransitionRefused,
)
from models.phases import carry_over, identify, plan
from models.phases import lifecycle as advance_phase
from models.playbook import load_playbook_file, parse_playbook
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdate,
    CheckInCreate,
    ChecklistAnswer,
    ChecklistItemRead,
    CycleCreate,
    GapCreate,
    GapDecide,
    GapRead,
    PersonCreate,
    RetrospectiveRecord,
    SurveyRespond,
    TeamCreate,
    parse_input,
)
from models.services import (
    actions,
    checklist,
    cycles,
    events,
    gaps,
    people,
    playbooks,
    recap,
    views,
)
from models.services.common import person_by_email
from models.tables import (
    ActionItem,
    ChecklistItem,
    Cycle,
    Event,
    Gap,
    Person,
)
from models.words import day
from tests.conftest import PROJECT, db_snapshot

HANDOFF = "sales-marketing-handoff"
SHIPPED = sorted(p.stem for p in (PROJECT / "playbooks").glob("*.yaml"))

# Real dates around today: completion times are stamped with the real clock.
TODAY = date.today()
START = TODAY - timedelta(days=7)
END = START + timedelta(days=42)
DUE = TODAY + timedelta(days=7)
LATER = END + timedelta(days=1)  # the period is over

SAM, MIA, LEE, LOU, MAX, MEG, SID = (
    "sam@acme.test",  # sales point person (starts cycles)
    "mia@acme.test",  # marketing point person
    "lee@acme.test",  # sales lead
    "lou@acme.test",  # marketing lead
    "max@acme.test",  # manager (sales)
    "meg@acme.test",  # marketing member
    "sid@acme.test",  # sales member
)


# --- fixtures and helpers ------------------------------------------------------------------


def P(s: Session, email: str) -> Person:  # noqa: N802 - reads like a name in the tests
    return person_by_email(s, email)


def C(s: Session, cycle_id: int) -> Cycle:  # noqa: N802
    return cycles.get_cycle(s, cycle_id)


def refused(
    store: Store, error: type[DomainError], match: str, call: Callable[[Session], Any]
) -> str:
    """Run ``call`` in a unit of work; it must raise ``error`` (message matching ``match``,
    one line) and leave the database exactly as it was."""
    before = db_snapshot(store)
    with pytest.raises(error) as err, store.unit_of_work() as s:
        call(s)
    message = str(err.value)
    assert re.search(match, message), message
    assert "\n" not in message and message.strip() == message
    assert db_snapshot(store) == before
    return message


def event_count(store: Store) -> int:
    with store.unit_of_work() as s:
        return s.scalar(select(func.count()).select_from(Event)) or 0


def new_events(store: Store, since: int) -> list[Event]:
    with store.unit_of_work() as s:
        return list(s.scalars(select(Event).order_by(Event.id).offset(since)).unique())


@contextmanager
def logged(store: Store, *verbs: str) -> Iterator[list[Event]]:
    """The block must append exactly these audit events (in order); yields them afterwards."""
    since = event_count(store)
    found: list[Event] = []
    yield found
    found.extend(new_events(store, since))
    assert [e.verb for e in found] == list(verbs)


def start(
    store: Store,
    playbook: str = HANDOFF,
    *,
    by: str = SAM,
    point_persons: tuple[str, ...] = (MIA,),
    **kw: Any,
) -> int:
    with store.unit_of_work() as s:
        data = CycleCreate(
            playbook=playbook,
            title=kw.pop("title", "Q1 alignment"),
            period_start=START,
            period_end=END,
            point_persons=list(point_persons),
            **kw,
        )
        return phases.start_cycle(s, data, P(s, by), today=TODAY).id


def calm(cycle: Cycle, item: ChecklistItem) -> str:
    """An answer to ``item`` that raises no gap (the opposite of its question's gap rule)."""
    if item.answer_kind is not AnswerKind.YES_NO:
        return "agreed at the sync"
    q = cycles.spec(cycle).question(item.phase, item.key)
    return (q.calm_answer if q is not None else None) or "yes"


def answer_all(s: Session, cycle_id: int, phase: Phase, by: str = SAM) -> None:
    """Answer every unanswered item of ``phase`` (a point person may answer any), each so that
    it raises no gap (an Identify answer records the gap it implies)."""
    actor = P(s, by)
    cycle = C(s, cycle_id)
    for item in checklist.list_items(s, cycle, phase):
        if item.answer is None:
            phases.answer(s, item, ChecklistAnswer(answer=calm(cycle, item)), actor)


def add_gap(s: Session, cycle_id: int, title: str = "No hand-off SLA", **kw: Any) -> Gap:
    data = GapCreate(
        title=title, category=kw.pop("category", "hand_off"), root_cause="process", **kw
    )
    return gaps.add_gap(s, C(s, cycle_id), data, P(s, LEE))[0]


def accept(s: Session, gap: Gap, by: str = LEE) -> Gap:
    return phases.decide_gap(s, gap, GapDecide(decision="accepted"), P(s, by))


def add_action(s: Session, cycle_id: int, gap: Gap | None, **kw: Any) -> ActionItem:
    kw.setdefault("title", "Agree the hand-off SLA")
    kw.setdefault("owner", SID)
    kw.setdefault("due_date", DUE)
    data = ActionItemCreate(gap_id=gap.id if gap else None, **kw)
    return actions.add_action(s, C(s, cycle_id), data, P(s, LEE))[0]


def advance(s: Session, cycle_id: int, by: str = SAM, **kw: Any) -> Cycle:
    kw.setdefault("today", TODAY)
    return cycles.advance_cycle(s, C(s, cycle_id), P(s, by), **kw)


def to_plan(store: Store, cycle_id: int) -> int:
    """Identify done: every item answered, one gap recorded and accepted. Returns the gap id."""
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        gap = accept(s, add_gap(s, cycle_id))
        advance(s, cycle_id)
        return gap.id


def to_execute(store: Store, cycle_id: int) -> tuple[int, int]:
    """Through plan with one planned action item. Returns (gap id, action id)."""
    gap_id = to_plan(store, cycle_id)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        item = add_action(s, cycle_id, gaps.get_gap(s, gap_id), counterpart=LOU)
        advance(s, cycle_id)
        return gap_id, item.id


def to_recap(store: Store, cycle_id: int) -> tuple[int, int]:
    gap_id, action_id = to_execute(store, cycle_id)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.EXECUTE)
        actions.add_checkin(
            s, actions.get_action(s, action_id), CheckInCreate(status="done"), P(s, SID)
        )
        advance(s, cycle_id)
    return gap_id, action_id


def register_yaml(store: Store, text: str) -> None:
    with store.unit_of_work() as s:
        playbooks.register(s, parse_playbook(text), hashlib.sha256(text.encode()).hexdigest(), None)


TINY = """
name: tiny
version: 1
title: Tiny
settings: {manager_signoff_required: false, cycle_length_days: 14}
phases:
  identify:
    questions:
      - {key: feedback, text: "Do reps send lead feedback?", owner: {role: member, team: marketing}}
      - {key: extra, text: "Anything else?", answer: text, required: false}
  plan: {}
  execute: {}
  recap: {}
"""


# --- starting a cycle ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_start_a_cycle_from_each_shipped_playbook(org: Store, name: str) -> None:
    spec, _ = load_playbook_file(PROJECT / "playbooks" / f"{name}.yaml")
    # the teams' first cycle: their agreement's first version is written from the playbook
    with logged(org, "cycle.started", "agreement.first_version") as log:
        cycle_id = start(org, name)
    with org.unit_of_work() as s:
        cycle = C(s, cycle_id)
        assert cycle.phase is Phase.IDENTIFY
        assert (cycle.period_start, cycle.period_end) == (START, END)
        assert {ct.team.key: ct.point_person.email for ct in cycle.teams} == {
            "sales": SAM,
            "marketing": MIA,
        }
        items = checklist.list_items(s, cycle)
        # every question of every phase, in playbook order
        assert [(i.phase, i.key) for i in items] == [(p, q.key) for p, _, q in spec.questions()]
        assert {i.phase for i in items} == {Phase.IDENTIFY, Phase.PLAN, Phase.EXECUTE, Phase.RECAP}
        expected = {
            (Role.POINT_PERSON, "sales"): SAM,
            (Role.POINT_PERSON, "marketing"): MIA,
            (Role.LEAD, "sales"): LEE,
            (Role.LEAD, "marketing"): LOU,
            (Role.MANAGER, None): MAX,  # the only manager
        }
        for phase, _, q in spec.questions():
            item = next(i for i in items if (i.phase, i.key) == (phase, q.key))
            assert item.owner is not None, q.key
            assert item.owner.email == expected[(q.owner.role, q.owner.team)], q.key
            assert item.owner_role is q.owner.role
            assert item.required is q.required and item.answer is None
    [started, first_version] = log
    assert started.actor.email == SAM == first_version.actor.email
    assert started.after["playbook"] == f"{name}@{spec.version}"
    assert started.after["point_persons"] == [SAM, MIA]


def test_a_role_held_by_several_people_stays_role_owned(org: Store) -> None:
    with org.unit_of_work() as s:
        people.create_person(
            s,
            PersonCreate(name="Mo Manager", email="mo@acme.test", team="marketing", role="manager"),
        )
    cycle_id = start(org)
    with org.unit_of_work() as s:
        item = checklist.find_item(s, C(s, cycle_id), "identify.regular_cadence")
        assert item.owner is None and item.owner_role is Role.MANAGER and item.owner_team is None
        item_id = item.id
    refused(
        org,
        Forbidden,
        r"^“Is there a regular cross-team meeting.*” is answered by a manager .*cannot answer it",
        lambda s: phases.answer(
            s, checklist.get_item(s, item_id), ChecklistAnswer(answer="no"), P(s, LEE)
        ),
    )
    with org.unit_of_work() as s:  # either manager may answer; the answerer becomes the owner
        answered = phases.answer(
            s, checklist.get_item(s, item_id), ChecklistAnswer(answer="N"), P(s, "mo@acme.test")
        ).item
        assert answered.answer == "no"
        assert answered.owner.email == "mo@acme.test"
        assert answered.answered_by.email == "mo@acme.test"


def test_the_starter_is_the_point_person_of_their_team(org: Store) -> None:
    cycle_id = start(org, point_persons=())
    with org.unit_of_work() as s:
        teams = {ct.team.key: ct.point_person for ct in C(s, cycle_id).teams}
        assert teams["sales"].email == SAM and teams["marketing"] is None


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"by": LEE}, Forbidden, r"^only point persons start cycles \(you are a lead\)$"),
        ({"playbook": "nope"}, NotFound, r"^there is no playbook 'nope'; the Playbooks page"),
        ({"playbook": f"{HANDOFF}@x"}, InvalidInput, r"bad playbook version .*use name@N"),
        ({"teams": ["sales", "ops"]}, NotFound, r"^unknown team 'ops'$"),
        ({"teams": ["sales"]}, InvalidInput, r"^an alignment cycle needs at least two teams$"),
        ({"point_persons": (LOU,)}, InvalidInput, r"^Lou Marketinglead is a lead, not a point pe"),
        ({"point_persons": ("nobody@acme.test",)}, NotFound, r"unknown person"),
        ({"previous_cycle_id": 999999}, NotFound, r"^no cycle with id 999999$"),
    ],
    ids=["lead", "playbook", "version", "team", "one-team", "lead-as-pp", "person", "previous"],
)
def test_start_refusals(org: Store, kw: dict, error: type, match: str) -> None:
    playbook = kw.pop("playbook", HANDOFF)
    by = kw.pop("by", SAM)
    pps = kw.pop("point_persons", (MIA,))

    def call(s: Session) -> None:
        data = CycleCreate(playbook=playbook, title="Q1", point_persons=list(pps), **kw)
        phases.start_cycle(s, data, P(s, by), today=TODAY)

    refused(org, error, match, call)


def test_bad_cycle_input_is_one_line(org: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_input(CycleCreate, playbook=HANDOFF, title="Q1", period_start=END, period_end=START)
    assert str(err.value) == "the end date is before the start date"
    with pytest.raises(InvalidInput, match=r"^title: must be a single line"):
        parse_input(CycleCreate, playbook=HANDOFF, title="Q1\nQ2")


def test_a_follow_up_starts_only_from_a_cycle_in_recap(org: Store) -> None:
    first = start(org)
    refused(
        org,
        InvalidInput,
        r"^“Q1 alignment” is in Identify; a follow-up cycle starts from a cycle in Recap",
        lambda s: phases.start_cycle(
            s, CycleCreate(playbook=HANDOFF, title="Q2", previous_cycle_id=first), P(s, SAM)
        ),
    )


# --- identify ------------------------------------------------------------------------------


def test_identify_gate_names_what_is_missing(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        ready = cycles.readiness(s, C(s, cycle_id), TODAY)
        assert not ready.ready and ready.next_phase is Phase.PLAN and not ready.overridable
        assert ready.blockers == [
            "10 required questions unanswered: “Are there avoidable interruptions in the "
            "MQL-to-SQL hand-of…”, “Do team members follow the hand-off process inconsistently…”, "
            "“Are there missed opportunities for conversions: qualified l…”, “Do both teams use "
            "the same written definitions of an MQL, a…”, “Is there an agreed hand-off SLA (how "
            "fast sales follows up…” and 5 more"
        ]
    message = refused(
        org,
        TransitionRefused,
        r"^the cycle cannot leave Identify yet: 10 required",
        lambda s: advance(s, cycle_id),
    )
    assert "fast sales follows up…” and 5 more" in message
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        add_gap(s, cycle_id, "No hand-off SLA")
        add_gap(s, cycle_id, "No shared dashboard", category="data_and_tools")
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == [
            "2 gaps not decided: No hand-off SLA, No shared dashboard"
        ]
    refused(org, TransitionRefused, r"2 gaps not decided", lambda s: advance(s, cycle_id))


def test_only_a_point_person_of_the_cycle_advances_it(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
    for who in (LEE, MAX, SID):
        refused(
            org,
            Forbidden,
            r"^only a point person of this cycle can advance it$",
            lambda s, who=who: advance(s, cycle_id, by=who),
        )
    refused(
        org,
        TransitionRefused,
        r"^phases advance in order: the cycle is in Identify, so the next phase is Plan, "
        r"not Execute$",
        lambda s: advance(s, cycle_id, to=Phase.EXECUTE),
    )
    with logged(org, "cycle.advanced") as log, org.unit_of_work() as s:
        assert advance(s, cycle_id, by=MIA).phase is Phase.PLAN  # either point person
    assert (log[0].actor.email, log[0].before, log[0].after) == (
        MIA,
        {"phase": "identify"},
        {"phase": "plan"},
    )


def test_answers_are_checked_and_logged(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        item_id = checklist.find_item(s, C(s, cycle_id), "identify.missed_conversions").id
        plan_item_id = checklist.find_item(s, C(s, cycle_id), "gaps_to_address").id

    def answer(ref_id: int, text: str, who: str) -> Callable[[Session], Any]:
        return lambda s: phases.answer(
            s, checklist.get_item(s, ref_id), ChecklistAnswer(answer=text), P(s, who)
        )

    refused(
        org,
        InvalidInput,
        r"^answer yes, no or unsure \(got 'maybe'\)$",
        answer(item_id, "maybe", LEE),
    )
    refused(
        org,
        Forbidden,
        r"^“Are there missed opportunities for conversions.*” is answered by Lee Saleslead",
        answer(item_id, "yes", LOU),
    )
    refused(
        org,
        InvalidInput,
        r"^“.*” is asked in Plan; the cycle is in Identify$",
        answer(plan_item_id, "all of them", LEE),
    )
    # "yes" to missed conversions raises its gap, recorded with the answer (by its author).
    verbs = ["checklist.answered", "gap.added", "checklist.answered"]
    with logged(org, *verbs) as log, org.unit_of_work() as s:
        answer(item_id, " Yes ", LEE)(s)
        revised = phases.answer(
            s,
            checklist.get_item(s, item_id),
            ChecklistAnswer(answer="unsure", note="ask ops"),
            P(s, LEE),
        ).item
        assert (revised.answer, revised.note, revised.answered_by.email) == (
            "unsure",
            "ask ops",
            LEE,
        )
    assert log[0].before["answer"] is None and log[0].after["answer"] == "yes"
    assert log[1].actor.email == LEE and log[1].after["source"] == "checklist"
    assert log[2].before["answer"] == "yes" and log[2].after["answer"] == "unsure"
    assert log[2].after["key"] == "identify.missed_conversions"


MISSED = "Missed conversion opportunities on qualified leads"  # its gap rule: "yes"


def answer_missed_conversions(store: Store, cycle_id: int, text: str, by: str = LEE) -> None:
    with store.unit_of_work() as s:
        item = checklist.find_item(s, C(s, cycle_id), "identify.missed_conversions")
        phases.answer(s, item, ChecklistAnswer(answer=text, note="seen in May"), P(s, by))


def test_an_identify_answer_records_the_gap_it_implies_once(org: Store) -> None:
    """The gap analysis is up to date the moment someone answers (no flow has to run, and the
    gate has nothing to write before it decides); giving the answer again adds nothing."""
    cycle_id = start(org)
    with logged(org, "checklist.answered", "gap.added") as log:
        answer_missed_conversions(org, cycle_id, "yes")
    with org.unit_of_work() as s:
        [gap] = gaps.list_gaps(s, C(s, cycle_id))
        assert (gap.key, gap.title, gap.source) == (
            "checklist:missed_conversions",
            MISSED,
            GapSource.CHECKLIST,
        )
        assert gap.decision is GapDecision.OPEN and gap.evidence == "seen in May"
        assert gap.reported_by.email == LEE and log[1].actor.email == LEE
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers[-1] == (
            f"1 gap not decided: {MISSED}"
        )
        gap_id = gap.id
    with logged(org, "checklist.answered"):  # the same answer again, by a point person
        answer_missed_conversions(org, cycle_id, "yes", by=SAM)
    before = db_snapshot(org)
    with org.unit_of_work() as s:  # the Identify flow's step finds nothing left to record
        cycle = C(s, cycle_id)
        assert identify.raise_gaps(s, cycle) == []
    assert db_snapshot(org) == before
    with org.unit_of_work() as s:
        assert [g.id for g in gaps.list_gaps(s, C(s, cycle_id))] == [gap_id]


def test_a_changed_answer_leaves_its_gap_for_a_lead_to_decide(org: Store) -> None:
    """As the Identify flow does: a gap is never deleted behind people's backs. Its answer
    changed back, it stays open and the gap analysis flags it; raised again, it is the same."""
    cycle_id = start(org)
    answer_missed_conversions(org, cycle_id, "yes")
    with logged(org, "checklist.answered"):
        answer_missed_conversions(org, cycle_id, "no")
    with org.unit_of_work() as s:
        [gap] = gaps.list_gaps(s, C(s, cycle_id))
        assert gap.decision is GapDecision.OPEN
        assert identify.identify_report(s, C(s, cycle_id), TODAY).stale_gaps == [MISSED]
        phases.decide_gap(s, gap, GapDecide(decision="rejected", reason="answered no"), P(s, LEE))
    with logged(org, "checklist.answered"):  # raised again: the decided gap stands
        answer_missed_conversions(org, cycle_id, "yes")
    with org.unit_of_work() as s:
        [again] = gaps.list_gaps(s, C(s, cycle_id))
        assert (again.id, again.decision) == (gap.id, GapDecision.REJECTED)


def test_answers_after_identify_record_no_gap(org: Store) -> None:
    """The gap analysis is Identify's: an Identify answer changed later (allowed) raises no new
    gap, as the Identify flow, which runs in Identify only, would not."""
    cycle_id = start(org)
    to_plan(org, cycle_id)
    with logged(org, "checklist.answered"):
        answer_missed_conversions(org, cycle_id, "yes")
    with org.unit_of_work() as s:
        assert [g.title for g in gaps.list_gaps(s, C(s, cycle_id))] == ["No hand-off SLA"]


def test_find_item_refuses_an_unknown_phase_or_key(org: Store) -> None:
    cycle_id = start(org)
    refused(
        org,
        InvalidInput,
        r"^'bogus' in 'bogus\.handoff_sla_agreed' is not a phase",
        lambda s: checklist.find_item(s, C(s, cycle_id), "bogus.handoff_sla_agreed"),
    )
    refused(
        org,
        InvalidInput,
        rf"^cycle {cycle_id} has no checklist item 'nope'$",
        lambda s: checklist.find_item(s, C(s, cycle_id), "nope"),
    )
    with org.unit_of_work() as s:
        item = checklist.find_item(s, C(s, cycle_id), "materials_needed")
        assert (item.phase, item.key) == (Phase.PLAN, "materials_needed")
        assert checklist.find_item(s, C(s, cycle_id), str(item.id)).id == item.id


def test_members_answer_the_items_they_own(org: Store) -> None:
    register_yaml(org, TINY)
    cycle_id = start(org, "tiny")
    with org.unit_of_work() as s:
        item = checklist.find_item(s, C(s, cycle_id), "feedback")
        assert item.owner.email == MEG  # the only marketing member
        item_id = item.id
    refused(
        org,
        Forbidden,
        r"^“Do reps send lead feedback\?” is answered by Meg Member",
        lambda s: phases.answer(
            s, checklist.get_item(s, item_id), ChecklistAnswer(answer="no"), P(s, SID)
        ),
    )
    with org.unit_of_work() as s:
        phases.answer(s, checklist.get_item(s, item_id), ChecklistAnswer(answer="no"), P(s, MEG))


def test_gaps_are_idempotent_by_key_and_decided_by_leads(org: Store) -> None:
    cycle_id = start(org)
    with logged(org, "gap.added") as log, org.unit_of_work() as s:
        gap, created = gaps.add_gap(
            s,
            C(s, cycle_id),
            GapCreate(
                title="MQLs wait days", category="hand_off", root_cause="process", key="wait"
            ),
            P(s, MEG),  # anyone may report a gap
        )
        again, created_again = gaps.add_gap(
            s,
            C(s, cycle_id),
            GapCreate(title="Other words", category="content", root_cause="adoption", key="wait"),
            P(s, SID),
        )
        assert created and not created_again and again.id == gap.id
        assert again.title == "MQLs wait days"  # the first report stands
        gap_id = gap.id
    assert log[0].actor.email == MEG and log[0].after["key"] == "wait"
    refused(
        org,
        Forbidden,
        r"^only leads, managers and the cycle's point persons decide gaps$",
        lambda s: phases.decide_gap(
            s, gaps.get_gap(s, gap_id), GapDecide(decision="accepted"), P(s, MEG)
        ),
    )
    with pytest.raises(InvalidInput, match=r"rejecting a gap needs a reason"):
        parse_input(GapDecide, decision="rejected")
    with logged(org, "gap.decided") as log, org.unit_of_work() as s:
        phases.decide_gap(
            s, gaps.get_gap(s, gap_id), GapDecide(decision="rejected", reason="dup"), P(s, MAX)
        )
    assert log[0].before == {"decision": "open", "decision_reason": None}
    assert log[0].after == {"decision": "rejected", "decision_reason": "dup"}


def test_a_derived_gap_key_makes_repeat_reports_idempotent(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        first = add_gap(s, cycle_id, "No hand-off SLA!")
        second = add_gap(s, cycle_id, "no hand-off   SLA")
        assert first.id == second.id and first.key == "person:no-hand-off-sla"
        assert len(gaps.list_gaps(s, C(s, cycle_id))) == 1


# --- plan ----------------------------------------------------------------------------------


def test_plan_gate_needs_a_planned_action_per_accepted_gap(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        add_action(s, cycle_id, gaps.get_gap(s, gap_id), due_date=None)  # no due date
        add_action(s, cycle_id, gaps.get_gap(s, gap_id), owner=None, title="Unowned")
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == [
            "1 accepted gap without an action item that has an owner and a due date: "
            "No hand-off SLA"
        ]
    refused(
        org,
        TransitionRefused,
        r"^the cycle cannot leave Plan yet: 1 accepted gap",
        lambda s: advance(s, cycle_id),
    )
    with org.unit_of_work() as s:
        dropped = add_action(s, cycle_id, gaps.get_gap(s, gap_id), title="Dropped")
        actions.update_action(s, dropped, ActionItemUpdate(status="dropped"), P(s, LEE))
        assert not cycles.readiness(s, C(s, cycle_id), TODAY).ready  # a dropped one doesn't count
        add_action(s, cycle_id, gaps.get_gap(s, gap_id), title="Planned")
        assert cycles.readiness(s, C(s, cycle_id), TODAY).ready
        assert advance(s, cycle_id).phase is Phase.EXECUTE


def test_gaps_added_in_plan_must_be_decided_before_execute(org: Store) -> None:
    cycle_id = start(org)
    to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        late = add_gap(s, cycle_id, "Found in plan")
        add_action(s, cycle_id, None, title="Unrelated")  # stand-alone items are allowed
        gap_ids = [g.id for g in gaps.list_gaps(s, C(s, cycle_id), GapDecision.ACCEPTED)]
        add_action(s, cycle_id, gaps.get_gap(s, gap_ids[0]))
        late_id = late.id
    refused(
        org,
        TransitionRefused,
        r"1 gap not decided: Found in plan",
        lambda s: advance(s, cycle_id),
    )
    with org.unit_of_work() as s:
        phases.decide_gap(s, gaps.get_gap(s, late_id), GapDecide(decision="deferred"), P(s, LOU))
        assert advance(s, cycle_id).phase is Phase.EXECUTE


def test_a_gap_accepted_in_plan_gets_the_playbooks_proposals_at_once(org: Store) -> None:
    """What the Plan flow would propose for it, with the decision: the gap is planned (or waits
    for a lead to assign an owner) before anyone advances, and the flow finds nothing to add."""
    cycle_id = start(org)
    to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        late_id = add_gap(s, cycle_id, "Found in plan").id  # hand_off: three templates
    created = ["action.created"] * 3
    with logged(org, "gap.decided", *created) as log, org.unit_of_work() as s:
        accept(s, gaps.get_gap(s, late_id))
    assert all(e.actor is None for e in log[1:])  # made by rule, not by the decider
    with org.unit_of_work() as s:
        made = {
            a.key: a for a in actions.list_actions(s, cycle_id=cycle_id) if late_id in a.gap_ids
        }
        owners = {k.rsplit(":", 1)[1]: a.owner.email for k, a in made.items()}
        assert owners == {
            "agree_handoff_sla": LEE,  # the sales lead
            "map_handoff_flow": MIA,  # marketing's point person
            "handoff_checklist": SAM,  # sales' point person
        }
        assert all(START <= a.due_date <= END for a in made.values())
        gap = gaps.get_gap(s, late_id)
        assert plan.propose_actions_for_gap(s, C(s, cycle_id), gap, TODAY) == []
    with logged(org, "gap.decided"), org.unit_of_work() as s:  # accepted again: nothing new
        accept(s, gaps.get_gap(s, late_id), by=LOU)


def test_a_gap_with_unfinished_action_items_is_neither_rejected_nor_deferred(org: Store) -> None:
    """Its items would be orphaned work: they are dropped or finished first."""
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        gap = gaps.get_gap(s, gap_id)
        item_ids = [add_action(s, cycle_id, gap, title=t).id for t in ("Draft", "Publish")]

    def decide(decision: str, reason: str | None = None) -> Callable[[Session], Any]:
        data = GapDecide(decision=decision, reason=reason)
        return lambda s: phases.decide_gap(s, gaps.get_gap(s, gap_id), data, P(s, LEE))

    for decision, verb in (("deferred", "defer"), ("rejected", "reject")):
        refused(
            org,
            InvalidInput,
            rf"^gap {gap_id} has 2 unfinished action items: drop or finish them \(or unlink the "
            r"gap\) first, "
            rf"then {verb} the gap$",
            decide(decision, "not ours after all"),
        )
    with org.unit_of_work() as s:
        decide("accepted")(s)  # accepting it again stays allowed
        lee = P(s, LEE)
        dropped = ActionItemUpdate(status="dropped")
        actions.update_action(s, actions.get_action(s, item_ids[0]), dropped, lee)
    refused(org, InvalidInput, r"has 1 unfinished action item:", decide("deferred"))
    with org.unit_of_work() as s:
        done = ActionItemUpdate(status="done")
        actions.update_action(s, actions.get_action(s, item_ids[1]), done, P(s, LEE))
        assert decide("deferred")(s).decision is GapDecision.DEFERRED


def test_plan_needs_a_point_person_on_each_team(org: Store) -> None:
    cycle_id = start(org, point_persons=())
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        add_action(s, cycle_id, gaps.get_gap(s, gap_id))
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == [
            "1 team without a point person: Marketing"
        ]
    refused(
        org,
        TransitionRefused,
        r"1 team without a point person: Marketing",
        lambda s: advance(s, cycle_id),
    )
    with org.unit_of_work() as s:
        cycles.assign_point_person(s, C(s, cycle_id), "marketing", MIA, P(s, MAX))
        assert advance(s, cycle_id, by=MIA).phase is Phase.EXECUTE


def test_assigning_a_point_person_resolves_role_owned_items(org: Store) -> None:
    with org.unit_of_work() as s:  # two marketing point persons: the playbook can't pick one
        people.create_person(
            s,
            PersonCreate(name="Pia", email="pia@acme.test", team="marketing", role="point_person"),
        )
    cycle_id = start(org, point_persons=())
    with org.unit_of_work() as s:
        cycle = C(s, cycle_id)
        owned = [
            i
            for i in checklist.list_items(s, cycle)
            if i.owner_role is Role.POINT_PERSON
            and i.owner_team
            and i.owner_team.key == "marketing"
        ]
        assert owned and all(i.owner is None for i in owned)
        # answered items keep their answerer as owner
        phases.answer(s, owned[0], ChecklistAnswer(answer="yes"), P(s, "pia@acme.test"))
        keys = [i.key for i in owned]
    refused(
        org,
        Forbidden,
        r"^only the cycle's point persons, leads and managers name point persons$",
        lambda s: cycles.assign_point_person(s, C(s, cycle_id), "marketing", MIA, P(s, MEG)),
    )
    refused(
        org,
        InvalidInput,
        r"^sid@acme\.test is not on team 'marketing'$",
        lambda s: cycles.assign_point_person(s, C(s, cycle_id), "marketing", SID, P(s, SAM)),
    )
    with logged(org, "cycle.point_person_set") as log, org.unit_of_work() as s:
        cycles.assign_point_person(s, C(s, cycle_id), "marketing", MIA, P(s, SAM))
        items = {i.key: i for i in checklist.list_items(s, C(s, cycle_id)) if i.key in keys}
        assert items[keys[0]].owner.email == "pia@acme.test"
        assert {items[k].owner.email for k in keys[1:]} == {MIA}
    assert log[0].before == {"team": "marketing", "point_person": None}
    assert log[0].after == {
        "team": "marketing",
        "point_person": MIA,
        "checklist_items": len(keys) - 1,
    }


def test_only_leads_and_managers_create_action_items(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    for who in (SAM, SID):
        refused(
            org,
            Forbidden,
            r"^only leads and managers can create or assign action items \(you are a ",
            lambda s, who=who: actions.add_action(
                s, C(s, cycle_id), ActionItemCreate(gap_id=gap_id, title="x"), P(s, who)
            ),
        )
    with logged(org, "action.created") as log, org.unit_of_work() as s:
        item, created = actions.add_action(
            s,
            C(s, cycle_id),
            ActionItemCreate(
                gap_id=gap_id, title="Agree SLA", owner=SID, counterpart=MEG, due_date=DUE
            ),
            P(s, MAX),
        )
        assert created and item.assigned_by.email == MAX and item.counterpart.email == MEG
    assert log[0].after == {
        "title": "Agree SLA",
        "priority": "medium",
        "due_date": DUE.isoformat(),
        "gap_ids": [gap_id],
        "key": None,
        "owner": SID,
    }


def test_action_items_address_accepted_gaps_of_the_same_cycle(org: Store) -> None:
    cycle_id = start(org)
    other_id = start(org, title="Other")
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        accepted = accept(s, add_gap(s, cycle_id, "Accepted"))
        deferred = phases.decide_gap(
            s, add_gap(s, cycle_id, "Deferred"), GapDecide(decision="deferred"), P(s, LEE)
        )
        other_gap = add_gap(s, other_id, "Elsewhere")
        advance(s, cycle_id)
        ids = accepted.id, deferred.id, other_gap.id

    def create(gap_id: int) -> Callable[[Session], Any]:
        return lambda s: add_action(s, cycle_id, gaps.get_gap(s, gap_id))

    refused(
        org,
        InvalidInput,
        r"^the gap “Deferred” is deferred: action items address accepted gaps$",
        create(ids[1]),
    )
    refused(
        org,
        InvalidInput,
        r"^that gap is not one of this cycle's$",  # another cycle's: as if missing
        create(ids[2]),
    )
    refused(  # a missing gap: the very same answer as another cycle's
        org,
        InvalidInput,
        r"^that gap is not one of this cycle's$",
        lambda s: actions.add_action(
            s, C(s, cycle_id), ActionItemCreate(gap_id=999999, title="x"), P(s, LEE)
        ),
    )
    refused(
        org,
        InvalidInput,
        r"^action items are planned in Plan or Execute; this cycle is in Identify$",
        lambda s: add_action(s, other_id, None),
    )
    with org.unit_of_work() as s:
        create(ids[0])(s)


def test_the_counterpart_is_on_the_other_team(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    refused(
        org,
        InvalidInput,
        r"^the counterpart \(Lee Saleslead\) must be on the other team, not on Sales too$",
        lambda s: add_action(s, cycle_id, gaps.get_gap(s, gap_id), owner=SID, counterpart=LEE),
    )
    with org.unit_of_work() as s:
        item_id = add_action(s, cycle_id, gaps.get_gap(s, gap_id), owner=SID, counterpart=MEG).id
    refused(
        org,
        InvalidInput,
        r"^the counterpart \(Mia Marketing\) must be on the other team, not on Marketing too$",
        lambda s: actions.assign_action(
            s,
            actions.get_action(s, item_id),
            ActionItemAssign(owner=LOU, counterpart=MIA),
            P(s, LEE),
        ),
    )
    # Reassigning to the counterpart's team drops the counterpart, and the log says so.
    with logged(org, "action.reassigned") as log, org.unit_of_work() as s:
        item = actions.assign_action(
            s, actions.get_action(s, item_id), ActionItemAssign(owner=LOU), P(s, MAX)
        )
        assert item.owner.email == LOU and item.counterpart is None
        assert item.assigned_by.email == MAX
    assert log[0].before == {"owner": SID, "counterpart": MEG}
    assert log[0].after == {"owner": LOU, "counterpart": None}


def test_only_leads_and_managers_assign_or_reassign(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    for who in (SAM, SID):
        refused(
            org,
            Forbidden,
            r"^only leads and managers can assign or reassign action items",
            lambda s, who=who: actions.assign_action(
                s, actions.get_action(s, item_id), ActionItemAssign(owner=LEE), P(s, who)
            ),
        )


def test_due_dates_stay_inside_the_cycle_period(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    for bad in (START - timedelta(days=1), LATER, date(END.year + 1, END.month, END.day)):
        refused(
            org,
            InvalidInput,
            rf"^the due date {day(bad)} is outside the cycle's period "
            rf"\({day(START)} to {day(END)}\)$",
            lambda s, bad=bad: add_action(s, cycle_id, gaps.get_gap(s, gap_id), due_date=bad),
        )
    refused(
        org,
        InvalidInput,
        r"^the follow-up date .* is outside the cycle's period",
        lambda s: add_action(
            s, cycle_id, gaps.get_gap(s, gap_id), due_date=None, follow_up_date=LATER
        ),
    )
    with org.unit_of_work() as s:
        first = add_action(s, cycle_id, gaps.get_gap(s, gap_id), due_date=START)
        last = add_action(s, cycle_id, gaps.get_gap(s, gap_id), due_date=END, title="Last")
        assert (first.due_date, last.due_date) == (START, END)
        # made by rule (a template's due_in_days): moved into the period instead
        templated, _ = actions.add_action(
            s,
            C(s, cycle_id),
            ActionItemCreate(title="Template", key="tpl:x", due_date=LATER, follow_up_date=LATER),
            None,
        )
        assert (templated.due_date, templated.follow_up_date) == (END, END)
        item_id = first.id
    refused(
        org,
        InvalidInput,
        r"^the due date .* is outside the cycle's period",
        lambda s: actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(due_date=LATER), P(s, LEE)
        ),
    )
    refused(
        org,
        InvalidInput,
        r"^the due date .* is outside the cycle's period",
        lambda s: actions.assign_action(
            s,
            actions.get_action(s, item_id),
            ActionItemAssign(owner=SID, due_date=LATER),
            P(s, LEE),
        ),
    )


def test_only_leads_and_managers_move_due_dates(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)  # owned by sid, a sales member

    def move(who: str, day: date) -> Callable[[Session], Any]:
        return lambda s: actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(due_date=day), P(s, who)
        )

    for who, role in ((SID, "member"), (SAM, "point person")):
        refused(
            org,
            Forbidden,
            rf"^only leads and managers move due dates \(you are a {role}\)$",
            move(who, DUE + timedelta(days=1)),
        )
    with logged(org, "action.updated", "action.updated") as log:
        with org.unit_of_work() as s:
            move(LEE, DUE + timedelta(days=1))(s)
        with org.unit_of_work() as s:
            move(MAX, DUE + timedelta(days=2))(s)
    assert log[0].before == {"due_date": DUE.isoformat()}
    assert log[1].after == {"due_date": (DUE + timedelta(days=2)).isoformat()}


def test_members_update_only_the_items_they_own(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)  # owned by sid

    def update(who: str, **kw: Any) -> Callable[[Session], Any]:
        return lambda s: actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(**kw), P(s, who)
        )

    refused(
        org,
        Forbidden,
        rf"^action item {item_id} is not yours to update$",
        update(MEG, status="done"),
    )
    refused(org, InvalidInput, r"^nothing to update$", update(SID))
    refused(
        org,
        InvalidInput,
        r"^the follow-up date is after the due date$",
        update(SID, follow_up_date=DUE + timedelta(days=1)),
    )
    with logged(org, "action.updated") as log, org.unit_of_work() as s:
        item = update(SID, status="in_progress", confidence="at_risk", title=None)(s)
        assert (item.status, item.confidence, item.title) == (
            ActionStatus.IN_PROGRESS,
            Confidence.AT_RISK,
            "Agree the hand-off SLA",
        )
    assert log[0].actor.email == SID
    assert log[0].before == {"status": "open", "confidence": "on_track"}
    assert log[0].after == {"status": "in_progress", "confidence": "at_risk"}
    with logged(org), org.unit_of_work() as s:  # no change, no event
        update(SID, status="in_progress")(s)


def test_check_ins_move_the_item_and_are_idempotent_by_key(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    refused(
        org,
        Forbidden,
        rf"^action item {item_id} is not yours to check in on$",
        lambda s: actions.add_checkin(
            s, actions.get_action(s, item_id), CheckInCreate(), P(s, MEG)
        ),
    )
    with logged(org, "checkin.added") as log, org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        first, created = actions.add_checkin(
            s, item, CheckInCreate(key="week-1", status="blocked", confidence="off_track"), None
        )
        again, created_again = actions.add_checkin(
            s, item, CheckInCreate(key="week-1", status="done"), None
        )
        assert created and not created_again and again.id == first.id
        assert (item.status, item.confidence) == (ActionStatus.BLOCKED, Confidence.OFF_TRACK)
        assert len(actions.list_checkins(s, item)) == 1
    assert log[0].actor is None
    assert log[0].before == {"status": "open", "confidence": "on_track"}
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        actions.add_checkin(s, item, CheckInCreate(status="done", progress=100), P(s, SID))
        assert item.status is ActionStatus.DONE and item.completed_at is not None


def test_add_action_is_idempotent_by_key(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with logged(org, "action.created"), org.unit_of_work() as s:
        data = ActionItemCreate(gap_id=gap_id, title="Agree SLA", key="tpl:agree_sla", due_date=DUE)
        first, created = actions.add_action(s, C(s, cycle_id), data, None)
        again, created_again = actions.add_action(s, C(s, cycle_id), data, None)
        assert created and not created_again and first.id == again.id
        assert first.assigned_by is None


# --- execute -------------------------------------------------------------------------------


def test_execute_waits_for_unfinished_work_unless_overridden(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.EXECUTE)
        ready = cycles.readiness(s, C(s, cycle_id), TODAY)
        assert ready.overridable and ready.blockers == [
            "1 action item neither done nor dropped: Agree the hand-off SLA "
            f"(the period runs to {END:%-d %b %Y})"
        ]
        assert cycles.readiness(s, C(s, cycle_id), LATER).ready  # once the period is over
    refused(
        org,
        TransitionRefused,
        r"^the cycle cannot leave Execute yet: 1 action item",
        lambda s: advance(s, cycle_id),
    )
    refused(
        org,
        Forbidden,
        r"^only a point person",
        lambda s: advance(s, cycle_id, by=LEE, override_reason="manager said so"),
    )
    with logged(org, "cycle.advanced") as log, org.unit_of_work() as s:
        advance(s, cycle_id, override_reason="carried into the next cycle")
    assert log[0].after == {
        "phase": "recap",
        "override_reason": "carried into the next cycle",
        "overridden": ["Agree the hand-off SLA"],
    }


def test_execute_ends_without_override_once_the_period_is_over(org: Store) -> None:
    cycle_id = start(org)
    to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.EXECUTE)
    with logged(org, "cycle.advanced") as log, org.unit_of_work() as s:
        assert advance(s, cycle_id, today=LATER).phase is Phase.RECAP
    assert log[0].after == {"phase": "recap"}  # nothing was overridden


# --- recap ---------------------------------------------------------------------------------


def test_closing_needs_a_retrospective_and_a_managers_signoff(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.RECAP)
    refused(
        org,
        TransitionRefused,
        r"^the cycle cannot leave Recap yet: no retrospective recorded$",
        lambda s: advance(s, cycle_id),
    )
    refused(
        org,
        Forbidden,
        r"^only a point person of this cycle can record the retrospective$",
        lambda s: recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, MAX)),
    )
    with logged(org, "retro.recorded"), org.unit_of_work() as s:
        recap.record_retrospective(
            s, C(s, cycle_id), RetrospectiveRecord(improvements=["SLA agreed"]), P(s, SAM)
        )
    refused(
        org,
        TransitionRefused,
        r"^the cycle cannot leave Recap yet: the recap is not signed off by a manager$",
        lambda s: advance(s, cycle_id),
    )
    refused(
        org,
        Forbidden,
        r"^only managers can sign off a recap \(you are a lead\)$",
        lambda s: recap.sign_off(s, C(s, cycle_id), P(s, LEE)),
    )
    with logged(org, "retro.signed_off", "cycle.advanced") as log, org.unit_of_work() as s:
        recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        closed = advance(s, cycle_id, by=MIA)
        assert closed.phase is Phase.CLOSED and closed.closed_at is not None
    assert log[0].actor.email == MAX and log[0].after == {"signed_off_by": MAX}
    refused(org, TransitionRefused, r"^the cycle is closed$", lambda s: advance(s, cycle_id))
    refused(
        org,
        InvalidInput,
        r"^the cycle is closed: its questions cannot be answered any more$",
        lambda s: phases.answer(
            s,
            checklist.find_item(s, C(s, cycle_id), "recap.growth_areas"),
            ChecklistAnswer(answer="more"),
            P(s, SAM),
        ),
    )


def test_revising_the_retrospective_clears_the_signoff(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(summary="v1"), P(s, SAM))
        recap.sign_off(s, C(s, cycle_id), P(s, MAX))
    refused(
        org,
        InvalidInput,
        rf"^the recap of cycle {cycle_id} is already signed off$",
        lambda s: recap.sign_off(s, C(s, cycle_id), P(s, MAX)),
    )
    with logged(org, "retro.revised") as log, org.unit_of_work() as s:
        retro = recap.record_retrospective(
            s, C(s, cycle_id), RetrospectiveRecord(summary="v2"), P(s, MIA)
        )
        assert retro.signed_off_at is None and retro.signed_off_by is None
        assert not cycles.readiness(s, C(s, cycle_id), TODAY).ready
    assert log[0].before["summary"] == "v1"
    assert log[0].after["summary"] == "v2" and log[0].after["signoff_cleared"] is True


def test_a_playbook_may_close_without_signoff(org: Store) -> None:
    register_yaml(org, TINY)
    cycle_id = start(org, "tiny")
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY, by=MIA)
        for _ in range(3):
            advance(s, cycle_id)
        assert C(s, cycle_id).phase is Phase.RECAP
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        assert advance(s, cycle_id).phase is Phase.CLOSED


def test_retrospective_facts_count_what_happened(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    yesterday = TODAY - timedelta(days=1)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        gap = gaps.get_gap(s, gap_id)
        # "other": no playbook template, so accepting it in Plan proposes no action items
        late_gap = accept(s, add_gap(s, cycle_id, "Dashboards differ", category="other"))
        deferred = phases.decide_gap(
            s, add_gap(s, cycle_id, "Later"), GapDecide(decision="deferred"), P(s, LEE)
        )
        rejected = phases.decide_gap(
            s, add_gap(s, cycle_id, "Nope"), GapDecide(decision="rejected", reason="no"), P(s, LEE)
        )
        on_time = add_action(s, cycle_id, gap, title="On time")  # done before its due date
        done_late = add_action(s, cycle_id, late_gap, title="Done late", due_date=START)
        overdue = add_action(s, cycle_id, gap, title="Overdue", due_date=yesterday)
        dropped = add_action(s, cycle_id, gap, title="Dropped", due_date=START)
        add_action(s, cycle_id, gap, title="Still open")
        advance(s, cycle_id)
        lee = P(s, LEE)
        for item, status in ((on_time, "done"), (done_late, "done"), (dropped, "dropped")):
            actions.update_action(s, item, ActionItemUpdate(status=status), lee)
        del overdue, deferred, rejected
    with org.unit_of_work() as s:
        facts = recap.cycle_facts(s, C(s, cycle_id), TODAY)
    assert facts["actions_total"] == 5
    assert (facts["actions_done"], facts["actions_dropped"], facts["actions_unfinished"]) == (
        2,
        1,
        2,
    )
    assert facts["actions_late"] == 2
    assert sorted(facts["late_actions"]) == ["Done late", "Overdue"]
    assert facts["gaps_total"] == 4
    assert facts["gaps_by_decision"] == {"accepted": 2, "deferred": 1, "rejected": 1}
    # the hand-off gap has a done item; the dashboard gap too (late); "Later" was deferred
    assert facts["unresolved_gaps"] == ["Later"]
    # done late is late, not a growth area; still open past its due date is
    assert facts["growth_areas"] == ["Later", "still open past its due date: Overdue"]


def test_an_accepted_gap_without_done_work_is_unresolved(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)  # its one item is done
    with org.unit_of_work() as s:
        assert recap.cycle_facts(s, C(s, cycle_id), TODAY)["unresolved_gaps"] == []
    other = start(org, title="Other")
    _, item_id = to_execute(org, other)
    with org.unit_of_work() as s:
        actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(status="dropped"), P(s, LEE)
        )
        facts = recap.cycle_facts(s, C(s, other), TODAY)
        assert facts["unresolved_gaps"] == ["No hand-off SLA"]
        assert facts["actions_late"] == 0  # a dropped item is never late


# --- survey --------------------------------------------------------------------------------


def test_response_ids_do_not_give_away_the_order_of_answers(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        ids = [
            recap.respond(s, C(s, cycle_id), SurveyRespond(score=3, anonymous=True), P(s, who)).id
            for who in (SAM, MIA, LEE, LOU, MAX, MEG, SID)
        ]
    # Sequential ids plus the audit log's "who answered when" would identify each answer.
    assert ids != list(range(ids[0], ids[0] + len(ids)))
    assert len(set(ids)) == len(ids)


def test_the_survey_is_open_in_recap_only(org: Store) -> None:
    cycle_id = start(org)
    refused(
        org,
        InvalidInput,
        r"^the survey is open in Recap; this cycle is in Identify$",
        lambda s: recap.respond(s, C(s, cycle_id), SurveyRespond(score=3), P(s, SID)),
    )
    with pytest.raises(InvalidInput, match=r"^score: Input should be less than or equal to 5$"):
        parse_input(SurveyRespond, score=6)


# --- carry-over ----------------------------------------------------------------------------


def test_a_follow_up_cycle_carries_over_unfinished_work(org: Store) -> None:
    first = start(org)
    gap_id = to_plan(org, first)
    with org.unit_of_work() as s:
        answer_all(s, first, Phase.PLAN)
        gap = gaps.get_gap(s, gap_id)
        done = add_action(s, first, gap, title="Done")
        blocked = add_action(s, first, gap, title="Blocked", counterpart=MEG)
        dropped = add_action(s, first, gap, title="Dropped")
        opened = add_action(s, first, gap, title="Open", priority="high")
        advance(s, first)
        lee = P(s, LEE)
        actions.update_action(s, done, ActionItemUpdate(status="done"), lee)
        actions.update_action(s, blocked, ActionItemUpdate(status="blocked"), lee)
        actions.update_action(s, dropped, ActionItemUpdate(status="dropped"), lee)
        answer_all(s, first, Phase.EXECUTE)
        advance(s, first, override_reason="two items go to the next cycle")
        ids = {"blocked": blocked.id, "open": opened.id}
    # each copy, then its original finished in the first cycle: carried over
    moved = ("action.carried_over", "action.updated")
    with logged(org, "cycle.started", "gap.carried_over", *moved, *moved) as log:
        second = start(org, previous_cycle_id=first, title="Q2")
    assert log[2].after == {
        "title": "Blocked",
        "from_cycle": first,
        "from_action": ids["blocked"],
        "owner": SID,
        "due_date": DUE.isoformat(),  # in the new period: kept
        "gaps": ["No hand-off SLA"],
    }
    assert (log[3].object_id, log[3].cycle_id) == (ids["blocked"], first)
    assert log[3].before == {"status": "blocked"}
    assert log[3].after == {"status": "carried_over", "reason": "carried over to “Q2”"}
    with org.unit_of_work() as s:
        assert C(s, second).previous_cycle_id == first
        carried = actions.list_actions(s, cycle_id=second)
        assert {a.title: a.carried_from_id for a in carried} == {
            "Blocked": ids["blocked"],
            "Open": ids["open"],
        }
        by_title = {a.title: a for a in carried}
        assert by_title["Blocked"].status is ActionStatus.BLOCKED
        assert by_title["Blocked"].counterpart.email == MEG
        assert by_title["Open"].status is ActionStatus.OPEN
        assert by_title["Open"].priority.value == "high" and by_title["Open"].owner.email == SID
        assert all([g.title for g in a.gaps] == ["No hand-off SLA"] for a in carried)
        assert all(a.due_date == DUE and a.gaps[0].cycle_id == second for a in carried)
        originals = [actions.get_action(s, i) for i in ids.values()]
        assert {a.status for a in originals} == {ActionStatus.CARRIED_OVER}
        # a second carry-over adds nothing
        assert carry_over.carry_over(s, C(s, first), C(s, second), P(s, SAM)) == 0
        assert len(actions.list_actions(s, cycle_id=second)) == 2


def in_recap_with_open_work(store: Store) -> int:
    """A cycle in recap with one action item still open (carried into a follow-up)."""
    cycle_id = start(store)
    gap_id = to_plan(store, cycle_id)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        add_action(s, cycle_id, gaps.get_gap(s, gap_id), title="Still open")
        advance(s, cycle_id)
        answer_all(s, cycle_id, Phase.EXECUTE)
        advance(s, cycle_id, override_reason="it goes to the next cycle")
    return cycle_id


def follow_up(s: Session, previous: int, title: str) -> Cycle:
    data = CycleCreate(playbook=HANDOFF, title=title, previous_cycle_id=previous)
    return phases.start_cycle(s, data, P(s, SAM), today=TODAY)


def test_a_cycle_has_one_follow_up(org: Store) -> None:
    """A second follow-up would carry the same open items again: refused, naming the first;
    closing the recap with a follow-up reuses it."""
    first = in_recap_with_open_work(org)
    with org.unit_of_work() as s:
        second = follow_up(s, first, "Q2").id
    refused(
        org,
        Conflict,
        rf"^cycle {first} already has a follow-up: cycle {second}, where its open action items "
        "are carried over$",
        lambda s: follow_up(s, first, "Q2 again"),
    )
    with org.unit_of_work() as s:
        reused, carried = advance_phase.start_follow_up(s, C(s, first), P(s, SAM), "Q2 too", TODAY)
        assert (reused.id, carried) == (second, 0)
        assert [c.id for c in carry_over.follow_up_cycles(s, C(s, first))] == [second]
        assert [a.title for a in actions.list_actions(s, cycle_id=second)] == ["Still open"]


def test_two_follow_ups_started_at_the_same_moment_make_one(org: Store) -> None:
    """A form sent twice: the second request looked before the first one committed, so the
    check alone cannot see it; the previous cycle's version does, and refuses the second."""
    first = in_recap_with_open_work(org)
    with pytest.raises(Conflict) as err, org.unit_of_work() as loser:
        real = loser.scalar

        def check_then_the_other_commits(stmt: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(stmt, *args, **kwargs)
            if "WHERE cycles.previous_cycle_id" in str(stmt):  # "has it a follow-up?": not yet
                loser.scalar = real  # type: ignore[method-assign]
                with org.unit_of_work() as winner:
                    follow_up(winner, first, "Q2")
            return result

        loser.scalar = check_then_the_other_commits  # type: ignore[method-assign]
        follow_up(loser, first, "Q2 (sent twice)")
    assert "\n" not in str(err.value) and "reload and try again" in str(err.value)
    with org.unit_of_work() as s:
        [only] = carry_over.follow_up_cycles(s, C(s, first))
        assert only.title == "Q2"
        assert [a.title for a in actions.list_actions(s, cycle_id=only.id)] == ["Still open"]


# --- the board -----------------------------------------------------------------------------


def test_the_board_counts_progress_and_risk(org: Store) -> None:
    busy = start(org, title="Busy")
    start(org, title="Quiet")
    gap_id = to_plan(org, busy)
    yesterday = TODAY - timedelta(days=1)
    with org.unit_of_work() as s:
        gap = gaps.get_gap(s, gap_id)
        add_gap(s, busy, "Still open")
        overdue = add_action(s, busy, gap, title="Overdue", due_date=yesterday)
        at_risk = add_action(s, busy, gap, title="At risk")
        off_track = add_action(s, busy, gap, title="Off track", due_date=yesterday)
        done_late = add_action(s, busy, gap, title="Done", due_date=yesterday)
        dropped_risky = add_action(s, busy, gap, title="Dropped")
        lee = P(s, LEE)
        actions.update_action(s, at_risk, ActionItemUpdate(confidence="at_risk"), lee)
        actions.update_action(s, off_track, ActionItemUpdate(confidence="off_track"), lee)
        actions.update_action(s, done_late, ActionItemUpdate(status="done"), lee)
        actions.update_action(
            s, dropped_risky, ActionItemUpdate(status="dropped", confidence="at_risk"), lee
        )
        del overdue
    with org.unit_of_work() as s:
        rows, total = views.board(s, None, today=TODAY)
        board = {row.title: row for row in rows}
        assert [r.title for r in rows] == ["Quiet", "Busy"] and total == 2
        in_plan, _ = views.board(s, None, phase=Phase.PLAN, today=TODAY)
        counts_before = views.counts(s, C(s, busy), TODAY)
    row = board["Busy"]
    assert (row.phase, row.playbook) == (Phase.PLAN, f"{HANDOFF}@4")
    assert (row.actions_total, row.actions_finished) == (5, 2)
    assert (row.actions_done, row.actions_dropped) == (1, 1)
    assert row.progress == 25  # one of the four still planned (a dropped item is not progress)
    assert row.actions_overdue == 2  # "Overdue" and "Off track"; done late is not overdue
    assert row.actions_at_risk == 1  # a dropped item is no risk
    assert row.actions_off_track == 1
    assert (row.gaps_total, row.gaps_open) == (2, 1)
    assert board["Quiet"].actions_total == 0 and board["Quiet"].gaps_total == 0
    assert [r.id for r in in_plan] == [busy]
    assert (row.risk, counts_before.risk) == (Confidence.OFF_TRACK, Confidence.OFF_TRACK)
    assert (counts_before.actions_at_risk, counts_before.actions_off_track) == (1, 1)
    # closed, the cycle has nothing due and nothing at risk: its unfinished items are left
    # unfinished, not overdue, at risk nor off track, on the board and on its own page alike
    with org.unit_of_work() as s:
        C(s, busy).phase = Phase.CLOSED
    with org.unit_of_work() as s:
        [row], _ = views.board(s, None, phase=Phase.CLOSED, today=TODAY)
        counts = views.counts(s, C(s, busy), TODAY)
    assert (row.actions_overdue, counts.actions_overdue) == (0, 0)
    assert (row.actions_at_risk, counts.actions_at_risk) == (0, 0)
    assert (row.actions_off_track, counts.actions_off_track) == (0, 0)
    assert (row.risk, counts.risk) == (Confidence.ON_TRACK, Confidence.ON_TRACK)
    assert (row.actions_unfinished, counts.actions_unfinished) == (3, 3)


def count_queries(store: Store, call: Callable[[Session], Any]) -> int:
    count = 0

    def counter(*_args: Any) -> None:
        nonlocal count
        count += 1

    with store.unit_of_work() as s:
        event.listen(store.engine, "before_cursor_execute", counter)
        try:
            call(s)
        finally:
            event.remove(store.engine, "before_cursor_execute", counter)
    return count


def test_lists_do_not_query_per_row(org: Store) -> None:
    """A list (and its Read models) costs the same number of queries for 1 row or many."""

    # Different people on each row, so that lazy loads could not hide in the identity map.
    reporters, deciders = (SID, MEG, LEE, LOU, MAX), (LEE, LOU, MAX, SAM, MIA)
    creators, counterparts = (LEE, LOU, MAX, LEE, LOU), (MEG, LOU, MIA, MEG, LOU)

    def cycle_with(n: int) -> int:
        cycle_id = start(org, title=f"{n} rows")
        with org.unit_of_work() as s:
            answer_all(s, cycle_id, Phase.IDENTIFY)
            found = []
            for k in range(n):
                data = GapCreate(title=f"Gap {k}", category="hand_off", root_cause="process")
                gap, _ = gaps.add_gap(s, C(s, cycle_id), data, P(s, reporters[k]))
                found.append(accept(s, gap, by=deciders[k]))
            advance(s, cycle_id)
            for k in range(n):
                data = ActionItemCreate(
                    gap_id=found[k].id, title=f"Act {k}", owner=SID, counterpart=counterparts[k]
                )
                actions.add_action(s, C(s, cycle_id), data, P(s, creators[k]))
        return cycle_id

    def lists(cycle_id: int) -> Callable[[Session], None]:
        def call(s: Session) -> None:
            cycle = C(s, cycle_id)
            for a in actions.list_actions(s, cycle_id=cycle_id):
                ActionItemRead.model_validate(a)
            for g in gaps.list_gaps(s, cycle):
                GapRead.model_validate(g)
            for i in checklist.list_items(s, cycle):
                ChecklistItemRead.model_validate(i)

        return call

    def board(s: Session) -> None:
        views.board(s, None, today=TODAY)

    small = cycle_with(1)
    one_cycle = count_queries(org, board)
    large = cycle_with(5)
    assert count_queries(org, lists(small)) == count_queries(org, lists(large))
    assert count_queries(org, board) == one_cycle


def test_every_write_is_in_the_audit_log(org: Store) -> None:
    """A whole cycle: each write appends its event, with the actor and before/after."""
    since = event_count(org)
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.RECAP)
        for who in (SID, MEG, LEE):  # three answers: the first batch is published
            recap.respond(s, C(s, cycle_id), SurveyRespond(score=4), P(s, who))
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        advance(s, cycle_id)
    log = new_events(org, since)
    verbs = [e.verb for e in log]
    with org.unit_of_work() as s:
        answered = s.scalar(
            select(func.count())
            .select_from(ChecklistItem)
            .where(ChecklistItem.cycle_id == cycle_id, ChecklistItem.answer.is_not(None))
        )
    assert verbs.count("checklist.answered") == answered
    assert [v for v in verbs if v != "checklist.answered"] == [
        "cycle.started",
        "agreement.first_version",
        "gap.added",
        "gap.decided",
        "cycle.advanced",
        "action.created",
        "cycle.advanced",
        "checkin.added",
        "cycle.advanced",
        "survey.published",
        "retro.recorded",
        "retro.signed_off",
        "cycle.advanced",
    ]
    # the survey's batch is published by rule: who took part, in name order, not who said what
    assert all((e.actor is None) is (e.verb == "survey.published") for e in log)
    assert all(e.cycle_id == cycle_id and e.after for e in log)
    with org.unit_of_work() as s:
        assert [e.id for e in events.list_events(s, cycle_id=cycle_id, limit=None)] == [
            e.id for e in log
        ]


def test_loading_a_playbook_is_logged_once(org: Store) -> None:
    with logged(org, "playbook.loaded") as log:
        register_yaml(org, TINY)
        register_yaml(org, TINY)  # same content again: nothing new
    assert log[0].after["name"] == "tiny" and log[0].after["version"] == 1
    refused(
        org,
        InvalidInput,
        r"version 1 of playbook 'tiny' is already loaded with different content",
        lambda s: playbooks.register(
            s, parse_playbook(TINY.replace("Tiny", "Tiny!")), "other-hash", None
        ),
    )


def test_a_cycle_is_started_by_one_of_its_teams_with_point_persons_in_the_slots(
    org: Store,
) -> None:
    """Only a point person of one of the cycle's teams starts it, and each team has one point
    person, who holds that role."""
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        for name, email, team in (
            ("Pam Marketing", "pam@acme.test", "marketing"),
            ("Pat Support", "pat@acme.test", "support"),
        ):
            people.create_person(
                s, PersonCreate(name=name, email=email, team=team, role="point_person")
            )
    refused(
        org,
        InvalidInput,
        r"^two point persons named for team 'marketing'$",
        lambda s: phases.start_cycle(
            s,
            CycleCreate(playbook=HANDOFF, title="x", point_persons=[MIA, "pam@acme.test"]),
            P(s, SAM),
        ),
    )
    refused(
        org,
        Forbidden,
        r"^you start cycles your own team takes part in; Support is not one of this cycle's",
        lambda s: phases.start_cycle(
            s, CycleCreate(playbook=HANDOFF, title="x", point_persons=[MIA]), P(s, "pat@acme.test")
        ),
    )
    cycle_id = start(org)
    refused(
        org,
        InvalidInput,
        r"^Lou Marketinglead is a lead, not a point person",
        lambda s: cycles.assign_point_person(s, C(s, cycle_id), "marketing", LOU, P(s, SAM)),
    )


def test_a_check_in_dated_earlier_records_when_the_work_was_done(org: Store) -> None:
    """ "Done on Monday", written on Wednesday: the item counts as done on Monday (its lateness
    is judged by that day), not on the day the note was typed."""
    cycle_id = start(org)
    _, action_id = to_execute(org, cycle_id)
    monday = TODAY - timedelta(days=2)
    with org.unit_of_work() as s:
        actions.add_checkin(
            s,
            actions.get_action(s, action_id),
            CheckInCreate(status="done", on_date=monday, note="shipped on Monday"),
            P(s, SID),
        )
    with org.unit_of_work() as s:
        item = actions.get_action(s, action_id)
        assert item.completed_at.date() == monday
