"""The KPI rollups: kept up to date by the import, read by :mod:`models.funnel.rollup_read`.

What they hold (:class:`~models.funnel.tables.KpiLeadRollup`,
:class:`~models.funnel.tables.KpiDealRollup`): per source, everything and each channel and
team by UTC day and month, and each campaign and owner by month (:data:`DAY_DIMS`), the MQL
cohort's counts and the deals' events (won, lost, open, both won and lost) with their counts
and sums, and the distributions the medians, p90s and as-of counts need, exact to the second
(sorted integers): hand-off latencies, the MQL times of untouched leads, the latest progress of
open leads, won deals' cycles, open deals' creation times. So a KPI's cost is the groups it
reads, and its numbers are those of the rows (``tests/test_kpi_rollups.py``).

How they are kept: :func:`refresh` recomputes the rollups of one source for the months given
(every month when none are), in the caller's unit of work, from the rows: every lead and every
deal's event (its win, else its loss, else its being open) is read once and grouped by month
with numpy (:mod:`models.funnel.rollup_build`; a table's rollups are made in a thread while the
next table is read, :class:`~models.funnel.rollup_build.Made`); the losses of deals also won,
which are rare, by grouped queries. The import (:func:`models.funnel.importer.import_files`)
passes the months its rows touched (:class:`models.funnel.rollup_touched.Touched`): the
months of the old and the new dates of every lead and deal it wrote, and of the leads and
deals linked to them (a lead's deals carry its channel; a lead carries its deals' summary and
flags). Anything that writes leads or deals otherwise calls :func:`refresh` after it
(``tests/test_kpis.py`` does, as an import would).

Why one file of this size: the periods, the refresh and its writer, the flags and the rare
kinds of deal rollups change together with the tables' layout and with
:mod:`models.funnel.rollup_read`; building the rows is :mod:`models.funnel.rollup_build`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    delete,
    distinct,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from models.base import utcnow
from models.funnel import rollup_build
from models.funnel.bulk import Bulk
from models.funnel.rollup_build import (
    DAY_DIMS,
    DIMS,
    LEAD_BITS,
    Made,
    deal_events,
    in_ranges,
    read_deals,
    read_leads,
)
from models.funnel.sql import (
    DAY,
    D,
    F,
    L,
    day_of,
    deal_dims,
    deal_terms,
    dimension,
    lead_dims,
    lead_terms,
    month_of,
)
from models.funnel.tables import KpiDealRollup, KpiLeadRollup, KpiRollupSource

LR = KpiLeadRollup.__table__
DR = KpiDealRollup.__table__
SR = KpiRollupSource.__table__
#: the counts of a lead rollup row: every MQL, those of each condition, the flagged ones
LEAD_COUNTS = ("mqls", *LEAD_BITS, "flagged")
LEAD_TIMES = ("latency", "untouched_mql", "progress")
#: A month number: year * 12 + month - 1. ``None`` in a set of months: open deals with no
#: creation date.
Month = int | None
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Rows fetched at a time from a grouped pass: each holds its group's values as text.
_FETCH = 8
#: Flagged records' rows fetched at a time (a few integers and keys each: 8 at a time, a
#: million flagged deals took 130,000 round trips on PostgreSQL, 25 s).
_FLAGGED_FETCH = 5000


# --- periods ------------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def month_of_day(day: int) -> int:
    d = date.fromordinal(_EPOCH_ORDINAL + day)
    return d.year * 12 + d.month - 1


def month_number(text: str) -> int:
    """'YYYY-MM' -> year * 12 + month - 1."""
    return int(text[:4]) * 12 + int(text[5:7]) - 1


def month_text(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def month_start_day(month: int) -> int:
    return date(month // 12, month % 12 + 1, 1).toordinal() - _EPOCH_ORDINAL


def month_of_epoch(seconds: int | None) -> Month:
    return None if seconds is None else month_of_day(seconds // DAY)


def _epoch_of(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, datetime):
        v = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(v.timestamp() // 1)
    return None


def _ranges(months: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs of months as [start, end) epoch seconds."""
    runs: list[list[int]] = []
    for m in sorted(months):
        if runs and runs[-1][1] == m:
            runs[-1][1] = m + 1
        else:
            runs.append([m, m + 1])
    return [(month_start_day(a) * DAY, month_start_day(b) * DAY) for a, b in runs]


