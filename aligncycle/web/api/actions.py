"""Action items, check-ins, and My work."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from aligncycle.web.api.common import Id, Limit, Offset, Page, action_for, cycle_for, page, window
from aligncycle.web.auth import ApiCtx
from models import phases
from models.enums import ActionStatus
from models.schemas import (
    ActionGapLink,
    ActionItemAssign,
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdate,
    ActionProgress,
    CheckInCreate,
    CheckInRead,
    ChecklistItemRead,
)
from models.services import (
    actions,
)
from models.services import views as v

router = APIRouter()


class MyQuestion(BaseModel):
    cycle_id: int
    cycle_title: str
    item: ChecklistItemRead


class MyAction(BaseModel):
    cycle_id: int
    cycle_title: str
    overdue: bool
    item: ActionItemRead


class MyWork(BaseModel):
    questions: list[MyQuestion]
    actions: Page[MyAction]
    overdue: int


@router.get("/cycles/{cycle_id}/actions", response_model=Page[ActionItemRead], tags=["actions"])
def list_actions(
    cycle_id: Id,
    ctx: ApiCtx,
    team: Annotated[str | None, Query(max_length=64, description="Owner's team key.")] = None,
    owner: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Owner id.")] = None,
    status: ActionStatus | None = None,
    due: Annotated[
        str | None, Query(pattern="^(overdue|week|none)$", description="overdue, week, none")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    filters = actions.ActionFilters(team=team, owner=owner, status=status, due=due)
    rows, total = v.actions(
        ctx.session, cycle_for(ctx, cycle_id), filters, limit=limit, offset=offset
    )
    return page([ActionItemRead.model_validate(a) for a in rows], total, limit, offset)


@router.post(
    "/cycles/{cycle_id}/actions", response_model=ActionItemRead, status_code=201, tags=["actions"]
)
def add_action(
    cycle_id: Id, body: ActionItemCreate, ctx: ApiCtx, response: Response
) -> ActionItemRead:
    """Create an action item (leads and managers; plan and execute)."""
    item, created = actions.add_action(ctx.session, cycle_for(ctx, cycle_id), body, ctx.me)
    if not created:
        response.status_code = 200
    return ActionItemRead.model_validate(item)


@router.get("/actions/{action_id}", response_model=ActionItemRead, tags=["actions"])
def get_action(action_id: Id, ctx: ApiCtx) -> ActionItemRead:
    return ActionItemRead.model_validate(action_for(ctx, action_id))


@router.patch("/actions/{action_id}", response_model=ActionItemRead, tags=["actions"])
def update_action(action_id: Id, body: ActionItemUpdate, ctx: ApiCtx) -> ActionItemRead:
    """Update an item: its owner (status, confidence, ...), leads, managers, point persons.
    Only leads and managers move due dates."""
    item = action_for(ctx, action_id)
    actions.update_action(ctx.session, item, body, ctx.me)
    return ActionItemRead.model_validate(item)


@router.post("/actions/{action_id}/progress", response_model=ActionItemRead, tags=["actions"])
def report_progress(action_id: Id, body: ActionProgress, ctx: ApiCtx) -> ActionItemRead:
    """An owner's update as the web app's form sends it: in Plan and Execute a dated check-in
    (status, confidence, progress, note); in Recap a plain update of status and confidence.
    ``due_date`` moves the due date (leads and managers)."""
    item = action_for(ctx, action_id)
    phases.update_action(ctx.session, item, body, ctx.me, date.today())
    ctx.session.flush()
    ctx.session.refresh(item)
    return ActionItemRead.model_validate(item)


@router.post("/actions/{action_id}/assign", response_model=ActionItemRead, tags=["actions"])
def assign_action(action_id: Id, body: ActionItemAssign, ctx: ApiCtx) -> ActionItemRead:
    item = action_for(ctx, action_id)
    actions.assign_action(ctx.session, item, body, ctx.me)
    ctx.session.refresh(item)
    return ActionItemRead.model_validate(item)


@router.post("/actions/{action_id}/gaps", response_model=ActionItemRead, tags=["actions"])
def link_gap(action_id: Id, body: ActionGapLink, ctx: ApiCtx) -> ActionItemRead:
    """The item addresses one more accepted gap of its cycle (leads and managers; plan and
    execute). Linking it again changes nothing."""
    item = action_for(ctx, action_id)
    actions.link_gap(ctx.session, item, body.gap_id, ctx.me)
    return ActionItemRead.model_validate(item)


@router.delete(
    "/actions/{action_id}/gaps/{gap_id}", response_model=ActionItemRead, tags=["actions"]
)
def unlink_gap(action_id: Id, gap_id: Id, ctx: ApiCtx) -> ActionItemRead:
    """The item no longer addresses the gap (leads and managers; plan and execute)."""
    item = action_for(ctx, action_id)
    actions.unlink_gap(ctx.session, item, gap_id, ctx.me)
    return ActionItemRead.model_validate(item)


class SignOffAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_version: int | None = None


@router.post("/actions/{action_id}/signoff", response_model=ActionItemRead, tags=["actions"])
def sign_off(action_id: Id, body: SignOffAction, ctx: ApiCtx) -> ActionItemRead:
    """The counterpart signs off an item its owner marked done (where the playbook asks for
    it): from then on it counts as done."""
    item = action_for(ctx, action_id)
    actions.sign_off_action(ctx.session, item, ctx.me, body.expected_version)
    return ActionItemRead.model_validate(item)


@router.get("/actions/{action_id}/checkins", response_model=Page[CheckInRead], tags=["actions"])
def list_checkins(action_id: Id, ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    item = action_for(ctx, action_id)
    rows = v.checkins_by_action(ctx.session, [item.id]).get(item.id, [])
    return window([CheckInRead.model_validate(c) for c in rows], limit, offset)


@router.post(
    "/actions/{action_id}/checkins",
    response_model=CheckInRead,
    status_code=201,
    tags=["actions"],
)
def add_checkin(action_id: Id, body: CheckInCreate, ctx: ApiCtx, response: Response) -> CheckInRead:
    checkin, created = actions.add_checkin(ctx.session, action_for(ctx, action_id), body, ctx.me)
    if not created:
        response.status_code = 200
    ctx.session.flush()
    return CheckInRead.model_validate(checkin)


@router.get("/me/work", response_model=MyWork, tags=["account"])
def my_work(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> MyWork:
    """Your unanswered questions and unfinished action items across cycles, overdue first."""
    today = date.today()
    questions = v.my_checklist(ctx.session, ctx.me)
    items, total, overdue = v.my_actions(ctx.session, ctx.me, limit=limit, offset=offset)
    titles = {
        c.id: c.title for c in v.cycles_by_id(ctx.session, {a.cycle_id for a in items}).values()
    }
    return MyWork(
        questions=[
            MyQuestion(cycle_id=c.id, cycle_title=c.title, item=ChecklistItemRead.model_validate(i))
            for i, c in questions
        ],
        actions=Page[MyAction](
            **page(
                [
                    MyAction(
                        cycle_id=a.cycle_id,
                        cycle_title=titles.get(a.cycle_id, ""),
                        overdue=a.overdue_on(today),
                        item=ActionItemRead.model_validate(a),
                    )
                    for a in items
                ],
                total,
                limit,
                offset,
            )
        ),
        overdue=overdue,
    )
