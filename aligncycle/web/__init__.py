"""The web app: server-rendered pages for the people who run cycles, and the REST API.

``create_app(store)`` builds it; ``aligncycle serve`` runs it with uvicorn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aligncycle import __version__
from aligncycle.web.deps import WebSettings, bounded_numbers, error_body, secret_key, status_of
from migrations import runner
from models.db import RETRY_AFTER, Store, StoreUnavailable, mask_secrets, outage
from models.errors import DomainError
from models.words import counted, field_label

log = logging.getLogger("aligncycle.web")

HERE = Path(__file__).resolve().parent
API_PREFIX = "/api/v1"

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
    ),
]


class SecurityHeaders:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware): security headers, and no
    caching of anything but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict]]:
    errors = exc.errors()
    fields = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        fields.append({"field": ".".join(loc), "message": str(err.get("msg", "invalid"))})
    if not fields:
        return "invalid input", []
    first = fields[0]
    more = f" (and {counted(len(fields) - 1, 'more problem')})" if len(fields) > 1 else ""
    message = first["message"].removeprefix("Value error, ")
    # the message names the field by its label ("due date"); ``fields`` keeps the JSON path
    text = f"{field_label(first['field'])}: {message}" if first["field"] else message
    return text + more, fields


def install_error_handlers(app: FastAPI) -> None:
    from aligncycle.web import pages
    from aligncycle.web.auth import NotSignedIn

    def domain(request: Request, exc: DomainError) -> Response:
        status = status_of(exc)
        if _is_api(request):
            extra = {"blockers": exc.blockers} if getattr(exc, "blockers", None) else {}
            headers = {"www-authenticate": "Bearer"} if status == 401 else None
            return JSONResponse(error_body(exc.code, exc.message, **extra), status, headers)
        return pages.error_page(request, status, exc.message)

    def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        nxt = pages.safe_next(target, "/")
        url = "/login" if nxt == "/" else f"/login?next={pages.quote(nxt, safe='/')}"
        return RedirectResponse(url, status_code=303)

    def invalid(request: Request, exc: RequestValidationError) -> Response:
        message, fields = _validation_message(exc)
        if _is_api(request):
            return JSONResponse(error_body("invalid_input", message, fields=fields), 422)
        return pages.error_page(request, 422, message)

    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}
        message = exc.detail if isinstance(exc.detail, str) else "refused"
        if exc.status_code == 404:
            message = "no such page or resource"
        if _is_api(request):
            return JSONResponse(
                error_body(codes.get(exc.status_code, "http_error"), message),
                exc.status_code,
                getattr(exc, "headers", None),
            )
        return pages.error_page(request, exc.status_code, message)

    def unstorable(request: Request, exc: Exception) -> Response:
        message = "a value cannot be stored (out of range, or a character that is not allowed)"
        if _is_api(request):
            return JSONResponse(error_body("invalid_input", message), 422)
        return pages.error_page(request, 422, message)

    def unavailable(request: Request, exc: StoreUnavailable) -> Response:
        """An outage of the store: 503 and when to try again, on every route (reads and
        sign-in too); the person's input is not at fault."""
        url = str(request.app.state.store.engine.url)
        log.warning(
            "%s %s: the store %s: %s",
            request.method,
            request.url.path,
            exc.kind,
            mask_secrets(" ".join(exc.detail.split()), url),
        )
        headers = {"retry-after": str(RETRY_AFTER)}
        if _is_api(request):
            return JSONResponse(error_body("store_unavailable", exc.message), 503, headers)
        page = pages.error_page(request, 503, exc.message)
        page.headers.update(headers)
        return page

    def database(request: Request, exc: Exception) -> Response:
        """A database error: an outage (503), else a value the store cannot keep (422)."""
        down = outage(exc)
        if down is not None:
            return unavailable(request, down)
        return unstorable(request, exc)

    def integrity(request: Request, exc: IntegrityError) -> Response:
        message = "this conflicts with something already saved (it may exist already)"
        if _is_api(request):
            return JSONResponse(error_body("conflict", message), 409)
        return pages.error_page(request, 409, message)

    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(IntegrityError, integrity)
    for cls in (DataError, OverflowError, StatementError):
        app.add_exception_handler(cls, unstorable)
    # DBAPIError (OperationalError, InterfaceError, ...) before its base StatementError: a
    # locked file, a full disk or a stopped server is an outage, not bad input.
    app.add_exception_handler(DBAPIError, database)
    app.add_exception_handler(PoolTimeout, database)
    app.add_exception_handler(StoreUnavailable, unavailable)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app serves: the background worker that runs the phase flows of its moves on
    the embedded default (``aligncycle.web.flows_worker``)."""
    from starlette.concurrency import run_in_threadpool

    from aligncycle.web import flows_worker

    app.state.flows_worker = flows_worker.start_for(app)
    try:
        yield
    finally:
        worker, app.state.flows_worker = app.state.flows_worker, None
        if worker is not None:
            await run_in_threadpool(worker.stop)


def create_app(store: Store | None = None, settings: WebSettings | None = None) -> FastAPI:
    """The ASGI app. ``store`` defaults to the one ``ALIGNCYCLE_DATABASE_URL`` selects.

    Raises ``migrations.runner.StoreNotCurrent`` if the store is not at the revision this code
    needs (not set up, or behind: ``aligncycle db upgrade``)."""
    from aligncycle.web import api, ops, routes
    from models.services import accounts

    settings = settings or WebSettings()
    accounts.prepare()
    app = FastAPI(
        title="aligncycle",
        version=__version__,
        description=(
            "Run sales–marketing alignment cycles: identify, plan, execute, recap. "
            "Authenticate with a personal access token: `Authorization: Bearer TOKEN` "
            "(create one with `aligncycle token create` or on your Account page). Errors "
            'answer `{"error": {"code": "...", "message": "..."}}`.'
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        # Before any route's own dependencies (sign-in, the unit of work): numbers in the path
        # and query beyond what the store holds are refused in one line.
        dependencies=[Depends(bounded_numbers)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.flows_worker = None  # started by the lifespan
    app.state.store = store or Store(settings.effective_database_url)
    # Once per process, before serving: a store behind this code's migrations is refused in
    # one line (StoreNotCurrent), rather than failing request after request on missing tables.
    runner.require_current(app.state.store.engine)
    app.state.secret_key = secret_key(settings)
    app.state.prefect_api_url = ops.prefect_api_url()
    app.include_router(ops.router)  # /healthz, /metrics: no sign-in, no unit of work
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(routes.router)
    install_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ops.RequestTelemetry)  # outermost: every answer has its request id
    return app
