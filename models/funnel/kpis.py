"""The shared KPIs: each one defined once, here, with its formula, over leads and deals.

Three populations, set by the window (``--from``/``--to``, inclusive days, UTC):

- **MQL cohort** — leads whose ``mql_at`` falls in the window. The lead-flow KPIs follow this
  cohort through the funnel, whenever its later stages happened. A lead is *won* when at least
  one of its deals is won (MQL→won), whatever its other deals did.
- **Deals closed in the window** — deals won or lost in the window. Win rate, sales cycle,
  revenue and average deal size count deals, not leads: a contact with a lost and a won deal
  counts one loss and one win. Deals with no lead (an account only) count here too.
- **Open pipeline** — deals neither won nor lost, created before the window's end: count,
  value and age (as of the as-of time).

``by`` groups by one or two of channel, campaign, owner, team and month: the cohort by MQL
month, closed deals by close month, open deals by creation month; a deal's channel and campaign
are its lead's, its owner and team its own (else its lead's). Channel, campaign and team values
that differ only in case are one group, shown with the spelling that sorts first.

A KPI whose stage the data never records in the window (e.g. no lead has a first sales touch)
is *no data* (``None``), not 0: a source that does not track a stage cannot show a 0% for it.
Revenue with no won deal (or none with an amount) is no data, not 0.00. Every KPI says how many
of its records carry a data-quality flag (:mod:`models.funnel.flags`).

How it is computed: two set-based SQLAlchemy Core aggregates, one pass over the MQL cohort
(``leads``, which carry the summary of their deals) and one over the deals closed in or open at
the window (``deals``, which carry their lead's channel, owner and dates): each a one-table
scan, the join paid once per import (:mod:`models.funnel.links`), with ``count(*) FILTER
(WHERE ...)`` for every count. The same passes return the hand-off latencies, sales cycle
times, deal ages and rejection reasons of each group as text (``group_concat`` /
``string_agg``); Python sorts the values and interpolates medians and p90s exactly as
``percentile_cont`` does. Timestamps are integer seconds, so SQLite and PostgreSQL give the
same numbers to the last digit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
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
    distinct,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models.errors import InvalidInput
from models.funnel.tables import Deal, FunnelFlag, Lead, to_epoch

Unit = Literal["count", "rate", "hours", "days", "money"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class KpiDef:
    name: str
    title: str
    unit: Unit
    better: Better
    population: Literal["mql", "closed", "open"]
    formula: str
    sample: str  # what the sample size counts

    @property
    def meaning(self) -> str:
        """What the KPI says, in one sentence for people (the formula is for analysts)."""
        return MEANINGS[self.name]


_DEFS = [
    KpiDef(
        "mql_volume",
        "MQL volume",
        "count",
        "higher",
        "mql",
        "count of leads with mql_at in the window",
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
        "MQLs with at least one won deal / MQLs (no data if no MQL in the window was won)",
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
        "MQLs with no sales stage at all (no first touch, SQL, rejection, nor any deal); no "
        "data if no MQL in the window was touched",
        "MQLs",
    ),
    KpiDef(
        "stalled_leads",
        "Stalled leads",
        "count",
        "lower",
        "mql",
        "open MQLs (no won deal, not rejected, not every deal lost) that sales touched, "
        "accepted or gave a deal, whose latest such date (first touch, SQL, latest deal "
        "creation) is more than stall_days before the as-of time",
        "MQLs",
    ),
    KpiDef(
        "win_rate",
        "Win rate",
        "rate",
        "higher",
        "closed",
        "deals won / (deals won + deals lost), counting deals won or lost in the window",
        "deals closed in the window",
    ),
    KpiDef(
        "sales_cycle_median_days",
        "Sales cycle, median",
        "days",
        "lower",
        "closed",
        "median of (won_at - start) in days over deals won in the window, where start is the "
        "deal's opportunity_at, else its lead's sql_at, else its lead's mql_at (a negative "
        "duration counts as it is, and is flagged)",
        "deals won with a start date",
    ),
    KpiDef(
        "revenue_won",
        "Revenue won",
        "money",
        "higher",
        "closed",
        "sum of amount over deals won in the window (no data if none was won, or none of "
        "them has an amount; a negative amount counts as it is, and is flagged)",
        "deals won in the window",
    ),
    KpiDef(
        "average_deal_size",
        "Average deal size",
        "money",
        "higher",
        "closed",
        "revenue won / deals won in the window with an amount (no data if there are none)",
        "deals won with an amount",
    ),
    KpiDef(
        "open_pipeline_count",
        "Open pipeline, deals",
        "count",
        "higher",
        "open",
        "deals neither won nor lost, created before the window's end (or with no creation "
        "date); no data if the source has no deal at all",
        "open deals",
    ),
    KpiDef(
        "open_pipeline_value",
        "Open pipeline, value",
        "money",
        "higher",
        "open",
        "sum of amount over the open deals (no data if none has an amount)",
        "open deals with an amount",
    ),
    KpiDef(
        "deal_aging_median_days",
        "Deal aging, median",
        "days",
        "lower",
        "open",
        "median of (as-of time - opportunity_at) in days over the open deals with a creation date",
        "open deals with a creation date",
    ),
]

#: Every KPI by name, in display order.
KPIS: dict[str, KpiDef] = {d.name: d for d in _DEFS}
KPI_NAMES: tuple[str, ...] = tuple(KPIS)
GROUPS: tuple[str, ...] = ("channel", "campaign", "owner", "team", "month")


#: Each KPI in one sentence, in the words of the people who read the Numbers page.
MEANINGS: dict[str, str] = {
    "mql_volume": "How many leads marketing qualified in the period.",
    "mql_to_sql_rate": "Of those leads, the share sales qualified as sales-ready.",
    "mql_to_won_rate": "Of those leads, the share that led to at least one won deal.",
    "sales_acceptance_rate": "Of the leads sales has reviewed, the share it accepted.",
    "sales_rejection_rate": "Of the leads sales has reviewed, the share it sent back.",
    "handoff_latency_median_hours": "How long a lead typically waits for its first sales touch.",
    "handoff_latency_p90_hours": "How long the slowest tenth of leads wait for a first touch.",
    "sla_attainment": "The share of leads touched within the agreed hand-off time.",
    "untouched_leads": "Leads that sales has not touched, accepted, rejected or opened a deal for.",
    "stalled_leads": "Open leads with no progress for longer than the stall limit.",
    "win_rate": "Of the deals closed in the period, the share that was won.",
    "sales_cycle_median_days": "How long a won deal typically took from start to close.",
    "revenue_won": "What the deals won in the period are worth.",
    "average_deal_size": "What a won deal is worth on average.",
    "open_pipeline_count": "Deals still open at the end of the period.",
    "open_pipeline_value": "What the deals still open are worth.",
    "deal_aging_median_days": "How long the open deals have typically been open.",
}


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
    #: how many of the KPI's records (leads of the cohort, deals closed or open) carry a
    #: data-quality flag
    flagged: int = 0


class FunnelStep(BaseModel):
    """One stage of the stage-by-stage funnel of an MQL cohort: how many of its leads reached
    the stage (or a later one), against the stage before and against the MQLs."""

    stage: str
    count: int
    step_rate: float | None  # count / the previous stage's count
    cumulative_rate: float | None  # count / MQLs


class KpiGroup(BaseModel):
    #: None: everything (no ``by``), or records with no value for the group. With two ``by``
    #: dimensions: both values joined by " / " (each in ``keys``).
    group: str | None
    kpis: dict[str, KpiValue]
    keys: list[str | None] = []
    funnel: list[FunnelStep] = []


class KpiReport(BaseModel):
    window_start: date | None
    window_end: date | None
    by: list[str] = []
    sla_hours: float
    stall_days: int
    as_of: datetime
    source: str | None
    groups: list[KpiGroup]

    def overall(self) -> dict[str, KpiValue]:
        """The KPIs of the whole window (only meaningful without ``by``)."""
        if self.by:
            raise ValueError("overall() is for a report computed without 'by'")
        return self.groups[0].kpis if self.groups else {}


class KpiChange(BaseModel):
    kpi: str
    value: float | None
    compared: float | None
    change: float | None  # value - compared
    change_pct: float | None  # change / |compared|


def compare_reports(current: KpiReport, earlier: KpiReport) -> dict[str | None, list[KpiChange]]:
    """Each group's KPIs against the same group of another window (matched by group)."""
    others = {g.group: g.kpis for g in earlier.groups}
    out: dict[str | None, list[KpiChange]] = {}
    for g in current.groups:
        before = others.get(g.group, {})
        rows = []
        for name, v in g.kpis.items():
            b = before.get(name)
            then = b.value if b is not None else None
            change = None if v.value is None or then is None else v.value - then
            pct = change / abs(then) if change is not None and then else None
            rows.append(
                KpiChange(kpi=name, value=v.value, compared=then, change=change, change_pct=pct)
            )
        out[g.group] = rows
    return out


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


