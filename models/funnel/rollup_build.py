"""The rollups kept by day and month, built in one pass over a source's rows with numpy
(:func:`models.funnel.rollups.refresh` writes what this module yields).

The grouped SQL passes this replaces (one per dimension and table, each a sort of the rows
with every group's values concatenated as text) cost more than the whole import's budget
(19 s of 46 s at 1,000,000 leads on SQLite, measured). Here the database computes each row's
terms (the same expressions as every KPI query: :mod:`models.funnel.sql`) and the rows are read
once, as integers and the group dimensions' spellings:

1. **read and partition**: rows are fetched in chunks, turned into numpy columns (spellings as
   small integer codes) and appended to a temporary file per month of their date, so memory
   holds one chunk and one month, whatever the store's size;
2. **per month**: each dimension's groups (by day and key, and by key for the month) are
   counted with ``bincount``, their value lists sorted per group with one ``lexsort`` and
   sliced into the rollups' sorted 64-bit integers; a group's label is its spelling that sorts
   first (code-point order, as ``first_spelling`` in SQL).

A caseless dimension's key is the database's own ``lower()`` of each spelling (asked once per
distinct spelling), so keys are those a KPI query groups by on either backend.
The rows yielded are exactly those of the row-level queries (``tests/test_kpi_rollups.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import reduce
from operator import add
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
)

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
_LE = np.dtype("<i8")  # the rollups' distributions are stored little-endian


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


def lead_stmt(source: str, ranges: list[tuple[int, int]] | None) -> Any:
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
    ).where(L.c.source == source, in_ranges(t.mql, ranges))


def deal_stmt(source: str, ranges: list[tuple[int, int]] | None, undated: bool) -> Any:
    e = deal_events(undated, ranges)
    dims = deal_dims()
    return select(
        e["kind"],
        _int(day_of(e["at"])),
        _int(e["priced"]),
        _int(e["time"]),
        *(dims[d] for d in DIMS[1:]),
    ).where(D.c.listed, D.c.source == source, e["where"])


class _Codes:
    """Spellings as small integers (code 0: NULL), with each one's rank in code-point order
    and its key (the database's ``lower()`` for a caseless dimension)."""

    def __init__(self) -> None:
        self.index: dict[str | None, int] = {None: 0}
        self.spellings: list[str | None] = [None]

    def encode(self, values: tuple[Any, ...]) -> np.ndarray:
        index = self.index
        try:
            return np.fromiter(map(index.__getitem__, values), np.int32, len(values))
        except KeyError:
            for v in dict.fromkeys(values):
                if v not in index:
                    index[v] = len(self.spellings)
                    self.spellings.append(v)
            return np.fromiter(map(index.__getitem__, values), np.int32, len(values))

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


class _Spill:
    """Records appended to a temporary file per partition (a month, or ``None``)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="aligncycle-rollups-")
        self.dtype = dtype
        self.parts: set[Any] = set()

    def add(self, part: Any, records: np.ndarray) -> None:
        self.parts.add(part)
        with open(os.path.join(self.dir.name, str(part)), "ab") as f:
            f.write(records.tobytes())

    def read(self, part: Any) -> np.ndarray:
        return np.fromfile(os.path.join(self.dir.name, str(part)), dtype=self.dtype)

    def close(self) -> None:
        self.dir.cleanup()


def months_of_days(days: np.ndarray) -> np.ndarray:
    """Each day's month as year * 12 + month - 1."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + _EPOCH_MONTH


def _month_text(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


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
    stmt: Any,
    dtype: np.dtype,
    ints: int,
    codes: dict[str, _Codes],
    spill: _Spill,
) -> None:
    """Fetch ``stmt``'s rows in chunks (``ints`` integer columns, then the string columns
    ``codes`` encodes) and spill them by month of their ``day`` (NULL: partition ``None``)."""
    names = dtype.names
    assert names is not None
    for rows in _chunks(conn, stmt):
        columns = list(zip(*rows, strict=True))
        rec = np.empty(len(rows), dtype)
        for i in range(ints):
            rec[names[i]] = np.fromiter(columns[i], np.int64, len(rows))
        for i, name in enumerate(names[ints:], start=ints):
            rec[name] = codes[name].encode(columns[i])
        day = rec["day"]
        dated = day != NULL
        if not dated.all():
            spill.add(None, rec[~dated])
            rec = rec[dated]
            day = rec["day"]
            if not len(rec):
                continue
        month = months_of_days(day)
        order = np.argsort(month, kind="stable")
        rec, month = rec[order], month[order]
        starts = np.flatnonzero(np.r_[True, month[1:] != month[:-1]])
        for a, b in zip(starts, [*starts[1:], len(rec)], strict=True):
            spill.add(int(month[a]), rec[a:b])


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


class _Month:
    """A month's records, with each distribution's non-NULL values sorted once (each grouping
    then orders them by group with one stable sort of small integers)."""

    def __init__(self, rec: np.ndarray, lists: tuple[str, ...]) -> None:
        self.rec = rec
        self.sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in lists:
            values = rec[name]
            rows = np.flatnonzero(values != NULL)
            order = np.argsort(values[rows], kind="stable")
            rows = rows[order]
            self.sorted[name] = (rows, values[rows].astype(_LE, copy=False))


class _Grouping:
    """The groups of a month's records under one grouping: ``inv`` (each record's group),
    each group's key code and (by day) day and (deals) event."""

    def __init__(
        self,
        month: _Month,
        key: np.ndarray,
        nkeys: int,
        day: np.ndarray | None,
        extra: np.ndarray | None = None,
    ) -> None:
        self.month = month
        # one integer per group: (event, day, key), dense when the groups are few
        combined = key.astype(np.int64)
        size = max(nkeys, 1)
        day0 = 0
        if day is not None and len(day):
            day0 = int(day.min())
            combined = combined + (day - day0) * size
            size *= int(day.max()) - day0 + 1
        if extra is not None:
            combined = combined + extra.astype(np.int64) * size
            size *= len(KINDS)
        if size <= 4 * len(combined) + DENSE:
            present = np.bincount(combined, minlength=size) > 0
            uniq = np.flatnonzero(present)
            ids = np.cumsum(present) - 1
            self.inv = ids[combined]
        else:
            uniq, inv = np.unique(combined, return_inverse=True)
            self.inv = inv.reshape(-1)
        self.n = len(uniq)
        nk = max(nkeys, 1)
        self.key = uniq % nk
        rest = uniq // nk
        self.day = None
        if day is not None:
            ndays = (int(day.max()) - day0 + 1) if len(day) else 1
            self.day = rest % ndays + day0
            rest = rest // ndays
        self.extra = rest if extra is not None else None

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        inv = self.inv if mask is None else self.inv[mask]
        return np.bincount(inv, minlength=self.n)

    def sorted_values(self, name: str) -> list[bytes]:
        """Each group's non-NULL values of ``name``, sorted, as little-endian 64-bit integers."""
        rows, values = self.month.sorted[name]
        g = self.inv[rows]
        if self.n <= 1 << 16:
            g = g.astype(np.uint16)  # a radix sort
        order = np.argsort(g, kind="stable")
        v = values[order]
        bounds = np.r_[0, np.cumsum(np.bincount(g, minlength=self.n))]
        return [v[bounds[i] : bounds[i + 1]].tobytes() for i in range(self.n)]

    def labels(self, groups: _Groups, codes: np.ndarray) -> list[Any]:
        """Each group's spelling that sorts first."""
        best = np.full(self.n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(best, self.inv, groups.rank[codes])
        spellings = groups.spellings
        by_rank = groups.by_rank
        return [spellings[by_rank[r]] for r in best.tolist()]

    def sums(self, values: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """Each group's sum of non-NULL ``values`` (None where it has none), and their count."""
        has = values != NULL
        n = np.bincount(self.inv[has], minlength=self.n)
        total = np.zeros(self.n, np.int64)
        np.add.at(total, self.inv[has], values[has])
        return [t if k else None for t, k in zip(total.tolist(), n.tolist(), strict=True)], n


def _reasons(g: _Grouping, reason: np.ndarray, spellings: list[Any]) -> list[str | None]:
    """Each group's rejection reasons as JSON {reason: count} (None: no rejected lead)."""
    has = reason != 0
    out: list[dict[str, int] | None] = [None] * g.n
    if has.any():
        width = len(spellings)
        pairs = g.inv[has].astype(np.int64) * width + reason[has]
        if g.n * width <= 4 * len(pairs) + DENSE:
            counts = np.bincount(pairs, minlength=g.n * width)
            found = np.flatnonzero(counts)
            counts = counts[found]
        else:  # many distinct reasons (free text)
            found, counts = np.unique(pairs, return_counts=True)
        for pair, n in zip(found.tolist(), counts.tolist(), strict=True):
            grp, code = divmod(pair, width)
            d = out[grp]
            if d is None:
                d = out[grp] = {}
            d[spellings[code]] = n
    return [json.dumps(d) if d else None for d in out]


#: flags_of(dim) -> {(period, key): flagged records}; a period is a day (by day) or a month
#: number (by month), for leads; for deals the key is (kind, period, key)
Flags = Callable[[str], dict[Any, int]]


def lead_rows(
    conn: Connection,
    source: str,
    ranges: list[tuple[int, int]] | None,
    flags_of: Flags,
    step: Callable[[], None] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The lead rollup rows (columns of :data:`models.funnel.rollups._LEAD_ROW`) of the
    months in ``ranges`` (None: all)."""
    codes = {d: _Codes() for d in (*DIMS[1:], "reason")}
    spill = _Spill(_LEAD_DTYPE)
    try:
        _read(conn, lead_stmt(source, ranges), _LEAD_DTYPE, 5, codes, spill)
        groups = {d: codes[d].groups(conn, d in CASELESS) for d in DIMS[1:]}
        flags = {d: flags_of(d) for d in DIMS}
        reasons = codes["reason"].spellings
        for month in sorted(spill.parts):
            rec = spill.read(month)
            m = _Month(rec, ("latency", "untouched", "progress"))
            for dim in DIMS:
                by_day = dim in DAY_DIMS
                key = groups[dim].key_of[rec[dim]] if dim else np.zeros(len(rec), np.int32)
                nkeys = len(groups[dim].keys) if dim else 1
                for grain in ("d", "m") if by_day else ("m",):
                    g = _Grouping(m, key, nkeys, rec["day"] if grain == "d" else None)
                    yield from _lead_group_rows(
                        source, dim, grain, month, g, rec, groups.get(dim), flags[dim], reasons
                    )
            if step is not None:
                step()
    finally:
        spill.close()


def _lead_group_rows(
    source: str,
    dim: str,
    grain: str,
    month: int,
    g: _Grouping,
    rec: np.ndarray,
    groups: _Groups | None,
    flags: dict[Any, int],
    reasons: list[Any],
) -> Iterator[tuple[Any, ...]]:
    bits = rec["bits"]
    counts = [g.count(), *(g.count((bits & (1 << i)) != 0) for i in range(len(LEAD_BITS)))]
    count_lists = [c.tolist() for c in counts]
    lists = [g.sorted_values(c) for c in ("latency", "untouched", "progress")]
    why = _reasons(g, rec["reason"], reasons)
    if groups is None:
        keys: list[Any] = [None] * g.n
        labels: list[Any] = [None] * g.n
    else:
        keys = [groups.keys[k] for k in g.key.tolist()]
        labels = g.labels(groups, rec[dim])
    periods = g.day.tolist() if g.day is not None else [month] * g.n
    for i in range(g.n):
        yield (
            source,
            grain,
            periods[i],
            dim,
            keys[i],
            labels[i],
            *(c[i] for c in count_lists),
            flags.get((grain, periods[i], keys[i]), 0) if flags else 0,
            lists[0][i],
            lists[1][i],
            lists[2][i],
            why[i],
        )


def deal_rows(
    conn: Connection,
    source: str,
    ranges: list[tuple[int, int]] | None,
    undated: bool,
    flags_of: Flags,
    step: Callable[[], None] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The deal rollup rows of the ``events`` kind (columns of
    :data:`models.funnel.rollups._DEAL_ROW`) of the months in ``ranges`` (None: all) and,
    ``undated``, of the open deals with no creation date."""
    codes = {d: _Codes() for d in DIMS[1:]}
    spill = _Spill(_DEAL_DTYPE)
    try:
        _read(conn, deal_stmt(source, ranges, undated), _DEAL_DTYPE, 4, codes, spill)
        groups = {d: codes[d].groups(conn, d in CASELESS) for d in DIMS[1:]}
        flags = {d: flags_of(d) for d in DIMS}
        for month in sorted(spill.parts, key=lambda m: (m is None, m or 0)):
            rec = spill.read(month)
            m = _Month(rec, ("time",))
            text = None if month is None else _month_text(month)
            for dim in DIMS:
                by_day = dim in DAY_DIMS and month is not None
                key = groups[dim].key_of[rec[dim]] if dim else np.zeros(len(rec), np.int32)
                nkeys = len(groups[dim].keys) if dim else 1
                for grain in ("d", "m") if by_day else ("m",):
                    g = _Grouping(m, key, nkeys, rec["day"] if grain == "d" else None, rec["kind"])
                    yield from _deal_group_rows(
                        source, dim, grain, month, text, g, rec, groups.get(dim), flags[dim]
                    )
            if step is not None:
                step()
    finally:
        spill.close()


def _deal_group_rows(
    source: str,
    dim: str,
    grain: str,
    month: int | None,
    text: str | None,
    g: _Grouping,
    rec: np.ndarray,
    groups: _Groups | None,
    flags: dict[Any, int],
) -> Iterator[tuple[Any, ...]]:
    deals = g.count().tolist()
    amounts, priced = g.sums(rec["amount"])
    priced_n = priced.tolist()
    times = g.sorted_values("time")
    if groups is None:
        keys: list[Any] = [None] * g.n
        labels: list[Any] = [None] * g.n
    else:
        keys = [groups.keys[k] for k in g.key.tolist()]
        labels = g.labels(groups, rec[dim])
    assert g.extra is not None
    kinds = [KINDS[k] for k in g.extra.tolist()]
    periods = g.day.tolist() if g.day is not None else [month] * g.n
    for i in range(g.n):
        yield (
            source,
            grain,
            kinds[i],
            periods[i],
            None,
            text,
            dim,
            keys[i],
            labels[i],
            deals[i],
            amounts[i],
            priced_n[i],
            flags.get((kinds[i], grain, periods[i], keys[i]), 0) if flags else 0,
            times[i],
        )
