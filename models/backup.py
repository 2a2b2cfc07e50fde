"""Backing up and restoring one aligncycle installation: the store and the data dir.

A backup is a folder (mode 0700):

* ``manifest.json`` — when, which aligncycle and schema revision, which kind of store, each
  file's size and SHA-256 (restore refuses a folder whose files do not match), and a
  fingerprint of the signing key;
* ``store.sqlite`` (the embedded store, copied page by page through SQLite's online backup
  API, consistent while the web app and workers keep writing) or ``store.dump``
  (PostgreSQL: ``pg_dump --format=custom``, one consistent snapshot);
* ``data/`` — the data dir without the SQLite files, metrics, logs and the demo: the generated
  ``secret_key`` (0600), uploads of imports not yet confirmed, anything else kept there.

A signing key set in ``ALIGNCYCLE_SECRET_KEY`` is not written into the backup (it lives in
your secret manager); the manifest keeps its fingerprint, so restore can say when the key in
use is another one (open sign-in forms expire, the counts of failed sign-ins start afresh).

Restore writes the store back the same way (SQLite's backup API into the configured file;
``pg_restore --clean --if-exists --single-transaction`` into the configured database) and
copies ``data/`` over the data dir. Stop the web app and the workers first.

No rule lives here and nothing here imports the faces: the CLI (``aligncycle backup`` /
``restore``) parses and reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from models.db import sqlite_path
from models.errors import Conflict, InvalidInput

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "store.sqlite"
PG_FILE = "store.dump"
DATA = "data"
#: Left out of ``data/``: the SQLite store (copied through the backup API instead), its
#: journal files, the web workers' metrics (counters of a run, not data), logs, and what
#: ``aligncycle demo`` recreates on every run (its store and its Prefect home).
SKIP_IN_DATA = (
    "aligncycle.db",
    "aligncycle.db-wal",
    "aligncycle.db-shm",
    "metrics",
    "logs",
    "demo",
    "demo-prefect",
)


@dataclass
class BackupResult:
    folder: Path
    store: str  # "sqlite" or "postgresql"
    revision: str | None
    files: int
    size: int
    key_source: str  # "data dir", "environment" or "none"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def key_fingerprint(key: str | None) -> str | None:
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else None


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password (which goes in ``PGPASSWORD``, never
    on a command line other users can list)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"{cmd[0]} is not installed: install the PostgreSQL client tools (Debian: "
            "postgresql-client) of your server's major version"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise Conflict(f"{what} failed: {last}")


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy one SQLite database into another through the online backup API: consistent while
    others write, and readers of ``target`` see the whole new content or the old one."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def backup(
    database_url: str,
    data_dir: Path,
    folder: Path,
    revision: str | None,
    version: str,
    configured_key: str | None,
) -> BackupResult:
    """Write a backup of the store at ``database_url`` and of ``data_dir`` into ``folder``
    (created; it must not exist, or be empty)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InvalidInput(f"{folder} exists and is not an empty folder; name a new one")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    url = make_url(database_url)
    db_file = sqlite_path(url)
    if url.get_backend_name() == "sqlite":
        if db_file is None or not db_file.exists():
            raise InvalidInput(f"there is no store at {database_url} to back up")
        _copy_sqlite(db_file, folder / SQLITE_FILE)
        (folder / SQLITE_FILE).chmod(0o600)
        kind = "sqlite"
    else:
        conninfo, env = _libpq(url)
        target = folder / PG_FILE
        _run(
            ["pg_dump", "--format=custom", "--no-owner", f"--file={target}", conninfo],
            env,
            "pg_dump",
        )
        target.chmod(0o600)
        kind = "postgresql"
    data_dir = Path(data_dir)
    if data_dir.is_dir():
        shutil.copytree(
            data_dir,
            folder / DATA,
            ignore=lambda d, names: [n for n in names if Path(d) == data_dir and n in SKIP_IN_DATA],
            dirs_exist_ok=True,
        )
    else:
        (folder / DATA).mkdir()
    file_key = data_dir / "secret_key"
    key_source = "environment" if configured_key else "data dir" if file_key.exists() else "none"
    key = configured_key or (file_key.read_text().strip() if file_key.exists() else None)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "aligncycle": version,
        "revision": revision,
        "store": kind,
        "key_source": key_source,
        "key_fingerprint": key_fingerprint(key),
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BackupResult(
        folder=folder,
        store=kind,
        revision=revision,
        files=len(files),
        size=sum(f["size"] for f in files.values()),
        key_source=key_source,
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists is there with its size and checksum."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise InvalidInput(f"{folder} is not an aligncycle backup (no {MANIFEST})") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{folder / MANIFEST}: unreadable ({exc.msg}, line {exc.lineno})"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{folder}: backup format {manifest.get('format')!r} is not {FORMAT}")
    for rel, want in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise InvalidInput(f"{folder}: {rel} is missing; the backup is incomplete")
        if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
            raise InvalidInput(f"{folder}: {rel} does not match its checksum; it was changed")
    return manifest


def restore(
    folder: Path,
    database_url: str,
    data_dir: Path,
    is_empty: Callable[[], bool],
    force: bool = False,
) -> dict[str, Any]:
    """Write the backup in ``folder`` back into the store at ``database_url`` and into
    ``data_dir``. Refuses, changing nothing, when the backup is incomplete or altered, is of
    another kind of store, or when the store holds data and ``force`` is not given."""
    manifest = read_manifest(folder)
    folder = Path(folder)
    url = make_url(database_url)
    kind = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql"
    if manifest["store"] != kind:
        raise InvalidInput(
            f"{folder} is a backup of a {manifest['store']} store; the configured store "
            f"(ALIGNCYCLE_DATABASE_URL) is {kind}"
        )
    if not force and not is_empty():
        raise Conflict(
            "the configured store already holds data; --force replaces it with the backup"
        )
    if kind == "sqlite":
        db_file = sqlite_path(url)
        if db_file is None:
            raise InvalidInput("restore needs a SQLite file, not an in-memory store")
        db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not db_file.exists():
            db_file.touch(mode=0o600)
        _copy_sqlite(folder / SQLITE_FILE, db_file)
    else:
        conninfo, env = _libpq(url)
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                f"--dbname={conninfo}",
                str(folder / PG_FILE),
            ],
            env,
            "pg_restore",
        )
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (folder / DATA).is_dir():
        shutil.copytree(folder / DATA, data_dir, dirs_exist_ok=True)
    return manifest
