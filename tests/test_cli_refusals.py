"""Every operation the rules refuse, from the command line: exit 1 (2 for bad usage), one line
on stderr, nothing on stdout, no traceback, and the store exactly as it was."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.enums import AnswerKind, Phase
from models.schemas import (
    ActionItemCreate,
    ChecklistAnswer,
    CycleCreate,
    GapCreate,
    GapDecide,
    RetrospectiveRecord,
)
from models.services import actions, checklist, cycles, gaps, phases, recap
from models.services.common import person_by_email
from models.tables import Event
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
            checklist.answer_item(s, item, ChecklistAnswer(answer=answer), sam)


def start(store: Any) -> int:
    """A fresh cycle of the shipped playbook, started by sam; nothing answered yet."""
    with store.unit_of_work() as s:
        sam = person_by_email(s, "sam@acme.test")
        return cycles.start_cycle(s, CycleCreate(playbook=PLAYBOOK, title="Fresh"), sam).id


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
        cycle = cycles.start_cycle(
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
                gaps.decide_gap(s, g, GapDecide(decision="accepted"), lee)
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
    assert "the next phase is plan, not execute" in msg
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "lee@acme.test")
    assert "only a point person of this cycle can advance it" in msg
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "nobody@acme.test")
    assert msg == "error: unknown person 'nobody@acme.test'"


def test_identify_waits_for_required_answers_and_gap_decisions(org: Any) -> None:
    cid = start(org)
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert "10 required checklist item(s) unanswered: handoff_interruptions" in msg
    msg = refused(
        org, "cycle", "advance", "--no-flows", cid, "--override", "urgent", "--as", "sam@acme.test"
    )
    assert "cannot leave identify even with an override" in msg

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
    assert msg == "error: cannot leave identify: 1 gap(s) not decided: Slow follow-up"


def test_plan_needs_owned_dated_actions_and_a_point_person_per_team(org: Any) -> None:
    ids = walk(org, Phase.PLAN)
    with org.unit_of_work() as s:  # an action for the gap, but nobody owns it yet
        actions.add_action(
            s,
            cycles.get_cycle(s, ids["cycle"]),
            ActionItemCreate(gap_id=ids["gap"], title="Draft the SLA"),
            person_by_email(s, "lee@acme.test"),
        )
    msg = refused(org, "cycle", "advance", "--no-flows", ids["cycle"], "--as", "sam@acme.test")
    assert "1 accepted gap(s) without an action item that has an owner and a due date" in msg

    lonely = walk(org, Phase.PLAN, marketing_point_person=False, gap=False)["cycle"]
    msg = refused(org, "cycle", "advance", "--no-flows", lonely, "--as", "sam@acme.test")
    assert msg == "error: cannot leave plan: 1 team(s) without a point person: marketing"


def test_execute_waits_for_the_work_unless_overridden_with_a_reason(org: Any) -> None:
    ids = walk(org, Phase.EXECUTE)
    cid = ids["cycle"]
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert "1 action item(s) neither done nor dropped: Agree the SLA" in msg
    msg = refused(
        org, "cycle", "advance", "--no-flows", cid, "--override", "  ", "--as", "sam@acme.test"
    )
    assert "cannot leave execute" in msg

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
    assert out.stdout.strip() == f"cycle {cid}: execute -> recap"
    last = cli_json("events", "--cycle", cid, "--limit", 1)[0]
    assert (last["verb"], last["actor"]["email"]) == ("cycle.advanced", "mia@acme.test")
    assert last["after"]["override_reason"] == "carried to Q4"
    assert last["after"]["overridden"] == ["Agree the SLA"]


def test_recap_closes_only_with_a_signed_off_retrospective(org: Any) -> None:
    cid = walk(org, Phase.RECAP)["cycle"]
    msg = refused(org, "cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    assert msg == "error: cannot leave recap: no retrospective recorded"
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
    assert msg == "error: cannot leave recap: the recap is not signed off by a manager"
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
        phases.refresh_phase(s, cycles.get_cycle(s, cycle_id), date.today())
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
        (Phase.IDENTIFY, {"kpi.baseline_recorded", "gap.added"}, "required checklist item"),
        # the playbook's proposals for the accepted gap; marketing has no point person
        (Phase.PLAN, {"action.created"}, "1 team(s) without a point person: marketing"),
        # the drafted retrospective and the KPI baseline it measures against; not signed off
        (Phase.RECAP, {"retro.recorded", "kpi.baseline_recorded"}, "not signed off"),
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
    assert msg.startswith(f"error: cannot leave {phase}") and blocker in msg


def test_members_neither_plan_nor_touch_what_others_own(org: Any) -> None:
    ids = walk(org, Phase.EXECUTE)
    cid, aid = ids["cycle"], ids["action"]
    msg = refused(org, "action", "add", cid, "--title", "Mine now", "--as", "sid@acme.test")
    assert msg == (
        "error: only leads and managers can create or assign action items (you are a member)"
    )
    msg = refused(org, "action", "assign", aid, "--owner", "sid@acme.test", "--as", "sid@acme.test")
    assert "only leads and managers can assign or reassign action items" in msg
    msg = refused(org, "action", "update", aid, "--status", "dropped", "--as", "sid@acme.test")
    assert msg == f"error: action item {aid} is not yours to update"
    msg = refused(org, "checkin", "add", aid, "--status", "done", "--as", "meg@acme.test")
    assert f"action item {aid} is not yours to check in on" in msg
    msg = refused(
        org, "action", "update", aid, "--due", date.today().isoformat(), "--as", "sam@acme.test"
    )
    assert "only leads and managers move due dates" in msg

    fresh = start(org)
    msg = refused(
        org, "checklist", "answer", fresh, "identify.shared_kpis", "no", "--as", "sid@acme.test"
    )
    assert "identify.shared_kpis is owned by lou@acme.test" in msg
    msg = refused(
        org,
        "person",
        "add",
        "--name",
        "Zed",
        "--email",
        "zed@acme.test",
        "--team",
        "sales",
        "--as",
        "sid@acme.test",
    )
    assert msg == "error: only managers can add teams and people (you are a member)"
    msg = refused(org, "team", "add", "ops", "Operations")
    assert "only managers can add teams and people" in msg
    msg = refused(org, "team", "add", "sales", "Sales again", "--as", "max@acme.test")
    assert msg == "error: team 'sales' already exists"


def test_stale_expected_version_is_a_conflict(org: Any) -> None:
    ids = walk(org, Phase.EXECUTE)
    msg = refused(
        org,
        "action",
        "update",
        ids["action"],
        "--confidence",
        "at_risk",
        "--expected-version",
        5,
        "--as",
        "sam@acme.test",
    )
    assert f"action item {ids['action']} was changed by someone else (version 1, you had 5)" in msg
    version = cli_json("cycle", "show", ids["cycle"])["cycle"]["version"]
    msg = refused(
        org,
        "cycle",
        "advance",
        "--no-flows",
        ids["cycle"],
        "--override",
        "late",
        "--expected-version",
        version - 1,
        "--as",
        "sam@acme.test",
    )
    assert "was changed by someone else" in msg


def test_unknown_cycle_ids_are_refused(org: Any) -> None:
    assert refused(org, "cycle", "show", 424242) == "error: no cycle with id 424242"
    assert refused(org, "checklist", "show", 424242) == "error: no cycle with id 424242"
    msg = refused(
        org,
        "gap",
        "add",
        424242,
        "--title",
        "x",
        "--category",
        "other",
        "--root-cause",
        "process",
        "--as",
        "lee@acme.test",
    )
    assert msg == "error: no cycle with id 424242"
    assert refused(org, "action", "list", "--cycle", 424242) == "error: no cycle with id 424242"
    assert refused(org, "gap", "decide", 424242, "accepted", "--as", "lee@acme.test") == (
        "error: no gap with id 424242"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [
                "gap",
                "add",
                "{cycle}",
                "--title",
                "x",
                "--category",
                "vibes",
                "--root-cause",
                "process",
                "--as",
                "lee@acme.test",
            ],
            "Invalid value for '--category': 'vibes'",
        ),
        (["action", "list", "--status", "finished"], "Invalid value for '--status': 'finished'"),
        (["cycle", "list", "--phase", "someday"], "Invalid value for '--phase'"),
        (["gap", "decide", "1", "open", "--as", "lee@acme.test"], "'open' is not one of"),
        (
            [
                "action",
                "add",
                "{cycle}",
                "--title",
                "x",
                "--due",
                "2025-02-30",
                "--as",
                "lee@acme.test",
            ],
            "Invalid value for '--due': '2025-02-30'",
        ),
        (
            [
                "cycle",
                "start",
                "--playbook",
                PLAYBOOK,
                "--title",
                "x",
                "--start",
                "31/01/2025",
                "--as",
                "sam@acme.test",
            ],
            "Invalid value for '--start'",
        ),
        (
            ["survey", "respond", "{cycle}", "--score", "9", "--as", "sid@acme.test"],
            "Invalid value for '--score'",
        ),
        (["cycle", "advance", "--no-flows", "{cycle}"], "say who is acting: --as EMAIL"),
        (["cycle", "list", "--colour"], "No such option: --colour"),
        (["cycle", "launch"], "No such command 'launch'"),
        (
            [
                "person",
                "add",
                "--name",
                "Zed",
                "--email",
                "not-an-email",
                "--team",
                "sales",
                "--as",
                "max@acme.test",
            ],
            "email: not an email address: 'not-an-email'",
        ),
        (
            [
                "cycle",
                "start",
                "--playbook",
                PLAYBOOK,
                "--title",
                "x",
                "--start",
                "2025-03-01",
                "--end",
                "2025-02-01",
                "--as",
                "sam@acme.test",
            ],
            "period_end is before period_start",
        ),
    ],
)
def test_bad_usage_exits_2(org: Any, args: list[str], expected: str) -> None:
    cid = start(org)
    msg = refused(org, *[a.replace("{cycle}", str(cid)) for a in args], code=2)
    assert expected in msg


def test_an_invalid_playbook_file_is_named_with_its_field(org: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: tiny\nversion: 1\ntitle: Tiny\nphases: {identify: {}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: tiny\nversion: 1\ntitle: Tiny\nphases:\n  identify:\n    questions:\n"
        "      - key: q1\n        text: Ready\n        answer: maybe\n"
    )
    msg = refused(org, "playbook", "validate", bad)
    assert msg.startswith(f"error: {bad}: phases.identify.questions[0].answer:")
    result = cli("playbook", "validate", good, bad, code=1)
    assert result.stdout.startswith(f"ok {good}: tiny@1")
    msg = refused(org, "playbook", "load", tmp_path)  # all or nothing: good.yaml is not loaded
    assert f"{bad}: phases.identify.questions[0].answer" in msg


def test_a_store_that_is_not_set_up_or_unreachable(
    store: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    before = db_snapshot(store)
    fresh = tmp_path / "fresh.db"
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", f"sqlite:///{fresh}")
    for args in (["cycle", "list"], ["team", "add", "sales", "Sales"], ["events"]):
        result = cli(*args, code=1)
        assert result.stderr == (
            f"error: the store at sqlite:///{fresh} is not set up; run 'aligncycle db upgrade'\n"
        )
        assert not fresh.exists()  # a read does not leave an empty database file behind

    fresh.touch()  # a file without tables
    result = cli("cycle", "list", "--json", code=1)
    assert result.stderr.strip() == (
        f"error: the store at sqlite:///{fresh} is not set up; run 'aligncycle db upgrade'"
    )

    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", "postgresql://ann:s3cret@127.0.0.1:1/nowhere")
    result = cli("cycle", "list", code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: cannot reach the store at postgresql+psycopg://ann@127.0.0.1:1/nowhere: "
    )
    assert "s3cret" not in result.output
    assert db_snapshot(store) == before
