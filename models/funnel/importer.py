"""Streaming, idempotent import of CSV exports into ``funnel_records``.

- Every file's header is checked against the mapping before anything is written: a wrong
  mapping or an unreadable file raises :class:`InvalidInput` and the store is left unchanged
  (the caller's unit of work rolls back; this module never commits).
- Rows are read with the ``csv`` module and written in batches (``INSERT ... ON CONFLICT DO
  UPDATE`` on ``(source, external_id)``), so memory stays bounded whatever the file's size.
- A bad row (missing id, unreadable date or amount, stages in an impossible order) goes to the
  rejects file with its line number and reason, and is counted; it never stops the import.
- Re-importing the same file changes nothing: rows equal to what is stored are counted as
  unchanged and not written at all.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel
from sqlalchemy import BigInteger, Connection, String, any_, bindparam, func, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from models.base import utcnow
from models.errors import InvalidInput
from models.funnel.mapping import (
    CompiledPart,
    FilePart,
    HeaderMismatch,
    MappingSpec,
    RowError,
    compile_part,
    order_problems,
    show_columns,
)
from models.funnel.tables import RECORD_FIELDS, STAGE_FIELDS, FunnelImport, FunnelRecord
from models.services.common import record_event
from models.tables import Person

T = FunnelRecord.__table__
#: Record field -> stored column (only the amount differs: it is kept in cents).
COLUMN = {"amount": "amount_cents"}
ORDER_FIELDS = (
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "opportunity_at",
    "won_at",
    "lost_at",
)
DEFAULT_BATCH = 5000
SAMPLE_REJECTS = 5

#: progress(file name, bytes read, file size in bytes, rows read)
Progress = Callable[[str, int, int, int], None]


class RejectedRow(BaseModel):
    line: int
    reason: str


class FileSummary(BaseModel):
    file: str
    part: str
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = []


class ImportSummary(BaseModel):
    import_id: int
    source: str
    mapping: str
    files: list[FileSummary]

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


# --- reading files ------------------------------------------------------------------------------


def _delimiter(spec: MappingSpec, part: FilePart) -> str:
    return part.delimiter or spec.delimiter


@contextlib.contextmanager
def _open(path: Path, spec: MappingSpec) -> Iterator[tuple[TextIO, Any]]:
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder, not a CSV file")
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    with raw:
        yield io.TextIOWrapper(raw, encoding=spec.encoding, newline=""), raw


def _header(path: Path, spec: MappingSpec, delimiter: str) -> list[str]:
    with _open(path, spec) as (text, _raw):
        try:
            header = next(csv.reader(text, delimiter=delimiter), None)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{path}: the header is not {spec.encoding} text; set 'encoding' in the mapping "
                "(e.g. latin-1 or utf-16)"
            ) from None
        except csv.Error as exc:
            raise InvalidInput(f"{path}: line 1: not a readable CSV header: {exc}") from None
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not header or not any(h.strip() for h in header):
        raise InvalidInput(f"{path}: the file is empty (no header row)")
    return header


def _hint(header: list[str], delimiter: str) -> str:
    if len(header) == 1:
        for d in (";", "\t", "|", ","):
            if d != delimiter and d in header[0]:
                shown = "tab" if d == "\t" else repr(d)
                return f" (the header looks separated by {shown}: set 'delimiter' in the mapping)"
    return ""


def plan_files(spec: MappingSpec, paths: list[Path]) -> list[tuple[Path, CompiledPart]]:
    """Check every file against the mapping and bind it to its part, in the mapping's order.
    Raises :class:`InvalidInput` before anything is read beyond the headers."""
    if not paths:
        raise InvalidInput("give at least one file to import")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InvalidInput("the same file is given twice")
    parts = spec.parts()
    planned: list[tuple[int, Path, CompiledPart]] = []
    for path in paths:
        misses: list[tuple[str, HeaderMismatch]] = []
        fits: list[tuple[int, CompiledPart]] = []
        for i, part in enumerate(parts):
            delimiter = _delimiter(spec, part)
            header = _header(path, spec, delimiter)
            try:
                fits.append((i, compile_part(spec, part, header, str(path))))
            except HeaderMismatch as exc:
                misses.append((part.name, exc))
        if len(fits) > 1:  # the part that reads the most of the file's columns wins
            most = max(c.columns_read for _, c in fits)
            fits = [(i, c) for i, c in fits if c.columns_read == most]
        if not fits:
            first = misses[0][1]
            hint = _hint(first.header, _delimiter(spec, parts[0]))
            if len(parts) == 1:
                raise InvalidInput(str(first) + hint)
            why = "; ".join(f"{name}: no column {exc.column!r}" for name, exc in misses)
            raise InvalidInput(
                f"{path}: its columns fit none of the mapping's files ({why}); the file's "
                f"columns are: {show_columns(first.header)}{hint}"
            )
        if len(fits) > 1:
            names = ", ".join(parts[i].name for i, _ in fits)
            raise InvalidInput(
                f"{path}: its columns fit more than one of the mapping's files "
                f"({names}); the mapping must tell them apart"
            )
        planned.append((fits[0][0], path, fits[0][1]))
    taken = [i for i, _, _ in planned]
    if len(parts) > 1 and len(taken) != len(set(taken)):
        raise InvalidInput("two of the files fit the same part of the mapping; give each once")
    planned.sort(key=lambda x: x[0])
    return [(path, compiled) for _, path, compiled in planned]


# --- writing -------------------------------------------------------------------------------------


@dataclass
class _FileRun:
    path: Path
    compiled: CompiledPart
    rejects_path: Path | None
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = field(default_factory=list)
    rejects_writer: Any = None
    rejects_handle: Any = None
    header: list[str] = field(default_factory=list)

    def reject(self, line: int, reason: str, row: list[str]) -> None:
        self.rejected += 1
        if len(self.first_rejects) < SAMPLE_REJECTS:
            self.first_rejects.append(RejectedRow(line=line, reason=reason))
        if self.rejects_path is None:
            return
        if self.rejects_writer is None:
            self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
            self.rejects_handle = self.rejects_path.open("w", newline="", encoding="utf-8")
            self.rejects_writer = csv.writer(self.rejects_handle)
            self.rejects_writer.writerow(["line", "reason", *self.header])
            self.rejects_file = str(self.rejects_path)
        self.rejects_writer.writerow([line, reason, *row])

    def close(self) -> None:
        if self.rejects_handle is not None:
            self.rejects_handle.close()

    def summary(self) -> FileSummary:
        return FileSummary(
            file=str(self.path),
            part=self.compiled.part.name,
            rows=self.rows,
            new=self.new,
            changed=self.changed,
            unchanged=self.unchanged,
            rejected=self.rejected,
            rejects_file=self.rejects_file,
            first_rejects=self.first_rejects,
        )


#: PostgreSQL: the batch's temporary table (dropped at commit or rollback).
_PG_BATCH = "funnel_import_batch"
_ALL_COLUMNS = ("source", "external_id", *(COLUMN.get(f, f) for f in RECORD_FIELDS[1:]))
_PG_TYPES = {c: "bigint" for c in (*STAGE_FIELDS, "amount_cents")}


class _Writer:
    """Merges a batch with what is stored, checks stage order, and upserts what changed.

    The upsert is plain SQL on the driver (``INSERT ... ON CONFLICT (source, external_id) DO
    UPDATE``): per-row parameter processing in SQLAlchemy would cost more than the database."""

    def __init__(self, conn: Connection, source: str, compiled: CompiledPart) -> None:
        self.conn = conn
        self.source = source
        self.fields = compiled.fields
        self.columns = ["source", "external_id", *(COLUMN.get(f, f) for f in self.fields)]
        self.pg = conn.dialect.name == "postgresql"
        self.written = 0
        self.analyze_at = 1  # PostgreSQL: refresh statistics after the first batch, then x2
        if not self.pg and conn.dialect.name != "sqlite":
            raise InvalidInput(f"funnel import needs SQLite or PostgreSQL, not {conn.dialect.name}")
        cols = ", ".join(self.columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns[2:])
        conflict = " ON CONFLICT (source, external_id) DO " + (
            f"UPDATE SET {updates}" if updates else "NOTHING"
        )
        if self.pg:
            # The table grows batch by batch inside one transaction. With the statistics of
            # the table before the import (none, on a first one), PostgreSQL looks a batch's
            # keys up by `source` alone and filters every row of the source: measured, the
            # import became quadratic (18 s of lookups in the last quarter of 1M rows). So
            # each lookup is planned afresh, and the statistics are refreshed whenever the rows
            # written have doubled (ANALYZE counts this transaction's own rows).
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            # Rows go in by COPY into a temporary table, then one INSERT ... SELECT per batch.
            types = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in _ALL_COLUMNS)
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_BATCH} ({types}) ON COMMIT DROP"
            )
            self.copy_sql = f"COPY {_PG_BATCH} ({cols}) FROM STDIN"
            self.insert_sql = f"INSERT INTO {T.name} ({cols}) SELECT {cols} FROM {_PG_BATCH}"
            self.insert_sql += conflict
        else:
            marks = ", ".join(["?"] * len(self.columns))
            self.insert_sql = f"INSERT INTO {T.name} ({cols}) VALUES ({marks}){conflict}"
        wanted = dict.fromkeys([*self.fields, *ORDER_FIELDS])
        self.lookup_fields = list(wanted)
        self.lookup_cols = [
            type_coerce(T.c[COLUMN.get(f, f)], BigInteger).label(f)
            if f in STAGE_FIELDS
            else T.c[COLUMN.get(f, f)].label(f)
            for f in self.lookup_fields
        ]

    def existing(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self.pg:  # one array parameter, not thousands of binds to parse and plan
            in_batch = T.c.external_id == any_(bindparam("keys", keys, type_=ARRAY(String)))
        else:
            in_batch = T.c.external_id.in_(keys)
        result = self.conn.execute(
            select(T.c.external_id, *self.lookup_cols).where(T.c.source == self.source, in_batch)
        )
        try:
            rows = result.cursor.fetchall()  # plain values; no per-row work in SQLAlchemy
        finally:
            result.close()
        return {r[0]: dict(zip(self.lookup_fields, r[1:], strict=True)) for r in rows}

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not self.pg:
            self.conn.exec_driver_sql(self.insert_sql, rows)
            return
        # psycopg's COPY, on the connection (and so in the transaction) of the unit of work
        with self.conn.connection.driver_connection.cursor() as cur:
            cur.execute(f"TRUNCATE {_PG_BATCH}")
            with cur.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self.insert_sql)

    def flush(self, batch: dict[str, tuple[int, dict[str, Any], list[str]]], run: _FileRun) -> None:
        if not batch:
            return
        if self.pg and self.written >= self.analyze_at:
            self.conn.exec_driver_sql(f"ANALYZE {T.name}")
            self.analyze_at = 2 * self.written
        stored = self.existing(list(batch))
        out = []
        fields = self.fields
        source = self.source
        for ext, (line, record, row) in batch.items():
            old = stored.get(ext)
            problems = order_problems({**old, **record} if old else record)
            if problems:
                run.reject(line, "impossible order of stages: " + "; ".join(problems), row)
                continue
            if old is None:
                run.new += 1
            elif all(old[f] == record[f] for f in fields):
                run.unchanged += 1
                continue
            else:
                run.changed += 1
            out.append((source, ext, *(record[f] for f in fields)))
        if out:
            self.write(out)
            self.written += len(out)
        batch.clear()


def _rows(
    run: _FileRun, spec: MappingSpec, progress: Progress | None
) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every data row; decoding and CSV errors are fatal."""
    path = run.path
    size = path.stat().st_size
    with _open(path, spec) as (text, raw):
        reader = csv.reader(text, delimiter=_delimiter(spec, run.compiled.part))
        line, n = 1, 0
        try:
            run.header = next(reader)
            line = reader.line_num + 1
            for n, row in enumerate(reader, start=1):
                yield line, row
                line = reader.line_num + 1
                if progress is not None and n % 20000 == 0:
                    progress(path.name, raw.tell(), size, n)
        except UnicodeDecodeError:
            line = _first_undecodable_line(path, spec.encoding) or line
            raise InvalidInput(
                f"{path}: line {line}: not {spec.encoding} text; set 'encoding' in the mapping "
                "(e.g. latin-1); nothing was imported"
            ) from None
        except csv.Error as exc:
            raise InvalidInput(
                f"{path}: line {line}: unreadable CSV ({exc}); nothing was imported"
            ) from None
        if progress is not None:
            progress(path.name, size, size, n)


