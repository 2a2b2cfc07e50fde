"""Every operation the rules refuse, from the command line: exit 1 (2 for bad usage), one line
on stderr, nothing on stdout, no traceback, and the store exactly as it was."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models import phases
from models.enums import AnswerKind, Phase
from models.errors import TransitionRefused
from models.phases import lifecycle, plan
from models.schemas import (
    ActionItemCreate,
    ActionItemUpdate,
    ChecklistAnswer,
    CycleCreate,
    GapCreate,
    GapDecide,
    PersonCreate,
    RetrospectiveRecord,
)
from models.services import actions, checklist, cycles, gaps, people, recap
from models.services.common import person_by_email
from models.tables import Event
from models.words import phase_name
from tests.conftest import db_snapshot
from tests.test_cli import PLAYBOOK, cli, cli_json
from tests.test_services import calm


def refused(store: Any, *args: Any, code: int = 1) -> str:
    """Run a command that must be refused; return its one-line message."""
    before = db_snapshot(store)
    result = cli(*args, code=code)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    assert db_snapshot(store) == before
    return lines[0]


def _answer_required(s: Any, cycle: Any, *, raise_gaps: bool = False) -> None:
    """Answer the phase's required questions, each so that it raises no gap; or, with
    ``raise_gaps``, "yes" to every yes/no question (in Identify, three of them raise a gap,
    recorded with the answer)."""
    sam = person_by_email(s, "sam@acme.test")  # a point person may answer every question
    for item in checklist.list_items(s, cycle, cycle.phase):
        if item.required and item.answer is None:
            answer = calm(cycle, item)
            if raise_gaps and item.answer_kind is AnswerKind.YES_NO:
                answer = "yes"
            phases.answer(s, item, ChecklistAnswer(answer=answer), sam)


def start(store: Any) -> int:
    """A fresh cycle of the shipped playbook, started by sam; nothing answered yet."""
    with store.unit_of_work() as s:
        sam = person_by_email(s, "sam@acme.test")
        return phases.start_cycle(s, CycleCreate(playbook=PLAYBOOK, title="Fresh"), sam).id


def walk(
    store: Any, to: Phase, *, marketing_point_person: bool = True, gap: bool = True
) -> dict[str, int]:
    """A cycle of the shipped playbook brought to ``to`` through the services: every required
    question answered (raising no gap), one accepted gap with an action owned by sam (still
    open), and the current phase's required questions answered "yes" (in Identify, three of
    those answers raise gaps)."""
    ids: dict[str, int] = {}
    with store.unit_of_work() as s:
        sam = person_by_email(s, "sam@acme.test")
        lee = person_by_email(s, "lee@acme.test")
        named = ["mia@acme.test"] if marketing_point_person else []
        cycle = phases.start_cycle(
            s, CycleCreate(playbook=PLAYBOOK, title="Refusals", point_persons=named), sam
        )
        ids["cycle"] = cycle.id
        while cycle.phase is not to:
            _answer_required(s, cycle)
            if cycle.phase is Phase.IDENTIFY and gap:
                g, _ = gaps.add_gap(
                    s,
                    cycle,
                    GapCreate(title="No SLA", category="hand_off", root_cause="process"),
                    lee,
                )
                phases.decide_gap(s, g, GapDecide(decision="accepted"), lee)
                ids["gap"] = g.id
            if cycle.phase is Phase.PLAN and gap:
                item, _ = actions.add_action(
                    s,
                    cycle,
                    ActionItemCreate(
                        gap_id=ids["gap"],
                        title="Agree the SLA",
                        owner="sam@acme.test",
                        due_date=date.today() + timedelta(days=7),
                    ),
                    lee,
                )
                ids["action"] = item.id
            if cycle.phase is Phase.EXECUTE:
                cycles.advance_cycle(s, cycle, sam, override_reason="setting up a test")
                continue
            cycles.advance_cycle(s, cycle, sam)
        _answer_required(s, cycle, raise_gaps=True)
    return ids


def test_out_of_order_and_unauthorised_transitions(org: Any) -> None:
    cid = walk(org, Phase.IDENTIFY, gap=False)["cycle"]
    msg = refused(
        org, "cycle", "advance", "--no-flows", cid, "--to", "execute", "--as", "sam@acme.test"
    )
    assert "the next phase is Plan, not Execute" in msg
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "lee@acme.test")
    assert "only a point person of this cycle can advance it" in msg
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "nobody@acme.test")
    assert msg == "error: unknown person 'nobody@acme.test'"


def test_a_refusal_says_what_to_do_and_the_terminal_adds_its_command(org: Any) -> None:
    """The domain says what resolves a refusal in the web app's words; the CLI adds the
    command that does it from a terminal (the web and the API add none)."""
    msg = refused(
        org, "cycle", "start", "--playbook", "nope", "--title", "X", "--as", "sam@acme.test"
    )
    assert msg == (
        "error: there is no playbook 'nope'; the Playbooks page lists the ones there are "
        "(run: aligncycle playbook load)"
    )


def test_identify_waits_for_required_answers_and_gap_decisions(org: Any) -> None:
    cid = start(org)
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert "10 required questions unanswered: “Are there avoidable interruptions" in msg
    msg = refused(
        org, "cycle", "advance", "--no-flows", cid, "--override", "urgent", "--as", "sam@acme.test"
    )
    assert "cannot leave Identify even with an override" in msg

    with org.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        _answer_required(s, cycle)
        gaps.add_gap(
            s,
            cycle,
            GapCreate(title="Slow follow-up", category="hand_off", root_cause="process"),
            person_by_email(s, "sid@acme.test"),
        )
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert msg == "error: the cycle cannot leave Identify yet: 1 gap not decided: Slow follow-up"


def test_plan_needs_owned_dated_actions_and_a_point_person_per_team(org: Any) -> None:
    ids = walk(org, Phase.PLAN)
    with org.unit_of_work() as s:  # an action for the gap, but nobody owns it yet
        cycle = cycles.get_cycle(s, ids["cycle"])
        lee = person_by_email(s, "lee@acme.test")
        # The playbook's proposals (owned and dated) were dropped: advancing does not make
        # them again (they are keyed), so they do not plan the gap.
        for proposal in plan.propose_actions(s, cycle, date.today()):
            actions.update_action(s, proposal, ActionItemUpdate(status="dropped"), lee)
        actions.add_action(
            s, cycle, ActionItemCreate(gap_id=ids["gap"], title="Draft the SLA"), lee
        )
    msg = refused(org, "cycle", "advance", "--no-flows", ids["cycle"], "--as", "sam@acme.test")
    assert "1 accepted gap without an action item that has an owner and a due date" in msg

    lonely = walk(org, Phase.PLAN, marketing_point_person=False, gap=False)["cycle"]
    msg = refused(org, "cycle", "advance", "--no-flows", lonely, "--as", "sam@acme.test")
    assert msg == "error: the cycle cannot leave Plan yet: 1 team without a point person: Marketing"


def test_execute_waits_for_the_work_unless_overridden_with_a_reason(org: Any) -> None:
    ids = walk(org, Phase.EXECUTE)
    cid = ids["cycle"]
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert "1 action item neither done nor dropped: Agree the SLA" in msg
    msg = refused(
        org, "cycle", "advance", "--no-flows", cid, "--override", "  ", "--as", "sam@acme.test"
    )
    assert "cannot leave Execute" in msg

    out = cli(
        "cycle",
        "advance",
        "--no-flows",
        cid,
        "--override",
        "carried to Q4",
        "--as",
        "mia@acme.test",
    )
    assert out.stdout.splitlines() == [
        f"cycle {cid}: Execute -> Recap",
        "Recap: a draft retrospective is ready: a point person reviews and saves it",
    ]
    # The newest events: the move, then the draft retrospective Recap starts with (no funnel
    # data in this store: no KPI baseline is frozen).
    newest = cli_json("events", "--cycle", cid, "--limit", 2)
    assert [e["verb"] for e in newest] == ["cycle.advanced", "retro.drafted"]
    last = newest[0]
    assert last["actor"]["email"] == "mia@acme.test"
    assert last["after"]["override_reason"] == "carried to Q4"
    assert last["after"]["overridden"] == ["Agree the SLA"]


def test_recap_closes_only_with_a_signed_off_retrospective(org: Any) -> None:
    cid = walk(org, Phase.RECAP)["cycle"]
    # Advancing drafts the retrospective first (what Recap derives), then the gate wants a
    # point person to save it; the refusal rolls the draft back, so there is none to sign off.
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert msg == (
        "error: the cycle cannot leave Recap yet: the draft retrospective is not saved by a "
        "point person yet"
    )
    msg = refused(org, "retro", "signoff", cid, "--as", "max@acme.test")
    assert "has no retrospective to sign off" in msg

    with org.unit_of_work() as s:
        recap.record_retrospective(
            s,
            cycles.get_cycle(s, cid),
            RetrospectiveRecord(improvements=["SLA"]),
            person_by_email(s, "sam@acme.test"),
        )
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert (
        msg == "error: the cycle cannot leave Recap yet: the recap is not signed off by a manager"
    )
    msg = refused(org, "retro", "signoff", cid, "--as", "lee@acme.test")
    assert msg == "error: only managers can sign off a recap (you are a lead)"
    msg = refused(org, "retro", "record", cid, "--summary", "x", "--as", "lee@acme.test")
    assert "only a point person of this cycle can record the retrospective" in msg
    msg = refused(org, "retro", "signoff", cid, "--expected-version", 9, "--as", "max@acme.test")
    assert f"the retrospective of cycle {cid} was changed by someone else" in msg

    cli("survey", "respond", cid, "--score", 3, "--anonymous", "--as", "sid@acme.test")
    msg = refused(org, "survey", "respond", cid, "--score", 5, "--as", "sid@acme.test")
    assert msg == f"error: you already answered the survey of cycle {cid}"


class _Undo(Exception):
    pass


def refresh_writes(store: Any, cycle_id: int) -> list[str]:
    """What refreshing the cycle's phase writes (the audit events), in a unit of work that is
    then rolled back: proof that a refused advance has something to roll back."""
    with pytest.raises(_Undo), store.unit_of_work() as s:
        events = select(func.count()).select_from(Event).where(Event.cycle_id == cycle_id)
        before = s.scalar(events)
        lifecycle.refresh_phase(s, cycles.get_cycle(s, cycle_id), date.today())
        s.flush()
        written = s.scalars(
            select(Event.verb).where(Event.cycle_id == cycle_id).order_by(Event.id).offset(before)
        ).all()
        raise _Undo
    return list(written)


def _identify_with_an_answer_stored_before_answers_recorded_gaps(store: Any) -> int:
    cid = start(store)
    with store.unit_of_work() as s:  # as a release that did not record the answer's gap stored it
        item = checklist.find_item(s, cycles.get_cycle(s, cid), "identify.regular_cadence")
        item.answer = "no"
    return cid


@pytest.mark.prefect
@pytest.mark.parametrize(
    ("phase", "writes", "blocker"),
    [
        # the KPI baseline and the gap the stored answer implies; 9 questions unanswered
        (Phase.IDENTIFY, {"gap.added"}, "required questions unanswered"),
        # the playbook's proposals for the accepted gap; marketing has no point person
        (Phase.PLAN, {"action.created"}, "1 team without a point person: Marketing"),
        # the drafted retrospective and the KPI baseline it measures against; not signed off
        (Phase.RECAP, {"retro.drafted"}, "not saved by a point person"),
    ],
)
def test_a_refused_cycle_advance_leaves_every_table_unchanged(
    org: Any, prefect_server: str, data_dir: Path, phase: Phase, writes: set[str], blocker: str
) -> None:
    """`cycle advance` brings the phase's analysis up to date before the gate decides, in the
    decision's unit of work: when the gate refuses, what the refresh wrote is rolled back too."""
    if phase is Phase.IDENTIFY:
        cid = _identify_with_an_answer_stored_before_answers_recorded_gaps(org)
    else:
        cid = walk(org, phase, marketing_point_person=phase is not Phase.PLAN)["cycle"]
    assert set(refresh_writes(org, cid)) == writes
    msg = refused(org, "cycle", "advance", cid, "--as", "sam@acme.test")
    assert msg.startswith(f"error: the cycle cannot leave {phase_name(phase)}") and blocker in msg


