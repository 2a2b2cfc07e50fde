"""Server-rendered pages (Jinja2). Forms post back here; every write goes through a service.

A successful form redirects (303) to the page it came from with a short message. A refused one
renders that page again with the message next to the form and everything the person typed kept
(status 4xx): nothing a user entered is lost, not even on a version conflict.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from aligncycle.web import charts
from aligncycle.web.auth import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    PageCtx,
    check_login_csrf,
    clear_cookie,
    get_cookie,
    login_csrf,
    posted_form,
    set_cookie,
    start_session,
)
from aligncycle.web.deps import Ctx, status_of, unit_of_work
from aligncycle.web.perms import STATUS_LABELS, CyclePerms
from models.base import utcnow
from models.enums import (
    ActionStatus,
    AnswerKind,
    Confidence,
    GapCategory,
    GapDecision,
    Phase,
    Priority,
    Role,
    RootCause,
    Severity,
)
from models.errors import Conflict, DomainError, Forbidden, InvalidInput
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemUpdate,
    CheckInCreate,
    ChecklistAnswer,
    CycleCreate,
    GapCreate,
    GapDecide,
    RetrospectiveRecord,
    SurveyRespond,
    validation_message,
)
from models.services import (
    accounts,
    actions,
    checklist,
    cycles,
    gaps,
    people,
    phases,
    playbooks,
    recap,
)
from models.services import views as v
from models.services.common import check_version
from models.tables import ActionItem, ChecklistItem, Cycle, Gap, Person

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
#: My work shows the most urgent items first; 25 a page keeps it quick to read (and to load).
MY_WORK_PAGE = 25


# --- labels and filters for the templates ---------------------------------------------------

PHASE_LABELS = {p: p.value.title() for p in Phase}
PHASE_HINTS = {
    Phase.IDENTIFY: "Find where sales and marketing drift apart: answer the questions, record "
    "and decide the gaps.",
    Phase.PLAN: "Turn accepted gaps into action items with an owner and a due date.",
    Phase.EXECUTE: "Work the plan: owners check in on their items until they are done.",
    Phase.RECAP: "Look back: record the retrospective, answer the survey, sign off.",
    Phase.CLOSED: "This cycle is finished. Start the next one from its recap.",
}
CONFIDENCE_LABELS = {
    Confidence.ON_TRACK: "On track",
    Confidence.AT_RISK: "At risk",
    Confidence.OFF_TRACK: "Off track",
}
DECISION_LABELS = {
    GapDecision.OPEN: "Not decided",
    GapDecision.ACCEPTED: "Accepted",
    GapDecision.DEFERRED: "Deferred",
    GapDecision.REJECTED: "Rejected",
}
ROLE_LABELS = {
    Role.POINT_PERSON: "Point person",
    Role.LEAD: "Lead",
    Role.MANAGER: "Manager",
    Role.MEMBER: "Member",
}
VERBS = {
    "cycle.started": "started the cycle",
    "cycle.advanced": "moved the cycle on",
    "cycle.point_person_set": "named a point person",
    "checklist.answered": "answered a question",
    "gap.added": "recorded a gap",
    "gap.decided": "decided a gap",
    "action.created": "created an action item",
    "action.assigned": "assigned an action item",
    "action.reassigned": "reassigned an action item",
    "action.updated": "updated an action item",
    "action.carried_over": "carried an action item over",
    "checkin.added": "checked in",
    "retro.recorded": "recorded the retrospective",
    "retro.revised": "revised the retrospective",
    "retro.signed_off": "signed off the recap",
    "survey.answered": "answered the survey",
}


def _label(value: object) -> str:
    text = str(getattr(value, "value", value) or "")
    return text.replace("_", " ").capitalize()


def _days(d: date | None, today: date) -> str:
    if d is None:
        return "no due date"
    delta = (d - today).days
    if delta == 0:
        return "due today"
    if delta == 1:
        return "due tomorrow"
    if delta > 1:
        return f"due in {delta} days"
    if delta == -1:
        return "1 day late"
    return f"{-delta} days late"


def _fmt_date(d: date | None) -> str:
    return d.strftime("%-d %b %Y") if d else "–"


def _fmt_dt(d: Any) -> str:
    return d.strftime("%-d %b %Y, %H:%M") if d else "–"


@lru_cache(maxsize=64)
def _options(kind: str, current: str | None) -> Markup:
    """The ``<option>`` list of a status or confidence select, ``current`` selected: the same
    few strings on every action item of a page, built once rather than looped per item."""
    labels = {"status": STATUS_LABELS, "confidence": CONFIDENCE_LABELS}[kind]
    return Markup("").join(
        Markup('<option value="{0}"{1}>{2}</option>').format(
            value.value, Markup(" selected") if value.value == current else "", label
        )
        for value, label in labels.items()
    )


env = templates.env
env.filters.update(label=_label, fdate=_fmt_date, fdt=_fmt_dt)
env.globals.update(
    PHASES=[p for p in Phase],
    PHASE_LABELS=PHASE_LABELS,
    PHASE_HINTS=PHASE_HINTS,
    STATUS_LABELS=STATUS_LABELS,
    CONFIDENCE_LABELS=CONFIDENCE_LABELS,
    DECISION_LABELS=DECISION_LABELS,
    ROLE_LABELS=ROLE_LABELS,
    VERBS=VERBS,
    ActionStatus=ActionStatus,
    Confidence=Confidence,
    GapDecision=GapDecision,
    GapCategory=GapCategory,
    RootCause=RootCause,
    Severity=Severity,
    Priority=Priority,
    Phase=Phase,
    AnswerKind=AnswerKind,
    DUE_FILTERS=v.DUE_FILTERS,
    days=_days,
    options=_options,
)


# --- forms: state, parsing, redirects -------------------------------------------------------


@dataclass
class FormState:
    """What a refused form sends back: the typed values and the messages."""

    values: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)


class FieldErrors(InvalidInput):
    def __init__(self, message: str, fields: dict[str, str]) -> None:
        super().__init__(message)
        self.fields = fields


def parse_form(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate form fields with a schema; errors name their field (shown next to it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            name = loc[0] if loc else "__all__"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            fields.setdefault(name, msg)
        raise FieldErrors(validation_message(exc), fields) from None


def _clean(form: Any) -> dict[str, str]:
    """The posted strings (files ignored); empty fields are left out."""
    out: dict[str, str] = {}
    if form is None:
        return out
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in ("csrf", "next"):
            out[key] = value
    return out


def _opt(data: dict[str, str], *names: str) -> dict[str, str]:
    return {n: data[n].strip() for n in names if data.get(n, "").strip()}


def _int(value: str | None) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"not a number: {value!r}") from None
    if not 0 <= n < 2**31:
        raise InvalidInput(f"out of range: {value!r}")
    return n


_SAFE_NEXT = re.compile(r"^/(?!/)[A-Za-z0-9/_\-.?=&%#+]*$")


def safe_next(value: str | None, default: str) -> str:
    """A same-site path to go back to (never another host)."""
    if value and _SAFE_NEXT.match(value) and "\\" not in value:
        return value
    return default


def redirect(request: Request, to: str, message: str | None = None) -> RedirectResponse:
    resp = RedirectResponse(to, status_code=303)
    if message:
        set_cookie(request, resp, FLASH_COOKIE, quote(message[:300]), max_age=60)
    return resp


def act(
    request: Request,
    ctx: Ctx,
    *,
    form_id: str,
    default_next: str,
    run: Callable[[dict[str, str]], str],
    anchor: str = "",
) -> Response:
    """Run a form's write; redirect on success, or show the page again with the error."""
    data = _clean(ctx.form)
    to = safe_next(ctx.form.get("next") if ctx.form is not None else None, default_next)
    try:
        message = run(data)
        ctx.session.flush()
    except (DomainError, StaleDataError) as exc:
        if isinstance(exc, StaleDataError):
            exc = Conflict(
                "someone else changed this since you opened the page; check the "
                "current values and save again"
            )
        ctx.session.rollback()
        state = FormState(values=data, error=exc.message, fields=getattr(exc, "fields", {}))
        return rerender(request, ctx, to, {form_id: state}, status_of(exc))
    target = to.split("#", 1)[0] + (f"#{anchor}" if anchor else "")
    return redirect(request, target, message)


