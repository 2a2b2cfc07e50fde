"""How pages are rendered: templates and the words they use, forms (state, parsing, the
redirect or the page again with what was typed), and the page registry behind re-rendering.

The routes live in :mod:`aligncycle.web.routes`, one module per resource. A successful form
redirects (303) to the page it came from with a short message. A refused one renders that page
again with the message next to the form and everything the person typed kept (status 4xx):
nothing a user entered is lost, not even on a version conflict.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2.utils import url_quote
from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from starlette.routing import compile_path

from aligncycle.web import conflicts
from aligncycle.web.auth import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    PageCtx,
    clear_cookie,
    get_cookie,
    set_cookie,
)
from aligncycle.web.deps import Ctx, status_of
from aligncycle.web.inbox_words import waiting_words
from aligncycle.web.perms import STATUS_LABELS, CyclePerms
from models.base import utcnow
from models.db import StoreUnavailable
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
from models.errors import Conflict, DomainError, InvalidInput
from models.funnel.currency import numbers_currency
from models.funnel.kpis import KPIS, format_value
from models.schemas import (
    CycleCounts,
    validation_message,
)
from models.services import (
    access,
    accounts,
    actions,
    cycles,
    inbox,
)
from models.services import playbooks as playbook_service
from models.services import views as v
from models.tables import ActionItem, Cycle
from models.words import counted, data_word, sentence_start, waited

#: An id in a page's path: a positive 31-bit integer, as the store's ids are.
Id = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
PAGE_SIZE = 50
#: My work shows the most urgent items first; 25 a page keeps it quick to read (and to load).
MY_WORK_PAGE = 25
#: A cycle's action items, 25 a page like My work: each item is a summary with its latest
#: check-in, history and four boxes, so a page of 50 cost twice the time to build and read.
ACTIONS_PAGE = 25


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


def label(value: object) -> str:
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


def _due_words(item: ActionItem, today: date) -> str | None:
    """The words after the due date of an item that is not overdue (an overdue one wears a
    badge): how far it is for unfinished work, how it was met for done work (done on time or
    late: a done item is not late any more); none for a dropped or carried-over item, and
    "left unfinished" in a closed cycle (nothing is due there any more)."""
    if item.due_date is None:
        return None
    if item.status is ActionStatus.DONE:
        late = item.days_late_done()
        if late is None:
            return None
        return "done on time" if late == 0 else f"done {counted(late, 'day')} late"
    if item.status.finished:
        return None
    if cycles.left_unfinished(item):
        return "left unfinished"
    return _days(item.due_date, today)


def auto_note(note: str) -> str:
    """An automatic check-in's note without its prefix ("automatic check-in: open, on track,
    due in 14 days" → "due in 14 days"; older notes begin "execute pass:"): status and
    confidence are shown apart."""
    if note.startswith(("automatic check-in:", "execute pass:")):
        return note.split(", ", 2)[-1]
    return note


def _fmt_date(d: date | None) -> str:
    return d.strftime("%-d %b %Y") if d else "–"


def _fmt_dt(d: Any) -> str:
    return d.strftime("%-d %b %Y, %H:%M") if d else "–"


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def value_words(value: Any) -> str:
    """A value from the shared data as people read it: a month key ``2026-09`` as "Sep 2026", a
    mapped key like ``paid_search`` as "paid search"; nothing shown as "(none)"."""
    if value is None or value == "":
        return "(none)"
    text = str(value)
    m = _MONTH.match(text)
    if m:
        return date(int(m.group(1)), int(m.group(2)), 1).strftime("%b %Y")
    return data_word(text)


CHOSEN_BY_RULE = (ActionStatus.AWAITING_SIGNOFF, ActionStatus.CARRIED_OVER)


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
        # an item waits for sign-off when someone marks it done, and is carried over when its
        # cycle is followed up: neither is a status to choose
        if value not in CHOSEN_BY_RULE or value.value == current
    )


@lru_cache(maxsize=256)
def _quoted(next_url: str) -> str:
    """``next_url`` as the ``urlencode`` filter quotes it, escaped for an attribute."""
    return str(escape(url_quote(next_url)))


def later_attrs(a: Any, kind: str, next_url: str, part: str | None = None) -> Markup:
    """An action item's box whose form htmx fetches on the box's first opening
    (GET /actions/ID/form/KIND): the same few attributes on every box of a list, written in one
    call rather than a template macro per box (``a.id``: a number; ``kind``: a word of ours;
    ``part``: what else of the item the box shows, e.g. ``history/people``, our words too)."""
    part = part or f"form/{kind}"
    return Markup(
        f'hx-get="/actions/{int(a.id)}/{escape(part)}?next={_quoted(next_url)}" '
        'hx-trigger="toggle once" hx-target="find .later" hx-swap="outerHTML"'
    )


def later_link(a: Any, kind: str, next_url: str, words: str) -> Markup:
    """What a closed box holds without JavaScript: a link to the item's own page, where every
    form of the item is in the page."""
    ident = int(a.id)
    return Markup(
        f'<p class="later small"><a href="/actions/{ident}?next={_quoted(next_url)}'
        f'#{escape(kind)}-{ident}">{escape(words)}</a></p>'
    )


_NO_FORMS = (None, None, None, None)


def item_forms(forms: Mapping[str, Any], ident: int) -> tuple[Any, ...]:
    """The state of an action item's forms that came back with a message (update, assign, link
    a gap, sign off); nothing on an ordinary view of a list."""
    if not forms:
        return _NO_FORMS
    return tuple(forms.get(f"{kind}-{ident}") for kind in ("update", "assign", "link", "signoff"))


def split_checkins(checkins: list[Any]) -> tuple[list[Any], list[Any]]:
    """People's check-ins and the automatic ones (the Execute pass's, no author), apart."""
    people, automatic = [], []
    for c in checkins:
        (people if c.author_id else automatic).append(c)
    return people, automatic


def checkin_view(checkins: Any) -> tuple[Any, int, int, list[Any] | None, list[Any] | None]:
    """What an action item shows of its check-ins: (people's latest, how many by people, how
    many automatic, people's, automatic ones). ``checkins``: the item's whole history (a list,
    newest first), or a summary of it (``views.CheckinSummary``, a list page's: the two lists
    are then None, fetched when their box is opened), or None (none)."""
    if checkins is None:
        return None, 0, 0, [], []
    if isinstance(checkins, v.CheckinSummary):
        return checkins.latest, checkins.by_people, checkins.automatic, None, None
    people, automatic = split_checkins(checkins)
    return (people[0] if people else None), len(people), len(automatic), people, automatic


class PeopleChoices:
    """A page's list of people (who can own a cycle's items) as the ``<option>`` lists its
    forms show: each list written once per page, then only the chosen person marked, instead
    of a template loop over every person for each select (the filter, the new item's owner and
    counterpart) and the "type a name or email" list; a company's teams can be long."""

    def __init__(self, people: list[Any]) -> None:
        self.people = people
        self._by: dict[str, list[tuple[str, Markup, Markup]]] = {}

    def _parts(self, kind: str) -> list[tuple[str, Markup, Markup]]:
        if kind not in self._by:
            # escape() and f-strings: the same text as Markup.format, a fraction of its cost
            # (these run for every person of the cycle's teams on every page that lists them)
            if kind == "id":
                rows = [(str(p.id), escape(p.name)) for p in self.people]
            else:
                rows = [(p.email, f"{escape(p.name)} ({escape(p.team.name)})") for p in self.people]
            self._by[kind] = [
                (value, Markup(f'<option value="{escape(value)}" '), Markup(f">{text}</option>"))
                for value, text in rows
            ]
        return self._by[kind]

    def options(self, kind: str, current: object = None) -> Markup:
        """``kind``: "id" (the filter's value, the name shown) or "email" (a form's value,
        "name (team)" shown); ``current``: the value marked selected."""
        chosen = "" if current is None else str(current)
        return Markup("").join(
            head + (Markup("selected") if value == chosen else "") + tail
            for value, head, tail in self._parts(kind)
        )


