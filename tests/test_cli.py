"""The command line: a whole alignment cycle run by CLI alone, the JSON shapes of the read
commands, ``db upgrade`` through the installed console script, and fast-starting reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from models.enums import Phase
from models.playbook import load_playbook_file
from models.schemas import (
    ActionItemRead,
    BoardRow,
    ChecklistItemRead,
    CycleCounts,
    CycleRead,
    EventRead,
    GapRead,
    PersonRead,
    PlaybookRead,
    Readiness,
    RetrospectiveRead,
    SurveySummary,
    TeamRead,
)
from models.tables import ActionItem, Cycle

PROJECT = Path(__file__).resolve().parent.parent
PLAYBOOK = "sales-marketing-handoff"
SCRIPT = Path(sys.executable).with_name("aligncycle")

# Who owns a question of the shipped playbook, by its owner spec, in the ``org`` fixture
# (sam and mia are the cycle's point persons).
OWNERS = {
    ("point_person", "sales"): "sam@acme.test",
    ("point_person", "marketing"): "mia@acme.test",
    ("lead", "sales"): "lee@acme.test",
    ("lead", "marketing"): "lou@acme.test",
    ("manager", None): "max@acme.test",
}

runner = CliRunner()


def cli(*args: Any, code: int = 0) -> Any:
    """Run ``aligncycle ARGS`` in-process; assert the exit code; return the result."""
    cli_common.reset_store()  # settings are cached; the store's URL comes from the environment
    result = runner.invoke(app, [str(a) for a in args], env={"ALIGNCYCLE_ACTOR": None})
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output
    return result


def cli_json(*args: Any) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def shipped_required() -> list[tuple[str, str, str]]:
    """(phase, key, owner email) of every required question of the shipped playbook."""
    spec, _ = load_playbook_file(PROJECT / "playbooks" / f"{PLAYBOOK}.yaml")
    out = []
    for phase, _pos, q in spec.questions():
        if q.required:
            assert q.owner is not None, f"{phase}.{q.key} has no owner"
            out.append((str(phase), q.key, OWNERS[(str(q.owner.role), q.owner.team)]))
    return out


def calm(phase: str, key: str) -> str:
    """The yes/no answer that raises no gap (an answer that raises one records it)."""
    spec, _ = load_playbook_file(PROJECT / "playbooks" / f"{PLAYBOOK}.yaml")
    q = spec.question(Phase(phase), key)
    return (q.calm_answer if q is not None else None) or "yes"


def answer_phase(cycle_id: int, phase: str, verbs: list[str]) -> None:
    """Each owner answers their required questions of ``phase``, as the checklist names them."""
    items = {i["key"]: i for i in cli_json("checklist", "show", cycle_id, "--phase", phase)}
    required = [(k, owner) for p, k, owner in shipped_required() if p == phase]
    assert required, phase
    for key, owner in required:
        assert items[key]["owner"]["email"] == owner, key
        yes_no = items[key]["answer_kind"] == "yes_no"
        answer = calm(phase, key) if yes_no else f"{key}: agreed in the sync"
        out = cli("checklist", "answer", cycle_id, f"{phase}.{key}", answer, "--as", owner)
        assert f"answered {phase}.{key}" in out.stdout
        verbs.append("checklist.answered")
    blockers = cli_json("cycle", "readiness", cycle_id)["blockers"]
    assert not [b for b in blockers if "checklist" in b], blockers


def test_a_whole_cycle_by_cli_alone(org: Any) -> None:
    verbs: list[str] = []
    today = date.today()

    # Identify: sam starts the cycle and names mia for marketing.
    cycle = cli_json(
        "cycle",
        "start",
        "--playbook",
        PLAYBOOK,
        "--title",
        "Q3 hand-off",
        "--point-person",
        "mia@acme.test",
        "--as",
        "sam@acme.test",
    )
    verbs += ["cycle.started", "agreement.first_version"]  # the teams' first cycle
    cid = cycle["id"]
    assert cycle["phase"] == "identify"
    assert {t["team"]["key"]: t["point_person"]["email"] for t in cycle["teams"]} == {
        "sales": "sam@acme.test",
        "marketing": "mia@acme.test",
    }
    blocked = cli_json("cycle", "readiness", cid)
    assert not blocked["ready"] and "unanswered" in blocked["blockers"][0]

    answer_phase(cid, "identify", verbs)
    gap = cli_json(
        "gap",
        "add",
        cid,
        "--title",
        "No agreed hand-off SLA",
        "--category",
        "hand_off",
        "--root-cause",
        "process",
        "--severity",
        "high",
        "--evidence",
        "median 3 days",
        "--as",
        "lee@acme.test",
    )
    verbs.append("gap.added")
    minor = cli_json(
        "gap",
        "add",
        cid,
        "--title",
        "Old CRM fields",
        "--category",
        "data_and_tools",
        "--root-cause",
        "adoption",
        "--as",
        "meg@acme.test",
    )
    verbs.append("gap.added")
    assert cli_json("cycle", "readiness", cid)["blockers"][0].startswith("2 gaps not decided")
    cli("gap", "decide", gap["id"], "accepted", "--as", "lee@acme.test")
    out = cli(
        "gap",
        "decide",
        minor["id"],
        "rejected",
        "--reason",
        "fixed last quarter",
        "--as",
        "sam@acme.test",
    )
    assert f"gap {minor['id']} rejected" in out.stdout
    verbs += ["gap.decided", "gap.decided"]
    assert [g["decision"] for g in cli_json("gap", "list", cid)] == ["accepted", "rejected"]
    moved = cli("cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test").stdout
    assert moved.splitlines() == [
        f"cycle {cid}: Identify -> Plan",
        "Plan: 3 action items proposed from the playbook for the accepted gaps: check their "
        "owners and due dates",
    ]
    verbs.append("cycle.advanced")  # no funnel data: no KPI baseline is frozen

    # Plan starts with the playbook's proposals for the accepted gap, owned and dated; this
    # team writes its own plan instead: the lead drops them.
    proposed = cli_json("action", "list", "--cycle", cid)
    assert len(proposed) == 3 and all(a["gap_ids"] == [gap["id"]] for a in proposed)
    assert all(a["owner"] and a["due_date"] for a in proposed)
    verbs += ["action.created"] * 3
    for a in proposed:
        cli("action", "update", a["id"], "--status", "dropped", "--as", "lee@acme.test")
        verbs.append("action.updated")

    # Plan: an action for the accepted gap, then its owner and due date.
    answer_phase(cid, "plan", verbs)
    action = cli_json(
        "action",
        "add",
        cid,
        "--title",
        "Agree and publish a 24h hand-off SLA",
        "--gap",
        gap["id"],
        "--priority",
        "high",
        "--measure",
        "SLA report weekly",
        "--as",
        "lee@acme.test",
    )
    verbs.append("action.created")
    assert action["owner"] is None
    assert "without an action item" in cli_json("cycle", "readiness", cid)["blockers"][0]
    due = (today + timedelta(days=7)).isoformat()
    cli(
        "action",
        "assign",
        action["id"],
        "--owner",
        "sam@acme.test",
        "--counterpart",
        "mia@acme.test",
        "--due",
        due,
        "--as",
        "lee@acme.test",
    )
    verbs.append("action.assigned")
    updated = cli_json(
        "action", "update", action["id"], "--status", "in_progress", "--as", "sam@acme.test"
    )
    verbs.append("action.updated")
    assert (updated["status"], updated["owner"]["email"], updated["due_date"]) == (
        "in_progress",
        "sam@acme.test",
        due,
    )
    moved = cli("cycle", "advance", "--no-flows", cid, "--to", "execute", "--as", "mia@acme.test")
    assert moved.stdout.splitlines()[1] == "Execute: 1 open action item got their first check-in"
    verbs += ["cycle.advanced", "checkin.added"]  # Execute starts with a check-in pass

    # Execute: check-ins until the work is done.
    answer_phase(cid, "execute", verbs)
    out = cli(
        "checkin",
        "add",
        action["id"],
        "--confidence",
        "at_risk",
        "--progress",
        "40",
        "--note",
        "legal wants a look",
        "--as",
        "sam@acme.test",
    )
    assert "in progress, at risk, 40%" in out.stdout
    cli(
        "checkin",
        "add",
        action["id"],
        "--status",
        "done",
        "--confidence",
        "on_track",
        "--progress",
        "100",
        "--note",
        "published",
        "--as",
        "sam@acme.test",
    )
    verbs += ["checkin.added", "checkin.added"]
    mine = cli_json("action", "list", "--mine", "--as", "sam@acme.test")
    assert [(a["id"], a["status"]) for a in mine if a["status"] != "dropped"] == [
        (action["id"], "done")
    ]
    cli("cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    verbs += ["cycle.advanced", "retro.drafted"]  # Recap starts with a draft retrospective

    # Recap: retrospective, survey (one anonymous), manager's sign-off, close.
    answer_phase(cid, "recap", verbs)
    cli(
        "retro",
        "record",
        cid,
        "--improvement",
        "SLA agreed and published",
        "--growth-area",
        "lead scoring",
        "--next-time",
        "start the digest in week 1",
        "--summary",
        "the hand-off is faster",
        "--as",
        "mia@acme.test",
    )
    verbs.append("retro.recorded")  # the point person saves the draft: now it is theirs
    cli(
        "survey",
        "respond",
        cid,
        "--score",
        "4",
        "--comment",
        "clearer hand-off",
        "--as",
        "lee@acme.test",
    )
    cli(
        "survey",
        "respond",
        cid,
        "--score",
        "2",
        "--comment",
        "too many meetings",
        "--anonymous",
        "--as",
        "meg@acme.test",
    )
    # two answers wait for their batch: the audit log says nothing about them yet
    assert cli_json("cycle", "readiness", cid)["blockers"] == [
        "the recap is not signed off by a manager"
    ]
    cli("retro", "signoff", cid, "--as", "max@acme.test")
    verbs.append("retro.signed_off")
    cli("cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    verbs += ["cycle.advanced", "survey.closed"]  # who gave the two unpublished answers

    shown = cli_json("cycle", "show", cid)
    assert shown["cycle"]["phase"] == "closed" and shown["cycle"]["closed_at"]
    assert shown["counts"]["actions_done"] == 1
    assert shown["counts"]["survey_responses"] == 2
    retro = cli_json("retro", "show", cid)
    assert retro["signed_off_by"]["email"] == "max@acme.test"
    assert retro["improvements"] == ["SLA agreed and published"]
    assert retro["facts"]["actions_done"] == 1
    # Two answers: too few to show scores without giving someone away.
    survey = cli_json("survey", "show", cid, "--as", "max@acme.test")
    assert (survey["responses"], survey["mean"], survey["comments"]) == (2, None, [])
    shown_survey = cli("survey", "show", cid, "--as", "max@acme.test").stdout
    assert shown_survey.startswith(f"cycle {cid}: 2 answers, 0 of them in the results\n")
    assert "Results appear once 3 people have answered" in shown_survey

    # The audit log shows every step, in order, by the right people.
    log = cli_json("events", "--cycle", cid, "--limit", 500)
    assert [e["verb"] for e in log] == verbs
    advanced = [e for e in log if e["verb"] == "cycle.advanced"]
    assert [e["after"]["phase"] for e in advanced] == ["plan", "execute", "recap", "closed"]
    assert [e["actor"]["email"] for e in advanced] == [
        "sam@acme.test",
        "mia@acme.test",
        "sam@acme.test",
        "sam@acme.test",
    ]
    closed = [e for e in log if e["verb"] == "survey.closed"][0]
    # who took part, in name order: no score, no order of answering
    assert closed["actor"] is None
    assert closed["after"] == {"unpublished": 2, "people": ["Lee Saleslead", "Meg Member"]}
    text = cli("events", "--cycle", cid, "--limit", 4).stdout
    assert "retro.signed_off" in text and "cycle.started" not in text  # the newest 4


def test_read_commands_print_their_read_schemas_as_json(org: Any) -> None:
    today = date.today()
    cid = cli_json(
        "cycle", "start", "--playbook", PLAYBOOK, "--title", "Shapes", "--as", "sam@acme.test"
    )["id"]
    cli(
        "checklist",
        "answer",
        cid,
        "identify.shared_kpis",
        "no",
        "--note",
        "two dashboards",
        "--as",
        "lou@acme.test",
    )
    [implied] = cli_json("gap", "list", cid)  # the answer's gap, recorded with it
    assert implied["key"] == "checklist:shared_kpis" and implied["evidence"] == "two dashboards"
    gid = implied["id"]
    cli("gap", "decide", gid, "accepted", "--as", "lou@acme.test")

    def keys(model: Any) -> set[str]:
        return set(model.model_fields) | set(model.model_computed_fields)

    assert [set(r) for r in cli_json("team", "list")] == [keys(TeamRead)] * 2
    people = cli_json("person", "list", "--team", "sales", "--role", "member")
    assert [(p["email"], set(p)) for p in people] == [("sid@acme.test", keys(PersonRead))]
    playbooks = cli_json("playbook", "list")
    assert len(playbooks) == 3 and all(set(p) == keys(PlaybookRead) for p in playbooks)
    shown = cli_json("playbook", "show", f"{PLAYBOOK}@4")
    assert set(shown) == keys(PlaybookRead) | {"spec"} and shown["spec"]["name"] == PLAYBOOK

    board = cli_json("cycle", "list", "--open")
    assert [(set(c), c["id"], c["gaps_total"]) for c in board] == [(keys(BoardRow), cid, 1)]
    assert cli_json("cycle", "list", "--phase", "closed") == []
    shown = cli_json("cycle", "show", cid)
    assert set(shown) == {"cycle", "readiness", "counts"}
    assert set(shown["cycle"]) == keys(CycleRead)
    assert set(shown["readiness"]) == keys(Readiness)
    assert shown["counts"]["checklist"]["identify"]["answered"] == 1
    assert (shown["counts"]["gaps_total"], shown["counts"]["gaps_by_decision"]) == (
        1,
        {"accepted": 1},
    )
    assert set(shown["counts"]) == keys(CycleCounts)
    assert set(cli_json("cycle", "readiness", cid)) == keys(Readiness)

    items = cli_json("checklist", "show", cid)
    assert {set(i) == keys(ChecklistItemRead) for i in items} == {True}
    assert [i["phase"] for i in items][:1] == ["identify"] and items[-1]["phase"] == "recap"
    kpis = next(i for i in items if i["key"] == "shared_kpis")
    assert (kpis["answer"], kpis["note"], kpis["answered_by"]["email"]) == (
        "no",
        "two dashboards",
        "lou@acme.test",
    )
    mine = cli_json(
        "checklist", "show", cid, "--phase", "identify", "--mine", "--as", "lee@acme.test"
    )
    assert {i["key"] for i in mine} == {"missed_conversions", "handoff_sla_agreed"}
    gaps = cli_json("gap", "list", cid, "--decision", "accepted")
    assert [(set(g), g["id"]) for g in gaps] == [(keys(GapRead), gid)]

    for phase in ("identify", "plan"):  # sam, a point person, may answer every question
        for i in cli_json("checklist", "show", cid, "--phase", phase):
            if i["required"] and not i["answer"]:
                cli(
                    "checklist",
                    "answer",
                    cid,
                    i["id"],
                    calm(phase, i["key"]) if i["answer_kind"] == "yes_no" else "agreed",
                    "--as",
                    "sam@acme.test",
                )
        if phase == "identify":
            cli("cycle", "advance", "--no-flows", cid, "--as", "sam@acme.test")
    late = cli_json(
        "action",
        "add",
        cid,
        "--title",
        "Agree the KPIs",
        "--gap",
        gid,
        "--owner",
        "lou@acme.test",
        "--due",
        today.isoformat(),
        "--as",
        "max@acme.test",
    )
    cli_json("action", "add", cid, "--title", "Someday", "--as", "max@acme.test")
    actions = cli_json("action", "list", "--cycle", cid)
    assert [(set(a), a["title"]) for a in actions] == [
        (keys(ActionItemRead), "Agree the KPIs"),
        # proposed from the playbook for the accepted gap when the cycle entered Plan
        (keys(ActionItemRead), "Agree on the shared KPIs and their targets"),
        (keys(ActionItemRead), "Someday"),
    ]
    assert [a["id"] for a in cli_json("action", "list", "--owner", "lou@acme.test")] == [late["id"]]
    assert [a["title"] for a in cli_json("action", "list", "--team", "marketing", "--open")] == [
        "Agree the KPIs"
    ]
    assert cli_json("action", "list", "--overdue") == []  # due today is not overdue yet
    # due yesterday: overdue, in the list and its table, until its cycle is closed
    with org.unit_of_work() as s:
        s.execute(
            update(ActionItem)
            .where(ActionItem.id == late["id"])
            .values(due_date=today - timedelta(days=1))
        )
    assert [a["id"] for a in cli_json("action", "list", "--overdue")] == [late["id"]]
    assert "overdue" in cli("action", "list", "--cycle", cid).stdout
    with org.unit_of_work() as s:
        s.execute(update(Cycle).where(Cycle.id == cid).values(phase=Phase.CLOSED))
    assert cli_json("action", "list", "--overdue") == []
    assert "overdue" not in cli("action", "list", "--cycle", cid).stdout
    with org.unit_of_work() as s:
        s.execute(update(Cycle).where(Cycle.id == cid).values(phase=Phase.PLAN))
        s.execute(update(ActionItem).where(ActionItem.id == late["id"]).values(due_date=today))
    assert cli_json("action", "list", "--status", "done") == []

    log = cli_json("events", "--cycle", cid)
    assert {set(e) == keys(EventRead) for e in log} == {True}
    assert log[0]["verb"] == "cycle.started" and log[-1]["verb"] == "action.created"
    assert cli_json("retro", "show", cid) is None
    survey = cli_json("survey", "show", cid, "--as", "sid@acme.test")
    assert set(survey) == keys(SurveySummary) and survey["responses"] == 0
    assert set(RetrospectiveRead.model_fields) >= {"facts", "signed_off_by"}

    # The human-readable forms are tables with the same rows.
    text = cli("cycle", "list").stdout.splitlines()
    assert text[0].split()[:3] == ["id", "title", "phase"] and f"{cid} " in text[2]
    listing = cli("action", "list", "--cycle", cid).stdout
    assert "Agree the KPIs" in listing
    # statuses and phases in people's words, not the stored keys
    cli("action", "update", late["id"], "--status", "in_progress", "--as", "lou@acme.test")
    listing = cli("action", "list", "--cycle", cid).stdout
    assert "in progress" in listing and "in_progress" not in listing
    assert "cannot move from Plan to Execute yet" in cli("cycle", "show", cid).stdout


def test_people_and_teams_are_added_by_managers_after_bootstrap(store: Any) -> None:
    # A fresh store has nobody: the first teams and people need no --as.
    cli("team", "add", "sales", "Sales")
    cli("team", "add", "marketing", "Marketing")
    out = cli(
        "person",
        "add",
        "--name",
        "Ann",
        "--email",
        "Ann@Acme.test",
        "--team",
        "sales",
        "--role",
        "point_person",
    )
    assert "there is no manager yet" in out.stdout
    cli(
        "person",
        "add",
        "--name",
        "Bo",
        "--email",
        "bo@acme.test",
        "--team",
        "sales",
        "--role",
        "manager",
    )
    cli(
        "person",
        "add",
        "--name",
        "Cy",
        "--email",
        "cy@acme.test",
        "--team",
        "marketing",
        "--as",
        "bo@acme.test",
    )
    people = cli_json("person", "list")
    assert [(p["email"], p["role"], p["team"]["key"]) for p in people] == [
        ("cy@acme.test", "member", "marketing"),
        ("ann@acme.test", "point_person", "sales"),
        ("bo@acme.test", "manager", "sales"),
    ]
    log = cli_json("events")
    assert [e["actor"]["email"] if e["actor"] else None for e in log][-2:] == [
        None,
        "bo@acme.test",
    ]


def test_playbooks_are_validated_and_loaded_from_a_folder(org: Any, tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nversion: 2\ntitle: Tiny\nphases:\n  identify:\n    questions:\n"
        "      - key: ready\n        text: Ready?\n        owner: {role: manager}\n"
    )
    assert cli("playbook", "validate", tmp_path / "tiny.yaml").stdout.startswith(
        f"ok {tmp_path / 'tiny.yaml'}: tiny@2 (1 question)"
    )
    assert cli("playbook", "load", tmp_path, "--as", "max@acme.test").stdout == (
        "loaded playbook tiny@2 (tiny.yaml)\n"
    )
    assert "unchanged playbook tiny@2" in cli("playbook", "load", tmp_path).stdout
    assert [p["version"] for p in cli_json("playbook", "list") if p["name"] == "tiny"] == [2]
    shown = cli("playbook", "show", "tiny").stdout
    assert "tiny@2: Tiny" in shown and "identify.ready" in shown
    loaded = [e for e in cli_json("events") if e["verb"] == "playbook.loaded"]
    assert loaded[-1]["actor"]["email"] == "max@acme.test"


def _run_script(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNCYCLE_")}
    env["ALIGNCYCLE_DATABASE_URL"] = url
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_an_import_at_a_terminal_says_it_is_saving_after_summing_up(tmp_path: Path) -> None:
    """At a terminal the import tells each step after the files; the last, while it commits
    (seconds at a million rows), is saving the import, not the numbers at 100%."""
    import pty

    url = f"sqlite:///{tmp_path / 'tty.db'}"
    assert _run_script("db", "upgrade", url=url).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,mql_date\n" + "".join(f"{i},2025-03-0{1 + i % 9} 10:00\n" for i in range(40))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNCYCLE_")}
    env["ALIGNCYCLE_DATABASE_URL"] = url
    main, terminal = pty.openpty()  # stderr is a terminal; stdout is not
    shown = b""
    try:
        with subprocess.Popen(
            [str(SCRIPT), "funnel", "import", "-p", "generic", str(leads)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=env,
        ) as done:
            os.close(terminal)  # (the child holds it: reading ends when the child ends)
            terminal = -1
            while True:  # read as it writes, so a full terminal never holds it
                try:
                    got = os.read(main, 65536)
                except OSError:  # (Linux: the other end is closed and everything was read)
                    break
                if not got:
                    break
                shown += got
            out, _err = done.communicate(timeout=120)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(main)
    assert done.returncode == 0, shown
    said = shown.decode()
    assert "summing up the numbers" in said
    assert said.rindex("saving the import") > said.rindex("summing up the numbers")
    assert "40 new" in out


def test_db_upgrade_sets_up_a_fresh_sqlite_file_with_the_shipped_playbooks(
    tmp_path: Path, monkeypatch: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'x.db'}"
    first = _run_script("db", "upgrade", url=url)
    assert first.returncode == 0, first.stderr
    loaded = sorted(line for line in first.stdout.splitlines() if line.startswith("loaded "))
    assert [line.split()[2] for line in loaded] == [
        "campaign-content-alignment@3",
        "lead-definition-and-scoring@4",
        "sales-marketing-handoff@4",
    ]
    again = _run_script("db", "upgrade", url=url)  # idempotent: nothing new to load
    assert again.returncode == 0, again.stderr
    assert "loaded " not in again.stdout and again.stdout.count("unchanged playbook") == 3
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", url)
    assert cli_json("db", "current")["up_to_date"] is True
    assert {p["name"] for p in cli_json("playbook", "list")} == {
        "campaign-content-alignment",
        "lead-definition-and-scoring",
        "sales-marketing-handoff",
    }


def test_read_commands_do_not_import_prefect_or_fastapi(org: Any, database_url: str) -> None:
    cid = cli_json(
        "cycle", "start", "--playbook", PLAYBOOK, "--title", "Fast", "--as", "sam@acme.test"
    )["id"]
    commands = [
        ["cycle", "list", "--json"],
        ["cycle", "show", str(cid)],
        ["checklist", "show", str(cid)],
        ["gap", "list", str(cid)],
        ["action", "list", "--overdue"],
        ["events", "--cycle", str(cid)],
    ]
    probe = (
        "import json, sys\n"
        "from aligncycle.cli import main\n"
        f"for args in {commands!r}:\n"
        "    sys.argv = ['aligncycle', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (args, exc.code)\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(loaded & {'prefect', 'fastapi', 'uvicorn'})\n"
        "print('HEAVY=' + json.dumps(heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNCYCLE_")}
    env["ALIGNCYCLE_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"Fast"' in done.stdout  # the commands did run against the store
    assert done.stdout.strip().splitlines()[-1] == "HEAVY=[]"


@pytest.mark.parametrize("args", [["--help"], ["cycle", "--help"], ["playbook", "schema"]])
def test_help_and_schema_need_no_store(args: list[str], tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    out = cli(*args).stdout
    if args == ["playbook", "schema"]:
        assert json.loads(out)["title"] == "PlaybookSpec"
    else:
        assert "Usage" in out
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"ALIGNCYCLE_DATA_DIR": "/srv/aligncycle"},
        {"ALIGNCYCLE_DATABASE_URL": "sqlite:////var/lib/ac.db", "ALIGNCYCLE_DATA_DIR": "/x"},
        {"ALIGNCYCLE_DATABASE_URL": "postgres://ann:pw@db:5432/ac"},
        {"ALIGNCYCLE_DATABASE_URL": "postgresql://ann@db/ac?sslmode=require"},
        {"ALIGNCYCLE_DATABASE_URL": "postgresql+psycopg://ann@db/ac"},
        {"aligncycle_database_url": "sqlite:////lower/case.db"},
        {"ALIGNCYCLE_DATABASE_URL": "", "ALIGNCYCLE_DATA_DIR": "/empty/url"},
    ],
)
def test_the_cli_finds_the_store_the_settings_name(env: dict[str, str], monkeypatch: Any) -> None:
    from aligncycle.settings import Settings

    for key in [k for k in os.environ if k.upper().startswith("ALIGNCYCLE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli_common.database_url() == Settings().effective_database_url


# --- the default `cycle advance`: the point person's decision drives the flows -------------


@pytest.mark.prefect
def test_cycle_advance_runs_the_next_phase_flow(
    org: Any, prefect_server: str, data_dir: Path
) -> None:
    """Without a waiting run, `cycle advance` first brings Identify's analysis up to date (the
    "yes, there is a problem" answers become gaps), applies the gate, and once the gaps are
    decided runs the Plan flow in-process: the plan's proposals are in the store."""
    from models.enums import Phase
    from tests.test_cli_refusals import walk

    cid = walk(org, Phase.IDENTIFY, gap=False)["cycle"]
    refused = cli("cycle", "advance", cid, "--as", "sam@acme.test", code=1)
    assert "not decided" in refused.stderr
    open_gaps = [g for g in cli_json("gap", "list", cid) if g["decision"] == "open"]
    assert open_gaps and all(g["source"] == "checklist" for g in open_gaps)
    for gap in open_gaps:
        cli("gap", "decide", gap["id"], "accepted", "--as", "lee@acme.test")
    out = cli("cycle", "advance", cid, "--as", "sam@acme.test").stdout
    assert "moved from Identify to Plan" in out.splitlines()[0]
    assert cli_json("cycle", "show", cid)["cycle"]["phase"] == "plan"
    proposed = cli_json("action", "list", "--cycle", cid)
    assert {g for a in proposed for g in a["gap_ids"]} >= {g["id"] for g in open_gaps}


