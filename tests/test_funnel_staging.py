"""A first import on PostgreSQL stages its rows and writes them at the end, with their derived
columns (models.funnel.staging), and streams them through COPY (models.funnel.upsert): every
column of every lead and deal, and every file's counts, are those of the same import written
row by row with the links refreshed after it (staging turned off), whatever the order of the
files, records repeated within a file or across files, a file that is a lead and its deal per
row, a lead that names its deal, and imports that follow. On SQLite nothing is staged: the
two runs are the same path, and the test still checks the counts and the links.

Each scenario is imported into two sources of one store (with and without the staging) and
the rows are compared but for the source, the ids counted from each source's first (the same
sequence gives both theirs: a batch rolled back consumed the same ids on both paths)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from sqlalchemy import select

import models.funnel.importer as importer
import models.funnel.upsert as upsert
from models.db import Store
from models.funnel.importer import import_files
from models.funnel.links import refresh_links
from models.funnel.mapping import parse_mapping
from models.funnel.tables import Deal, Lead

LEADS = """
  - name: leads
    fields:
      external_id: id
      channel: ch
      campaign: camp
      owner: owner
      team: team
      mql_at: mql
      sql_at: sql
"""
DEALS = """
  - name: deals
    fields:
      deal_id: deal
      lead_id: {column: lead, split: ";"}
      owner: rep
      opportunity_at: created
      won_at: {column: closed, when: {column: stage, in: [won]}}
      lost_at: {column: closed, when: {column: stage, in: [lost]}}
      amount: amount
"""
#: one row is a lead and its deal (keyed by the lead's id)
COMBINED = """
  - name: combined
    fields:
      external_id: id
      channel: ch
      mql_at: mql
      opportunity_at: created
      won_at: {column: closed, when: {column: stage, in: [won]}}
      amount: amount
"""
#: a leads file that names the deal each lead was converted into (Salesforce)
CONVERTED = """
  - name: leads
    fields:
      external_id: id
      channel: ch
      mql_at: mql
      converted_deal_id: deal
"""
LEAD_HEADER = ["id", "ch", "camp", "owner", "team", "mql", "sql"]
DEAL_HEADER = ["deal", "lead", "rep", "stage", "created", "closed", "amount"]


def mapping(source: str, *parts: str) -> object:
    return parse_mapping(f"name: m\nsource: {source}\nfiles:\n" + "".join(parts))


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def day(rnd: random.Random) -> str:
    return f"2024-{rnd.randint(1, 6):02d}-{rnd.randint(1, 28):02d}" if rnd.random() < 0.9 else ""


def lead_rows(rnd: random.Random, ids: list[str]) -> list[list[str]]:
    return [
        [
            i,
            rnd.choice(["web", "ads", "", "events"]),
            rnd.choice(["spring", ""]),
            rnd.choice(["ann", "bob", ""]),
            rnd.choice(["sales", ""]),
            day(rnd),
            day(rnd) if rnd.random() < 0.4 else "",
        ]
        for i in ids
    ]


def deal_rows(rnd: random.Random, ids: list[str], leads: int) -> list[list[str]]:
    rows = []
    for i in ids:
        u = rnd.random()
        lead = "" if u < 0.1 else f"L{rnd.randrange(leads + 3)}"  # some name no lead
        if rnd.random() < 0.05:
            lead += f";L{rnd.randrange(leads)}"
        stage = rnd.choice(["won", "lost", "open"])
        rows.append(
            [
                i,
                lead,
                rnd.choice(["rep1", "rep2", ""]),
                stage,
                day(rnd),
                day(rnd) if stage != "open" else "",
                f"{rnd.randrange(1, 900)}.{rnd.randrange(100):02d}" if rnd.random() < 0.8 else "",
            ]
        )
    return rows


def snapshot(store: Store, source: str) -> dict[str, list[tuple]]:
    """Every column of the source's leads and deals but the source, in id order, the ids
    counted from the source's first (the two sources draw them from one sequence)."""
    out = {}
    with store.unit_of_work() as s:
        for name, model in (("leads", Lead), ("deals", Deal)):
            table = model.__table__
            cols = [c for c in table.c if c.name != "source"]
            rows = [
                tuple(r)
                for r in s.execute(
                    select(*cols).where(table.c.source == source).order_by(table.c.id)
                )
            ]
            first = rows[0][0] if rows else 0
            out[name] = [(r[0] - first, *r[1:]) for r in rows]
    return out