def people_datalist(people: list[Any]) -> Markup:
    """One list of people for every "type a name or email" field of a page: by name, by email
    where two share a name."""
    shared = {n for n, k in Counter(p.name for p in people).items() if k > 1}
    options = []
    for p in people:
        name, email = escape(p.name), escape(p.email)
        two = p.name in shared
        options.append(
            f'<option value="{email if two else name}">{name} ({escape(p.team.name)}, '
            f"{escape(ROLE_LABELS[p.role].lower())}{f', {email}' if two else ''})</option>"
        )
    return Markup(f'<datalist id="people">{"".join(options)}</datalist>')


#: a currency not given: the shared numbers' is asked for
_ASK: Any = object()


class MoneyFormat:
    """:func:`format_value` with an amount said in the shared numbers' currency (asked of the
    store once, and only when an amount is shown: targets, the agreement, the recap); a
    currency given (a report's own, or None) is kept."""

    def __init__(self, session: Session | None) -> None:
        self._session = session
        self._currency: Any = _ASK

    @property
    def currency(self) -> str | None:
        if self._currency is _ASK:
            self._currency = None if self._session is None else numbers_currency(self._session)
        return self._currency

    def __call__(self, name: str, value: float | None, currency: Any = _ASK) -> str:
        if currency is _ASK:
            money = value is not None and KPIS[name].unit == "money"
            currency = self.currency if money else None
        return format_value(name, value, currency)


