"""Engine and unit of work. Services take a ``Session`` and never commit: the caller owns the
transaction, through :meth:`Store.unit_of_work`.

Also what every face needs to tell about the store without showing its secrets or mistaking
an outage for bad input: :func:`shown_url`, :func:`mask_secrets` and :func:`outage`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from models.errors import Conflict

#: How long a SQLite connection waits for another connection's lock before it gives up and the
#: store answers "busy" (seconds). A ``?timeout=SECONDS`` in the store's URL overrides it.
SQLITE_BUSY_TIMEOUT = 10.0


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for other stores and in-memory ones)."""
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() != "sqlite":
        return None
    path = url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def _create_private(path: Path) -> None:
    """Create the store's folder (0700) and its empty file (0600), unless they exist. SQLite
    would create the file with the process's umask (usually 0644: readable by everyone on the
    machine), and the store holds password hashes, tokens' digests and channel URLs. SQLite
    gives its ``-wal`` and ``-shm`` files the mode of the database file."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def make_engine(url: str, **kwargs) -> Engine:  # noqa: ANN003
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if "timeout" not in make_url(url).query:
            kwargs["connect_args"] = {
                "timeout": SQLITE_BUSY_TIMEOUT,
                **kwargs.get("connect_args", {}),
            }
        engine = create_engine(url, **kwargs)
        if path is not None:

            @event.listens_for(engine, "do_connect")
            def _private_file(*_args) -> None:  # noqa: ANN002
                _create_private(path)  # only when a connection opens: read commands create nothing

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if path is not None:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        if path is not None:
            _checkpoint_after_rollback_to(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


#: a connection's info: it rolled back to a savepoint since it was last checked in
_ROLLED_BACK_TO = "aligncycle_rolled_back_to"


def _checkpoint_after_rollback_to(engine: Engine) -> None:
    """SQLite (3.40.1, Debian 12's, measured; 3.51.1 does not): a transaction that rolls back
    to a savepoint whose pages were spilled to the WAL, and then commits writing nothing more
    (an import's preview: the import in a savepoint, rolled back), breaks the WAL's chain of
    frames. The rows stay visible while the store is open, but the commits that follow are
    lost when it is opened again after its process ended without a checkpoint (a killed or
    restarted server: measured, an import of 200,000 leads committed after a preview of
    600,000 was gone). So a connection that rolled back to a savepoint checkpoints the WAL
    into the database file, and empties it, when it returns to the pool: the frames after are
    written to a new WAL."""

    @event.listens_for(engine, "before_cursor_execute")
    def _note(conn, _cursor, statement, *_args) -> None:  # noqa: ANN001, ANN002
        if statement[:11].upper() == "ROLLBACK TO":
            conn.info[_ROLLED_BACK_TO] = True

    @event.listens_for(engine, "checkin")
    def _checkpoint(dbapi_conn, record) -> None:  # noqa: ANN001
        if dbapi_conn is None or record is None or not record.info.pop(_ROLLED_BACK_TO, 0):
            return
        busy = 1
        with contextlib.suppress(Exception):
            busy = dbapi_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:  # a reader held the WAL past the busy timeout: again at the next check-in
            record.info[_ROLLED_BACK_TO] = True


@contextmanager
def local_setting(conn: Connection, name: str, value: str) -> Iterator[None]:
    """PostgreSQL: ``name`` set to ``value`` for the statements run inside (transaction-local,
    ``set_config(..., true)``), then back to what it was; the operator's setting is untouched.
    Not set back when the block raises: a failed statement has aborted the transaction (which
    takes the setting with it), and a statement there would hide the error."""
    old = conn.exec_driver_sql("SELECT current_setting(%(n)s)", {"n": name}).scalar()
    conn.exec_driver_sql("SELECT set_config(%(n)s, %(v)s, true)", {"n": name, "v": value})
    yield
    conn.exec_driver_sql("SELECT set_config(%(n)s, %(v)s, true)", {"n": name, "v": str(old)})


class Store:
    """The relational store: an engine and the sessions opened on it."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: commit when the block ends, roll back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except StaleDataError as exc:
            session.rollback()
            raise Conflict(
                "someone else changed this since you read it; reload and try again"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


# --- the store's URL, without its secrets ------------------------------------------------------

#: Query parameters of a store URL that hold a secret (libpq's names).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
MASK = "***"


def shown_url(url: str | URL) -> str:
    """The store's URL as people see it in messages: never with a password, neither the one
    in ``user:password@`` (left out) nor one given as ``?password=`` (masked)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - an unparsable URL is shown minus anything secret-looking
        return mask_secrets(str(url).rsplit("@", 1)[-1], str(url))
    if parsed.password is not None:
        parsed = parsed._replace(password=None)  # URL.set() cannot unset a field
    secret = {k for k in parsed.query if k.lower() in SECRET_PARAMETERS}
    if secret:
        parsed = parsed.update_query_dict({k: "MASKED" for k in secret})
    return parsed.render_as_string(hide_password=False).replace("=MASKED", f"={MASK}")


def _secrets_of(url: str) -> list[str]:
    import re
    from urllib.parse import unquote

    # As written (percent-encoded, maybe), then as parsed (decoded).
    found: list[str] = re.findall(r"(?i)[?&](?:ssl)?password=([^&]+)", url)
    found += re.findall(r"://[^:/@]*:([^@]+)@", url)
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - unparsable: what was found by hand
        pass
    else:
        if parsed.password:
            found.append(str(parsed.password))
        for key, value in parsed.query.items():
            if key.lower() in SECRET_PARAMETERS:
                found += [value] if isinstance(value, str) else list(value)
    out = set()
    for secret in found:
        if secret:
            out |= {secret, unquote(secret)}
    return sorted(out, key=len, reverse=True)


def mask_secrets(text: str, url: str | None) -> str:
    """``text`` with every password of the store URL ``url`` replaced by ``***`` (driver
    messages may quote the connection string)."""
    if not url:
        return text
    for secret in _secrets_of(str(url)):
        text = text.replace(secret, MASK)
    return text


# --- outages ---------------------------------------------------------------------------------

#: How long to wait before trying again, in seconds (the ``Retry-After`` of a 503).
RETRY_AFTER = 60

BUSY = "busy"
UNREACHABLE = "unreachable"
OUT_OF_SPACE = "out of space"
DISK_ERROR = "disk error"

_WHAT = {
    BUSY: "is busy",
    UNREACHABLE: "is unreachable",
    OUT_OF_SPACE: "is out of space",
    DISK_ERROR: "could not read or write its disk",
}

# SQLite's primary result codes (extended codes keep them in the low byte).
_SQLITE_CODES = {5: BUSY, 6: BUSY, 13: OUT_OF_SPACE, 10: DISK_ERROR, 14: UNREACHABLE, 15: BUSY}
# Older sqlite3 modules carry no code: the messages of the same results.
_SQLITE_TEXTS = [
    ("database is locked", BUSY),
    ("database table is locked", BUSY),
    ("database or disk is full", OUT_OF_SPACE),
    ("disk i/o error", DISK_ERROR),
    ("unable to open database file", UNREACHABLE),
]


class StoreUnavailable(Exception):
    """The store cannot answer now (locked, unreachable, out of space): an outage, to be
    tried again later, not a refusal of what was asked. ``kind`` says which."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        self.message = f"the store {_WHAT[kind]}; try again in a minute"
        super().__init__(self.message)

    def where(self, url: str) -> str:
        """The message naming the store (for operators: the CLI)."""
        return f"the store at {shown_url(url)} {_WHAT[self.kind]}; try again in a minute"


def _sqlite_kind(orig: BaseException) -> str | None:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_CODES.get(code & 0xFF)
    text = str(orig).lower()
    return next((kind for needle, kind in _SQLITE_TEXTS if needle in text), None)


#: Why PostgreSQL refuses a connection that is set up wrong (not an outage).
_POSTGRES_SETUP_ERRORS = (
    "does not exist",
    "authentication failed",
    "pg_hba.conf",
    "no password supplied",
    "invalid connection option",
    "invalid dsn",
    "invalid sslmode",
)


def _postgres_kind(orig: BaseException) -> str | None:
    import psycopg

    if not isinstance(orig, psycopg.Error):
        return None
    state = getattr(orig, "sqlstate", None) or ""
    if not state:
        # No SQLSTATE: the client's own failure (cannot connect, connection lost or closed), or
        # the server refusing the connection, which only the text tells apart.
        if not isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
            return None
        text = str(orig).lower()
        if "too many clients" in text or "remaining connection slots" in text:
            return BUSY
        if any(needle in text for needle in _POSTGRES_SETUP_ERRORS):
            return None  # a wrong URL or account: waiting will not help
        return UNREACHABLE
    if state.startswith("08") or state.startswith("57P"):  # connection; admin/crash shutdown
        return UNREACHABLE
    if state == "53100":  # disk_full
        return OUT_OF_SPACE
    if state.startswith("53"):  # out of memory, too many connections, ...
        return BUSY
    if state.startswith("58"):  # system error: I/O
        return DISK_ERROR
    return None


def outage(exc: BaseException) -> StoreUnavailable | None:
    """The outage behind a database error (lock held past the busy timeout, full disk, server
    stopped or unreachable), or None when the error is about the request itself."""
    if isinstance(exc, StoreUnavailable):
        return exc
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # every pooled connection in use
        return StoreUnavailable(BUSY, str(exc))
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig if isinstance(exc.orig, BaseException) else exc
    module = type(orig).__module__
    if module.startswith("sqlite3"):
        kind = _sqlite_kind(orig)
    elif module.startswith("psycopg"):
        kind = _postgres_kind(orig)
    else:  # pragma: no cover - aligncycle runs on SQLite and PostgreSQL only
        kind = None
    if kind is None and exc.connection_invalidated:
        kind = UNREACHABLE
    if kind is None:
        return None
    return StoreUnavailable(kind, str(orig))
