"""What every CLI command shares: the store, the acting person, errors and JSON output.

Keep this module light: no Prefect, no FastAPI, and no SQLAlchemy until a command opens the
store (read commands must start fast; ``--help`` and ``playbook validate`` need no database).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import BaseModel
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors its own click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exc  # type: ignore[no-redef]

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.db import Store
    from models.tables import Person

#: ``--as EMAIL`` on every command that acts.
ACTOR_OPTION = typer.Option(
    None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Email of the acting person.", show_envvar=True
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
#: Dates on the command line: ISO ``YYYY-MM-DD``.
DATE_FORMATS = ["%Y-%m-%d"]

_store: Store | None = None


def database_url() -> str:
    """The store's URL: ``ALIGNCYCLE_DATABASE_URL``, else the embedded SQLite file in
    ``ALIGNCYCLE_DATA_DIR``.

    The same answer as ``aligncycle.settings.Settings().effective_database_url`` (a test holds
    the two together), read without importing pydantic-settings: that import alone is about a
    tenth of a read command's start-up.
    """
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("ALIGNCYCLE_")}
    url = env.get("ALIGNCYCLE_DATABASE_URL")
    if url:
        if url.startswith("postgres://"):  # as models.config.normalize_database_url
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    if "ALIGNCYCLE_DATA_DIR" in env:
        data_dir = Path(env["ALIGNCYCLE_DATA_DIR"])
    else:
        data_dir = Path.home() / ".local" / "share" / "aligncycle"
    return f"sqlite:///{data_dir / 'aligncycle.db'}"


def display_url(url: str | None = None) -> str:
    """The store's URL as shown to users: never with a password."""
    url = url or database_url()
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, minus credentials
        return url.split("@", 1)[-1]
    if parsed.password is not None:
        parsed = parsed._replace(password=None)  # URL.set() cannot unset a field
    return parsed.render_as_string(hide_password=False)


def store() -> Store:
    """The store selected by ``ALIGNCYCLE_DATABASE_URL`` (embedded SQLite by default)."""
    global _store
    if _store is None:
        from models.db import Store

        _store = Store(database_url())
    return _store


def close_store() -> None:
    """Close the store's connections (the console script does, as the process exits)."""
    global _store
    if _store is not None:
        _store.dispose()
        _store = None


def reset_store() -> None:
    """Forget the cached store and settings (tests change the environment between runs)."""
    global _store
    from aligncycle.settings import get_settings

    if _store is not None:
        _store.dispose()
    _store = None
    get_settings.cache_clear()


def _sqlite_file(url: str) -> Path | None:
    """The file of an embedded SQLite URL (None for other stores and in-memory ones)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path.split("?", 1)[0])


def not_set_up_message(url: str | None = None) -> str:
    return f"the store at {display_url(url)} is not set up; run 'aligncycle db upgrade'"


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction on the store. A missing SQLite file is reported, not created."""
    url = database_url()
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        fail(not_set_up_message(url))
    with store().unit_of_work() as session:
        yield session


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: 1 for a refused operation, 2 for bad usage."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


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
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    typer.echo("\n".join(lines))


def clip(text: str | None, width: int = 60) -> str:
    """One line of at most ``width`` characters, for table cells."""
    if text is None:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- errors -------------------------------------------------------------------------------


def _database_error(exc: Exception) -> str | None:
    """A one-line message for a database error the user can act on, or None."""
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, sa_exc.DBAPIError | sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        return None
    url = database_url()
    if isinstance(exc, sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        return f"cannot use the store URL {display_url(url)}: {one_line(str(exc))}"
    orig = getattr(exc, "orig", None) or exc
    detail = one_line(str(orig)).lower()
    kind = type(orig).__name__
    first = one_line(str(orig)) or kind
    missing_table = (
        "no such table" in detail
        or kind == "UndefinedTable"
        or ("relation" in detail and "does not exist" in detail)
    )
    missing_column = "no such column" in detail or kind == "UndefinedColumn"
    if missing_table or missing_column:
        try:
            problem = _schema_problem(url)
        except Exception:  # noqa: BLE001 - cannot tell the revision: say what is likely
            if missing_table:
                return not_set_up_message(url)
            return (
                f"the store at {display_url(url)} has an older schema; run 'aligncycle db upgrade'"
            )
        if problem is not None:
            return problem
        # At this code's revision and still missing something: changed by hand; say what.
        return f"the store at {display_url(url)} refused the operation: {first}"
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return f"cannot reach the store at {display_url(url)}: {first}"
    if isinstance(exc, sa_exc.IntegrityError):
        return f"the change conflicts with data already stored ({first}); reload and try again"
    return f"the store at {display_url(url)} refused the operation: {first}"


def _schema_problem(url: str) -> str | None:
    """The store's revision against the one this aligncycle needs, in one line (None when they
    match). Asked only after a table or column turned out missing, so that commands on a
    current store pay nothing for it (reading the migration scripts takes a while)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return not_set_up_message(url)
    from migrations import runner

    return runner.schema_problem(store().engine)


def require_current_schema() -> None:
    """Refuse, in one line, unless the store is at the revision this aligncycle needs: for
    commands that start something long-running (``serve``), which should not start on a
    store they will fail on. Other commands learn it only when a table or column is missing
    (see :func:`_database_error`)."""
    problem = _schema_problem(database_url())
    if problem is not None:
        fail(problem)


def error_exit_code(exc: BaseException) -> int | None:
    """Print one line for ``exc`` on stderr and return the exit code; None if not ours to map.

    DomainError: 1. Pydantic validation of command-line input: 2 (bad usage). Database
    errors: 1, with what to do about them.
    """
    from models.errors import DomainError

    if isinstance(exc, DomainError):
        typer.echo(f"error: {one_line(exc.message)}", err=True)
        return 1
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, ValidationError):
        from models.schemas import validation_message

        typer.echo(f"error: {one_line(validation_message(exc))}", err=True)
        return 2
    if isinstance(exc, Exception):
        message = _database_error(exc)
        if message is not None:
            typer.echo(f"error: {message}", err=True)
            return 1
    return None


class ErrorMappingGroup(TyperGroup):
    """The top-level command group: every failure becomes one line on stderr and an exit code.

    Bad usage (unknown option, bad enum value, bad date) exits 2; refused operations exit 1.
    Works the same under ``typer.testing.CliRunner`` (which calls :meth:`main`) as from the
    console script. ``ALIGNCYCLE_DEBUG=1`` re-raises unexpected errors with their traceback.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exc.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except click_exc.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            message = one_line(exc.format_message()).replace("Value error, ", "")
            typer.echo(f"error: {message}{hint}", err=True)
            return 2
        except click_exc.ClickException as exc:
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            return exc.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            return 1
        except Exception as exc:  # noqa: BLE001 - the one place errors become messages
            code = error_exit_code(exc)
            if code is not None:
                return code
            if os.environ.get("ALIGNCYCLE_DEBUG"):
                raise
            typer.echo(
                f"error: unexpected {type(exc).__name__}: {one_line(str(exc)) or 'no detail'} "
                "(set ALIGNCYCLE_DEBUG=1 to see the traceback)",
                err=True,
            )
            return 1
        return rv if isinstance(rv, int) else 0
