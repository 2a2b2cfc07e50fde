"""Recap: the retrospective from what happened, the recap report, and carry-over."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from pydantic import BaseModel

from flows.runtime import (
    WRITER,
    check_phase,
    open_checklist,
    publish_markdown,
    store,
    untagged,
)
from models.cadence.links import Links
from models.enums import Phase
from models.phases import recap as phase
from models.services import cycles as cycle_service
from models.services import reports


class RecapResult(BaseModel):
    report: phase.RecapReport
    #: Where the web app serves the stored report (a full URL when ``base_url`` is set).
    url: str


@task(name="build the recap", **WRITER)
def build(cycle_id: int, today: date) -> phase.RecapReport:
    """Draft the retrospective (unless a person recorded one) and carry open items into any
    follow-up cycle started from this one."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return phase.build_recap(s, cycle, today)


@task(name="store the recap report", **WRITER)
def store_report(cycle_id: int, today: date, headline: str, markdown: str) -> str:
    """Keep the report in the store (replacing a previous run's), where the web app serves it
    whichever worker ran this; returns its address in the web app."""
    with store().unit_of_work() as s:
        reports.save_recap_report(s, cycle_id, headline, markdown, today)
    path = reports.report_path(cycle_id)
    return Links.from_settings().url(path) or path


@flow(name="recap", flow_run_name="recap-cycle-{cycle_id}", persist_result=False)
def recap_flow(cycle_id: int, today: date | None = None) -> RecapResult:
    """Build the recap from what happened (done, dropped and late items, decided gaps, the
    survey, growth areas), publish it as an artifact and keep the report in the store. Safe to
    run again."""
    with untagged():
        today = today or date.today()
        check_phase(cycle_id, Phase.RECAP, Phase.CLOSED)
        open_checklist(cycle_id, Phase.RECAP)
        report = build(cycle_id, today)
        markdown = phase.render_recap_markdown(report)
        url = store_report(cycle_id, today, report.headline, markdown)
        description = f"Recap of cycle {cycle_id}: {report.headline}"
        publish_markdown(cycle_id, "recap", markdown, description)
        return RecapResult(report=report, url=url)
