"""Run migrations from code (the CLI, tests, the demo) without touching the working directory,
and tell whether a store is at the revision this code needs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine
from sqlalchemy.pool import NullPool

from migrations import sqlite_repair
from models.errors import DomainError

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    ini = HERE.parent / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> list[str]:
    """Migrate the store to ``revision``, in one transaction: an upgrade that is interrupted
    (killed, out of space) leaves the store as it was. On SQLite, an upgrade an older aligncycle
    left half-done is put back first, in the same transaction; returns one line saying what was
    repaired, or nothing."""
    with migration_transaction(engine) as conn:
        repaired = _repair(conn) if conn.dialect.name == "sqlite" else []
        _command(conn, command.upgrade, revision)
    return repaired


def downgrade(engine: Engine, revision: str = "base") -> None:
    with migration_transaction(engine) as conn:
        _command(conn, command.downgrade, revision)


def _command(conn: Connection, run: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    run(cfg, revision)


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction that holds schema changes too, committed when the block
    ends (rolled back on any error).

    PostgreSQL's DDL is transactional as it is. pysqlite's is not, by default: it opens a
    transaction only before INSERT/UPDATE/DELETE and runs CREATE/DROP outside it, each
    committed on its own. So, as SQLAlchemy's "Serializable isolation / Savepoints /
    Transactional DDL" recipe for pysqlite does, its implicit transactions are turned off
    (``isolation_level = None``) and the transaction is begun explicitly: ``BEGIN IMMEDIATE``,
    which also takes the write lock before the first read, so a concurrent writer cannot
    invalidate what the migration read. Foreign keys are not enforced while the schema changes
    (SQLite's own procedure for altering tables: a table rebuilt in batch mode is dropped and
    re-created, and a DROP with enforcement on would delete or refuse the rows pointing at
    it); ``PRAGMA foreign_key_check`` runs before the commit instead, and a violation refuses
    the whole upgrade."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        level = raw.isolation_level
        raw.isolation_level = None  # no implicit BEGIN (that DDL would escape) or COMMIT
        raw.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set it before
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    tables = ", ".join(sorted({row[0] for row in broken}))
                    raise MigrationRefused(
                        f"rows of {tables} would point at rows that do not exist; nothing "
                        "was changed"
                    )
        finally:
            try:
                raw.execute("PRAGMA foreign_keys=ON")
                raw.isolation_level = level
            except Exception:  # noqa: BLE001 - a broken connection is not given back to the pool
                with suppress(Exception):
                    conn.invalidate()


def leftovers(engine: Engine) -> list[str]:
    """What ``db upgrade`` would repair of an upgrade an older aligncycle left half-done (one
    line), or nothing; changes nothing. SQLite only: elsewhere there is nothing to repair."""
    if engine.dialect.name != "sqlite":
        return []
    with engine.connect() as conn:
        return _repair(conn, repair=False)


def _repair(conn: Connection, *, repair: bool = True) -> list[str]:
    """Put back what an older aligncycle left of an interrupted upgrade (SQLite only; see
    :mod:`migrations.sqlite_repair`). One line, or nothing when there was nothing to do."""
    from alembic.runtime.migration import MigrationContext

    objects = conn.exec_driver_sql(
        "SELECT COUNT(*) FROM sqlite_master WHERE name != 'alembic_version'"
    ).scalar_one()
    if not objects:  # a new store
        return []
    found = MigrationContext.configure(conn).get_current_heads()
    if len(found) > 1:
        return []
    at = found[0] if found else None
    following = _next_revision(at)
    if following is None:  # at head, or a revision this code does not know
        return []
    try:
        done = sqlite_repair.half_applied(conn, at, following, _shape_at, repair=repair)
    except sqlite_repair.Unrepairable as exc:
        raise MigrationRefused(
            f"the store was left half-upgraded to revision {following} by an interrupted "
            f"upgrade, and cannot be repaired automatically: {exc}; restore it from a backup"
        ) from None
    if not done:
        return []
    if repair:
        changes = ", ".join(f"{verb} {what}" for verb, what in done)
        return [
            f"repaired a half-done upgrade to revision {following}, left by an interrupted "
            f"upgrade of an older aligncycle: {changes}"
        ]
    changes = ", ".join(what for _verb, what in done)
    return [
        f"an interrupted upgrade to revision {following} left changes to {changes}; "
        "'aligncycle db upgrade' undoes them, then upgrades"
    ]


def _next_revision(at: str | None) -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    for rev in script.walk_revisions():
        down = rev.down_revision
        downs = set(down) if isinstance(down, tuple | list) else {down}
        if at in downs:
            return rev.revision
    return None


@lru_cache(maxsize=8)
def _shape_at(revision: str | None) -> sqlite_repair.Shape:
    """The schema a SQLite store has at ``revision`` (None: an empty store), built in a
    scratch database."""
    from models.db import make_engine

    with tempfile.TemporaryDirectory(prefix="aligncycle-schema-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'scratch.db'}", poolclass=NullPool)
        try:
            with migration_transaction(engine) as conn:
                if revision is not None:
                    _command(conn, command.upgrade, revision)
                return sqlite_repair.shape_of(conn)
        finally:
            engine.dispose()


def check(engine: Engine) -> None:
    """Raise ``alembic.util.exc.AutogenerateDiffsDetected`` if models and migrations differ."""
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


def current(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def revisions() -> set[str]:
    """Every revision this code's migrations know, head included."""
    from alembic.script import ScriptDirectory

    return {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


class MigrationRefused(DomainError):
    """A migration found rows it cannot migrate as they are; the message says which and what
    to do. Raised before it changes anything, so the store stays at its revision."""

    code = "migration_refused"


class StoreNotCurrent(DomainError):
    """The store's schema is not the one this code needs: not set up, behind (it needs
    ``aligncycle db upgrade``), or migrated by a newer aligncycle."""

    code = "store_not_current"


def shown_url(engine: Engine) -> str:
    """The store's URL as people see it in messages: never with a password."""
    from models.db import shown_url

    return shown_url(engine.url)


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot use the store, in one line, or None when the store is at this
    code's head revision. Reads the store's ``alembic_version`` (one small query) and this
    code's migration scripts: meant for start-up and for explaining an error, not for every
    command."""
    found = current(engine)
    needed = heads()
    if found == needed:
        return None
    where = shown_url(engine)
    if not found:
        return f"the store at {where} is not set up; run 'aligncycle db upgrade'"
    have, need = ", ".join(sorted(found)), ", ".join(sorted(needed))
    if not found <= revisions():
        return (
            f"the store at {where} is at revision {have}, which this aligncycle does not know "
            f"(it needs {need}); use the newer aligncycle that migrated it"
        )
    return (
        f"the store at {where} is at revision {have}; this aligncycle needs {need}; "
        "run 'aligncycle db upgrade'"
    )


def require_current(engine: Engine) -> None:
    """Raise :class:`StoreNotCurrent` (one line) unless the store is at this code's head."""
    problem = schema_problem(engine)
    if problem is not None:
        raise StoreNotCurrent(problem)
