"""What every CLI command shares: the store, the acting person, errors and JSON output.

Keep this module light: no Prefect, no FastAPI (read commands must start fast).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from sqlalchemy.orm import Session

from aligncycle.settings import get_settings
from models.db import Store
from models.tables import Person

#: ``--as EMAIL`` on every command that acts.
ACTOR_OPTION = typer.Option(
    None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Email of the acting person.", show_envvar=True
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

_store: Store | None = None


def store() -> Store:
    """The store selected by ``ALIGNCYCLE_DATABASE_URL`` (embedded SQLite by default)."""
    global _store
    if _store is None:
        _store = Store(get_settings().effective_database_url)
    return _store


def reset_store() -> None:
    """Forget the cached store and settings (tests change the environment between runs)."""
    global _store
    if _store is not None:
        _store.dispose()
    _store = None
    get_settings.cache_clear()


@contextmanager
def unit_of_work() -> Iterator[Session]:
    with store().unit_of_work() as session:
        yield session


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: 1 for a refused operation, 2 for bad usage."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def actor(session: Session, email: str | None) -> Person:
    if not email:
        fail("say who is acting: --as EMAIL (or set ALIGNCYCLE_ACTOR)", 2)
    from models.services.common import person_by_email

    return person_by_email(session, email)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(value: Any) -> None:
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(value, default=_default, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[list[Any]], headers: list[str]) -> None:
    """A plain, aligned text table (no colour, pipes well)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    typer.echo(line.rstrip())
    typer.echo("  ".join("-" * w for w in widths))
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
