"""Plan: action items proposed for the accepted gaps, and the plan gate."""

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
from models.phases import plan as phase
from models.services import cycles as cycle_service


@task(name="propose action items", **WRITER)
def propose(cycle_id: int, today: date) -> list[int]:
    """One item per accepted gap and playbook template; owners defaulted where one fits."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return [a.id for a in phase.propose_actions(s, cycle, today)]


@task(name="check the plan", **TASK)
def plan_summary(cycle_id: int, today: date, proposed: list[int]) -> phase.PlanReport:
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return phase.plan_report(s, cycle, today, proposed)


@flow(name="plan", flow_run_name="plan-cycle-{cycle_id}", persist_result=False)
def plan_flow(cycle_id: int, today: date | None = None) -> phase.PlanReport:
    """Open the Plan checklist, propose action items for accepted gaps from the playbook's
    templates, check the plan gate and publish the plan. Safe to run again."""
    with untagged():
        today = today or date.today()
        check_phase(cycle_id, Phase.PLAN)
        open_checklist(cycle_id, Phase.PLAN)
        proposed = propose(cycle_id, today)
        report = plan_summary(cycle_id, today, proposed)
        publish_markdown(
            cycle_id, "plan", phase.render_plan_markdown(report), f"Plan of cycle {cycle_id}"
        )
        publish_table(
            cycle_id,
            "actions",
            phase.actions_table(report.actions),
            f"Action items of cycle {cycle_id}",
        )
        return report
