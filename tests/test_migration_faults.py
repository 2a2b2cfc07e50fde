"""Interrupted upgrades on SQLite (issue 11, item 3).

- ``aligncycle db upgrade`` run in a subprocess and killed (SIGKILL, SIGINT) at several points
  of migration 0006, or running out of space in the middle of it, leaves a consistent store:
  at the revision it had or at the new one, nothing half-done, every row kept; running it again
  brings the store to head.
- A store that an older aligncycle left half-upgraded (``alembic_version`` at R, part of R+1
  applied, as pysqlite ran DDL outside the transaction) is repaired by ``db upgrade``, which
  says in one line what it undid; what cannot be undone without losing rows is refused, named.
- The store's file is created 0600 and its folder 0700.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

from migrations import runner, sqlite_repair
from models.db import Store, make_engine
from models.schemas import PersonCreate, TeamCreate
from models.services import people, playbooks
from tests.conftest import PROJECT
from tests.test_cli import cli

pytestmark = pytest.mark.sqlite_only

HEAD = "-".join(sorted(runner.heads()))

#: Runs ``aligncycle ARGS`` with SQLAlchemy listeners that stop the process at one point of its
#: work on the store (not on the scratch databases the upgrade builds to compare schemas with):
#: right after the N-th statement matching KILL_AT ran, or as the transaction is about to
#: commit (KILL_AT=COMMIT). KILL_SIGNAL says how (KILL, INT). FULL_AFTER_PAGES=n caps the
#: database at its size plus n pages, as a full disk would ("database or disk is full").
HARNESS = r"""
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

point = os.environ.get("KILL_AT")
nth = int(os.environ.get("KILL_NTH", "1"))
sig = getattr(signal, "SIG" + os.environ.get("KILL_SIGNAL", "KILL"))
seen = 0
store = os.environ["ALIGNCYCLE_DATABASE_URL"]

def ours(conn):
    return conn.engine.url.render_as_string(hide_password=False) == store

def stop():
    sys.stdout.flush()
    os.kill(os.getpid(), sig)

if point == "COMMIT":
    @event.listens_for(Engine, "commit")
    def _commit(conn):
        if ours(conn):
            stop()
elif point:
    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, many):
        global seen
        if point in statement and ours(conn):
            seen += 1
            if seen == nth:
                stop()

extra = os.environ.get("FULL_AFTER_PAGES")
if extra:
    @event.listens_for(Engine, "connect")
    def _cap(dbapi_conn, record):
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + int(extra)}")

from aligncycle.cli import main
sys.argv = ["aligncycle", *sys.argv[1:]]
main()
"""


def _aligncycle(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "ALIGNCYCLE_DATABASE_URL": f"sqlite:///{db}",
        "ALIGNCYCLE_DATA_DIR": str(db.parent),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", HARNESS, *args],
        cwd=PROJECT,
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table but Alembic's, read with the plain sqlite3 module (tables with
    no rows left out: a later revision may rename or replace an empty table)."""
    with sqlite3.connect(db) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
            )
        ]
        rows = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
        return {t: r for t, r in rows.items() if r}


def _state(db: Path) -> tuple[set[str], list[str], str]:
    """(revision, what an older upgrade left half-done, integrity check) of a store file."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            check = conn.exec_driver_sql("PRAGMA integrity_check").scalar_one()
        return runner.current(engine), runner.leftovers(engine), check
    finally:
        engine.dispose()


def _head_shape(db: Path) -> sqlite_repair.Shape:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return sqlite_repair.shape_of(conn)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def at_0005(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with people and the shipped playbooks, downgraded to 0005 (the revision before
    the one whose index changes the issue interrupted)."""
    db = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{db}")
    runner.upgrade(engine)
    with Store(engine).unit_of_work() as s:
        people.create_team(s, TeamCreate(key="sales", name="Sales"))
        people.create_person(
            s, PersonCreate(name="Sam", email="sam@acme.test", team="sales", role="point_person")
        )
        playbooks.sync_directory(s, PROJECT / "playbooks")
    runner.downgrade(engine, "0005")
    with engine.connect() as conn:  # no free pages: new ones grow the file (see FULL_AFTER_PAGES)
        conn.exec_driver_sql("VACUUM")
    engine.dispose()  # the last connection checkpoints the WAL into the file
    return db


@pytest.fixture
def store_0005(at_0005: Path, tmp_path: Path) -> Path:
    db = tmp_path / "store" / "aligncycle.db"
    db.parent.mkdir()
    shutil.copy(at_0005, db)
    return db


@pytest.fixture(scope="module")
def head_shape(tmp_path_factory: pytest.TempPathFactory) -> sqlite_repair.Shape:
    db = tmp_path_factory.mktemp("head") / "head.db"
    engine = make_engine(f"sqlite:///{db}")
    runner.upgrade(engine)
    engine.dispose()
    return _head_shape(db)


# --- killed or out of space in the middle of an upgrade ------------------------------------


