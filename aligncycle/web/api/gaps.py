"""The gap analysis: listing, adding and deciding gaps."""

from __future__ import annotations

from fastapi import APIRouter, Response

from aligncycle.web.api.common import Id, Limit, Offset, Page, cycle_for, window
from aligncycle.web.auth import ApiCtx
from models import phases
from models.enums import GapDecision
from models.schemas import (
    GapCreate,
    GapDecide,
    GapRead,
)
from models.services import (
    access,
    gaps,
)
from models.services import views as v
from models.tables import Gap

router = APIRouter()


@router.get("/cycles/{cycle_id}/gaps", response_model=Page[GapRead], tags=["gaps"])
def list_gaps(
    cycle_id: Id,
    ctx: ApiCtx,
    decision: GapDecision | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    rows = v.gaps(ctx.session, cycle_for(ctx, cycle_id), decision)
    return window([GapRead.model_validate(g) for g in rows], limit, offset)


@router.post("/cycles/{cycle_id}/gaps", response_model=GapRead, status_code=201, tags=["gaps"])
def add_gap(cycle_id: Id, body: GapCreate, ctx: ApiCtx, response: Response) -> GapRead:
    """Record a gap (idempotent on its key: an existing gap answers 200)."""
    gap, created = gaps.add_gap(ctx.session, cycle_for(ctx, cycle_id), body, ctx.me)
    if not created:
        response.status_code = 200
    ctx.session.flush()
    return GapRead.model_validate(gap)


@router.post("/gaps/{gap_id}/decision", response_model=GapRead, tags=["gaps"])
def decide_gap(gap_id: Id, body: GapDecide, ctx: ApiCtx) -> GapRead:
    gap = access.visible_object(ctx.session, ctx.me, Gap, gap_id, "gap")
    phases.decide_gap(ctx.session, gap, body, ctx.me)
    return GapRead.model_validate(gap)
