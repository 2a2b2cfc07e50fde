"""CLI of an installation's lifecycle: back it up, restore it.

    aligncycle backup FOLDER
    aligncycle restore FOLDER [--force]

The mechanism is :mod:`models.backup`; this parses, reports and maps refusals to one line on
stderr (the main app's error mapping): exit 1 for a refused operation, 2 for bad usage.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aligncycle import __version__
from aligncycle import cli_common as cc
from aligncycle.commands.common import ok


def _revision() -> str | None:
    from migrations import runner

    path = cc._sqlite_file(cc.database_url())
    if path is not None and not path.exists():
        return None
    current = runner.current(cc.store().engine)
    return ", ".join(sorted(current)) or None


def _store_is_empty() -> bool:
    """No people and no cycles (or not set up at all): nothing a restore would overwrite."""
    from sqlalchemy import func, inspect, select

    from models.tables import Cycle, Person

    path = cc._sqlite_file(cc.database_url())
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        return True
    engine = cc.store().engine
    if "people" not in inspect(engine).get_table_names():
        return True
    with cc.unit_of_work() as s:
        return not any(s.scalar(select(func.count()).select_from(t)) for t in (Person, Cycle))


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the main app."""

    @app.command("backup")
    def backup_cmd(
        folder: Path = typer.Argument(
            ..., help="A new (or empty) folder to write the backup into."
        ),
    ) -> None:
        """Back up the store (SQLite through its backup API; PostgreSQL with pg_dump) and the
        data dir (the generated signing key, pending uploads) into FOLDER, with checksums.
        Safe while the web app and workers run."""
        from aligncycle.settings import get_settings
        from models import backup

        settings = get_settings()
        result = backup.backup(
            cc.database_url(),
            Path(settings.data_dir),
            folder,
            _revision(),
            __version__,
            settings.secret_key,
        )
        cc.reset_store()
        ok(
            f"backed up {result.store} store {cc.display_url()} (revision "
            f"{result.revision or 'none'}) and {settings.data_dir} into {result.folder}: "
            f"{result.files} files, {result.size:,} bytes"
        )
        if result.key_source == "environment":
            ok(
                "the signing key comes from ALIGNCYCLE_SECRET_KEY and is not in the backup: "
                "keep it in your secret manager"
            )

    @app.command("restore")
    def restore_cmd(
        folder: Path = typer.Argument(..., help="A folder written by 'aligncycle backup'."),
        force: bool = typer.Option(
            False, "--force", help="Replace a store that already holds data."
        ),
    ) -> None:
        """Restore a backup into the configured store and data dir. Stop the web app and the
        workers first. The backup's files are checked against their checksums before
        anything is written."""
        from aligncycle.settings import get_settings
        from migrations import runner
        from models import backup

        settings = get_settings()
        cc.reset_store()
        manifest = backup.restore(
            folder,
            cc.database_url(),
            Path(settings.data_dir),
            _store_is_empty,
            force=force,
        )
        cc.reset_store()
        ok(
            f"restored the backup of {manifest['created_at']} (aligncycle "
            f"{manifest['aligncycle']}, revision {manifest['revision'] or 'none'}) into "
            f"{cc.display_url()} and {settings.data_dir}"
        )
        problem = runner.schema_problem(cc.store().engine)
        if problem:  # behind this code (db upgrade next), or migrated by a newer aligncycle
            ok(problem)
        file_key = Path(settings.data_dir) / "secret_key"
        key = settings.secret_key or (file_key.read_text().strip() if file_key.exists() else None)
        wanted = manifest.get("key_fingerprint")
        if wanted and backup.key_fingerprint(key) != wanted:
            ok(
                "the signing key in use (ALIGNCYCLE_SECRET_KEY, else the data dir's) is not "
                "the key of the backup: open sign-in forms expire and the counts of failed "
                "sign-ins start afresh"
            )
        cc.reset_store()
