"""The REST API, ``/api/v1``: everything the pages do, as JSON.

Authentication: ``Authorization: Bearer <personal access token>`` (or a browser session plus
``X-CSRF-Token`` on writes). Errors: ``{"error": {"code": "...", "message": "..."}}`` with
401/403/404/409/422. Lists are pages: ``?limit=&offset=`` → ``{items, total, limit, offset,
next_offset}``. Every write goes through the domain services (rules, audit log) in one unit of
work per request.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web.auth import ApiCtx
from aligncycle.web.recap_view import csv_response, recap_model
from models import phases
from models.enums import ActionStatus, GapDecision, Phase, Role
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdate,
    ActionProgress,
    BoardRow,
    CheckInCreate,
    CheckInRead,
    ChecklistAnswer,
    ChecklistItemRead,
    CycleCounts,
    CycleCreate,
    CycleRead,
    EventRead,
    GapCreate,
    GapDecide,
    GapRead,
    PersonRead,
    PlaybookRead,
    Readiness,
    RetrospectiveRead,
    RetrospectiveRecord,
    SurveyRespond,
    TeamRead,
)
from models.services import (
    access,
    accounts,
    actions,
    cycles,
    gaps,
    people,
    playbooks,
    recap,
)
from models.services import views as v
from models.tables import ActionItem, ChecklistItem, Gap, Retrospective

T = TypeVar("T")
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size (at most 200).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. forbidden, not_found.")
    message: str = Field(description="One line for people.")
    blockers: list[str] | None = None
    fields: list[dict[str, str]] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in, or a bad token"},
    403: {"model": ErrorOut, "description": "Not allowed for this person"},
    404: {"model": ErrorOut, "description": "No such object (or not visible to you)"},
    409: {"model": ErrorOut, "description": "A phase gate, or someone else's newer change"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}

router = APIRouter(responses=ERRORS)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def page(items: list, total: int, limit: int, offset: int) -> dict[str, Any]:
    nxt = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}


def window(rows: list, limit: int, offset: int) -> dict[str, Any]:
    return page(rows[offset : offset + limit], len(rows), limit, offset)


# --- models only the API has ----------------------------------------------------------------


class MeRead(BaseModel):
    person: PersonRead
    authenticated_by: str = Field(description="token or session")


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


class SignOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_version: int | None = None


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


class SurveyTeamRead(BaseModel):
    team: str
    name: str
    responses: int
    mean: float | None


class SurveyRead(BaseModel):
    answered: int
    shown: bool = Field(description=f"False below {v.SURVEY_MIN_GROUP} answers (anonymity).")
    mean: float | None
    distribution: dict[int, int]
    by_team: list[SurveyTeamRead]
    comments: list[str]


class SurveyAnswered(BaseModel):
    cycle_id: int
    anonymous: bool


class TrendRead(BaseModel):
    cycle_id: int
    title: str
    period_start: date
    actions_total: int
    actions_done: int
    completion: int | None
    survey_mean: float | None
    gaps_total: int


class KpiRead(BaseModel):
    kpi: str
    label: str
    before: float | None
    after: float | None
    unit: str
    higher_is_better: bool


class RecapRead(BaseModel):
    cycle_id: int
    retrospective: RetrospectiveRead | None
    facts: dict[str, Any]
    survey: SurveyRead
    trend: list[TrendRead]
    kpis: list[KpiRead]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    days: int | None = Field(default=None, ge=1, le=3650, description="Default: no expiry.")


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown once: keep it somewhere safe.")


# --- helpers --------------------------------------------------------------------------------


def _survey(view: v.SurveyView) -> SurveyRead:
    return SurveyRead(
        answered=view.answered,
        shown=view.shown,
        mean=view.mean,
        distribution=view.distribution,
        by_team=[SurveyTeamRead(**t) for t in view.by_team],
        comments=view.comments,
    )


def _safe_facts(facts: dict[str, Any], survey: v.SurveyView) -> dict[str, Any]:
    """Facts without the survey mean of too few answers (it could identify someone)."""
    out = dict(facts)
    if not survey.shown:
        out["survey_mean"] = None
    return out


def _retro(retro: Retrospective | None, survey: v.SurveyView) -> RetrospectiveRead | None:
    if retro is None:
        return None
    read = RetrospectiveRead.model_validate(retro)
    return read.model_copy(update={"facts": _safe_facts(read.facts, survey)})


def _cycle(ctx: Any, cycle_id: int):  # noqa: ANN202
    return access.visible_cycle(ctx.session, ctx.me, cycle_id)


# --- who am I, teams, people, playbooks -----------------------------------------------------


@router.get("/me", response_model=MeRead, tags=["account"])
def me(ctx: ApiCtx) -> MeRead:
    return MeRead(person=PersonRead.model_validate(ctx.me), authenticated_by=ctx.via)


@router.get("/teams", response_model=Page[TeamRead], tags=["organisation"])
def list_teams(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [TeamRead.model_validate(t) for t in people.list_teams(ctx.session)]
    return window(rows, limit, offset)


@router.get("/people", response_model=Page[PersonRead], tags=["organisation"])
def list_people(
    ctx: ApiCtx,
    team: Annotated[str | None, Query(max_length=64)] = None,
    role: Role | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    rows = people.list_people(ctx.session, team=team, role=role.value if role else None)
    return window([PersonRead.model_validate(p) for p in rows], limit, offset)


@router.get("/playbooks", response_model=Page[PlaybookRead], tags=["organisation"])
def list_playbooks(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [PlaybookRead.model_validate(p) for p in playbooks.list_playbooks(ctx.session)]
    return window(rows, limit, offset)


# --- cycles ---------------------------------------------------------------------------------


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
    cycle = _cycle(ctx, cycle_id)
    return CycleDetail(
        cycle=CycleRead.model_validate(cycle),
        readiness=cycles.readiness(ctx.session, cycle),
        counts=v.counts(ctx.session, cycle),
    )


@router.get("/cycles/{cycle_id}/readiness", response_model=Readiness, tags=["cycles"])
def readiness(cycle_id: Id, ctx: ApiCtx) -> Readiness:
    return cycles.readiness(ctx.session, _cycle(ctx, cycle_id))


@router.post("/cycles/{cycle_id}/advance", response_model=CycleRead, tags=["cycles"])
def advance(cycle_id: Id, body: AdvanceIn, ctx: ApiCtx) -> CycleRead:
    """Move the cycle to its next phase (a point person of the cycle, gates permitting).

    As a phase's flow would: what the current phase derives is brought up to date first (the
    gate sees it), and the new phase starts with what its flow writes (Plan: the playbook's
    proposed action items; Execute: a check-in on each open item; Recap: the draft
    retrospective). A refusal writes nothing."""
    cycle = _cycle(ctx, cycle_id)
    phases.advance(
        ctx.session,
        cycle,
        ctx.me,
        today=date.today(),
        to=body.to,
        override_reason=body.override_reason,
        expected_version=body.expected_version,
    )
    return CycleRead.model_validate(cycle)


@router.put("/cycles/{cycle_id}/point-persons/{team}", response_model=CycleRead, tags=["cycles"])
def set_point_person(
    cycle_id: Id,
    team: Annotated[str, Path(max_length=64)],
    body: PointPersonIn,
    ctx: ApiCtx,
) -> CycleRead:
    cycle = _cycle(ctx, cycle_id)
    cycles.assign_point_person(ctx.session, cycle, team, body.email, ctx.me)
    ctx.session.refresh(cycle)
    return CycleRead.model_validate(cycle)


@router.get("/cycles/{cycle_id}/events", response_model=Page[EventRead], tags=["cycles"])
def timeline(cycle_id: Id, ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    """The cycle's audit log, newest first."""
    events, total = v.timeline(ctx.session, _cycle(ctx, cycle_id), limit=limit, offset=offset)
    return page([EventRead.model_validate(e) for e in events], total, limit, offset)


