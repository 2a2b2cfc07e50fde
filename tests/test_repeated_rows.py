"""A record listed on several rows of one file (a report with a row per product or per contact,
an export that repeats a record it updated while it ran): stored once, from its latest row,
counted apart from new, changed and unchanged records, and said, with the lines and the
file's columns whose values differ (models.funnel.repeats)."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models.db import Store
from models.funnel.importer import import_files
from models.funnel.mapping import parse_mapping
from models.funnel.repeats import SeenKeys
from models.funnel.tables import Deal
from tests.test_funnel_import import write_csv

DEALS = parse_mapping(
    """
name: opportunities
source: crm
fields:
  deal_id: Opportunity ID
  lead_id: Lead
  stage: Stage
  opportunity_at: Created
  amount: Amount
"""
)
DEAL_HEADER = ["Opportunity ID", "Lead", "Stage", "Created", "Amount", "Product"]
LEADS_AND_DEALS = parse_mapping(
    """
name: leads
source: crm
fields: {external_id: Id, channel: Channel, mql_at: MQL, won_at: Won, amount: Amount}
"""
)


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    return write_csv(path, rows, header)


def deals(store: Store) -> dict[str, tuple]:
    with store.engine.connect() as conn:
        d = Deal.__table__
        rows = conn.execute(select(d.c.external_id, d.c.amount_cents, d.c.stage, d.c.line))
        return {r[0]: tuple(r[1:]) for r in rows}


def test_a_report_with_a_row_per_product_counts_each_deal_once(
    store: Store, tmp_path: Path
) -> None:
    """Salesforce's 'Opportunities with Products' lists a deal once per product: the deal is
    one record, the summary says which rows repeat it and what differs."""
    path = write(
        tmp_path / "opportunities.csv",
        DEAL_HEADER,
        [
            ["D1", "L1", "Closed Won", "2024-03-01", "1200", "Licences"],
            ["D2", "L2", "Prospecting", "2024-03-02", "500", "Licences"],
            ["D1", "L1", "Closed Won", "2024-03-01", "1200", "Support"],
            ["D1", "L1", "Closed Won", "2024-03-01", "300", "Training"],
            ["D3", "L3", "Closed Lost", "2024-03-04", "700", "Licences"],
        ],
    )
    with store.unit_of_work() as s:
        summary = import_files(s, [path], DEALS)
    f = summary.files[0]
    assert (f.rows, f.new, f.changed, f.unchanged, f.repeated) == (5, 3, 0, 0, 2)
    assert summary.repeated == 2
    assert deals(store) == {  # the later row is kept; a repeat with the same values keeps its line
        "D1": (30000, "Closed Won", 5),
        "D2": (50000, "Prospecting", 3),
        "D3": (70000, "Closed Lost", 6),
    }
    assert f.repeats is not None
    assert f.repeats.sentence("opportunities.csv") == (
        "opportunities.csv: 2 rows list a deal that an earlier row lists too, 1 of them with "
        "other values (for example “D1” on line 5, whose 'Amount' differs from line 2; or "
        "“D1” on lines 2 and 4). Each deal is counted once; where the rows differ, the later "
        "one is kept."
    )


def test_a_file_of_leads_and_their_deals_says_a_deal_column_differs(
    store: Store, tmp_path: Path
) -> None:
    """One row is a lead and its deal: a row whose lead is the same but whose deal's amount is
    not is counted once, as a row with other values."""
    path = write(
        tmp_path / "leads.csv",
        ["Id", "Channel", "MQL", "Won", "Amount"],
        [
            ["L1", "web", "2024-03-01", "2024-03-09", "100"],
            ["L2", "ads", "2024-03-02", "", ""],
            ["L1", "web", "2024-03-01", "2024-03-09", "40"],
            ["L2", "ads", "2024-03-02", "", ""],
        ],
    )
    with store.unit_of_work() as s:
        f = import_files(s, [path], LEADS_AND_DEALS).files[0]
    assert (f.new, f.changed, f.repeated) == (2, 0, 2)
    assert f.repeats is not None
    assert (f.repeats.differ, [e.columns for e in f.repeats.examples]) == (1, [["Amount"], []])
    assert deals(store)["L1"][0] == 4000


def test_a_new_export_of_the_same_file_is_no_repeat(store: Store, tmp_path: Path) -> None:
    """Imported again, a file's records are stored from its earlier lines: a record whose line
    moved is changed, not repeated, and a repeat far from its first row (another batch) is
    still found, and only it."""
    rows = [[f"D{i}", f"L{i}", "Prospecting", "2024-03-01", str(i), "x"] for i in range(40)]
    path = write(tmp_path / "opportunities.csv", DEAL_HEADER, rows)
    with store.unit_of_work() as s:
        import_files(s, [path], DEALS, batch_size=3)
    moved = [*rows[::-1], ["D3", "L3", "Closed Won", "2024-03-01", "3", "y"]]
    write(tmp_path / "opportunities.csv", DEAL_HEADER, moved)
    with store.unit_of_work() as s:
        f = import_files(s, [path], DEALS, batch_size=3).files[0]
    assert (f.rows, f.new, f.changed, f.unchanged, f.repeated) == (41, 0, 40, 0, 1)
    assert f.repeats is not None
    assert f.repeats.examples[0].model_dump() == {
        "key": "D3",
        "line": 42,
        "earlier": 38,
        "columns": ["Stage"],
    }
    assert deals(store)["D3"] == (300, "Closed Won", 42)
    with store.unit_of_work() as s:  # and again: nothing changed but the one repeat
        f = import_files(s, [path], DEALS, batch_size=3).files[0]
    assert (f.new, f.changed, f.unchanged, f.repeated) == (0, 1, 39, 1)


def test_records_in_two_files_of_one_import_are_no_repeat(store: Store, tmp_path: Path) -> None:
    """An export in chunks names a record in two files: the second file changes it."""
    one = write(tmp_path / "a.csv", DEAL_HEADER, [["D1", "L1", "Open", "2024-03-01", "5", "x"]])
    two = write(tmp_path / "b.csv", DEAL_HEADER, [["D1", "L1", "Won", "2024-03-01", "5", "x"]])
    with store.unit_of_work() as s:
        files = import_files(s, [one, two], DEALS).files
    assert [(f.new, f.changed, f.repeated) for f in files] == [(1, 0, 0), (0, 1, 0)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 300), max_size=40, unique=True), max_size=30),
)
def test_seen_keys_finds_exactly_the_keys_of_earlier_batches(batches: list[list[int]]) -> None:
    seen = SeenKeys()
    before: set[str] = set()
    for batch in batches:
        keys = [f"K-{n}" for n in batch]
        assert seen.seen_before(keys) == before & set(keys)
        before |= set(keys)
    assert len(seen.runs) <= max(1, len(before)).bit_length() + 1  # (a few sorted runs)


def test_seen_keys_holds_eight_bytes_a_key() -> None:
    seen = SeenKeys()
    rng = random.Random(7)
    for _ in range(200):
        seen.seen_before([str(rng.getrandbits(64)) for _ in range(5000)])
    assert sum(r.nbytes for r in seen.runs) == 8 * 200 * 5000
    assert len(seen.runs) <= 20
