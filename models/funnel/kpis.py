"""The shared KPIs: each one defined once, here, with its formula.

Two populations, set by the date the window (``--from``/``--to``, inclusive days, UTC) filters on:

- **MQL cohort** — records whose ``mql_at`` falls in the window. The lead-flow KPIs follow this
  cohort through the funnel, whenever its later stages happened.
- **Closed in window** — records won or lost in the window (``won_at`` / ``lost_at``). The deal
  KPIs (win rate, sales cycle, revenue) count what closed in the period, MQL or not.

``--by month`` groups the cohort by MQL month and closed deals by close month.

A KPI whose stage the data never records in the window (e.g. no record has a first sales touch)
is *no data* (``None``), not 0: a source that does not track a stage cannot show a 0% for it.

How it is computed: two set-based SQLAlchemy Core aggregates over ``funnel_records``, one pass
over the MQL cohort and one over the deals closed in the window (``count(*) FILTER (WHERE ...)``
for every count). The same passes return the hand-off latencies, sales cycle times and
rejection reasons of each group as text (``group_concat`` / ``string_agg``); Python sorts the
values and interpolates medians and p90s exactly as ``percentile_cont`` does. Measured on
1,000,000 leads (bench/funnel.py), this beats window functions and separate scans. Timestamps
are integer seconds, so SQLite and PostgreSQL give the same numbers to the last digit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models.errors import InvalidInput
from models.funnel.tables import FunnelRecord, to_epoch

Unit = Literal["count", "rate", "hours", "days", "money"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class KpiDef:
    name: str
    title: str
    unit: Unit
    better: Better
    population: Literal["mql", "closed"]
    formula: str
    sample: str  # what the sample size counts


_DEFS = [
    KpiDef(
        "mql_volume",
        "MQL volume",
        "count",
        "higher",
        "mql",
        "count of records with mql_at in the window",
        "MQLs",
    ),
    KpiDef(
        "mql_to_sql_rate",
        "MQL→SQL rate",
        "rate",
        "higher",
        "mql",
        "MQLs with sql_at / MQLs (no data if no record in the window has sql_at)",
        "MQLs",
    ),
    KpiDef(
        "mql_to_won_rate",
        "MQL→won rate",
        "rate",
        "higher",
        "mql",
        "MQLs with won_at / MQLs (no data if no MQL in the window was won)",
        "MQLs",
    ),
    KpiDef(
        "sales_acceptance_rate",
        "Sales acceptance rate",
        "rate",
        "higher",
        "mql",
        "accepted / decided, where accepted = sql_at set, decided = sql_at or rejected_at set",
        "MQLs sales accepted or rejected",
    ),
    KpiDef(
        "sales_rejection_rate",
        "Sales rejection rate",
        "rate",
        "lower",
        "mql",
        "rejected (rejected_at set, sql_at not) / decided; detail: top rejection reasons",
        "MQLs sales accepted or rejected",
    ),
    KpiDef(
        "handoff_latency_median_hours",
        "Hand-off latency, median",
        "hours",
        "lower",
        "mql",
        "median of (first_touch_at - mql_at) in hours over touched MQLs (negative → 0)",
        "touched MQLs",
    ),
    KpiDef(
        "handoff_latency_p90_hours",
        "Hand-off latency, p90",
        "hours",
        "lower",
        "mql",
        "90th percentile (linear, as percentile_cont) of (first_touch_at - mql_at) in hours",
        "touched MQLs",
    ),
    KpiDef(
        "sla_attainment",
        "SLA attainment",
        "rate",
        "higher",
        "mql",
        "MQLs touched within the SLA hours / MQLs due (touched, or untouched with the SLA "
        "deadline before the as-of time); no data if no MQL in the window was touched",
        "MQLs due",
    ),
    KpiDef(
        "untouched_leads",
        "Untouched leads",
        "count",
        "lower",
        "mql",
        "MQLs with no sales stage at all (no first touch, SQL, rejection, opportunity, won or "
        "lost); no data if no MQL in the window was touched",
        "MQLs",
    ),
    KpiDef(
        "stalled_leads",
        "Stalled leads",
        "count",
        "lower",
        "mql",
        "open MQLs (not won, lost or rejected) that sales touched, accepted or turned into an "
        "opportunity, whose latest such stage is more than stall_days before the as-of time",
        "MQLs",
    ),
    KpiDef(
        "win_rate",
        "Win rate",
        "rate",
        "higher",
        "closed",
        "won / (won + lost), counting deals won or lost in the window",
        "deals closed in the window",
    ),
    KpiDef(
        "sales_cycle_median_days",
        "Sales cycle, median",
        "days",
        "lower",
        "closed",
        "median of (won_at - start) in days over deals won in the window, where start is "
        "opportunity_at, else sql_at, else mql_at (negative → 0)",
        "deals won with a start date",
    ),
    KpiDef(
        "revenue_won",
        "Revenue won",
        "money",
        "higher",
        "closed",
        "sum of amount over deals won in the window (no data if none of them has an amount)",
        "deals won in the window",
    ),
]

#: Every KPI by name, in display order.
KPIS: dict[str, KpiDef] = {d.name: d for d in _DEFS}
KPI_NAMES: tuple[str, ...] = tuple(KPIS)
GROUPS: tuple[str, ...] = ("channel", "campaign", "owner", "team", "month")


def kpi_def(name: str) -> KpiDef:
    try:
        return KPIS[name]
    except KeyError:
        raise InvalidInput(f"unknown KPI {name!r}; known: {', '.join(KPI_NAMES)}") from None


# --- results ---------------------------------------------------------------------------------


class KpiValue(BaseModel):
    kpi: str
    value: float | None
    numerator: float | None = None
    sample_size: int = 0
    detail: dict[str, Any] | None = None


class KpiGroup(BaseModel):
    group: str | None  # None: everything (no --by), or records with no value for the group
    kpis: dict[str, KpiValue]


class KpiReport(BaseModel):
    window_start: date | None
    window_end: date | None
    by: str | None
    sla_hours: float
    stall_days: int
    as_of: datetime
    source: str | None
    groups: list[KpiGroup]

    def overall(self) -> dict[str, KpiValue]:
        """The KPIs of the whole window (only meaningful without ``by``)."""
        if self.by is not None:
            raise ValueError("overall() is for a report computed without 'by'")
        return self.groups[0].kpis if self.groups else {}


# --- SQL helpers -----------------------------------------------------------------------------


class _month_of(FunctionElement):
    """'YYYY-MM' of an epoch-seconds column, in UTC."""

    type = String()
    inherit_cache = True


@compiles(_month_of, "sqlite")
def _month_of_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(_month_of, "postgresql")
def _month_of_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    arg = compiler.process(element.clauses, **kw)
    return f"to_char(to_timestamp({arg}) AT TIME ZONE 'UTC', 'YYYY-MM')"


class _concat(FunctionElement):
    """All non-NULL values of a group as one text, joined by ``sep`` (an aggregate):
    ``group_concat`` on SQLite, ``string_agg`` on PostgreSQL."""

    type = String()
    inherit_cache = True


@compiles(_concat, "sqlite")
def _concat_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    expr, sep = list(element.clauses)
    return f"group_concat({compiler.process(expr, **kw)}, {compiler.process(sep, **kw)})"


@compiles(_concat, "postgresql")
def _concat_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    expr, sep = list(element.clauses)
    arg = f"CAST({compiler.process(expr, **kw)} AS TEXT)"
    return f"string_agg({arg}, {compiler.process(sep, **kw)})"


#: Separates the values of a ``_concat``: a comma for numbers, the ASCII unit separator for text
#: (a rejection reason may hold commas).
_NUMBERS, _TEXTS = ",", "\x1f"


def _ints(text: str | None) -> list[int]:
    return list(map(int, text.split(_NUMBERS))) if text else []


_T = FunnelRecord.__table__


def _col(name: str) -> ColumnElement[int]:
    """A timestamp column as the plain integer it is stored as."""
    return type_coerce(_T.c[name], BigInteger)


def _count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
    # count(*) FILTER (WHERE ...): both backends; measured cheaper than sum(CASE ...) on SQLite
    return func.count().filter(cond)


def _group_expr(by: str | None, date_col: ColumnElement[int]) -> ColumnElement[Any] | None:
    if by is None:
        return None
    if by == "month":
        return _month_of(date_col)
    return _T.c[by]


def percentile(values: list[int], q: int) -> float:
    """The ``q``-th percentile of sorted ``values``, interpolated linearly between the two
    nearest ranks exactly as SQL's ``percentile_cont(q / 100)``."""
    lo, rem = divmod((len(values) - 1) * q, 100)
    x_lo = values[lo]
    x_hi = values[lo + 1] if rem else x_lo
    return x_lo + (x_hi - x_lo) * rem / 100