def _first_undecodable_line(path: Path, encoding: str) -> int | None:
    """The line of the first byte that does not decode (the text reader reads ahead, so the
    row being parsed when decoding fails is not it)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk[: exc.start].count(b"\n")
            line += chunk.count(b"\n")
    return None


def _import_file(
    conn: Connection,
    spec: MappingSpec,
    run: _FileRun,
    batch_size: int,
    progress: Progress | None,
) -> None:
    compiled = run.compiled
    fields = [r for r in compiled.readers if r.name != "external_id"]
    plain = [(r.name, r.index, r.parse) for r in fields if r.parse is not None]
    others = [(r.name, r.read) for r in fields if r.parse is None]
    readers = [(r.name, r.read) for r in fields]
    read_id = next(r.read for r in compiled.readers if r.name == "external_id")
    width = compiled.width
    writer = _Writer(conn, spec.source, compiled)
    id_column = compiled.part.fields["external_id"].column
    batch: dict[str, tuple[int, dict[str, Any], list[str]]] = {}
    rows = 0
    for line, row in _rows(run, spec, progress):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is not a record
        rows += 1
        if len(row) != width and (len(row) < width or any(c.strip() for c in row[width:])):
            run.reject(line, f"the row has {len(row)} fields, the header has {width}", row)
            continue
        errors: list[str] | None = None
        try:
            ext = read_id(row)
        except RowError as exc:
            ext, errors = None, [str(exc)]
        if not ext:
            errors = [f"missing external id (column {id_column!r})", *(errors or [])]
        record: dict[str, Any] = {}
        try:
            for name, idx, parse in plain:
                record[name] = parse(row[idx])
            for name, read in others:
                record[name] = read(row)
        except RowError:  # the slow path: every field again, to report all that are wrong
            for _name, read in readers:
                try:
                    read(row)
                except RowError as exc:
                    errors = [*(errors or []), str(exc)]
        if errors:
            run.reject(line, "; ".join(errors), row)
            continue
        if ext in batch:  # the same record twice in one file: the later row wins, in order
            writer.flush(batch, run)
        batch[ext] = (line, record, row)
        if len(batch) >= batch_size:
            run.rows = rows
            writer.flush(batch, run)
    run.rows = rows
    writer.flush(batch, run)


def import_files(
    session: Session,
    paths: list[Path],
    spec: MappingSpec,
    *,
    mapping_label: str | None = None,
    rejects_dir: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
    actor: Person | None = None,
) -> ImportSummary:
    """Import CSV files through a mapping, in the caller's transaction (never commits).

    Rejected rows are written to ``<rejects_dir>/<file stem>.rejects.csv`` (line, reason and the
    original cells); with ``rejects_dir`` None they are only counted and sampled."""
    if not 1 <= batch_size <= 10000:
        raise InvalidInput("batch size must be between 1 and 10000")
    plan = plan_files(spec, [Path(p) for p in paths])
    conn = session.connection()
    log = FunnelImport(
        source=spec.source,
        mapping=mapping_label or spec.name,
        files=[p.name for p, _ in plan],
        imported_by_id=actor.id if actor else None,
    )
    session.add(log)
    session.flush()
    runs = [
        _FileRun(
            path=path,
            compiled=compiled,
            rejects_path=(rejects_dir / f"{path.stem}.rejects.csv") if rejects_dir else None,
        )
        for path, compiled in plan
    ]
    try:
        for run in runs:
            try:
                _import_file(conn, spec, run, batch_size, progress)
            finally:
                run.close()
    except BaseException:
        for run in runs:  # the store is rolled back: don't leave rejects of an import that wasn't
            if run.rejects_file:
                Path(run.rejects_file).unlink(missing_ok=True)
        raise
    summary = ImportSummary(
        import_id=log.id,
        source=spec.source,
        mapping=log.mapping,
        files=[r.summary() for r in runs],
    )
    log.rows_read = summary.rows
    log.rows_new = summary.new
    log.rows_changed = summary.changed
    log.rows_unchanged = summary.unchanged
    log.rows_rejected = summary.rejected
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
        },
    )
    return summary


def record_count(session: Session, source: str | None = None) -> int:
    stmt = select(func.count()).select_from(T)
    if source:
        stmt = stmt.where(T.c.source == source)
    return int(session.connection().scalar(stmt) or 0)