_L = Lead.__table__
_D = Deal.__table__
_F = FunnelFlag.__table__


def _int(col: Any) -> ColumnElement[int]:
    """A timestamp column as the plain integer it is stored as."""
    return type_coerce(col, BigInteger)


def _count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
    # count(*) FILTER (WHERE ...): both backends; measured cheaper than sum(CASE ...) on SQLite
    return func.count().filter(cond)


#: Group dimensions whose values differing only in case are one group.
_CASELESS = ("channel", "campaign", "team")


def _dimension(
    by: str, columns: dict[str, ColumnElement[Any]], month_col: ColumnElement[int]
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(key, label) of a group dimension: the key groups, the label shows (the spelling that
    sorts first among values that differ only in case)."""
    if by == "month":
        key = _month_of(month_col)
        return key, key
    value = columns[by]
    if by in _CASELESS:
        return func.lower(value), func.min(value)
    return value, value


def _lead_dims() -> dict[str, ColumnElement[Any]]:
    return {b: _L.c[b] for b in ("channel", "campaign", "owner", "team")}


def _deal_dims() -> dict[str, ColumnElement[Any]]:
    """A deal's channel and campaign are its lead's; its owner and team its own, else its
    lead's (the lead's fields are copied onto the deal: :mod:`models.funnel.links`)."""
    return {
        "channel": _D.c.lead_channel,
        "campaign": _D.c.lead_campaign,
        "owner": func.coalesce(_D.c.owner, _D.c.lead_owner),
        "team": func.coalesce(_D.c.team, _D.c.lead_team),
    }


def percentile(values: list[int], q: int) -> float:
    """The ``q``-th percentile of sorted ``values``, interpolated linearly between the two
    nearest ranks exactly as SQL's ``percentile_cont(q / 100)``."""
    lo, rem = divmod((len(values) - 1) * q, 100)
    x_lo = values[lo]
    x_hi = values[lo + 1] if rem else x_lo
    return x_lo + (x_hi - x_lo) * rem / 100


