"""What every route shares: settings, the store, one unit of work per request, error mapping."""

from __future__ import annotations

import os
import secrets
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import Field
from sqlalchemy.orm import Session

from aligncycle.settings import Settings
from models.db import Store
from models.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TransitionRefused,
)
from models.schemas import MAX_ID
from models.services.accounts import AuthenticationFailed, TooManyAttempts
from models.tables import Person


class WebSettings(Settings):
    #: Mark cookies ``Secure``: true, false, or unset = when the request came over https.
    cookie_secure: bool | None = None
    #: Failed sign-ins for one email (known or not) within the window, after which that email is
    #: refused, even with the right password, until the failures age out (kept in the store, so
    #: every worker process sees them).
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    #: Failed sign-ins from one client address (an IPv6 /64) within its window, after which that
    #: address is refused; counted in memory, per worker process.
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_client_window_minutes: int = Field(default=5, ge=1)
    #: Single sign-on (OpenID Connect): the identity provider's issuer URL (its discovery
    #: document is ``<issuer>/.well-known/openid-configuration``), and this app's client there.
    #: All three set: the sign-in page offers "Sign in with your company account"; people are
    #: matched by their (verified) email address.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    #: The button's words, e.g. "Sign in with Okta".
    oidc_label: str = "Sign in with your company account"

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    #: The web process runs the phase flows its moves ask for, and retries failed messages, in
    #: a background thread (``aligncycle.web.flows_worker``); unset: when no Prefect server is
    #: configured (``PREFECT_API_URL``), i.e. on the embedded default.
    web_runs_flows: bool | None = None
    #: How often that thread looks for work besides the moves that wake it.
    web_flows_interval_seconds: int = Field(default=60, ge=5, le=3600)

    #: Set by ``aligncycle serve --demo`` (the demo store, its known password): the sign-in
    #: page lists the demo accounts. Never set for a real store.
    demo: bool = False


def secret_key(settings: Settings) -> str:
    """``ALIGNCYCLE_SECRET_KEY``, else one generated once and kept in the data dir (0600), so
    restarts keep sessions and CSRF tokens valid."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(value + "\n")
    tmp.chmod(0o600)
    try:
        # Publish only if no other process did first (several workers may start at once):
        # the first key wins and everyone reads it.
        os.link(tmp, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return value


def store(request: Request) -> Store:
    return request.app.state.store


@contextmanager
def unit_of_work(request: Request) -> Iterator[Session]:
    with store(request).unit_of_work() as session:
        yield session


@dataclass
class Ctx:
    """A request's unit of work and the signed-in person (None only on public routes)."""

    session: Session
    me: Person
    csrf: str | None = None  # the session's CSRF token (browser sessions only)
    via: str = "session"  # or "token"
    form: Any = None  # the posted form of a page POST (starlette FormData)


#: HTTP status of each domain error.
STATUS = [
    (NotFound, 404),
    (Forbidden, 403),
    (AuthenticationFailed, 401),
    (TooManyAttempts, 429),
    (TransitionRefused, 409),
    (Conflict, 409),
    (InvalidInput, 422),
]


def status_of(exc: DomainError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(code: str, message: str, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


# --- numbers in the address ----------------------------------------------------------------


def _takes_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_takes_int(arg) for arg in typing.get_args(annotation))
    return False


def _number_params(route: Any) -> tuple[tuple[str, str], ...]:
    """(where, name) of the whole-number path and query parameters of a route (worked out on
    its first request, then kept on the route)."""
    found = getattr(route, "aligncycle_numbers", None)
    if found is None:
        params: dict[tuple[str, str], None] = {}
        todo = [route.dependant]
        while todo:  # the route's own parameters and those of its dependencies
            dependant = todo.pop()
            for where, fields in (
                ("path", dependant.path_params),
                ("query", dependant.query_params),
            ):
                for field in fields:
                    if _takes_int(field.field_info.annotation):
                        params[(where, field.alias)] = None
            todo.extend(dependant.dependencies)
        found = tuple(params)
        route.aligncycle_numbers = found
    return found


def bounded_numbers(request: Request) -> None:
    """Refuse a whole number in the path or query beyond what the store holds (ids are 32-bit
    integers there: an id like 2**63 would fail in the database), before a route's own
    dependencies (sign-in, the unit of work) run. Anything not a number is left to FastAPI's
    validation."""
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    for where, name in _number_params(route):
        raw = request.path_params.get(name) if where == "path" else request.query_params.get(name)
        if raw is None:
            continue
        try:
            number = int(raw)
        except ValueError:
            continue
        if abs(number) > MAX_ID:
            what = "an id in the address" if where == "path" else "a number in the address"
            raise InvalidInput(f"{what} is out of range (at most {MAX_ID})")
