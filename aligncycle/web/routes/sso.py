"""Signing in with the company's identity provider (OpenID Connect, see
:mod:`aligncycle.web.oidc`): the button on the sign-in page starts it, the provider sends the
browser back to the callback, and the person with the provider's verified email is signed in.

What the callback must check against (state, nonce, PKCE verifier, where to go next) travels in
a short-lived cookie signed with the app's secret key, so any worker can finish a sign-in
another started."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from aligncycle.web.auth import (
    check_login_csrf,
    clear_cookie,
    get_cookie,
    posted_form,
    set_cookie,
    start_session,
)
from aligncycle.web.deps import status_of, unit_of_work
from aligncycle.web.links import base_url
from aligncycle.web.oidc import SsoRefused, client_for
from aligncycle.web.pages import redirect, safe_next
from models.errors import DomainError, Forbidden
from models.services import accounts, sso

router = APIRouter(include_in_schema=False)
FLOW_COOKIE = "aligncycle_sso"
FLOW_SECONDS = 600


def _sign(request: Request, body: str) -> str:
    key = request.app.state.secret_key.encode()
    return hmac.new(key, b"sso-flow:" + body.encode(), hashlib.sha256).hexdigest()


def _pack(request: Request, flow: dict[str, str]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(flow).encode()).decode()
    return f"{body}.{_sign(request, body)}"


def _unpack(request: Request, value: str | None) -> dict[str, str] | None:
    if not value or "." not in value or len(value) > 4000:
        return None
    body, sig = value.rsplit(".", 1)
    if not hmac.compare_digest(sig.encode(), _sign(request, body).encode()):
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None


def _callback(request: Request) -> str:
    return base_url(request) + "/login/sso/callback"


def _refused(request: Request, message: str, status: int) -> Response:
    from aligncycle.web.routes.auth import _login_again

    resp = _login_again(request, {}, message, status)
    clear_cookie(request, resp, FLOW_COOKIE)
    return resp


@router.post("/login/sso")
async def sso_start(request: Request) -> Response:
    form = await posted_form(request)
    data = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
    client = client_for(request.app)
    if client is None:
        return _refused(request, "signing in with a company account is not set up here", 404)
    try:
        check_login_csrf(request, data.get("csrf"))
        flow = {
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),
            "next": safe_next(data.get("next"), "/"),
        }
        url = await run_in_threadpool(
            client.authorization_url,
            _callback(request),
            flow["state"],
            flow["nonce"],
            flow["verifier"],
        )
    except (Forbidden, DomainError) as exc:
        return _refused(request, exc.message, status_of(exc) if status_of(exc) != 400 else 503)
    resp = RedirectResponse(url, status_code=303)
    set_cookie(request, resp, FLOW_COOKIE, _pack(request, flow), max_age=FLOW_SECONDS)
    return resp


@router.get("/login/sso/callback")
async def sso_callback(
    request: Request,
    state: str = "",
    code: str = "",
    error: str = "",
) -> Response:
    client = client_for(request.app)
    if client is None:
        return _refused(request, "signing in with a company account is not set up here", 404)
    flow = _unpack(request, get_cookie(request, FLOW_COOKIE))
    if flow is None or not state or not hmac.compare_digest(state, flow.get("state", "")):
        return _refused(request, "this sign-in has expired or did not start here; start again", 400)
    if error or not code:
        return _refused(request, "the company sign-in was cancelled or refused", 401)

    def finish() -> str:
        claims = client.claims(code[:2000], _callback(request), flow["verifier"], flow["nonce"])
        with unit_of_work(request) as s:
            person = sso.person_for_claims(s, claims, client.issuer)
            raw, _ = accounts.create_session(s, person)
            return raw

    try:
        raw = await run_in_threadpool(finish)
    except (SsoRefused, accounts.AuthenticationFailed) as exc:
        return _refused(request, exc.message, 401)
    except DomainError as exc:
        status = status_of(exc)
        return _refused(request, exc.message, 503 if status == 400 else status)
    resp = redirect(request, flow.get("next") or "/")
    clear_cookie(request, resp, FLOW_COOKIE)
    start_session(request, resp, raw)
    return resp
