"""Outages are named as outages (issue 11, item 4).

A locked SQLite file (held past the busy timeout), a full disk and a stopped or unreachable
PostgreSQL answer 503 with ``Retry-After`` and one line ("the store is busy / unreachable / out
of space; try again in a minute") on the web pages and the REST API, GETs and sign-in
included; the CLI prints the same line, naming the store, and exits 75. A value the store
cannot keep is still a 422.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from aligncycle import cli_common
from aligncycle.web import create_app
from aligncycle.web.auth import SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from migrations import runner
from models.db import BUSY, OUT_OF_SPACE, UNREACHABLE, Store, make_engine, outage
from models.schemas import PersonCreate, TeamCreate
from models.services import accounts, people
from models.services.common import person_by_email
from tests.conftest import PG_URL, migrated_store
from tests.test_cli import cli

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
BUSY_LINE = "the store is busy; try again in a minute"
UNREACHABLE_LINE = "the store is unreachable; try again in a minute"
FULL_LINE = "the store is out of space; try again in a minute"

pytestmark = pytest.mark.usefixtures("cheap_hashing")


@dataclass
class Site:
    url: str
    store: Store
    app: Any
    token: str
    cookie: str

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)


def _populate(store: Store) -> tuple[str, str]:
    """Sid, with a password, a browser session and an API token: (token, session cookie)."""
    with store.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="sales", name="Sales"))
        people.create_person(
            s, PersonCreate(name="Sid Member", email="sid@acme.test", team="sales")
        )
        sid = person_by_email(s, "sid@acme.test")
        accounts.set_password(s, sid, PASSWORD)
        token, _ = accounts.create_token(s, sid, "tests")
        cookie, _ = accounts.create_session(s, sid)
    return token, cookie


def _site(url: str, tmp_path: Path) -> Site:
    store = Store(url)
    token, cookie = _populate(store)
    app = create_app(store, WebSettings(data_dir=tmp_path, secret_key="k" * 32))
    return Site(url, store, app, token, cookie)


def _assert_503(resp: Any, line: str, api: bool) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"] == "60"
    if api:
        assert resp.json() == {"error": {"code": "store_unavailable", "message": line}}
    else:
        assert resp.headers["content-type"].startswith("text/html")
        assert line[0].upper() + line[1:] in resp.text  # a page writes it as a sentence
        assert "Traceback" not in resp.text


def _every_face_says(site: Site, line: str) -> None:
    """The API (a GET with a token, a write), the pages (a GET, a form post) and sign-in."""
    c = site.client()
    bearer = {"Authorization": f"Bearer {site.token}"}
    _assert_503(c.get("/api/v1/me", headers=bearer), line, api=True)
    _assert_503(c.get("/api/v1/cycles", headers=bearer), line, api=True)
    _assert_503(c.post("/api/v1/tokens", headers=bearer, json={"name": "another"}), line, api=True)
    c.cookies.set(SESSION_COOKIE, site.cookie)
    _assert_503(c.get("/my"), line, api=False)
    _assert_503(c.get("/account"), line, api=False)
    signin = TestClient(site.app, follow_redirects=False)
    form = signin.get("/login")  # the sign-in form needs no store
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    _assert_503(
        signin.post("/login", data={"csrf": csrf, "email": "sid@acme.test", "password": PASSWORD}),
        line,
        api=False,
    )


def _every_face_works(site: Site) -> None:
    c = site.client()
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {site.token}"}).status_code
    c.cookies.set(SESSION_COOKIE, site.cookie)
    assert c.get("/my").status_code == 200


# --- a locked SQLite file ------------------------------------------------------------------


@pytest.fixture
def sqlite_site(tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    """A store of its own whose connections wait 0.2 s for a lock (``?timeout=`` in its URL:
    the busy timeout is a setting of the store URL)."""
    with migrated_store(tmp_path / "busy.db") as (url, engine):
        engine.dispose()
        site = _site(f"{url}?timeout=0.2", tmp_path)
        yield site, tmp_path / "busy.db"
        site.store.dispose()


@pytest.mark.sqlite_only
def test_a_locked_sqlite_file_is_a_503_everywhere_and_the_cli_names_it(
    sqlite_site: tuple[Site, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    site, db = sqlite_site
    _every_face_works(site)
    site.store.dispose()  # another process can take the file only while no one has it open
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")  # held past every busy timeout of this test
        started = time.monotonic()
        _every_face_says(site, BUSY_LINE)
        assert time.monotonic() - started < 30  # waited the 0.2 s timeout, not the default
        monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", site.url)
        result = cli("person", "list", code=75)
        assert result.stdout == ""
        assert result.stderr == (f"error: the store at {site.url} is busy; try again in a minute\n")
    finally:
        holder.close()
    _every_face_works(site)  # an outage, not damage: the same requests work again


@pytest.mark.sqlite_only
def test_a_full_disk_is_a_503_and_keeps_what_was_stored(
    sqlite_site: tuple[Site, Path],
) -> None:
    """SQLite's own limit on the file's size stands in for the disk: a write that needs a new
    page gets "database or disk is full", as on a full disk."""
    site, _db = sqlite_site

    @event.listens_for(site.store.engine, "connect")
    def _cap(dbapi_conn, _record) -> None:  # noqa: ANN001
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    site.store.dispose()
    c = site.client()
    bearer = {"Authorization": f"Bearer {site.token}"}
    before = c.get("/api/v1/tokens", headers=bearer).json()["total"]
    big = {"name": "x" * 90, "days": 30}
    full = None
    for _ in range(200):  # until a new page is needed
        resp = c.post("/api/v1/tokens", headers=bearer, json=big)
        if resp.status_code != 201:
            full = resp
            break
    assert full is not None, "the store never filled up"
    _assert_503(full, FULL_LINE, api=True)
    made = c.get("/api/v1/tokens?limit=200", headers=bearer).json()
    assert made["total"] >= before  # the refused write left the rest as it was
    assert all(t["name"] in ("tests", "x" * 90) for t in made["items"])


# --- PostgreSQL stopped or unreachable ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgresql_is_a_503_and_the_cli_names_it_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app was started; then its PostgreSQL went away (here: its URL points at a port
    nothing listens on). The CLI's line names the store, without the password, whether it is
    in ``user:password@`` or in ``?password=``."""
    with migrated_store(tmp_path / "up.db") as (url, _engine):
        site = _site(url, tmp_path)
        _every_face_works(site)
        site.store.dispose()
    port = _free_port()
    down = Store(f"postgresql+psycopg://aligncycle:s3cret-pw@127.0.0.1:{port}/aligncycle")
    site.app.state.store = down
    _every_face_says(site, UNREACHABLE_LINE)
    for url in (
        f"postgresql://aligncycle:s3cret-pw@127.0.0.1:{port}/aligncycle",
        f"postgresql://aligncycle@127.0.0.1:{port}/aligncycle?password=s3cret-pw&sslmode=prefer",
    ):
        monkeypatch.setenv("ALIGNCYCLE_DATABASE_URL", url)
        result = cli("person", "list", code=75)
        assert "s3cret-pw" not in result.output
        shown = cli_common.display_url(cli_common.database_url())
        assert result.stderr == (
            f"error: the store at {shown} is unreachable (Connection refused); try again in a "
            "minute\n"
        )
        assert "s3cret-pw" not in shown and "127.0.0.1" in shown
    # a long-running command refuses to start on it, in the same line
    served = cli("serve", "--workers", "1", "--port", "9", code=75)
    assert served.stdout == "" and "is unreachable (Connection refused)" in served.stderr


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def scratch_cluster() -> Iterator[tuple[str, Any]]:
    """A PostgreSQL cluster of this test's own on a free port (never the shared server),
    with ``control(action)`` to stop or start it."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.fail(
            "the PostgreSQL outage test needs PostgreSQL's server binaries "
            "(/usr/lib/postgresql/*/bin, Debian's postgresql package), as the PostgreSQL suite does"
        )
    # Not under pytest's tmp_path: PostgreSQL runs as its own user, who cannot enter it.
    folder = Path(tempfile.mkdtemp(prefix="aligncycle-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = folder / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")

    def control(action: str) -> None:
        opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        if action == "start":
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                str(folder / "log"), "start")  # fmt: skip
        else:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    control("start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", control
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL's outage is tested in the PostgreSQL suite")
def test_a_stopped_postgresql_is_a_503_and_comes_back(
    scratch_cluster: tuple[str, Any], tmp_path: Path
) -> None:
    url, control = scratch_cluster
    engine = make_engine(url)
    runner.upgrade(engine)
    engine.dispose()
    site = _site(url, tmp_path)
    _every_face_works(site)  # the pool now holds connections the shutdown will break
    control("stop")
    _every_face_says(site, UNREACHABLE_LINE)
    control("start")
    _every_face_works(site)
    site.store.dispose()


# --- a value is not an outage ---------------------------------------------------------------


@pytest.mark.skipif(not PG_URL, reason="SQLite stores a NUL character; PostgreSQL cannot")
def test_a_value_the_store_cannot_keep_is_still_a_422(tmp_path: Path) -> None:
    with migrated_store(tmp_path / "unused.db") as (url, _engine):
        site = _site(url, tmp_path)
        resp = site.client().post(
            "/api/v1/tokens",
            headers={"Authorization": f"Bearer {site.token}"},
            json={"name": "nul \x00 inside"},
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "invalid_input"
        site.store.dispose()


def _sqlite_error(sql: str, db: Path, **connect: Any) -> DBAPIError:
    engine = make_engine(f"sqlite:///{db}", **connect)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} did not fail")


def test_which_database_errors_are_outages(tmp_path: Path) -> None:
    """Real driver errors, told apart by their codes: a lock and a full file are outages, a
    missing table or a broken constraint are not."""
    db = tmp_path / "kinds.db"
    sqlite3.connect(db).executescript(
        "CREATE TABLE t (x INTEGER NOT NULL); PRAGMA journal_mode=WAL;"
    )
    assert outage(_sqlite_error("SELECT * FROM nowhere", db)) is None
    assert outage(_sqlite_error("INSERT INTO t VALUES (NULL)", db)) is None
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    locked = _sqlite_error("SELECT * FROM t", db, connect_args={"timeout": 0.05})
    holder.close()
    assert isinstance(locked, OperationalError) and outage(locked).kind == BUSY
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA max_page_count=2")
    try:
        conn.execute("INSERT INTO t SELECT 1 FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                     "SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n)")  # fmt: skip
    except sqlite3.OperationalError as exc:
        full = DBAPIError.instance("INSERT", {}, exc, sqlite3.Error)
    else:
        raise AssertionError("the capped file did not fill up")
    assert outage(full).kind == OUT_OF_SPACE
    refused = DBAPIError.instance(
        "SELECT 1", {}, _psycopg_error(f"postgresql://x@127.0.0.1:{_free_port()}/x"), Exception
    )
    assert outage(refused).kind == UNREACHABLE


def _psycopg_error(url: str) -> Exception:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return exc
    raise AssertionError(f"{url} answered")
