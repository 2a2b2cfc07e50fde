"""The SLA breach ledger and scheduled starts on the command line: the ledger for the cycle's
teams only (anyone else: the answer a missing cycle gets), scheduled starts for managers only;
refusals are one line and a non-zero exit."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from tests.test_next_cycle_faces import march_with_breaches

runner = CliRunner()


def cli(*args: Any, code: int = 0) -> Any:
    cli_common.reset_store()
    result = runner.invoke(app, [str(a) for a in args], env={"ALIGNCYCLE_ACTOR": None})
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output
    return result


def test_the_command_line_reads_the_ledger_and_starts_scheduled_cycles(org: Any) -> None:
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people

    with org.unit_of_work() as s:
        cid = march_with_breaches(s)
        people.create_team(s, TeamCreate(key="support", name="Support"))
        people.create_person(
            s, PersonCreate(name="Ola", email="ola@acme.test", team="support", role="lead")
        )
    out = cli("cycle", "breaches", cid, "--as", "mia@acme.test").stdout
    assert "3 leads from paid search waited over 24 h; 3 of them had no owner." in out
    assert "0 of them were 120 h or more late: the managers hear of each once" in out
    refused = cli("cycle", "breaches", cid, "--as", "ola@acme.test", code=1)
    assert f"no cycle with id {cid}" in refused.output and len(refused.output.splitlines()) == 1
    no = cli("cycle", "start-scheduled", "--as", "lee@acme.test", code=1)
    assert "only managers can start the scheduled cycles" in no.output
    waiting = cli("cycle", "start-scheduled", "--as", "max@acme.test", "--today", "2024-04-01")
    assert "waiting: “March” is still in Execute" in waiting.stdout
