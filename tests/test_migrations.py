"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

from sqlalchemy import inspect

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
    finally:
        engine.dispose()
