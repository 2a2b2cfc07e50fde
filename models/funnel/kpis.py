"""Computing the shared KPIs (defined, each once, in :mod:`models.funnel.kpi_defs`).

Two ways to the same numbers, chosen per question by :func:`compute_kpis`:

- **The rollups** (:mod:`models.funnel.rollup_read`): per-day and per-month summaries of the
  cohort and of the deals' events, by channel, campaign, owner or team, that the import keeps
  up to date (:mod:`models.funnel.rollups`). A query reads groups, not rows. They answer,
  for a store whose every source (or the one asked for) has rollups, every question overall
  or by month, channel or team over any window of days, and by campaign or owner (and month)
  over a window of whole months (:func:`models.funnel.rollup_read.answers`).
- **The row-level queries** (:mod:`models.funnel.kpi_rows`): everything else — two
  dimensions among channel, campaign, owner and team; campaign or owner over a window
  starting or ending inside a month; a source with funnel data but no rollups (written other
  than by the import and not refreshed, or a store from before migration 0010 not imported
  since).

Both produce the same :class:`~models.funnel.kpi_defs.Aggregates` and the same SQL conditions
(:mod:`models.funnel.sql`), and :func:`compute_kpis` applies every formula once; the
property-based tests (``tests/test_kpi_rollups.py``) hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, or_, select, union
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel import kpi_rows, rollup_read
from models.funnel.cache import cache, version_key
from models.funnel.currency import source_currencies
from models.funnel.kpi_defs import (
    GROUPS,
    KPI_NAMES,
    KPIS,
    LATENCY_KPIS,
    MEANINGS,
    MONEY_KPIS,
    SUMMED_OVER_WINDOW,
    TOUCH_KPIS,
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
    format_change,
    format_value,
    kpi_def,
    percentile,
    read_number,
    split_currency,
)
from models.funnel.sql import (
    D,
    L,
    deal_terms,
    holds,
    in_window,
    lead_terms,
    open_at,
    window,
)
from models.funnel.tables import to_epoch
from models.words import listed, quoted

__all__ = [
    "GROUPS",
    "KPIS",
    "KPI_NAMES",
    "MEANINGS",
    "MONEY_KPIS",
    "SUMMED_OVER_WINDOW",
    "TOUCH_KPIS",
    "FunnelStep",
    "KpiChange",
    "KpiDef",
    "KpiGroup",
    "KpiReport",
    "KpiValue",
    "compare_reports",
    "compute_kpis",
    "format_change",
    "format_value",
    "kpi_def",
    "never_lost_note",
    "percentile",
    "sources",
    "read_number",
    "split_currency",
]


# --- computing ---------------------------------------------------------------------------------


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


def untracked_sources(session: Session | Connection) -> frozenset[str]:
    """The sources none of whose leads has a first touch: their exports have no such date
    (Olist's, for one), so whether their leads were touched cannot be told."""
    return _sources_without(session, "untracked", L, [], L.c.first_touch_at.is_not(None))


def never_lost_sources(session: Session | Connection) -> frozenset[str]:
    """The sources with deals none of which is lost: their exports may list won deals only
    (Olist's does), so a win rate of theirs counts wins and no loss."""
    return _sources_without(session, "never-lost", D, [D.c.listed], D.c.lost_at.is_not(None))


def never_lost_note(never_lost: list[str], rate: str = "this rate") -> str:
    """What a win rate counting the deals of :func:`never_lost_sources` says of them (the
    Numbers page's card, ``kpi show``)."""
    export = "that export lists" if len(never_lost) == 1 else "those exports list"
    return (
        f"No deal from {listed(never_lost)} is recorded as lost: if {export} won deals only, "
        f"{rate} counts their wins and none of their losses"
    )


def _sources_without(
    session: Session | Connection, name: str, table: Any, where: list[Any], marked: Any
) -> frozenset[str]:
    """The sources with rows of ``table`` (``where`` says which), none of them ``marked``. Per
    source, one probe that stops at its first marked row (a whole scan of its rows only for a
    source without any); cached by the data version (``name``: which list)."""
    version = version_key(session)

    def rows(src: str) -> Select:
        return select(table.c.id).where(table.c.source == src, *where)

    def probe() -> frozenset[str]:
        return frozenset(
            src
            for src in sources(session)
            if session.execute(rows(src).where(marked).limit(1)).first() is None
            and session.execute(rows(src).limit(1)).first() is not None
        )

    if not version[1]:  # no import yet: rows written otherwise are not versioned
        return probe()
    return cache.get((name, *version), probe)


def with_mqls(
    session: Session | Connection, candidates: Iterable[str], s: int | None, e: int | None
) -> list[str]:
    """Those of the ``candidates`` sources with an MQL in the window (epoch seconds, end
    excluded; None: open), sorted: one probe each."""
    return _sources_with(session, candidates, L, in_window(lead_terms().mql, s, e))


def won_in(
    session: Session | Connection, candidates: Iterable[str], s: int | None, e: int | None
) -> list[str]:
    """Those of the ``candidates`` sources with a deal won in the window, sorted."""
    return _sources_with(session, candidates, D, [D.c.listed, *in_window(deal_terms().won, s, e)])


def _sources_with(
    session: Session | Connection, candidates: Iterable[str], table: Any, where: list[Any]
) -> list[str]:
    """Those of the ``candidates`` sources with a row of ``table`` ``where`` says, sorted:
    one probe each."""
    return [
        src
        for src in sorted(candidates)
        if session.execute(select(table.c.id).where(table.c.source == src, *where).limit(1)).first()
        is not None
    ]


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
    if source is not None and not holds(conn, source):
        known = sources(conn)
        if source not in known:
            have = (
                ", ".join(known)
                if known
                else "none yet (a lead or a manager imports the CRM's exports on the Numbers page)"
            )
            error = InvalidInput(no_such_source(source, have))
            raise error if known else error.resolved_by("funnel_import")
    as_of = as_of or datetime.now(UTC)
    now = to_epoch(as_of)
    s, e = window(start, end)
    sla_s = int(round(sla_hours * 3600))
    stall_s = stall_days * 86400

    # Sources that record no first touch are left out of the KPIs of touches where they are
    # read with others (alone, those KPIs are "no data"): their leads are not known untouched.
    untracked = untracked_sources(conn) if source is None else frozenset()
    if rollups and rollup_read.answers(conn, dims, source, s, e):
        agg = rollup_read.aggregates(conn, dims, s, e, now, sla_s, stall_s, source, untracked)
    else:
        agg = Aggregates()
        kpi_rows.cohort(agg, conn, dims, s, e, now, sla_s, stall_s, source, untracked)
        kpi_rows.deals(agg, conn, dims, s, e, now, source)
    report = _report(agg, conn, dims, start, end, sla_hours, stall_days, as_of, source)
    touch_read = any(g.kpis["sla_attainment"].value is not None for g in report.groups)
    if untracked and touch_read:  # else those KPIs are "no data" whatever was left out
        report.left_out_of_touch_kpis = with_mqls(conn, untracked, s, e)
    if any(g.kpis["win_rate"].value is not None for g in report.groups):
        never = never_lost_sources(conn)
        if source is not None:
            never &= {source}
        if never:
            report.never_lost = won_in(conn, never, s, e)
    if any(g.kpis[n].value is not None for g in report.groups for n in MONEY_KPIS):
        _currency(report, conn, source, s, e)
    return report


def _currency(
    report: KpiReport, conn: Connection, source: str | None, s: int | None, e: int | None
) -> None:
    """Say the money KPIs' currency; where the window's amounts are of sources in different
    currencies, leave those KPIs out ("no data": dollars and euros add up to no number)."""
    known = source_currencies(conn)
    if source is not None:
        report.currency = known.get(source)
        return
    if not known:
        return
    candidates = sources(conn)
    priced = candidates if len(candidates) == 1 else priced_in(conn, candidates, s, e)
    codes = {src: known[src] for src in priced if src in known}
    if len(set(codes.values())) > 1:
        report.currencies = codes
        for g in report.groups:
            for n in MONEY_KPIS:
                v = g.kpis[n]
                if v.value is not None:  # (its detail says why it is "no data")
                    left_out = {"value": None, "numerator": None, "detail": {"currencies": codes}}
                    g.kpis[n] = v.model_copy(update=left_out)
        parts = [f"those of {quoted(src)} in {code}" for src, code in codes.items()]
        parts[0] = "the amounts" + parts[0].removeprefix("those")
        report.currency_note = (
            f"Not added up: {listed(parts)}, and amounts in different currencies add up to no "
            "number. Choose one source to see it."
        )
        return
    unknown = [src for src in priced if src not in known]
    if codes and unknown:
        report.no_currency = unknown
        report.currency_note = (
            f"The amounts of {listed([quoted(src) for src in unknown])} carry no currency: "
            f"they are added as they are to those of {listed([quoted(c) for c in codes])}, "
            f"in {next(iter(codes.values()))}. A lead or a manager can say which currency they "
            "are in on the import page."
        )
    elif codes:
        report.currency = next(iter(codes.values()))


def priced_in(
    session: Session | Connection, candidates: Iterable[str], s: int | None, e: int | None
) -> list[str]:
    """Those of the ``candidates`` sources whose amounts a money KPI of the window adds up:
    of deals won in it, or open at its end; sorted."""
    t = deal_terms()
    counted = or_(and_(*in_window(t.won, s, e)), open_at(t, e))
    return _sources_with(session, candidates, D, [D.c.listed, t.amount.is_not(None), counted])


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
                    agg.touch_flags.get(key, 0),
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


def no_such_source(source: str, known: str) -> str:
    """The refusal of a source the store holds no data of, naming those it holds."""
    return f"there is no funnel data from source {quoted(source)}; the sources are: {known}"


def _has_deals(conn: Connection, source: str | None) -> bool:
    stmt = select(D.c.id).where(D.c.listed).limit(1)
    if source:
        stmt = stmt.where(D.c.source == source)
    return conn.execute(stmt).first() is not None


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


#: whose flagged records each KPI counts: its population's, but the KPIs of first touches count
#: only the MQLs of the sources that record them (the touch KPIs leave the others out; the
#: latency's sample, touched MQLs, holds none of theirs)
_POPULATION = {
    name: "touch" if name in (*TOUCH_KPIS, *LATENCY_KPIS) else d.population
    for name, d in KPIS.items()
}


def _values(
    c: dict[str, Any] | None,
    d: dict[str, Any] | None,
    lat_n: tuple[int, dict[int, float]] | None,
    cyc_n: tuple[int, dict[int, float]] | None,
    age_n: tuple[int, dict[int, float]] | None,
    reasons: list[tuple[str, int]],
    present: dict[str, bool],
    cohort_flagged: int,
    touch_flagged: int,
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
    flagged = {
        "mql": cohort_flagged,
        "touch": touch_flagged,
        "closed": deal_flagged[0],
        "open": deal_flagged[1],
    }

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
        n(c, "touch_mqls"),
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
