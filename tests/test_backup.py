"""``aligncycle backup`` and ``restore``: the store and the data dir come back exactly as they
were; a backup that is incomplete or altered, or a store that holds data (without --force),
is refused in one line and nothing changes."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from models.db import Store
from models.schemas import PersonCreate, TeamCreate
from models.services import people
from tests.conftest import ORG, db_snapshot, migrated_store

ADMIN_PG = os.environ.get(
    "ALIGNCYCLE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_reachable() -> bool:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return "127.0.0.1" not in ADMIN_PG and "localhost" not in ADMIN_PG
    return True


def fill(store: Store, extra: str | None = None) -> None:
    with store.unit_of_work() as s:
        if extra is None:
            people.create_team(s, TeamCreate(key="sales", name="Sales"))
            people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
            s.flush()
            for name, email, team, role in ORG:
                people.create_person(s, PersonCreate(name=name, email=email, team=team, role=role))
        else:
            people.create_person(
                s, PersonCreate(name="Late Addition", email=extra, team="sales", role="member")
            )


def cli(env: dict[str, Any], *args: str, code: int = 0) -> list[str]:
    cli_common.reset_store()
    result = CliRunner().invoke(app, list(args), env=env)
    cli_common.reset_store()
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()


def data_dir_with_key(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "secret_key").write_text("the-generated-key\n")
    (folder / "secret_key").chmod(0o600)
    upload = folder / "imports" / "job-1"
    upload.mkdir(parents=True)
    (upload / "contacts.csv").write_text("email\nana@example.com\n")
    (folder / "demo").mkdir()  # what `aligncycle demo` recreates on every run: not backed up
    (folder / "demo" / "aligncycle.db").write_bytes(b"demo")
    return folder


@pytest.mark.sqlite_only
def test_backup_then_restore_gives_back_the_same_store_and_data_dir(tmp_path: Path) -> None:
    data = data_dir_with_key(tmp_path / "data")
    with migrated_store(data / "aligncycle.db") as (url, engine):
        store = Store(engine)
        fill(store)
        before = db_snapshot(store)
        env = {
            "ALIGNCYCLE_DATABASE_URL": url,
            "ALIGNCYCLE_DATA_DIR": str(data),
            "ALIGNCYCLE_SECRET_KEY": None,
        }
        out = cli(env, "backup", str(tmp_path / "bk"))
        assert len(out) == 1 and "backed up sqlite store" in out[0]
        assert oct((tmp_path / "bk").stat().st_mode)[-3:] == "700"
        assert not (tmp_path / "bk" / "data" / "aligncycle.db").exists()  # via the backup API
        assert not (tmp_path / "bk" / "data" / "demo").exists()

        # Life goes on: a person added, the key file replaced, an upload removed.
        fill(store, "late@acme.test")
        (data / "secret_key").write_text("another-key\n")
        shutil.rmtree(data / "imports")
        changed = db_snapshot(store)
        assert changed != before

        refused = cli(env, "restore", str(tmp_path / "bk"), code=1)
        assert refused == [
            "error: the configured store already holds data; --force replaces it with the backup"
        ]
        assert db_snapshot(store) == changed

        out = cli(env, "restore", str(tmp_path / "bk"), "--force")
        assert "restored the backup of" in out[0]
        assert db_snapshot(store) == before
        assert (data / "secret_key").read_text() == "the-generated-key\n"
        assert oct((data / "secret_key").stat().st_mode)[-3:] == "600"
        assert (data / "imports" / "job-1" / "contacts.csv").exists()


@pytest.mark.sqlite_only
def test_restore_on_a_new_machine_needs_no_force(tmp_path: Path) -> None:
    data = data_dir_with_key(tmp_path / "old")
    with migrated_store(data / "aligncycle.db") as (url, engine):
        fill(Store(engine))
        before = db_snapshot(Store(engine))
        env = {"ALIGNCYCLE_DATABASE_URL": url, "ALIGNCYCLE_DATA_DIR": str(data)}
        cli(env, "backup", str(tmp_path / "bk"))
    new = tmp_path / "new"
    env = {"ALIGNCYCLE_DATABASE_URL": None, "ALIGNCYCLE_DATA_DIR": str(new)}
    cli(env, "restore", str(tmp_path / "bk"))
    restored = Store(f"sqlite:///{new / 'aligncycle.db'}")
    try:
        assert db_snapshot(restored) == before
    finally:
        restored.dispose()
    assert (new / "secret_key").read_text() == "the-generated-key\n"


@pytest.mark.sqlite_only
def test_an_altered_or_misplaced_backup_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    data = data_dir_with_key(tmp_path / "data")
    with migrated_store(data / "aligncycle.db") as (url, engine):
        store = Store(engine)
        fill(store)
        env = {"ALIGNCYCLE_DATABASE_URL": url, "ALIGNCYCLE_DATA_DIR": str(data)}
        cli(env, "backup", str(tmp_path / "bk"))
        fill(store, "late@acme.test")
        changed = db_snapshot(store)

        (tmp_path / "bk" / "data" / "secret_key").write_text("tampered\n")
        out = cli(env, "restore", str(tmp_path / "bk"), "--force", code=1)
        assert len(out) == 1 and "data/secret_key does not match its checksum" in out[0]
        (tmp_path / "bk" / "data" / "secret_key").write_text("the-generated-key\n")
        (tmp_path / "bk" / "store.sqlite").unlink()
        out = cli(env, "restore", str(tmp_path / "bk"), "--force", code=1)
        assert len(out) == 1 and "store.sqlite is missing" in out[0]
        out = cli(env, "restore", str(tmp_path), "--force", code=1)
        assert len(out) == 1 and "is not an aligncycle backup" in out[0]
        assert db_snapshot(store) == changed
        assert (data / "secret_key").read_text() == "the-generated-key\n"

        out = cli(env, "backup", str(tmp_path / "bk"), code=1)  # not empty
        assert len(out) == 1 and "is not an empty folder" in out[0]


@pytest.mark.skipif(
    not _pg_reachable(),
    reason="needs PostgreSQL (ALIGNCYCLE_TEST_DATABASE_URL or 127.0.0.1:5432) and pg_dump",
)
def test_a_postgresql_store_comes_back_the_same_through_pg_dump(tmp_path: Path) -> None:
    from bench.pg import scratch_database
    from migrations import runner

    with (
        scratch_database(ADMIN_PG, "aligncycle_bk") as source_url,
        scratch_database(ADMIN_PG, "aligncycle_rs") as target_url,
    ):
        source = Store(source_url)
        target = Store(target_url)
        try:
            runner.upgrade(source.engine)
            fill(source)
            before = db_snapshot(source)
            data = data_dir_with_key(tmp_path / "data")
            env = {"ALIGNCYCLE_DATABASE_URL": source_url, "ALIGNCYCLE_DATA_DIR": str(data)}
            out = cli(env, "backup", str(tmp_path / "bk"))
            assert "backed up postgresql store" in out[0]
            assert "change-me" not in " ".join(out)
            env = {
                "ALIGNCYCLE_DATABASE_URL": target_url,
                "ALIGNCYCLE_DATA_DIR": str(tmp_path / "new"),
            }
            cli(env, "restore", str(tmp_path / "bk"))
            assert db_snapshot(target) == before
            assert runner.current(target.engine) == runner.heads()
            fill(source, "late@acme.test")  # and the restored store takes new writes
            fill(target, "late@acme.test")
        finally:
            source.dispose()
            target.dispose()
