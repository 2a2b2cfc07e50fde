"""The cycle flow: one cycle, now — the flow of the phase it is in, and where it stands.

It does not wait for the point person's decision: no process is kept alive for days and no
form in the Prefect UI speaks for a person. The decision is made by a signed-in point person
in the web app (or with ``aligncycle cycle advance`` / the REST API), through the domain; the
move writes the phase outbox row and the next phase's flow is started from it
(:mod:`flows.dispatch`), whoever advanced. This flow publishes where the cycle stands and where
to decide (a link to the cycle's page when ``ALIGNCYCLE_BASE_URL`` is set).

The run carries the tags ``cycle:<id>`` and ``store:<id>``, like every phase run of the cycle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task

from flows.phases import run_phase
from flows.runtime import (
    TASK,
    cycle_page,
    cycle_tags,
    publish_markdown,
    store,
    tag_flow_run,
    untagged,
)
from models.enums import Phase
from models.errors import DomainError
from models.phases import lifecycle as domain
from models.services import cycles as cycle_service


@task(name="current phase", **TASK)
def current_phase(cycle_id: int) -> Phase:
    with store().unit_of_work() as s:
        return cycle_service.get_cycle(s, cycle_id).phase


@task(name="where the cycle stands", **TASK)
def decision_prompt(cycle_id: int, today: date, page_url: str | None) -> str:
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return domain.decision_prompt(s, cycle, today, page_url)


@flow(name="cycle", flow_run_name="cycle-{cycle_id}", persist_result=False)
def cycle_flow(cycle_id: int, today: date | None = None) -> Any:
    """Run the flow of the phase the cycle is in (closed: nothing), then publish where it
    stands and where a point person decides. Returns the phase flow's result."""
    with untagged():
        logger = get_run_logger()
        tag_flow_run(*cycle_tags(cycle_id))
        phase = current_phase(cycle_id)
        if phase is Phase.CLOSED:
            logger.info("cycle %s is closed; nothing to run", cycle_id)
            return None
        try:
            report = run_phase(phase, cycle_id, today)
        except DomainError as exc:
            logger.warning("%s flow refused: %s", phase, exc)
            report = None
        page = cycle_page(cycle_id)
        prompt = decision_prompt(cycle_id, today or date.today(), page)
        publish_markdown(cycle_id, "decision", prompt, f"Cycle {cycle_id}: where it stands")
        return report
