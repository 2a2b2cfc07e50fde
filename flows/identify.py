"""Identify: the checklist for its owners, then the gap analysis from the answers."""

from __future__ import annotations

from datetime import date

from prefect import flow, task

from flows.runtime import (
    TASK,
    WRITER,
    check_phase,
    open_checklist,
    publish_markdown,
    publish_table,
    store,
    untagged,
)
from models.enums import Phase
from models.phases import identify as phase
from models.services import cycles as cycle_service


@task(name="record gaps from answers", **WRITER)
def collect_gaps(cycle_id: int) -> list[int]:
    """Answers that match a question's gap rule (and any other gap source) become gaps."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return [g.id for g in phase.raise_gaps(s, cycle)]


@task(name="gap analysis", **TASK)
def gap_analysis(cycle_id: int, today: date, new_gap_ids: list[int]) -> phase.IdentifyReport:
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return phase.identify_report(s, cycle, today, new_gap_ids)


@flow(name="identify", flow_run_name="identify-cycle-{cycle_id}", persist_result=False)
def identify_flow(cycle_id: int, today: date | None = None) -> phase.IdentifyReport:
    """Open the Identify checklist for its owners, record gaps from the answers given so far,
    and publish the gap analysis (a summary and a table of gaps). Safe to run again."""
    with untagged():
        today = today or date.today()
        check_phase(cycle_id, Phase.IDENTIFY)
        open_checklist(cycle_id, Phase.IDENTIFY)
        new = collect_gaps(cycle_id)
        report = gap_analysis(cycle_id, today, new)
        publish_markdown(
            cycle_id,
            "identify",
            phase.render_identify_markdown(report),
            f"Identify summary of cycle {cycle_id}",
        )
        publish_table(
            cycle_id, "gaps", phase.gaps_table(report), f"Gap analysis of cycle {cycle_id}"
        )
        return report
