"""How a server is installed: ``make install-server`` installs the app and the PostgreSQL
driver, never the test tools or a browser, and runs no tests; ``[postgres]`` is the extra."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import PROJECT


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_install_server_installs_the_app_with_postgres_and_nothing_for_tests() -> None:
    done = subprocess.run(
        ["make", "-n", "install-server"], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    steps = done.stdout
    assert 'pip install --quiet --disable-pip-version-check -e ".[postgres]"' in steps
    for never in ("[test]", "install-browser", "install-axe", "pytest", "playwright", "chromium"):
        assert never not in steps, never


def test_the_postgres_extra_is_the_driver_and_the_app_needs_no_test_tool() -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert any(
        d.startswith("psycopg[binary]") for d in project["optional-dependencies"]["postgres"]
    )
    base = " ".join(project["dependencies"])
    for tool in ("pytest", "playwright", "schemathesis", "ruff"):
        assert tool not in base
    assert "prometheus-client" in base


def test_every_setting_the_company_doc_names_for_the_web_app_exists() -> None:
    """The web app's environment file of docs/running-for-a-company.md: every ALIGNCYCLE_
    variable is a setting (a typo there would be ignored silently), and the unit's command
    line is one ``serve`` accepts."""
    import re

    from typer.testing import CliRunner

    from aligncycle.cli import app
    from aligncycle.web.deps import WebSettings

    doc = (PROJECT / "docs" / "running-for-a-company.md").read_text()
    env_file = doc.split("# /etc/aligncycle/web.env", 1)[1].split("```", 1)[0]
    names = re.findall(r"^ALIGNCYCLE_([A-Z_]+)=", env_file, re.M)
    assert len(names) >= 6
    fields = {f.upper() for f in WebSettings.model_fields}
    assert set(names) <= fields, set(names) - fields
    unit = doc.split("# /etc/systemd/system/aligncycle-web.service", 1)[1]
    command = re.search(r"ExecStart=\S+/aligncycle (.+)", unit).group(1).split()
    assert command[0] == "serve"
    usage = CliRunner().invoke(app, [*command, "--help"])
    assert usage.exit_code == 0, usage.output
