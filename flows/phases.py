"""The four phase flows by phase, and running one in this process.

Above the phase flows (which build on :mod:`flows.runtime`), so nothing imports in a circle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import tags

from flows.execute import execute_flow
from flows.identify import identify_flow
from flows.plan import plan_flow
from flows.recap import recap_flow
from flows.runtime import cycle_tags, no_heartbeat
from models.enums import Phase

PHASE_FLOWS = {
    Phase.IDENTIFY: identify_flow,
    Phase.PLAN: plan_flow,
    Phase.EXECUTE: execute_flow,
    Phase.RECAP: recap_flow,
}


def phase_flow(phase: Phase) -> Any:
    try:
        return PHASE_FLOWS[phase]
    except KeyError:
        raise ValueError(f"no flow for phase {phase}") from None


def run_phase(
    phase: Phase, cycle_id: int, today: date | None = None, *, return_state: bool = False
) -> Any:
    """Run one phase's flow in this process (as a subflow inside a flow): heartbeat off, the
    run tagged with its cycle and phase. ``return_state``: its final state, not its result."""
    with no_heartbeat(), tags(*cycle_tags(cycle_id), f"phase:{phase}"):
        return phase_flow(phase)(cycle_id=cycle_id, today=today, return_state=return_state)
