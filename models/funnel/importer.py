"""Streaming, idempotent import of CSV exports into ``leads`` and ``deals``.

- Every file's header is checked against the mapping before anything is written: a wrong
  mapping or an unreadable file raises :class:`InvalidInput` and the store is left unchanged
  (the caller's unit of work rolls back; this module never commits). So is a file the declared
  settings cannot read without guessing (dates that read day-first and month-first, a file
  that mixes both orders, bytes that are not the declared encoding): one line names the file,
  the line, the column and the setting that resolves it.
- Rows are read with the ``csv`` module and written in batches (``INSERT ... ON CONFLICT DO
  UPDATE`` on the natural keys), so memory stays bounded whatever the file's size. A file that
  is no regular file, or a line longer than :data:`MAX_LINE` characters, is refused at once.
- A row that cannot be read (no id, an unreadable date or amount, a NUL byte) goes to the
  rejects file with its line number and reason and is counted; it never stops the import.
  Known report footers (Salesforce's "Confidential Information", copyright and "Grand Totals"
  lines) are recognised and skipped. A row that can be read is kept: what is odd about it
  (stages out of order, negative durations, zero or negative amounts) becomes a flag
  (:mod:`models.funnel.flags`), computed from the store after the files are in.
- Each field is written by one file only and a deal names its lead by the lead's id, not by a
  row resolved at import time, so files imported in any order, in one run or several, give the
  same store.
- Re-importing the same file changes nothing: rows equal to what is stored are counted as
  unchanged and not written at all.
- Rejects files are written under a temporary name (an unnamed file where the system has them)
  and published by :meth:`RejectsFiles.publish` once the caller has committed: an import that
  rolled back or was killed leaves none behind.

Reading the files is :mod:`models.funnel.files`; their rows into what is written,
:mod:`models.funnel.parse` (a big import's on SQLite in a second process, while this one
writes); writing one table's rows,
:mod:`models.funnel.upsert`; a first import's rows on PostgreSQL, :mod:`models.funnel.staging`;
this module runs an import from end to end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.errors import InvalidInput
from models.funnel import currency
from models.funnel.files import (
    MAX_LINE,
    SAMPLE_REJECTS,
    FileSummary,
    Progress,
    RejectedRow,
    RejectsFiles,
    _FileRun,
    plan_files,
    rejects_files,
    resolve_dates,
)
from models.funnel.flags import (
    WON_AND_LOST,
    FlagRead,
    UnfoundLeads,
    recompute_flags,
    unfound_leads,
)
from models.funnel.links import refresh_links
from models.funnel.mapping import MappingSpec
from models.funnel.parse import (
    Reader,
    Reject,
    Sinks,
    deal_has_lead_key,
    key_field,
    read_rows,
    wanted,
)
from models.funnel.readers import compile_part
from models.funnel.rollup_touched import Touched, touched_months
from models.funnel.rollups import SR
from models.funnel.rollups import refresh as refresh_rollups
from models.funnel.sql import holds
from models.funnel.staging import Staging
from models.funnel.tables import FunnelImport
from models.funnel.upsert import DEALS, LEADS, _Target
from models.funnel.whole_export import Listed, Removed, remove_unlisted
from models.services.common import record_event
from models.tables import Person

__all__ = [
    "MAX_LINE",
    "AfterFiles",
    "FileSummary",
    "ImportSummary",
    "Progress",
    "RejectedRow",
    "RejectsFiles",
    "SAVING",
    "deal_count",
    "import_files",
    "plan_files",
    "record_count",
    "rejects_files",
    "resolve_dates",
]

#: The last step after the files, told by the face that owns the unit of work just before it
#: commits (the import's caller: this module never commits).
SAVING = "saving the import"

DEFAULT_BATCH = 5000
#: after_files(what is being done, steps done, steps in all): the work after the files are
#: read (links, flags, the KPI rollups' grouped passes), for a progress display
AfterFiles = Callable[[str, int, int], None]


class ImportSummary(BaseModel):
    import_id: int
    source: str
    mapping: str
    files: list[FileSummary]
    #: every flag of the source after this import (flags are computed from the whole store)
    flags: int = 0
    flags_by_kind: dict[str, int] = {}
    first_flags: list[FlagRead] = []  # the first few of each kind
    #: the whole export: the records of the source its files did not list, removed, per kind
    removed: list[Removed] = []
    #: the deals of its files that name a lead the source does not hold, when some do
    unfound: UnfoundLeads | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def new(self) -> int:
        return sum(f.new for f in self.files)

    @property
    def changed(self) -> int:
        return sum(f.changed for f in self.files)

    @property
    def unchanged(self) -> int:
        return sum(f.unchanged for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def repeated(self) -> int:
        return sum(f.repeated for f in self.files)

    @property
    def removed_rows(self) -> int:
        return sum(r.rows for r in self.removed)


_DEAL_COLUMN = {"amount": "amount_cents"}


def _import_file(
    conn: Connection,
    spec: MappingSpec,
    run: _FileRun,
    batch_size: int,
    progress: Progress | None,
    touched: Touched,
    staging: Staging | None,
    reader: Reader | None,
    listed: Listed | None,
) -> tuple[int, _Target | None]:
    """Import one file (read here, or by ``reader``); the number of rows written, and the
    writer of its deals (None: it has none)."""
    compiled = run.compiled
    roles = compiled.roles
    lead_fields = list(roles.lead_fields)
    deal_fields = [f for f in roles.deal_fields if f != "lead_id"]
    leads = deals = links = None
    # PostgreSQL: a file with one target streams a first import's rows (models.funnel.upsert)
    alone = [roles.writes_lead, roles.deal_key is not None, roles.link].count(True) == 1
    if staging is not None:
        writes = {"leads"} if roles.writes_lead else set()
        if roles.deal_key is not None or roles.link:
            writes.add("deals")
        staging.before_file(writes)
    if roles.writes_lead:
        leads = _Target(
            conn,
            LEADS,
            spec.source,
            [*lead_fields, "file", "line"],
            run,
            touched=touched,
            staging=staging,
            stage=True,
            stream=alone,
            listed=listed.of("leads") if listed is not None else None,
        )
    if roles.deal_key is not None:
        deal_cols = [_DEAL_COLUMN.get(f, f) for f in deal_fields]
        if deal_has_lead_key(compiled):
            deal_cols += ["lead_key", "other_leads"]
        deals = _Target(
            conn,
            DEALS,
            spec.source,
            [*deal_cols, "listed", "file", "line"],
            None if leads is not None else run,
            primary=leads,
            touched=touched,
            staging=staging,
            stage=not roles.link,  # (the links write deals too: no staging of either)
            stream=alone,
            listed=listed.of("deals") if listed is not None else None,
        )
    if roles.link:
        links = _Target(
            conn,
            DEALS,
            spec.source,
            ["lead_key"],
            touched=touched,
            staging=staging,
        )
    targets = [t for t in (leads, deals, links) if t is not None]

    def batch_end(rows: int) -> None:
        run.rows = rows
        for target in targets:
            target.flush()

    sinks = Sinks(
        lead=leads.add if leads is not None else None,
        deal=deals.add if deals is not None else None,
        link=links.add if links is not None else None,
        batch_end=batch_end,
        reject=run.reject if listed is None else _listing_rejects(run, [leads, deals]),
    )
    try:
        if reader is not None:
            run.rows, run.undated = reader.read(run, progress, sinks)
        else:
            run.rows, run.undated = read_rows(run, spec, progress, sinks, batch_size)
    except BaseException as exc:
        for target in targets:  # a COPY left open would keep the connection from rolling back
            target.abort(exc)
        raise
    for target in targets:
        target.finish()
    for target, kind in ((leads, "leads"), (deals, "deals")):
        if target is not None:
            run.first_keys[kind] = target.first
    if deals is not None and deals.replaced.counts and run.stages is not None:
        run.stages = run.stages.less(deals.replaced)  # (a deal counted once, not once a row)
    for target in targets:  # (the deals of a file of leads add to the leads' repeats)
        if target.repeats is not None and target.counts is run:
            run.repeats = target.repeats.summary()
    return sum(t.written for t in targets), deals


def import_files(
    session: Session,
    paths: list[Path],
    spec: MappingSpec,
    *,
    mapping_label: str | None = None,
    rejects: RejectsFiles | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
    actor: Person | None = None,
    sample_rejects: int = SAMPLE_REJECTS,
    after_files: AfterFiles | None = None,
    parallel: bool | None = None,
    remove_most: bool = True,
) -> ImportSummary:
    """Import CSV files through a mapping, in the caller's transaction (never commits), then
    compute the source's data-quality flags afresh.

    Rejected rows go to ``rejects`` (see :func:`rejects_files`: published once the caller has
    committed); without it they are only counted and sampled (the first ``sample_rejects`` of
    each file are listed in the summary: a preview lists more than the command line).
    ``after_files`` is told each step of the work after the files are read. ``parallel``:
    whether the files are parsed in a second process while this one writes (None: on SQLite,
    when they are big: :func:`models.funnel.parse.wanted`). ``remove_most``: a whole export
    may remove more than half of a kind of record (the page's preview said so before it was
    confirmed); without it, that refuses the import (the command line, unattended)."""
    if not 1 <= batch_size <= 10000:
        raise InvalidInput("batch size must be between 1 and 10000")
    conn = session.connection()
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise InvalidInput(f"funnel import needs SQLite or PostgreSQL, not {conn.dialect.name}")
    if conn.dialect.name == "postgresql":
        # one import of a source at a time, until commit: new rows are COPied straight into
        # the tables once a lookup found their keys absent (models.funnel.upsert)
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"funnel:{spec.source}"}
        )
    plan = plan_files(spec, [Path(p) for p in paths])
    runs: list[tuple[_FileRun, str | None]] = []  # (run, the order of its numeric dates)
    for path, compiled in plan:
        dates = order = None
        if spec.dates == "auto":
            order, dates = resolve_dates(path, spec, compiled)
            if order is not None:
                compiled = compile_part(
                    spec, compiled.part, list(compiled.header), str(path), dates=order
                )
        run = _FileRun(
            path=path, compiled=compiled, sink=rejects, dates=dates, samples=sample_rejects
        )
        runs.append((run, order))
    log = FunnelImport(
        source=spec.source,
        mapping=mapping_label or spec.name,
        files=[r.path.name for r, _ in runs],
        imported_by_id=actor.id if actor else None,
    )
    session.add(log)
    session.flush()
    # SQLite: the links are the only writer of the derived columns, so a source that has no
    # row yet has none of them set when the links run
    unset = conn.dialect.name == "sqlite" and not holds(conn, spec.source)
    touched = Touched()
    if not _rollups_kept(conn, spec.source):
        touched.all()  # the source's first import (or first since migration 0010)
    # PostgreSQL: a first import's rows are staged, and go in after the files
    staging = Staging(conn, spec.source) if conn.dialect.name == "postgresql" else None
    written = 0
    # the whole export: the keys its files list, to remove the records they do not
    listed = Listed() if spec.whole_export else None
    # a big import's files are parsed in a second process while this one writes (here, when
    # it cannot be started: the same import, slower); it ends once they are read
    reader = None
    if wanted([r.path for r, _ in runs], parallel, conn.dialect.name):
        with contextlib.suppress(OSError):
            reader = Reader(spec, runs, batch_size, progress is not None)
    # SQLite: whether every deal of the source was written with its lead's fields, as they
    # are after the files (a first import's deals files, after every file of leads and none
    # naming deals): then the links need not check them; and whether some deals were
    # written with them at all (then a first import's deals may hold some to clear)
    deals_joined: bool | None = None
    some_joined = False
    try:
        for run, _order in runs:
            n, deals = _import_file(
                conn, spec, run, batch_size, progress, touched, staging, reader, listed
            )
            written += n
            roles = run.compiled.roles
            if roles.link or (roles.writes_lead and deals_joined is not None):
                deals_joined = False  # (leads written after deals, or deals' leads renamed)
            if deals is not None:
                some_joined = some_joined or deals.join_leads
                deals_joined = deals.joined and deals_joined is not False
    finally:
        if reader is not None:
            reader.close()
    # a source's amounts are added up: in one currency, which the import records
    log.currency = currency.check(conn, spec.source, [(r.path, r.currency) for r, _ in runs])
    currency.remember(session, spec.source, log.currency)
    tell = after_files or (lambda _what, _done, _of: None)
    tell("linking deals to their leads", 0, 1)
    # the derived columns were right after the last import (this is their only writer): an
    # import that wrote no row leaves them so, and one that staged everything wrote them
    exact = staging.finish() if staging is not None else False
    # the whole export: the records it does not list go (their links and rollups follow)
    removed = []
    if listed is not None:
        names = ", ".join(r.path.name for r, _ in runs)
        removed = remove_unlisted(conn, spec.source, listed, touched, remove_most, names)
    if removed:
        exact = False
    if (written or removed) and not exact:
        deal_fields = not (deals_joined and not removed)
        # (a deal written with its lead's fields, then moved to a lead not in the store)
        unset = unset and not (some_joined and deal_fields)
        refresh_links(session, spec.source, unset=unset, deal_fields=deal_fields)
    tell("checking the data quality", 0, 1)
    flags = recompute_flags(session, spec.source, log.id)
    tell("finding the months whose numbers changed", 0, 1)
    months = touched_months(conn, spec.source, touched)
    # the KPI rollups of those months, in the same unit of work; it tells how far it is once
    # it has counted the rows to read
    tell("summing up the numbers", 0, 1)
    refresh_rollups(
        session,
        spec.source,
        months,
        step=lambda done, of: tell("summing up the numbers", done, of),
        both=flags.by_kind[WON_AND_LOST] > 0,
    )
    summary = ImportSummary(
        import_id=log.id,
        source=spec.source,
        mapping=log.mapping,
        files=[r.summary(flags.by_file[r.path.name]) for r, _ in runs],
        flags=flags.total,
        flags_by_kind=dict(flags.by_kind),
        first_flags=flags.first(),
        removed=removed,
        unfound=unfound_leads(session, spec.source, flags, [r.path.name for r, _ in runs]),
    )
    log.rows_read = summary.rows
    log.rows_new = summary.new
    log.rows_changed = summary.changed
    log.rows_unchanged = summary.unchanged
    log.rows_rejected = summary.rejected
    log.rows_repeated = summary.repeated
    log.rows_removed = summary.removed_rows
    log.rows_flagged = summary.flags
    log.finished_at = utcnow()
    record_event(
        session,
        actor=actor,
        verb="funnel.imported",
        obj=log,
        object_type="funnel_import",
        after={
            "source": spec.source,
            "mapping": log.mapping,
            "files": log.files,
            "rows": summary.rows,
            "new": summary.new,
            "changed": summary.changed,
            "unchanged": summary.unchanged,
            "rejected": summary.rejected,
            "repeated": summary.repeated,
            "removed": summary.removed_rows,
            "flagged": summary.flags,
        },
    )
    return summary


def _listing_rejects(run: _FileRun, targets: list[_Target | None]) -> Reject:
    """The whole export: a row the import rejects (an unreadable date, too few fields) still
    lists its record, when its id can be read: the record is not removed for it."""
    name = key_field(run.compiled)
    reader = next(r for r in run.compiled.readers if r.name == name)
    sets = [t.listed for t in targets if t is not None and t.listed is not None]

    def reject(line: int, reason: str, cells: list[str]) -> None:
        run.reject(line, reason, cells)
        try:
            key = reader.read(cells)
        except Exception:  # noqa: BLE001 - no id to read: no record to keep
            return
        if key:
            for keys in sets:
                keys.add([key])

    return reject


def _rollups_kept(conn: Connection, source: str) -> bool:
    return conn.execute(select(SR.c.source).where(SR.c.source == source)).first() is not None


def record_count(session: Session, source: str | None = None) -> int:
    """How many leads the store holds (of one source)."""
    stmt = select(func.count()).select_from(LEADS)
    if source:
        stmt = stmt.where(LEADS.c.source == source)
    return int(session.connection().scalar(stmt) or 0)


def deal_count(session: Session, source: str | None = None) -> int:
    """How many deals the store holds (of one source), counting only deals a deals file listed."""
    stmt = select(func.count()).select_from(DEALS).where(DEALS.c.listed)
    if source:
        stmt = stmt.where(DEALS.c.source == source)
    return int(session.connection().scalar(stmt) or 0)