def _percentiles(
    values: list[int], quantiles: tuple[int, ...], clamp: bool = False
) -> tuple[int, dict[int, float]]:
    """(n, {q: value}) of integer values; with ``clamp`` a negative value (a touch recorded
    before the MQL it answers, on the same day) counts as 0."""
    values.sort()
    if clamp:
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


def _dims(by: str | Sequence[str] | None) -> tuple[str, ...]:
    if by is None:
        return ()
    dims = (by,) if isinstance(by, str) else tuple(by)
    for d in dims:
        if d not in GROUPS:
            raise InvalidInput(f"cannot group by {d!r}; use one of {', '.join(GROUPS)}")
    if len(dims) > 2:
        raise InvalidInput("group by one or two of channel, campaign, owner, team, month")
    if len(set(dims)) != len(dims):
        raise InvalidInput(f"{dims[0]!r} is given twice to group by")
    return dims


def sources(session: Session | Connection) -> list[str]:
    """The sources the store holds leads or deals of."""
    conn = session.connection() if isinstance(session, Session) else session
    stmt = union(select(_L.c.source).distinct(), select(_D.c.source).distinct())
    return sorted({r[0] for r in conn.execute(stmt)})


def compute_kpis(
    session: Session | Connection,
    *,
    start: date | None = None,
    end: date | None = None,
    by: str | Sequence[str] | None = None,
    sla_hours: float = 24,
    stall_days: int = 30,
    as_of: datetime | None = None,
    source: str | None = None,
) -> KpiReport:
    """Every KPI over the window (inclusive days), overall or per group (``by``: one or two
    dimensions)."""
    dims = _dims(by)
    if sla_hours <= 0:
        raise InvalidInput("the SLA must be a positive number of hours")
    if stall_days < 1:
        raise InvalidInput("stall days must be at least 1")
    conn = session.connection() if isinstance(session, Session) else session
    if source is not None:
        known = sources(conn)
        if source not in known:
            have = (
                ", ".join(known)
                if known
                else "none yet (import some with aligncycle funnel import)"
            )
            raise InvalidInput(f"no funnel data from source {source!r}; the sources are: {have}")
    as_of = as_of or datetime.now(UTC)
    now = to_epoch(as_of)
    s, e = _window(start, end)
    sla_s = int(round(sla_hours * 3600))
    stall_s = stall_days * 86400

    cohort_rows, latency, reasons, cohort_flags = _cohort(
        conn, dims, s, e, now, sla_s, stall_s, source
    )
    deal_rows, cycle, aging, deal_flags = _deals(conn, dims, s, e, now, source)

    # Stage presence over the whole window: a stage no record carries is "no data".
    rows = cohort_rows.values()
    present = {
        "sql": any(r["sqls"] for r in rows),
        "won": any(r["won"] for r in rows),
        "touch": any(r["touched"] for r in rows),
        # a deal still open or lost is progress a lead can stall at; won deals alone are not
        "progress": any(
            r["touched"] or r["sqls"] or r["opp_dated"] or r["deal_leads"] > r["won"] for r in rows
        ),
        "opp": any(r["opp_dated"] or r["deal_leads"] > r["won"] for r in rows),
        "deals": bool(deal_rows) or _has_deals(conn, source),
    }

    keys = set(cohort_rows) | set(deal_rows)
    if not dims:
        keys = {()}
    groups = []
    for key in sorted(keys, key=lambda k: tuple((v is None, str(v)) for v in k)):
        c, d = cohort_rows.get(key), deal_rows.get(key)
        labels = (c or d or {}).get("labels", key)
        groups.append(
            KpiGroup(
                group=None
                if not dims or all(v is None for v in labels)
                else " / ".join("(none)" if v is None else str(v) for v in labels)
                if len(dims) > 1
                else labels[0],
                keys=list(labels) if dims else [],
                kpis=_values(
                    c,
                    d,
                    latency.get(key),
                    cycle.get(key),
                    aging.get(key),
                    reasons.get(key, []),
                    present,
                    cohort_flags.get(key, 0),
                    deal_flags.get(key, (0, 0)),
                ),
                funnel=_funnel(c, present),
            )
        )
    return KpiReport(
        window_start=start,
        window_end=end,
        by=list(dims),
        sla_hours=sla_hours,
        stall_days=stall_days,
        as_of=as_of,
        source=source,
        groups=groups,
    )


