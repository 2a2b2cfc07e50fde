"""Benchmarks judge themselves: each prints its verdict per target and exits non-zero when one
is missed (``bench/verdict.py``). The cheapest benchmark, ``bench cadence`` on small SQLite
stores, runs here once with an impossible target and once with a generous one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import __main__ as runner
from bench import verdict
from bench.verdict import Target
from tests.conftest import PROJECT

SMALL = ["cadence", "--sqlite", "--sizes", "3,6", "--items", "4"]


@pytest.fixture
def overrides(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    given: dict[str, float] = {}
    monkeypatch.setattr(verdict, "OVERRIDES", given)
    return given


def test_a_benchmark_that_misses_a_target_exits_non_zero(tmp_path: Path) -> None:
    out = tmp_path / "cadence.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *SMALL, "--out", str(out), "--target", "planning-ratio=0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(x.startswith("MISSED  planning-ratio: ") and "≤ 0.00x" in x for x in lines)
    assert lines[-1] == "verdict: MISSED (the only target missed)"
    assert "**MISSED**" in out.read_text()  # the results file says so too


def test_the_same_benchmark_within_its_target_exits_zero(
    tmp_path: Path, overrides: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cadence.md"
    code = runner.main([*SMALL, "--out", str(out), "--target", "planning-ratio=1000"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, printed[-5:]
    assert printed[-1] == "verdict: met (the only target)"
    assert overrides == {"planning-ratio": 1000.0}


def test_a_malformed_target_option_is_refused_before_anything_runs(
    overrides: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(["cadence", "--target", "planning-ratio"]) == 2
    assert "--target takes KEY=NUMBER" in capsys.readouterr().err
    assert overrides == {}


def test_the_verdict_of_targets(overrides: dict[str, float]) -> None:
    fast = Target("fast", "a read", 0.4, 0.5)
    slow = Target("slow", "another read", 0.6, 0.5, floor="the libraries alone, 0.3 s")
    speedup = Target("speed-up", "SQL against pandas", 4.0, 5.0, unit="x", at_least=True)
    lost = Target("lost", "a run that failed", math.nan, 30.0)

    assert verdict.verdict([fast]).exit_code == 0
    judged = verdict.verdict([fast, slow, speedup, lost], {})
    assert judged.exit_code == 1
    assert [t.key for t in judged.missed] == ["slow", "speed-up", "lost"]
    assert judged.lines() == [
        "met     fast: a read: 0.40 s (target ≤ 0.50 s)",
        "MISSED  slow: another read: 0.60 s (target ≤ 0.50 s; floor: the libraries alone, 0.3 s)",
        "MISSED  speed-up: SQL against pandas: 4.00x (target ≥ 5.00x)",
        "MISSED  lost: a run that failed: not measured (target ≤ 30.00 s)",
        "verdict: MISSED (3 of 4 targets missed)",
    ]
    # an override replaces a limit; one that names no target of the run is refused
    assert verdict.verdict([slow], {"slow": 1.0}).exit_code == 0
    unknown = verdict.verdict([slow], {"sloow": 1.0})
    assert unknown.exit_code == 2 and "no target sloow in this run" in unknown.lines()[-1]
    # a run that measured nothing has not met anything
    assert verdict.verdict([]).exit_code == 1


def test_bench_web_sizes_its_data_and_refuses_a_bad_scale(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench import web

    # 1x: 200 cycles (10,000 action items); 10x: ten times the history, the open work the same
    assert (web.cycles_at(1), web.cycles_at(10)) == (200, 2000)
    assert web.cycles_at(10) * web.ACTIONS_PER_CYCLE == 100_000
    assert web.results_file(1).name == "web.md" and web.results_file(10).name == "web-10x.md"
    assert web._cache_path(0, 10) != web._cache_path(0, 1)
    assert set(web.TARGETED) == {"board", "cycle page", "my work", "actions page"}
    for bad in (["--scale", "0"], ["--scale", "ten"], ["--leads", "-1"]):
        with pytest.raises(SystemExit) as stopped:
            web.main(bad)
        assert stopped.value.code == 2, bad
    assert "--scale" in capsys.readouterr().err


def test_a_target_that_could_not_be_measured_is_missed_with_its_reason() -> None:
    why = "warm-up: no answer within 30 s (request 1); 4 of 4 clients"
    judged = verdict.verdict(
        [Target("numbers-page", "numbers page, p95", math.nan, 300.0, "ms", reason=why)], {}
    )
    assert judged.exit_code == 1
    assert judged.lines()[0] == (
        f"MISSED  numbers-page: numbers page, p95: not measured: {why} (target ≤ 300.0 ms)"
    )
    assert f"not measured: {why}" in judged.markdown()


def test_the_web_benchmark_reports_a_view_that_does_not_answer_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts the connection and never answers: the client stops with a reason
    (the verdict's), not a traceback."""
    import socket

    from bench import web

    monkeypatch.setattr(web, "CLIENT_TIMEOUT_S", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        creds = {"cookie": "c", "token": "t"}
        times, why = web._client_run((base, creds, "numbers page", "/numbers", 3))
    assert times == []
    assert why == "no answer within 0.3 s (request 1)"
    assert web._failure("warm-up", [([], why), ([1.0], "")]).startswith("warm-up: no answer within")
    assert web._failure("warm-up", [([1.0], ""), ([2.0], "")]) == ""