def _percentiles(values: list[int], quantiles: tuple[int, ...]) -> tuple[int, dict[int, float]]:
    """(n, {q: value}) of integer values; a negative value (a stage recorded before the one it
    is measured from, on the same day) counts as 0."""
    values.sort()
    negative = bisect_left(values, 0)
    values[:negative] = [0] * negative
    return len(values), {q: percentile(values, q) for q in quantiles}


# --- computing ---------------------------------------------------------------------------------


def _window(start: date | None, end: date | None) -> tuple[int | None, int | None]:
    if start and end and end < start:
        raise InvalidInput(f"the window ends ({end}) before it starts ({start})")
    s = to_epoch(datetime.combine(start, time(), UTC)) if start else None
    e = to_epoch(datetime.combine(end + timedelta(days=1), time(), UTC)) if end else None
    return s, e


def _in_window(col: ColumnElement[int], s: int | None, e: int | None) -> list[ColumnElement[bool]]:
    conds = []  # a bound excludes NULL already
    if s is not None:
        conds.append(col >= s)
    if e is not None:
        conds.append(col < e)
    return conds or [col.is_not(None)]


def compute_kpis(
    session: Session | Connection,
    *,
    start: date | None = None,
    end: date | None = None,
    by: str | None = None,
    sla_hours: float = 24,
    stall_days: int = 30,
    as_of: datetime | None = None,
    source: str | None = None,
) -> KpiReport:
    """Every KPI over the window (inclusive days), overall or per group (``by``)."""
    if by is not None and by not in GROUPS:
        raise InvalidInput(f"cannot group by {by!r}; use one of {', '.join(GROUPS)}")
    if sla_hours <= 0:
        raise InvalidInput("the SLA must be a positive number of hours")
    if stall_days < 1:
        raise InvalidInput("stall days must be at least 1")
    conn = session.connection() if isinstance(session, Session) else session
    as_of = as_of or datetime.now(UTC)
    now = to_epoch(as_of)
    s, e = _window(start, end)
    sla_s = int(round(sla_hours * 3600))
    stall_s = stall_days * 86400
    src = [_T.c.source == source] if source else []

    mql, touch, sql_, rej, opp, won, lost = (
        _col(n)
        for n in (
            "mql_at",
            "first_touch_at",
            "sql_at",
            "rejected_at",
            "opportunity_at",
            "won_at",
            "lost_at",
        )
    )

    # --- the MQL cohort: one pass for every count
    cohort = [*_in_window(mql, s, e), *src]
    g = _group_expr(by, mql)
    touched = touch.is_not(None)
    rejected_only = and_(rej.is_not(None), sql_.is_(None))
    is_open = and_(won.is_(None), lost.is_(None), ~rejected_only)
    progressed = or_(touched, sql_.is_not(None), opp.is_not(None))
    no_stage = and_(*(c.is_(None) for c in (touch, sql_, rej, opp, won, lost)))
    stages, cutoff = (touch, sql_, opp), now - stall_s
    counts = [
        func.count().label("mqls"),
        func.count(sql_).label("sqls"),
        func.count(won).label("won"),
        _count_if(or_(sql_.is_not(None), rej.is_not(None))).label("decided"),
        _count_if(rejected_only).label("rejected"),
        func.count(touch).label("touched"),
        _count_if(and_(touched, touch - mql <= sla_s)).label("within_sla"),
        _count_if(or_(touched, mql + sla_s <= now)).label("due"),
        _count_if(no_stage).label("untouched"),
        # the latest of these stages is before the cut-off = each is missing or before it
        _count_if(and_(is_open, progressed, *(or_(c.is_(None), c < cutoff) for c in stages))).label(
            "stalled"
        ),
        func.count(opp).label("opps"),
    ]
    # The latency values and the rejection reasons come out of the same pass, as text: one
    # scan of the table instead of three (measured on 1M leads; see bench/funnel.py).
    texts = [
        _concat(case((touched, touch - mql)), literal(_NUMBERS)).label("latency"),
        _concat(
            case((rejected_only, func.coalesce(_T.c.rejection_reason, "(no reason given)"))),
            literal(_TEXTS),
        ).label("reasons"),
    ]
    stmt = select(*([g.label("g")] if g is not None else []), *counts, *texts).where(*cohort)
    if g is not None:
        stmt = stmt.group_by(g)
    names = [c.name for c in counts]
    cohort_rows: dict[Any, dict[str, int]] = {}
    latency: dict[Any, tuple[int, dict[int, float]]] = {}
    reasons: dict[Any, list[tuple[str, int]]] = {}
    for r in conn.execute(stmt):
        key = r.g if g is not None else None
        cohort_rows[key] = {n: int(getattr(r, n) or 0) for n in names}
        values = _ints(r.latency)
        if values:
            latency[key] = _percentiles(values, (50, 90))
        if r.reasons:
            reasons[key] = list(Counter(r.reasons.split(_TEXTS)).items())

    # --- closed in the window: won or lost, with the sales cycle values from the same pass
    won_in = and_(*_in_window(won, s, e))
    lost_in = and_(*_in_window(lost, s, e))
    gc = _group_expr(by, func.coalesce(won, lost))
    amount = _T.c.amount_cents
    start_expr = func.coalesce(opp, sql_, mql)
    closed = [
        _count_if(won_in).label("won"),
        _count_if(lost_in).label("lost"),
        func.sum(case((won_in, amount))).label("revenue"),
        func.count(case((won_in, amount))).label("with_amount"),
        _concat(case((won_in, won - start_expr)), literal(_NUMBERS)).label("cycle"),
    ]
    cstmt = select(*([gc.label("g")] if gc is not None else []), *closed).where(
        or_(won_in, lost_in), *src
    )
    if gc is not None:
        cstmt = cstmt.group_by(gc)
    closed_rows: dict[Any, Any] = {}
    cycle: dict[Any, tuple[int, dict[int, float]]] = {}
    for r in conn.execute(cstmt):
        key = r.g if gc is not None else None
        closed_rows[key] = r
        values = _ints(r.cycle)
        if values:
            cycle[key] = _percentiles(values, (50,))

    # Stage presence over the whole window: a stage no record carries is "no data".
    present = {
        "sql": any(r["sqls"] for r in cohort_rows.values()),
        "won": any(r["won"] for r in cohort_rows.values()),
        "touch": any(r["touched"] for r in cohort_rows.values()),
        "progress": any(r["touched"] or r["sqls"] or r["opps"] for r in cohort_rows.values()),
    }

    keys = set(cohort_rows) | set(closed_rows)
    if by is None:
        keys = {None}
    groups = []
    for key in sorted(keys, key=lambda k: (k is None, str(k))):
        groups.append(
            KpiGroup(
                group=key,
                kpis=_values(
                    cohort_rows.get(key),
                    closed_rows.get(key),
                    latency.get(key),
                    cycle.get(key),
                    reasons.get(key, []),
                    present,
                ),
            )
        )
    return KpiReport(
        window_start=start,
        window_end=end,
        by=by,
        sla_hours=sla_hours,
        stall_days=stall_days,
        as_of=as_of,
        source=source,
        groups=groups,
    )


