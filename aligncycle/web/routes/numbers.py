"""The Numbers page: the shared KPIs of a period beside an earlier one, the stage-by-stage
funnel, the KPIs by one or two groupings, and the SLA breach list. For every signed-in person:
the funnel data is one set both teams share."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import IO, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from aligncycle.web import charts
from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import page, page_number, pager, render
from models.enums import Role
from models.errors import InvalidInput, NotFound
from models.funnel import flags, numbers_csv
from models.funnel import numbers as n
from models.funnel.history import latest_import
from models.funnel.kpis import KPIS, format_value
from models.schemas import validation_message
from models.services import agreements

router = APIRouter(include_in_schema=False)
BREACHES_PAGE = 25
#: The KPIs of the grouped table (all of them would not fit a screen), in this order.
TABLE_KPIS = [
    "mql_volume",
    "sla_attainment",
    "handoff_latency_median_hours",
    "mql_to_sql_rate",
    "sales_rejection_rate",
    "win_rate",
    "revenue_won",
]
PIVOT_DEFAULT = "sla_attainment"


def pair_from(
    params: Mapping[str, Any], ctx: Ctx, pairs: list[agreements.PairSettings]
) -> agreements.PairSettings | None:
    """The team pair whose settings the numbers are read with: the one chosen (``pair``, its
    agreement's id) among ``pairs`` (those the person sees), else the pair of the newest
    cycle the person sees; None: no pair."""
    raw = params.get("pair") or None
    if raw is None:
        return agreements.numbers_pair(ctx.session, ctx.me, pairs=pairs)
    try:
        return agreements.numbers_pair(ctx.session, ctx.me, int(raw), pairs)
    except (ValueError, NotFound):
        raise InvalidInput("you see no such pair of teams: choose one in the list") from None


def target_sentences(
    pair: agreements.PairSettings | None, cards: list[n.KpiCard], currency: str | None = None
) -> dict[str, str]:
    """Each card's value against its target in force for the pair (the agreement's, else
    the playbook's threshold)."""
    if pair is None:
        return {}
    out = {c.kpi: pair.in_force.target_sentence(c.kpi, c.value, currency) for c in cards}
    return {k: v for k, v in out.items() if v}


def _day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"not a date: {value!r} (use the date picker, or YYYY-MM-DD)") from None


def query_from(
    params: Mapping[str, Any], pair: agreements.PairSettings | None, today: date
) -> n.NumbersQuery:
    """The page's query from its URL; a missing period is the last 30 days, a missing SLA
    the pair's (no pair: the defaults)."""
    sla, stall = agreements.numbers_defaults(pair)
    start, end = _day(params.get("from")), _day(params.get("to"))
    if start is None or end is None:
        base = n.NumbersQuery.around(end or today)
        start, end = start or base.start, end or base.end
    by = [b for b in (params.get("by"), params.get("then_by")) if b]
    chosen = params.get("sla") or None
    if chosen is not None and chosen == params.get("agreed_sla"):
        chosen = None  # the form's SLA left as the pair it showed agreed: the chosen pair's
    try:
        sla_hours = float(chosen or sla)
    except ValueError:
        raise InvalidInput("the hand-off SLA is a number of hours") from None
    try:
        return n.NumbersQuery(
            start=start,
            end=end,
            compare_start=_day(params.get("compare_from")),
            compare_end=_day(params.get("compare_to")),
            by=by,
            source=params.get("source") or None,
            sla_hours=sla_hours,
            stall_days=stall,
        ).checked()
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from None


def _funnel_chart(steps: list[Any], title: str) -> Any:
    if not steps or not steps[0].count:
        return None
    return charts.funnel(
        [(s.stage, s.count, s.step_rate, s.cumulative_rate) for s in steps], title=title
    )


