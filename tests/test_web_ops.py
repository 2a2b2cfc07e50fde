"""The web tier as an operator runs it: a health check a load balancer can act on, Prometheus
metrics by route template, a request id on every answer and every log line, and ``serve``
refusing to start where forms would expire at random (no shared signing key)."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligncycle.cli import app as cli_app
from aligncycle.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, uvicorn_log_config
from aligncycle.settings import Settings
from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from models.db import Store

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "k" * 40


@pytest.fixture
def client(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    app = create_app(store, WebSettings(data_dir=tmp_path, secret_key=KEY))
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def prefect_health() -> Iterator[str]:
    """A stand-in for a Prefect server's API: answers ``/api/health``."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == "/api/health"
            authorized = self.headers.get("Authorization") in (None, "Basic YWRtaW46czNjcmV0")
            code = 200 if ok and authorized else 401 if ok else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"true" if code == 200 else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_health_is_ok_while_the_store_answers(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert resp.json()["checks"] == {"store": "ok", "prefect": "not configured"}
    assert resp.headers["cache-control"] == "no-store"


def test_health_is_503_when_the_store_is_down(client: TestClient) -> None:
    down = "postgresql+psycopg://aligncycle:hunter2@127.0.0.1:1/aligncycle?connect_timeout=2"
    client.app.state.store = Store(down)
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["status"] == "unavailable"
    assert resp.json()["checks"]["store"] == "unreachable"
    assert resp.headers["retry-after"]
    assert "hunter2" not in resp.text


def test_health_reports_the_prefect_server_without_failing_on_it(
    client: TestClient, prefect_health: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.app.state.prefect_api_url = prefect_health
    resp = client.get("/healthz")
    assert (resp.status_code, resp.json()["checks"]["prefect"]) == (200, "ok")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:s3cret")  # basic auth, as workers use
    assert client.get("/healthz").json()["checks"]["prefect"] == "ok"
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:wrong")
    resp = client.get("/healthz")
    assert (resp.status_code, resp.json()["status"]) == (200, "degraded")
    assert resp.json()["checks"]["prefect"] == "refused"
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    client.app.state.prefect_api_url = "http://127.0.0.1:1/api"  # nothing listens there
    resp = client.get("/healthz")
    assert resp.status_code == 200  # pages work without Prefect: keep the instance in
    assert resp.json()["status"] == "degraded"
    assert resp.json()["checks"]["prefect"] == "unreachable"


def test_metrics_count_requests_by_route_template_not_by_path(client: TestClient) -> None:
    def count(text: str, route: str, status: str) -> float:
        want = f'aligncycle_http_requests_total{{method="GET",route="{route}",status="{status}"}}'
        for line in text.splitlines():
            if line.startswith(want):
                return float(line.split()[-1])
        return 0.0

    before = client.get("/metrics").text
    for cycle_id in (123456, 654321):
        assert client.get(f"/cycles/{cycle_id}").status_code == 303  # not signed in
    assert client.get("/no/such/page/42").status_code == 404
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    cycle = "/cycles/{cycle_id}"
    assert count(text, cycle, "303") - count(before, cycle, "303") == 2
    assert count(text, "unmatched", "404") - count(before, "unmatched", "404") == 1
    # The API's routes by their whole template, apart from the pages of the same shape.
    assert client.get("/api/v1/cycles/123456").status_code == 401
    text = client.get("/metrics").text
    api = "/api/v1/cycles/{cycle_id}"
    assert count(text, api, "401") - count(before, api, "401") == 1
    assert count(text, cycle, "303") - count(before, cycle, "303") == 2
    # no series is labelled by an id or a path nobody routes (a value may hold the digits: a
    # process's memory in bytes did once)
    labels = [line.split("}")[0] for line in text.splitlines() if "{" in line]
    assert not [x for x in labels if "123456" in x or "/no/such" in x]
    client.request("BREW", "/login")  # a made-up verb does not make a series of its own
    assert 'method="BREW"' not in client.get("/metrics").text
    bucket = 'duration_seconds_bucket{le="0.005",method="GET",route="/cycles/{cycle_id}"}'
    assert bucket in text


def test_a_request_id_comes_back_and_is_on_the_request_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aligncycle.web.requests"):
        kept = client.get("/login", headers={"X-Request-ID": "lb-7f3a.42"})
        replaced = client.get("/login", headers={"X-Request-ID": "no spaces <script>"})
        fresh = client.get("/login")
    assert kept.headers["x-request-id"] == "lb-7f3a.42"
    assert replaced.headers["x-request-id"] != "no spaces <script>"
    assert len(replaced.headers["x-request-id"]) == 32
    assert fresh.headers["x-request-id"] not in (replaced.headers["x-request-id"], "-")
    lines = [r for r in caplog.records if r.name == "aligncycle.web.requests"]
    assert [r.request_id for r in lines] == [
        "lb-7f3a.42",
        replaced.headers["x-request-id"],
        fresh.headers["x-request-id"],
    ]
    assert lines[0].route == "/login" and lines[0].status == 200
    assert lines[0].duration_ms >= 0


def test_a_log_line_is_one_json_object_with_the_request_id() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        record = logging.LogRecord(
            "aligncycle.web", logging.WARNING, __file__, 1, "store %s", ("down",), None
        )
        record.route = "/cycles/{cycle_id}"
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "store down"
    assert (data["level"], data["request_id"], data["route"]) == (
        "warning",
        "req-1",
        "/cycles/{cycle_id}",
    )


def test_the_log_level_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNCYCLE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("ALIGNCYCLE_LOG_FORMAT", "text")
    settings = Settings()
    assert (settings.log_level, settings.log_format) == ("debug", "text")
    config = uvicorn_log_config(settings.log_level, settings.log_format)
    assert config["root"]["level"] == "DEBUG"
    assert "request_id" in config["formatters"]["default"]["format"]
    monkeypatch.setenv("ALIGNCYCLE_LOG_LEVEL", "chatty")
    with pytest.raises(ValueError, match="log_level"):
        Settings()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--workers", "2"], {}, "2 worker processes need a shared signing key"),
        (["--host", "0.0.0.0"], {}, "serving on 0.0.0.0, not this machine only"),
        (["--host", "10.1.2.3", "--workers", "1"], {}, "serving on 10.1.2.3"),
        ([], {"ALIGNCYCLE_WORKERS": "3"}, "3 worker processes need"),
        (["--workers", "2"], {"ALIGNCYCLE_SECRET_KEY": "short"}, "is too short (5 characters)"),
    ],
)
def test_serve_refuses_to_start_without_a_shared_key(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    from aligncycle import cli_common

    cli_common.reset_store()
    env = {"ALIGNCYCLE_SECRET_KEY": None, "ALIGNCYCLE_WORKERS": None, "ALIGNCYCLE_HOST": None} | env
    env["ALIGNCYCLE_DATA_DIR"] = str(tmp_path)
    result = CliRunner().invoke(cli_app, ["serve", *args], env=env)
    cli_common.reset_store()
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert "ALIGNCYCLE_SECRET_KEY" in lines[0]
    assert not (tmp_path / "secret_key").exists()  # refused before anything was made


def test_metrics_tell_whether_the_store_answers_and_how_notifications_stand(
    client: TestClient,
) -> None:
    from models.cadence.tables import Notification

    with client.app.state.store.unit_of_work() as s:
        for i, status in enumerate(["pending", "failed", "failed", "sent"]):
            s.add(
                Notification(
                    key=f"test:{i}",
                    recipient="x@acme.test",
                    kind="reminder",
                    subject="s",
                    body="b",
                    status=status,
                )
            )
    text = client.get("/metrics").text
    assert "aligncycle_store_up 1.0" in text
    assert 'aligncycle_notifications{status="failed"} 2.0' in text
    assert 'aligncycle_notifications{status="pending"} 1.0' in text
    assert 'aligncycle_notifications{status="sending"} 0.0' in text
    client.app.state.store = Store(
        "postgresql+psycopg://aligncycle:hunter2@127.0.0.1:1/aligncycle?connect_timeout=2"
    )
    down = client.get("/metrics")
    assert down.status_code == 200 and "aligncycle_store_up 0.0" in down.text
    assert "aligncycle_notifications{" not in down.text


def test_an_unhandled_error_is_logged_with_the_request_id(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(store, WebSettings(data_dir=tmp_path, secret_key=KEY))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("something broke")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.INFO, logger="aligncycle.web.requests"):
        resp = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert resp.status_code == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [getattr(r, "request_id", None) for r in errors] == ["req-boom", "req-boom"]
    assert errors[0].exc_info is not None and "something broke" in str(errors[0].exc_info[1])
    assert errors[1].status == 500 and errors[1].route == "/boom"
