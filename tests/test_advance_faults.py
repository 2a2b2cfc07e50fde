"""An interrupted ``aligncycle cycle advance`` leaves a cycle that a re-run completes.

``cycle advance`` records everything the domain writes (the refresh, the gate, the move, the
new phase's proposals) in one transaction before the next phase's flow runs. The process is
interrupted (SIGKILL, or Ctrl-C) at two points: inside that transaction, after the proposals
are written but before the commit, and while the Plan flow runs after it. Either the cycle is
where it was with nothing written, or it is in Plan with every proposal; Ctrl-C says which in
one line and exits 130; and advancing again completes the cycle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models import phases
from models.enums import Phase
from models.phases import lifecycle
from models.schemas import GapDecide
from models.services import cycles, gaps
from models.services.common import person_by_email
from models.tables import ActionItem
from tests.conftest import db_snapshot
from tests.test_cli_refusals import walk

pytestmark = pytest.mark.prefect

PROBE = """
import os, signal, sys
from aligncycle.cli import main
from models.phases import lifecycle

point, how, cycle_id = sys.argv[1], sys.argv[2], sys.argv[3]


def interrupt():
    if how == "SIGINT":
        raise KeyboardInterrupt  # what Python does on Ctrl-C
    os.kill(os.getpid(), signal.SIGKILL)


if point == "in-transaction":  # the proposals are written (flushed), not committed
    real = lifecycle.start_phase

    def start_phase(session, *args, **kwargs):
        started = real(session, *args, **kwargs)
        session.flush()
        assert started.proposed, "the interruption must come after the proposals"
        interrupt()

    lifecycle.start_phase = start_phase
elif point == "in-flow":  # the transaction has committed; the Plan flow runs
    import flows.phases

    def run_phase(*args, **kwargs):
        interrupt()

    flows.phases.run_phase = run_phase
sys.argv = ["aligncycle", "cycle", "advance", cycle_id, "--as", "sam@acme.test"]
main()
"""


def ready_to_plan(store: Any) -> int:
    """A cycle in Identify whose gate is met: every gap accepted (Plan proposes for them)."""
    cid = walk(store, Phase.IDENTIFY)["cycle"]
    with store.unit_of_work() as s:
        lee = person_by_email(s, "lee@acme.test")
        for gap in gaps.list_gaps(s, cycles.get_cycle(s, cid)):
            if gap.decision.value == "open":
                phases.decide_gap(s, gap, GapDecide(decision="accepted"), lee)
    return cid


class _Undo(Exception):
    pass


def proposals_of_an_uninterrupted_advance(store: Any, cid: int) -> int:
    """How many action items Plan starts with, advancing in a unit of work then rolled back."""
    with pytest.raises(_Undo), store.unit_of_work() as s:
        sam = person_by_email(s, "sam@acme.test")
        moved = lifecycle.advance(s, cycles.get_cycle(s, cid), sam, today=date.today())
        count = len(moved.started.proposed)
        raise _Undo
    return count


def state(store: Any, cid: int) -> tuple[Phase, int]:
    with store.unit_of_work() as s:
        items = s.scalar(
            select(func.count()).select_from(ActionItem).where(ActionItem.cycle_id == cid)
        )
        return cycles.get_cycle(s, cid).phase, items or 0


def run(args: list[str], prefect_server: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        ALIGNCYCLE_ACTOR="",
    )
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=False)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("point", ["in-transaction", "in-flow"])
def test_an_interrupted_advance_leaves_a_cycle_that_a_rerun_completes(
    org: Any, prefect_server: str, data_dir: Path, tmp_path: Path, point: str, how: str
) -> None:
    cid = ready_to_plan(org)
    expected = proposals_of_an_uninterrupted_advance(org, cid)
    assert expected >= 3
    before = db_snapshot(org)
    done = run([sys.executable, "-c", PROBE, point, how, str(cid)], prefect_server, tmp_path)
    if how == "SIGKILL":
        assert done.returncode == -signal.SIGKILL, done.stderr
    else:
        assert done.returncode == 130, done.stderr
        assert "Traceback" not in done.stderr
        [line] = done.stderr.strip().splitlines()
        if point == "in-transaction":
            assert line == f"error: interrupted: nothing changed, cycle {cid} is where it was"
        else:
            assert line.startswith(f"error: interrupted: cycle {cid} moved to Plan with everything")
    phase, items = state(org, cid)
    if point == "in-transaction":
        assert db_snapshot(org) == before  # nothing of the half-done advance is left
        assert (phase, items) == (Phase.IDENTIFY, 0)
    else:
        assert (phase, items) == (Phase.PLAN, expected)  # the move and every proposal, together
        return
    # The same advance again (its domain steps, without waiting for another flow run).
    cli = "from aligncycle.cli import main; main()"
    again = run(
        [
            sys.executable,
            "-c",
            cli,
            "cycle",
            "advance",
            "--no-flows",
            str(cid),
            "--as",
            "sam@acme.test",
        ],
        prefect_server,
        tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert state(org, cid) == (Phase.PLAN, expected)
