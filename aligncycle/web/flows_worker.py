"""The web process's own dispatcher, on the embedded default (no Prefect server configured).

A cycle moved in the web app or the API asks for its new phase's flow in the move's own
transaction (the phase outbox, :mod:`models.phases.dispatch`). With a Prefect server, a run of
the phase's deployment is created right after the commit, and the ``dispatch`` deployment is
the safety net. Without one, nobody else would start it, so the web process does: one
background thread per process, started and stopped with the app (its lifespan), which

- wakes when a move commits (:func:`aligncycle.orchestration.dispatch_after_commit`) and runs
  the waiting phase flows here, through the same idempotent dispatch as ``aligncycle flows
  dispatch`` (a row is claimed in the store first: several processes never run one twice);
- every ``interval`` seconds (and once at start: what waited while the app was down) also
  delivers what nobody else will: invitation and reset links, and messages whose send failed
  once their backoff has passed (:func:`models.cadence.outbox.sweepable`).

The request never waits for it: the move is committed and answered first. The first phase
flow after a start also starts Prefect's temporary local server in this process (a few
seconds; the first time on a machine, its database set-up, 20-30 s). Nothing is imported from
Prefect while no flow waits.

``ALIGNCYCLE_WEB_RUNS_FLOWS`` turns it on or off; unset, it runs when ``PREFECT_API_URL`` is
not set.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from models.db import Store

log = logging.getLogger("aligncycle.web.flows")


def server_configured() -> bool:
    """A Prefect server is configured for this process (its moves become deployment runs)."""
    return bool(os.environ.get("PREFECT_API_URL"))


class FlowWorker:
    """One background thread draining the phase outbox (and the message sweep) of ``store``."""

    def __init__(
        self, store: Store, *, use_server: bool = False, interval: float = 60.0, sweep: bool = True
    ) -> None:
        self.store = store
        self.use_server = use_server
        self.interval = interval
        self.sweep = sweep
        self._cond = threading.Condition()
        self._wanted = True  # a first pass at start: what waited while the app was down
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Passes done, and the last one's problem (for tests and logs).
        self.passes = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> FlowWorker:
        self._thread = threading.Thread(target=self._run, name="aligncycle-flows", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A move committed: dispatch now (not waiting for the next tick)."""
        with self._cond:
            self._wanted = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is asked for and no pass runs (True), or ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._wanted and not self._busy, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass under way (a flow running here finishes; what waits stays in
        the store for the next start, or any other dispatcher)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted or self._stopping, self.interval)
                if self._stopping:
                    self._wanted = False
                    self._cond.notify_all()
                    return
                self._wanted = False
                self._busy = True
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the thread lives on; rows stay pending
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("background dispatch failed; tried again later", exc_info=True)
            finally:
                with self._cond:
                    self._busy = False
                    self.passes += 1
                    self._cond.notify_all()

    def run_once(self) -> None:
        """One pass: the waiting phase flows, then the message sweep."""
        from models.phases import dispatch as outbox

        with self.store.unit_of_work() as s:
            waiting = bool(outbox.waiting(s))
        if waiting:
            from aligncycle import orchestration

            _, lines = orchestration.dispatch(
                None, use_server=self.use_server, store=self.store, to_log_file=False
            )
            for line in lines:
                log.info("%s", line)
        if self.sweep:
            from flows import notify

            result = notify.deliver(self.store, sweep=True, workers=2)
            for err in result.errors[:5]:
                log.warning("delivery: %s", err)


def start_for(app: Any) -> FlowWorker | None:
    """The worker the app's settings ask for, started (None when off)."""
    settings = app.state.settings
    wanted = settings.web_runs_flows
    if wanted is None:
        wanted = not server_configured()
    if not wanted:
        return None
    worker = FlowWorker(
        app.state.store,
        use_server=server_configured(),
        interval=float(settings.web_flows_interval_seconds),
    )
    return worker.start()
