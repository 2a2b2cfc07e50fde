"""Reading the CSV files of an import: checking each file against the mapping before anything
is written, decoding, the lines and rows, report footers, the order of numeric dates, and the
rejects files (published only by a committed import). :mod:`models.funnel.importer` writes
what is read here.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import BaseModel, Field

from models.errors import InvalidInput
from models.funnel.lost_dates import LostDates, LostDatesTally
from models.funnel.mapping import FilePart, MappingSpec
from models.funnel.readers import CompiledPart, HeaderMismatch, compile_part
from models.funnel.repeats import Repeated
from models.funnel.stages import Stages
from models.funnel.values import ORDER_HINT, Unmatched, date_evidence, show_columns

SAMPLE_REJECTS = 5
#: the first records of each kind a file wrote, kept for a preview's sample of them as stored
SAMPLE_ROWS = 5
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
    #: rows listing a record an earlier row of the file lists (not new, changed or unchanged)
    repeated: int = 0
    skipped: int = 0  # report header and footer lines, recognised and not counted as rows
    flagged: int = 0
    #: leads read with no MQL date: the KPIs count a lead from its MQL date, so not these
    undated: int = 0
    #: whether the mapping reads an MQL date from this file at all
    reads_mql: bool = True
    #: whether the mapping reads amounts from this file
    reads_amount: bool = False
    dates: str | None = None  # how numeric dates were read, when the file decided (auto)
    #: the currency of its amounts (ISO code), when they or the mapping said it
    currency: str | None = None
    #: looked-up values its lookup files do not list, per field
    unmatched: list[Unmatched] = []
    #: what its repeated rows were, with examples
    repeats: Repeated | None = None
    #: a deals file's stages, as the numbers read them (won, lost, open)
    stages: Stages | None = None
    #: records whose row is empty where the store held a date (an older export?)
    lost_dates: LostDates | None = None
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = []
    #: the keys of the first records of each kind ("leads", "deals") the file wrote: those a
    #: preview shows as stored (records an earlier file of the same name wrote are not these)
    first_keys: dict[str, list[str]] = Field(default={}, exclude=True)


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
        head = raw.read(8)
        kind = next((k for magic, k in _NOT_CSV if head.startswith(magic)), None)
        if kind is not None:
            raise InvalidInput(f"{path}: {kind}, not a CSV file; {_SAVE_AS_CSV}")
        encoding = _encoding(head[:4], spec.encoding)
        raw.seek(0)
        yield io.TextIOWrapper(raw, encoding=encoding, newline=""), raw, encoding


#: Files often uploaded in place of a CSV export, by their first bytes.
_NOT_CSV = (
    (b"PK\x03\x04", "an Excel workbook (or another zip archive)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a compressed (gzip) file"),
)
_SAVE_AS_CSV = (
    "export the report as CSV from the CRM, or save the sheet as CSV (in Excel: File, Save As, "
    "CSV UTF-8) and import that file"
)


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


def read_header(path: Path, spec: MappingSpec) -> list[str]:
    """The file's column names, read with ``spec``'s encoding and column separator; a header
    of one column that another separator would split is refused saying which."""
    header = _header(path, spec, spec.delimiter)
    hint = _hint(header, spec.delimiter)
    if hint:
        raise InvalidInput(f"{path}: its columns are read as one, {header[0][:60]!r}{hint}")
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
            hint = hint or (
                "; choose the profile of the system it came from, or write your own mapping "
                "naming these columns"
            )
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
    undated: int = 0
    dates: str | None = None
    currency: str | None = None
    unmatched: list[Unmatched] = field(default_factory=list)
    repeats: Repeated | None = None
    stages: Stages | None = None
    #: records whose row is empty where the store holds a date (models.funnel.lost_dates)
    lost: LostDatesTally = field(default_factory=LostDatesTally)
    rejects_file: str | None = None
    first_rejects: list[RejectedRow] = field(default_factory=list)
    rejects_writer: Any = None
    header: list[str] = field(default_factory=list)
    samples: int = SAMPLE_REJECTS  # how many rejected rows the summary lists
    first_keys: dict[str, list[str]] = field(default_factory=dict)

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
            repeated=self.repeats.rows if self.repeats else 0,
            skipped=self.skipped,
            flagged=flagged,
            undated=self.undated,
            reads_mql="mql_at" in self.compiled.part.fields,
            reads_amount="amount" in self.compiled.part.fields,
            dates=self.dates,
            currency=self.currency,
            unmatched=self.unmatched,
            repeats=self.repeats,
            stages=self.stages,
            lost_dates=self.lost.summary(),
            rejects_file=self.rejects_file,
            first_rejects=self.first_rejects,
            first_keys=self.first_keys,
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


#: Bytes read at a time looking for a numeric date (:func:`_may_hold_numeric_dates`).
_CHUNK = 1 << 20
#: Encodings that write digits, ``.``, ``/`` and ``-`` as their ASCII bytes and no other byte
#: of theirs as one of those (UTF-8: multibyte characters use bytes above 0x7f).
_ASCII_DIGITS = re.compile(
    r"utf[-_]?8(?:[-_]sig)?|ascii|latin[-_]?\d*|iso[-_]?8859[-_]\d+|(?:cp|windows-)125\d"
)


def _may_hold_numeric_dates(path: Path, spec: MappingSpec) -> bool:
    """Whether the file may hold a date whose order of day and month it would tell (or not
    tell): one to three digits after no digit, a separator (``.``, ``/``, ``-``), one or two
    digits, the same separator and a digit, anywhere in its bytes, or in UTF-8 a separator by
    a character of U+0660 or above (a superset of what
    :func:`models.funnel.values.date_evidence` reads from a value, whose digits may be of any
    script: the first digits after 0-9 are U+0660, Arabic-Indic). False only when nothing
    looks like one, so the scan of its rows is skipped: an export whose dates are all ISO
    (2025-03-25) was read twice (3.9 s of 1,000,000 leads, measured). Any doubt (an encoding
    whose digits are not single ASCII bytes, a file it cannot read) reads the rows."""
    try:
        with path.open("rb") as f:
            encoding = _encoding(f.read(4), spec.encoding).lower()
            if not _ASCII_DIGITS.fullmatch(encoding) or _other_digits(encoding):
                return True
            utf8 = encoding.startswith("utf")
            f.seek(0)
            tail = b""
            while chunk := f.read(_CHUNK):
                buf = tail + chunk
                if _numeric_date_in(buf, len(tail), utf8):
                    return True
                tail = buf[-8:]
    except OSError:
        return True
    return False


@cache
def _other_digits(encoding: str) -> bool:
    """Whether a single-byte encoding writes a digit other than 0-9 (Python reads any script's
    digits as numbers; none of those :data:`_ASCII_DIGITS` names does, checked here)."""
    if encoding.startswith("utf"):
        return False
    try:
        return any(
            re.fullmatch(r"\d", bytes([b]).decode(encoding, errors="ignore") or "x")
            for b in range(0x80, 0x100)
        )
    except LookupError:  # (a name this Python does not know: read the rows)
        return True


def _numeric_date_in(buf: bytes, known: int, utf8: bool) -> bool:
    """Whether ``buf`` holds a numeric date (:func:`_may_hold_numeric_dates`) whose first
    separator is at or past byte ``known`` - 4 (those before were looked at with the bytes
    after them)."""
    n = len(buf)
    a = np.zeros(n + 8, np.uint8)  # four bytes of nothing on each side
    a[4 : n + 4] = np.frombuffer(buf, np.uint8)
    d = (a >= 0x30) & (a <= 0x39)
    i = np.flatnonzero((a == 0x2D) | (a == 0x2E) | (a == 0x2F))
    i = i[(i >= max(4, known)) & (i < n + 4)]
    if not len(i):
        return False
    after_few = d[i - 1] & ~(d[i - 2] & d[i - 3] & d[i - 4])  # 1-3 digits before
    one = d[i + 1] & (a[i + 2] == a[i]) & d[i + 3]
    two = d[i + 1] & d[i + 2] & (a[i + 3] == a[i]) & d[i + 4]
    found = after_few & (one | two)
    if utf8:  # a digit of another script by a separator (Python reads ٢٥ as 25): U+0660 and
        # above, whose first byte is 0xd9 or more
        for k in (-4, -3, -2, -1, 1, 2, 3, 4):
            found |= a[i + k] >= 0xD9
    return bool(found.any())


def resolve_dates(
    path: Path, spec: MappingSpec, compiled: CompiledPart
) -> tuple[str | None, str | None]:
    """For ``dates: auto``: the order the file's numeric dates show, read from the whole file
    before anything is written, and how it was found. A file that shows both orders, or only
    values that read both ways, is refused naming the line, the column and the setting."""
    columns = compiled.date_columns
    if not columns or not _may_hold_numeric_dates(path, spec):
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
