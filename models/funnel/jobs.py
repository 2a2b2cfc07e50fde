"""Imports started in the web app or the API: one :class:`ImportJob` per upload.

- **Who.** Leads and managers import (the shared numbers are theirs to load); point persons
  and members are refused. A job is seen by the managers and by the leads of the team of the
  person who started it; anyone else is answered as if it did not exist.
- **Preview.** :func:`preview_import` runs the real import (:func:`import_files`) inside a
  SAVEPOINT that is rolled back: the counts per file, the rejected rows with their line and
  reason, the data-quality flags, and the first leads and deals as they would be stored.
  Nothing is written, not even a rejects file.
- **Import.** :func:`run_import` runs it for real, in the caller's unit of work, and marks the
  job imported in that same transaction: a job that says "imported" is one whose rows are in.
- **States.** previewing -> previewed | refused; previewed or failed -> importing -> imported
  | failed; any state but a running one -> discarded, or expired when its files are removed.
  Moves that can race (two confirms, a confirm and a discard) are conditional updates: one
  wins, the other is refused.

Like every service, nothing here commits: the caller owns the unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.orm import Session, joinedload

from models.base import utcnow
from models.enums import Role
from models.errors import Conflict, InvalidInput, NotFound
from models.funnel import columns
from models.funnel.access import require_importer
from models.funnel.files import SAMPLE_ROWS, FileSummary
from models.funnel.importer import (
    AfterFiles,
    ImportSummary,
    Progress,
    RejectsFiles,
    import_files,
)
from models.funnel.mapping import MappingSpec
from models.funnel.tables import Deal, ImportJob, Lead
from models.tables import Person
from models.words import quoted

PREVIEWING, PREVIEWED, REFUSED = "previewing", "previewed", "refused"
IMPORTING, IMPORTED, FAILED = "importing", "imported", "failed"
DISCARDED, EXPIRED = "discarded", "expired"
RUNNING = (PREVIEWING, IMPORTING)
#: States whose files may be previewed again, confirmed (when previewed) or discarded.
SETTLED = (PREVIEWED, REFUSED, FAILED)
#: How many rejected rows a preview lists (and it shows SAMPLE_ROWS of each file as stored).
PREVIEW_REJECTS = 20

LEAD_COLUMNS = (
    "external_id",
    "channel",
    "campaign",
    "owner",
    "team",
    "created_at",
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "rejection_reason",
)
DEAL_COLUMNS = (
    "external_id",
    "lead_key",
    "account",
    "stage",
    "owner",
    "team",
    "opportunity_at",
    "won_at",
    "lost_at",
    "amount_cents",
)


class SampleRow(BaseModel):
    """A lead or a deal as the import would store it: its line, and its values (timestamps
    as ISO 8601 UTC, amounts in cents)."""

    line: int | None
    values: dict[str, Any]


class FilePreview(BaseModel):
    file: str
    leads: list[SampleRow] = []
    deals: list[SampleRow] = []


class ImportPreview(BaseModel):
    """What an import would do, computed by running it and rolling it back."""

    summary: ImportSummary
    files: list[FilePreview]


# --- who -----------------------------------------------------------------------------------


def _visible(viewer: Person) -> ColumnElement[bool]:
    if viewer.role is Role.MANAGER:
        return true()
    return ImportJob.created_by_id.in_(select(Person.id).where(Person.team_id == viewer.team_id))


def files_read(job: ImportJob, spec: MappingSpec | None = None) -> list[dict[str, Any]]:
    """The job's uploaded files its preview and import read as records: every one, but those
    left out when their columns were matched, while the job is read by the columns matched
    (:mod:`models.funnel.columns`; a profile or a mapping of one's own reads them all), and
    those a mapping of one's own, ``spec``, looks values up in (:func:`lookups_uploaded`)."""
    matched = job.profile is None and job.mapping_name == columns.MAPPING_NAME
    lookups: set[str] = set()
    if spec is not None and job.profile is None:  # (a profile's lookups are shipped with it)
        lookups = lookups_uploaded(spec, [f["name"] for f in job.files])
    return [
        f for f in job.files if not (matched and f.get("left_out")) and f["name"] not in lookups
    ]


def lookups_uploaded(spec: MappingSpec, names: Sequence[str]) -> set[str]:
    """The files ``spec`` looks values up in, each one of ``names`` (the files uploaded with
    it). A mapping read for an upload reads no other file of the server: a lookup named by a
    path, or not uploaded, is refused."""
    found = columns.lookup_files(spec)
    for file in sorted(found):
        if file not in names:
            raise InvalidInput(
                f"the mapping looks values up in {quoted(Path(file).name)}, which is not among "
                "the uploaded files: upload it with them, and name it in the mapping by its file "
                "name alone"
            )
    return found


def left_out(job: ImportJob, names: Sequence[str]) -> list[dict[str, Any]]:
    """The job's files, those named marked as left out of the import (the others not)."""
    return [
        {k: v for k, v in f.items() if k != "left_out"}
        | ({"left_out": True} if f["name"] in names else {})
        for f in job.files
    ]


def get_job(session: Session, viewer: Person, job_id: int) -> ImportJob:
    """The job, if ``viewer`` may import and may see it; another team's job answers exactly
    like a missing one."""
    require_importer(viewer)
    job = session.scalar(select(ImportJob).where(ImportJob.id == job_id, _visible(viewer)))
    if job is None:
        raise NotFound(f"no import with id {job_id}")
    return job


def list_jobs(
    session: Session, viewer: Person, limit: int = 20, offset: int = 0
) -> tuple[list[ImportJob], int]:
    """The newest jobs ``viewer`` sees, newest first, and how many there are."""
    require_importer(viewer)
    stmt = select(ImportJob).where(_visible(viewer))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(ImportJob.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total or 0)


def open_jobs(session: Session, viewer: Person, limit: int = 50) -> list[ImportJob]:
    """The uploads ``viewer`` sees that are not imported and still keep their files (being
    previewed, ready to import, refused, importing or failed), newest first, each with the
    person who uploaded it: one statement. Imported ones are in
    :func:`models.funnel.history.import_history`; discarded and expired ones hold nothing."""
    require_importer(viewer)
    stmt = (
        select(ImportJob)
        .where(_visible(viewer), ImportJob.state.in_([*RUNNING, *SETTLED]))
        .options(joinedload(ImportJob.created_by))
        .order_by(ImportJob.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


# --- states --------------------------------------------------------------------------------


def create_job(
    session: Session,
    person: Person,
    *,
    files: list[dict[str, Any]],
    folder: str,
    profile: str | None,
    mapping_name: str | None,
    settings: dict[str, str],
) -> ImportJob:
    """A new job, about to be previewed (its files are in ``folder`` already)."""
    require_importer(person)
    job = ImportJob(
        created_by_id=person.id,
        state=PREVIEWING,
        profile=profile,
        mapping_name=mapping_name,
        settings=dict(settings),
        files=list(files),
        folder=folder,
    )
    session.add(job)
    session.flush()
    return job


def move(
    session: Session, job_id: int, from_states: Sequence[str], to_state: str, **values: Any
) -> bool:
    """Move the job to ``to_state`` (and set ``values``) if it is in one of ``from_states``:
    one conditional UPDATE, so of two requests racing for the same move only one gets True."""
    now = utcnow()
    values.setdefault("updated_at", now)
    if to_state not in RUNNING:
        values.setdefault("finished_at", now)
    result = session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.state.in_(list(from_states)))
        .values(state=to_state, **values)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return result.rowcount == 1


def require_move(
    session: Session, job: ImportJob, from_states: Sequence[str], to_state: str, **values: Any
) -> None:
    """:func:`move`, refused in one line when the job is not (or no longer) in a state that
    allows it."""
    state = job.state
    if not move(session, job.id, from_states, to_state, **values):
        session.refresh(job)
        raise Conflict(_refusal(job.state if job.state != state else state, to_state))


def _refusal(state: str, wanted: str) -> str:
    if state in RUNNING:
        return "this import is running; wait until it has finished"
    if state == IMPORTED:
        if wanted == DISCARDED:
            return "these files are imported already, and their uploaded copies removed"
        return "these files are imported already; upload them again to import them again"
    if state in (DISCARDED, EXPIRED):
        return "these files are no longer kept; upload them again"
    if wanted == IMPORTING and state == REFUSED:
        return "these files cannot be imported with these settings; preview them again first"
    return "this import cannot do that now; reload the page"


def stale_jobs(session: Session, before: datetime) -> list[ImportJob]:
    """Jobs that still keep their files, last changed before ``before`` and not running."""
    stmt = select(ImportJob).where(
        ImportJob.folder.is_not(None),
        ImportJob.updated_at < before,
        ImportJob.state.not_in(RUNNING),
    )
    return list(session.scalars(stmt))


# --- preview and import --------------------------------------------------------------------


def preview_import(
    session: Session,
    paths: list[Path],
    spec: MappingSpec,
    *,
    label: str,
    actor: Person | None = None,
    progress: Progress | None = None,
    after_files: AfterFiles | None = None,
) -> ImportPreview:
    """What importing ``paths`` would do: the real import inside a SAVEPOINT that is rolled
    back, whatever happens. A refusal (:class:`InvalidInput`) propagates, as from the import.
    ``progress`` and ``after_files``: as :func:`import_files` tells them."""
    savepoint = session.begin_nested()
    try:
        summary = import_files(
            session,
            paths,
            spec,
            mapping_label=label,
            actor=actor,
            progress=progress,
            after_files=after_files,
            sample_rejects=PREVIEW_REJECTS,
        )
        files = [_file_preview(session, spec.source, f) for f in summary.files]
    finally:
        savepoint.rollback()
        session.expire_all()
    for f in summary.files:
        f.file = Path(f.file).name
    return ImportPreview(summary=summary, files=files)


def _rows(session: Session, model: type, columns: tuple[str, ...], where: Any) -> list[SampleRow]:
    cols = [getattr(model, c) for c in columns]
    stmt = select(model.line, *cols).where(*where).order_by(model.line).limit(SAMPLE_ROWS)
    out = []
    for line, *values in session.execute(stmt):
        out.append(
            SampleRow(
                line=line,
                values={
                    c: v.isoformat() if isinstance(v, datetime) else v
                    for c, v in zip(columns, values, strict=True)
                },
            )
        )
    return out


def _file_preview(session: Session, source: str, f: FileSummary) -> FilePreview:
    """The first leads and deals the file wrote, as stored (by their line in that file): not
    the records an earlier file of the same name wrote (a weekly export's name stays)."""
    name = Path(f.file).name
    keys = f.first_keys
    leads = _rows(
        session,
        Lead,
        LEAD_COLUMNS,
        (Lead.source == source, Lead.file == name, Lead.external_id.in_(keys.get("leads", []))),
    )
    deals = _rows(
        session,
        Deal,
        DEAL_COLUMNS,
        (
            Deal.source == source,
            Deal.file == name,
            Deal.listed,
            Deal.external_id.in_(keys.get("deals", [])),
        ),
    )
    return FilePreview(file=name, leads=leads, deals=deals)


def run_import(
    session: Session,
    job: ImportJob,
    paths: list[Path],
    spec: MappingSpec,
    *,
    label: str,
    rejects: RejectsFiles | None,
    progress: Progress | None = None,
    after_files: AfterFiles | None = None,
    actor: Person | None = None,
) -> ImportSummary:
    """Import the job's files for real, in the caller's unit of work, and mark the job
    imported in the same transaction (with the summary; files by name only). ``progress``
    and ``after_files``: as :func:`import_files` tells them."""
    summary = import_files(
        session,
        paths,
        spec,
        mapping_label=label,
        rejects=rejects,
        progress=progress,
        after_files=after_files,
        actor=actor,
    )
    shown = summary.model_copy(deep=True)
    for f in shown.files:
        f.file = Path(f.file).name
    job.state = IMPORTED
    job.summary = shown.model_dump(mode="json")
    job.funnel_import_id = summary.import_id
    job.message = None
    job.finished_at = job.updated_at = utcnow()
    session.flush()
    return summary
