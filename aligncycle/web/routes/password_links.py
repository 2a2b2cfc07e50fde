"""Choosing a password from an invitation or reset link, and asking for a reset link
("Forgot your password?"). Public pages: the link's signed token is the credential (see
:mod:`models.services.invitations`); the forms carry the sign-in form's CSRF token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from aligncycle.web.auth import (
    check_login_csrf,
    client_address,
    login_csrf,
    login_throttle,
    posted_form,
    start_session,
)
from aligncycle.web.deps import status_of, unit_of_work
from aligncycle.web.links import base_url, deliver_later
from aligncycle.web.pages import redirect, render
from models.base import utcnow
from models.errors import DomainError, Forbidden, InvalidInput
from models.services import accounts, invitations

router = APIRouter(include_in_schema=False)


def _with_csrf(request: Request, name: str, status: int = 200, **context: object) -> Response:
    holder = HTMLResponse("")
    token = login_csrf(request, holder)
    page = render(request, None, name, status=status, login_csrf=token, **context)
    for key, value in holder.headers.items():
        if key.lower() == "set-cookie":
            page.headers.append("set-cookie", value)
    return page


@router.get("/password/forgot")
def forgot_page(request: Request) -> Response:
    return _with_csrf(request, "password_forgot.html")


@router.post("/password/forgot")
async def forgot_post(request: Request) -> Response:
    form = await posted_form(request)
    data = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
    try:
        check_login_csrf(request, data.get("csrf"))
    except Forbidden as exc:
        return _with_csrf(request, "password_forgot.html", 403, error=exc.message)
    throttle = login_throttle(request.app)
    client = client_address(request)
    now = throttle.clock()
    try:
        throttle.clients.check(client, now)
    except accounts.TooManyAttempts as exc:
        page = _with_csrf(request, "password_forgot.html", 429, error=exc.message)
        page.headers["retry-after"] = str(exc.retry_after)
        return page
    throttle.clients.record(client, now)  # each request counts, so nobody floods inboxes

    def ask() -> None:
        with unit_of_work(request) as s:
            invitations.request_reset(
                s,
                data.get("email", "")[:320],
                secret=request.app.state.secret_key,
                base_url=base_url(request),
            )

    await run_in_threadpool(ask)
    page = _with_csrf(request, "password_forgot.html", sent=True)
    deliver_later(request, page)
    return page


def _holder(request: Request, token: str) -> invitations.LinkHolder:
    with unit_of_work(request) as s:
        holder = invitations.check_token(
            s, token, secret=request.app.state.secret_key, now=utcnow()
        )
        s.expunge(holder.person)
        return holder


@router.get("/password/{token}")
def link_page(request: Request, token: str) -> Response:
    try:
        holder = _holder(request, token[:500])
    except InvalidInput as exc:
        return _with_csrf(request, "password_link.html", 410, expired=exc.message)
    return _with_csrf(request, "password_link.html", holder=holder, token=token)


@router.post("/password/{token}")
async def link_post(request: Request, token: str) -> Response:
    form = await posted_form(request)
    data = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
    token = token[:500]
    try:
        check_login_csrf(request, data.get("csrf"))
        holder = _holder(request, token)
    except InvalidInput as exc:
        return _with_csrf(request, "password_link.html", 410, expired=exc.message)
    except Forbidden as exc:
        return _with_csrf(request, "password_link.html", 403, expired=exc.message)
    fields: dict[str, str] = {}
    if data.get("new_password", "") != data.get("repeat", ""):
        fields = {"repeat": "the two passwords differ"}
        return _with_csrf(
            request, "password_link.html", 422, holder=holder, token=token, fields=fields
        )

    def use() -> str:
        with unit_of_work(request) as s:
            person = invitations.use_token(
                s, token, data.get("new_password", ""), secret=request.app.state.secret_key
            )
            raw, _ = accounts.create_session(s, person)
            return raw

    try:
        raw = await run_in_threadpool(use)
    except DomainError as exc:
        status = status_of(exc)
        if exc.message == invitations.EXPIRED:
            return _with_csrf(request, "password_link.html", 410, expired=exc.message)
        fields = {"new_password": exc.message}
        return _with_csrf(
            request, "password_link.html", status, holder=holder, token=token, fields=fields
        )
    resp = redirect(request, "/", f"Welcome, {holder.person.name}: your password is set.")
    start_session(request, resp, raw)
    return resp