def _pivot(report: Any, kpi: str) -> dict[str, Any]:
    """A two-grouping report as a table: rows by the first grouping, columns by the second."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for g in report.groups:
        first, second = (("" if k is None else str(k)) for k in g.keys)
        if second not in columns:
            columns.append(second)
        v = g.kpis.get(kpi)
        rows.setdefault(first, {})[second] = format_value(
            kpi, v.value if v else None, report.currency
        )
    return {"rows": rows, "columns": sorted(columns)}


@page(router, "/numbers")
def numbers_page(
    request: Request, ctx: Ctx, *, query: Mapping[str, Any] | None = None, forms=None, status=200
) -> Response:
    params = dict(query or {})
    today = date.today()
    error = None
    pairs = agreements.numbers_pairs(ctx.session, ctx.me)
    try:
        pair = pair_from(params, ctx, pairs)
        q = query_from(params, pair, today)
    except InvalidInput as exc:
        error, params = exc.message, {}
        pair = pair_from(params, ctx, pairs)
        q = query_from({}, pair, today)
        status = 422
    try:
        breach_page = max(1, min(10_000, int(params.get("page", "1"))))
    except ValueError:
        breach_page = 1
    pivot_kpi = params.get("kpi") if params.get("kpi") in KPIS else PIVOT_DEFAULT
    s = ctx.session
    try:
        result = n.numbers(
            s,
            q,
            breach_limit=BREACHES_PAGE,
            breach_offset=(breach_page - 1) * BREACHES_PAGE,
        )
    except InvalidInput as exc:  # e.g. a source that is not in the store
        error, status = exc.message, 422
        q = query_from({}, pair, today)
        result = n.numbers(s, q, breach_limit=BREACHES_PAGE)
    last_import = latest_import(s, ctx.me)
    states = n.source_states(s, behind_after_days=agreements.behind_after_days(pair))
    kept = {
        k: v
        for k, v in {
            "from": q.start.isoformat(),
            "to": q.end.isoformat(),
            "compare_from": q.compare_start.isoformat() if q.compare_start else "",
            "compare_to": q.compare_end.isoformat() if q.compare_end else "",
            "by": q.by[0] if q.by else "",
            "then_by": q.by[1] if len(q.by) > 1 else "",
            "source": q.source or "",
            "sla": f"{q.sla_hours:g}",
            "kpi": pivot_kpi if len(q.by) > 1 else "",
            "pair": params.get("pair") or "",  # (chosen: kept; else the newest cycle's)
        }.items()
        if v
    }
    return render(
        request,
        ctx,
        "numbers.html",
        status=status,
        error=error,
        q=q,
        result=result,
        kept=kept,
        here="/numbers?" + urlencode(kept),
        sources=n.known_sources(s),
        groupings=n.GROUPINGS,
        targets=target_sentences(pair, result.cards, result.currency),
        pair=pair,
        pairs=pairs,
        table_kpis=[KPIS[k] for k in TABLE_KPIS],
        pivot_kpi=KPIS[pivot_kpi],
        kpi_choices=list(KPIS.values()),
        pivot=_pivot(result.grouped, pivot_kpi) if result.grouped and len(q.by) > 1 else None,
        funnel_chart=_funnel_chart(result.funnel, "The funnel of this period's MQLs"),
        compared_chart=_funnel_chart(result.compared_funnel, "The funnel of the earlier period"),
        breach_pages={
            "page": breach_page,
            "last": max(1, -(-result.breaches.total // BREACHES_PAGE)),
            "total": result.breaches.total,
        },
        last_import=last_import,
        source_states=states,
        flag_count=sum(st.flags for st in states),
        can_import=ctx.me.role in (Role.LEAD, Role.MANAGER),
        forms=forms or {},
    )


def _counted(params: Mapping[str, Any]) -> flags.Counted | None:
    """The records a KPI counted, from a flags URL (``counted``, ``from``, ``to``): its badge
    opens the flags of those records."""
    population = params.get("counted") or None
    if population is None:
        return None
    return flags.Counted(
        population=population, start=_day(params.get("from")), end=_day(params.get("to"))
    )


@page(router, "/numbers/flags")
def flags_page(request: Request, ctx: Ctx, *, query=None, forms=None, status=200) -> Response:
    """The data-quality flags of the shared numbers: what is odd about the records the imports
    kept, of one source and one kind or of all, a page at a time."""
    params = dict(query or {})
    number = page_number(params)
    source, kind = params.get("source") or None, params.get("kind") or None
    error = counted = None
    offset = (number - 1) * flags.FLAGS_PAGE
    try:
        counted = _counted(params)
        found = flags.flag_page(
            ctx.session, source=source, kind=kind, counted=counted, offset=offset
        )
    except InvalidInput as exc:  # a kind, a source, records or a date that is none
        error, status, source, kind, counted = exc.message, 422, None, None, None
        found = flags.flag_page(ctx.session, offset=offset)
    kept = {k: v for k, v in {"source": source, "kind": kind}.items() if v}
    if counted is not None:  # (the records a KPI counted: its badge links here)
        kept["counted"] = counted.population
        kept |= {k: d.isoformat() for k, d in (("from", counted.start), ("to", counted.end)) if d}
    return render(
        request,
        ctx,
        "numbers_flags.html",
        status=status,
        error=error,
        found=found,
        source=source,
        kind=kind,
        counted=counted,
        titles=flags.KIND_TITLES,
        sources=n.known_sources(ctx.session),
        here="/numbers/flags" + ("?" + urlencode(kept) if kept else ""),
        pager=pager(found.total, number, flags.FLAGS_PAGE),
        forms=forms or {},
    )


BOM = "\ufeff"


def _csv(write: Callable[[IO[str]], object], filename: str) -> Response:
    """A download of what ``write`` writes, as CSV in UTF-8 with its byte-order mark (without
    it, Excel reads "MQL→SQL" or “Zoë” as another encoding's garbage; other spreadsheets skip
    it). Written to a spooled file first (the unit of work ends with this call), so memory
    holds at most its first megabytes; a refusal (:class:`InvalidInput`) is raised before
    anything is sent."""
    # (closed by the response's generator once sent, or here on a refusal)
    out = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=8 << 20, mode="w+", newline="", encoding="utf-8"
    )
    try:
        out.write(BOM)
        write(out)
    except BaseException:
        out.close()
        raise
    out.seek(0)

    def chunks() -> Iterator[str]:
        with out:
            while block := out.read(1 << 16):
                yield block

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/numbers/flags.csv")
def flags_csv_get(request: Request, ctx: PageCtx) -> Response:
    """The flags the page shows (its source, kind and records), every one, as CSV: to put the
    records right in the system they were exported from."""
    params = request.query_params
    return _csv(
        lambda out: flags.write_flags_csv(
            ctx.session,
            out,
            source=params.get("source") or None,
            kind=params.get("kind") or None,
            counted=_counted(params),
        ),
        "data-quality-flags.csv",
    )


def _download_query(request: Request, ctx: Ctx) -> n.NumbersQuery:
    """The query of the Numbers page a download link was made on (its period, the period
    compared with, groupings, source, SLA and team pair)."""
    params = dict(request.query_params)
    pairs = agreements.numbers_pairs(ctx.session, ctx.me)
    return query_from(params, pair_from(params, ctx, pairs), date.today())


@router.get("/numbers.csv")
def numbers_csv_get(request: Request, ctx: PageCtx) -> Response:
    """The page's KPIs, every one, for its period, the period compared with and each group:
    for the spreadsheets and decks made from the shared numbers."""
    q = _download_query(request, ctx)
    name = f"shared-numbers-{q.start.isoformat()}-to-{q.end.isoformat()}.csv"
    return _csv(lambda out: numbers_csv.write_numbers_csv(ctx.session, out, q), name)


@router.get("/numbers/late-leads.csv")
def late_leads_csv_get(request: Request, ctx: PageCtx) -> Response:
    """Every lead of the page's period that waited past the hand-off SLA (the page lists them
    a page at a time): the list sales follows up from."""
    q = _download_query(request, ctx)
    name = f"leads-past-the-sla-{q.start.isoformat()}-to-{q.end.isoformat()}.csv"
    return _csv(lambda out: numbers_csv.write_breaches_csv(ctx.session, out, q), name)