# --- building ----------------------------------------------------------------------------------


def refresh(
    session: Session | Connection,
    source: str,
    months: set[Month] | None = None,
    step: Callable[[int, int], None] | None = None,
    both: bool | None = None,
) -> None:
    """Recompute the rollups of ``source`` for ``months`` (None: every month), in the caller's
    unit of work; the source's rollups are kept from then on. ``step(done, of)`` tells the
    progress (:class:`_Steps`): ``(0, of)`` first, ``of`` never changes, ``done`` only grows,
    up to ``(of, of)`` at the end. ``both``: whether the source has listed deals both won and
    lost, when the caller knows (the import, from the flags it has just computed; else a
    scan of the deals finds out: 0.35 s at 1,000,000 leads on SQLite, measured)."""
    conn = session.connection() if isinstance(session, Session) else session
    dated = None if months is None else {m for m in months if m is not None}
    ranges = None if dated is None else _ranges(dated)
    undated = months is None or None in months
    # skipped when the source has none: flags, deals both won and lost (a scan each saved)
    flagged = conn.execute(select(F.c.id).where(F.c.source == source).limit(1)).first() is not None
    if both is None:
        both = (
            conn.execute(
                select(D.c.id)
                .where(
                    D.c.source == source,
                    D.c.listed,
                    D.c.won_at.is_not(None),
                    D.c.lost_at.is_not(None),
                )
                .limit(1)
            ).first()
            is not None
        )
    with_leads = ranges is None or bool(ranges)
    with_deals = with_leads or undated
    rare = both and with_leads
    # the rows the reads can meet: each table's rows of the source (a count on its index)
    rows = [
        _count(conn, L, source) if with_leads else 0,
        _count(conn, D, source) if with_deals else 0,
    ]
    steps = _Steps(step, rows, 2 * len(DIMS) if rare else 0)
    _delete(conn, source, months)
    builds = []  # each table's rows read (spilled to disk)
    made = []  # then its rollups made, in a thread, while the next table is read
    lead_rows = None
    try:
        if with_leads:
            lead_flags = _once(lambda: _lead_flags(conn, source, ranges)) if flagged else None
            leads = read_leads(conn, source, ranges, lead_flags or _none, steps.read(0))
            builds.append(leads)
            lead_rows = Made(leads)
            made.append((LR, _LEAD_ROW, leads.records, lead_rows, 0))
            steps.finished(0)
        if with_deals:
            deal_flags = (
                _once(lambda: _deal_flags(conn, source, ranges, undated)) if flagged else None
            )
            deals = read_deals(conn, source, ranges, undated, deal_flags or _none, steps.read(1))
            builds.append(deals)
            made.append((DR, _DEAL_ROW, deals.records, Made(deals, after=lead_rows), 1))
            steps.finished(1)
        for table, columns, records, rows, i in made:
            _write(conn, table, columns, rows.rows(steps.built(i, records)))
            steps.finished(2 + i)
        if rare:
            for n, dim in enumerate(DIMS):
                for k, kind in enumerate(("lost", "both")):
                    _deals(conn, source, dim, kind, ranges, flagged)
                    steps.passed(2 * n + k + 1)
    finally:
        for _t, _c, _r, rows, _i in made:
            rows.close()  # (its thread stopped before its records are removed)
        for build in builds:
            build.close()
    steps.to(steps.of)
    if conn.execute(select(SR.c.source).where(SR.c.source == source)).first() is None:
        conn.execute(insert(SR).values(source=source, refreshed_at=utcnow()))
    else:
        conn.execute(SR.update().where(SR.c.source == source).values(refreshed_at=utcnow()))


def _none(_dim: str) -> dict[Any, int]:
    return {}