# --- rendering ------------------------------------------------------------------------------


def render(
    request: Request, ctx: Ctx | None, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    flash = get_cookie(request, FLASH_COOKIE)
    context.setdefault("forms", {})
    context.update(
        request=request,
        me=ctx.me if ctx else None,
        csrf=ctx.csrf if ctx else None,
        flash=unquote(flash) if flash else None,
        today=date.today(),
        now=utcnow(),
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )
    resp = templates.TemplateResponse(request, name, context, status_code=status)
    if flash:
        clear_cookie(request, resp, FLASH_COOKIE)
    return resp


def error_page(request: Request, status: int, message: str, ctx: Ctx | None = None) -> Response:
    titles = {401: "Please sign in", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}
    return render(
        request,
        ctx,
        "error.html",
        status=status,
        title=titles.get(status, "Something is not right"),
        message=message,
    )


Renderer = Callable[..., Response]
_RERENDER: list[tuple[re.Pattern[str], Renderer]] = []


def _page(pattern: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        _RERENDER.append((re.compile(pattern), fn))
        return fn

    return deco


def rerender(
    request: Request, ctx: Ctx, to: str, forms: dict[str, FormState], status: int
) -> Response:
    parts = urlsplit(to)
    query = dict(parse_qsl(parts.query))
    for pattern, fn in _RERENDER:
        m = pattern.match(parts.path)
        if m:
            args = [int(g) for g in m.groups()]
            return fn(request, ctx, *args, query=query, forms=forms, status=status)
    first = next(iter(forms.values()))
    return error_page(request, status, first.error or "refused", ctx)


def _pages(total: int, page: int, size: int = PAGE_SIZE) -> dict[str, int]:
    last = max(1, -(-total // size))
    return {"page": page, "last": last, "total": total, "size": size}


def _page_no(query: Mapping[str, str]) -> int:
    try:
        return max(1, min(10_000, int(query.get("page", "1"))))
    except ValueError:
        return 1


# --- sign in / out --------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002
    resp = HTMLResponse("")
    token = login_csrf(request, resp)
    page = render(request, None, "login.html", login_csrf=token, next=safe_next(next, "/"))
    for key, value in resp.headers.items():
        if key.lower() == "set-cookie":
            page.headers.append("set-cookie", value)
    return page


@router.post("/login")
async def login_submit(request: Request) -> Response:
    form = await posted_form(request)
    data = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
    to = safe_next(data.get("next"), "/")
    try:
        check_login_csrf(request, data.get("csrf"))
    except Forbidden as exc:
        return _login_again(request, data, exc.message, 403)
    from starlette.concurrency import run_in_threadpool

    from aligncycle.web.auth import client_address, login_throttle

    throttle = login_throttle(request.app)
    client = client_address(request)
    now = throttle.clock()

    def sign_in() -> str | None:
        """The new session's cookie value, or None after a wrong email or password."""
        with unit_of_work(request) as s:
            try:
                person = accounts.sign_in(
                    s,
                    data.get("email", ""),
                    data.get("password", ""),
                    secret=request.app.state.secret_key,
                    limit=throttle.limit,
                    now=now,
                    client=client,
                )
            except accounts.AuthenticationFailed:
                return None  # the unit of work commits the recorded failure
            raw, _ = accounts.create_session(s, person)
            return raw

    try:
        throttle.clients.check(client, now)
        raw = await run_in_threadpool(sign_in)
    except accounts.TooManyAttempts as exc:
        return _login_again(request, data, exc.message, 429, retry_after=exc.retry_after)
    except DomainError as exc:
        return _login_again(request, data, exc.message, 401)
    if raw is None:
        throttle.clients.record(client, now)
        return _login_again(request, data, accounts.WRONG_CREDENTIALS, 401)
    resp = redirect(request, to)
    start_session(request, resp, raw)
    return resp


def _login_again(
    request: Request,
    data: dict[str, str],
    message: str,
    status: int,
    retry_after: int | None = None,
) -> Response:
    """The sign-in form again, with what was typed (not the password) and why it was refused;
    ``retry_after`` (seconds) becomes the ``Retry-After`` header of a 429."""
    resp = HTMLResponse("")
    token = login_csrf(request, resp)
    page = render(
        request,
        None,
        "login.html",
        status=status,
        login_csrf=token,
        next=safe_next(data.get("next"), "/"),
        error=message,
        email=data.get("email", ""),
    )
    for key, value in resp.headers.items():
        if key.lower() == "set-cookie":
            page.headers.append("set-cookie", value)
    if retry_after is not None:
        page.headers["retry-after"] = str(retry_after)
    return page


@router.post("/logout")
def logout(request: Request, ctx: PageCtx) -> Response:
    accounts.end_session(ctx.session, get_cookie(request, SESSION_COOKIE))
    resp = redirect(request, "/login", "You are signed out.")
    clear_cookie(request, resp, SESSION_COOKIE)
    return resp


@router.get("/")
def home(request: Request, ctx: PageCtx) -> Response:
    return RedirectResponse("/cycles" if ctx.me.role is Role.MANAGER else "/my", status_code=303)


# --- the board ------------------------------------------------------------------------------


@_page(r"^/cycles/?$")
def board_page(
    request: Request, ctx: Ctx, *, query: Mapping[str, str], forms=None, status: int = 200
) -> Response:
    phase = query.get("phase") or None
    phase_enum = Phase(phase) if phase in {p.value for p in Phase} else None
    page = _page_no(query)
    rows, total = v.board(
        ctx.session, ctx.me, phase=phase_enum, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        ctx,
        "board.html",
        status=status,
        rows=rows,
        phase=phase_enum,
        pager=_pages(total, page),
        can_start=ctx.me.role is Role.POINT_PERSON,
        forms=forms or {},
    )


@router.get("/cycles")
def board_get(request: Request, ctx: PageCtx) -> Response:
    return board_page(request, ctx, query=request.query_params)


@_page(r"^/cycles/new$")
def new_cycle_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    if ctx.me.role is not Role.POINT_PERSON:
        raise Forbidden(f"only point persons start cycles (you are a {_label(ctx.me.role)})")
    s = ctx.session
    books = playbooks.list_playbooks(s)
    newest: dict[str, Any] = {}
    for b in books:
        newest[b.name] = b
    others = [p for p in people.list_people(s) if p.role is Role.POINT_PERSON and p.id != ctx.me.id]
    previous, _ = v.board(s, ctx.me, limit=200)
    previous = [c for c in previous if c.phase in (Phase.RECAP, Phase.CLOSED)]
    return render(
        request,
        ctx,
        "cycle_new.html",
        status=status,
        playbooks=sorted(newest.values(), key=lambda b: b.title),
        point_persons=others,
        previous=previous,
        forms=forms or {},
    )


@router.get("/cycles/new")
def new_cycle_get(request: Request, ctx: PageCtx) -> Response:
    return new_cycle_page(request, ctx)


@router.post("/cycles/new")
def new_cycle_post(request: Request, ctx: PageCtx) -> Response:
    created: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        payload: dict[str, Any] = _opt(data, "playbook", "title", "period_start", "period_end")
        payload.setdefault("playbook", "")
        payload.setdefault("title", "")
        if data.get("point_person"):
            payload["point_persons"] = [data["point_person"]]
        if data.get("previous_cycle_id"):
            payload["previous_cycle_id"] = _int(data["previous_cycle_id"])
        cycle = cycles.start_cycle(ctx.session, parse_form(CycleCreate, payload), ctx.me)
        ctx.session.flush()
        created["id"] = cycle.id
        return f"Cycle “{cycle.title}” started. First step: answer the Identify questions."

    resp = act(request, ctx, form_id="new-cycle", default_next="/cycles/new", run=run)
    if "id" in created and resp.status_code == 303:
        resp.headers["location"] = f"/cycles/{created['id']}"
    return resp


# --- one cycle: overview and checklist ------------------------------------------------------


def _cycle_common(ctx: Ctx, cycle_id: int) -> tuple[Cycle, CyclePerms, dict[str, int]]:
    cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
    return cycle, CyclePerms.of(ctx.me, cycle), v.counts(ctx.session, cycle)


@_page(r"^/cycles/(\d+)$")
def cycle_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    cycle, perms, counts = _cycle_common(ctx, cycle_id)
    items = v.checklist(s, cycle)
    by_phase: dict[Phase, list[ChecklistItem]] = {}
    for item in items:
        by_phase.setdefault(item.phase, []).append(item)
    ready = cycles.readiness(s, cycle)
    errored = {k.removeprefix("answer-") for k in (forms or {}) if k.startswith("answer-")}
    open_phases = {i.phase for i in items if str(i.id) in errored}
    team_people = v.cycle_people(s, cycle) if perms.can_name_point_person else []
    return render(
        request,
        ctx,
        "cycle.html",
        status=status,
        tab="overview",
        cycle=cycle,
        perms=perms,
        counts=counts,
        by_phase=by_phase,
        open_phases=open_phases,
        readiness=ready,
        team_people=team_people,
        forms=forms or {},
    )


@router.get("/cycles/{cycle_id}")
def cycle_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    return cycle_page(request, ctx, cycle_id)


@router.post("/cycles/{cycle_id}/advance")
def advance_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        # What the phase derives, the gate, and what the next phase starts with (the plan's
        # proposals, the draft retrospective), in this request's unit of work.
        moved = phases.advance(
            ctx.session,
            cycle,
            ctx.me,
            today=date.today(),
            override_reason=data.get("override_reason") or None,
            expected_version=_int(data.get("version")),
        )
        started = moved.started.summary
        return (
            f"The cycle is now in {PHASE_LABELS[cycle.phase]}. "
            + (f"{started[0].upper()}{started[1:]}. " if started else "")
            + PHASE_HINTS[cycle.phase]
        )

    return act(request, ctx, form_id="advance", default_next=f"/cycles/{cycle_id}", run=run)


@router.post("/cycles/{cycle_id}/point-person")
def point_person_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        if not data.get("team") or not data.get("email"):
            raise FieldErrors("choose a person", {"email": "choose a person"})
        ct = cycles.assign_point_person(ctx.session, cycle, data["team"], data["email"], ctx.me)
        return f"{ct.point_person.name} is now the point person of {ct.team.name}."

    team = ctx.form.get("team") if ctx.form is not None else ""
    return act(request, ctx, form_id=f"pp-{team}", default_next=f"/cycles/{cycle_id}", run=run)


@router.post("/checklist/{item_id}/answer")
def answer_post(request: Request, item_id: int, ctx: PageCtx) -> Response:
    holder: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        item = v.visible_object(ctx.session, ctx.me, ChecklistItem, item_id, "checklist item")
        holder["cycle"] = item.cycle_id
        payload: dict[str, Any] = {"answer": data.get("answer", "")}
        payload.update(_opt(data, "note", "evidence"))
        payload["expected_version"] = _int(data.get("version"))
        checklist.answer_item(ctx.session, item, parse_form(ChecklistAnswer, payload), ctx.me)
        return "Answer saved."

    default = "/my"
    return act(
        request,
        ctx,
        form_id=f"answer-{item_id}",
        default_next=default,
        run=run,
        anchor=f"item-{item_id}",
    )


# --- gaps -----------------------------------------------------------------------------------


@_page(r"^/cycles/(\d+)/gaps$")
def gaps_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = _cycle_common(ctx, cycle_id)
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


@router.get("/cycles/{cycle_id}/gaps")
def gaps_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    return gaps_page(request, ctx, cycle_id)


@router.post("/cycles/{cycle_id}/gaps")
def gap_add_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"title": data.get("title", "")}
        payload.update(_opt(data, "description", "category", "root_cause", "severity", "evidence"))
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
        gap = v.visible_object(ctx.session, ctx.me, Gap, gap_id, "gap")
        holder["cycle"] = gap.cycle_id
        payload: dict[str, Any] = {"decision": data.get("decision", "")}
        payload.update(_opt(data, "reason"))
        payload["expected_version"] = _int(data.get("version"))
        gaps.decide_gap(ctx.session, gap, parse_form(GapDecide, payload), ctx.me)
        return f"Gap {DECISION_LABELS[gap.decision].lower()}."

    return act(
        request,
        ctx,
        form_id=f"decide-{gap_id}",
        default_next="/cycles",
        run=run,
        anchor=f"gap-{gap_id}",
    )


# --- action items and check-ins -------------------------------------------------------------


def _filters(query: Mapping[str, str]) -> v.ActionFilters:
    f = v.ActionFilters()
    f.team = query.get("team") or None
    owner = query.get("owner") or ""
    f.owner = int(owner) if owner.isdigit() and len(owner) < 10 else None
    status = query.get("status") or ""
    f.status = ActionStatus(status) if status in {s.value for s in ActionStatus} else None
    due = query.get("due") or ""
    f.due = due if due in v.DUE_FILTERS else None
    return f


@_page(r"^/cycles/(\d+)/actions$")
def actions_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    query = query or {}
    cycle, perms, counts = _cycle_common(ctx, cycle_id)
    filters = _filters(query)
    page = _page_no(query)
    rows, total = v.actions(s, cycle, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    checkins = v.checkins_by_action(s, [a.id for a in rows])
    team_people = v.cycle_people(s, cycle)
    kept = {k: query[k] for k in ("team", "owner", "status", "due") if query.get(k)}
    accepted = v.gaps(s, cycle, GapDecision.ACCEPTED) if perms.can_add_action else []
    return render(
        request,
        ctx,
        "cycle_actions.html",
        status=status,
        tab="actions",
        cycle=cycle,
        perms=perms,
        counts=counts,
        rows=rows,
        checkins=checkins,
        filters=filters,
        pager=_pages(total, page),
        team_people=team_people,
        accepted_gaps=accepted,
        recent=v.recent_checkins(s, cycle, limit=10),
        base_url=f"/cycles/{cycle.id}/actions" + (f"?{urlencode(kept)}" if kept else ""),
        forms=forms or {},
    )


@router.get("/cycles/{cycle_id}/actions")
def actions_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    return actions_page(request, ctx, cycle_id, query=request.query_params)


@router.post("/cycles/{cycle_id}/actions")
def action_add_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"title": data.get("title", "")}
        payload.update(
            _opt(
                data,
                "description",
                "owner",
                "counterpart",
                "priority",
                "due_date",
                "follow_up_date",
                "success_measure",
            )
        )
        if data.get("gap_id"):
            payload["gap_id"] = _int(data["gap_id"])
        item, _ = actions.add_action(
            ctx.session, cycle, parse_form(ActionItemCreate, payload), ctx.me
        )
        who = f" for {item.owner.name}" if item.owner else ""
        return f"Action item “{item.title}” created{who}."

    return act(
        request, ctx, form_id="new-action", default_next=f"/cycles/{cycle_id}/actions", run=run
    )


@router.post("/actions/{action_id}/assign")
def action_assign_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        item = v.visible_object(ctx.session, ctx.me, ActionItem, action_id, "action item")
        payload: dict[str, Any] = {"owner": data.get("owner", "")}
        payload.update(_opt(data, "counterpart", "due_date"))
        payload["expected_version"] = _int(data.get("version"))
        actions.assign_action(ctx.session, item, parse_form(ActionItemAssign, payload), ctx.me)
        ctx.session.refresh(item)
        return f"“{item.title}” is now {item.owner.name}'s."

    return act(
        request,
        ctx,
        form_id=f"assign-{action_id}",
        default_next="/my",
        run=run,
        anchor=f"action-{action_id}",
    )


@router.post("/actions/{action_id}/update")
def action_update_post(request: Request, action_id: int, ctx: PageCtx) -> Response:
    """The owner's form (My work, the action list): status, confidence, progress and a note.
    In Plan and Execute it is a check-in (dated, kept); in Recap a plain update."""

    def run(data: dict[str, str]) -> str:
        s = ctx.session
        item = v.visible_object(s, ctx.me, ActionItem, action_id, "action item")
        cycle = cycles.get_cycle(s, item.cycle_id)
        check_version(item, _int(data.get("version")), f"action item {item.id}")
        fields = _opt(data, "status", "confidence")
        if "due_date" in data and (data["due_date"] or "") != (
            item.due_date.isoformat() if item.due_date else ""
        ):
            fields["due_date"] = data["due_date"] or None  # type: ignore[assignment]
        if cycle.phase in (Phase.PLAN, Phase.EXECUTE):
            if "due_date" in fields:
                upd = parse_form(ActionItemUpdate, {"due_date": fields.pop("due_date")})
                actions.update_action(s, item, upd, ctx.me)
            payload: dict[str, Any] = dict(fields)
            payload.update(_opt(data, "note"))
            if data.get("progress", "").strip():
                payload["progress"] = data["progress"].strip()
            actions.add_checkin(s, item, parse_form(CheckInCreate, payload), ctx.me)
        else:
            if data.get("note", "").strip() or data.get("progress", "").strip():
                raise FieldErrors(
                    "check-ins (notes, progress) are written in plan and execute",
                    {"note": f"the cycle is in {cycle.phase}: no more check-ins"},
                )
            actions.update_action(s, item, parse_form(ActionItemUpdate, fields), ctx.me)
        return (
            f"“{item.title}” saved: {STATUS_LABELS[item.status]}, "
            + (CONFIDENCE_LABELS[item.confidence].lower())
            + "."
        )

    return act(
        request,
        ctx,
        form_id=f"update-{action_id}",
        default_next="/my",
        run=run,
        anchor=f"action-{action_id}",
    )


# --- timeline -------------------------------------------------------------------------------


@_page(r"^/cycles/(\d+)/timeline$")
def timeline_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    cycle, perms, counts = _cycle_common(ctx, cycle_id)
    page = _page_no(query or {})
    events, total = v.timeline(ctx.session, cycle, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(
        request,
        ctx,
        "cycle_timeline.html",
        status=status,
        tab="timeline",
        cycle=cycle,
        perms=perms,
        counts=counts,
        events=events,
        pager=_pages(total, page),
        forms=forms or {},
    )


@router.get("/cycles/{cycle_id}/timeline")
def timeline_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    return timeline_page(request, ctx, cycle_id, query=request.query_params)


# --- recap ----------------------------------------------------------------------------------


def recap_model(s: Session, cycle: Cycle, me: Person) -> dict[str, Any]:
    """Everything the recap shows (page, printable report, CSV), charts included."""
    facts = recap.cycle_facts(s, cycle)
    retro = v.retrospective(s, cycle)
    survey = v.survey(s, cycle, me)
    trend = v.trends(s, cycle, me)
    kpis = v.kpis(s, cycle)
    return {
        "facts": facts,
        "retro": retro,
        "survey": survey,
        "trend": trend,
        "kpis": kpis,
        "charts": recap_charts(facts, survey, trend, kpis),
    }


def recap_charts(facts: dict, survey: v.SurveyView, trend: list, kpis: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total = facts["actions_total"]
    if total:
        done = facts["actions_done"]
        pct = round(100 * done / max(1, total - facts["actions_dropped"]))
        out["completion"] = charts.donut(
            [
                charts.Bar("Done", done, "green"),
                charts.Bar("Not finished", facts["actions_unfinished"], "amber"),
                charts.Bar("Dropped", facts["actions_dropped"], "grey"),
            ],
            title="Action completion",
            center=f"{pct}%",
            caption="done",
        )
        out["late"] = facts["actions_late"]
    decisions = facts.get("gaps_by_decision") or {}
    if decisions:
        colors = {"accepted": "green", "deferred": "amber", "rejected": "grey", "open": "red"}
        out["gaps"] = charts.hbars(
            [
                charts.Bar(DECISION_LABELS[GapDecision(k)], n, colors.get(k, "blue"))
                for k, n in sorted(decisions.items())
            ],
            title="Gaps by decision",
        )
    causes = facts.get("gaps_by_root_cause") or {}
    if causes:
        out["causes"] = charts.hbars(
            [charts.Bar(_label(k), n, "violet") for k, n in sorted(causes.items())],
            title="Gaps by root cause",
        )
    if survey.shown:
        shades = {1: "red", 2: "amber", 3: "grey", 4: "teal", 5: "green"}
        out["survey"] = charts.columns(
            [charts.Bar(str(k), survey.distribution.get(k, 0), shades[k]) for k in range(1, 6)],
            title="How people feel about the process (1 = poor, 5 = great)",
        )
        teams = [t for t in survey.by_team if t["mean"] is not None]
        if teams:
            out["survey_teams"] = charts.hbars(
                [
                    charts.Bar(t["name"], t["mean"], "teal", f"({t['responses']} answers)")
                    for t in teams
                ],
                title="Average score by team",
                max_value=5,
            )
    if len(trend) >= 2:
        out["trend"] = charts.lines(
            [t.title for t in trend],
            [charts.Series("Action completion %", [t.completion for t in trend], "blue")],
            title="Action completion across cycles",
            max_value=100,
            unit="%",
        )
        if any(t.survey_mean is not None for t in trend):
            out["trend_survey"] = charts.lines(
                [t.title for t in trend],
                [charts.Series("Survey average (1–5)", [t.survey_mean for t in trend], "teal")],
                title="Survey average across cycles",
                max_value=5,
            )
    if kpis:
        out["kpis"] = charts.before_after(
            [(k.label, k.before, k.after, k.unit, k.higher_is_better) for k in kpis],
            title="KPIs before and after the cycle",
        )
    return out


@_page(r"^/cycles/(\d+)/recap$")
def recap_page(
    request: Request, ctx: Ctx, cycle_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    cycle, perms, counts = _cycle_common(ctx, cycle_id)
    model = recap_model(s, cycle, ctx.me)
    answered = v.has_answered(s, cycle, ctx.me)
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
        forms=forms or {},
        **model,
    )


@router.get("/cycles/{cycle_id}/recap")
def recap_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    return recap_page(request, ctx, cycle_id)


@router.get("/cycles/{cycle_id}/report")
def report_get(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
    model = recap_model(ctx.session, cycle, ctx.me)
    return render(request, ctx, "report.html", cycle=cycle, **model)


@router.get("/cycles/{cycle_id}/recap.csv")
def recap_csv(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
    return csv_response(cycle, recap_model(ctx.session, cycle, ctx.me))


def csv_rows(cycle: Cycle, model: dict[str, Any]) -> list[list[Any]]:
    facts, retro, survey = model["facts"], model["retro"], model["survey"]
    rows: list[list[Any]] = [["section", "item", "value"]]
    rows += [
        ["cycle", "title", cycle.title],
        ["cycle", "phase", cycle.phase.value],
        ["cycle", "period", f"{cycle.period_start.isoformat()}..{cycle.period_end.isoformat()}"],
    ]
    for key in (
        "actions_total",
        "actions_done",
        "actions_dropped",
        "actions_unfinished",
        "actions_late",
        "gaps_total",
    ):
        rows.append(["actions" if key.startswith("actions") else "gaps", key, facts[key]])
    for k, n in sorted((facts.get("gaps_by_decision") or {}).items()):
        rows.append(["gaps", f"decision:{k}", n])
    for k, n in sorted((facts.get("gaps_by_root_cause") or {}).items()):
        rows.append(["gaps", f"root_cause:{k}", n])
    if retro is not None:
        rows += [["improvement", str(i + 1), t] for i, t in enumerate(retro.improvements)]
        rows += [["growth_area", str(i + 1), t] for i, t in enumerate(retro.growth_areas)]
        rows += [["next_time", str(i + 1), t] for i, t in enumerate(retro.next_time)]
        if retro.summary:
            rows.append(["retrospective", "summary", retro.summary])
        rows.append(
            [
                "retrospective",
                "signed_off",
                retro.signed_off_at.isoformat() if retro.signed_off_at else "",
            ]
        )
    rows.append(["survey", "responses", survey.answered])
    if survey.shown:
        rows.append(["survey", "mean", survey.mean])
        rows += [["survey", f"score:{k}", n] for k, n in sorted(survey.distribution.items())]
        rows += [
            ["survey", f"team:{t['team']}", t["mean"] if t["mean"] is not None else ""]
            for t in survey.by_team
        ]
        rows += [["survey_comment", str(i + 1), c] for i, c in enumerate(survey.comments)]
    for t in model["trend"]:
        rows.append(
            [
                "trend",
                f"cycle:{t.cycle_id}:completion_pct",
                "" if t.completion is None else t.completion,
            ]
        )
        rows.append(
            [
                "trend",
                f"cycle:{t.cycle_id}:survey_mean",
                "" if t.survey_mean is None else t.survey_mean,
            ]
        )
    for k in model["kpis"]:
        rows.append(["kpi", f"{k.kpi}:before", "" if k.before is None else k.before])
        rows.append(["kpi", f"{k.kpi}:after", "" if k.after is None else k.after])
    return rows


def _csv_safe(value: Any) -> Any:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(cycle: Cycle, model: dict[str, Any]) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in csv_rows(cycle, model):
        writer.writerow([_csv_safe(c) for c in row])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="recap-cycle-{cycle.id}.csv"'},
    )


def _lines(text: str | None) -> list[str]:
    return [line.strip(" -•\t") for line in (text or "").splitlines() if line.strip(" -•\t")]


@router.post("/cycles/{cycle_id}/retrospective")
def retro_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload = {
            "improvements": _lines(data.get("improvements")),
            "growth_areas": _lines(data.get("growth_areas")),
            "next_time": _lines(data.get("next_time")),
            "summary": data.get("summary", "").strip() or None,
            "expected_version": _int(data.get("version")),
        }
        recap.record_retrospective(
            ctx.session, cycle, parse_form(RetrospectiveRecord, payload), ctx.me
        )
        return "Retrospective saved. A manager signs it off next."

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
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        recap.sign_off(ctx.session, cycle, ctx.me, expected_version=_int(data.get("version")))
        return "Recap signed off. A point person can now close the cycle."

    return act(request, ctx, form_id="signoff", default_next=f"/cycles/{cycle_id}/recap", run=run)


@router.post("/cycles/{cycle_id}/survey")
def survey_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = v.visible_cycle(ctx.session, ctx.me, cycle_id)
        payload: dict[str, Any] = {"score": data.get("score", "")}
        payload.update(_opt(data, "comment"))
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


# --- My work --------------------------------------------------------------------------------


@_page(r"^/my$")
def my_page(request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200) -> Response:
    s = ctx.session
    page = _page_no(query or {})
    questions = v.my_checklist(s, ctx.me)
    items, total, overdue = v.my_actions(
        s, ctx.me, limit=MY_WORK_PAGE, offset=(page - 1) * MY_WORK_PAGE
    )
    cycle_ids = {c.id for _, c in questions} | {a.cycle_id for a in items}
    by_id = v.cycles_by_id(s, cycle_ids)
    perms = {cid: CyclePerms.of(ctx.me, c) for cid, c in by_id.items()}
    latest = v.checkins_by_action(s, [a.id for a in items])
    return render(
        request,
        ctx,
        "my_work.html",
        status=status,
        questions=questions,
        items=items,
        overdue=overdue,
        cycles=by_id,
        perms=perms,
        latest=latest,
        pager=_pages(total, page, MY_WORK_PAGE),
        forms=forms or {},
    )


@router.get("/my")
def my_get(request: Request, ctx: PageCtx) -> Response:
    return my_page(request, ctx, query=request.query_params)


# --- account: password and API tokens -------------------------------------------------------


@_page(r"^/account$")
def account_page(
    request: Request,
    ctx: Ctx,
    *,
    query=None,
    forms=None,
    status: int = 200,
    new_token: str | None = None,
) -> Response:
    return render(
        request,
        ctx,
        "account.html",
        status=status,
        tokens=accounts.list_tokens(ctx.session, ctx.me),
        new_token=new_token,
        forms=forms or {},
    )


@router.get("/account")
def account_get(request: Request, ctx: PageCtx) -> Response:
    return account_page(request, ctx)


@router.post("/account/password")
def password_post(request: Request, ctx: PageCtx) -> Response:
    from aligncycle.web.auth import client_address, login_throttle

    new_raw: dict[str, str] = {}
    throttle = login_throttle(request.app)  # a wrong current password counts like a sign-in's
    guess = {
        "secret": request.app.state.secret_key,
        "now": throttle.clock(),
        "client": client_address(request),
    }
    refused: list[DomainError] = []

    def run(data: dict[str, str]) -> str:
        if data.get("new_password", "") != data.get("repeat", ""):
            raise FieldErrors("the two new passwords differ", {"repeat": "does not match"})
        try:
            accounts.change_password(
                ctx.session,
                ctx.me,
                data.get("current", ""),
                data.get("new_password", ""),
                limit=throttle.limit,
                **guess,
            )
        except (accounts.AuthenticationFailed, accounts.TooManyAttempts) as exc:
            refused.append(exc)
            if isinstance(exc, accounts.TooManyAttempts):
                raise
            raise FieldErrors(
                "your current password is not right", {"current": "not right"}
            ) from None
        except InvalidInput as exc:
            raise FieldErrors(exc.message, {"new_password": exc.message}) from None
        raw, _ = accounts.create_session(ctx.session, ctx.me)
        new_raw["session"] = raw
        return "Password changed. Your other browsers are signed out."

    resp = act(request, ctx, form_id="password", default_next="/account", run=run)
    if "session" in new_raw and resp.status_code == 303:
        start_session(request, resp, new_raw["session"])
    for exc in refused:  # act rolled the form back; the wrong guess still counts
        if isinstance(exc, accounts.TooManyAttempts):
            resp.headers["retry-after"] = str(exc.retry_after)
        else:
            accounts.record_wrong_current_password(ctx.session, ctx.me, **guess)
    # never echo passwords back into the form
    return resp


@router.post("/account/tokens")
def token_post(request: Request, ctx: PageCtx) -> Response:
    data = _clean(ctx.form)
    try:
        days = _int(data.get("days"))
        raw, _ = accounts.create_token(ctx.session, ctx.me, data.get("name", ""), days)
    except DomainError as exc:
        ctx.session.rollback()
        fields = {"name": exc.message} if "name" in exc.message else {"days": exc.message}
        state = FormState(values=data, error=exc.message, fields=fields)
        return account_page(request, ctx, forms={"token": state}, status=status_of(exc))
    return account_page(request, ctx, new_token=raw, status=201)


@router.post("/account/tokens/{token_id}/revoke")
def token_revoke_post(request: Request, token_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        row = accounts.revoke_token(ctx.session, ctx.me, token_id)
        return f"Token “{row.name}” revoked: it no longer works."

    return act(request, ctx, form_id=f"revoke-{token_id}", default_next="/account", run=run)