def _has_deals(conn: Connection, source: str | None) -> bool:
    stmt = select(_D.c.id).where(_D.c.listed).limit(1)
    if source:
        stmt = stmt.where(_D.c.source == source)
    return conn.execute(stmt).first() is not None


def _grouped(stmt: Any, dims: tuple[str, ...], dim_exprs: list[tuple[Any, Any]]) -> Any:
    keys = [k.label(f"k{i}") for i, (k, _) in enumerate(dim_exprs)]
    labels = [lab.label(f"l{i}") for i, (_, lab) in enumerate(dim_exprs)]
    stmt = stmt.add_columns(*keys, *labels)
    if dims:
        stmt = stmt.group_by(*(k for k, _ in dim_exprs))
    return stmt


def _key_of(r: Any, n: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return tuple(getattr(r, f"k{i}") for i in range(n)), tuple(
        getattr(r, f"l{i}") for i in range(n)
    )


def _cohort(
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    sla_s: int,
    stall_s: int,
    source: str | None,
) -> tuple[dict, dict, dict, dict]:
    """The MQL cohort in one pass: every count, the latencies and the rejection reasons."""
    mql, touch, sql_, rej = (
        _int(_L.c[n]) for n in ("mql_at", "first_touch_at", "sql_at", "rejected_at")
    )
    # the lead's deals, summed up on the lead (models.funnel.links): one table to scan
    won, opp_last = _int(_L.c.first_won_at), _int(_L.c.last_deal_at)
    has_deal = _L.c.deal_count.is_not(None)
    where = [*_in_window(mql, s, e), *([_L.c.source == source] if source else [])]
    dim_exprs = [_dimension(b, _lead_dims(), mql) for b in dims]
    touched = touch.is_not(None)
    rejected_only = and_(rej.is_not(None), sql_.is_(None))
    lost_lead = and_(has_deal, won.is_(None), _L.c.open_deal_count == 0)
    is_open = and_(won.is_(None), ~func.coalesce(lost_lead, False), ~rejected_only)
    progressed = or_(touched, sql_.is_not(None), has_deal)
    no_stage = and_(touch.is_(None), sql_.is_(None), rej.is_(None), ~has_deal)
    cutoff = now - stall_s
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
        # the latest of these dates is before the cut-off = each is missing or before it
        _count_if(
            and_(
                is_open,
                progressed,
                *(or_(c.is_(None), c < cutoff) for c in (touch, sql_, opp_last)),
            )
        ).label("stalled"),
        func.count(_L.c.deal_count).label("deal_leads"),
        func.count(opp_last).label("opp_dated"),
        _count_if(or_(sql_.is_not(None), has_deal)).label("reached_sql"),
    ]
    # The latency values and the rejection reasons come out of the same pass, as text: one
    # scan of the table instead of three (measured on 1M leads; see bench/funnel.py).
    texts = [
        _concat(case((touched, touch - mql)), literal(_NUMBERS)).label("latency"),
        _concat(
            case((rejected_only, func.coalesce(_L.c.rejection_reason, "(no reason given)"))),
            literal(_TEXTS),
        ).label("reasons"),
    ]
    stmt = _grouped(select(*counts, *texts).where(*where), dims, dim_exprs)
    names = [c.name for c in counts]
    rows: dict[Any, dict[str, Any]] = {}
    latency: dict[Any, tuple[int, dict[int, float]]] = {}
    reasons: dict[Any, list[tuple[str, int]]] = {}
    for r in conn.execute(stmt):
        key, labels = _key_of(r, len(dims))
        if r.mqls == 0 and dims:
            continue
        rows[key] = {n: int(getattr(r, n) or 0) for n in names} | {"labels": labels}
        values = _ints(r.latency)
        if values:
            latency[key] = _percentiles(values, (50, 90), clamp=True)
        if r.reasons:
            reasons[key] = list(Counter(r.reasons.split(_TEXTS)).items())
    if not dims and rows and next(iter(rows.values()))["mqls"] == 0:
        rows = {}

    # flagged leads of the cohort: driven from the (few) flags, by the lead's natural key
    flagged_lead = select(_F.c.source, _F.c.lead_key).distinct().subquery("flagged")
    fstmt = select(func.count().label("n")).select_from(
        _L.join(
            flagged_lead,
            and_(flagged_lead.c.source == _L.c.source, flagged_lead.c.lead_key == _L.c.external_id),
        )
    )
    fstmt = _grouped(fstmt.where(*where), dims, dim_exprs)
    flags = {_key_of(r, len(dims))[0]: int(r.n) for r in conn.execute(fstmt)}
    return rows, latency, reasons, flags


