"""``python -m flows.local_server --host H --port P``: ``prefect server start`` on SQLite, with
its write transactions taken up front.

Prefect 3.8.8's server opens its write transactions on SQLite as ``BEGIN DEFERRED``: a
transaction that reads, then writes while another connection of the server (its event
consumers record task runs and events in the background) committed in between, fails at once
with "database is locked" (waiting does not help it), and the API answers 503. The client
retries after 2 s: measured, 2-3 times in each demo (flow run creation, right after the
previous flow's task runs), 4-6 s of its 8-12 s. Prefect's own comment on it (in
``prefect.server.database.configurations``) says that ``BEGIN IMMEDIATE`` resolves it: the
transaction waits for the write lock (``busy_timeout``) instead of failing. This launcher
makes the server's explicit transactions IMMEDIATE, then runs Prefect's own ``server start``
in this process. Used by the demo's server (:mod:`aligncycle.demo_server`); on PostgreSQL
nothing changes.
"""

from __future__ import annotations

import sys
from typing import Any


def take_write_lock_up_front() -> bool:
    """Patch the server's SQLite ``BEGIN`` (False if this Prefect has no such hook: its
    default stays)."""
    try:
        from prefect.server.database import configurations as config
    except ImportError:  # pragma: no cover - a Prefect without a server
        return False
    cls = getattr(config, "AioSqliteConfiguration", None)
    mode = getattr(config, "SQLITE_BEGIN_MODE", None)
    if cls is None or mode is None or not hasattr(cls, "begin_sqlite_stmt"):
        return False

    def begin_sqlite_stmt(self: Any, conn: Any) -> None:
        if mode.get() is not None:  # an explicit transaction (reads alone emit no BEGIN)
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    cls.begin_sqlite_stmt = begin_sqlite_stmt
    return True


def stop_when_idle(touched: str, idle_seconds: float, every: float = 30.0) -> None:
    """A daemon thread ending this process (SIGTERM: Prefect's own shutdown) once ``touched``
    (the demo's state file, touched by each demo that uses the server) is older than
    ``idle_seconds`` or gone (the demo stopped the server)."""
    import os
    import signal
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                idle = time.time() - os.stat(touched).st_mtime
            except OSError:
                idle = float("inf")
            if idle > idle_seconds:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="stop-when-idle", daemon=True).start()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--stop-when-idle"]:  # --stop-when-idle FILE SECONDS, then Prefect's
        stop_when_idle(argv[1], float(argv[2]))
        argv = argv[3:]
    take_write_lock_up_front()
    from prefect.cli import app

    sys.argv = [sys.argv[0], "server", "start", *argv]  # Prefect's CLI reads sys.argv
    app()


if __name__ == "__main__":  # pragma: no cover - run as a process by aligncycle.demo_server
    main(sys.argv[1:])
