"""Recap reports kept in the store: written by the recap flow, read through the web app, the
API and the CLI (one visibility rule: another team's cycle has no report)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.errors import NotFound
from models.services import access
from models.tables import Person, RecapReportRecord


def save_recap_report(
    session: Session, cycle_id: int, headline: str, markdown: str, on_date: date
) -> RecapReportRecord:
    """Store the cycle's report, replacing the one a previous run wrote (whole, in the
    caller's unit of work)."""
    row = session.scalar(select(RecapReportRecord).where(RecapReportRecord.cycle_id == cycle_id))
    if row is None:
        row = RecapReportRecord(cycle_id=cycle_id)
        session.add(row)
    row.headline = headline[:500]
    row.markdown = markdown
    row.on_date = on_date
    row.written_at = utcnow()
    session.flush()
    return row


def find_recap_report(session: Session, cycle_id: int) -> RecapReportRecord | None:
    return session.scalar(select(RecapReportRecord).where(RecapReportRecord.cycle_id == cycle_id))


def recap_report(session: Session, viewer: Person | None, cycle_id: int) -> RecapReportRecord:
    """The stored report of a cycle ``viewer`` may see (``None``: the system, an operator's
    command); ``NotFound`` when the cycle is not visible or no recap has run yet."""
    if viewer is not None:
        access.visible_cycle(session, viewer, cycle_id)
    row = find_recap_report(session, cycle_id)
    if row is None:
        raise NotFound(f"cycle {cycle_id} has no recap report yet (it is written when Recap runs)")
    return row


def report_path(cycle_id: int) -> str:
    """Where the web app serves a cycle's stored report."""
    return f"/cycles/{cycle_id}/report.md"