#: the page being rendered's amounts (see :func:`render`)
_MONEY: ContextVar[MoneyFormat | None] = ContextVar("money", default=None)


def _format_value(name: str, value: float | None, currency: Any = _ASK) -> str:
    """The templates' ``format_value``: an amount in the shared numbers' currency."""
    fmt = _MONEY.get()
    if fmt is None:
        return format_value(name, value, None if currency is _ASK else currency)
    return fmt(name, value, currency)


class KpiChoices:
    """The ``<option>`` list of a target's KPI select, each KPI with its value before the cycle:
    built once per page (every KPI's value formatted once), then the current one marked per
    action item, instead of a template loop formatting every KPI on every item of the page."""

    def __init__(
        self, baselines: dict[str, Any], fmt: Callable[[str, float | None], str] = format_value
    ) -> None:
        self._parts = [
            (
                d.name,
                Markup('<option value="{0}"').format(d.name),
                Markup(">{0} — before the cycle: {1}</option>").format(
                    d.title, fmt(d.name, baselines.get(d.name))
                ),
            )
            for d in KPIS.values()
        ]
        self._built: dict[str | None, Markup] = {}

    def __call__(self, current: str | None) -> Markup:
        if current not in self._built:
            self._built[current] = Markup("").join(
                head + (Markup(" selected") if name == current else "") + tail
                for name, head, tail in self._parts
            )
        return self._built[current]


env = templates.env
env.filters.update(
    label=label,
    fdate=_fmt_date,
    fdt=_fmt_dt,
    words=value_words,
    sentence=sentence_start,
    waited=waited,
)
env.globals.update(
    KPIS=KPIS,
    format_value=_format_value,
    PHASES=[p for p in Phase],
    PHASE_LABELS=PHASE_LABELS,
    PHASE_HINTS=PHASE_HINTS,
    STATUS_LABELS=STATUS_LABELS,
    CONFIDENCE_LABELS=CONFIDENCE_LABELS,
    DECISION_LABELS=DECISION_LABELS,
    ROLE_LABELS=ROLE_LABELS,
    ActionStatus=ActionStatus,
    Confidence=Confidence,
    GapDecision=GapDecision,
    GapCategory=GapCategory,
    RootCause=RootCause,
    Severity=Severity,
    Priority=Priority,
    Phase=Phase,
    AnswerKind=AnswerKind,
    DUE_FILTERS=actions.DUE_FILTERS,
    item_overdue=cycles.is_overdue,
    days=_days,
    due_words=_due_words,
    options=_options,
    counted=counted,
    auto_note=auto_note,
    waiting_words=waiting_words,
    later_attrs=later_attrs,
    later_link=later_link,
    split_checkins=split_checkins,
    checkin_view=checkin_view,
    playbook_spec=playbook_service.spec_of,  # parsed once per playbook version
    item_forms=item_forms,
    people_datalist=people_datalist,
)


