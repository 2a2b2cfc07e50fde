"""What an operator needs from the web tier: a request id on every request and every log line,
one log line per request, Prometheus metrics (``/metrics``) and a health check (``/healthz``).

Metrics are labelled by the route's template (``/cycles/{cycle_id}``), never by the raw path,
so ids do not multiply the series; a path no route matches is ``unmatched``. With several
worker processes (``aligncycle serve`` sets ``PROMETHEUS_MULTIPROC_DIR``) each worker writes
its numbers to that folder and ``/metrics`` adds them up, whichever worker answers.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aligncycle import __version__
from aligncycle.logs import REQUEST_ID
from models.db import mask_secrets

log = logging.getLogger("aligncycle.web.requests")
health_log = logging.getLogger("aligncycle.web.health")

REQUEST_ID_HEADER = "x-request-id"
#: An incoming X-Request-ID is kept when it looks like an id (a proxy's, a load balancer's);
#: anything else is replaced, so a log line never carries what a client made up.
_GOOD_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Probes, logged at debug so a scrape every few seconds does not fill the log.
QUIET_PATHS = frozenset({"/healthz", "/metrics"})

REQUESTS = Counter(
    "aligncycle_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "aligncycle_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _templates(routes: Any, prefix: str = "") -> dict[int, str]:
    """id(route) → its full path template, included routers' prefixes too (FastAPI keeps an
    included router's routes apart, with their own path: ``/cycles/{cycle_id}`` of the API is
    ``/api/v1/cycles/{cycle_id}``)."""
    out: dict[int, str] = {}
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            more = prefix + (getattr(getattr(route, "include_context", None), "prefix", "") or "")
            out.update(_templates(inner.routes, more))
        elif isinstance(getattr(route, "path", None), str):
            out[id(route)] = prefix + route.path
    return out


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/cycles/{cycle_id}``), or
    ``unmatched``."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    app = scope.get("app")
    state = getattr(app, "state", None)
    found = getattr(state, "route_templates", None) if state is not None else None
    if found is None and app is not None and hasattr(app, "routes"):
        found = _templates(app.routes)
        if state is not None:
            state.route_templates = found
    path = (found or {}).get(id(route)) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestTelemetry:
    """Plain ASGI middleware, outermost: the request id (kept from ``X-Request-ID`` when it
    looks like one, else a new one; sent back in ``X-Request-ID``), the metrics, and one log
    line per request (method, path without its query, route, status, duration, client)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"")
        raw = incoming.decode("latin-1")
        request_id = raw if _GOOD_ID.fullmatch(raw) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The traceback with the request's id (the 500 itself is sent further out).
            log.exception(
                "unhandled error answering %s %s",
                scope.get("method"),
                scope.get("path"),
                extra={"request_id": request_id},
            )
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "GET")
            label = method if method in METHODS else "other"  # a client's made-up verb: one series
            REQUESTS.labels(label, route, str(status)).inc()
            LATENCY.labels(label, route).observe(elapsed)
            path = scope.get("path", "")
            client = scope.get("client")
            level = logging.DEBUG if path in QUIET_PATHS and status < 500 else logging.INFO
            if status >= 500:
                level = logging.ERROR
            log.log(
                level,
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                    "client": client[0] if client else None,
                },
            )
            REQUEST_ID.reset(token)


# --- /healthz and /metrics -----------------------------------------------------------------

router = APIRouter(include_in_schema=False)


def prefect_api_url() -> str | None:
    """The Prefect server the workers use, as this process's environment names it."""
    return os.environ.get("PREFECT_API_URL") or None


def check_store(request: Request) -> str:
    engine = request.app.state.store.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "unreachable"
        health_log.warning(
            "health: the store does not answer: %s",
            mask_secrets(
                " ".join(str(exc).split())[:300], engine.url.render_as_string(hide_password=False)
            ),
        )
        return "unreachable"
    return "ok"


def check_prefect(url: str | None) -> str:
    """ "ok", "not configured", "unreachable", or "refused" (the server answers but not to
    these credentials: ``PREFECT_API_AUTH_STRING``, as the workers use it)."""
    if not url:
        return "not configured"
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    user, _, password = (auth or "").partition(":")
    try:
        resp = httpx.get(
            f"{url.rstrip('/')}/health", timeout=2, auth=(user, password) if auth else None
        )
    except httpx.HTTPError:
        resp = None
    if resp is not None and resp.status_code == 200:
        return "ok"
    if resp is not None and resp.status_code in (401, 403):
        health_log.warning("health: the Prefect server at %s refuses our credentials", url)
        return "refused"
    health_log.warning("health: the Prefect server at %s does not answer", url)
    return "unreachable"


@router.get("/healthz")
def healthz(request: Request) -> Response:
    """200 while this process can serve (the store answers); 503 when the store does not.
    The Prefect server is reported but does not fail the check: pages and the API work
    without it (advancing a cycle waits until it is back)."""
    checks = {
        "store": check_store(request),
        "prefect": check_prefect(request.app.state.prefect_api_url),
    }
    if checks["store"] != "ok":
        state, code = "unavailable", 503
    elif checks["prefect"] in ("unreachable", "refused"):
        state, code = "degraded", 200
    else:
        state, code = "ok", 200
    body: dict[str, Any] = {"status": state, "version": __version__, "checks": checks}
    headers = {"retry-after": "30"} if code == 503 else None
    return JSONResponse(body, code, headers)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class StoreCollector:
    """Read from the store at each scrape: whether it answers, and how many notifications
    wait, are being sent, went out or failed (an alert on ``failed`` going up catches a
    channel that stopped working). The same numbers on every instance: aggregate with max."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from models.cadence.outbox import notification_counts
        from models.cadence.tables import NotificationStatus

        up = GaugeMetricFamily("aligncycle_store_up", "1 when the store answers, else 0.")
        try:
            with self.store.unit_of_work() as s:
                counts = notification_counts(s)
        except Exception:  # noqa: BLE001 - a store that does not answer is a 0, not an error
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = GaugeMetricFamily(
            "aligncycle_notifications",
            "Notifications in the store, by where they stand.",
            labels=["status"],
        )
        for status in NotificationStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus' text format: requests by route template and status, latency histograms
    (with one worker process, also the process's own CPU, memory and open files), whether
    the store answers, and the notifications by where they stand."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(request.app.state.store))
    body = generate_latest(_registry()) + generate_latest(store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
