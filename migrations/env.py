"""Alembic environment. The URL comes from the caller's config attribute ``connection`` or
``sqlalchemy.url``, else from aligncycle's store settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from models.config import StoreSettings
from models.db import make_engine
from models.metadata import metadata

config = context.config


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or StoreSettings().effective_database_url


def _configure(**kwargs) -> None:  # noqa: ANN003
    context.configure(
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can't ALTER most things: batch mode rebuilds tables
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
