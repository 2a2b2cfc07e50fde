"""Recap: the retrospective from what happened, the recap report, and carry-over."""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

from prefect import flow, task
from pydantic import BaseModel

from flows.runtime import (
    WRITER,
    check_phase,
    open_checklist,
    publish_markdown,
    reports_dir,
    store,
    untagged,
)
from models.enums import Phase
from models.phases import recap as phase
from models.services import cycles as cycle_service


class RecapResult(BaseModel):
    report: phase.RecapReport
    path: str


@task(name="build the recap", **WRITER)
def build(cycle_id: int, today: date) -> phase.RecapReport:
    """Draft the retrospective (unless a person recorded one) and carry open items into any
    follow-up cycle started from this one."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        return phase.build_recap(s, cycle, today)


@task(name="write the recap report", **WRITER)
def write_report(cycle_id: int, markdown: str) -> str:
    """Write the report under the data dir's reports folder (replaced whole, never half)."""
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / phase.recap_filename(cycle_id)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".recap-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(markdown)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(target)


@flow(name="recap", flow_run_name="recap-cycle-{cycle_id}", persist_result=False)
def recap_flow(cycle_id: int, today: date | None = None) -> RecapResult:
    """Build the recap from what happened (done, dropped and late items, decided gaps, the
    survey, growth areas), publish it as an artifact and a report file. Safe to run again."""
    with untagged():
        today = today or date.today()
        check_phase(cycle_id, Phase.RECAP, Phase.CLOSED)
        open_checklist(cycle_id, Phase.RECAP)
        report = build(cycle_id, today)
        markdown = phase.render_recap_markdown(report)
        path = write_report(cycle_id, markdown)
        description = f"Recap of cycle {cycle_id}: {report.headline}"
        publish_markdown(cycle_id, "recap", markdown, description)
        return RecapResult(report=report, path=path)