@pytest.mark.parametrize(
    "point, nth, sig, revision",
    [
        # 0006's first change: the old index on cycles.previous_cycle_id dropped
        ("DROP INDEX ix_cycles_previous_cycle_id", 1, "KILL", "0005"),
        # the unique one created in its place, before the other indexes
        ("CREATE UNIQUE INDEX ix_cycles_previous_cycle_id", 1, "KILL", "0005"),
        ("CREATE INDEX ix_action_items_cycle_progress", 1, "INT", "0005"),
        # every change made, and alembic_version moved on, not committed
        ("UPDATE alembic_version", 1, "KILL", "0005"),
        ("UPDATE alembic_version", 1, "INT", "0005"),
        ("COMMIT", 1, "KILL", "0005"),
        # committed; killed while loading the playbooks that follow
        ("FROM playbooks", 1, "KILL", HEAD),
    ],
)
def test_an_upgrade_killed_midway_leaves_a_consistent_store_that_a_rerun_completes(
    store_0005: Path,
    head_shape: sqlite_repair.Shape,
    point: str,
    nth: int,
    sig: str,
    revision: str,
) -> None:
    before = _rows(store_0005)
    killed = _aligncycle(
        store_0005, "db", "upgrade", KILL_AT=point, KILL_NTH=str(nth), KILL_SIGNAL=sig
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert "Traceback" not in killed.stderr
    # Where it stopped: at one revision or the other, nothing half-done, every row there.
    assert _state(store_0005) == ({revision}, [], "ok")
    assert _rows(store_0005) == before

    again = _aligncycle(store_0005, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"is at revision {HEAD}" in again.stdout
    assert "repaired" not in again.stdout
    assert _state(store_0005) == ({HEAD}, [], "ok")
    assert _head_shape(store_0005) == head_shape
    assert _rows(store_0005) == before


def test_an_upgrade_that_runs_out_of_space_changes_nothing_and_says_so(
    store_0005: Path, head_shape: sqlite_repair.Shape
) -> None:
    before = _rows(store_0005)
    full = _aligncycle(store_0005, "db", "upgrade", FULL_AFTER_PAGES="0")
    assert full.returncode == 75, full.stderr
    assert full.stdout == ""
    assert full.stderr == (
        f"error: the store at sqlite:///{store_0005} is out of space; try again in a minute\n"
    )
    assert _state(store_0005) == ({"0005"}, [], "ok")
    assert _rows(store_0005) == before

    again = _aligncycle(store_0005, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert _state(store_0005) == ({HEAD}, [], "ok")
    assert _head_shape(store_0005) == head_shape


# --- a store an older aligncycle left half-upgraded ----------------------------------------


def _autocommit(db: Path, statements: list[str]) -> None:
    """Run DDL as the older aligncycle did on SQLite: each statement committed on its own."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


def test_db_upgrade_repairs_the_half_applied_0006_of_the_issue_in_one_line(
    store_0005: Path, head_shape: sqlite_repair.Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state the issue found: alembic_version at 0005, the old index on
    ``cycles.previous_cycle_id`` dropped, the unique one created (and the next one too)."""
    _autocommit(
        store_0005,
        [
            "DROP INDEX ix_cycles_previous_cycle_id",
            "CREATE UNIQUE INDEX ix_cycles_previous_cycle_id ON cycles (previous_cycle_id)",
            "CREATE INDEX ix_action_items_cycle_progress "
            "ON action_items (cycle_id, status, confidence, due_date)",
        ],
    )
    before = _rows(store_0005)
    revision, left, _ = _state(store_0005)
    assert revision == {"0005"}
    assert left == [
        "an interrupted upgrade to revision 0006 left changes to index "
        "ix_action_items_cycle_progress, index ix_cycles_previous_cycle_id; 'aligncycle db "
        "upgrade' undoes them, then upgrades"
    ]
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", f"sqlite:///{store_0005}")
    result = cli("db", "upgrade")
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "repaired a half-done upgrade to revision 0006, left by an interrupted upgrade of an "
        "older aligncycle: removed index ix_action_items_cycle_progress, restored index "
        "ix_cycles_previous_cycle_id"
    )
    assert lines[1] == f"store sqlite:///{store_0005} is at revision {HEAD}"
    assert _state(store_0005) == ({HEAD}, [], "ok")
    assert _head_shape(store_0005) == head_shape
    assert _rows(store_0005) == before


def _ddl_of(revisions: list[str], tmp: Path) -> dict[str, tuple[str | None, list[str]]]:
    """Each of ``revisions`` (in order, from the first): (the revision before, the DDL
    statements it runs on SQLite), captured from one scratch store upgraded a revision at a
    time (each revision's statements those of an upgrade from the one before)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(runner.alembic_config())
    engine = make_engine(f"sqlite:///{tmp / 'ddl.db'}")
    statements: list[str] = []

    def grab(conn, cursor, statement, *_):  # noqa: ANN001, ANN002
        verb = statement.lstrip().split(" ", 1)[0].upper()
        if verb in {"CREATE", "DROP", "ALTER"} and "alembic_version" not in statement:
            statements.append(statement)

    found: dict[str, tuple[str | None, list[str]]] = {}
    try:
        event.listen(engine, "after_cursor_execute", grab)
        for revision in revisions:
            previous = script.get_revision(revision).down_revision
            assert runner.current(engine) == ({previous} if previous else set())
            statements.clear()
            runner.upgrade(engine, revision)
            found[revision] = (previous, list(statements))
    finally:
        engine.dispose()
    return found


#: The revisions a release without transactional upgrades shipped (up to 0006): only those can
#: be found half-applied. Later revisions run in one transaction from their first release.
OLD_REVISIONS = [r for r in sorted(runner.revisions()) if r <= "0006"]


@pytest.fixture(scope="module")
def every_revision(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The DDL of each revision an older release shipped."""
    return _ddl_of(OLD_REVISIONS, tmp_path_factory.mktemp("ddl"))


@pytest.mark.parametrize("revision", OLD_REVISIONS)
def test_any_revision_left_half_applied_is_repaired(
    revision: str,
    every_revision: dict[str, tuple],
    head_shape: sqlite_repair.Shape,
    tmp_path: Path,
) -> None:
    """For every revision: its first statement, half of them, and all but the version bump,
    applied to a store at the revision before (as an interrupted older upgrade left them);
    ``db upgrade`` repairs each and reaches head."""
    previous, ddl = every_revision[revision]
    assert ddl, f"revision {revision} changes no schema on SQLite?"
    template = tmp_path / "template.db"
    engine = make_engine(f"sqlite:///{template}")
    if previous is not None:
        runner.upgrade(engine, previous)
    else:  # what an older upgrade created first: Alembic's table, empty
        runner.upgrade(engine, revision)
        runner.downgrade(engine, "base")
    engine.dispose()
    for count in sorted({1, (len(ddl) + 1) // 2, len(ddl)}):
        db = tmp_path / f"{count}.db"
        shutil.copy(template, db)
        _autocommit(db, ddl[:count])
        revision_found, left, _ = _state(db)
        assert revision_found == ({previous} if previous else set())
        assert left, (revision, count)
        engine = make_engine(f"sqlite:///{db}")
        try:
            repaired = runner.upgrade(engine)
            assert len(repaired) == 1 and repaired[0].startswith(
                f"repaired a half-done upgrade to revision {revision}"
            )
        finally:
            engine.dispose()
        assert _state(db) == ({HEAD}, [], "ok")
        assert _head_shape(db) == head_shape


def _fill_one_row(db: Path, table: str) -> None:
    """One row in ``table``, a plausible value in each column."""
    with sqlite3.connect(db) as conn:
        cols = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        values = []
        for _cid, _name, kind, *_ in cols:
            kind = kind.upper()
            if "INT" in kind or "NUM" in kind or "FLOAT" in kind or "BOOL" in kind:
                values.append(1)
            elif "DATE" in kind or "TIME" in kind:
                values.append("2025-01-01 00:00:00")
            else:
                values.append("x")
        names = ", ".join(f'"{c[1]}"' for c in cols)
        marks = ", ".join("?" for _ in cols)
        conn.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', values)


def test_a_half_applied_table_that_already_holds_rows_is_refused_not_dropped(
    every_revision: dict[str, tuple], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repairing never deletes a record: a table the next revision creates that holds rows
    (somebody wrote to it) is named, and the store is left as it is."""
    previous, ddl = every_revision["0002"]
    db = tmp_path / "aligncycle.db"
    engine = make_engine(f"sqlite:///{db}")
    runner.upgrade(engine, previous)
    engine.dispose()
    _autocommit(db, [ddl[0]])
    table = ddl[0].split("TABLE", 1)[1].split("(", 1)[0].strip().strip('"')
    _fill_one_row(db, table)
    before = _rows(db)
    monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", f"sqlite:///{db}")
    result = cli("db", "upgrade", code=1)
    assert result.stdout == ""
    assert result.stderr == (
        "error: the store was left half-upgraded to revision 0002 by an interrupted upgrade, "
        f"and cannot be repaired automatically: table {table}, which revision 0002 creates, "
        "already holds rows; restore it from a backup\n"
    )
    assert _rows(db) == before
    engine = make_engine(f"sqlite:///{db}")
    assert runner.current(engine) == {previous}
    engine.dispose()


# --- the store's file is private -----------------------------------------------------------


def test_a_new_store_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    db = tmp_path / "new" / "folder" / "aligncycle.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        runner.upgrade(engine)
        with engine.connect() as conn:  # WAL files made while the store is open
            conn.execute(text("SELECT 1 FROM people"))
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in db.parent.iterdir()
                if p.name.startswith("aligncycle.db")
            }
    finally:
        engine.dispose()
    assert modes.get("aligncycle.db") == 0o600
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_an_existing_file_and_folder_keep_their_modes(tmp_path: Path) -> None:
    """Made by the operator (say, shared with a group on purpose): left as they are."""
    db = tmp_path / "aligncycle.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    engine: Engine = make_engine(f"sqlite:///{db}")
    try:
        runner.upgrade(engine)
    finally:
        engine.dispose()
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
