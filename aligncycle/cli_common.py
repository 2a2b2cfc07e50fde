"""What every CLI command shares: the store, the acting person, errors and JSON output.

Keep this module light: no Prefect, no FastAPI, and no SQLAlchemy until a command opens the
store (read commands must start fast; ``--help`` and ``playbook validate`` need no database).

Why one file of this size: the one place every command's start-up, errors and output pass
through; split, each command would pay for more imports at start-up.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
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
    """The store's URL as shown to users: never with a password (``user:pass@`` or
    ``?password=``)."""
    from models.db import shown_url

    return shown_url(url or database_url())


def masked(text: str) -> str:
    """``text`` without the store URL's password, wherever a driver's message quoted it."""
    url = database_url()
    if "@" not in url and "password" not in url.lower():
        return text  # nothing secret in it (and no SQLAlchemy import for a read command)
    from models.db import mask_secrets

    return mask_secrets(text, url)


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


#: Exit codes: a refused operation, bad usage, the store unavailable (busy, unreachable, out of
#: space: try again later; sysexits.h's EX_TEMPFAIL).
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 75


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """One line on stderr and a non-zero exit: 1 for a refused operation, 2 for bad usage."""
    say_error(message)
    raise typer.Exit(code)


def say_error(message: str) -> None:
    """``error: MESSAGE`` on stderr: one line, never with the store's password."""
    typer.echo(f"error: {masked(one_line(message))}", err=True)


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


_JSON_CONTROL = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _json_text(value: Any) -> str:
    """``value`` as indented JSON (a pydantic model as its JSON form)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = json.dumps(value, default=_default, indent=2, ensure_ascii=False)
    # json escapes C0 controls itself; escape C1 controls and bidi overrides too, so that the
    # data stays whole and the terminal gets no control character (see printable()).
    return _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def emit_json(value: Any) -> None:
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    sys.stdout.write(_json_text(value) + "\n")


def emit_json_array(items: Iterable[Any]) -> None:
    """A JSON array written an item at a time, as :func:`emit_json` writes a list: for lists
    too long to hold at once (a million data-quality flags)."""
    out = sys.stdout
    first = True
    for item in items:
        out.write(("[\n" if first else ",\n") + "  " + _json_text(item).replace("\n", "\n  "))
        first = False
    out.write("[]\n" if first else "\n]\n")


def table(rows: list[list[Any]], headers: list[str]) -> None:
    """A plain, aligned text table (no colour, pipes well); a status or other enum value is
    shown in its words ("in progress", not "in_progress")."""
    from enum import Enum

    from models.words import value_word

    cells = [
        [("" if c is None else value_word(c) if isinstance(c, Enum) else str(c)) for c in row]
        for row in rows
    ]
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
        return f"cannot use the store URL {display_url(url)}: {masked(one_line(str(exc)))}"
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
        return f"the store at {display_url(url)} failed: {first}"
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


def unavailable_message(exc: BaseException) -> str | None:
    """One line for an outage of the store (locked past the busy timeout, out of space,
    unreachable), or None when ``exc`` is something else."""
    if "sqlalchemy" not in sys.modules:
        return None  # no store was opened
    from models.db import UNREACHABLE, outage

    down = outage(exc)
    if down is None:
        return None
    message = down.where(database_url())
    if down.kind == UNREACHABLE and down.detail:
        # What the driver said (connection refused, no such host, shut down): an operator
        # can tell a stopped server from a wrong address.
        reason = down.detail.strip().split("\n", 1)[0].rsplit(": ", 1)[-1].strip().rstrip(".")
        message = message.replace(" is unreachable;", f" is unreachable ({reason});", 1)
    return message


#: The command that resolves a refusal, by the domain's ``next_step`` key (the domain says it
#: in the web app's words; the terminal adds the command).
NEXT_STEP_COMMANDS = {
    "advance": "aligncycle cycle advance {0}",
    "load_playbooks": "aligncycle playbook load",
    "funnel_import": "aligncycle funnel import",
}


def command_hint(exc: Any) -> str:
    """`` (run: aligncycle …)`` for a refusal a command resolves, else ""."""
    step = getattr(exc, "next_step", None)
    template = NEXT_STEP_COMMANDS.get(str(step[0])) if step else None
    if template is None:
        return ""
    return f" (run: {template.format(*step[1:])})"


def error_exit_code(exc: BaseException) -> int | None:
    """Print one line for ``exc`` on stderr and return the exit code; None if not ours to map.

    DomainError: 1. Pydantic validation of command-line input: 2 (bad usage). The store
    unavailable (busy, out of space, unreachable): 75, try again later. Other database errors:
    1, with what to do about them.
    """
    from models.errors import DomainError

    if isinstance(exc, DomainError):
        say_error(exc.message + command_hint(exc))
        return EXIT_REFUSED
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, ValidationError):
        from models.schemas import validation_message

        say_error(validation_message(exc))
        return EXIT_USAGE
    if isinstance(exc, Exception):
        message = unavailable_message(exc)
        if message is not None:
            say_error(message)
            return EXIT_UNAVAILABLE
        message = _database_error(exc)
        if message is not None:
            say_error(message)
            return EXIT_REFUSED
    return None


# --- what reaches the terminal --------------------------------------------------------------

#: Terminal control sequences and characters: CSI (colours, cursor moves, clearing), OSC
#: (window title, hyperlinks), DCS/SOS/PM/APC strings, other escapes, then any C0/C1 control
#: character but newline and tab, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """``text`` with terminal control sequences and characters removed (newlines and tabs
    kept; a CR LF becomes a newline)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


