"""Cycles: the board, starting, one cycle, advancing, point persons, the timeline, and the
checklist."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from aligncycle import orchestration
from aligncycle.web.api.common import Id, Limit, Offset, Page, cycle_for, page, window
from aligncycle.web.auth import ApiCtx
from models import phases
from models.enums import Phase
from models.schemas import (
    BoardRow,
    ChecklistAnswer,
    ChecklistItemRead,
    CycleCounts,
    CycleCreate,
    CycleRead,
    EventRead,
    Readiness,
)
from models.services import (
    access,
    cycles,
    story,
)
from models.services import views as v
from models.tables import ChecklistItem

router = APIRouter()


class CycleDetail(BaseModel):
    cycle: CycleRead
    readiness: Readiness
    counts: CycleCounts


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Phase | None = Field(default=None, description="Default: the next phase.")
    override_reason: str | None = Field(
        default=None, description="Execute only: leave with unfinished items, with a reason."
    )
    expected_version: int | None = None


class PointPersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)


@router.get("/cycles", response_model=Page[BoardRow], tags=["cycles"])
def board(ctx: ApiCtx, phase: Phase | None = None, limit: Limit = 50, offset: Offset = 0) -> dict:
    """The cycles board: every cycle you may see, newest first, with progress and risk."""
    rows, total = v.board(ctx.session, ctx.me, phase=phase, limit=limit, offset=offset)
    return page(rows, total, limit, offset)


@router.post("/cycles", response_model=CycleRead, status_code=201, tags=["cycles"])
def start_cycle(body: CycleCreate, ctx: ApiCtx) -> CycleRead:
    """Start a cycle from a playbook (point persons only)."""
    cycle = phases.start_cycle(ctx.session, body, ctx.me)
    ctx.session.flush()
    return CycleRead.model_validate(cycles.load_cycle_full(ctx.session, cycle.id))


@router.get("/cycles/{cycle_id}", response_model=CycleDetail, tags=["cycles"])
def get_cycle(cycle_id: Id, ctx: ApiCtx) -> CycleDetail:
    cycle = cycle_for(ctx, cycle_id)
    return CycleDetail(
        cycle=CycleRead.model_validate(cycle),
        readiness=cycles.readiness(ctx.session, cycle),
        counts=v.counts(ctx.session, cycle),
    )


@router.get("/cycles/{cycle_id}/readiness", response_model=Readiness, tags=["cycles"])
def readiness(cycle_id: Id, ctx: ApiCtx) -> Readiness:
    return cycles.readiness(ctx.session, cycle_for(ctx, cycle_id))


@router.post("/cycles/{cycle_id}/advance", response_model=CycleRead, tags=["cycles"])
def advance(request: Request, cycle_id: Id, body: AdvanceIn, ctx: ApiCtx) -> CycleRead:
    """Move the cycle to its next phase (a point person of the cycle, gates permitting).

    As a phase's flow would: what the current phase derives is brought up to date first (the
    gate sees it), and the new phase starts with what its flow writes (Plan: the playbook's
    proposed action items; Execute: a check-in on each open item; Recap: the draft
    retrospective). A refusal writes nothing."""
    cycle = cycle_for(ctx, cycle_id)
    phases.advance(
        ctx.session,
        cycle,
        ctx.me,
        today=date.today(),
        to=body.to,
        override_reason=body.override_reason,
        expected_version=body.expected_version,
    )
    # Once the move commits, its phase flow starts (a Prefect deployment run, or here).
    orchestration.dispatch_after_commit(ctx.session, cycle_id, request.app.state.flows_worker)
    return CycleRead.model_validate(cycle)


@router.put("/cycles/{cycle_id}/point-persons/{team}", response_model=CycleRead, tags=["cycles"])
def set_point_person(
    cycle_id: Id,
    team: Annotated[str, Path(max_length=64)],
    body: PointPersonIn,
    ctx: ApiCtx,
) -> CycleRead:
    cycle = cycle_for(ctx, cycle_id)
    cycles.assign_point_person(ctx.session, cycle, team, body.email, ctx.me)
    ctx.session.refresh(cycle)
    return CycleRead.model_validate(cycle)


@router.get("/cycles/{cycle_id}/events", response_model=Page[EventRead], tags=["cycles"])
def timeline(cycle_id: Id, ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    """The cycle's audit log, newest first."""
    events, total = v.timeline(ctx.session, cycle_for(ctx, cycle_id), limit=limit, offset=offset)
    told = story.tell(ctx.session, events)
    rows = [
        EventRead.model_validate(e).model_copy(update={"sentence": t.sentence})
        for e, t in zip(events, told, strict=True)
    ]
    return page(rows, total, limit, offset)


@router.get(
    "/cycles/{cycle_id}/checklist", response_model=Page[ChecklistItemRead], tags=["checklist"]
)
def list_checklist(
    cycle_id: Id, ctx: ApiCtx, phase: Phase | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict:
    items = v.checklist(ctx.session, cycle_for(ctx, cycle_id))
    if phase is not None:
        items = [i for i in items if i.phase is phase]
    return window([ChecklistItemRead.model_validate(i) for i in items], limit, offset)


@router.post("/checklist/{item_id}/answer", response_model=ChecklistItemRead, tags=["checklist"])
def answer(item_id: Id, body: ChecklistAnswer, ctx: ApiCtx) -> ChecklistItemRead:
    item = access.visible_object(ctx.session, ctx.me, ChecklistItem, item_id, "checklist item")
    phases.answer(ctx.session, item, body, ctx.me)
    return ChecklistItemRead.model_validate(item)
