"""Scratch PostgreSQL databases for the benchmarks and the tests: a new, empty database with a
recognisable name (``PREFIX_`` and ten hex digits), and dropping it again, even while
connections to it are still open.

It lives in ``bench/`` because the benchmarks must not import from ``tests/`` (the tests
import it from here) and the domain (``models/``) has no business creating databases. It needs
SQLAlchemy and a PostgreSQL driver, nothing test-only. Not a benchmark: it has no ``main``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from models.config import normalize_database_url


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """Create ``PREFIX_<10 hex digits>`` on the server of ``admin_url`` (a database the user
    may connect to, as a user who may create databases). Returns the new database's URL
    (password kept) and its name, for :func:`drop_database`."""
    url = make_url(normalize_database_url(admin_url))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_database(admin_url: str, name: str) -> None:
    """Drop the database ``name`` if it exists, ending the sessions still connected to it
    (``WITH (FORCE)``, PostgreSQL 13 and later)."""
    admin = create_engine(normalize_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database for the length of the block (its URL); dropped at the end, also when
    the block fails."""
    url, name = create_database(admin_url, prefix)
    try:
        yield url
    finally:
        drop_database(admin_url, name)
