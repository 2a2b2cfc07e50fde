"""Shared fixtures: a migrated store (SQLite by default, PostgreSQL when
``ALIGNCYCLE_TEST_DATABASE_URL`` is set), emptied after every test, and a small organisation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser_support import as_, browser  # noqa: E402,F401  (shared fixtures)
from tests.prefect_fixtures import data_dir, prefect_server  # noqa: E402,F401  (shared fixtures)

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from models.db import Store
    from models.playbook import PlaybookSpec

# The store, its migrations and the domain are imported by the fixtures that use them, not
# here: the pure-domain tests (rules, playbook parsing) start without SQLAlchemy's engine,
# Alembic or the services.

PROJECT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("ALIGNCYCLE_TEST_DATABASE_URL")
SHARED_DATA = PROJECT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_background_dispatcher_left() -> Iterator[None]:
    """A web app's background dispatcher (``aligncycle.web.flows_worker``) stops with the app.
    One left running would claim the phase flows of the tests after it: they share the
    worker's database."""
    import threading

    yield
    left = [t.name for t in threading.enumerate() if t.name == "aligncycle-flows"]
    assert not left, "a web app's background dispatcher still runs after the test"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` check what only PostgreSQL has: on the embedded SQLite store
    (no ``ALIGNCYCLE_TEST_DATABASE_URL``) they are deselected, and run in the PostgreSQL
    suite (``make test-postgres``)."""
    if PG_URL:
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@contextmanager
def migrated_store(sqlite_file: Path) -> Iterator[tuple[str, Engine]]:
    """A store of its own at the newest revision: a SQLite file at ``sqlite_file``, or, when
    the tests run on PostgreSQL, a scratch database dropped afterwards. Yields (url, engine)."""
    from bench.pg import scratch_database
    from migrations import runner
    from models.db import make_engine

    with ExitStack() as stack:
        if PG_URL:
            url = stack.enter_context(scratch_database(PG_URL, "aligncycle_test"))
        else:
            url = f"sqlite:///{sqlite_file}"
        engine = make_engine(url)
        stack.callback(engine.dispose)
        runner.upgrade(engine)
        yield url, engine


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for the whole session (on PostgreSQL a scratch database,
    dropped at the end)."""
    with migrated_store(tmp_path_factory.mktemp("db") / "test.db") as (url, engine):
        engine.dispose()  # the session's own engine fixture connects
        yield url


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with small parameters for tests that sign people in: the same code path, a
    fraction of the time."""
    from argon2 import PasswordHasher

    from models.services import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", cheap)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", cheap.hash("dummy"))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    from models.db import make_engine

    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def empty_store(conn: Connection) -> None:
    """Delete every row of every table, in the caller's transaction.

    The audit log is append-only (migration 0005's triggers refuse DELETE on ``events``), and
    wiping a whole test store is the one deletion of events there is: so the guard is lifted
    for it, explicitly, and back in place before this returns, in the same transaction (a
    rollback restores it too). With no events there is nothing to lift.
    """
    from sqlalchemy import text

    from models.metadata import metadata

    lift = conn.execute(text("SELECT 1 FROM events LIMIT 1")).first() is not None
    sqlite = conn.dialect.name == "sqlite"
    guards: list[tuple[str, str]] = []
    if lift and sqlite:  # SQLite cannot disable a trigger: drop it and create it again
        if not conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN")  # else pysqlite runs the DDL outside the transaction
        found = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": "events"},
        )
        guards = [(name, sql) for name, sql in found]
        for name, _sql in guards:
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    elif lift:
        conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER USER")
    for table in reversed(metadata.sorted_tables):
        conn.execute(table.delete())
    for _name, sql in guards:
        conn.exec_driver_sql(sql)
    if lift and not sqlite:
        conn.exec_driver_sql("ALTER TABLE events ENABLE TRIGGER USER")


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        empty_store(conn)


@pytest.fixture
def store(engine: Engine, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Store]:
    """The migrated store, empty at the start of the test. ``ALIGNCYCLE_DATABASE_URL`` points
    at it, so CLI commands run in the test use the same database."""
    from models.db import Store

    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", database_url)
    _empty(engine)
    yield Store(engine)
    _join_imports()
    _empty(engine)


def _join_imports(timeout: float = 60) -> None:
    """Wait for the web app's background imports to end before the store is emptied.

    An import's job reads "imported" as soon as its rows commit; its thread then records the
    KPI gaps in a transaction of its own. A test may end in between, and emptying the store
    beside that write is a race (SQLite: "database is locked"), so the thread is joined."""
    import threading
    import time

    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("aligncycle-import-"):
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"{thread.name} still runs after {timeout:.0f} s"


ORG = [
    # name, email, team, role
    ("Sam Sales", "sam@acme.test", "sales", "point_person"),
    ("Mia Marketing", "mia@acme.test", "marketing", "point_person"),
    ("Lee Saleslead", "lee@acme.test", "sales", "lead"),
    ("Lou Marketinglead", "lou@acme.test", "marketing", "lead"),
    ("Max Manager", "max@acme.test", "sales", "manager"),
    ("Meg Member", "meg@acme.test", "marketing", "member"),
    ("Sid Member", "sid@acme.test", "sales", "member"),
]


@pytest.fixture(scope="session")
def shipped_specs() -> list[tuple[PlaybookSpec, str, str]]:
    """The shipped playbooks, parsed once per session (YAML parsing is the slow part)."""
    from models.playbook import load_playbook_file, playbook_files

    return [(*load_playbook_file(p), p.name) for p in playbook_files(PROJECT / "playbooks")]


@pytest.fixture
def org(store: Store, shipped_specs: list[tuple[PlaybookSpec, str, str]]) -> Store:
    """Two teams, a point person and a lead on each, a manager, two members, and the shipped
    playbooks loaded."""
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people, playbooks

    with store.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="sales", name="Sales"))
        people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
        for name, email, team, role in ORG:
            people.create_person(s, PersonCreate(name=name, email=email, team=team, role=role))
        for spec, digest, source in shipped_specs:
            playbooks.register(s, spec, digest, source)
    return store


def db_snapshot(store: Store) -> dict[str, list[str]]:
    """Every row of every table: a test's proof that a refused operation changed nothing."""
    with store.engine.connect() as conn:
        return every_row(conn)


def every_row(conn: Connection) -> dict[str, list[str]]:
    """Every row of every table as the driver reads it (each row's repr, a table's rows
    sorted), through ``conn`` and in its transaction: plain SQL on the driver's cursor, no
    conversion of types that could hide a change."""
    cursor = conn.connection.dbapi_connection.cursor()
    rows = {}
    try:
        for name, binary in _tables():
            cursor.execute(f'SELECT * FROM "{name}"')
            got = cursor.fetchall()
            if binary:  # (PostgreSQL reads bytes as memoryviews)
                got = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got]
            rows[name] = sorted(repr(tuple(r)) for r in got)
    finally:
        cursor.close()
    return rows


@cache
def _tables() -> list[tuple[str, bool]]:
    """Every table's name, and whether it has a column of bytes."""
    from sqlalchemy import LargeBinary

    from models.metadata import metadata

    return [
        (t.name, any(isinstance(c.type, LargeBinary) for c in t.c)) for t in metadata.sorted_tables
    ]