# --- forms: state, parsing, redirects -------------------------------------------------------


@dataclass
class FormState:
    """What a refused form sends back: the typed values and the messages."""

    values: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    #: A version conflict: the other person's change beside the typed values, and the new
    #: version the form now saves on (:mod:`aligncycle.web.conflicts`).
    conflict: Any = None

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


def form_values(form: Any) -> dict[str, str]:
    """The posted strings (files ignored); empty fields are left out."""
    out: dict[str, str] = {}
    if form is None:
        return out
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in ("csrf", "next"):
            out[key] = value
    return out


def opt(data: dict[str, str], *names: str) -> dict[str, str]:
    return {n: data[n].strip() for n in names if data.get(n, "").strip()}


def to_int(value: str | None) -> int | None:
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
    refused_at: str | None = None,
) -> Response:
    """Run a form's write; redirect on success, or show the page again with the error (or
    ``refused_at``: a page that shows it when the one the form came from no longer would)."""
    data = form_values(ctx.form)
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
        fields = getattr(exc, "fields", None) or (
            {exc.field: exc.message} if getattr(exc, "field", None) else {}
        )
        # a page shows a message as a sentence: capital first (the domain's one-line messages
        # start lower-case, to follow "error: " on the command line)
        fields = {name: sentence_start(text) for name, text in fields.items()}
        state = FormState(values=data, error=sentence_start(exc.message), fields=fields)
        if isinstance(exc, Conflict):
            state.conflict = conflicts.describe(ctx.session, form_id, data)
            if state.conflict is not None:
                who = f" ({state.conflict.by})" if state.conflict.by else ""
                state.error = (
                    f"This was changed by someone else{who} while you were editing. What you "
                    "typed is kept: compare the two, then apply yours on the new version if it "
                    "should stand."
                )
        return rerender(request, ctx, refused_at or to, {form_id: state}, status_of(exc))
    target = to.split("#", 1)[0] + (f"#{anchor}" if anchor else "")
    return redirect(request, target, message)


# --- rendering ------------------------------------------------------------------------------


