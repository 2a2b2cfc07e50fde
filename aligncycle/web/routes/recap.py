"""The recap: the page, the printable report, the CSV export, the retrospective, the
manager's sign-off and the survey."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import (
    PageCtx,
)
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import (
    FieldErrors,
    act,
    cycle_common,
    opt,
    page,
    parse_form,
    render,
    to_int,
)
from aligncycle.web.recap_view import csv_response, recap_model
from models.phases.recap import recap_filename
from models.schemas import (
    RetrospectiveRecord,
    SurveyRespond,
)
from models.services import (
    access,
    cycles,
    recap,
    recap_views,
    reports,
)

router = APIRouter(include_in_schema=False)


@page(router, "/cycles/{cycle_id}/recap")
def recap_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    cycle, perms, counts = cycle_common(ctx, cycle_id)
    model = recap_model(s, cycle, ctx.me)
    answered = recap_views.has_answered(s, cycle, ctx.me)
    signoff_required = cycles.spec(cycle).settings.manager_signoff_required
    return render(
        request,
        ctx,
        "recap.html",
        status=status,
        tab="recap",
        cycle=cycle,
        perms=perms,
        counts=counts,
        answered=answered,
        signoff_required=signoff_required,
        stored_report=reports.find_recap_report(s, cycle.id),
        forms=forms or {},
        **model,
    )


@router.get("/cycles/{cycle_id}/report")
def report_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
    model = recap_model(ctx.session, cycle, ctx.me)
    return render(request, ctx, "report.html", cycle=cycle, **model)


@router.get("/cycles/{cycle_id}/report.md")
def stored_report(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    """The report the recap flow wrote and kept in the store, as a Markdown download."""
    row = reports.recap_report(ctx.session, ctx.me, cycle_id)
    name = recap_filename(cycle_id)
    return Response(
        row.markdown,
        media_type="text/markdown; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/cycles/{cycle_id}/recap.csv")
def recap_csv(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
    return csv_response(ctx.session, cycle, recap_model(ctx.session, cycle, ctx.me))


def _lines(text: str | None) -> list[str]:
    return [line.strip(" -•\t") for line in (text or "").splitlines() if line.strip(" -•\t")]


@router.post("/cycles/{cycle_id}/retrospective")
def retro_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload = {
            "improvements": _lines(data.get("improvements")),
            "growth_areas": _lines(data.get("growth_areas")),
            "next_time": _lines(data.get("next_time")),
            "summary": data.get("summary", "").strip() or None,
            "expected_version": to_int(data.get("version")),
        }
        recap.record_retrospective(
            ctx.session, cycle, parse_form(RetrospectiveRecord, payload), ctx.me
        )
        if cycles.spec(cycle).settings.manager_signoff_required:
            return "Retrospective saved. A manager signs it off next."
        return "Retrospective saved. A point person can now close the cycle."

    return act(
        request,
        ctx,
        form_id="retro",
        default_next=f"/cycles/{cycle_id}/recap",
        run=run,
        anchor="retrospective",
    )


@router.post("/cycles/{cycle_id}/signoff")
def signoff_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        recap.sign_off(ctx.session, cycle, ctx.me, expected_version=to_int(data.get("version")))
        return "Recap signed off. A point person can now close the cycle."

    return act(request, ctx, form_id="signoff", default_next=f"/cycles/{cycle_id}/recap", run=run)


@router.post("/cycles/{cycle_id}/survey")
def survey_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"score": data.get("score", "")}
        payload.update(opt(data, "comment"))
        payload["anonymous"] = data.get("anonymous") in ("1", "on", "true", "yes")
        if payload["score"] == "":
            raise FieldErrors("choose a score from 1 to 5", {"score": "choose a score"})
        recap.respond(ctx.session, cycle, parse_form(SurveyRespond, payload), ctx.me)
        return "Thank you, your answer is in" + (" (anonymously)." if payload["anonymous"] else ".")

    return act(
        request,
        ctx,
        form_id="survey",
        default_next=f"/cycles/{cycle_id}/recap",
        run=run,
        anchor="survey",
    )
