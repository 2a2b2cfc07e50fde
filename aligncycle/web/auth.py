"""Signing in: session cookies for browsers, personal access tokens for the API, and CSRF.

- The session cookie holds a random id (the server keeps its digest, the person and a CSRF
  token): HttpOnly, SameSite=Lax, Secure over https (``ALIGNCYCLE_COOKIE_SECURE`` forces it).
  Secure cookies carry the ``__Host-`` prefix: the browser then takes them only from this
  host over https, for the whole site, so a sibling subdomain or a plain-http page cannot
  plant or overwrite one (session fixation).
- Every form carries the session's CSRF token (field ``csrf``); scripts send it as the
  ``X-CSRF-Token`` header. The sign-in form, which has no session yet, carries an HMAC of a
  random nonce kept in a short-lived cookie (signed with the app's secret key).
- The API takes ``Authorization: Bearer <token>``; a browser session works too, with the
  ``X-CSRF-Token`` header on anything but GET/HEAD/OPTIONS.
- Password guessing on the sign-in page is throttled twice: per email in the store (see
  ``models.services.accounts.sign_in``; holds across worker processes) and per client address
  in this process's memory (against one address trying many emails). Tokens are not throttled:
  they are 256 random bits, so guessing one is hopeless, and a wrong one costs one indexed
  lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from starlette.datastructures import FormData

from aligncycle.web.deps import Ctx, unit_of_work
from models.base import utcnow
from models.errors import Forbidden
from models.services import accounts
from models.services.accounts import AuthenticationFailed, SignInLimit, TooManyAttempts

SESSION_COOKIE = "aligncycle_session"
LOGIN_COOKIE = "aligncycle_login"
FLASH_COOKIE = "aligncycle_flash"
#: The name prefix of cookies set Secure (RFC 6265bis: Secure, Path=/, no Domain).
HOST_PREFIX = "__Host-"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotSignedIn(Exception):
    """A page needs a signed-in person (the app redirects to the sign-in page)."""


class BadCsrf(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "this form has expired or did not come from aligncycle; reload the page and try again"
        )


def cookie_secure(request: Request) -> bool:
    configured = request.app.state.settings.cookie_secure
    return request.url.scheme == "https" if configured is None else configured


def cookie_name(request: Request, name: str) -> str:
    """A cookie's name as this request sees it: ``__Host-`` prefixed when it is Secure."""
    return HOST_PREFIX + name if cookie_secure(request) else name


def get_cookie(request: Request, name: str) -> str | None:
    return request.cookies.get(cookie_name(request, name))


def same_secret(sent: object, expected: str) -> bool:
    """Whether a token someone sent is ``expected``, compared in constant time. Anything may
    arrive (non-ASCII text, a file field): a mismatch, never an error."""
    if not isinstance(sent, str) or not sent:
        return False
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        cookie_name(request, name),
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        cookie_name(request, name),
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )


def start_session(request: Request, response: Response, raw: str) -> None:
    set_cookie(request, response, SESSION_COOKIE, raw, max_age=accounts.SESSION_DAYS * 24 * 3600)


# --- CSRF of the sign-in form ---------------------------------------------------------------


def _login_token(request: Request, nonce: str) -> str:
    key = request.app.state.secret_key.encode()
    message = b"login:" + nonce.encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def login_csrf(request: Request, response: Response) -> str:
    """The sign-in form's token (sets the nonce cookie when there is none yet)."""
    nonce = get_cookie(request, LOGIN_COOKIE)
    if not nonce or len(nonce) > 100 or not nonce.isascii():
        nonce = secrets.token_urlsafe(24)
        set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600 * 12)
    return _login_token(request, nonce)


def check_login_csrf(request: Request, token: object) -> None:
    nonce = get_cookie(request, LOGIN_COOKIE)
    if not nonce or not same_secret(token, _login_token(request, nonce)):
        raise BadCsrf()


# --- throttling sign-in attempts -----------------------------------------------------------


