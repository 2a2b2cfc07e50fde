"""The KPIs' aggregates computed from the rows, for :func:`models.funnel.kpis.compute_kpis`
(where the rollups do not answer, and in the tests that hold the two equal).

Two set-based SQLAlchemy Core aggregates, one pass over the MQL cohort
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
from typing import Any

from sqlalchemy import Connection, and_, case, distinct, func, literal, or_, select, true

from models.funnel.kpi_defs import COHORT_COUNTS, DEAL_COUNTS, Aggregates, percentile
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
    lead_conditions,
    lead_dims,
    lead_terms,
    open_at,
)


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


def cohort(
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    sla_s: int,
    stall_s: int,
    source: str | None,
    untracked: frozenset[str] = frozenset(),
) -> None:
    """The MQL cohort in one pass, from the rows: every count, the latencies and the
    rejection reasons. The leads of the ``untracked`` sources (they record no first touch)
    are neither untouched nor due."""
    t = lead_terms()
    where = [*in_window(t.mql, s, e), *([L.c.source == source] if source else [])]
    dim_exprs = [dimension(b, lead_dims(), t.mql) for b in dims]
    cutoff = now - stall_s
    tracked = L.c.source.not_in(sorted(untracked)) if untracked else true()
    conds = lead_conditions(t)
    conds["untouched"] = and_(conds["untouched"], tracked)
    counts = [
        func.count().label("mqls"),
        *(count_if(cond).label(name) for name, cond in conds.items()),
        count_if(and_(t.touched, t.touch - t.mql <= sla_s)).label("within_sla"),
        count_if(or_(t.touched, and_(tracked, t.mql + sla_s <= now))).label("due"),
        count_if(and_(t.is_open, t.progressed, t.last_progress < cutoff)).label("stalled"),
        count_if(tracked).label("touch_mqls"),
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
    fstmt = select(func.count().label("n"), count_if(tracked).label("touch")).select_from(
        L.join(
            flagged_lead,
            and_(flagged_lead.c.source == L.c.source, flagged_lead.c.lead_key == L.c.external_id),
        )
    )
    fstmt = _grouped(fstmt.where(*where), dims, dim_exprs)
    for r in conn.execute(fstmt):
        key = _key_of(r, len(dims))[0]
        agg.cohort_flags[key] = int(r.n)
        if r.touch:  # those the touch KPIs read: not of the untracked sources
            agg.touch_flags[key] = int(r.touch)


def deals(
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
    is_open = open_at(t, e)
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
