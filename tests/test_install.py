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