def _count(conn: Connection, table: Any, source: str) -> int:
    return conn.execute(select(func.count()).where(table.c.source == source)).scalar_one()


class _Steps:
    """The progress of a refresh as ``step(done, of)``: each table's rows read, then summed
    up (month by month), then the rare passes, in steps of :data:`~rollup_build.CHUNK` rows
    (a rare pass: one step). ``of`` is told first, with ``done`` 0, and never changes: it is
    counted from the source's rows of each table, which the rows read are among (a read of
    some months, or of the leads with an MQL date, ends short of them: its steps then go
    straight to the read's end). ``done`` is told when it grows, up to ``of``."""

    def __init__(self, step: Callable[[int, int], None] | None, rows: list[int], passes: int):
        unit = rollup_build.CHUNK  # (read now: a test may make chunks small)
        self.step, self.rows, self.unit = step, rows, unit
        self.chunks = [-(-n // unit) for n in rows]
        reading = sum(self.chunks)
        self.starts = [0, self.chunks[0], reading, reading + self.chunks[0], 2 * reading]
        self.of = max(2 * reading + passes, 1)
        self.done = 0
        if step is not None:
            step(0, self.of)

    def to(self, done: int) -> None:
        done = min(done, self.of)
        if done > self.done:
            self.done = done
            if self.step is not None:
                self.step(done, self.of)

    def read(self, table: int) -> Callable[[int], None]:
        """``told(rows)``: the rows of ``table`` (0: leads, 1: deals) read so far."""
        start, chunks = self.starts[table], self.chunks[table]
        return lambda rows: self.to(start + min(rows // self.unit, chunks))

    def built(self, table: int, records: int) -> Callable[[int], None]:
        """``told(done)``: the records of ``table`` summed up so far, of ``records``."""
        start, chunks = self.starts[2 + table], self.chunks[table]
        return lambda done: self.to(start + chunks * done // max(records, 1))

    def finished(self, phase: int) -> None:
        """The end of a phase: 0, 1 the leads', the deals' read; 2, 3 their summing up."""
        self.to(self.starts[phase + 1])

    def passed(self, passes: int) -> None:
        self.to(self.starts[4] + passes)


def _write(conn: Connection, table: Any, columns: tuple[str, ...], rows: Iterable[Any]) -> None:
    writer = Bulk(conn, table, columns, sized=(*LEAD_TIMES, "times"))
    add = writer.add
    for row in rows:
        add(row)
    writer.flush()


def forget(session: Session | Connection, source: str | None = None) -> None:
    """Drop the rollups (of one source): the KPIs read the rows until the next refresh."""
    conn = session.connection() if isinstance(session, Session) else session
    for t in (LR, DR, SR):
        conn.execute(delete(t).where(t.c.source == source) if source else delete(t))


def _delete(conn: Connection, source: str, months: set[Month] | None) -> None:
    if months is None:
        for t in (LR, DR):
            conn.execute(delete(t).where(t.c.source == source))
        return
    dated = sorted(m for m in months if m is not None)
    for a, b in _ranges(dated):
        a_month, b_month = month_of_day(a // DAY), month_of_day(b // DAY)
        for t in (LR, DR):
            conn.execute(
                delete(t).where(
                    t.c.source == source,
                    or_(
                        and_(t.c.grain == "d", t.c.period >= a // DAY, t.c.period < b // DAY),
                        and_(t.c.grain == "m", t.c.period >= a_month, t.c.period < b_month),
                    ),
                )
            )
    if None in months:
        conn.execute(delete(DR).where(DR.c.source == source, DR.c.period.is_(None)))


def _key_label(dim: str, columns: dict[str, Any]) -> tuple[Any, Any]:
    if not dim:
        return type_coerce(null(), String), type_coerce(null(), String)
    return dimension(dim, columns, None)  # type: ignore[arg-type]


def _stream(conn: Connection, stmt: Any, per: int = _FETCH) -> Any:
    # per statement: Connection.execution_options would change the connection for good
    return conn.execute(stmt.execution_options(stream_results=True, yield_per=per))


def _flagged(chunks: Iterable[list[Any]]) -> dict[str, Counter[Any]]:
    """Counters of flagged records by dimension, from chunks of rows of (the event kind or
    None, day, month, each dimension's key but the first's, how many records): the database
    groups the records alike, so a dimension adds up groups, not records (a million flagged
    deals added up one at a time took 8 s of Python)."""
    out: dict[str, Counter[Any]] = {d: Counter() for d in DIMS}
    by_day = [d in DAY_DIMS for d in DIMS]
    for chunk in chunks:
        for kind, day, month, *keys, n in chunk:
            daily, monthly = _periods(day, month)
            for dim, daywise, k in zip(DIMS, by_day, (None, *keys), strict=True):
                counter = out[dim]
                for grain, period in daily if daywise else monthly:
                    counter[(grain, period, k) if kind is None else (kind, grain, period, k)] += n
    return out


@lru_cache(maxsize=8192)
def _periods(day: int | None, month: str | None) -> tuple[list, list]:
    """The (grain, period) pairs of a day and its month: by day, the day and its month; by
    month, the month; a record with no date counts in the month ``None``."""
    if day is None:
        none = [("m", None)]
        return none, none if month is None else [("m", month_number(month))]
    return [("d", day), ("m", month_of_day(day))], [("m", month_number(month))]


def _lead_flags(
    conn: Connection, source: str, ranges: list[tuple[int, int]] | None
) -> dict[str, Counter[Any]]:
    """Flagged leads by (grain, period, key), for each dimension: one pass over the flagged
    leads (a million flags were a join of every flag per dimension, 2.4 s; the leads named
    by a flag, looked up by their natural key)."""
    t = lead_terms()
    keys = [_key_label(dim, lead_dims())[0] for dim in DIMS[1:]]
    named = select(F.c.lead_key).where(F.c.source == source, F.c.lead_key.is_not(None))
    day, month = day_of(t.mql), month_of(t.mql)
    stmt = (
        select(null(), day, month, *keys, func.count())
        .where(L.c.source == source, in_ranges(t.mql, ranges), L.c.external_id.in_(named))
        .group_by(day, month, *keys)
    )
    return _flagged(_stream(conn, stmt, _FLAGGED_FETCH).partitions())


def _deal_flags(
    conn: Connection, source: str, ranges: list[tuple[int, int]] | None, undated: bool
) -> dict[str, Counter[Any]]:
    """Flagged deals by (event, grain, period, key), for each dimension: one pass over the
    flagged deals (a million flags were a join of every flag per dimension, 19 s)."""
    e = deal_events(undated, ranges)
    keys = [_key_label(dim, deal_dims())[0] for dim in DIMS[1:]]
    named = select(F.c.deal_key).where(F.c.source == source, F.c.deal_key.is_not(None))
    day = day_of(e["at"])
    stmt = (
        select(e["kinds"], day, e["month"], *keys, func.count())
        .where(D.c.listed, D.c.source == source, e["where"], D.c.external_id.in_(named))
        .group_by(e["kinds"], day, e["month"], *keys)
    )
    return _flagged(_stream(conn, stmt, _FLAGGED_FETCH).partitions())


def _once(compute: Callable[[], dict[str, Counter[Any]]]) -> Callable[[str], dict[Any, int]]:
    """A dimension's flagged counts, all dimensions' computed at the first asked."""
    done: dict[str, Counter[Any]] = {}

    def of(dim: str) -> dict[Any, int]:
        if not done:
            done.update(compute())
        return done[dim]

    return of


#: the columns of a lead rollup row, in the order :func:`_leads` builds them
_LEAD_ROW = ("source", "grain", "period", "dim", "key", "label", *LEAD_COUNTS, *LEAD_TIMES)
_LEAD_ROW += ("reasons",)
#: the columns of a deal rollup row, in the order :func:`_deals` builds them
_DEAL_ROW = ("source", "grain", "kind", "period", "other", "month", "dim", "key", "label")
_DEAL_ROW += ("deals", "amount", "with_amount", "flagged", "times")


def _rows_of(conn: Connection, stmt: Any) -> Iterator[Any]:
    """The rows of ``stmt``, streamed in chunks (rows index like tuples)."""
    for chunk in _stream(conn, stmt).partitions():
        yield from chunk


def _deals(
    conn: Connection,
    source: str,
    dim: str,
    kind: str,
    ranges: list[tuple[int, int]] | None,
    with_flags: bool,
) -> None:
    """The deals both won and lost in the months of ``ranges`` (None: all): their loss
    (``lost``, grouped under the win's month) and ``both`` (the days of the loss and the win).
    Rare, so grouped in SQL (a deal's one event, :func:`models.funnel.rollup_build.deal_rows`,
    is its win)."""
    t = deal_terms()
    by_day = dim in DAY_DIMS  # days (merged into months), else months only
    key, label = _key_label(dim, deal_dims())
    where = [D.c.listed, D.c.source == source]
    other = type_coerce(null(), BigInteger)
    kinds = literal_column(f"'{kind}'")
    if kind == "lost":  # the loss of a deal also won (grouped under its win's month)
        at, month = t.lost, month_of(t.won)
        where += [t.won.is_not(None), in_ranges(t.lost, ranges)]
    elif kind == "both":
        at, month = t.lost, month_of(t.won)
        other = day_of(t.won) if by_day else month_of(t.won)
        where += [t.won.is_not(None), in_ranges(t.lost, ranges)]
    day = day_of(at) if by_day else month_of(at)
    groups = [day, *([other] if kind == "both" else []), month, *([key] if dim else [])]
    flagged = {
        tuple(r[:5]): r[5]
        for r in (
            ()
            if not with_flags
            else conn.execute(
                select(kinds, day, other, month, key, func.count(distinct(D.c.id)))
                .select_from(
                    F.join(D, and_(D.c.source == F.c.source, D.c.external_id == F.c.deal_key))
                )
                .where(*where)
                .group_by(*groups)
            )
        )
    }
    stmt = (
        select(
            kinds.label("kind"),
            day.label("day"),
            other.label("other"),
            month.label("month"),
            key.label("key"),
            label.label("label"),
            func.count().label("deals"),
        )
        .where(*where)
        .group_by(*groups)
        .order_by(day)
    )
    writer = Bulk(conn, DR, _DEAL_ROW, sized=(*LEAD_TIMES, "times"))
    add = writer.add
    month_rows: dict[Any, list[Any]] = {}
    current = None
    for kind_, day, other_, month, key, label, deals in _rows_of(conn, stmt):
        n = int(deals)
        marked = int(flagged.get((kind_, day, other_, month, key), 0)) if flagged else 0
        tail = (n, None, 0, marked, b"")
        if not by_day:
            other_m = None if other_ is None else month_number(other_)
            period = month_number(day)
            add((source, "m", kind_, period, other_m, month, dim, key, label, *tail))
            continue
        add((source, "d", kind_, day, other_, month, dim, key, label, *tail))
        if kind == "both":  # day rows only: both dates must fall in a window of days
            continue
        m = month_of_day(day)
        if m != current:
            _flush_deal_months(writer, month_rows, source, current, dim)
            current = m
        acc = month_rows.get((kind_, month, key))
        if acc is None:
            month_rows[(kind_, month, key)] = [other_, label, n, marked]
            continue
        if label is not None and (acc[1] is None or label < acc[1]):
            acc[1] = label
        acc[2] += n
        acc[3] += marked
    _flush_deal_months(writer, month_rows, source, current, dim)
    writer.flush()


def _flush_deal_months(
    writer: Bulk, rows: dict[Any, list[Any]], source: str, month_n: Any, dim: str
) -> None:
    for (kind, month, key), (other, label, n, marked) in rows.items():
        writer.add(
            (source, "m", kind, month_n, other, month, dim, key, label, n, None, 0, marked, b"")
        )
    rows.clear()
