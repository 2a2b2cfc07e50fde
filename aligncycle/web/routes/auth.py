"""Signing in and out, and the home page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from aligncycle.web.auth import (
    SESSION_COOKIE,
    PageCtx,
    check_login_csrf,
    clear_cookie,
    get_cookie,
    login_csrf,
    posted_form,
    start_session,
)
from aligncycle.web.deps import unit_of_work
from aligncycle.web.pages import (
    redirect,
    render,
    safe_next,
)
from models.enums import (
    Role,
)
from models.errors import DomainError, Forbidden
from models.services import (
    accounts,
    people,
)
from models.words import value_word

router = APIRouter(include_in_schema=False)

#: The demo organisation's password (``aligncycle serve --demo`` sets it for everyone: the
#: same as ``aligncycle.cli_web.DEMO_PASSWORD``).
DEMO_PASSWORD = "demo-password"


def demo_accounts(request: Request) -> list[dict[str, str]] | None:
    """The people of the demo store to sign in as, when the app serves the demo (else None)."""
    if not getattr(request.app.state.settings, "demo", False):
        return None
    with unit_of_work(request) as session:
        return [
            {"name": p.name, "email": p.email, "role": value_word(p.role), "team": p.team.name}
            for p in people.list_people(session)
            if p.active
        ]


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002
    resp = HTMLResponse("")
    token = login_csrf(request, resp)
    page = render(
        request,
        None,
        "login.html",
        login_csrf=token,
        next=safe_next(next, "/"),
        demo=demo_accounts(request),
        DEMO_PASSWORD=DEMO_PASSWORD,
    )
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
        demo=demo_accounts(request),
        DEMO_PASSWORD=DEMO_PASSWORD,
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
