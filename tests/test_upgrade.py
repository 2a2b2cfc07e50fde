"""The upgrade procedure of docs/running-for-a-company.md, on the aligncycle side: back up,
new code everywhere, ``db upgrade``, start again. A web app with new code refuses a store
behind it in one line; ``db upgrade`` keeps every row; the backup taken before is the way
back."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from migrations import runner
from models.db import Store
from models.metadata import metadata
from tests.conftest import migrated_store
from tests.test_backup import fill

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PREVIOUS = "0009"  # the release before this one


def cli(env: dict[str, Any], *args: str, code: int = 0) -> list[str]:
    cli_common.reset_store()
    result = CliRunner().invoke(app, list(args), env=env)
    cli_common.reset_store()
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()


def previous_shape(store: Store) -> dict[str, list[str]]:
    """The tables and columns the store has now (the previous release's, after the
    downgrade)."""
    from sqlalchemy import inspect

    with store.engine.connect() as conn:
        found = inspect(conn)
        return {
            t: [c["name"] for c in found.get_columns(t)]
            for t in found.get_table_names()
            if t != "recap_reports"
        }


def rows_of_previous_release(store: Store, shape: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Every row of the tables the previous release had, in its columns (a later release may
    add columns to them)."""
    with store.engine.connect() as conn:
        return {
            t.name: sorted(
                tuple(repr(v) for v in r)
                for r in conn.execute(select(*(t.c[c] for c in shape[t.name])))
            )
            for t in metadata.sorted_tables
            if t.name in shape
        }


@pytest.mark.sqlite_only
def test_the_upgrade_procedure_keeps_every_row_and_the_backup_is_the_way_back(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with migrated_store(data / "aligncycle.db") as (url, engine):
        store = Store(engine)
        fill(store)
        runner.downgrade(engine, PREVIOUS)  # the store as the previous release left it
        shape = previous_shape(store)
        before = rows_of_previous_release(store, shape)
        env = {
            "ALIGNCYCLE_DATABASE_URL": url,
            "ALIGNCYCLE_DATA_DIR": str(data),
            "ALIGNCYCLE_SECRET_KEY": None,
            "ALIGNCYCLE_WORKERS": None,
        }
        # 1. Back up.
        cli(env, "backup", str(tmp_path / "before-upgrade"))
        # 2. The new code refuses to serve the old store, in one line, before any worker.
        out = cli(env, "serve", "--workers", "1", code=1)
        head = ", ".join(sorted(runner.heads()))
        assert out == [
            f"error: the store at {cli_common.display_url(url)} is at revision {PREVIOUS}; "
            f"this aligncycle needs {head}; run 'aligncycle db upgrade'"
        ]
        with pytest.raises(runner.StoreNotCurrent):
            create_app(store, WebSettings(data_dir=data, secret_key="k" * 40))
        # 3. db upgrade: every row kept (it also loads the shipped playbooks, with their audit
        # events), the store at this code's revision.
        cli(env, "db", "upgrade")
        assert cli(env, "db", "current")[-1] == "up to date"
        after = rows_of_previous_release(store, shape)
        for table, rows in before.items():
            assert set(rows) <= set(after[table]), table
        # 4. Start again: the web app serves and is healthy.
        web = TestClient(create_app(store, WebSettings(data_dir=data, secret_key="k" * 40)))
        assert web.get("/healthz").json()["checks"]["store"] == "ok"
        # The way back: the backup restores the previous release's store, as it was.
        out = cli(env, "restore", str(tmp_path / "before-upgrade"), "--force")
        assert out[-1] == (
            f"the store at {cli_common.display_url(url)} is at revision {PREVIOUS}; "
            f"this aligncycle needs {head}; run 'aligncycle db upgrade'"
        )
        assert runner.current(engine) == {PREVIOUS}
        assert rows_of_previous_release(store, shape) == before