class _Printable(io.TextIOBase):
    """A text stream that passes on what is written with :func:`printable` applied: whatever
    a command prints (a retrospective typed on the web, a title, an error), the terminal gets
    text, never an escape sequence. No ``buffer`` attribute, so that Click writes through it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        clean = printable(text)
        try:
            self._stream.write(clean)
        except UnicodeEncodeError:  # a terminal that cannot show some character
            encoding = self.encoding or "ascii"
            self._stream.write(clean.encode(encoding, "replace").decode(encoding))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)


# --- numbers on the command line ------------------------------------------------------------

#: The largest whole number a command takes: ids and counts are 32-bit integers in the store.
MAX_NUMBER = 2**31 - 1
#: The years a date on the command line may have: wide enough for any history a funnel export
#: holds, narrow enough that date arithmetic cannot overflow. (Planning dates, such as a cycle's
#: period, are held to 2000-2100 by the domain's schemas.)
YEARS = (1900, 2200)


def _out_of_range(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        return f"{value} is out of range (at most {MAX_NUMBER})"
    if isinstance(value, date) and not YEARS[0] <= value.year <= YEARS[1]:
        return f"{value:%Y-%m-%d} is not a date between {YEARS[0]} and {YEARS[1]}"
    return None


def _bounded_number(original: Any) -> Any:
    def check(ctx: Any, param: Any, value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else [value]:
            problem = _out_of_range(item)
            if problem is not None:
                raise click_exc.BadParameter(problem, ctx=ctx, param=param)
        return original(ctx, param, value) if original is not None else value

    check.aligncycle_bounded = True  # type: ignore[attr-defined]
    return check


def bound_numbers(command: Any) -> None:
    """Refuse, as bad usage, any whole number beyond :data:`MAX_NUMBER` and any date outside
    :data:`YEARS` given to ``command`` or its subcommands, before the command runs (an id like
    2**63 would otherwise reach the store and fail there, a date like 0001-01-01 overflow in
    date arithmetic). Uses Click's parameter callbacks, so every command gets it."""
    if getattr(command, "aligncycle_bounded", False):
        return
    command.aligncycle_bounded = True
    for param in getattr(command, "params", ()):
        if not getattr(param.callback, "aligncycle_bounded", False):
            param.callback = _bounded_number(param.callback)
    for sub in getattr(command, "commands", {}).values():
        bound_numbers(sub)


class ErrorMappingGroup(TyperGroup):
    """The top-level command group: every failure becomes one line on stderr and an exit code.

    Bad usage (unknown option, bad enum value, bad date, a number out of range) exits 2;
    refused operations exit 1; the store unavailable (busy, out of space, unreachable) exits
    75. What a command prints goes through :func:`printable` (no terminal escapes).
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

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            bound_numbers(command)
        return name, command, rest

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> int:
        """Run the command with its output made printable (see :class:`_Printable`)."""
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Printable(out), _Printable(err)
        try:
            return self._run_mapped(args, prog_name, complete_var, **extra)
        finally:
            sys.stdout, sys.stderr = out, err

    def _run_mapped(
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
            say_error(f"{message}{hint}")
            return EXIT_USAGE
        except click_exc.ClickException as exc:
            say_error(exc.format_message())
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
            say_error(
                f"unexpected {type(exc).__name__}: {one_line(str(exc)) or 'no detail'} "
                "(set ALIGNCYCLE_DEBUG=1 to see the traceback)"
            )
            return EXIT_REFUSED
        return rv if isinstance(rv, int) else 0
