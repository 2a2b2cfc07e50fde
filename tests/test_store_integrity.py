"""The store's integrity: the audit log cannot be rewritten, even in SQL (migration 0005's
triggers), and a store behind this code's migrations is reported in one line, by the CLI and
by the web app, instead of an SQL error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from aligncycle import cli_common
from migrations import runner
from models import phases
from models.db import Store
from models.schemas import PersonCreate, TeamCreate
from models.services import people
from models.tables import Event
from tests.conftest import PG_URL, _empty, db_snapshot, migrated_store
from tests.test_cli import cli

HEAD = "-".join(sorted(runner.heads()))  # the revision this code needs (one head)

APPEND_ONLY = "the audit log is append-only: events cannot be"


def _events(store: Store) -> list[str]:
    return db_snapshot(store)["events"]


# --- the audit log is append-only ---------------------------------------------------------


@pytest.mark.parametrize(
    "sql, verb",
    [
        ("UPDATE events SET verb = 'edited', actor_id = NULL WHERE id = :id", "updated"),
        ("UPDATE events SET after = NULL", "updated"),
        ("DELETE FROM events WHERE id = :id", "deleted"),
        ("DELETE FROM events", "deleted"),
    ],
)
def test_sql_cannot_update_or_delete_events(org: Store, sql: str, verb: str) -> None:
    before = _events(org)
    assert before  # the organisation's creation is in the log
    with org.engine.connect() as conn:
        first = conn.scalar(select(func.min(Event.id)))
    with pytest.raises(IntegrityError, match=f"{APPEND_ONLY} {verb}"), org.engine.begin() as conn:
        conn.execute(text(sql), {"id": first})
    assert _events(org) == before


def test_the_orm_cannot_rewrite_or_remove_an_event_either(org: Store) -> None:
    before = _events(org)
    with pytest.raises(IntegrityError, match=f"{APPEND_ONLY} updated"), org.unit_of_work() as s:
        s.scalars(select(Event).order_by(Event.id)).first().verb = "edited"
    with pytest.raises(IntegrityError, match=f"{APPEND_ONLY} deleted"), org.unit_of_work() as s:
        s.delete(s.scalars(select(Event).order_by(Event.id)).first())
    assert _events(org) == before


@pytest.mark.skipif(not PG_URL, reason="TRUNCATE is PostgreSQL's")
def test_postgres_refuses_truncate(org: Store) -> None:
    before = _events(org)
    with pytest.raises(IntegrityError, match=f"{APPEND_ONLY} truncated"), org.engine.begin() as c:
        c.execute(text("TRUNCATE events CASCADE"))
    assert _events(org) == before


def test_emptying_the_test_store_puts_the_guard_back(org: Store) -> None:
    """The one deletion of events there is (tests wiping their store) leaves it guarded."""
    assert _events(org)
    _empty(org.engine)
    assert _events(org) == []
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="sales", name="Sales"))  # logs team.created
    with pytest.raises(IntegrityError, match=APPEND_ONLY), org.engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))
    assert len(_events(org)) == 1


# --- a store behind this code's migrations ------------------------------------------------


@pytest.fixture
def behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Engine]]:
    """A store of its own (a SQLite file, or a scratch database on PostgreSQL) with a person,
    taken back to revision 0003: it has no notification tables. The CLI points at it."""
    with migrated_store(tmp_path / "behind.db") as (url, engine):
        store = Store(engine)
        with store.unit_of_work() as s:
            people.create_team(s, TeamCreate(key="sales", name="Sales"))
            people.create_person(
                s, PersonCreate(name="Sam", email="sam@acme.test", team="sales", role="lead")
            )
        runner.downgrade(engine, "0003")
        monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", url)
        yield url, engine
        cli_common.reset_store()


def _rows(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            name: sorted(
                tuple(repr(v) for v in row) for row in conn.execute(text(f"SELECT * FROM {name}"))
            )
            for name in inspect(conn).get_table_names()
        }


@pytest.mark.parametrize(
    "args",
    [
        ["notify", "channel", "list"],
        [
            "notify",
            "channel",
            "add",
            "webhook",
            "json://127.0.0.1:9/hook",
            "--person",
            "sam@acme.test",
            "--as",
            "sam@acme.test",
        ],
    ],
    ids=["read", "write"],
)
def test_a_store_behind_the_code_is_named_with_its_revision(
    behind: tuple[str, Engine], args: list[str]
) -> None:
    url, engine = behind
    before = _rows(engine)
    assert "notifications" not in before
    result = cli(*args, code=1)
    assert result.stdout == ""
    assert result.stderr == (
        f"error: the store at {cli_common.display_url(url)} is at revision 0003; this "
        f"aligncycle needs {HEAD}; run 'aligncycle db upgrade'\n"
    )
    assert _rows(engine) == before


def test_commands_that_need_nothing_new_still_work_on_a_store_behind(
    behind: tuple[str, Engine],
) -> None:
    """No revision check on the way: reads pay nothing for it (only a missing table or
    column asks for the store's revision)."""
    assert "sam@acme.test" in cli("person", "list").stdout


def test_a_store_migrated_by_a_newer_aligncycle_is_named_too(
    behind: tuple[str, Engine],
) -> None:
    url, engine = behind
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    result = cli("notify", "channel", "list", code=1)
    assert result.stderr == (
        f"error: the store at {cli_common.display_url(url)} is at revision 0099, which this "
        f"aligncycle does not know (it needs {HEAD}); use the newer aligncycle that migrated it\n"
    )


def test_the_web_app_refuses_to_start_on_a_store_behind(
    behind: tuple[str, Engine], tmp_path: Path
) -> None:
    from aligncycle.web import create_app
    from aligncycle.web.deps import WebSettings

    url, engine = behind
    settings = WebSettings(data_dir=tmp_path, secret_key="k")
    with pytest.raises(runner.StoreNotCurrent) as refused:
        create_app(Store(engine), settings)
    assert str(refused.value) == (
        f"the store at {cli_common.display_url(url)} is at revision 0003; this aligncycle "
        f"needs {HEAD}; run 'aligncycle db upgrade'"
    )
    runner.upgrade(engine)
    create_app(Store(engine), settings)  # at head: starts


def test_the_check_for_long_running_commands(behind: tuple[str, Engine], capsys: Any) -> None:
    """``require_current_schema`` (for ``serve``): one line and exit 1 on a store behind;
    nothing on a store at head."""
    import typer

    url, engine = behind
    cli_common.reset_store()
    with pytest.raises(typer.Exit) as stopped:
        cli_common.require_current_schema()
    assert stopped.value.exit_code == 1
    assert capsys.readouterr().err == (
        f"error: the store at {cli_common.display_url(url)} is at revision 0003; this "
        f"aligncycle needs {HEAD}; run 'aligncycle db upgrade'\n"
    )
    runner.upgrade(engine)
    cli_common.require_current_schema()
    assert capsys.readouterr().err == ""


def test_serve_refuses_a_store_behind_in_one_line_before_any_worker_starts(
    behind: tuple[str, Engine],
) -> None:
    url, _ = behind
    result = cli("serve", "--workers", "1", "--port", "9", code=1)
    assert result.stdout == ""
    assert result.stderr == (
        f"error: the store at {cli_common.display_url(url)} is at revision 0003; this "
        f"aligncycle needs {HEAD}; run 'aligncycle db upgrade'\n"
    )


# --- one follow-up per cycle, in the store ----------------------------------------------------


def test_upgrading_a_store_with_two_follow_ups_of_one_cycle_names_them_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0006 makes ``cycles.previous_cycle_id`` unique. A store that already holds two
    follow-ups of one cycle (made before the service refused it) is refused in one line and
    stays at its revision; once one of them is re-pointed, the upgrade goes through."""
    from models.schemas import CycleCreate
    from models.services import playbooks
    from models.services.common import person_by_email
    from models.tables import Cycle

    with migrated_store(tmp_path / "twice.db") as (url, engine):
        store = Store(engine)
        with store.unit_of_work() as s:
            people.create_team(s, TeamCreate(key="sales", name="Sales"))
            people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
            people.create_person(
                s,
                PersonCreate(name="Sam", email="sam@acme.test", team="sales", role="point_person"),
            )
            playbooks.sync_directory(s, Path(__file__).resolve().parent.parent / "playbooks")
            sam = person_by_email(s, "sam@acme.test")
            first = phases.start_cycle(
                s, CycleCreate(playbook="sales-marketing-handoff", title="Q1"), sam
            )
            s.flush()
            first_id = first.id
        runner.downgrade(engine, "0005")
        table = Cycle.__table__
        with engine.begin() as conn:  # two follow-ups, as an older release allowed
            row = dict(conn.execute(table.select().where(table.c.id == first_id)).mappings().one())
            row.pop("id")
            for title in ("Q2", "Q2 again"):
                conn.execute(
                    table.insert().values({**row, "title": title, "previous_cycle_id": first_id})
                )
        before = _rows(engine)
        try:
            monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", url)
            result = cli("db", "upgrade", code=1)
            assert result.stderr == (
                f"error: these cycles have more than one follow-up: cycle {first_id} (2); give all "
                "but one of each a different previous cycle (or none), then run 'aligncycle db "
                "upgrade' again\n"
            )
            assert runner.current(engine) == {"0005"}
            assert _rows(engine) == before
            with engine.begin() as conn:
                conn.execute(
                    table.update().where(table.c.title == "Q2 again").values(previous_cycle_id=None)
                )
            assert "is at revision" in cli("db", "upgrade").stdout
            assert runner.current(engine) == runner.heads()
        finally:
            cli_common.reset_store()  # its engine, before the scratch database is dropped
