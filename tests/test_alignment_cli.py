"""Each team's own answers on the command line (issue 18): another team's answers show in no
output (table, JSON, CSV export, audit log) until they are revealed; refusals are one line and
a non-zero exit."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from models.services import team_input
from tests.test_alignment_faces import SECRET, marketing_answers, start

runner = CliRunner()


def cli(*args: Any, code: int = 0) -> Any:
    cli_common.reset_store()
    result = runner.invoke(app, [str(a) for a in args], env={"ALIGNCYCLE_ACTOR": None})
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output
    return result


def test_the_command_line_hides_and_reveals_like_every_face(org: Any) -> None:
    with org.unit_of_work() as s:
        c = start(s)
        cid = c.id
        body = marketing_answers(c)
        qs = team_input.questions(c)
    save = ["team-answers", "save", cid, "--as", "meg@acme.test"]
    for key, value in body["answers"].items():
        save += ["--answer", f"{key}={value}"]
    for key, value in body["ratings"].items():
        save += ["--rating", f"{key}={value}"]
    save += ["--comment", f"{qs[0].key}={SECRET}"]
    assert "only Marketing sees them" in cli(*save).stdout
    assert (
        "hidden from the other team"
        in cli("team-answers", "submit", cid, "--as", "lou@acme.test").stdout
    )
    for viewer in (["--as", "sid@acme.test"], []):
        shown = cli("team-answers", "show", cid, *viewer).stdout
        assert SECRET not in shown and "Marketing: submitted, answers hidden" in shown
        assert SECRET not in cli("team-answers", "show", cid, *viewer, "--json").stdout
        assert SECRET not in cli("team-answers", "export", cid, *viewer).stdout
    logged = cli("events", "--cycle", cid, "--json").stdout
    assert "team_answers.submitted" in logged and SECRET not in logged
    bad = cli(
        "team-answers", "save", cid, "--rating", "lead_quality=9", "--as", "sid@acme.test", code=1
    )
    assert "from 1 (poor) to 5" in bad.output
    assert (
        "point persons"
        in cli("team-answers", "reveal", cid, "--as", "lee@acme.test", code=1).output
    )
    cli("team-answers", "reveal", cid, "--as", "mia@acme.test")
    shown = cli("team-answers", "show", cid, "--as", "sid@acme.test", "--json").stdout
    assert SECRET in shown and json.loads(shown)["early"] is True