def client_address(request: Request) -> str:
    """Who is trying to sign in, for the per-client limit: the client's IP address (uvicorn's
    ``proxy_headers`` puts the real one there behind a trusted proxy), an IPv6 address reduced
    to its /64 (one machine usually has a whole /64 to pick addresses from)."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientFailures:
    """Failed sign-ins per client address in a sliding window, in this process's memory (each
    worker counts its own). Keeps only the newest ``max_failures`` times per address and at most
    ``max_clients`` addresses (the least recently failing are forgotten first)."""

    def __init__(self, max_failures: int, window: timedelta, max_clients: int = 50_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str, now: datetime) -> None:
        """Raise ``TooManyAttempts`` while ``client`` has ``max_failures`` failures in the
        window."""
        with self._lock:
            times = self._failures.get(client)
            if times is None or len(times) < self.max_failures or times[0] <= now - self.window:
                return
            retry_at = times[0] + self.window
        wait = accounts.in_minutes((retry_at - now).total_seconds())
        raise TooManyAttempts(
            f"too many failed sign-ins from your network; try again in {wait}", retry_at, now
        )

    def record(self, client: str, now: datetime) -> None:
        """Count a failed sign-in from ``client``."""
        with self._lock:
            times = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[client] = times  # now the most recently failing
            if len(self._failures) > self.max_clients:
                self._forget_stale(now)

    def _forget_stale(self, now: datetime) -> None:
        since = now - self.window
        for client in [c for c, times in self._failures.items() if times[-1] <= since]:
            del self._failures[client]
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


@dataclass
class LoginThrottle:
    """An app's limits on sign-in attempts. ``clock`` is what "now" is (tests move it)."""

    limit: SignInLimit
    clients: ClientFailures
    clock: Callable[[], datetime] = field(default=utcnow)


def login_throttle(app: FastAPI) -> LoginThrottle:
    """The app's throttle, made from its settings on first use."""
    throttle = getattr(app.state, "login_throttle", None)
    if throttle is None:
        settings = app.state.settings
        throttle = LoginThrottle(
            limit=SignInLimit(
                max_failures=settings.login_max_failures,
                window=timedelta(minutes=settings.login_window_minutes),
            ),
            clients=ClientFailures(
                settings.login_max_failures_per_client,
                timedelta(minutes=settings.login_client_window_minutes),
            ),
        )
        app.state.login_throttle = throttle
    return throttle


# --- the signed-in person -------------------------------------------------------------------


async def posted_form(request: Request) -> FormData | None:
    """The form of a POST (parsed once, shared with the route)."""
    if request.method in SAFE_METHODS:
        return None
    ctype = request.headers.get("content-type", "")
    if "form" not in ctype:
        return FormData()
    return await request.form()


def page_ctx(
    request: Request, form: Annotated[FormData | None, Depends(posted_form)]
) -> Iterator[Ctx]:
    """For pages: one unit of work and the signed-in person; POSTs must carry the CSRF token."""
    with unit_of_work(request) as session:
        ws = accounts.session_for(session, get_cookie(request, SESSION_COOKIE))
        if ws is None:
            raise NotSignedIn()
        if request.method not in SAFE_METHODS:
            sent = (form.get("csrf") if form is not None else None) or request.headers.get(
                "x-csrf-token"
            )
            if not same_secret(sent, ws.csrf_token):
                raise BadCsrf()
        yield Ctx(session=session, me=ws.person, csrf=ws.csrf_token, form=form)


def api_ctx(request: Request) -> Iterator[Ctx]:
    """For the API: a bearer token, or a browser session (+ X-CSRF-Token on writes)."""
    with unit_of_work(request) as session:
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            person = (
                accounts.person_for_token(session, token.strip())
                if scheme.lower() == "bearer"
                else None
            )
            if person is None:
                raise AuthenticationFailed("the access token is invalid, expired or revoked")
            yield Ctx(session=session, me=person, via="token")
            return
        ws = accounts.session_for(session, get_cookie(request, SESSION_COOKIE))
        if ws is None:
            raise AuthenticationFailed(
                "sign in, or send a personal access token: Authorization: Bearer TOKEN"
            )
        if request.method not in SAFE_METHODS and not same_secret(
            request.headers.get("x-csrf-token"), ws.csrf_token
        ):
            raise BadCsrf()
        yield Ctx(session=session, me=ws.person, csrf=ws.csrf_token)


PageCtx = Annotated[Ctx, Depends(page_ctx, scope="function")]
ApiCtx = Annotated[Ctx, Depends(api_ctx, scope="function")]