def render(
    request: Request, ctx: Ctx | None, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    flash = get_cookie(request, FLASH_COOKIE)
    context.setdefault("forms", {})
    if ctx is not None and ctx.me is not None and "waiting" not in context:
        context["waiting"] = waiting_count(ctx)
    context.update(
        request=request,
        me=ctx.me if ctx else None,
        csrf=ctx.csrf if ctx else None,
        flash=unquote(flash) if flash else None,
        today=date.today(),
        now=utcnow(),
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )
    # (the page renders here: its amounts, in its macros too, in the numbers' currency)
    money = _MONEY.set(MoneyFormat(ctx.session) if ctx is not None else None)
    try:
        resp = templates.TemplateResponse(request, name, context, status_code=status)
    finally:
        _MONEY.reset(money)
    if flash:
        clear_cookie(request, resp, FLASH_COOKIE)
    return resp


def waiting_count(ctx: Ctx) -> int | None:
    """The menu's count: everything waiting for the signed-in person (My work), in one
    statement. None when the store cannot say (the page still renders, without it)."""
    try:
        return inbox.waiting_total(inbox.counts(ctx.session, ctx.me))
    except SQLAlchemyError:
        return None


def error_page(request: Request, status: int, message: str, ctx: Ctx | None = None) -> Response:
    """The error page, with the menu for a signed-in person (never "Sign in" offered to them):
    the request's own unit of work has ended, so the person is read again in a unit of its
    own. The store being out of reach (503) leaves the page without the menu."""
    raw = get_cookie(request, SESSION_COOKIE)
    if ctx is None and raw and status != 503:
        try:
            with request.app.state.store.unit_of_work() as session:
                ws = accounts.session_for(session, raw)
                if ws is not None:
                    me = Ctx(session=session, me=ws.person, csrf=ws.csrf_token)
                    return _error_page(request, status, message, me)
        except (SQLAlchemyError, StoreUnavailable):
            pass
    return _error_page(request, status, message, ctx)


def _error_page(request: Request, status: int, message: str, ctx: Ctx | None) -> Response:
    titles = {401: "Please sign in", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}
    return render(
        request,
        ctx,
        "error.html",
        status=status,
        title=titles.get(status, "Something is not right"),
        message=sentence_start(message),
    )


Renderer = Callable[..., Response]
#: Every page's path and renderer, as :func:`page` registered them with the page's GET route
#: (one declaration for both): a refused form renders its page again through this.
PAGES: list[tuple[re.Pattern[str], list[str], Renderer]] = []


def page(router: APIRouter, path: str) -> Callable[[Renderer], Renderer]:
    """Register a page renderer as the GET route ``path`` of ``router``. A renderer takes
    ``(request, ctx, *path ids, query=..., forms=..., status=...)``; the route calls it with
    the query string, and :func:`rerender` with a refused form's state."""
    names = re.findall(r"{(\w+)}", path)

    def deco(render_page: Renderer) -> Renderer:
        def endpoint(request: Request, ctx: PageCtx, **ids: int) -> Response:
            return render_page(request, ctx, *(ids[n] for n in names), query=request.query_params)

        kind = inspect.Parameter
        params = [
            kind("request", kind.POSITIONAL_OR_KEYWORD, annotation=Request),
            kind("ctx", kind.POSITIONAL_OR_KEYWORD, annotation=PageCtx),
            *(kind(n, kind.KEYWORD_ONLY, annotation=Id) for n in names),
        ]
        endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[attr-defined]
        endpoint.__name__ = render_page.__name__.removesuffix("_page") + "_get"
        router.get(path)(endpoint)
        PAGES.append((compile_path(path)[0], names, render_page))
        return render_page

    return deco


def rerender(
    request: Request, ctx: Ctx, to: str, forms: dict[str, FormState], status: int
) -> Response:
    """The page at ``to`` (a path of this app) again, with the refused form's state."""
    parts = urlsplit(to)
    for pattern, names, render_page in PAGES:
        m = pattern.match(parts.path)
        if m and all(m.group(n).isdigit() and len(m.group(n)) < 10 for n in names):
            ids = [int(m.group(n)) for n in names]
            query = dict(parse_qsl(parts.query))
            return render_page(request, ctx, *ids, query=query, forms=forms, status=status)
    first = next(iter(forms.values()))
    return error_page(request, status, first.error or "refused", ctx)


def pager(total: int, page: int, size: int = PAGE_SIZE) -> dict[str, int]:
    last = max(1, -(-total // size))
    return {"page": page, "last": last, "total": total, "size": size}


def page_number(query: Mapping[str, str]) -> int:
    try:
        return max(1, min(10_000, int(query.get("page", "1"))))
    except ValueError:
        return 1


def gate_news(ctx: Ctx, cycle_id: int) -> str:
    """What a save did to the cycle's gate, in a sentence (empty when it is still closed):
    "Everything Identify needs is done: Plan can now start." """
    ctx.session.flush()
    cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
    if cycle.phase is Phase.CLOSED:
        return ""
    ready = cycles.readiness(ctx.session, cycle)
    if not ready.ready or ready.next_phase is None:
        return ""
    return (
        f" Everything {PHASE_LABELS[cycle.phase]} needs is done: "
        f"{PHASE_LABELS[ready.next_phase]} can now start."
    )


def cycle_common(ctx: Ctx, cycle_id: int) -> tuple[Cycle, CyclePerms, CycleCounts]:
    cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
    return cycle, CyclePerms.of(ctx.me, cycle), v.counts(ctx.session, cycle)
