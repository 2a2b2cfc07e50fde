"""The imports into the shared numbers, newest first: every run of :func:`import_files` that
was kept (from the command line, the demo, the web app or the API), whatever started it.

- **What.** When it started and finished, the source, the mapping or profile, the files, the
  rows read, new, changed, unchanged, rejected and flagged: the numbers are shared by both
  teams, so every viewer sees these.
- **Who.** The person who imported it is named only to managers and to people of that
  person's team; anyone else reads the import without a name.
- **From where.** An import confirmed from an upload (web page or API) names its
  :class:`ImportJob`; the job itself is only for the viewers :mod:`models.funnel.jobs` lets see
  it (managers, and the team of the person who uploaded), so the job's id is given to them
  alone. ``uploaded`` says, for everyone, that the import came from an upload.

``viewer=None`` reads the whole store (the command line, which holds the store itself).
Reads only; nothing here writes or commits.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from models.enums import Role
from models.funnel.tables import FunnelImport, ImportJob
from models.tables import Person

#: How many imports a page shows.
HISTORY_PAGE = 25


class ImportRecord(BaseModel):
    """One import into the shared numbers, as ``viewer`` may see it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    source: str
    mapping: str
    files: list[str]
    rows_read: int
    rows_new: int
    rows_changed: int
    rows_unchanged: int
    rows_rejected: int
    rows_flagged: int
    #: rows listing a record an earlier row of their file lists (counted apart)
    rows_repeated: int = 0
    #: records of the source an import of the whole export removed
    rows_removed: int = 0
    #: the importer's name; None when unknown or not for this viewer
    imported_by: str | None = None
    #: the upload it was confirmed from, when this viewer may see that upload
    job_id: int | None = None
    #: it was confirmed from an upload (web page or API), seen by this viewer or not
    uploaded: bool = False


class ImportHistory(BaseModel):
    items: list[ImportRecord]
    total: int


def _records(limit: int, offset: int) -> Select:
    importer, creator = aliased(Person), aliased(Person)
    job = aliased(ImportJob)
    # one job per import (the one that wrote it); min() keeps it one row if ever two claim it
    first_job = (
        select(ImportJob.funnel_import_id.label("import_id"), func.min(ImportJob.id).label("id"))
        .where(ImportJob.funnel_import_id.is_not(None))
        .group_by(ImportJob.funnel_import_id)
        .subquery()
    )
    return (
        select(FunnelImport, importer.name, importer.team_id, job.id, creator.team_id)
        .outerjoin(importer, importer.id == FunnelImport.imported_by_id)
        .outerjoin(first_job, first_job.c.import_id == FunnelImport.id)
        .outerjoin(job, job.id == first_job.c.id)
        .outerjoin(creator, creator.id == job.created_by_id)
        .order_by(FunnelImport.id.desc())
        .limit(limit)
        .offset(offset)
    )


def _sees_team(viewer: Person | None, team_id: int | None) -> bool:
    if viewer is None or viewer.role is Role.MANAGER:
        return True
    return team_id is not None and team_id == viewer.team_id


def _record(
    viewer: Person | None,
    log: FunnelImport,
    name: str | None,
    team_id: int | None,
    job_id: int | None,
    job_team_id: int | None,
) -> ImportRecord:
    return ImportRecord(
        id=log.id,
        started_at=log.started_at,
        finished_at=log.finished_at,
        source=log.source,
        mapping=log.mapping,
        files=list(log.files or []),
        rows_read=log.rows_read,
        rows_new=log.rows_new,
        rows_changed=log.rows_changed,
        rows_unchanged=log.rows_unchanged,
        rows_rejected=log.rows_rejected,
        rows_flagged=log.rows_flagged,
        rows_repeated=log.rows_repeated,
        rows_removed=log.rows_removed,
        imported_by=name if name is not None and _sees_team(viewer, team_id) else None,
        job_id=job_id if job_id is not None and _sees_team(viewer, job_team_id) else None,
        uploaded=job_id is not None,
    )


def import_history(
    session: Session, viewer: Person | None, *, limit: int = HISTORY_PAGE, offset: int = 0
) -> ImportHistory:
    """The imports into the store, newest first (``limit`` of them from ``offset``), and how
    many there are: two statements, whatever the page."""
    total = session.scalar(select(func.count(FunnelImport.id))) or 0
    rows = session.execute(_records(limit, offset)).all()
    return ImportHistory(items=[_record(viewer, *row) for row in rows], total=int(total))


def latest_import(session: Session, viewer: Person | None) -> ImportRecord | None:
    """The newest import into the store, or None before the first: one statement."""
    row = session.execute(_records(1, 0)).first()
    return _record(viewer, *row) if row is not None else None