def _deals(
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    source: str | None,
) -> tuple[dict, dict, dict, dict]:
    """Deals closed in the window and deals open at its end, in one pass."""
    won, lost, opp = (_int(_D.c[n]) for n in ("won_at", "lost_at", "opportunity_at"))
    won_in = and_(*_in_window(won, s, e))
    lost_in = and_(*_in_window(lost, s, e))
    is_open = and_(won.is_(None), lost.is_(None), *([or_(opp.is_(None), opp < e)] if e else []))
    where = [_D.c.listed, or_(won_in, lost_in, is_open)]
    if source:
        where.append(_D.c.source == source)
    month = func.coalesce(won, lost, opp)
    dim_exprs = [_dimension(b, _deal_dims(), month) for b in dims]
    amount = _D.c.amount_cents
    start_expr = func.coalesce(opp, _int(_D.c.lead_sql_at), _int(_D.c.lead_mql_at))
    counts = [
        _count_if(won_in).label("won"),
        _count_if(lost_in).label("lost"),
        func.sum(case((won_in, amount))).label("revenue"),
        func.count(case((won_in, amount))).label("with_amount"),
        _count_if(is_open).label("open"),
        func.sum(case((is_open, amount))).label("open_value"),
        func.count(case((is_open, amount))).label("open_with_amount"),
    ]
    texts = [
        _concat(case((won_in, won - start_expr)), literal(_NUMBERS)).label("cycle"),
        _concat(case((is_open, now - opp)), literal(_NUMBERS)).label("aging"),
    ]
    stmt = _grouped(select(*counts, *texts).where(*where), dims, dim_exprs)
    rows: dict[Any, dict[str, Any]] = {}
    cycle: dict[Any, tuple[int, dict[int, float]]] = {}
    aging: dict[Any, tuple[int, dict[int, float]]] = {}
    names = [c.name for c in counts]
    for r in conn.execute(stmt):
        key, labels = _key_of(r, len(dims))
        if not (r.won or r.lost or r.open):
            continue
        rows[key] = {n: int(getattr(r, n) or 0) for n in names} | {"labels": labels}
        values = _ints(r.cycle)
        if values:
            cycle[key] = _percentiles(values, (50,))
        values = _ints(r.aging)
        if values:
            aging[key] = _percentiles(values, (50,))

    fstmt = select(
        func.count(distinct(case((or_(won_in, lost_in), _D.c.id)))).label("closed"),
        func.count(distinct(case((is_open, _D.c.id)))).label("open"),
    ).select_from(_F.join(_D, and_(_D.c.source == _F.c.source, _D.c.external_id == _F.c.deal_key)))
    fstmt = _grouped(fstmt.where(*where), dims, dim_exprs)
    flags = {_key_of(r, len(dims))[0]: (int(r.closed), int(r.open)) for r in conn.execute(fstmt)}
    return rows, cycle, aging, flags