def run_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch, imports: list[tuple[list[Path], str]], batch: int
) -> None:
    """Each import in turn into source ``staged``, then into ``plain`` without the staging;
    the counts of every file and the rows must be the same."""
    monkeypatch.setattr(upsert, "_FEED", 2)  # rows go into a streamed COPY two at a time
    counts: dict[str, list] = {}
    for source in ("staged", "plain"):
        if source == "plain":
            monkeypatch.setattr(importer, "Staging", lambda _conn, _source: None)
        counts[source] = []
        for files, parts in imports:
            with store.unit_of_work() as s:
                summary = import_files(s, files, mapping(source, parts), batch_size=batch)
            counts[source].append(
                [(f.file, f.rows, f.new, f.changed, f.unchanged, f.rejected) for f in summary.files]
            )
    assert counts["staged"] == counts["plain"]
    staged = snapshot(store, "staged")
    assert staged == snapshot(store, "plain")
    assert staged["leads"] and staged["deals"]
    with store.unit_of_work() as s:  # the derived columns need no refresh
        refresh_links(s, "staged")
    assert snapshot(store, "staged") == staged


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    rnd = random.Random(17)
    n = 40
    ids = [f"L{i}" for i in range(n)]
    deal_ids = [f"D{i}" for i in range(55)]
    files = {
        "leads": write(tmp_path / "leads.csv", LEAD_HEADER, lead_rows(rnd, ids)),
        "deals": write(tmp_path / "deals.csv", DEAL_HEADER, deal_rows(rnd, deal_ids, n)),
        # the same records again in the same file, later (the later row wins)
        "leads_again": write(
            tmp_path / "leads-again.csv",
            LEAD_HEADER,
            lead_rows(rnd, ids) + lead_rows(rnd, ids[5:12] + ids[30:33]),
        ),
        "deals_again": write(
            tmp_path / "deals-again.csv",
            DEAL_HEADER,
            deal_rows(rnd, deal_ids, n) + deal_rows(rnd, deal_ids[3:9], n),
        ),
        # chunks of one export that overlap
        "leads_1": write(tmp_path / "leads-1.csv", LEAD_HEADER, lead_rows(rnd, ids[:25])),
        "leads_2": write(tmp_path / "leads-2.csv", LEAD_HEADER, lead_rows(rnd, ids[20:])),
        "combined": write(
            tmp_path / "combined.csv",
            ["id", "ch", "mql", "created", "stage", "closed", "amount"],
            [
                [r[0], r[1], r[5], d[4] if rnd.random() < 0.7 else "", d[3], d[5], d[6]]
                for r, d in zip(lead_rows(rnd, ids), deal_rows(rnd, ids, n), strict=True)
            ],
        ),
        "converted": write(
            tmp_path / "converted.csv",
            ["id", "ch", "mql", "deal"],
            [[i, "web", "2024-02-01", f"D{k}" if k % 3 else ""] for k, i in enumerate(ids)],
        ),
    }
    changed = lead_rows(rnd, ids)
    files["leads_changed"] = write(tmp_path / "leads-changed.csv", LEAD_HEADER, changed)
    return files


BOTH = LEADS + DEALS


