"""Execute: one check-in pass over the cycle's open action items, the SLA breach ledger as of
the pass's date, and the progress report."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.artifacts import create_progress_artifact

from flows.runtime import (
    TASK,
    WRITER,
    artifact_key,
    check_phase,
    open_checklist,
    publish_markdown,
    store,
    untagged,
    without_limits,
)
from models.enums import Phase
from models.phases import execute as phase
from models.phases.breaches import record_breaches
from models.phases.common import action_owner_label
from models.services import actions as action_service
from models.services import cycles as cycle_service


def open_actions(cycle_id: int) -> list[tuple[int, str, str]]:
    """(id, title, owner) of every unfinished action item: a read inside the flow, not a task
    run of its own (each item's check-in is one, with its owner)."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return [(a.id, a.title, action_owner_label(a)) for a in phase.unfinished_actions(s, cycle)]


@task(name="check-in", **WRITER)
def check_in(action_id: int, today: date) -> bool:
    """Today's check-in on one item (at most one per item per day). True if written now."""
    with store().unit_of_work() as s:
        item = action_service.get_action(s, action_id)
        return phase.checkin_item(s, item, today)[1]


@task(name="record late leads", **WRITER)
def late_leads(cycle_id: int, today: date) -> int:
    """The SLA breach ledger as of ``today`` (the pass's date, not the clock): how many leads
    the cycle has recorded."""
    with store().unit_of_work() as s:
        return record_breaches(s, cycle_service.get_cycle(s, cycle_id), today)


@task(name="progress", **TASK)
def progress(cycle_id: int, today: date, written: int) -> phase.ExecuteReport:
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return phase.execute_report(s, cycle, today, written)


@flow(name="execute", flow_run_name="execute-cycle-{cycle_id}", persist_result=False)
def execute_flow(cycle_id: int, today: date | None = None) -> phase.ExecuteReport:
    """One check-in pass: progress, overdue items, the confidence roll-up and the success
    measures. Safe to run again and again (it is meant to be scheduled)."""
    with untagged():
        today = today or date.today()
        check_phase(cycle_id, Phase.EXECUTE)
        open_checklist(cycle_id, Phase.EXECUTE)
        written = 0
        for action_id, title, owner in open_actions(cycle_id):
            written += check_in.with_options(
                task_run_name=lambda name=f"check-in: {title}"[:120]: name,
                tags=without_limits([f"phase:{Phase.EXECUTE}", f"owner:{owner}"]),
            )(action_id, today)
        late_leads(cycle_id, today)
        report = progress(cycle_id, today, written)
        create_progress_artifact(
            report.percent_done,
            key=artifact_key(cycle_id, "progress"),
            description=f"Action items of cycle {cycle_id} done, {today.isoformat()}",
        )
        publish_markdown(
            cycle_id,
            "execute",
            phase.render_execute_markdown(report),
            f"Execute check-in of cycle {cycle_id}, {today.isoformat()}",
        )
        return report