_FUNNEL = (
    ("MQL", "mqls", None),
    ("SQL", "reached_sql", "sql"),
    ("Opportunity", "deal_leads", "opp"),
    ("Won", "won", None),
)


def _funnel(c: dict[str, Any] | None, present: dict[str, bool]) -> list[FunnelStep]:
    """The stage-by-stage funnel of a cohort: stages the data records, each counting the leads
    that reached it or a later one (a lead with a deal reached SQL)."""
    if not c or not c["mqls"]:
        return []
    steps: list[FunnelStep] = []
    for stage, name, needs in _FUNNEL:
        if needs is not None and not present[needs]:
            continue
        n = c[name]
        prev = steps[-1].count if steps else None
        steps.append(
            FunnelStep(
                stage=stage,
                count=n,
                step_rate=(n / prev if prev else None) if steps else None,
                cumulative_rate=n / c["mqls"],
            )
        )
    return steps


def _values(
    c: dict[str, Any] | None,
    d: dict[str, Any] | None,
    lat_n: tuple[int, dict[int, float]] | None,
    cyc_n: tuple[int, dict[int, float]] | None,
    age_n: tuple[int, dict[int, float]] | None,
    reasons: list[tuple[str, int]],
    present: dict[str, bool],
    cohort_flagged: int,
    deal_flagged: tuple[int, int],
) -> dict[str, KpiValue]:
    def n(row: dict[str, Any] | None, name: str) -> int:
        return int(row[name]) if row is not None else 0

    mqls, sqls, won_c = n(c, "mqls"), n(c, "sqls"), n(c, "won")
    decided, rejected, touched = n(c, "decided"), n(c, "rejected"), n(c, "touched")
    won_d, lost_d, with_amount = n(d, "won"), n(d, "lost"), n(d, "with_amount")
    revenue_cents = n(d, "revenue")
    open_d, open_amount = n(d, "open"), n(d, "open_with_amount")

    def rate(num: int, den: int, ok: bool = True) -> tuple[float | None, float, int]:
        return (num / den if den and ok else None), num, den

    lat = lat_n[1] if lat_n else None
    cyc = cyc_n[1] if cyc_n else None
    age = age_n[1] if age_n else None
    out: dict[str, KpiValue] = {}
    flagged = {"mql": cohort_flagged, "closed": deal_flagged[0], "open": deal_flagged[1]}

    def put(name: str, value: float | None, num: float | None, sample: int, **detail: Any) -> None:
        out[name] = KpiValue(
            kpi=name,
            value=value,
            numerator=num,
            sample_size=sample,
            detail=detail or None,
            flagged=flagged[KPIS[name].population],
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
    revenue = revenue_cents / 100 if with_amount else None
    put("revenue_won", revenue, revenue, won_d)
    put(
        "average_deal_size",
        revenue_cents / 100 / with_amount if with_amount else None,
        revenue,
        with_amount,
    )
    put("open_pipeline_count", float(open_d) if present["deals"] else None, open_d, open_d)
    value = n(d, "open_value") / 100 if open_amount else None
    put("open_pipeline_value", value, value, open_amount)
    put("deal_aging_median_days", age[50] / 86400 if age else None, None, age_n[0] if age_n else 0)
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
