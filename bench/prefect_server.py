"""A throwaway Prefect server on PostgreSQL (its own new database, its own ``PREFECT_HOME``)
and process workers, started and stopped in the right order: for the benchmarks (``cadence``,
``demo``) and the integration tests, which import it from here (the benchmarks must not import
from ``tests/``). Not a benchmark: it has no ``main``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.pg import create_database, drop_database

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "aligncycle"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Prefect starts each flow run in its own session)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL, wait: float = 15.0) -> None:
    """Send ``sig`` to a process, its group and all its descendants; reap it."""
    if proc.poll() is not None:
        return
    targets = [proc.pid, *descendants(proc.pid)]
    if sig == signal.SIGKILL:
        # Freeze them all first, as a machine that dies would: a worker that outlives its
        # flow-run process by a moment would report the run Crashed itself.
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    for pid in reversed(targets):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        kill_tree(proc, signal.SIGKILL, wait)


class PrefectStack:
    """``prefect server start`` on ``host`` (127.0.0.1; a free port) backed by a new
    PostgreSQL database, with a temporary PREFECT_HOME; workers of the process pool; teardown
    in the right order (workers before the server, then the database).

    ``ui_host``: the UI is served, and browsers reach the server by this name
    (``PREFECT_UI_API_URL=http://UI_HOST:PORT/api``, as docs/running-for-a-company.md sets
    it); ``ui_url`` is the address to open. Without it the UI is off (a faster start)."""

    def __init__(
        self,
        admin_url: str,
        store_url: str | None,
        workdir: Path,
        host: str = "127.0.0.1",
        ui_host: str | None = None,
    ) -> None:
        self.admin_url = admin_url
        self.workdir = workdir
        self.host = host
        self.port = free_port(host)
        self.api_url = f"http://{host}:{self.port}/api"
        self.ui_url = f"http://{ui_host}:{self.port}" if ui_host else None
        prefect_url, self.prefect_db = create_database(admin_url, "aligncycle_prefect")
        asyncpg_url = make_url(prefect_url).set(drivername="postgresql+asyncpg")
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url.render_as_string(
                hide_password=False
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "true" if ui_host else "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(workdir / "results"),
        }
        if self.ui_url is not None:
            self.env["PREFECT_UI_API_URL"] = f"{self.ui_url}/api"
        if store_url is not None:  # the store the flows use (workers, in-process runs)
            self.env["ALIGNCYCLE_DATABASE_URL"] = store_url
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [str(BIN / "prefect"), *args],
            cwd=PROJECT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, timeout: float = 180) -> None:
        self.server = self._spawn(
            ["server", "start", "--host", self.host, "--port", str(self.port)], "server.log"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{self.log('server.log')}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server not up after {timeout}s:\n{self.log('server.log')}")

    def cli(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start_worker(self) -> subprocess.Popen:
        worker = self._spawn(["worker", "start", "--pool", POOL, "--limit", "8"], "worker.log")
        self.workers.append(worker)
        return worker

    def wait_for_worker(self, timeout: float = 120) -> None:
        """Until a worker of the pool has reported to the server (a worker just started is
        still importing; in production it has been polling for long)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        deadline = time.monotonic() + timeout
        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            while time.monotonic() < deadline:
                if client.read_workers_for_work_pool(POOL):
                    return
                time.sleep(0.5)
        raise RuntimeError(f"no worker reported within {timeout}s:\n{self.log('worker.log')}")

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for worker in self.workers:  # workers first, or they keep retrying a dead server
            kill_tree(worker, signal.SIGTERM)
        if self.server is not None:
            kill_tree(self.server, signal.SIGTERM)
        drop_database(self.admin_url, self.prefect_db)
