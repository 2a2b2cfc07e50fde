"""A cycle's gap analysis: adding and deciding gaps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import (
    PageCtx,
)
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    DECISION_LABELS,
    act,
    cycle_common,
    gate_news,
    opt,
    page,
    parse_form,
    render,
    to_int,
)
from models import phases
from models.errors import InvalidInput
from models.schemas import (
    GapCreate,
    GapDecide,
)
from models.services import (
    access,
    gaps,
)
from models.services import views as v
from models.tables import Gap

router = APIRouter(include_in_schema=False)


@page(router, "/cycles/{cycle_id}/gaps")
def gaps_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    return render(
        request,
        ctx,
        "cycle_gaps.html",
        status=status,
        tab="gaps",
        cycle=cycle,
        perms=perms,
        counts=counts,
        gaps=v.gaps(ctx.session, cycle),
        forms=forms or {},
    )


@router.post("/cycles/{cycle_id}/gaps")
def gap_add_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"title": data.get("title", "")}
        payload.update(opt(data, "description", "category", "root_cause", "severity", "evidence"))
        payload.setdefault("category", "")
        payload.setdefault("root_cause", "")
        gap, created = gaps.add_gap(ctx.session, cycle, parse_form(GapCreate, payload), ctx.me)
        if not created:
            raise InvalidInput(f"this cycle already has the gap “{gap.title}”")
        return f"Gap “{gap.title}” recorded. A lead or point person decides on it next."

    return act(request, ctx, form_id="new-gap", default_next=f"/cycles/{cycle_id}/gaps", run=run)


@router.post("/gaps/{gap_id}/decide")
def gap_decide_post(request: Request, gap_id: int, ctx: PageCtx) -> Response:
    holder: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        gap = access.visible_object(ctx.session, ctx.me, Gap, gap_id, "gap")
        holder["cycle"] = gap.cycle_id
        payload: dict[str, Any] = {"decision": data.get("decision", "")}
        payload.update(opt(data, "reason"))
        payload["expected_version"] = to_int(data.get("version"))
        phases.decide_gap(ctx.session, gap, parse_form(GapDecide, payload), ctx.me)
        return f"Gap {DECISION_LABELS[gap.decision].lower()}." + gate_news(ctx, gap.cycle_id)

    return act(
        request,
        ctx,
        form_id=f"decide-{gap_id}",
        default_next="/cycles",
        run=run,
        anchor=f"gap-{gap_id}",
    )
