"""``aligncycle retro report``: the recap report kept in the store, printed or written to a
file, for operators (people download it from the cycle's recap page)."""

from __future__ import annotations

from datetime import date

from models.services import reports


def test_the_cli_prints_or_writes_the_stored_report(org, tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from aligncycle import cli_common
    from aligncycle.cli import app
    from aligncycle.web import seed

    with org.unit_of_work() as s:
        cycle = seed.start(s, "Reported", date(2031, 1, 1)).id
    runner = CliRunner()
    cli_common.reset_store()
    missing = runner.invoke(app, ["retro", "report", str(cycle)])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f"error: cycle {cycle} has no recap report yet (it is written when Recap runs)"
    ]
    with org.unit_of_work() as s:
        reports.save_recap_report(s, cycle, "done", "# Recap\n\nAll done.\n", date(2031, 3, 1))
    cli_common.reset_store()
    printed = runner.invoke(app, ["retro", "report", str(cycle)])
    assert (printed.exit_code, printed.output) == (0, "# Recap\n\nAll done.\n")
    target = tmp_path / "recap.md"
    written = runner.invoke(app, ["retro", "report", str(cycle), "-o", str(target)])
    assert written.exit_code == 0
    assert target.read_text() == "# Recap\n\nAll done.\n"
    assert runner.invoke(app, ["retro", "report", "999999"]).exit_code == 1