@pytest.mark.parametrize("batch", [3, 5000])
def test_leads_then_deals(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    run_twice(store, monkeypatch, [([data["leads"], data["deals"]], BOTH)], batch)


@pytest.mark.parametrize("batch", [3, 5000])
def test_deals_then_leads(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    """A mapping that lists the deals first: their file is read first (the mapping's order)."""
    run_twice(store, monkeypatch, [([data["deals"], data["leads"]], DEALS + LEADS)], batch)


@pytest.mark.parametrize("batch", [4, 5000])
def test_records_repeated_in_a_file(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    files = [data["leads_again"], data["deals_again"]]
    run_twice(store, monkeypatch, [(files, BOTH)], batch)


def test_records_repeated_in_the_deals_file_only(store: Store, monkeypatch, data) -> None:  # noqa: ANN001
    run_twice(store, monkeypatch, [([data["leads"], data["deals_again"]], BOTH)], 4)


@pytest.mark.parametrize("batch", [3, 5000])
def test_chunks_of_one_export(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    files = [data["leads_1"], data["leads_2"], data["deals"]]
    run_twice(store, monkeypatch, [(files, BOTH)], batch)


def test_an_empty_chunk(store: Store, monkeypatch, data) -> None:  # noqa: ANN001
    """The staged leads go in before the second leads file, which writes nothing: their
    deals' summary is only known after the deals file."""
    # (files of one part are read in the order of their names)
    empty = write(data["leads"].parent / "z-empty.csv", LEAD_HEADER, [])
    run_twice(store, monkeypatch, [([data["leads"], empty, data["deals"]], BOTH)], 5000)


@pytest.mark.parametrize("batch", [3, 5000])
def test_a_lead_and_its_deal_per_row(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    run_twice(store, monkeypatch, [([data["combined"]], COMBINED)], batch)


@pytest.mark.parametrize("batch", [3, 5000])
def test_leads_that_name_their_deal(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    files = [data["converted"], data["deals"]]
    run_twice(store, monkeypatch, [(files, CONVERTED + DEALS)], batch)


@pytest.mark.parametrize("batch", [3, 5000])
def test_leads_that_name_their_deal_after_the_deals(store: Store, monkeypatch, data, batch) -> None:  # noqa: ANN001
    """The deals written with their leads' fields (SQLite, a first import), then a file of
    leads that moves some deals to other leads: the links write those deals again."""
    files = [data["leads"], data["deals"], data["converted"]]
    converted = "\n  - name: converted\n    fields:\n      external_id: id\n"
    converted += "      converted_deal_id: deal\n"
    run_twice(store, monkeypatch, [(files, LEADS + DEALS + converted)], batch)


def test_imports_that_follow(store: Store, monkeypatch, data) -> None:  # noqa: ANN001
    """Leads first, deals in a later import, then the leads again (unchanged, then changed),
    then everything again."""
    imports = [
        ([data["leads"]], LEADS),
        ([data["deals"]], DEALS),
        ([data["leads"]], LEADS),
        ([data["leads_changed"]], LEADS),
        ([data["leads"], data["deals"]], BOTH),
    ]
    run_twice(store, monkeypatch, imports, 3)


def test_deals_first_then_their_leads_later(store: Store, monkeypatch, data) -> None:  # noqa: ANN001
    imports = [([data["deals"]], DEALS), ([data["leads_again"], data["deals"]], BOTH)]
    run_twice(store, monkeypatch, imports, 5000)


def test_a_failed_import_leaves_nothing(store: Store, data) -> None:  # noqa: ANN001
    """An error while a COPY is open (here: the progress display fails after row 20,000, in
    the middle of a batch of 3,000) rolls the whole import back."""
    big = [f"L{i}" for i in range(20001)]
    leads = write(data["leads"].parent / "big.csv", LEAD_HEADER, lead_rows(random.Random(1), big))

    def progress(_name: str, _done: int, _size: int, rows: int) -> None:
        if rows == 20000:
            raise RuntimeError("the terminal went away")

    with pytest.raises(RuntimeError), store.unit_of_work() as s:
        import_files(
            s, [leads, data["deals"]], mapping("crm", BOTH), progress=progress, batch_size=3000
        )
    assert snapshot(store, "crm") == {"leads": [], "deals": []}
    with store.unit_of_work() as s:  # and the next import goes ahead
        summary = import_files(s, [data["leads"], data["deals"]], mapping("crm", BOTH))
    assert summary.new == 40 + 55
