"""The demo's own Prefect server: started by the first ``aligncycle demo``, reused by the next.

Prefect's in-process ("ephemeral") server costs every demo 7-8 s before its first flow run:
importing the server's modules into this process, starting it in a subprocess, checking its
database. A server left running costs that once. So the demo starts ``prefect server start``
on 127.0.0.1 (a free port; SQLite in the demo's Prefect home, the database the in-process
server used before, so its runs are kept), in the background and without waiting: the store's
migrations and the CRM import run meanwhile, and the demo waits for the server only before its
first flow run. The server stays up for the next demo and for its UI (the runs, each checklist
item a task run with its owner); ``aligncycle demo --stop`` stops it.

The state file (``demo-server.json`` in the Prefect home: pid, port, URL) says which process to
reuse or stop; a server is reused only if that process is alive and its API answers. A lock
file keeps two demos started together from starting two servers.

Not used when ``PREFECT_API_URL`` is set (the runs go to that server) or with
``ALIGNCYCLE_DEMO_PREFECT=ephemeral`` (Prefect's in-process server, as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The module that runs the server (Prefect's ``server start``, see its docstring).
LAUNCHER = "flows.local_server"
STATE = "demo-server.json"
LOG = "demo-server.log"
#: A first start on a new Prefect database runs its migrations: 14-30 s on a busy 2-core machine.
START_TIMEOUT = 180.0

#: The server's settings beside the quiet defaults: only the services a demo's runs need (task
#: runs recorded from their events, events for the UI, paused runs expiring); no scheduler,
#: late-run, worker-health or automation loops polling an idle database in the background.
#: Task runs and events are written in batches (Prefect's defaults write each task run event in
#: a transaction of its own: about 300 per demo, each contending for SQLite's one writer).
SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "2",
}


@dataclass
class Server:
    """A demo server this or an earlier demo started."""

    pid: int
    port: int
    home: Path
    started_here: bool = False
    _ready: bool = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answers(self, timeout: float = 2.0) -> bool:
        return _alive(self.pid) and _healthy(self.api_url, timeout)

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        """Until the API answers; a server that died or never answers is a one-line error
        naming its log."""
        if self._ready:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(self.pid):
                raise ServerFailed(
                    f"the demo's Prefect server stopped while starting; its log: {self.log}"
                )
            if _healthy(self.api_url, 2.0):
                self._ready = True
                return
            time.sleep(0.2)
        raise ServerFailed(
            f"the demo's Prefect server did not answer within {timeout:.0f} s; its log: {self.log}"
        )

    @property
    def log(self) -> Path:
        return self.home / LOG


class ServerFailed(RuntimeError):
    """The demo's Prefect server could not be started (the message says where its log is)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process: not ours
        return False
    with contextlib.suppress(OSError):  # a zombie (exited, not reaped) is not alive
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _healthy(api_url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:  # noqa: S310 - our own loopback URL
            return resp.status == 200
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "demo-server.lock", "w") as lock:  # noqa: PTH123
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ours(pid: int, port: int) -> bool:
    """The process is the demo's server on that port (a pid reused after a restart of the
    machine is someone else's process, never stopped)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # no /proc (macOS): the health check on the port decides
        return True
    return LAUNCHER.encode() in args and str(port).encode() in args


def recorded(home: Path) -> Server | None:
    """The server the state file names, if its process is still alive and is that server (not
    checked: whether it answers)."""
    try:
        state = json.loads((home / STATE).read_text())
        server = Server(pid=int(state["pid"]), port=int(state["port"]), home=home)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return server if _alive(server.pid) and _ours(server.pid, server.port) else None


def ensure(home: Path) -> Server:
    """The demo's running server, or a new one being started (not waited for: call
    :meth:`Server.wait` before the first flow run)."""
    with _locked(home):
        found = recorded(home)
        if found is not None and found.answers():
            found._ready = True
            (home / STATE).touch()  # in use: its idle clock starts again
            return found
        if found is not None:  # alive but not answering: still starting, or hung
            try:
                found.wait(timeout=START_TIMEOUT)
                (home / STATE).touch()
                return found
            except ServerFailed:
                _terminate(found.pid)
        server = _start(home)
        (home / STATE).write_text(
            json.dumps({"pid": server.pid, "port": server.port, "api_url": server.api_url})
        )
        return server


def idle_seconds() -> float:
    """How long the server waits for the next demo before it stops itself:
    ``ALIGNCYCLE_DEMO_PREFECT_IDLE_MINUTES`` (default 60)."""
    try:
        minutes = float(os.environ.get("ALIGNCYCLE_DEMO_PREFECT_IDLE_MINUTES") or 60)
    except ValueError:
        minutes = 60.0
    return max(minutes, 1.0) * 60


def _start(home: Path) -> Server:
    port = _free_port()
    idle = idle_seconds()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= SERVER_ENV | {"PREFECT_HOME": str(home)}
    with open(home / LOG, "ab") as log:  # noqa: PTH123 - the child keeps its own descriptor
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", LAUNCHER, "--stop-when-idle", str(home / STATE), str(idle)]
            + ["--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the demo's Ctrl-C, nor by its exit
        )
    return Server(pid=proc.pid, port=port, home=home, started_here=True)


def _terminate(pid: int, wait: float = 15.0) -> None:
    """SIGTERM to the server's process group (it was started in its own session), SIGKILL if
    it is still there after ``wait`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps it if this process started it
            if not _alive(pid):
                return
            time.sleep(0.1)


def stop(home: Path) -> str:
    """Stop the demo's server; the sentence to show."""
    with _locked(home):
        found = recorded(home)
        (home / STATE).unlink(missing_ok=True)
        if found is None:
            return "the demo's Prefect server is not running"
        _terminate(found.pid)
        return f"the demo's Prefect server ({found.ui_url}) is stopped"
