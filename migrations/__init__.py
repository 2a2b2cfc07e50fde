"""Alembic migrations: the only owner of the schema (see :mod:`migrations.runner`)."""
