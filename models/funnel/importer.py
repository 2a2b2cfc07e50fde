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
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import operator
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
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
from models.funnel.flags import FlagRead, recompute_flags
from models.funnel.links import refresh_links
from models.funnel.mapping import FilePart, MappingSpec
from models.funnel.readers import CompiledPart, HeaderMismatch, compile_part
from models.funnel.rollups import SR, Touched, touched_months
from models.funnel.rollups import refresh as refresh_rollups
from models.funnel.tables import STAGE_FIELDS, Deal, FunnelImport, Lead
from models.funnel.values import ORDER_HINT, RowError, SettingNeeded, date_evidence, show_columns
from models.services.common import record_event
from models.tables import Person

LEADS = Lead.__table__
DEALS = Deal.__table__
DEFAULT_BATCH = 5000
SAMPLE_REJECTS = 5
SAMPLE_FLAGS = 5  # per kind of flag
#: The longest line read (characters): a longer one is no CSV export (``/dev/zero``, a binary).
MAX_LINE = 1_000_000

#: progress(file name, bytes read, file size in bytes, rows read)
Progress = Callable[[str, int, int, int], None]

#: Lines of a report export that are no records: Salesforce's footers (and a blank trailer).
FOOTERS = re.compile(
    r"(confidential information - do not distribute"
    r"|copyright \(c\) \d{4}(?:\s*-\s*\d{4})? salesforce\.com, inc\. all rights reserved\.?"
    r"|grand totals? \(\d[\d,.\s]* records?\)"
    r"|total \(\d[\d,.\s]* records?\))",
    re.IGNORECASE,
)


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
    skipped: int = 0  # report header and footer lines, recognised and not counted as rows
    flagged: int = 0
    dates: str | None = None  # how numeric dates were read, when the file decided (auto)
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = []


class ImportSummary(BaseModel):
    import_id: int
    source: str
    mapping: str
    files: list[FileSummary]
    #: every flag of the source after this import (flags are computed from the whole store)
    flags: int = 0
    flags_by_kind: dict[str, int] = {}
    first_flags: list[FlagRead] = []  # the first few of each kind

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


# --- rejects files: published only by a committed import ------------------------------------------


class RejectsFiles:
    """Where rejected rows go: ``<folder>/<file stem>.rejects.csv``, written to an unnamed
    temporary file in that folder until :meth:`publish` names it; :meth:`discard` (or a killed
    process) leaves nothing behind. Use :func:`rejects_files` to publish after the unit of work
    commits."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._open: list[tuple[Any, Path]] = []  # (unnamed file, final path)

    def open(self, stem: str) -> tuple[TextIO, Path] | None:
        if self.folder is None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = tempfile.TemporaryFile(  # noqa: SIM115 - open until published
                "w+", dir=self.folder, newline="", encoding="utf-8", prefix=f".{stem}."
            )
        except OSError as exc:
            raise InvalidInput(
                f"{self.folder}: cannot write the rejects file there: {exc.strerror}; "
                "set --rejects-dir"
            ) from None
        final = self.folder / f"{stem}.rejects.csv"
        self._open.append((handle, final))
        return handle, final

    def publish(self) -> None:
        """Name every rejects file (copied under a temporary name, then renamed over any
        older one in one step)."""
        for handle, final in self._open:
            handle.flush()
            handle.seek(0)
            fd, temp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.")
            try:
                with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
                    shutil.copyfileobj(handle, out)
                os.replace(temp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            finally:
                handle.close()
        self._open.clear()

    def discard(self) -> None:
        for handle, _final in self._open:
            handle.close()
        self._open.clear()


@contextlib.contextmanager
def rejects_files(folder: Path | None) -> Iterator[RejectsFiles]:
    """Rejects files published when the block ends without an exception. Open the unit of work
    *inside* the block, so it has committed when they are published."""
    sink = RejectsFiles(folder)
    try:
        yield sink
    except BaseException:
        sink.discard()
        raise
    sink.publish()


# --- reading files ------------------------------------------------------------------------------


def _delimiter(spec: MappingSpec, part: FilePart) -> str:
    return part.delimiter or spec.delimiter


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"))
_BOMS += ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _encoding(head: bytes, declared: str) -> str:
    """The declared encoding, unless the file starts with a UTF-16/32 byte-order mark (which
    says what it is) or a UTF-8 one (then the mark is not part of the first column's name)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if head.startswith(codecs.BOM_UTF8) and codecs.lookup(declared).name == "utf-8":
        return "utf-8-sig"
    return declared


@contextlib.contextmanager
def _open(path: Path, spec: MappingSpec) -> Iterator[tuple[TextIO, Any, str]]:
    try:
        info = path.stat()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"{path}: is a folder, not a CSV file")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{path}: is not a regular file (a device or a pipe); give a CSV file")
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    with raw:
        encoding = _encoding(raw.read(4), spec.encoding)
        raw.seek(0)
        yield io.TextIOWrapper(raw, encoding=encoding, newline=""), raw, encoding


