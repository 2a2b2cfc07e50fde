"""The shared numbers: KPIs (the filters and groupings of ``aligncycle kpi show``), the SLA
breach list, and action items' targets."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ValidationError

from aligncycle.web.api.common import Id, Limit, Offset, action_for, cycle_for
from aligncycle.web.auth import ApiCtx
from models.errors import InvalidInput
from models.funnel import flags, targets
from models.funnel import numbers as n
from models.funnel.kpis import KpiReport
from models.schemas import validation_message
from models.services import agreements

router = APIRouter()
#: The default hand-off SLA: what the caller's teams agreed.
AGREED = "Hours (default: the hand-off SLA the team pair's agreement in force says)."
#: The team pair whose settings are the defaults, by its agreement's id.
Pair = Annotated[
    int | None,
    Query(
        ge=1,
        description="The agreement of the team pair whose settings (hand-off SLA, targets, "
        "cadence) are the defaults (default: the pair of the newest cycle you see).",
    ),
]

EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)
Day = Annotated[date | None, Query(ge=EARLIEST, le=LATEST)]
From = Annotated[
    date | None,
    Query(alias="from", ge=EARLIEST, le=LATEST, description="First day (default: 30 days ago)."),
]
To = Annotated[
    date | None, Query(alias="to", ge=EARLIEST, le=LATEST, description="Last day (default: today).")
]


class KpisRead(BaseModel):
    query: n.NumbersQuery
    report: KpiReport
    compared: KpiReport
    #: Each KPI's overall value against its target in force (the agreement of the team pair
    #: chosen, else of the newest cycle's the caller sees, else the playbook's threshold), as a
    #: sentence.
    targets: dict[str, str] = {}
    #: Where the hand-off SLA comes from, as a sentence (none: no team pair to say it).
    sla_source: str | None = None


def _query(
    start: date | None,
    end: date | None,
    by: list[str],
    compare_from: date | None,
    compare_to: date | None,
    source: str | None,
    sla_hours: float,
    stall_days: int,
) -> n.NumbersQuery:
    today = date.today()
    if start is None or end is None:
        base = n.NumbersQuery.around(end or today)
        start, end = start or base.start, end or base.end
    try:
        return n.NumbersQuery(
            start=start,
            end=end,
            compare_start=compare_from,
            compare_end=compare_to,
            by=by,
            source=source,
            sla_hours=sla_hours,
            stall_days=stall_days,
        ).checked()
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from None


@router.get("/kpis", response_model=KpisRead, tags=["numbers"])
def kpis(
    ctx: ApiCtx,
    start: From = None,
    end: To = None,
    by: Annotated[
        list[str], Query(description="Up to two of channel, campaign, owner, team, month.")
    ] = [],  # noqa: B006 - FastAPI copies a list default per request
    compare_from: Day = None,
    compare_to: Day = None,
    source: str | None = None,
    sla_hours: Annotated[float | None, Query(gt=0, le=1440, description=AGREED)] = None,
    stall_days: Annotated[
        int | None,
        Query(ge=1, le=3650, description="Days (default: the team pair's playbook's, 30)."),
    ] = None,
    pair: Pair = None,
) -> KpisRead:
    """Every KPI of the period, overall or by one or two groupings, and the same KPIs of the
    period to compare with (default: as many days just before)."""
    settings = agreements.numbers_pair(ctx.session, ctx.me, pair)
    sla, stall = agreements.numbers_defaults(settings)
    sla_hours, stall_days = sla_hours or sla, stall_days or stall
    q = _query(start, end, by, compare_from, compare_to, source, sla_hours, stall_days)
    common = {"source": q.source, "sla_hours": q.sla_hours, "stall_days": q.stall_days}
    if q.source is not None:  # an unknown source: refused with the sources there are
        n.numbers(ctx.session, q.model_copy(update={"by": []}), breach_limit=1)
    report = n.report(ctx.session, start=q.start, end=q.end, by=q.by, **common)
    compared = n.report(
        ctx.session,
        start=q.compare_start,  # type: ignore[arg-type]
        end=q.compare_end,  # type: ignore[arg-type]
        by=q.by,
        **common,
    )
    targets: dict[str, str] = {}
    if settings is not None and not q.by:  # the overall values only
        for name, v in report.overall().items():
            if sentence := settings.in_force.target_sentence(name, v.value, report.currency):
                targets[name] = sentence
    said = settings.sla_sentence(q.sla_hours) if settings is not None else None
    return KpisRead(query=q, report=report, compared=compared, targets=targets, sla_source=said)


@router.get("/kpis/breaches", response_model=n.Breaches, tags=["numbers"])
def breaches(
    ctx: ApiCtx,
    start: From = None,
    end: To = None,
    source: str | None = None,
    sla_hours: Annotated[float | None, Query(gt=0, le=1440, description=AGREED)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    pair: Pair = None,
) -> n.Breaches:
    """Each MQL of the period that waited past the hand-off SLA, latest first."""
    sla, stall = agreements.numbers_defaults(agreements.numbers_pair(ctx.session, ctx.me, pair))
    q = _query(start, end, [], None, None, source, sla_hours or sla, stall)
    return n.sla_breaches(
        ctx.session,
        start=q.start,
        end=q.end,
        sla_hours=q.sla_hours,
        source=q.source,
        limit=limit,
        offset=offset,
    )


@router.get("/kpis/flags", response_model=flags.FlagPage, tags=["numbers"])
def data_quality_flags(
    ctx: ApiCtx,
    source: str | None = None,
    kind: Annotated[
        str | None, Query(description="One kind of flag: " + ", ".join(flags.KIND_TITLES) + ".")
    ] = None,
    counted: Annotated[
        str | None,
        Query(
            description="Only the flags of the records a KPI counts over the days ``from`` to "
            "``to``: " + "; ".join(f"{k}, the {v}" for k, v in flags.COUNTED.items()) + "."
        ),
    ] = None,
    start: Annotated[
        date | None,
        Query(alias="from", ge=EARLIEST, le=LATEST, description="With counted: the first day."),
    ] = None,
    end: Annotated[
        date | None,
        Query(alias="to", ge=EARLIEST, le=LATEST, description="With counted: the last day."),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> flags.FlagPage:
    """The data-quality flags of the shared numbers (what is odd about the records the imports
    kept), in source, file and line order, with how many of each kind and of each source."""
    chosen = flags.Counted(population=counted, start=start, end=end) if counted else None
    return flags.flag_page(
        ctx.session, source=source, kind=kind, counted=chosen, limit=limit, offset=offset
    )


@router.get("/kpis/sources", response_model=list[n.SourceState], tags=["numbers"])
def data_sources(ctx: ApiCtx, pair: Pair = None) -> list[n.SourceState]:
    """Where the shared numbers come from: each source's leads, deals and data-quality flags,
    the currency of its amounts, and its newest import (``behind``: older than the cadence the
    team pair works to, a week by default)."""
    days = agreements.behind_after_days(agreements.numbers_pair(ctx.session, ctx.me, pair))
    return n.source_states(ctx.session, behind_after_days=days)


class TargetOut(targets.TargetRead):
    action_title: str


@router.get("/cycles/{cycle_id}/targets", response_model=list[TargetOut], tags=["numbers"])
def cycle_targets(cycle_id: Id, ctx: ApiCtx) -> list[TargetOut]:
    """The targets of the cycle's action items."""
    cycle = cycle_for(ctx, cycle_id)
    return [
        TargetOut(**targets.TargetRead.model_validate(t).model_dump(), action_title=item.title)
        for t, item in targets.list_targets(ctx.session, cycle)
    ]


@router.put("/actions/{action_id}/target", response_model=targets.TargetRead, tags=["numbers"])
def set_target(action_id: Id, body: targets.TargetSet, ctx: ApiCtx) -> targets.TargetRead:
    """Give an action item its measurable target, or change it (Plan and Execute; its owner,
    leads, managers and the cycle's point persons). The baseline defaults to the cycle's."""
    target = targets.set_target(ctx.session, action_for(ctx, action_id), body, ctx.me)
    ctx.session.flush()
    return targets.TargetRead.model_validate(target)