def _values(
    c: Any,
    d: Any,
    lat_n: tuple[int, dict[int, float]] | None,
    cyc_n: tuple[int, dict[int, float]] | None,
    reasons: list[tuple[str, int]],
    present: dict[str, bool],
) -> dict[str, KpiValue]:
    def n(row: Any, name: str) -> int:
        if row is None:
            return 0
        value = row[name] if isinstance(row, dict) else getattr(row, name)
        return int(value or 0)

    mqls, sqls, won_c = n(c, "mqls"), n(c, "sqls"), n(c, "won")
    decided, rejected, touched = n(c, "decided"), n(c, "rejected"), n(c, "touched")
    won_d, lost_d, with_amount = n(d, "won"), n(d, "lost"), n(d, "with_amount")
    revenue_cents = int(d.revenue) if d is not None and d.revenue is not None else 0

    def rate(num: int, den: int, ok: bool = True) -> tuple[float | None, float, int]:
        return (num / den if den and ok else None), num, den

    lat = lat_n[1] if lat_n else None
    cyc = cyc_n[1] if cyc_n else None
    out: dict[str, KpiValue] = {}

    def put(name: str, value: float | None, num: float | None, sample: int, **detail: Any) -> None:
        out[name] = KpiValue(
            kpi=name, value=value, numerator=num, sample_size=sample, detail=detail or None
        )

    put("mql_volume", float(mqls), mqls, mqls)
    put("mql_to_sql_rate", *rate(sqls, mqls, present["sql"]))
    put("mql_to_won_rate", *rate(won_c, mqls, present["won"]))
    put("sales_acceptance_rate", *rate(decided - rejected, decided))
    top = sorted(reasons, key=lambda x: (-x[1], x[0]))[:5]
    put(
        "sales_rejection_rate",
        *rate(rejected, decided),
        **({"top_reasons": [{"reason": r, "count": k} for r, k in top]} if top else {}),
    )
    put("handoff_latency_median_hours", lat[50] / 3600 if lat else None, None, touched)
    put("handoff_latency_p90_hours", lat[90] / 3600 if lat else None, None, touched)
    put("sla_attainment", *rate(n(c, "within_sla"), n(c, "due"), present["touch"]))
    put(
        "untouched_leads",
        float(n(c, "untouched")) if present["touch"] else None,
        n(c, "untouched"),
        mqls,
    )
    put(
        "stalled_leads",
        float(n(c, "stalled")) if present["progress"] else None,
        n(c, "stalled"),
        mqls,
    )
    put("win_rate", *rate(won_d, won_d + lost_d))
    put("sales_cycle_median_days", cyc[50] / 86400 if cyc else None, None, cyc_n[0] if cyc_n else 0)
    revenue = revenue_cents / 100 if (with_amount or not won_d) else None
    put("revenue_won", revenue, revenue, won_d)
    return out


# --- presentation ------------------------------------------------------------------------------


def format_value(name: str, value: float | None) -> str:
    """A KPI value as people read it: 72.5%, 5.2 h, 14.0 d, 1,234.00, 812."""
    if value is None:
        return "no data"
    unit = KPIS[name].unit
    if unit == "rate":
        return f"{value * 100:.1f}%"
    if unit == "hours":
        return f"{value:.1f} h"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "money":
        return f"{value:,.2f}"
    return f"{value:,.0f}"