class _Lines:
    """The file's lines for the csv module, each at most :data:`MAX_LINE` characters; notes
    whether the row being read holds a NUL character (``nul``)."""

    def __init__(self, text: TextIO, path: Path) -> None:
        self.text = text
        self.path = path
        self.nul = False

    def __iter__(self) -> Iterator[str]:
        readline = self.text.readline
        number = 0
        while line := readline(MAX_LINE + 1):  # a generator: cheaper per line than __next__
            number += 1
            if len(line) > MAX_LINE:
                raise InvalidInput(
                    f"{self.path}: line {number}: longer than {MAX_LINE:,} characters; this is "
                    "not a CSV export (or its 'delimiter' or quoting is wrong); nothing was "
                    "imported"
                )
            if "\x00" in line:
                self.nul = True
            yield line


def _decode_error(path: Path, encoding: str, line: int | None) -> InvalidInput:
    found = _first_undecodable(path, encoding)
    if found is not None:
        line, byte = found
        what = f"byte 0x{byte:02x} is not {encoding} text"
    else:
        what = f"not {encoding} text"
    where = f"line {line}: " if line else ""
    return InvalidInput(
        f"{path}: {where}{what}; set the encoding (encoding: latin-1 in the mapping, or "
        "--encoding latin-1 / utf-16); nothing was imported"
    )


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte) of the first byte that does not decode (the text reader reads ahead, so
    the row being parsed when decoding fails is not it)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk[: exc.start].count(b"\n"), chunk[exc.start]
            line += chunk.count(b"\n")
    return None


def _header(path: Path, spec: MappingSpec, delimiter: str) -> list[str]:
    with _open(path, spec) as (text, _raw, encoding):
        lines = _Lines(text, path)
        try:
            header = next(csv.reader(iter(lines), delimiter=delimiter), None)
        except UnicodeDecodeError:
            raise _decode_error(path, encoding, None) from None
        except csv.Error as exc:
            raise InvalidInput(f"{path}: line 1: not a readable CSV header: {exc}") from None
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not header or not any(h.strip() for h in header):
        raise InvalidInput(f"{path}: the file is empty (no header row)")
    if "\x00" in "".join(header):
        raise InvalidInput(f"{path}: line 1: the header holds a NUL byte; this is no CSV text")
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
        headers: dict[str, list[str]] = {}
        for i, part in enumerate(parts):
            delimiter = _delimiter(spec, part)
            if delimiter not in headers:
                headers[delimiter] = _header(path, spec, delimiter)
            try:
                fits.append((i, compile_part(spec, part, headers[delimiter], str(path))))
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
    # the mapping's order (leads before deals: what a reader of the summary expects), and
    # several files of one part (an export in chunks) by name: the order they were given in
    # does not matter
    planned.sort(key=lambda x: (x[0], x[1].name, str(x[1])))
    return [(path, compiled) for _, path, compiled in planned]


# --- one file's run ---------------------------------------------------------------------------


@dataclass
class _FileRun:
    path: Path
    compiled: CompiledPart
    sink: RejectsFiles | None
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    dates: str | None = None
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = field(default_factory=list)
    rejects_writer: Any = None
    header: list[str] = field(default_factory=list)
    samples: int = SAMPLE_REJECTS  # how many rejected rows the summary lists

    def reject(self, line: int, reason: str, row: list[str]) -> None:
        self.rejected += 1
        if len(self.first_rejects) < self.samples:
            self.first_rejects.append(RejectedRow(line=line, reason=reason))
        if self.sink is None:
            return
        if self.rejects_writer is None:
            opened = self.sink.open(self.path.stem)
            if opened is None:
                self.sink = None
                return
            handle, final = opened
            self.rejects_writer = csv.writer(handle)
            self.rejects_writer.writerow(["line", "reason", *self.header])
            self.rejects_file = str(final)
        self.rejects_writer.writerow([line, reason, *(c.replace("\x00", "") for c in row)])

    def summary(self, flagged: int) -> FileSummary:
        return FileSummary(
            file=str(self.path),
            part=self.compiled.part.name,
            rows=self.rows,
            new=self.new,
            changed=self.changed,
            unchanged=self.unchanged,
            rejected=self.rejected,
            skipped=self.skipped,
            flagged=flagged,
            dates=self.dates,
            rejects_file=self.rejects_file,
            first_rejects=self.first_rejects,
        )


