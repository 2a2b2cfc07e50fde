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
(every month when none are), in the caller's unit of work, from the rows: the dimensions kept
by day from one grouping of the months' rows by day x channel x team
(:mod:`models.funnel.rollup_fine`), campaigns and owners by one grouped query each; day rows
streamed out in day order and each month's row merged from its days. The import
(:func:`models.funnel.importer.import_files`) passes the
months its rows touched (:class:`models.funnel.rollup_touched.Touched`): the months of the old
and the new dates of every lead and deal it wrote, and of the leads and deals linked to them
(a lead's deals carry its channel; a lead carries its deals' summary and flags). Anything
that writes leads or deals otherwise calls :func:`refresh` after it (``tests/test_kpis.py``
does, as an import would).

Why one file of this size: the lead and the deal rollups are built the same way (periods,
packing, the streamed day rows merged into months, the writer) and change together with the
tables' layout and with :mod:`models.funnel.rollup_read`.
"""

from __future__ import annotations

import json
import sys
from array import array
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
    case,
    delete,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from models.base import utcnow
from models.funnel.rollup_fine import (
    FINE_DEALS,
    FINE_LEADS,
    deal_events,
    deals_from_fine,
    drop_fine,
    fine_deals_stmt,
    fine_leads_stmt,
    in_ranges,
    leads_from_fine,
    make_fine,
)
from models.funnel.sql import (
    DAY,
    NUMBERS,
    TEXTS,
    D,
    F,
    L,
    concat,
    day_of,
    deal_dims,
    deal_terms,
    dimension,
    ints,
    lead_counts,
    lead_dims,
    lead_terms,
    month_of,
)
from models.funnel.tables import KpiDealRollup, KpiLeadRollup, KpiRollupSource

LR = KpiLeadRollup.__table__
DR = KpiDealRollup.__table__
SR = KpiRollupSource.__table__
#: The dimensions a rollup row is grouped by ("": none, everything in the period).
DIMS = ("", "channel", "campaign", "owner", "team")
#: Those kept by day (and month): everything, and the dimensions with few values whatever the
#: store's size (channels, teams). Campaigns and owners are kept by month only: by day they
#: would be nearly as many rows as leads (200 campaigns x 730 days for 1M leads, measured).
DAY_DIMS = ("", "channel", "team")
LEAD_COUNTS = (
    "mqls",
    "sqls",
    "won",
    "decided",
    "rejected",
    "touched",
    "untouched",
    "deal_leads",
    "opp_dated",
    "reached_sql",
    "flagged",
)
LEAD_TIMES = ("latency", "untouched_mql", "progress")
#: A month number: year * 12 + month - 1. ``None`` in a set of months: open deals with no
#: creation date.
Month = int | None
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BATCH = 5000
#: A batch of rollup rows is also written once its value lists hold this many bytes: a day's
#: row holds every value of the day, so rows grow with the store and a batch of 5,000 held
#: 20 MB at 1,000,000 leads (memory would grow with the store, measured).
_BATCH_BYTES = 2 << 20
#: Rows fetched at a time from a grouped pass: each holds its group's values as text.
_FETCH = 8


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


def _pack(values: Iterable[int]) -> bytes:
    a = array("q", sorted(values))
    if sys.byteorder == "big":  # stored little-endian
        a.byteswap()
    return a.tobytes()


def unpack(blob: bytes | None) -> array:
    a = array("q")
    if blob:
        a.frombytes(blob)
        if sys.byteorder == "big":
            a.byteswap()
    return a


def refresh(
    session: Session | Connection,
    source: str,
    months: set[Month] | None = None,
    step: Callable[[int, int], None] | None = None,
) -> None:
    """Recompute the rollups of ``source`` for ``months`` (None: every month), in the caller's
    unit of work; the source's rollups are kept from then on. ``step(done, of)`` is called
    after each grouped pass (progress)."""
    conn = session.connection() if isinstance(session, Session) else session
    _delete(conn, source, months)
    dated = None if months is None else {m for m in months if m is not None}
    ranges = None if dated is None else _ranges(dated)
    undated = months is None or None in months
    # skipped when the source has none: flags, deals both won and lost (a scan each saved)
    flagged = conn.execute(select(F.c.id).where(F.c.source == source).limit(1)).first() is not None
    both = (
        conn.execute(
            select(D.c.id)
            .where(D.c.source == source, D.c.won_at.is_not(None), D.c.lost_at.is_not(None))
            .limit(1)
        ).first()
        is not None
    )
    fine_leads = fine_deals = None
    if ranges is None or ranges:
        fine_leads = make_fine(conn, FINE_LEADS, fine_leads_stmt(source, ranges))
    if ranges is None or ranges or undated:
        fine_deals = make_fine(conn, FINE_DEALS, fine_deals_stmt(source, ranges, undated))
    passes = len(DIMS) * (2 + (2 if both else 0))
    done = 0
    for dim in DIMS:
        if fine_leads is not None:
            _leads(conn, source, dim, ranges, flagged, fine_leads)
        done += 1
        if step is not None:
            step(done, passes)
        if fine_deals is not None:
            _deals(conn, source, dim, "events", ranges, flagged, undated=undated, fine=fine_deals)
        done += 1
        if step is not None:
            step(done, passes)
        if both and (ranges is None or ranges):
            for kind in ("lost", "both"):
                _deals(conn, source, dim, kind, ranges, flagged)
                done += 1
                if step is not None:
                    step(done, passes)
    drop_fine(conn)
    if conn.execute(select(SR.c.source).where(SR.c.source == source)).first() is None:
        conn.execute(insert(SR).values(source=source, refreshed_at=utcnow()))
    else:
        conn.execute(SR.update().where(SR.c.source == source).values(refreshed_at=utcnow()))


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


def _stream(conn: Connection, stmt: Any) -> Any:
    # per statement: Connection.execution_options would change the connection for good
    return conn.execute(stmt.execution_options(stream_results=True, yield_per=_FETCH))


def _leads(
    conn: Connection,
    source: str,
    dim: str,
    ranges: list[tuple[int, int]] | None,
    flagged: bool,
    fine: Any = None,
) -> None:
    t = lead_terms()
    by_day = dim in DAY_DIMS  # days (merged into months), else months only
    day = day_of(t.mql) if by_day else month_of(t.mql)
    key, label = _key_label(dim, lead_dims())
    where = [L.c.source == source, in_ranges(t.mql, ranges)]
    groups = [day, key] if dim else [day]
    # flagged leads: driven from the (few) flags, by the lead's natural key
    flagged_lead = select(F.c.source, F.c.lead_key).distinct().subquery("flagged")
    flags = {
        (r[0], r[1]): r[2]
        for r in (
            ()
            if not flagged
            else conn.execute(
                select(day, key, func.count())
                .select_from(
                    L.join(
                        flagged_lead,
                        and_(
                            flagged_lead.c.source == L.c.source,
                            flagged_lead.c.lead_key == L.c.external_id,
                        ),
                    )
                )
                .where(*where)
                .group_by(*groups)
            )
        )
    }
    stmt = (
        select(
            day.label("day"),
            key.label("key"),
            label.label("label"),
            *lead_counts(t),
            concat(case((t.touched, t.touch - t.mql)), literal(NUMBERS)).label("latency"),
            concat(case((t.touch.is_(None), t.mql)), literal(NUMBERS)).label("untouched_mql"),
            concat(case((and_(t.is_open, t.progressed), t.last_progress)), literal(NUMBERS)).label(
                "progress"
            ),
            concat(case((t.rejected_only, t.reason)), literal(TEXTS)).label("reasons"),
        )
        .where(*where)
        .group_by(*groups)
        .order_by(day)
    )
    if by_day and fine is not None:  # the same rows, from the day x channel x team groups
        stmt = leads_from_fine(fine, dim)
    writer = _Writer(conn, LR, _LEAD_ROW)
    # the loop below runs once per group row (tens of thousands): plain tuples, no dicts
    month_rows: dict[Any, list[Any]] = {}
    current = None
    add = writer.add
    grain = "d" if by_day else "m"
    for r in _rows_of(conn, stmt):
        day, key, label = r[0], r[1], r[2]
        counts = [*map(int, r[3:13]), int(flags.get((day, key), 0)) if flags else 0]
        latency, untouched, progress = ints(r[13]), ints(r[14]), ints(r[15])
        reasons = Counter(r[16].split(TEXTS)) if r[16] else None
        add(
            (
                source,
                grain,
                day if by_day else month_number(day),
                dim,
                key,
                label,
                *counts,
                _pack(latency),
                _pack(untouched),
                _pack(progress),
                json.dumps(reasons) if reasons else None,
            )
        )
        if not by_day:
            continue
        m = month_of_day(day)
        if m != current:
            _flush_lead_months(writer, month_rows, source, current, dim)
            current = m
        acc = month_rows.get(key)
        if acc is None:
            # a month's values as 8-byte integers, not Python ints (a fifth of the memory)
            month_rows[key] = [
                label,
                counts,
                array("q", latency),
                array("q", untouched),
                array("q", progress),
                reasons or Counter(),
            ]
            continue
        if label is not None and (acc[0] is None or label < acc[0]):
            acc[0] = label
        acc[1] = [a + b for a, b in zip(acc[1], counts, strict=True)]
        acc[2].extend(latency)
        acc[3].extend(untouched)
        acc[4].extend(progress)
        if reasons:
            acc[5].update(reasons)
    _flush_lead_months(writer, month_rows, source, current, dim)
    writer.flush()


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


def _flush_lead_months(
    writer: _Writer, rows: dict[Any, list[Any]], source: str, month: Any, dim: str
) -> None:
    for key, (label, counts, latency, untouched, progress, reasons) in rows.items():
        writer.add(
            (
                source,
                "m",
                month,
                dim,
                key,
                label,
                *counts,
                _pack(latency),
                _pack(untouched),
                _pack(progress),
                json.dumps(reasons) if reasons else None,
            )
        )
    rows.clear()


class _Writer:
    """Rows of one rollup table (tuples of ``columns``), written in batches on the driver:
    COPY on PostgreSQL, a prepared ``executemany`` on SQLite (per-row parameter processing in
    SQLAlchemy cost more than the database, measured)."""

    def __init__(self, conn: Connection, table: Any, columns: tuple[str, ...]) -> None:
        self.conn, self.table, self.rows = conn, table, []
        self.columns = columns
        self.blobs = [i for i, c in enumerate(columns) if c in (*LEAD_TIMES, "times")]
        self.size = 0
        names = ", ".join(self.columns)
        self.pg = conn.dialect.name == "postgresql"
        if self.pg:
            self.sql = f"COPY {table.name} ({names}) FROM STDIN"
        else:
            marks = ", ".join("?" * len(self.columns))
            self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        for i in self.blobs:
            self.size += len(row[i])
        if len(self.rows) >= _BATCH or self.size >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.pg:
            driver = self.conn.connection.driver_connection
            with driver.cursor() as cur, cur.copy(self.sql) as copy:  # type: ignore[union-attr]
                for row in self.rows:
                    copy.write_row(row)
        else:
            self.conn.exec_driver_sql(self.sql, self.rows)
        self.rows, self.size = [], 0


def _deals(
    conn: Connection,
    source: str,
    dim: str,
    kind: str,
    ranges: list[tuple[int, int]] | None,
    with_flags: bool,
    undated: bool = False,
    fine: Any = None,
) -> None:
    """Deal events in the months of ``ranges`` (None: all): ``events``, in one pass, a deal's
    win, else its loss, else its being open (and, ``undated``, the open deals with no creation
    date: period NULL); for the deals both won and lost, their loss (``lost``) and ``both``."""
    t = deal_terms()
    by_day = dim in DAY_DIMS  # days (merged into months), else months only
    key, label = _key_label(dim, deal_dims())
    where = [D.c.listed, D.c.source == source]
    other = type_coerce(null(), BigInteger)
    amount = with_amount = times = None
    kinds = literal_column(f"'{kind}'")
    if kind == "events":
        e = deal_events(undated, ranges)
        kinds, at, month = e["kinds"], e["at"], e["month"]
        where.append(e["where"])
        amount, with_amount, times = e["amount"], e["with_amount"], e["times"]
    elif kind == "lost":  # the loss of a deal also won (grouped under its win's month)
        at, month = t.lost, month_of(t.won)
        where += [t.won.is_not(None), in_ranges(t.lost, ranges)]
    elif kind == "both":
        at, month = t.lost, month_of(t.won)
        other = day_of(t.won) if by_day else month_of(t.won)
        where += [t.won.is_not(None), in_ranges(t.lost, ranges)]
    day = day_of(at) if by_day else month_of(at)
    groups = [day, *([other] if kind == "both" else []), month, *([key] if dim else [])]
    if kind == "events":  # (PostgreSQL refuses a constant in GROUP BY)
        groups.insert(0, kinds)
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
            (amount if amount is not None else null()).label("amount"),
            (with_amount if with_amount is not None else literal_column("0")).label("with_amount"),
            (times if times is not None else null()).label("times"),
        )
        .where(*where)
        .group_by(*groups)
        .order_by(day)
    )
    if by_day and fine is not None:  # the same rows, from the day x channel x team groups
        stmt = deals_from_fine(fine, dim)
    writer = _Writer(conn, DR, _DEAL_ROW)
    add = writer.add
    month_rows: dict[Any, list[Any]] = {}
    current = None
    for kind_, day, other_, month, key, label, deals, amount, with_amount, times_ in _rows_of(
        conn, stmt
    ):
        times_v = ints(times_)
        n = int(deals)
        cents = None if amount is None else int(amount)
        priced = int(with_amount or 0)
        marked = int(flagged.get((kind_, day, other_, month, key), 0)) if flagged else 0
        tail = (n, cents, priced, marked, _pack(times_v))
        if day is None:  # open deals with no creation date: one row, as a month's
            add((source, "m", kind_, None, other_, month, dim, key, label, *tail))
            continue
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
            month_rows[(kind_, month, key)] = [
                other_,
                label,
                n,
                cents,
                priced,
                marked,
                array("q", times_v),
            ]
            continue
        if label is not None and (acc[1] is None or label < acc[1]):
            acc[1] = label
        acc[2] += n
        if cents is not None:
            acc[3] = (acc[3] or 0) + cents
        acc[4] += priced
        acc[5] += marked
        acc[6].extend(times_v)
    _flush_deal_months(writer, month_rows, source, current, dim)
    writer.flush()


def _flush_deal_months(
    writer: _Writer, rows: dict[Any, list[Any]], source: str, month_n: Any, dim: str
) -> None:
    for (kind, month, key), (other, label, n, cents, priced, marked, times) in rows.items():
        writer.add(
            (source, "m", kind, month_n, other, month, dim, key, label)
            + (n, cents, priced, marked, _pack(times))
        )
    rows.clear()
