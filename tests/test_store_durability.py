"""What a unit of work commits on SQLite is kept when the process ends without closing the
store (a killed or restarted server), also after an import's preview: the import run in a
savepoint and rolled back (models.db: SQLite 3.40 lost the commits that followed)."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from migrations import runner
    from models.db import Store
    from models.funnel.importer import import_files
    from models.funnel.jobs import preview_import
    from models.funnel.mapping import parse_mapping

    db, big, small = sys.argv[1:4]
    spec = parse_mapping("name: m\\nsource: crm\\nfields: {external_id: id, mql_at: mql}\\n")
    store = Store("sqlite:///" + db)
    runner.upgrade(store.engine)
    with store.unit_of_work() as s:  # what a web preview does: all of it rolled back
        preview_import(s, [Path(big)], spec, label="m")
    with store.unit_of_work() as s:  # the import confirmed afterwards
        import_files(s, [Path(small)], spec)
    os._exit(0)  # the server killed: no connection closed, no checkpoint on the way out
""")


def _leads(path: Path, prefix: str, rows: int) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "mql"])
        w.writerows([f"{prefix}{i}", "2024-03-01 10:00"] for i in range(rows))
    return path


def test_an_import_committed_after_a_big_preview_survives_the_process_ending(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.db"
    big = _leads(tmp_path / "big.csv", "B", 60000)  # more than the page cache holds
    small = _leads(tmp_path / "small.csv", "S", 100)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), str(big), str(small)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:  # opened again: the WAL is recovered
        assert conn.execute("SELECT count(*) FROM leads").fetchone() == (100,)