def test_a_decision_refreshes_then_decides_in_one_transaction(org: Any, data_dir: Path) -> None:
    """``cycle advance`` (``orchestration.advance``, what every decision goes through) applies
    the decision in one unit of work. Every required question is answered, but one answer was
    stored without its gap: the refresh in the decision records that gap, so the gate refuses
    (the gap is not decided), and the refusal rolls the refresh back with it: no flow is asked
    for either (the outbox is part of the snapshot)."""
    from aligncycle import orchestration

    cid = _identify_with_an_answer_stored_before_answers_recorded_gaps(org)
    with org.unit_of_work() as s:
        _answer_required(s, cycles.get_cycle(s, cid))
    assert "gap.added" in refresh_writes(org, cid)
    before = db_snapshot(org)
    with pytest.raises(TransitionRefused, match="the cycle cannot leave Identify yet: 1 gap not"):
        orchestration.advance(cid, "sam@acme.test", today=date.today())
    assert db_snapshot(org) == before


def test_the_cli_assigns_by_name_and_refuses_an_ambiguous_one_in_the_webs_words(org: Any) -> None:
    ids = walk(org, Phase.EXECUTE)
    with org.unit_of_work() as s:
        people.create_person(
            s, PersonCreate(name="Sam Sales", email="sam2@acme.test", team="marketing")
        )
    msg = refused(
        org, "action", "assign", ids["action"], "--owner", "Sam Sales", "--as", "lee@acme.test"
    )
    assert msg == (
        "error: 2 people called Sam Sales are on this cycle's teams (sam2@acme.test and "
        "sam@acme.test): type the email of the one you mean"
    )
    assigned = cli_json(
        "action", "assign", ids["action"], "--owner", "lee saleslead", "--as", "lee@acme.test"
    )
    assert assigned["owner"]["email"] == "lee@acme.test"
