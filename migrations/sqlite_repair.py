"""Finding and undoing an upgrade that an older aligncycle left half-done on SQLite.

Before this release, pysqlite ran each migration's DDL outside the transaction (it opens one
only before INSERT/UPDATE/DELETE), so a SIGKILL or a full disk during ``db upgrade`` could
leave ``alembic_version`` at revision R with part of revision R+1 applied: an index dropped, a
new one created, a new table, a trigger. Every later upgrade then failed on "already exists".
Only DDL before the first row written could escape that way, so what is left over is schema,
never half-copied rows.

:func:`half_applied` compares the store with the schema revision R has (built in a scratch
database) and with the one R+1 has; whatever R+1 changed is put back as R had it, so the
upgrade can run again, in one transaction. What cannot be put back without losing a record (a
new table that already holds rows, a column or table R had that is gone) is refused, named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection


class Unrepairable(Exception):
    """The store differs from its revision in a way that cannot be undone safely."""


@dataclass
class Shape:
    """What a SQLite schema consists of, as far as migrations are concerned."""

    #: table name -> its column names, in order
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: index name -> (table, columns, unique, partial)
    indexes: dict[str, tuple] = field(default_factory=dict)
    #: trigger name -> its SQL, whitespace normalised
    triggers: dict[str, str] = field(default_factory=dict)
    #: object name -> the SQL that creates it (indexes and triggers)
    sql: dict[str, str] = field(default_factory=dict)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shape_of(conn: Connection) -> Shape:
    """The schema of the SQLite database behind ``conn`` (Alembic's own table left out)."""
    shape = Shape()
    rows = conn.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name != 'alembic_version' "
        "AND tbl_name != 'alembic_version' ORDER BY type, name"
    ).all()
    for kind, name, _table, _sql in rows:
        if kind == "table":
            cols = conn.exec_driver_sql(f"PRAGMA table_info({_quote(name)})").all()
            shape.tables[name] = tuple(c[1] for c in cols)
    for kind, name, table, sql in rows:
        if kind == "index" and sql:  # no SQL: made by a UNIQUE constraint, part of its table
            listed = conn.exec_driver_sql(f"PRAGMA index_list({_quote(table)})").all()
            info = next((r for r in listed if r[1] == name), None)
            unique = bool(info[2]) if info else "UNIQUE" in sql.upper().split("INDEX")[0]
            partial = bool(info[4]) if info and len(info) > 4 else False
            cols = conn.exec_driver_sql(f"PRAGMA index_info({_quote(name)})").all()
            shape.indexes[name] = (table, tuple(c[2] for c in cols), unique, partial)
            shape.sql[name] = sql
        elif kind == "trigger" and sql:
            shape.triggers[name] = " ".join(sql.split())
            shape.sql[name] = sql
    return shape


def _rows(conn: Connection, table: str) -> int:
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {_quote(table)}").scalar_one()


def half_applied(
    conn: Connection,
    at: str | None,
    following: str,
    shape_at: Callable[[str | None], Shape],
    *,
    repair: bool,
) -> list[tuple[str, str]]:
    """What revision ``following`` left in a store whose ``alembic_version`` says ``at``
    (None: no revision yet), as (verb, object) pairs of what was (or, with ``repair=False``,
    would be) undone: ``("restored", "index ix_a")``. Raises :class:`Unrepairable` for what
    cannot be undone without losing rows."""
    store = shape_of(conn)
    before, after = shape_at(at), shape_at(following)
    done: list[tuple[str, str]] = []

    def run(sql: str, verb: str, what: str) -> None:
        done.append((verb, what))
        if repair:
            conn.exec_driver_sql(sql)

    # Tables the next revision creates: dropped while empty (the rows it would have copied in
    # were written in the transaction that was rolled back).
    for name in sorted(set(after.tables) - set(before.tables)):
        if name in store.tables:
            if _rows(conn, name):
                raise Unrepairable(
                    f"table {name}, which revision {following} creates, already holds rows"
                )
            run(f"DROP TABLE {_quote(name)}", "removed", f"table {name}")
    # Alembic's copies of a table being rebuilt (batch mode): the original is still there.
    for name in sorted(store.tables):
        if name.startswith("_alembic_tmp_"):
            original = name.removeprefix("_alembic_tmp_")
            if original not in store.tables or _rows(conn, name):
                raise Unrepairable(f"table {original} was left half-rebuilt ({name})")
            run(f"DROP TABLE {_quote(name)}", "removed", f"table {name}")
    for name, columns in sorted(before.tables.items()):
        have = store.tables.get(name)
        if have is None:
            raise Unrepairable(f"table {name} of revision {at} is missing")
        missing = [c for c in columns if c not in have]
        if missing:
            raise Unrepairable(f"table {name} lacks column {', '.join(missing)}")
        for extra in [c for c in have if c not in columns]:
            if extra in after.tables.get(name, ()):
                run(
                    f"ALTER TABLE {_quote(name)} DROP COLUMN {_quote(extra)}",
                    "removed",
                    f"column {name}.{extra}",
                )
    if repair:
        store = shape_of(conn)
    for kind, mine, theirs, next_ in (
        ("index", store.indexes, before.indexes, after.indexes),
        ("trigger", store.triggers, before.triggers, after.triggers),
    ):
        for name in sorted(set(theirs) | set(next_)):
            have, want, then = mine.get(name), theirs.get(name), next_.get(name)
            if have == want:
                continue
            # Between R and R+1 an object may be as either has it, or gone (dropped to be
            # re-created: an index changed, a table rebuilt); anything else is not ours.
            if have is not None and have != then:
                raise Unrepairable(
                    f"{kind} {name} is neither as revision {at} nor as {following} has it"
                )
            if have is not None and want is not None:
                verb = "restored"
            else:
                verb = "removed" if want is None else "put back"
            if have is not None and repair:
                conn.exec_driver_sql(f"DROP {kind.upper()} {_quote(name)}")
            if want is not None and repair:
                conn.exec_driver_sql(before.sql[name])
            done.append((verb, f"{kind} {name}"))
    if done and repair and half_applied(conn, at, following, shape_at, repair=False):
        raise Unrepairable(f"the schema still differs from revision {at} after the repair")
    return done