def _rows(
    run: _FileRun, spec: MappingSpec, progress: Progress | None
) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, cells, holds a NUL) of every data row; decoding and CSV errors are fatal.
    Known report footers are counted as skipped and not yielded."""
    path = run.path
    size = path.stat().st_size
    with _open(path, spec) as (text, raw, encoding):
        lines = _Lines(text, path)
        reader = csv.reader(iter(lines), delimiter=_delimiter(spec, run.compiled.part))
        line, n = 1, 0
        try:
            run.header = next(reader)
            line = reader.line_num + 1
            for n, row in enumerate(reader, start=1):
                nul, lines.nul = lines.nul, False
                # a report footer: one non-blank cell, the first (checked in full only for
                # rows whose second and last cells are blank)
                if (len(row) <= 1 or not (row[1] or row[-1])) and not any(
                    c.strip() for c in row[1:]
                ):
                    first = row[0].strip() if row else ""
                    if not first or FOOTERS.fullmatch(first):
                        run.skipped += 1
                        line = reader.line_num + 1
                        continue
                yield line, row, nul
                line = reader.line_num + 1
                if progress is not None and n % 20000 == 0:
                    progress(path.name, raw.tell(), size, n)
        except UnicodeDecodeError:
            raise _decode_error(path, encoding, line) from None
        except csv.Error as exc:
            raise InvalidInput(
                f"{path}: line {line}: unreadable CSV ({exc}); nothing was imported"
            ) from None
        if progress is not None:
            progress(path.name, size, size, n)


def resolve_dates(
    path: Path, spec: MappingSpec, compiled: CompiledPart
) -> tuple[str | None, str | None]:
    """For ``dates: auto``: the order the file's numeric dates show, read from the whole file
    before anything is written, and how it was found. A file that shows both orders, or only
    values that read both ways, is refused naming the line, the column and the setting."""
    columns = compiled.date_columns
    if not columns:
        return None, None
    seen: dict[str, tuple[int, str, str]] = {}
    ambiguous: tuple[int, str, str] | None = None
    run = _FileRun(path=path, compiled=compiled, sink=None)
    for line, row, _nul in _rows(run, spec, None):
        for _name, column, idx in columns:
            if idx >= len(row):
                continue
            order, unsure = date_evidence(row[idx])
            if order and order not in seen:
                seen[order] = (line, column, row[idx].strip())
            elif unsure and ambiguous is None:
                ambiguous = (line, column, row[idx].strip())
        if len(seen) == 2:
            break
    if len(seen) == 2:
        (l1, c1, v1), (l2, c2, v2) = seen["day-first"], seen["month-first"]
        raise InvalidInput(
            f"{path}: line {l2}, column {c2!r}: {v2!r} is month-first but line {l1} ({c1!r}) has "
            f"{v1!r}, which is day-first: the file mixes both orders; fix the export (one date "
            "format) and import it again"
        )
    if seen:
        order, (line, column, value) = next(iter(seen.items()))
        return order, f"{order} (line {line}, column {column!r}: {value!r})"
    if ambiguous is not None:
        line, column, value = ambiguous
        raise InvalidInput(
            f"{path}: line {line}, column {column!r}: {value!r} reads both day-first and "
            f"month-first, and no date in the file tells which; {ORDER_HINT}"
        )
    return None, None


# --- writing -------------------------------------------------------------------------------------

#: PostgreSQL: each target table's batch goes by COPY into a temporary table (dropped at commit).
_PG_TYPES = {c: "bigint" for c in (*STAGE_FIELDS, "amount_cents", "line")}
_PG_TYPES["listed"] = "boolean"


class _Target:
    """Upserts one table's rows of a file (leads, deals, or the lead→deal links of a leads
    file), writing only the columns that file reads, and only rows that changed.

    The upsert is plain SQL on the driver (``INSERT ... ON CONFLICT (source, external_id) DO
    UPDATE``): per-row parameter processing in SQLAlchemy would cost more than the database."""

    def __init__(
        self,
        conn: Connection,
        table: Any,
        source: str,
        columns: list[str],
        counts: _FileRun | None = None,
        primary: _Target | None = None,
        touched: Touched | None = None,
    ) -> None:
        self.conn = conn
        #: the months (and records) the rollups must be refreshed for
        self.touched = touched
        self.is_deal = table is DEALS
        dated = ("opportunity_at", "won_at", "lost_at") if self.is_deal else ("mql_at",)
        self.date_idx = [i for i, c in enumerate(columns) if c in dated]
        #: a deal whose dates this file does not all write may be an open deal with none
        self.maybe_undated = self.is_deal and len(self.date_idx) < 3
        self.lead_key_idx = columns.index("lead_key") if "lead_key" in columns else None
        self.counts = counts  # the file run whose new/changed/unchanged this target counts
        #: the target that counts the file's rows, when this one writes the same rows' other
        #: half (a row that is a lead and its deal): a new or changed deal changes the row
        self.primary = primary
        self.unchanged_keys: set[str] = set()
        self.table = table
        self.source = source
        self.columns = ["source", "external_id", *columns]
        self.data_columns = columns
        self.pg = conn.dialect.name == "postgresql"
        self.written = 0
        self.analyze_at = 1  # PostgreSQL: refresh statistics after the first batch, then x2
        self.batch: dict[str, tuple[Any, ...]] = {}
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
            temp = f"funnel_import_{table.name}_{'_'.join(c[:4] for c in columns)}"[:60]
            types = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in self.columns)
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} ({types}) ON COMMIT DROP"
            )
            self.temp = temp
            self.copy_sql = f"COPY {temp} ({cols}) FROM STDIN"
            self.insert_sql = f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp}"
            self.insert_sql += conflict
        else:
            marks = ", ".join(["?"] * len(self.columns))
            self.insert_sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks}){conflict}"
        self.lookup_cols = [
            type_coerce(table.c[c], BigInteger) if c in _PG_TYPES and c != "listed" else table.c[c]
            for c in columns
        ]

    def existing(self, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        t = self.table
        if not self.pg:
            # SQLite, plain SQL on the driver: one statement per number of keys, which the
            # driver keeps prepared (and SQLAlchemy's cache would keep each statement's key
            # list: measured, memory grew with the file). Padding the keys to a power of two
            # (repeating one) keeps a dozen statements.
            size = 1 << (len(keys) - 1).bit_length()
            padded = keys + keys[-1:] * (size - len(keys))
            cursor = self.conn.exec_driver_sql(
                f"SELECT external_id, {', '.join(self.data_columns)} FROM {t.name} "
                f"WHERE source = ? AND external_id IN ({', '.join(['?'] * size)})",
                (self.source, *padded),
            )
            return {r[0]: tuple(r[1:]) for r in cursor.fetchall()}
        # PostgreSQL: one array parameter, not thousands of binds to parse and plan
        in_batch = t.c.external_id == any_(bindparam("keys", keys, type_=ARRAY(String)))
        result = self.conn.execute(
            select(t.c.external_id, *self.lookup_cols).where(t.c.source == self.source, in_batch)
        )
        try:
            rows = result.cursor.fetchall()  # plain values; no per-row work in SQLAlchemy
        finally:
            result.close()
        return {r[0]: tuple(r[1:]) for r in rows}

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not self.pg:
            self.conn.exec_driver_sql(self.insert_sql, rows)
            return
        # psycopg's COPY, on the connection (and so in the transaction) of the unit of work
        with self.conn.connection.driver_connection.cursor() as cur:
            cur.execute(f"TRUNCATE {self.temp}")
            with cur.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self.insert_sql)

    def add(self, key: str, values: tuple[Any, ...]) -> None:
        if key in self.batch:  # the same record twice in one file: the later row wins, in order
            self.flush()
        self.batch[key] = values

    def _touch(self, key: str, old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> None:
        t = self.touched
        assert t is not None
        if t.everything:
            return
        dates = [v for i in self.date_idx for v in (new[i], old[i] if old else None)]
        t.add_dates(*dates)
        if not self.is_deal:
            t.lead(key)
            return
        t.deal(key)
        if self.maybe_undated or not any(v is not None for v in dates):
            t.add_open_undated()
        i = self.lead_key_idx
        if i is not None and old is not None and old[i] is not None and old[i] != new[i]:
            t.lead(old[i])  # the deal's former lead: its deal summary changes

    def flush(self) -> None:
        counts = self.counts
        batch = self.batch
        if not batch:
            return
        if self.pg and self.written >= self.analyze_at:
            self.conn.exec_driver_sql(f"ANALYZE {self.table.name}")
            self.analyze_at = 2 * self.written
        stored = self.existing(list(batch))
        out = []
        source = self.source
        self.unchanged_keys = set()
        primary = self.primary
        listed = self.data_columns.index("listed") if "listed" in self.data_columns else None
        for key, values in batch.items():
            old = stored.get(key)
            if old == values:
                if counts is not None:
                    counts.unchanged += 1
                    self.unchanged_keys.add(key)
                continue
            if counts is not None:
                if old is None or (listed is not None and not old[listed]):
                    counts.new += 1  # a deal only a lead named so far is new to its deals file
                else:
                    counts.changed += 1
            elif primary is not None and key in primary.unchanged_keys and primary.counts:
                primary.counts.unchanged -= 1
                primary.counts.changed += 1
                primary.unchanged_keys.discard(key)
            out.append((source, key, *values))
            if self.touched is not None:
                self._touch(key, old, values)
        if out:
            self._write(out)
            self.written += len(out)
        self.batch = {}


_DEAL_COLUMN = {"amount": "amount_cents"}


def _import_file(
    conn: Connection,
    spec: MappingSpec,
    run: _FileRun,
    batch_size: int,
    progress: Progress | None,
    touched: Touched,
) -> None:
    compiled = run.compiled
    roles = compiled.roles
    by_name = {r.name: r for r in compiled.readers}
    file_name = run.path.name
    readers = [r for r in compiled.readers]
    plain = [(r.name, r.index, r.parse) for r in readers if r.parse is not None]
    others = [(r.name, r.read) for r in readers if r.parse is None]
    width = compiled.width
    key_field = "external_id" if "external_id" in by_name else "deal_id"
    key_column = compiled.part.fields[key_field].column

    lead_fields = list(roles.lead_fields)
    deal_fields = [f for f in roles.deal_fields if f != "lead_id"]
    leads = deals = links = None
    if roles.writes_lead:
        leads = _Target(
            conn, LEADS, spec.source, [*lead_fields, "file", "line"], run, touched=touched
        )
    if roles.deal_key is not None:
        deal_cols = [_DEAL_COLUMN.get(f, f) for f in deal_fields]
        if roles.deal_key == "external_id" or "lead_id" in roles.deal_fields:
            deal_cols += ["lead_key", "other_leads"]
        deals = _Target(
            conn,
            DEALS,
            spec.source,
            [*deal_cols, "listed", "file", "line"],
            None if leads is not None else run,
            primary=leads,
            touched=touched,
        )
    if roles.link:
        links = _Target(conn, DEALS, spec.source, ["lead_key"], touched=touched)
    targets = [t for t in (leads, deals, links) if t is not None]
    with_lead_key = deals is not None and "lead_key" in deals.data_columns
    lead_id_of_deal = roles.deal_key == "external_id"
    # one row is a lead and maybe its deal: a row with none of the deal's fields has no deal
    deal_optional = leads is not None
    deal_only = [f for f in deal_fields if f not in ("owner", "team")]
    none_of_deal = len(deal_only)
    deal_values = operator.itemgetter(*deal_only, *deal_only[:1]) if deal_only else None

    rows = pending = 0
    for line, row, nul in _rows(run, spec, progress):
        rows += 1
        if len(row) != width and (len(row) < width or any(c.strip() for c in row[width:])):
            run.reject(line, f"the row has {len(row)} fields, the header has {width}", row)
            continue
        if nul:
            columns = [run.header[i] for i, c in enumerate(row) if "\x00" in c and i < width]
            where = f" (column {columns[0]!r})" if columns else ""
            run.reject(line, f"the row holds a NUL byte{where}: a corrupt or binary line", row)
            continue
        record: dict[str, Any] = {}
        errors: list[str] = []
        try:
            for name, idx, parse in plain:
                record[name] = parse(row[idx])
            for name, read in others:
                record[name] = read(row)
        except SettingNeeded as exc:
            raise _setting_needed(run, compiled, row, line, exc) from None
        except RowError:  # the slow path: every field again, to report all that are wrong
            for reader in readers:
                try:
                    reader.read(row)
                except RowError as exc:
                    errors.append(str(exc))
                except SettingNeeded as exc:
                    raise _setting_needed(run, compiled, row, line, exc) from None
        key = record.get(key_field)
        if not key:
            errors.insert(0, f"missing id (column {key_column!r})")
        if errors:
            run.reject(line, "; ".join(errors), row)
            continue
        if leads is not None:
            leads.add(key, (*(record[f] for f in lead_fields), file_name, line))
        if deals is not None and not (
            # a row of a leads-and-deals file with none of the deal's fields has no deal (the
            # getter repeats the first field, so it always gives a tuple: all None = n + 1)
            deal_optional
            and deal_values is not None
            and deal_values(record).count(None) > none_of_deal
        ):
            values = [record[f] for f in deal_fields]
            if with_lead_key:
                if lead_id_of_deal:
                    values += [key, None]
                else:
                    ids = record.get("lead_id") or ()
                    values += [ids[0] if ids else None, ";".join(ids[1:]) or None]
            deals.add(key, (*values, True, file_name, line))
        if links is not None and record.get("converted_deal_id"):
            links.add(record["converted_deal_id"], (key,))
        pending += 1
        if pending >= batch_size:  # no target holds more than one row per row read
            run.rows, pending = rows, 0
            for target in targets:
                target.flush()
    run.rows = rows
    for target in targets:
        target.flush()


def _setting_needed(
    run: _FileRun, compiled: CompiledPart, row: list[str], line: int, exc: SettingNeeded
) -> InvalidInput:
    column = next(
        (c for _n, c, i in compiled.date_columns if i < len(row) and row[i].strip() == exc.value),
        None,
    )
    where = f"line {line}, column {column!r}" if column else f"line {line}"
    return InvalidInput(f"{run.path}: {where}: {exc}; nothing was imported")


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
) -> ImportSummary:
    """Import CSV files through a mapping, in the caller's transaction (never commits), then
    compute the source's data-quality flags afresh.

    Rejected rows go to ``rejects`` (see :func:`rejects_files`: published once the caller has
    committed); without it they are only counted and sampled (the first ``sample_rejects`` of
    each file are listed in the summary: a preview lists more than the command line)."""
    if not 1 <= batch_size <= 10000:
        raise InvalidInput("batch size must be between 1 and 10000")
    conn = session.connection()
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise InvalidInput(f"funnel import needs SQLite or PostgreSQL, not {conn.dialect.name}")
    plan = plan_files(spec, [Path(p) for p in paths])
    runs = []
    for path, compiled in plan:
        dates = None
        if spec.dates == "auto":
            order, dates = resolve_dates(path, spec, compiled)
            if order is not None:
                compiled = compile_part(
                    spec, compiled.part, list(compiled.header), str(path), dates=order
                )
        runs.append(
            _FileRun(
                path=path, compiled=compiled, sink=rejects, dates=dates, samples=sample_rejects
            )
        )
    log = FunnelImport(
        source=spec.source,
        mapping=mapping_label or spec.name,
        files=[p.name for p, _ in plan],
        imported_by_id=actor.id if actor else None,
    )
    session.add(log)
    session.flush()
    touched = Touched()
    if not _rollups_kept(conn, spec.source):
        touched.all()  # the source's first import (or first since migration 0010)
    for run in runs:
        _import_file(conn, spec, run, batch_size, progress, touched)
    refresh_links(session, spec.source)
    flags = recompute_flags(session, spec.source, log.id)
    # the KPI rollups of the months the import touched, in the same unit of work
    refresh_rollups(session, spec.source, touched_months(conn, spec.source, touched))
    per_file: dict[str, int] = {}
    for f in flags:
        per_file[f.file or ""] = per_file.get(f.file or "", 0) + 1
    summary = ImportSummary(
        import_id=log.id,
        source=spec.source,
        mapping=log.mapping,
        files=[r.summary(per_file.get(r.path.name, 0)) for r in runs],
        flags=len(flags),
        flags_by_kind=dict(Counter(f.kind for f in flags)),
        first_flags=_samples(flags),
    )
    log.rows_read = summary.rows
    log.rows_new = summary.new
    log.rows_changed = summary.changed
    log.rows_unchanged = summary.unchanged
    log.rows_rejected = summary.rejected
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
            "flagged": summary.flags,
        },
    )
    return summary


def _rollups_kept(conn: Connection, source: str) -> bool:
    return conn.execute(select(SR.c.source).where(SR.c.source == source)).first() is not None


def _samples(flags: list[FlagRead]) -> list[FlagRead]:
    """The first few flags of each kind, in file and line order."""
    seen: dict[str, int] = {}
    out = []
    for f in flags:
        seen[f.kind] = seen.get(f.kind, 0) + 1
        if seen[f.kind] <= SAMPLE_FLAGS:
            out.append(f)
    return out


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
