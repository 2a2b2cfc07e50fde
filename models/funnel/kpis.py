"""Computing the shared KPIs (defined, each once, in :mod:`models.funnel.kpi_defs`).

Two ways to the same numbers, chosen per question by :func:`compute_kpis`:

- **The rollups** (:mod:`models.funnel.rollup_read`): per-day and per-month summaries of the
  cohort and of the deals' events, by channel, campaign, owner or team, that the import keeps
  up to date (:mod:`models.funnel.rollups`). A query reads groups, not rows. They answer,
  for a store whose every source (or the one asked for) has rollups, every question overall
  or by month over any window of days, and by one of channel, campaign, owner and team (and
  month) over a window of whole months (:func:`models.funnel.rollup_read.answers`).
- **The row-level queries** (below): everything else — two dimensions among channel,
  campaign, owner and team; one of them over a window starting or ending inside a month; a
  source with funnel data but no rollups (written other than by the import and not
  refreshed, or a store from before migration 0010 not imported since).

Both produce the same :class:`~models.funnel.kpi_defs.Aggregates` and the same SQL conditions
(:mod:`models.funnel.sql`), and :func:`compute_kpis` applies every formula once; the
property-based tests (``tests/test_kpi_rollups.py``) hold the two equal.

The row-level way: two set-based SQLAlchemy Core aggregates, one pass over the MQL cohort
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
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, distinct, func, literal, or_, select, union
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel import rollup_read
from models.funnel.kpi_defs import (
    COHORT_COUNTS,
    DEAL_COUNTS,
    GROUPS,
    KPI_NAMES,
    KPIS,
    MEANINGS,
    Aggregates,
    FunnelStep,
    KpiChange,
    KpiDef,
    KpiGroup,
    KpiReport,
    KpiValue,
    build,
    built,
    compare_reports,
    format_value,
    kpi_def,
    percentile,
)
from models.funnel.sql import (
    NUMBERS,
    TEXTS,
    D,
    F,
    L,
    concat,
    count_if,
    deal_dims,
    deal_terms,
    dimension,
    in_window,
    ints,
    lead_counts,
    lead_dims,
    lead_terms,
)
from models.funnel.tables import to_epoch

__all__ = [
    "GROUPS",
    "KPIS",
    "KPI_NAMES",
    "MEANINGS",
    "FunnelStep",
    "KpiChange",
    "KpiDef",
    "KpiGroup",
    "KpiReport",
    "KpiValue",
    "compare_reports",
    "compute_kpis",
    "format_value",
    "kpi_def",
    "percentile",
    "sources",
]


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
    stmt = union(select(L.c.source).distinct(), select(D.c.source).distinct())
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
    rollups: bool = True,
) -> KpiReport:
    """Every KPI over the window (inclusive days), overall or per group (``by``: one or two
    dimensions). From the rollups where they answer the question (see the module's
    docstring), else from the rows; ``rollups=False`` asks the rows (the tests compare)."""
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

    if rollups and rollup_read.answers(conn, dims, source, s, e):
        agg = rollup_read.aggregates(conn, dims, s, e, now, sla_s, stall_s, source)
    else:
        agg = Aggregates()
        _cohort(agg, conn, dims, s, e, now, sla_s, stall_s, source)
        _deals(agg, conn, dims, s, e, now, source)
    return _report(agg, conn, dims, start, end, sla_hours, stall_days, as_of, source)


def _report(
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    start: date | None,
    end: date | None,
    sla_hours: float,
    stall_days: int,
    as_of: datetime,
    source: str | None,
) -> KpiReport:
    cohort_rows, deal_rows = agg.cohort, agg.deals
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
            built(
                KpiGroup,
                group=None
                if not dims or all(v is None for v in labels)
                else " / ".join("(none)" if v is None else str(v) for v in labels)
                if len(dims) > 1
                else labels[0],
                keys=list(labels) if dims else [],
                kpis=_values(
                    c,
                    d,
                    agg.latency.get(key),
                    agg.cycle.get(key),
                    agg.aging.get(key),
                    agg.reasons.get(key, []),
                    present,
                    agg.cohort_flags.get(key, 0),
                    agg.deal_flags.get(key, (0, 0)),
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
    stmt = select(D.c.id).where(D.c.listed).limit(1)
    if source:
        stmt = stmt.where(D.c.source == source)
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
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    sla_s: int,
    stall_s: int,
    source: str | None,
) -> None:
    """The MQL cohort in one pass, from the rows: every count, the latencies and the
    rejection reasons."""
    t = lead_terms()
    where = [*in_window(t.mql, s, e), *([L.c.source == source] if source else [])]
    dim_exprs = [dimension(b, lead_dims(), t.mql) for b in dims]
    cutoff = now - stall_s
    counts = [
        *lead_counts(t),
        count_if(and_(t.touched, t.touch - t.mql <= sla_s)).label("within_sla"),
        count_if(or_(t.touched, t.mql + sla_s <= now)).label("due"),
        count_if(and_(t.is_open, t.progressed, t.last_progress < cutoff)).label("stalled"),
    ]
    # The latency values and the rejection reasons come out of the same pass, as text: one
    # scan of the table instead of three (measured on 1M leads; see bench/funnel.py).
    texts = [
        concat(case((t.touched, t.touch - t.mql)), literal(NUMBERS)).label("latency"),
        concat(case((t.rejected_only, t.reason)), literal(TEXTS)).label("reasons"),
    ]
    stmt = _grouped(select(*counts, *texts).where(*where), dims, dim_exprs)
    rows = agg.cohort
    for r in conn.execute(stmt):
        key, labels = _key_of(r, len(dims))
        if r.mqls == 0 and dims:
            continue
        rows[key] = {n: int(getattr(r, n) or 0) for n in COHORT_COUNTS} | {"labels": labels}
        values = ints(r.latency)
        if values:
            agg.latency[key] = _percentiles(values, (50, 90), clamp=True)
        if r.reasons:
            agg.reasons[key] = list(Counter(r.reasons.split(TEXTS)).items())
    if not dims and rows and next(iter(rows.values()))["mqls"] == 0:
        rows.clear()

    # flagged leads of the cohort: driven from the (few) flags, by the lead's natural key
    flagged_lead = select(F.c.source, F.c.lead_key).distinct().subquery("flagged")
    fstmt = select(func.count().label("n")).select_from(
        L.join(
            flagged_lead,
            and_(flagged_lead.c.source == L.c.source, flagged_lead.c.lead_key == L.c.external_id),
        )
    )
    fstmt = _grouped(fstmt.where(*where), dims, dim_exprs)
    agg.cohort_flags.update({_key_of(r, len(dims))[0]: int(r.n) for r in conn.execute(fstmt)})


def _deals(
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    source: str | None,
) -> None:
    """Deals closed in the window and deals open at its end, in one pass over the rows."""
    t = deal_terms()
    won_in = and_(*in_window(t.won, s, e))
    lost_in = and_(*in_window(t.lost, s, e))
    is_open = and_(
        t.won.is_(None), t.lost.is_(None), *([or_(t.opp.is_(None), t.opp < e)] if e else [])
    )
    where = [D.c.listed, or_(won_in, lost_in, is_open)]
    if source:
        where.append(D.c.source == source)
    month = func.coalesce(t.won, t.lost, t.opp)
    dim_exprs = [dimension(b, deal_dims(), month) for b in dims]
    amount = t.amount
    counts = [
        count_if(won_in).label("won"),
        count_if(lost_in).label("lost"),
        func.sum(case((won_in, amount))).label("revenue"),
        func.count(case((won_in, amount))).label("with_amount"),
        count_if(is_open).label("open"),
        func.sum(case((is_open, amount))).label("open_value"),
        func.count(case((is_open, amount))).label("open_with_amount"),
    ]
    texts = [
        concat(case((won_in, t.won - t.start)), literal(NUMBERS)).label("cycle"),
        concat(case((is_open, now - t.opp)), literal(NUMBERS)).label("aging"),
    ]
    stmt = _grouped(select(*counts, *texts).where(*where), dims, dim_exprs)
    for r in conn.execute(stmt):
        key, labels = _key_of(r, len(dims))
        if not (r.won or r.lost or r.open):
            continue
        agg.deals[key] = {n: int(getattr(r, n) or 0) for n in DEAL_COUNTS} | {"labels": labels}
        values = ints(r.cycle)
        if values:
            agg.cycle[key] = _percentiles(values, (50,))
        values = ints(r.aging)
        if values:
            agg.aging[key] = _percentiles(values, (50,))

    fstmt = select(
        func.count(distinct(case((or_(won_in, lost_in), D.c.id)))).label("closed"),
        func.count(distinct(case((is_open, D.c.id)))).label("open"),
    ).select_from(F.join(D, and_(D.c.source == F.c.source, D.c.external_id == F.c.deal_key)))
    fstmt = _grouped(fstmt.where(*where), dims, dim_exprs)
    agg.deal_flags.update(
        {_key_of(r, len(dims))[0]: (int(r.closed), int(r.open)) for r in conn.execute(fstmt)}
    )


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
            built(
                FunnelStep,
                stage=stage,
                count=n,
                step_rate=(n / prev if prev else None) if steps else None,
                cumulative_rate=n / c["mqls"],
            )
        )
    return steps


_POPULATION = {name: d.population for name, d in KPIS.items()}


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
        out[name] = build(
            KpiValue,
            {
                "kpi": name,
                "value": None if value is None else float(value),
                "numerator": None if num is None else float(num),
                "sample_size": int(sample),
                "detail": detail or None,
                "flagged": int(flagged[_POPULATION[name]]),
            },
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