def test_kpi_show_in_its_own_process_leaves_out_a_source_with_no_first_touches(
    tmp_path: Path,
) -> None:
    """``kpi show`` as an operator runs it, a process of its own (nothing imported before it),
    over a CRM's leads with first touches and an export with none: the touch KPIs are the
    CRM's alone, and it says which source they leave out."""
    url = f"sqlite:///{tmp_path / 'kpis.db'}"
    assert _run_script("db", "upgrade", url=url).returncode == 0
    crm = tmp_path / "leads.csv"
    crm.write_text(
        "lead_id,mql_date,first_touch\n"
        "1,2025-03-03 09:00,2025-03-03 10:00\n"  # within a day
        "2,2025-03-04 09:00,2025-03-06 09:00\n"  # two days late
        "3,2025-03-05 09:00,\n"  # not touched
    )
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,mql\n" + "".join(f"s{i},2025-03-0{i} 10:00\n" for i in range(1, 6)))
    mapping = tmp_path / "sheet.yaml"
    mapping.write_text("name: sheet\nsource: sheet\nfields:\n  external_id: id\n  mql_at: mql\n")
    assert _run_script("funnel", "import", "-p", "generic", str(crm), url=url).returncode == 0
    assert _run_script("funnel", "import", "-m", str(mapping), str(sheet), url=url).returncode == 0
    window = ("--from", "2025-03-01", "--to", "2025-03-31")
    shown = _run_script("kpi", "show", *window, url=url)
    assert shown.returncode == 0, shown.stderr
    assert (
        "SLA attainment and untouched leads leave out the leads from sheet: that export has no "
        "date of a first sales touch"
    ) in shown.stdout
    report = _run_script("kpi", "show", *window, "--json", url=url)
    kpis = json.loads(report.stdout)["groups"][0]["kpis"]
    assert kpis["mql_volume"]["value"] == 8
    assert (kpis["sla_attainment"]["value"], kpis["sla_attainment"]["sample_size"]) == (1 / 3, 3)
    assert (kpis["untouched_leads"]["value"], kpis["untouched_leads"]["sample_size"]) == (1, 3)
    assert json.loads(report.stdout)["left_out_of_touch_kpis"] == ["sheet"]


def test_kpi_show_says_when_an_export_records_no_lost_deal(tmp_path: Path) -> None:
    """Olist's export lists won deals only: ``kpi show`` says so beside its win rate."""
    from tests.test_numbers import OLIST_MQLS, OLIST_WON

    url = f"sqlite:///{tmp_path / 'kpis.db'}"
    assert _run_script("db", "upgrade", url=url).returncode == 0
    (tmp_path / "mqls.csv").write_text(OLIST_MQLS)
    (tmp_path / "won.csv").write_text(OLIST_WON)
    files = [str(tmp_path / "mqls.csv"), str(tmp_path / "won.csv")]
    assert _run_script("funnel", "import", "-p", "olist", *files, url=url).returncode == 0
    shown = _run_script("kpi", "show", "--from", "2025-03-01", "--to", "2025-03-31", url=url)
    assert shown.returncode == 0, shown.stderr
    assert (
        "No deal from olist is recorded as lost: if that export lists won deals only, the win "
        "rate counts their wins and none of their losses"
    ) in shown.stdout
