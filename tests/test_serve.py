"""``aligncycle serve`` as an operator starts it: several worker processes behind one port.

A sign-in form served by one worker is posted to whichever worker the kernel picks, so every
worker must sign and check the form's token with the same key (made once, in the data dir).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PROJECT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.sqlite_only  # --demo always uses its own SQLite store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One ``serve --demo --workers 2`` for the module's tests (each reads only what it asked
    for: its own sign-ins, its own request id)."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGNCYCLE_", "PREFECT_"))}
    env |= {
        "ALIGNCYCLE_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
        "ALIGNCYCLE_SECRET_KEY": "a-shared-key-of-at-least-32-characters",
    }
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from aligncycle.cli import main; main()"]
        + ["serve", "--demo", "--workers", "2", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"serve did not start:\n{log.read()}")
            time.sleep(0.3)
        yield base, log, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_two_workers_sign_people_in_whichever_worker_answers(server) -> None:  # noqa: ANN001
    base, log, proc = server
    log.seek(0)
    assert "2 workers" in log.read()
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    assert len(children.stdout.split()) >= 2  # uvicorn's supervisor and its two workers
    for _ in range(12):  # fresh browsers: form from one worker, post to any
        with httpx.Client(base_url=base, timeout=10) as browser:
            form = browser.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            resp = browser.post(
                "/login",
                data={
                    "csrf": csrf,
                    "next": "/",
                    "email": "sam@acme.test",
                    "password": "demo-password",
                },
            )
            assert resp.status_code == 303, resp.text[:300]
            assert browser.get("/my").status_code == 200


def test_two_workers_answer_health_metrics_and_log_json_lines_with_request_ids(server) -> None:  # noqa: ANN001
    base, log, _proc = server
    for _ in range(10):
        assert httpx.get(base + "/login", headers={"X-Request-ID": "probe-1"}).status_code == 200
    health = httpx.get(base + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["checks"]["store"] == "ok"
    # Whichever worker answers /metrics, it counts every worker's requests (at least the ten
    # above and the readiness probes of the fixture).
    total = 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith('aligncycle_http_requests_total{method="GET",route="/login"'):
            total += float(line.split()[-1])
    assert total >= 10
    time.sleep(0.5)
    log.seek(0)
    records = []
    for line in log.read().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    mine = [r for r in records if r.get("request_id") == "probe-1"]
    assert len(mine) == 10
    assert {(r["route"], r["status"], r["level"]) for r in mine} == {("/login", 200, "info")}
