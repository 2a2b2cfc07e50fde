"""Shared fixtures: a migrated store (SQLite by default, PostgreSQL when
``ALIGNCYCLE_TEST_DATABASE_URL`` is set), emptied after every test, and a small organisation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from migrations import runner
from models.config import normalize_database_url
from models.db import Store, make_engine
from models.metadata import metadata
from models.playbook import PlaybookSpec, load_playbook_file, playbook_files
from models.schemas import PersonCreate, TeamCreate
from models.services import people, playbooks
from tests.prefect_fixtures import data_dir, prefect_server  # noqa: E402,F401  (shared fixtures)

PROJECT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("ALIGNCYCLE_TEST_DATABASE_URL")
SHARED_DATA = PROJECT.parent / "shared" / "data"


def _create_pg_database(admin_url: str) -> tuple[str, str]:
    url = make_url(normalize_database_url(admin_url))
    name = f"aligncycle_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(admin_url: str, name: str) -> None:
    admin = create_engine(normalize_database_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for the whole session."""
    if PG_URL:
        url, name = _create_pg_database(PG_URL)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    engine = make_engine(url)
    runner.upgrade(engine)
    engine.dispose()
    yield url
    if PG_URL:
        _drop_pg_database(PG_URL, name)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def store(engine: Engine, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Store]:
    """The migrated store, empty at the start of the test. ``ALIGNCYCLE_DATABASE_URL`` points
    at it, so CLI commands run in the test use the same database."""
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", database_url)
    _empty(engine)
    yield Store(engine)
    _empty(engine)


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
    return [(*load_playbook_file(p), p.name) for p in playbook_files(PROJECT / "playbooks")]


@pytest.fixture
def org(store: Store, shipped_specs: list[tuple[PlaybookSpec, str, str]]) -> Store:
    """Two teams, a point person and a lead on each, a manager, two members, and the shipped
    playbooks loaded."""
    with store.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="sales", name="Sales"))
        people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
        for name, email, team, role in ORG:
            people.create_person(s, PersonCreate(name=name, email=email, team=team, role=role))
        for spec, digest, source in shipped_specs:
            playbooks.register(s, spec, digest, source)
    return store


def db_snapshot(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table: a test's proof that a refused operation changed nothing."""
    with store.engine.connect() as conn:
        return {
            t.name: sorted(
                (tuple(repr(v) for v in row) for row in conn.execute(t.select())),
            )
            for t in metadata.sorted_tables
        }
