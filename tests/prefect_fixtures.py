"""Prefect fixtures shared by every test module: ONE Prefect server for the whole session.

Registered through conftest.py (one definition: two session servers would split Prefect's
process-wide event worker between them). Nothing touches the user's ~/.prefect.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest


def _drain_workers() -> None:
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


@pytest.fixture(scope="session")
def prefect_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Prefect server for the session (its API URL). Heartbeat off, results in a temporary
    folder, telemetry off; threads see the same settings."""
    import prefect
    import prefect.context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import _find_available_port

    home = tmp_path_factory.mktemp("prefect-home")
    db = home / "prefect.db"
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    template = cache.mkdir("aligncycle-prefect") / f"{prefect.__version__}.db" if cache else None
    if template is not None and template.exists():
        shutil.copyfile(template, db)
    settings = {
        PREFECT_HOME: str(home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}",
        PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(home / "results"),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with ExitStack() as stack:
        stack.enter_context(temporary_settings(updates=settings))
        if template is not None and not template.exists():
            # First session: migrate a database once and keep it, empty, as the template.
            builder = SubprocessASGIServer(port=_find_available_port())
            builder.start(timeout=120)
            builder.stop()
            tmp = template.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(db, tmp)
            os.replace(tmp, template)
        server = SubprocessASGIServer(port=_find_available_port())
        previous = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server
        server.start(timeout=120)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        stack.enter_context(
            prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()
            )
        )
        try:
            yield server.api_url
        finally:
            _drain_workers()
            server.stop()
            if previous is not None:
                SubprocessASGIServer._instances[None] = previous
            else:
                SubprocessASGIServer._instances.pop(None, None)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Reports and logs go to a temporary data dir, never the user's."""
    monkeypatch.setenv("ALIGNCYCLE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ALIGNCYCLE_REPORTS_DIR", raising=False)
    from aligncycle.settings import get_settings

    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
