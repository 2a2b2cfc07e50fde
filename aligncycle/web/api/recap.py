"""The recap, the retrospective, the sign-off and the survey."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web.api.common import Id, cycle_for
from aligncycle.web.auth import ApiCtx
from aligncycle.web.recap_view import csv_response, recap_model
from models.funnel.measure import TargetResult
from models.schemas import (
    RetrospectiveRead,
    RetrospectiveRecord,
    SurveyRespond,
)
from models.services import (
    recap,
    recap_views,
    reports,
)
from models.tables import Retrospective

router = APIRouter()


class SignOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_version: int | None = None


class SurveyTeamRead(BaseModel):
    team: str
    name: str
    responses: int
    published: int
    mean: float | None


class SurveyRead(BaseModel):
    answered: int = Field(description="How many people answered.")
    published: int = Field(description="How many answers are in the results (see rule).")
    shown: bool = Field(description="False until the first batch of answers is published.")
    teams_shown: bool = Field(description="Whether the teams' own averages can be shown.")
    rule: str = Field(description="When answers are published, in words.")
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
    targets: list[TargetResult] = Field(
        default_factory=list, description="Each action item's target: reached or not."
    )
    disagreements: list[str] = Field(
        default_factory=list,
        description="Where the team's survey and the measured numbers disagree, in sentences.",
    )


def _survey(view: recap_views.SurveyView) -> SurveyRead:
    return SurveyRead(
        answered=view.answered,
        published=view.published,
        shown=view.shown,
        teams_shown=view.teams_shown,
        rule=view.rule,
        mean=view.mean,
        distribution=view.distribution,
        by_team=[SurveyTeamRead(**t) for t in view.by_team],
        comments=view.comments,
    )


def _safe_facts(facts: dict[str, Any], survey: recap_views.SurveyView) -> dict[str, Any]:
    """Facts without the survey mean of too few answers (it could identify someone)."""
    out = dict(facts)
    if not survey.shown:
        out["survey_mean"] = None
    return out


def _retro(retro: Retrospective | None, survey: recap_views.SurveyView) -> RetrospectiveRead | None:
    if retro is None:
        return None
    read = RetrospectiveRead.model_validate(retro)
    return read.model_copy(update={"facts": _safe_facts(read.facts, survey)})


@router.get("/cycles/{cycle_id}/recap", response_model=RecapRead, tags=["recap"])
def get_recap(cycle_id: Id, ctx: ApiCtx) -> RecapRead:
    """The recap: retrospective, facts, survey results, trends across the teams' finished
    cycles and KPIs before/after (when measurement data exists). The retrospective's facts
    are the cycle's as they are now while it can still change."""
    cycle = cycle_for(ctx, cycle_id)
    model = recap_model(ctx.session, cycle, ctx.me)
    survey = model["survey"]
    retro = _retro(model["retro"], survey)
    if retro is not None:
        facts = recap.current_facts(ctx.session, cycle, model["retro"])
        retro = retro.model_copy(update={"facts": _safe_facts(facts, survey)})
    return RecapRead(
        cycle_id=cycle.id,
        retrospective=retro,
        facts=_safe_facts(model["facts"], survey),
        survey=_survey(survey),
        trend=[
            TrendRead(**{k: getattr(t, k) for k in TrendRead.model_fields}) for t in model["trend"]
        ],
        kpis=[KpiRead(**k.__dict__) for k in model["kpis"]],
        targets=model["measured"].targets if model["measured"] else [],
        disagreements=model["measured"].disagreements if model["measured"] else [],
    )


@router.get(
    "/cycles/{cycle_id}/recap.csv",
    tags=["recap"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def recap_csv(cycle_id: Id, ctx: ApiCtx) -> Response:
    cycle = cycle_for(ctx, cycle_id)
    return csv_response(ctx.session, cycle, recap_model(ctx.session, cycle, ctx.me))


class StoredReportRead(BaseModel):
    cycle_id: int
    headline: str
    on_date: date = Field(description="The day the report speaks of.")
    written_at: datetime
    markdown: str = Field(description="The report, in Markdown.")
    url: str = Field(description="Where the web app serves it as a download.")


@router.get("/cycles/{cycle_id}/recap/report", response_model=StoredReportRead, tags=["recap"])
def stored_report(cycle_id: Id, ctx: ApiCtx) -> StoredReportRead:
    """The report the last recap run wrote, kept in the store (404 until Recap has run)."""
    row = reports.recap_report(ctx.session, ctx.me, cycle_id)
    return StoredReportRead(
        cycle_id=row.cycle_id,
        headline=row.headline,
        on_date=row.on_date,
        written_at=row.written_at,
        markdown=row.markdown,
        url=reports.report_path(row.cycle_id),
    )


@router.put("/cycles/{cycle_id}/retrospective", response_model=RetrospectiveRead, tags=["recap"])
def record_retrospective(
    cycle_id: Id, body: RetrospectiveRecord, ctx: ApiCtx
) -> RetrospectiveRead | None:
    """Record or revise the retrospective (a point person of the cycle, in recap)."""
    cycle = cycle_for(ctx, cycle_id)
    retro = recap.record_retrospective(ctx.session, cycle, body, ctx.me)
    return _retro(retro, recap_views.survey(ctx.session, cycle, ctx.me))


@router.post("/cycles/{cycle_id}/signoff", response_model=RetrospectiveRead, tags=["recap"])
def sign_off(cycle_id: Id, body: SignOffIn, ctx: ApiCtx) -> RetrospectiveRead | None:
    """Sign off the recap (managers)."""
    cycle = cycle_for(ctx, cycle_id)
    retro = recap.sign_off(ctx.session, cycle, ctx.me, body.expected_version)
    return _retro(retro, recap_views.survey(ctx.session, cycle, ctx.me))


@router.get("/cycles/{cycle_id}/survey", response_model=SurveyRead, tags=["recap"])
def survey_results(cycle_id: Id, ctx: ApiCtx) -> SurveyRead:
    return _survey(recap_views.survey(ctx.session, cycle_for(ctx, cycle_id), ctx.me))


@router.post(
    "/cycles/{cycle_id}/survey", response_model=SurveyAnswered, status_code=201, tags=["recap"]
)
def answer_survey(cycle_id: Id, body: SurveyRespond, ctx: ApiCtx) -> SurveyAnswered:
    """Answer the cycle's survey once. An anonymous answer is stored without your name."""
    recap.respond(ctx.session, cycle_for(ctx, cycle_id), body, ctx.me)
    return SurveyAnswered(cycle_id=cycle_id, anonymous=body.anonymous)
