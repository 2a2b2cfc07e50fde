"""The rollups kept by day and month, built in one pass over a source's rows with numpy
(:func:`models.funnel.rollups.refresh` writes what this module yields).

The grouped SQL passes this replaces (one per dimension and table, each a sort of the rows
with every group's values concatenated as text) took 16-19 s of a 39-46 s import at
1,000,000 leads on SQLite; this takes 9 s, most of it reading the rows (measured). Here the
database computes each row's terms (the same expressions as every KPI query:
:mod:`models.funnel.sql`) and the rows are read once, as integers and the group dimensions'
spellings:

1. **read and partition**: rows are fetched in chunks, turned into numpy columns (spellings as
   small integer codes) and appended to a temporary file per part of a month (:data:`PARTS`).
   On PostgreSQL one binary ``COPY`` carries every value as a 64-bit integer (a spelling as its
   hash) and numpy decodes it (:func:`_copied`: 10.4 s to 7.7 s for the whole build at
   1,000,000 leads); on SQLite a range of ids at a time comes as one row, each column's
   values joined into a text that numpy parses (:func:`_joined`: 10.5 s to 7.5 s for reading
   1,000,000 leads and 1,180,000 deals); else the driver's rows are read, :data:`CHUNK` at a
   time;
2. **the days**: each part's records are grouped by day and key (a day is in one part);
3. **the month**, a dimension at a time: its parts are read again and grouped by key.

So memory holds a chunk, up to :data:`SPILL_BUFFER` of records waiting to be spilled, a part
and one dimension's values of a month, whatever the store's size (tracemalloc peak 10.9 MB at
1,000,000 leads and 11.7 MB at 3,000,000 before the 8 MB buffer was added). A grouping's counts
are counted (``bincount``); its values are sorted per group by one sort and sliced into the
rollups' sorted 64-bit integers (stored as their excess over the group's smallest:
:mod:`models.funnel.distributions`); a group's label is its spelling that sorts first
(code-point order, as ``first_spelling`` in SQL).

A caseless dimension's key is the database's own ``lower()`` of each spelling (asked once per
distinct spelling), so keys are those a KPI query groups by on either backend.
The rows yielded are exactly those of the row-level queries (``tests/test_kpi_rollups.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import queue
import shutil
import socket
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import cache, partial, reduce
from operator import add
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)

from models.db import local_setting
from models.funnel.distributions import pack
from models.funnel.sql import (
    CASELESS,
    D,
    L,
    day_of,
    deal_dims,
    deal_terms,
    lead_conditions,
    lead_dims,
    lead_terms,
    month_of,
)

#: A NULL among the integers read (below every real value, NO_DATE included).
NULL = -(1 << 63)
_NULL_SQL = literal_column("(-9223372036854775807 - 1)")
#: Groups are numbered by counting into an array of every possible group when there are at
#: most this many (plus four per record); else by sorting (``np.unique``).
DENSE = 65536
#: A month's records are kept in this many parts (days 1-8, 9-16, 17-24, 25 on): a day's
#: rollup rows are built from its part, a month's a dimension at a time from its parts, so
#: memory holds a part and a month's values of one dimension, not a month's records.
PARTS = 4
#: Bytes of records held before they are appended to their parts' files.
SPILL_BUFFER = 8 << 20
#: Rows read at a time.
CHUNK = 8192
#: The dimensions a rollup row is grouped by ("": none, everything in the period).
DIMS = ("", "channel", "campaign", "owner", "team")
#: Those kept by day (and month): everything, and the dimensions with few values whatever the
#: store's size (channels, teams). Campaigns and owners are kept by month only: by day they
#: would be nearly as many rows as leads (200 campaigns x 730 days for 1M leads, measured).
DAY_DIMS = ("", "channel", "team")
KINDS = ("won", "lost", "open")  # a deal's event: its win, else its loss, else its being open
#: The counts of a lead rollup row after ``mqls``, in order; each is a bit of the row's ``bits``.
LEAD_BITS = (
    "sqls",
    "won",
    "decided",
    "rejected",
    "touched",
    "untouched",
    "deal_leads",
    "opp_dated",
    "reached_sql",
)
_EPOCH_MONTH = 1970 * 12
#: told(rows): how many rows are read (or records summed up) so far, for progress
Told = Callable[[int], None]


def in_ranges(col: Any, ranges: list[tuple[int, int]] | None) -> Any:
    if ranges is None:
        return col.is_not(None)
    return or_(*(and_(col >= a, col < b) for a, b in ranges))


def deal_events(undated: bool, ranges: list[tuple[int, int]] | None) -> dict[str, Any]:
    """A deal's event, row by row: its win, else its loss, else its being open, at the date of
    that event (an open one at its creation; ``undated``: also the open deals with no date)."""
    t = deal_terms()
    won, lost = t.won.is_not(None), t.lost.is_not(None)
    at = func.coalesce(t.won, t.lost, t.opp)
    dated = [] if ranges == [] else [in_ranges(at, ranges)]
    return {
        "kinds": case(
            (won, literal_column("'won'")),
            (lost, literal_column("'lost'")),
            else_=literal_column("'open'"),
        ),
        "kind": case((won, 0), (lost, 1), else_=2),
        "at": at,
        "month": month_of(at),
        "where": or_(*dated, *([at.is_(None)] if undated else [])),
        "priced": case((or_(won, ~lost), t.amount)),  # a lost deal's amount counts nowhere
        "time": case(
            (and_(won, t.start.is_not(None)), t.won - t.start),  # a won deal's cycle
            (and_(~won, ~lost), t.opp),  # an open deal's creation
        ),
    }


def _int(x: ColumnElement[Any]) -> ColumnElement[int]:
    return func.coalesce(x, _NULL_SQL)


def _of_source(table: Any, source: str, scan: bool) -> Any:
    """The rows of ``source``; ``scan``: only those of a range of ids (parameters ``lo`` and
    ``hi``), with the source compared as an expression, so SQLite walks that range of the
    table instead of every row of the source in the (source, external_id) index."""
    if not scan:
        return table.c.source == source
    return and_(
        table.c.source.concat("") == source,
        table.c.id >= bindparam("lo", type_=BigInteger),
        table.c.id < bindparam("hi", type_=BigInteger),
    )


def lead_stmt(source: str, ranges: list[tuple[int, int]] | None, scan: bool = False) -> Any:
    t = lead_terms()
    conds = lead_conditions(t)
    bits = reduce(
        add, (case((conds[n], literal(1 << i)), else_=literal(0)) for i, n in enumerate(LEAD_BITS))
    )
    dims = lead_dims()
    return select(
        day_of(t.mql),
        _int(case((t.touched, t.touch - t.mql))),
        _int(case((t.touch.is_(None), t.mql))),
        _int(case((and_(t.is_open, t.progressed), t.last_progress))),
        bits,
        *(dims[d] for d in DIMS[1:]),
        case((t.rejected_only, t.reason)),
    ).where(_of_source(L, source, scan), in_ranges(t.mql, ranges))


def deal_stmt(
    source: str, ranges: list[tuple[int, int]] | None, undated: bool, scan: bool = False
) -> Any:
    e = deal_events(undated, ranges)
    dims = deal_dims()
    return select(
        e["kind"],
        _int(day_of(e["at"])),
        _int(e["priced"]),
        _int(e["time"]),
        *(dims[d] for d in DIMS[1:]),
    ).where(D.c.listed, _of_source(D, source, scan), e["where"])


class _Codes:
    """Spellings as small integers (code 0: NULL), with each one's rank in code-point order
    and its key (the database's ``lower()`` for a caseless dimension)."""

    def __init__(self) -> None:
        self.index: dict[str | None, int] = {None: 0}
        self.spellings: list[str | None] = [None]

    def encode(self, values: Sequence[Any], null: str | None = None) -> np.ndarray:
        """Each value's code; ``null``: a text that stands for NULL among ``values`` (none
        of which is that text)."""
        index = self.index
        real = index.get(null) if null is not None else None  # (a spelling of other rows)
        if null is not None:
            index[null] = 0
        try:
            return np.fromiter(map(index.__getitem__, values), np.int32, len(values))
        except KeyError:
            for v in dict.fromkeys(values):
                if v not in index:
                    index[v] = len(self.spellings)
                    self.spellings.append(v)
            return np.fromiter(map(index.__getitem__, values), np.int32, len(values))
        finally:
            if real is not None:
                index[null] = real
            elif null is not None:
                del index[null]

    def groups(self, conn: Connection, caseless: bool) -> _Groups:
        spellings = self.spellings
        keys = _lower(conn, spellings) if caseless else spellings
        key_index: dict[Any, int] = {}
        key_of = np.fromiter(
            (key_index.setdefault(k, len(key_index)) for k in keys), np.int32, len(keys)
        )
        rank = np.empty(len(spellings), np.int64)
        order = sorted(range(1, len(spellings)), key=spellings.__getitem__)
        rank[0] = 0  # NULL: a group of NULLs only
        rank[order] = np.arange(1, len(spellings))
        return _Groups(key_of, list(key_index), rank, spellings)


def _lower(conn: Connection, spellings: list[str | None]) -> list[str | None]:
    """The database's ``lower()`` of each spelling (SQLite lowers ASCII only, PostgreSQL by
    its locale: the keys must be those the KPI queries group by)."""
    out: list[str | None] = [None]
    values = spellings[1:]
    for i in range(0, len(values), 500):
        part = values[i : i + 500]
        out.extend(conn.execute(select(*(func.lower(literal(v)) for v in part))).one())
    return out


class _Groups:
    """A dimension's spelling codes mapped to group keys, with each spelling's rank."""

    def __init__(self, key_of: np.ndarray, keys: list[Any], rank: np.ndarray, spellings: list):
        self.key_of, self.keys, self.rank, self.spellings = key_of, keys, rank, spellings
        self.by_rank = np.argsort(rank)  # rank -> spelling code


#: The build's working folders, in the system's temporary folder, are named
#: ``aligncycle-rollups_<host>_<pid>_<random>`` ("_": DNS host names hold none). A folder whose
#: process is gone (an import killed mid-build: its records, 56 bytes a lead and 44 a deal) is
#: removed by the next build on the host.
_WORKING = "aligncycle-rollups_"


def _working_dir() -> tempfile.TemporaryDirectory:
    """A new working folder, after removing those of processes that are gone."""
    remove_orphans(tempfile.gettempdir())
    return tempfile.TemporaryDirectory(prefix=f"{_WORKING}{socket.gethostname()}_{os.getpid()}_")


def remove_orphans(root: str) -> list[str]:
    """Remove the working folders under ``root`` of this host's processes that are gone (the
    user's own; a process of another user counts as alive); the names removed."""
    mine = f"{_WORKING}{socket.gethostname()}_"
    removed = []
    with os.scandir(root) as entries:
        for entry in entries:
            pid = entry.name[len(mine) :].partition("_")[0]
            if not (entry.name.startswith(mine) and pid.isdigit()):
                continue
            with contextlib.suppress(OSError):  # (gone meanwhile, or not ours)
                if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue
                if not entry.is_dir(follow_symlinks=False) or _alive(int(pid)):
                    continue
                shutil.rmtree(entry.path)
                removed.append(entry.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; no such number
        return True
    return True


class _Spill:
    """Records appended to a temporary file per partition (a part of a month, or ``None``),
    held in memory until :data:`SPILL_BUFFER` bytes wait, then each part's written by one
    append (a file opened per append, or kept open for 64 parts, cost about a second at
    1,000,000 leads: a chunk of rows spans every month, measured)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dir = _working_dir()
        self.dtype = dtype
        self.parts: dict[Any, int] = {}  # each part's records
        self.waiting: dict[Any, list[bytes]] = {}
        self.size = 0

    def _path(self, part: Any) -> str:
        return os.path.join(self.dir.name, str(part))

    def add(self, part: Any, records: np.ndarray) -> None:
        self.parts[part] = self.parts.get(part, 0) + len(records)
        self.waiting.setdefault(part, []).append(records.tobytes())
        self.size += records.nbytes
        if self.size >= SPILL_BUFFER:
            self._write()

    def _write(self) -> None:
        for part, blocks in self.waiting.items():
            with open(self._path(part), "ab") as f:
                f.writelines(blocks)
        self.waiting.clear()
        self.size = 0

    def read(self, part: Any) -> np.ndarray:
        if self.waiting:
            self._write()
        return np.fromfile(self._path(part), dtype=self.dtype)

    def clear(self) -> None:
        """Forget every record added."""
        self.waiting.clear()
        self.size = 0
        for part in self.parts:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(part))
        self.parts.clear()

    def close(self) -> None:
        self.waiting.clear()
        self.dir.cleanup()


def parts_of_days(days: np.ndarray) -> np.ndarray:
    """Each day's part: its month (year * 12 + month - 1) * :data:`PARTS` + which of the
    month's days 1-8, 9-16, 17-24 and 25 on it is."""
    d = days.astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    of_month = (d - m.astype("datetime64[D]")).astype(np.int64)
    return (m.astype(np.int64) + _EPOCH_MONTH) * PARTS + np.minimum(of_month // 8, PARTS - 1)


def _month_text(month: int | None) -> str | None:
    return None if month is None else f"{month // 12:04d}-{month % 12 + 1:02d}"


_LEAD_DTYPE = np.dtype(
    [
        ("day", "<i8"),
        ("latency", "<i8"),
        ("untouched", "<i8"),
        ("progress", "<i8"),
        ("bits", "<i4"),
        *((d, "<i4") for d in DIMS[1:]),
        ("reason", "<i4"),
    ]
)
_DEAL_DTYPE = np.dtype(
    [
        ("kind", "<i4"),
        ("day", "<i8"),
        ("amount", "<i8"),
        ("time", "<i8"),
        *((d, "<i4") for d in DIMS[1:]),
    ]
)


def _read(
    conn: Connection,
    stmt_of: Callable[[bool], Any],
    table: Any,
    source: str,
    dtype: np.dtype,
    ints: int,
    codes: dict[str, _Codes],
    spill: _Spill,
    told: Told | None = None,
) -> None:
    """Fetch the rows of ``stmt_of(scan)`` (:func:`lead_stmt`, :func:`deal_stmt`: ``ints``
    integer columns, then the string columns ``codes`` encodes) and spill them by part of the
    month of their ``day`` (NULL: ``None``): on PostgreSQL by a binary ``COPY``; on SQLite,
    when the source's rows are most of the ids of ``table`` between its first and last, a
    range of ids at a time as one row of joined texts (:func:`_joined`); else (and where
    those cannot be sure) in chunks of rows. ``told(rows)`` after each chunk: the rows read so
    far (from 0 again when the binary read is given up for the plain one)."""
    if conn.dialect.name == "postgresql":
        try:
            read = 0
            for rec in _copied(conn, stmt_of(False), dtype, ints, codes):
                _partition(rec, spill)
                read += len(rec)
                if told is not None:
                    told(read)
            return
        except _Unsure:  # read again, the plain way, from nothing
            spill.clear()
            codes.update({name: _Codes() for name in codes})
    names = dtype.names
    assert names is not None
    ids = _dense_ids(conn, table, source) if conn.dialect.name == "sqlite" else None
    if ids is None:
        chunks: Iterator[Columns] = map(_columns(ints), _chunks(conn, stmt_of(False)))
    else:
        chunks = _joined(conn, stmt_of(True), ints, ids)
    read = 0
    with contextlib.closing(_ahead(chunks)) as batches:
        for n, numbers, texts, null in batches:
            rec = np.empty(n, dtype)
            for i in range(ints):
                rec[names[i]] = numbers[i]
            for i, name in enumerate(names[ints:]):
                rec[name] = codes[name].encode(texts[i], null)
            _partition(rec, spill)
            read += n
            if told is not None:
                told(read)


def _ahead(items: Iterator[Columns], depth: int = 2) -> Iterator[Columns]:
    """``items`` made by a thread up to ``depth`` ahead of their reader: the database runs
    the next chunk's query without Python's lock (SQLite's C code, psycopg's wait) while this
    thread turns the last one into records. Reading 1,000,000 leads and 1,180,000 deals on
    SQLite took 4.6 s instead of 5.7 s (measured, one import each way). The thread alone uses the
    connection until it ends, which closing this generator waits for: the caller closes it
    (``contextlib.closing``) before it uses the connection again, even on an error."""
    ready: queue.Queue[tuple[BaseException | None, Columns | None]] = queue.Queue(depth)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                ready.put((None, item))
                if stop.is_set():
                    return
            ready.put((None, None))
        except BaseException as exc:  # given to the reader
            ready.put((exc, None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # (a cursor the chunks hold is closed by this thread)
                close()

    thread = threading.Thread(target=make, name="aligncycle-rollups-read", daemon=True)
    thread.start()
    try:
        while True:
            error, item = ready.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # (a put waiting for room: taken)
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


#: A chunk's columns: how many rows, the integer columns (arrays), the string columns, and the
#: text standing for NULL among the strings (None: NULL is None).
Columns = tuple[int, list[np.ndarray], list[Sequence[Any]], str | None]


def _columns(ints: int) -> Callable[[list[tuple[Any, ...]]], Columns]:
    def columns(rows: list[tuple[Any, ...]]) -> Columns:
        cols = list(zip(*rows, strict=True))
        numbers = [np.fromiter(cols[i], np.int64, len(rows)) for i in range(ints)]
        return len(rows), numbers, cols[ints:], None

    return columns


#: SQLite's table is walked by ranges of ids when the source's rows are at least 1 in this many
#: of the ids between its first and last (else the rows of other sources would be read too).
DENSE_IDS = 2
#: The joined read's separators: of integers, of texts; and the text standing for NULL.
_COMMA, _SEP, _NULL_TEXT = ",", "\x1f", "\x1e"


def _dense_ids(conn: Connection, table: Any, source: str) -> tuple[int, int] | None:
    """The source's [first, last] ids in ``table`` when its rows are dense among them."""
    lo, hi, n = conn.execute(
        select(func.min(table.c.id), func.max(table.c.id), func.count()).where(
            table.c.source == source
        )
    ).one()
    if not n or hi - lo + 1 > DENSE_IDS * n:
        return None
    return lo, hi


def _joined(conn: Connection, stmt: Any, ints: int, ids: tuple[int, int]) -> Iterator[Columns]:
    """SQLite: the rows of ``stmt`` (parameters ``lo`` and ``hi``: a range of ids) read
    :data:`CHUNK` ids at a time as one row: the count, each column's values joined into one
    text (``group_concat`` steps every column on the same row, so they stay aligned) and, per
    string column, how many values are not NULL: a value that is the NULL text shows as one
    NULL too many (counting the values cost SQLite 0.4-0.5 s less per table at 1,000,000
    leads than comparing each with the NULL text, medians of three interleaved rounds).
    Integers are parsed by numpy and texts split, so no Python object is made per integer or
    row (the rows read one by one cost 5 of the 6.5 s spent reading 1,000,000 leads,
    measured). A range whose texts hold a separator or the NULL text, or whose numbers do not
    parse, is read again the plain way."""
    sub = stmt.subquery("r")
    cols = list(sub.c)
    texts = cols[ints:]
    joined = select(
        func.count(),
        *(func.group_concat(c, literal(_COMMA)) for c in cols[:ints]),
        *(func.group_concat(func.coalesce(c, literal(_NULL_TEXT)), literal(_SEP)) for c in texts),
        *(func.count(c) for c in texts),
    )
    compiled = joined.compile(dialect=conn.dialect)
    plain = stmt.compile(dialect=conn.dialect)
    driver = conn.connection.driver_connection
    assert driver is not None

    def execute(c: Any, lo: int) -> Any:
        params = c.construct_params({"lo": lo, "hi": lo + CHUNK})
        return driver.execute(str(c), [params[k] for k in c.positiontup or ()])

    plain_columns = _columns(ints)
    for lo in range(ids[0], ids[1] + 1, CHUNK):
        n, *values = execute(compiled, lo).fetchone()
        if not n:
            continue
        got = _split(n, values, ints, len(texts))
        if got is None:
            got = plain_columns(execute(plain, lo).fetchall())
        yield got


def _split(n: int, values: list[Any], ints: int, texts: int) -> Columns | None:
    """A joined row's columns (:func:`_joined`), or None when it cannot be sure of them."""
    if any(v is None for v in values[: ints + texts]):
        return None
    with warnings.catch_warnings():  # (a text that is no integer: the length tells)
        warnings.simplefilter("ignore", DeprecationWarning)
        numbers = [np.fromstring(v, np.int64, sep=_COMMA) for v in values[:ints]]
    strings = [v.split(_SEP) for v in values[ints : ints + texts]]
    if any(len(x) != n for x in (*numbers, *strings)):
        return None
    # a NULL text more than the NULLs counted: a value was that text (read plainly)
    counted = values[ints + texts :]
    if any(x.count(_NULL_TEXT) != n - k for x, k in zip(strings, counted, strict=True)):
        return None
    return n, numbers, strings, _NULL_TEXT


def _partition(rec: np.ndarray, spill: _Spill) -> None:
    """Spill records by part of the month of their ``day`` (NULL: ``None``)."""
    day = rec["day"]
    dated = day != NULL
    if not dated.all():
        spill.add(None, rec[~dated])
        rec = rec[dated]
        day = rec["day"]
        if not len(rec):
            return
    part = parts_of_days(day)
    order = np.argsort(part, kind="stable")
    rec, part = rec[order], part[order]
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
    for a, b in zip(starts, [*starts[1:], len(rec)], strict=True):
        spill.add(int(part[a]), rec[a:b])


class _Unsure(Exception):
    """The binary read cannot tell two spellings apart (their hashes are equal) or met one
    it was not told of: the rows are read again the plain way."""


#: ``COPY ... (FORMAT binary)``'s header: its signature, flags and extension length (none).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


#: PostgreSQL's ``work_mem`` while each string column's spellings are asked: its estimate of a
#: free-text column's distinct values makes the default 4 MB choose sorting the rows over
#: hashing them (0.87 s against 0.5 s at 1,000,000 leads, measured).
DICTIONARY_MEMORY = "64MB"


def _hash(spelling: Any) -> Any:
    """A spelling's 64-bit hash, computed by PostgreSQL."""
    return func.hashtextextended(spelling, 0)


def _dictionary(
    conn: Connection, texts: list[Any], names: tuple[str, ...], codes: dict[str, _Codes]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each string column's spellings (into ``codes``, NULL first) and, to read its hashes
    as codes, (the hashes sorted, each one's code); one grouped scan. Two spellings with one
    hash are :class:`_Unsure`."""
    if not texts:
        return []
    with local_setting(conn, "work_mem", DICTIONARY_MEMORY):  # (else it sorts: above)
        seen = conn.execute(
            select(*(func.grouping(c) for c in texts), *texts, *map(_hash, texts)).group_by(
                func.grouping_sets(*texts)
            )
        ).all()
    k = len(texts)
    lookup = []
    for i, name in enumerate(names):
        found = [(r[k + i], r[2 * k + i]) for r in seen if r[i] == 0 and r[k + i] is not None]
        c = codes[name]
        c.spellings = [None, *(v for v, _h in found)]
        c.index = {v: n for n, v in enumerate(c.spellings)}
        hashes = np.r_[np.int64(NULL), np.fromiter((h for _v, h in found), np.int64, len(found))]
        order = np.argsort(hashes, kind="stable")  # code 0: NULL, as in the COPY
        ordered = hashes[order]
        if (ordered[1:] == ordered[:-1]).any():
            raise _Unsure
        lookup.append((ordered, order.astype(np.int32)))
    return lookup


def _copied(
    conn: Connection, stmt: Any, dtype: np.dtype, ints: int, codes: dict[str, _Codes]
) -> Iterator[np.ndarray]:
    """PostgreSQL: ``stmt``'s rows as records, by one binary ``COPY`` whose every value is a
    64-bit integer, read with numpy (no Python object per value: the server-side cursor this
    replaces spent 6.6 s of a 12 s rollup build at 1,000,000 leads turning values into
    objects, measured). A spelling travels as its 64-bit hash (``hashtextextended``); each
    string column's spellings and their hashes are asked first, in one grouped scan, and a
    hash shared by two spellings, or one not among them, is :class:`_Unsure`."""
    names = dtype.names
    assert names is not None
    sub = stmt.subquery("r")
    cols = list(sub.c)
    texts = cols[ints:]
    hashed = [_hash(c) for c in texts]
    lookup = _dictionary(conn, texts, names[ints:], codes)
    values = [
        *(cast(c, BigInteger) for c in cols[:ints]),
        *(func.coalesce(h, _NULL_SQL) for h in hashed),
    ]
    compiled = select(*values).select_from(sub).compile(dialect=conn.dialect)
    n = len(values)
    wire = np.dtype(
        [
            ("n", ">i2"),
            *((f, ">i4" if f[0] == "l" else ">i8") for i in range(n) for f in (f"l{i}", f"v{i}")),
        ]
    )
    size = wire.itemsize
    driver = conn.connection.driver_connection
    assert driver is not None
    buf = bytearray()
    started = False

    def records(count: int) -> np.ndarray:
        got = np.frombuffer(buf, wire, count).copy()  # (no view left: buf is cut below)
        if (got["n"] != n).any() or any((got[f"l{i}"] != 8).any() for i in range(n)):
            raise _Unsure  # a NULL or a value not of 8 bytes: not what was asked for
        rec = np.empty(count, dtype)
        for i in range(ints):
            rec[names[i]] = got[f"v{i}"]
        for i, (ordered, code) in enumerate(lookup):
            h = got[f"v{ints + i}"]
            at = np.searchsorted(ordered, h)
            at[at == len(ordered)] = 0
            if (ordered[at] != h).any():
                raise _Unsure  # a spelling written since it was asked (none is: imports lock)
            rec[names[ints + i]] = code[at]
        del buf[: count * size]
        return rec

    unsure = False  # then the rest is drained (leaving a COPY early would cancel it)
    with (
        driver.cursor() as cur,
        cur.copy(  # type: ignore[union-attr]
            f"COPY ({compiled}) TO STDOUT (FORMAT binary)", compiled.construct_params()
        ) as copy,
    ):
        for data in copy:
            if unsure:
                continue
            buf += data
            if not started and len(buf) >= len(_COPY_HEADER):
                unsure = bytes(buf[: len(_COPY_HEADER)]) != _COPY_HEADER
                del buf[: len(_COPY_HEADER)]
                started = True
            if started and not unsure and len(buf) >= CHUNK * size:
                try:
                    rec = records(len(buf) // size)
                except _Unsure:
                    unsure = True
                    continue
                yield rec
    if unsure or not started or bytes(buf[-2:]) != b"\xff\xff" or (len(buf) - 2) % size:
        raise _Unsure
    if len(buf) > 2:
        yield records((len(buf) - 2) // size)


def _chunks(conn: Connection, stmt: Any) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``stmt`` as plain tuples, :data:`CHUNK` at a time, on the driver (a
    SQLAlchemy row per value cost a third of the reading, measured), on the unit of work's
    connection (its uncommitted rows); on PostgreSQL through a server-side cursor, so memory
    holds one chunk."""
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    driver = conn.connection.driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql":
        cursor = driver.cursor(name="aligncycle_rollups")  # type: ignore[call-arg]
        cursor.itersize = CHUNK
        cursor.execute(str(compiled), params)
    else:
        cursor = driver.cursor()
        cursor.execute(str(compiled), [params[k] for k in compiled.positiontup or ()])
    try:
        while rows := cursor.fetchmany(CHUNK):
            yield rows
    finally:
        cursor.close()


class _Table:
    """What one table's rollup rows hold: the counts beyond every record (bits of ``bits``),
    the distributions, and for deals (``deals``) their amounts and events (grouped by event
    too), for leads their rejection reasons."""

    def __init__(self, bits: int, lists: tuple[str, ...], deals: bool) -> None:
        self.bits, self.lists, self.deals = bits, lists, deals


LEADS = _Table(len(LEAD_BITS), ("latency", "untouched", "progress"), deals=False)
DEALS = _Table(0, ("time",), deals=True)


def _compact(gid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct group ids, sorted, and each record's index among them: by counting into
    an array of the ids' range when it is small, else by sorting."""
    if not len(gid):
        return gid, gid
    low = int(gid.min())
    span = int(gid.max()) - low + 1
    if span <= 4 * len(gid) + DENSE:
        present = np.bincount(gid - low, minlength=span) > 0
        ids = np.cumsum(present) - 1
        return np.flatnonzero(present) + low, ids[gid - low]
    uniq, inv = np.unique(gid, return_inverse=True)
    return uniq, inv.reshape(-1)


class _Agg:
    """The sums of a set of groups (``size`` of them, numbered from 0), added to a batch of
    records at a time: counts, each group's first spelling (its rank), amounts, reasons, and
    each distribution's values with their group."""

    def __init__(self, table: _Table, size: int, width: int = 0) -> None:
        self.table, self.size, self.width = table, size, width
        self.counts = np.zeros((1 + table.bits, size), np.int64)
        self.best = np.full(size, np.iinfo(np.int64).max, np.int64)
        self.amount = np.zeros(size, np.int64)
        self.priced = np.zeros(size, np.int64)
        self.reasons: list[np.ndarray] = []
        self.values: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in table.lists}

    def add(self, ids: np.ndarray, rec: np.ndarray, rank: np.ndarray | None) -> None:
        size = self.size
        self.counts[0] += np.bincount(ids, minlength=size)
        if self.table.bits:  # (each bit as a weight of 0 or 1: no selection of the ids per
            # bit, 0.9 ms against 2.4 ms for 40,000 records and 9 bits, measured; a count in a
            # float64 is exact below 2**53)
            bits = rec["bits"]
            for i in range(self.table.bits):
                got = np.bincount(ids, weights=(bits >> i) & 1, minlength=size)
                self.counts[i + 1] += got.astype(np.int64)
        if rank is not None:
            np.minimum.at(self.best, ids, rank)
        if self.table.deals:
            amount = rec["amount"]
            has = amount != NULL
            self.priced += np.bincount(ids[has], minlength=size)
            np.add.at(self.amount, ids[has], amount[has])
        else:
            reason = rec["reason"]
            has = reason != 0
            if has.any():
                self.reasons.append(ids[has] * self.width + reason[has])
        for name, parts in self.values.items():
            values = rec[name]
            has = values != NULL
            parts.append((ids[has].astype(np.int32), values[has]))

    def blobs(self, name: str) -> list[bytes]:
        """Each group's values of ``name``, sorted, as their excess over the group's smallest
        (:mod:`models.funnel.distributions`)."""
        parts = self.values.pop(name)
        ids = (
            np.concatenate([p[0] for p in parts]).astype(np.int64)
            if parts
            else np.zeros(0, np.int64)
        )
        values = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        parts.clear()
        counts = np.bincount(ids, minlength=self.size)
        if len(values):
            low = int(values.min())
            span = int(values.max()) - low + 1
            if self.size * span < 1 << 62:  # one sort of (group, value) as one integer
                # (a sort of the integers, then the values out of them: 40% less time than
                # sorting their order and taking the values in it, measured)
                of_group = np.repeat(np.arange(self.size, dtype=np.int64) * span - low, counts)
                values = np.sort(ids * span + (values - low)) - of_group
            else:
                values = values[np.lexsort((values, ids))]
        return pack(values, np.r_[0, np.cumsum(counts)].tolist())

    def reason_json(self, spellings: list[Any]) -> list[str | None]:
        """Each group's rejection reasons as JSON {reason: count} (None: none)."""
        out: list[dict[str, int] | None] = [None] * self.size
        if self.reasons:
            found, inv = _compact(np.concatenate(self.reasons))
            counts = np.bincount(inv).tolist()
            for pair, n in zip(found.tolist(), counts, strict=True):
                grp, code = divmod(pair, self.width)
                d = out[grp]
                if d is None:
                    d = out[grp] = {}
                d[spellings[code]] = n
        return [json.dumps(d, sort_keys=True) if d else None for d in out]  # (any read order)

    def labels(self, groups: _Groups | None) -> list[Any]:
        if groups is None:
            return [None] * self.size
        spellings, by_rank = groups.spellings, groups.by_rank
        return [spellings[by_rank[r]] for r in self.best.tolist()]


#: flags_of(dim) -> flagged records by (grain, period, key) (leads) or (event, grain, period,
#: key) (deals); a period is a day (grain "d") or a month number (grain "m")
Flags = Callable[[str], dict[Any, int]]
_DAYS = 32  # a group id: ((event * _DAYS + day of the part) * keys + key)


class _Build:
    """The rollup rows of one table, from its records spilled by part of a month."""

    def __init__(
        self,
        table: _Table,
        source: str,
        spill: _Spill,
        groups: dict[str, _Groups],
        flags: dict[str, dict[Any, int]],
        reasons: list[Any],
    ) -> None:
        self.table, self.source, self.spill = table, source, spill
        self.groups, self.flags, self.reasons = groups, flags, reasons

    def _keys(self, dim: str, rec: np.ndarray) -> tuple[np.ndarray, int]:
        if not dim:
            return np.zeros(len(rec), np.int64), 1
        g = self.groups[dim]
        return g.key_of[rec[dim]].astype(np.int64), len(g.keys)

    def _rank(self, dim: str, rec: np.ndarray) -> np.ndarray | None:
        return self.groups[dim].rank[rec[dim]] if dim else None

    def _by_month(self) -> dict[Any, list[Any]]:
        parts = sorted(self.spill.parts, key=lambda p: (p is None, p or 0))
        by_month: dict[Any, list[Any]] = {}
        for p in parts:
            by_month.setdefault(None if p is None else p // PARTS, []).append(p)
        return by_month

    @property
    def records(self) -> int:
        """How many records (rows read) :meth:`rows` sums up."""
        return sum(self.spill.parts.values())

    def close(self) -> None:
        self.spill.close()

    def rows(self, step: Told | None) -> Iterator[tuple[Any, ...]]:
        """The rollup rows, month by month (``step(records)`` after each: the records of the
        months done so far)."""
        done = 0
        for month, month_parts in self._by_month().items():
            if month is not None:  # the days: each in one part
                for p in month_parts:
                    rec = self.spill.read(p)
                    for dim in DAY_DIMS:
                        yield from self._day_rows(dim, rec, month)
            for dim in DIMS:  # the month, a dimension at a time (its values only in memory)
                yield from self._month_rows(dim, month, month_parts)
            done += sum(self.spill.parts[p] for p in month_parts)
            if step is not None:
                step(done)

    def _gid(self, dim: str, rec: np.ndarray, day0: int | None) -> tuple[np.ndarray, int]:
        key, nkeys = self._keys(dim, rec)
        slot = np.zeros(len(rec), np.int64)
        if day0 is not None:
            slot = rec["day"] - day0
        if self.table.deals:
            slot = slot + rec["kind"].astype(np.int64) * _DAYS
        return slot * nkeys + key, nkeys

    def _day_rows(self, dim: str, rec: np.ndarray, month: int) -> Iterator[tuple[Any, ...]]:
        day0 = int(rec["day"].min())
        gid, nkeys = self._gid(dim, rec, day0)
        uniq, ids = _compact(gid)
        agg = _Agg(self.table, len(uniq), len(self.reasons))
        agg.add(ids, rec, self._rank(dim, rec))
        yield from self._emit(agg, dim, "d", uniq, nkeys, day0, month)

    def _month_rows(self, dim: str, month: int | None, parts: list[Any]) -> Iterator[Any]:
        uniq = np.zeros(0, np.int64)
        nkeys = 1
        for p in parts:  # the month's groups (few), then each part's records among them
            gid, nkeys = self._gid(dim, self.spill.read(p), None)
            uniq = np.union1d(uniq, _compact(gid)[0])
        agg = _Agg(self.table, len(uniq), len(self.reasons))
        for p in parts:
            rec = self.spill.read(p)
            gid, _n = self._gid(dim, rec, None)
            agg.add(np.searchsorted(uniq, gid), rec, self._rank(dim, rec))
        yield from self._emit(agg, dim, "m", uniq, nkeys, None, month)

    def _emit(
        self,
        agg: _Agg,
        dim: str,
        grain: str,
        uniq: np.ndarray,
        nkeys: int,
        day0: int | None,
        month: int | None,
    ) -> Iterator[tuple[Any, ...]]:
        key_codes, slots = (uniq % nkeys).tolist(), (uniq // nkeys).tolist()
        groups = self.groups.get(dim)
        keys = [None if groups is None else groups.keys[k] for k in key_codes]
        labels = agg.labels(groups)
        flags = self.flags[dim]
        blobs = [agg.blobs(n) for n in self.table.lists]
        counts = agg.counts.tolist()
        text = _month_text(month)
        if self.table.deals:
            priced, amount = agg.priced.tolist(), agg.amount.tolist()
            for i, slot in enumerate(slots):
                kind = KINDS[slot // _DAYS]
                period = month if day0 is None else day0 + slot % _DAYS
                yield (
                    self.source,
                    grain,
                    kind,
                    period,
                    None,
                    text,
                    dim,
                    keys[i],
                    labels[i],
                    counts[0][i],
                    amount[i] if priced[i] else None,
                    priced[i],
                    flags.get((kind, grain, period, keys[i]), 0) if flags else 0,
                    blobs[0][i],
                )
            return
        why = agg.reason_json(self.reasons)
        for i, slot in enumerate(slots):
            period = month if day0 is None else day0 + slot
            yield (
                self.source,
                grain,
                period,
                dim,
                keys[i],
                labels[i],
                *(c[i] for c in counts),
                flags.get((grain, period, keys[i]), 0) if flags else 0,
                blobs[0][i],
                blobs[1][i],
                blobs[2][i],
                why[i],
            )


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None where there is none)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, TypeError, AttributeError):
        return None


def _give_back() -> None:
    """Give the memory a thread has freed back to the system. glibc keeps a thread's freed
    memory in an arena of its own, which the other threads do not reuse: with the rollups
    made in a thread, the peak at 3,000,000 leads on PostgreSQL grew from 140 MB to 153 MB;
    given back after each month, 143 MB (measured)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Made:
    """The rollup rows of a :class:`_Build`, made in a thread of its own while the caller goes
    on (reads the next table, writes the rows made before), kept in a temporary file, and
    given back in order by :meth:`rows` as soon as they are made. numpy's sorting and grouping
    and the database's reads release Python's lock: at 1,000,000 leads on SQLite the leads'
    rows (1.7 s) were made entirely while the deals were read, which took as long as before
    (measured). The rows are written while the thread makes the next ones: waiting for all of
    a table's first held the import 1.4 s at 1,000,000 leads on PostgreSQL (py-spy); the
    refresh of 1,000,000 leads on SQLite went from 11.4 s to 10.5 s (medians of three
    interleaved rounds; on PostgreSQL no change stood out of the noise).

    The thread touches no connection; what it made waits on disk, so memory holds a batch
    (the leads' rows of one month hold 3.5 MB of values at 1,000,000 leads, measured, and grow
    with the store: batches are cut by size too). It is stopped by :meth:`close` (between two
    rows), which the caller always calls."""

    _BATCH = 1000
    _BATCH_BYTES = 2 << 20

    def __init__(self, build: _Build, after: Made | None = None) -> None:
        """``after``: the rows of another build, made first (one build's memory at a time)."""
        # a file of its own, open twice: written by the thread, read by rows() meanwhile
        # (closed by close(), which the caller always calls); its name is removed at once, so
        # a killed process leaves nothing of it
        self.dir = _working_dir()
        path = os.path.join(self.dir.name, "rows")
        self.file = open(path, "wb")  # noqa: SIM115
        self.reader = open(path, "rb")  # noqa: SIM115
        with contextlib.suppress(OSError):  # (where an open file cannot be removed: at close)
            os.remove(path)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        #: how many items (a batch of rows, or how far the records are) are written whole and
        #: not yet given back; ``ended``: the thread has written all it will (made
        #: everything, failed or was stopped)
        self.items = 0
        self.ended = False
        self.written = threading.Condition()
        self.thread = threading.Thread(
            target=self._make, args=(build, after), name="aligncycle-rollups", daemon=True
        )
        self.thread.start()

    def _put(self, item: Any) -> None:
        """Write ``item`` whole, for :meth:`rows` to read."""
        pickle.dump(item, self.file, pickle.HIGHEST_PROTOCOL)
        self.file.flush()
        with self.written:
            self.items += 1
            self.written.notify()

    def _make(self, build: _Build, after: Made | None) -> None:
        try:
            if after is not None:
                after.thread.join()
                if self.stop.is_set():
                    return
            put = self._put
            batch: list[Any] = []
            size = 0  # the bytes of the values held by the rows in batch

            def done(records: int) -> None:  # a month's rows made: they, then how far that is
                nonlocal batch, size
                put(batch)
                put(records)
                batch, size = [], 0
                _give_back()

            for row in build.rows(done):
                if self.stop.is_set():
                    return
                batch.append(row)
                size += sum(len(v) for v in row if isinstance(v, bytes))
                if len(batch) >= self._BATCH or size >= self._BATCH_BYTES:
                    put(batch)
                    batch, size = [], 0
            put(batch)
        except BaseException as exc:  # given to the caller by rows()
            self.error = exc
        finally:
            with self.written:
                self.ended = True
                self.written.notify()

    def rows(self, step: Told | None) -> Iterator[tuple[Any, ...]]:
        """The rows, in the order made, as they are made (``step(records)`` as
        :meth:`_Build.rows` tells it, when the rows before it are given); the thread's error,
        if it failed, once the rows it made before are given."""
        load, reader = pickle.load, self.reader
        while True:
            with self.written:
                while not self.items and not self.ended:
                    self.written.wait()
                if not self.items:
                    break
                self.items -= 1
            item = load(reader)  # (written whole: its bytes are all in the file)
            if isinstance(item, int):
                if step is not None:
                    step(item)
            else:
                yield from item
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.file.close()
        self.reader.close()
        self.dir.cleanup()


def read_leads(
    conn: Connection,
    source: str,
    ranges: list[tuple[int, int]] | None,
    flags_of: Flags,
    told: Told | None = None,
) -> _Build:
    """The leads of the months in ``ranges`` (None: all) read and spilled, ready to give
    their rollup rows (columns of :data:`models.funnel.rollups._LEAD_ROW`); the caller closes
    it. ``told(rows)``: the rows read so far, after each chunk."""
    codes = {d: _Codes() for d in (*DIMS[1:], "reason")}
    spill = _Spill(_LEAD_DTYPE)
    try:
        stmt_of = partial(lead_stmt, source, ranges)
        _read(conn, stmt_of, L, source, _LEAD_DTYPE, 5, codes, spill, told)
        groups = {d: codes[d].groups(conn, d in CASELESS) for d in DIMS[1:]}
        flags = {d: flags_of(d) for d in DIMS}
    except BaseException:
        spill.close()
        raise
    return _Build(LEADS, source, spill, groups, flags, codes["reason"].spellings)


def read_deals(
    conn: Connection,
    source: str,
    ranges: list[tuple[int, int]] | None,
    undated: bool,
    flags_of: Flags,
    told: Told | None = None,
) -> _Build:
    """The deals' events of the months in ``ranges`` (None: all) and, ``undated``, the open
    deals with no creation date (one row per group, as a month's, with no period), read and
    spilled, ready to give their rollup rows of the ``events`` kind (columns of
    :data:`models.funnel.rollups._DEAL_ROW`); the caller closes it. ``told(rows)``: the rows
    read so far, after each chunk."""
    codes = {d: _Codes() for d in DIMS[1:]}
    spill = _Spill(_DEAL_DTYPE)
    try:
        stmt_of = partial(deal_stmt, source, ranges, undated)
        _read(conn, stmt_of, D, source, _DEAL_DTYPE, 4, codes, spill, told)
        groups = {d: codes[d].groups(conn, d in CASELESS) for d in DIMS[1:]}
        flags = {d: flags_of(d) for d in DIMS}
    except BaseException:
        spill.close()
        raise
    return _Build(DEALS, source, spill, groups, flags, [])