# --- checklist ------------------------------------------------------------------------------


@router.get(
    "/cycles/{cycle_id}/checklist", response_model=Page[ChecklistItemRead], tags=["checklist"]
)
def list_checklist(
    cycle_id: Id, ctx: ApiCtx, phase: Phase | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict:
    items = v.checklist(ctx.session, _cycle(ctx, cycle_id))
    if phase is not None:
        items = [i for i in items if i.phase is phase]
    return window([ChecklistItemRead.model_validate(i) for i in items], limit, offset)


@router.post("/checklist/{item_id}/answer", response_model=ChecklistItemRead, tags=["checklist"])
def answer(item_id: Id, body: ChecklistAnswer, ctx: ApiCtx) -> ChecklistItemRead:
    item = access.visible_object(ctx.session, ctx.me, ChecklistItem, item_id, "checklist item")
    phases.answer(ctx.session, item, body, ctx.me)
    return ChecklistItemRead.model_validate(item)


# --- gaps -----------------------------------------------------------------------------------


@router.get("/cycles/{cycle_id}/gaps", response_model=Page[GapRead], tags=["gaps"])
def list_gaps(
    cycle_id: Id,
    ctx: ApiCtx,
    decision: GapDecision | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    rows = v.gaps(ctx.session, _cycle(ctx, cycle_id), decision)
    return window([GapRead.model_validate(g) for g in rows], limit, offset)


@router.post("/cycles/{cycle_id}/gaps", response_model=GapRead, status_code=201, tags=["gaps"])
def add_gap(cycle_id: Id, body: GapCreate, ctx: ApiCtx, response: Response) -> GapRead:
    """Record a gap (idempotent on its key: an existing gap answers 200)."""
    gap, created = gaps.add_gap(ctx.session, _cycle(ctx, cycle_id), body, ctx.me)
    if not created:
        response.status_code = 200
    ctx.session.flush()
    return GapRead.model_validate(gap)


@router.post("/gaps/{gap_id}/decision", response_model=GapRead, tags=["gaps"])
def decide_gap(gap_id: Id, body: GapDecide, ctx: ApiCtx) -> GapRead:
    gap = access.visible_object(ctx.session, ctx.me, Gap, gap_id, "gap")
    phases.decide_gap(ctx.session, gap, body, ctx.me)
    return GapRead.model_validate(gap)


# --- action items ---------------------------------------------------------------------------


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
    rows, total = v.actions(ctx.session, _cycle(ctx, cycle_id), filters, limit=limit, offset=offset)
    return page([ActionItemRead.model_validate(a) for a in rows], total, limit, offset)


@router.post(
    "/cycles/{cycle_id}/actions", response_model=ActionItemRead, status_code=201, tags=["actions"]
)
def add_action(
    cycle_id: Id, body: ActionItemCreate, ctx: ApiCtx, response: Response
) -> ActionItemRead:
    """Create an action item (leads and managers; plan and execute)."""
    item, created = actions.add_action(ctx.session, _cycle(ctx, cycle_id), body, ctx.me)
    if not created:
        response.status_code = 200
    return ActionItemRead.model_validate(item)


def _action(ctx: Any, action_id: int) -> ActionItem:
    return access.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")


@router.get("/actions/{action_id}", response_model=ActionItemRead, tags=["actions"])
def get_action(action_id: Id, ctx: ApiCtx) -> ActionItemRead:
    return ActionItemRead.model_validate(_action(ctx, action_id))


@router.patch("/actions/{action_id}", response_model=ActionItemRead, tags=["actions"])
def update_action(action_id: Id, body: ActionItemUpdate, ctx: ApiCtx) -> ActionItemRead:
    """Update an item: its owner (status, confidence, ...), leads, managers, point persons.
    Only leads and managers move due dates."""
    item = _action(ctx, action_id)
    actions.update_action(ctx.session, item, body, ctx.me)
    return ActionItemRead.model_validate(item)


@router.post("/actions/{action_id}/progress", response_model=ActionItemRead, tags=["actions"])
def report_progress(action_id: Id, body: ActionProgress, ctx: ApiCtx) -> ActionItemRead:
    """An owner's update as the web app's form sends it: in Plan and Execute a dated check-in
    (status, confidence, progress, note); in Recap a plain update of status and confidence.
    ``due_date`` moves the due date (leads and managers)."""
    item = _action(ctx, action_id)
    phases.update_action(ctx.session, item, body, ctx.me, date.today())
    ctx.session.flush()
    ctx.session.refresh(item)
    return ActionItemRead.model_validate(item)


@router.post("/actions/{action_id}/assign", response_model=ActionItemRead, tags=["actions"])
def assign_action(action_id: Id, body: ActionItemAssign, ctx: ApiCtx) -> ActionItemRead:
    item = _action(ctx, action_id)
    actions.assign_action(ctx.session, item, body, ctx.me)
    ctx.session.refresh(item)
    return ActionItemRead.model_validate(item)


@router.get("/actions/{action_id}/checkins", response_model=Page[CheckInRead], tags=["actions"])
def list_checkins(action_id: Id, ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    item = _action(ctx, action_id)
    rows = v.checkins_by_action(ctx.session, [item.id]).get(item.id, [])
    return window([CheckInRead.model_validate(c) for c in rows], limit, offset)


@router.post(
    "/actions/{action_id}/checkins",
    response_model=CheckInRead,
    status_code=201,
    tags=["actions"],
)
def add_checkin(action_id: Id, body: CheckInCreate, ctx: ApiCtx, response: Response) -> CheckInRead:
    checkin, created = actions.add_checkin(ctx.session, _action(ctx, action_id), body, ctx.me)
    if not created:
        response.status_code = 200
    ctx.session.flush()
    return CheckInRead.model_validate(checkin)


# --- My work --------------------------------------------------------------------------------


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


# --- recap ----------------------------------------------------------------------------------


@router.get("/cycles/{cycle_id}/recap", response_model=RecapRead, tags=["recap"])
def get_recap(cycle_id: Id, ctx: ApiCtx) -> RecapRead:
    """The recap: retrospective, facts, survey results, trends across the teams' cycles and
    KPIs before/after (when measurement data exists)."""
    cycle = _cycle(ctx, cycle_id)
    model = recap_model(ctx.session, cycle, ctx.me)
    survey = model["survey"]
    return RecapRead(
        cycle_id=cycle.id,
        retrospective=_retro(model["retro"], survey),
        facts=_safe_facts(model["facts"], survey),
        survey=_survey(survey),
        trend=[
            TrendRead(**{k: getattr(t, k) for k in TrendRead.model_fields}) for t in model["trend"]
        ],
        kpis=[KpiRead(**k.__dict__) for k in model["kpis"]],
    )


@router.get(
    "/cycles/{cycle_id}/recap.csv",
    tags=["recap"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def recap_csv(cycle_id: Id, ctx: ApiCtx) -> Response:
    cycle = _cycle(ctx, cycle_id)
    return csv_response(cycle, recap_model(ctx.session, cycle, ctx.me))


@router.put("/cycles/{cycle_id}/retrospective", response_model=RetrospectiveRead, tags=["recap"])
def record_retrospective(
    cycle_id: Id, body: RetrospectiveRecord, ctx: ApiCtx
) -> RetrospectiveRead | None:
    """Record or revise the retrospective (a point person of the cycle, in recap)."""
    cycle = _cycle(ctx, cycle_id)
    retro = recap.record_retrospective(ctx.session, cycle, body, ctx.me)
    return _retro(retro, v.survey(ctx.session, cycle, ctx.me))


@router.post("/cycles/{cycle_id}/signoff", response_model=RetrospectiveRead, tags=["recap"])
def sign_off(cycle_id: Id, body: SignOffIn, ctx: ApiCtx) -> RetrospectiveRead | None:
    """Sign off the recap (managers)."""
    cycle = _cycle(ctx, cycle_id)
    retro = recap.sign_off(ctx.session, cycle, ctx.me, body.expected_version)
    return _retro(retro, v.survey(ctx.session, cycle, ctx.me))


@router.get("/cycles/{cycle_id}/survey", response_model=SurveyRead, tags=["recap"])
def survey_results(cycle_id: Id, ctx: ApiCtx) -> SurveyRead:
    return _survey(v.survey(ctx.session, _cycle(ctx, cycle_id), ctx.me))


@router.post(
    "/cycles/{cycle_id}/survey", response_model=SurveyAnswered, status_code=201, tags=["recap"]
)
def answer_survey(cycle_id: Id, body: SurveyRespond, ctx: ApiCtx) -> SurveyAnswered:
    """Answer the cycle's survey once. An anonymous answer is stored without your name."""
    recap.respond(ctx.session, _cycle(ctx, cycle_id), body, ctx.me)
    return SurveyAnswered(cycle_id=cycle_id, anonymous=body.anonymous)


# --- personal access tokens -----------------------------------------------------------------


@router.get("/tokens", response_model=Page[TokenRead], tags=["account"])
def list_tokens(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [TokenRead.model_validate(t) for t in accounts.list_tokens(ctx.session, ctx.me)]
    return window(rows, limit, offset)


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["account"])
def create_token(body: TokenIn, ctx: ApiCtx) -> TokenCreated:
    raw, row = accounts.create_token(ctx.session, ctx.me, body.name, body.days)
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=raw)


@router.delete("/tokens/{token_id}", response_model=TokenRead, tags=["account"])
def revoke_token(token_id: Id, ctx: ApiCtx) -> TokenRead:
    return TokenRead.model_validate(accounts.revoke_token(ctx.session, ctx.me, token_id))
