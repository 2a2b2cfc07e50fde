"""Prefect flows for the four phases of an alignment cycle, and the cycle flow that drives them.

Thin by design: a task opens one unit of work and calls a domain function in
``models.phases``; tasks pass ids, never sessions or rows.

Importing this package sets Prefect's quiet defaults before any flow module imports Prefect
(it imports nothing heavy itself). Values already in the environment win, so a user's own
Prefect settings are kept.
"""

from __future__ import annotations

import os

QUIET_DEFAULTS = {
    # No usage telemetry and no network attempt for it.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Prefect's logs go to its UI (and aligncycle's log file), not the user's terminal.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    # No "Error flushing events" tracebacks when a temporary server stops.
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    # A temporary server's first start on a new database takes 14-19 s on a busy 2-core
    # machine, close to the 20 s default.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # A heartbeat every 30 s (Prefect's default is 180): the zombie-run automation
    # (``aligncycle flows setup``, 90 s without one) must never take a live run of an
    # aligncycle process for a dead one. Workers load Prefect before this package: set it in
    # their environment too (docs/running-for-a-company.md).
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
}


def configure_environment() -> None:
    """Set the quiet defaults (before Prefect is imported; later they have no effect)."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


configure_environment()
