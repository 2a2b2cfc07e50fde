"""The demo's own Prefect server (aligncycle.demo_server): which process it reuses or stops.

No server is started here (a first start migrates Prefect's database: 15-40 s); the demo
test in test_flows.py runs against the session's server. These check the bookkeeping that
decides which process the demo trusts and which one ``aligncycle demo --stop`` signals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligncycle import demo, demo_server
from aligncycle.cli import app


def _state(home: Path, pid: int, port: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / demo_server.STATE).write_text(json.dumps({"pid": pid, "port": port}))


def test_stop_without_a_server_says_so_and_succeeds(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("ALIGNCYCLE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ALIGNCYCLE_DEMO_DIR", raising=False)
    from aligncycle.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["demo", "--stop"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "the demo's Prefect server is not running"


def test_a_state_file_of_a_process_that_is_gone_is_not_reused(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _state(tmp_path, int(gone.stdout), 4200)
    assert demo_server.recorded(tmp_path) is None
    assert demo_server.stop(tmp_path) == "the demo's Prefect server is not running"
    assert not (tmp_path / demo_server.STATE).exists()


def test_a_live_process_that_is_not_the_demo_server_is_never_stopped(tmp_path: Path) -> None:
    """A pid reused after a restart: alive, but not ``flows.local_server`` on that port."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _state(tmp_path, other.pid, 4200)
        assert demo_server.recorded(tmp_path) is None
        demo_server.stop(tmp_path)
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


def test_a_broken_state_file_counts_as_no_server(tmp_path: Path) -> None:
    (tmp_path / demo_server.STATE).write_text("{not json")
    assert demo_server.recorded(tmp_path) is None


@pytest.mark.parametrize(
    ("env", "own"),
    [
        ({}, True),
        ({"ALIGNCYCLE_DEMO_PREFECT": "ephemeral"}, False),
        ({"PREFECT_API_URL": "http://127.0.0.1:4200/api"}, False),
    ],
)
def test_the_demo_starts_its_own_server_unless_told_otherwise(
    env: dict[str, str], own: bool, monkeypatch
) -> None:  # noqa: ANN001
    for key in ("ALIGNCYCLE_DEMO_PREFECT", "PREFECT_API_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert demo._own_server_wanted() is own


def test_a_server_that_dies_while_starting_is_one_line_naming_its_log(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server = demo_server.Server(pid=dead.pid, port=1, home=tmp_path)
    with pytest.raises(demo_server.ServerFailed) as caught:
        server.wait(timeout=5)
    assert str(caught.value) == (
        f"the demo's Prefect server stopped while starting; its log: {tmp_path / 'demo-server.log'}"
    )
    assert os.linesep not in str(caught.value)


@pytest.mark.parametrize("touched", [True, False], ids=["in use", "left idle"])
def test_the_server_stops_itself_only_when_no_demo_used_it_for_a_while(
    tmp_path: Path, touched: bool
) -> None:
    """The launcher ends its process (SIGTERM, Prefect's own shutdown) once the state file the
    demos touch is older than the idle time; a demo touching it keeps the server up."""
    state = tmp_path / demo_server.STATE
    state.write_text("{}")
    code = (
        "import sys, time, pathlib\n"
        "from flows.local_server import stop_when_idle\n"
        f"stop_when_idle({str(state)!r}, 0.6, every=0.1)\n"
        "for _ in range(30):\n"
        f"    {'pathlib.Path(' + repr(str(state)) + ').touch()' if touched else 'pass'}\n"
        "    time.sleep(0.1)\n"
    )
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, timeout=60
    )
    assert proc.returncode == (0 if touched else -15)
