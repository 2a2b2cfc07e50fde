"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from migrations import runner
from models.db import make_engine
from models.metadata import metadata


def test_upgrade_downgrade_upgrade_and_no_drift(database_url: str, store) -> None:  # noqa: ANN001
    engine = make_engine(database_url)
    try:
        assert runner.current(engine) == runner.heads()
        runner.downgrade(engine, "base")
        remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        runner.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
        assert runner.current(engine) == runner.heads()
        runner.check(engine)  # raises if the models and the migrations disagree
        _assert_events_guarded(engine)
    finally:
        engine.dispose()


def _log_one(engine: Engine) -> int:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO events (at, verb, object_type) VALUES (:at, 'test.logged', 'test')"),
            {"at": "2025-01-01 00:00:00"},
        )
        return conn.execute(text("SELECT max(id) FROM events")).scalar_one()


def _assert_events_guarded(engine: Engine) -> None:
    event_id = _log_one(engine)
    for sql in ("UPDATE events SET verb = 'x' WHERE id = :id", "DELETE FROM events WHERE id = :id"):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql), {"id": event_id})


def test_0005_guards_the_audit_log_and_its_downgrade_lifts_the_guard(
    database_url: str,
    store,  # noqa: ANN001 - empties the store before and after
) -> None:
    engine = make_engine(database_url)
    try:
        _assert_events_guarded(engine)
        runner.downgrade(engine, "0004")
        event_id = _log_one(engine)
        with engine.begin() as conn:  # 0004 had no guard: the log could be rewritten
            conn.execute(text("UPDATE events SET verb = 'x' WHERE id = :id"), {"id": event_id})
            conn.execute(text("DELETE FROM events"))
        runner.upgrade(engine)
        assert runner.current(engine) == runner.heads()
        _assert_events_guarded(engine)
    finally:
        runner.upgrade(engine)
        engine.dispose()
