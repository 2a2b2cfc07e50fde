"""A big import's files are parsed in a second process while the import's own process writes
(models.funnel.parse): the store, the summary, the rejects files and the refusals are those of
the same import read in one process, and no process outlives the import."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from models.db import Store
from models.errors import InvalidInput
from models.funnel import importer, parse
from models.funnel.importer import ImportSummary, import_files, rejects_files
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import MappingSpec, load_profile, parse_mapping
from tests.conftest import db_snapshot
from tests.funnel_helpers import clear_funnel, funnel_content
from tests.test_funnel_import import BAD, GOOD, HUBSPOT_CONTACTS, HUBSPOT_DEALS, MAPPING, write_csv

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[parse.Reader]:
    """The readers the imports started."""
    readers: list[parse.Reader] = []

    class Spy(parse.Reader):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            readers.append(self)

    monkeypatch.setattr(importer, "Reader", Spy)
    return readers


def _all_ended(readers: list[parse.Reader]) -> bool:
    """Every reader's process has ended, and was waited for (no zombie left)."""
    return all(r._process.returncode is not None for r in readers)


def _import(
    store: Store, paths: list[Path], spec: MappingSpec, rejects: Path, parallel: bool
) -> tuple[ImportSummary, dict, dict[str, str]]:
    """The summary (without its id), the store's funnel and KPIs, and the rejects files."""
    with rejects_files(rejects) as sink, store.unit_of_work() as s:
        summary = import_files(s, paths, spec, rejects=sink, batch_size=2, parallel=parallel)
    with store.unit_of_work() as s:
        kpis = _kpis(s)
    out = summary.model_dump(exclude={"import_id"})
    return out, {"funnel": funnel_content(store), "kpis": kpis}, _texts(rejects)


def _kpis(s: Session) -> dict:
    report = compute_kpis(
        s, start=date(2024, 1, 1), end=date(2024, 12, 31), by="channel", as_of=AS_OF
    )
    return report.model_dump()


def _texts(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.csv"))} if folder.exists() else {}


def test_files_read_in_a_second_process_give_the_same_import(
    store: Store, tmp_path: Path, spawned: list[parse.Reader]
) -> None:
    later = list(GOOD[2])
    later[2] = "cy"
    # rows to reject, a record twice (the later row wins), a report footer, several batches
    more = [[f"L{i}", "Webinar", "ann", "02.03.2024", "", "", "", "", ""] for i in range(20, 40)]
    rows = [*GOOD, *BAD, later, *more, ["Grand Totals (31 records)", *[""] * 8]]
    leads = write_csv(tmp_path / "leads.csv", rows)
    (tmp_path / "contacts.csv").write_text(HUBSPOT_CONTACTS)
    (tmp_path / "deals.csv").write_text(HUBSPOT_DEALS)
    imports = [
        ([leads], parse_mapping(MAPPING)),
        ([tmp_path / "deals.csv", tmp_path / "contacts.csv"], load_profile("hubspot")),
    ]
    results = {}
    for parallel in (False, True):
        clear_funnel(store)
        results[parallel] = [
            _import(store, paths, spec, tmp_path / f"rejects-{i}", parallel)
            for i, (paths, spec) in enumerate(imports)
        ]
    assert len(spawned) == 2 and os.getpid() not in {r.pid for r in spawned}  # one per import
    one, two = results[False], results[True]
    for (s1, store1, rej1), (s2, store2, rej2) in zip(one, two, strict=True):
        assert s2 == s1  # counts, the first rejects with their lines, flags
        assert store2 == store1  # every lead, deal and flag; the KPIs from the rollups
        for name, text in rej1.items():
            assert rej2[name] == text
        assert rej2.keys() == rej1.keys()
    summary = one[0][0]
    assert (summary["files"][0]["rows"], summary["files"][0]["skipped"]) == (29, 1)
    assert summary["files"][0]["rejected"] == 4 and one[0][2]  # (a rejects file to compare)
    assert summary["files"][0]["repeated"] == 1
    assert one[1][0]["files"][1]["part"] == "deals"
    assert _all_ended(spawned)


def test_a_refusal_read_in_a_second_process_is_the_same_line_and_changes_nothing(
    store: Store, tmp_path: Path, spawned: list[parse.Reader]
) -> None:
    spec = parse_mapping(MAPPING)
    with store.unit_of_work() as s:
        import_files(s, [write_csv(tmp_path / "leads.csv", GOOD)], spec)
    before = db_snapshot(store)
    broken = tmp_path / "broken.csv"
    write_csv(broken, [["L9", "x", "y", "bad date", "", "", "", "", ""]] + GOOD * 2000)
    with broken.open("ab") as f:
        f.write(b"L10,Caf\xe9,ann,01.03.2024,,,,,\n")
    messages = []
    for parallel in (False, True):
        with (
            pytest.raises(InvalidInput) as err,
            rejects_files(tmp_path / "rej") as sink,
            store.unit_of_work() as s,
        ):
            import_files(s, [broken], spec, rejects=sink, parallel=parallel)
        messages.append(str(err.value))
    assert messages[1] == messages[0]
    assert "line 6003" in messages[1] and "nothing was imported" in messages[1]
    assert spawned and db_snapshot(store) == before
    assert not (tmp_path / "rej" / "broken.rejects.csv").exists()
    assert _all_ended(spawned)


def test_an_import_stopped_while_its_files_are_read_stops_the_reader(
    store: Store, tmp_path: Path, spawned: list[parse.Reader]
) -> None:
    spec = parse_mapping(MAPPING)
    data = write_csv(tmp_path / "leads.csv", GOOD * 30000)
    seen = []

    def progress(name: str, done: int, size: int, rows: int) -> None:
        seen.append((name, rows))
        raise KeyboardInterrupt  # the operator pressed Ctrl-C

    before = db_snapshot(store)
    with pytest.raises(KeyboardInterrupt), store.unit_of_work() as s:
        import_files(s, [data], spec, progress=progress, parallel=True)
    assert seen == [("leads.csv", 20000)]  # told by the reader, every 20,000 rows
    assert spawned and _all_ended(spawned)
    assert db_snapshot(store) == before


def test_only_big_imports_on_sqlite_start_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = write_csv(tmp_path / "leads.csv", GOOD)
    assert not parse.wanted([small], None, "sqlite")
    assert parse.wanted([small], True, "sqlite") and parse.wanted([small], True, "postgresql")
    monkeypatch.setattr(parse, "PARALLEL_BYTES", small.stat().st_size)
    assert parse.wanted([small], None, "sqlite") and not parse.wanted([small], False, "sqlite")
    # PostgreSQL's server shares the cores with the two processes: no gain, measured
    assert not parse.wanted([small], None, "postgresql")


def test_an_import_whose_reader_cannot_start_reads_its_files_itself(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*_args, **_kwargs) -> None:  # noqa: ANN002, ANN003
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(parse.subprocess, "Popen", no_process)
    data = write_csv(tmp_path / "leads.csv", GOOD + BAD)
    with store.unit_of_work() as s:
        summary = import_files(s, [data], parse_mapping(MAPPING), parallel=True)
    assert (summary.rows, summary.new, summary.rejected) == (8, 4, 4)
