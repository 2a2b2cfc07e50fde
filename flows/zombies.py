"""Zombie flow runs: the automation Prefect documents for self-hosted servers.

A flow run whose process died (a machine lost, a worker killed with its children, an
out-of-memory kill) stays "Running" on the server forever: nothing is left to report its end.
With heartbeats on (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, at least 30 s, in every worker's
environment), each run emits ``prefect.flow-run.heartbeat`` events; this automation marks a
run Crashed when, after a heartbeat, neither another heartbeat nor a final state arrives
within ``within`` seconds (Prefect's "detect zombie flows" guide; Prefect Cloud has it built
in). ``aligncycle flows setup`` creates it, or updates it when it exists (by name).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

NAME = "aligncycle: crash zombie flow runs"


def zombie_automation(within_seconds: int) -> Automation:
    return Automation(
        name=NAME,
        description=(
            "Marks a flow run Crashed when its heartbeats stop for "
            f"{within_seconds} s without a final state (its process died)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within_seconds} s: the run's process is gone.",
            )
        ],
    )


def ensure_zombie_automation(within_seconds: int) -> tuple[str, bool]:
    """Create the automation, or bring the existing one (same name) up to date.
    Returns (its id, whether it was created)."""
    wanted = zombie_automation(within_seconds)
    try:
        found = Automation.read(name=NAME)
    except ValueError:
        created = wanted.create()
        return str(created.id), True
    wanted.id = found.id
    wanted.update()
    return str(found.id), False
