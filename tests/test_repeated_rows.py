"""A record listed on several rows of one file (a report with a row per product or per contact,
an export that repeats a record it updated while it ran): stored once, from its latest row,
counted apart from new, changed and unchanged records, and said, with the lines and the
file's columns whose values differ (models.funnel.repeats)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models.db import Store
from models.funnel.files import FileSummary
from models.funnel.importer import import_files
from models.funnel.mapping import MappingSpec, parse_mapping
from models.funnel.repeats import SeenKeys
from models.funnel.tables import Deal, Lead
from tests.test_funnel_import import write_csv

DEALS_YAML = """
name: opportunities
source: crm
fields:
  deal_id: Opportunity ID
  lead_id: Lead
  stage: Stage
  opportunity_at: Created
  amount: Amount
"""
DEALS = parse_mapping(DEALS_YAML)
DEAL_HEADER = ["Opportunity ID", "Lead", "Stage", "Created", "Amount", "Product"]
LEADS_AND_DEALS_YAML = """
name: leads
source: crm
fields: {external_id: Id, channel: Channel, mql_at: MQL, won_at: Won, amount: Amount}
"""
LEADS_AND_DEALS = parse_mapping(LEADS_AND_DEALS_YAML)


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


def test_the_preview_counts_a_deal_on_several_rows_once_at_its_last_stage(
    store: Store, tmp_path: Path
) -> None:
    """The table of how a file's stages are read counts deals: a deal on three rows, its stage
    moving on from row to row, is one deal, at the stage of its last row."""
    spec = parse_mapping(
        DEALS_YAML.replace(
            "  amount: Amount\n",
            "  amount: Amount\n"
            "  won_at: {column: Closed, when: {column: Stage, in: [Closed Won]}}\n"
            "  lost_at: {column: Closed, when: {column: Stage, in: [Closed Lost]}}\n",
        )
    )
    path = write(
        tmp_path / "opportunities.csv",
        ["Opportunity ID", "Lead", "Stage", "Created", "Amount", "Closed"],
        [
            ["D1", "L1", "Prospecting", "2024-03-01", "100", ""],
            ["D2", "L2", "Closed Lost", "2024-03-01", "100", "2024-03-20"],
            ["D1", "L1", "Negotiation", "2024-03-01", "100", ""],
            ["D2", "L2", "Closed Lost", "2024-03-01", "100", "2024-03-20"],
            ["D1", "L1", "Closed Won", "2024-03-01", "100", "2024-03-30"],
        ],
    )
    for _ in range(2):  # (a first import, and the same file again)
        with store.unit_of_work() as s:
            f = import_files(s, [path], spec, batch_size=2).files[0]
        assert f.stages is not None
        assert [(r.stage, r.won, r.lost, r.open) for r in f.stages.rows] == [
            ("Closed Lost", 0, 1, 0),
            ("Closed Won", 1, 0, 0),
        ]


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
    """Imported again, a file's records are stored from its lines: a record whose line moved is
    unchanged (its line is written), not repeated; a repeat far from its first row (another
    batch) is still found, and only it, and changes its deal."""
    rows = [[f"D{i}", f"L{i}", "Prospecting", "2024-03-01", str(i), "x"] for i in range(40)]
    path = write(tmp_path / "opportunities.csv", DEAL_HEADER, rows)
    with store.unit_of_work() as s:
        import_files(s, [path], DEALS, batch_size=3)
    moved = [*rows[::-1], ["D3", "L3", "Closed Won", "2024-03-01", "3", "y"]]
    write(tmp_path / "opportunities.csv", DEAL_HEADER, moved)
    with store.unit_of_work() as s:
        f = import_files(s, [path], DEALS, batch_size=3).files[0]
    assert (f.rows, f.new, f.changed, f.unchanged, f.repeated) == (41, 0, 1, 39, 1)
    assert deals(store)["D0"] == (0, "Prospecting", 41)  # (its new line)
    assert f.repeats is not None
    assert f.repeats.examples[0].model_dump() == {
        "key": "D3",
        "line": 42,
        "earlier": 38,
        "columns": ["Stage"],
    }
    assert deals(store)["D3"] == (300, "Closed Won", 42)
    with store.unit_of_work() as s:  # and again: nothing changed, and the one repeat
        f = import_files(s, [path], DEALS, batch_size=3).files[0]
    assert (f.new, f.changed, f.unchanged, f.repeated) == (0, 0, 40, 1)
    assert deals(store)["D3"] == (300, "Closed Won", 42)


def test_the_same_export_imported_again_changes_nothing(store: Store, tmp_path: Path) -> None:
    """A report with a row per product, imported again as it was: its deals' first rows differ
    from what the last rows left, but each deal ends as it was, so nothing is changed; and a
    new export whose later row of a deal says a new amount changes that deal, though its
    first row is as before."""
    rows = [
        ["D1", "L1", "Closed Won", "2024-03-01", "1200", "Licences"],
        ["D2", "L2", "Prospecting", "2024-03-02", "500", "Licences"],
        ["D1", "L1", "Closed Won", "2024-03-01", "1200", "Support"],
        ["D1", "L1", "Closed Won", "2024-03-01", "300", "Training"],
        ["D3", "L3", "Closed Lost", "2024-03-04", "700", "Licences"],
        ["D3", "L3", "Closed Lost", "2024-03-04", "700", "Support"],
    ]
    path = write(tmp_path / "opportunities.csv", DEAL_HEADER, rows)
    for _ in range(2):
        with store.unit_of_work() as s:
            f = import_files(s, [path], DEALS, batch_size=2).files[0]
    assert (f.rows, f.new, f.changed, f.unchanged, f.repeated) == (6, 0, 0, 3, 3)
    rows[5][4] = "750"  # D3's second product costs more now
    write(tmp_path / "opportunities.csv", DEAL_HEADER, rows)
    with store.unit_of_work() as s:
        f = import_files(s, [path], DEALS, batch_size=2).files[0]
    assert (f.new, f.changed, f.unchanged, f.repeated) == (0, 1, 2, 3)
    assert deals(store)["D3"] == (75000, "Closed Lost", 7)


_STAGES = ["Prospecting", "Closed Won"]
_examples = iter(range(1 << 30))  # (a source of its own for each example: one store)


def _imported_in_turn(name: str):  # noqa: ANN202
    """Examples of files imported one after the other: each ``name`` or another name, its
    rows (a record 0-3, one of two values, 1 or 2), and a batch size."""
    row = st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(1, 2))
    files = st.tuples(st.sampled_from([name, "other.csv"]), st.lists(row, max_size=8))
    return lambda test: settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )(
        given(
            imports=st.lists(files, min_size=1, max_size=4),
            batch_size=st.sampled_from([1, 2, 3, 100]),
        )(test)
    )


def _new_source(tmp_path: Path, mapping: str) -> tuple[str, MappingSpec, Path]:
    """A source of its own, its mapping and a folder for its files."""
    n = next(_examples)
    folder = tmp_path / str(n)
    folder.mkdir()
    return f"crm{n}", parse_mapping(mapping.replace("source: crm", f"source: crm{n}")), folder


def _counts_are(f: FileSummary, rows: int, seen: set[str], before: dict, after: dict) -> None:
    """The file's records are new, changed or unchanged by their values ``after`` against
    ``before`` (not by the file and line they were read from)."""
    new = [k for k in seen if k not in before]
    changed = [k for k in seen if k in before and after[k] != before[k]]
    unchanged = len(seen) - len(new) - len(changed)
    assert (f.rows, f.new, f.changed, f.unchanged, f.repeated) == (
        (rows, len(new), len(changed), unchanged, rows - len(seen))
    )


@_imported_in_turn("opportunities.csv")
def test_a_record_is_new_changed_or_unchanged_by_what_the_import_leaves_of_it(
    store: Store,
    tmp_path: Path,
    imports: list[tuple[str, list[tuple[int, int, int]]]],
    batch_size: int,
) -> None:
    """Files of deals whose rows repeat deals, imported one after the other: each file's
    deals are new, changed or unchanged by what the store holds of them after the file against
    before it; each row that lists a deal an earlier row of the file lists is repeated; a
    repeat with other values is stored from its line, one with the same values keeps the
    earlier line (a model of it, row by row)."""
    source, spec, folder = _new_source(tmp_path, DEALS_YAML)
    model: dict[str, tuple] = {}  # deal -> (amount in cents, stage, line), and its file
    files: dict[str, str] = {}
    for name, rows in imports:
        cells = [[f"D{k}", f"L{k}", _STAGES[stg], "2024-03-01", str(a), "x"] for k, stg, a in rows]
        path = write(folder / name, DEAL_HEADER, cells)
        before = {k: (v, files[k]) for k, v in model.items()}
        seen: set[str] = set()
        for line, (key, _lead, stage, _at, amount, _p) in enumerate(cells, 2):
            values = (int(amount) * 100, stage)
            if key not in seen:  # stored from this line unless the store holds it as it is
                seen.add(key)
                model[key], files[key] = (*values, line), name
            elif model[key][:2] != values:  # a repeat: stored from its line if it differs
                model[key] = (*values, line)
        after = {k: (v, files[k]) for k, v in model.items()}
        with store.unit_of_work() as s:
            f = import_files(s, [path], spec, batch_size=batch_size).files[0]
        values = {k: v[0][:2] for k, v in after.items()}
        _counts_are(f, len(rows), seen, {k: v[0][:2] for k, v in before.items()}, values)
        # the preview's stages count each deal once, as its last row reads it
        stages = Counter(model[k][1] for k in seen)
        assert ({r.stage: r.deals for r in f.stages.rows} if f.stages else {}) == stages
        with store.engine.connect() as conn:
            d = Deal.__table__
            got = conn.execute(
                select(d.c.external_id, d.c.amount_cents, d.c.stage, d.c.line, d.c.file).where(
                    d.c.source == source
                )
            )
            assert {r[0]: (tuple(r[1:4]), r[4]) for r in got} == after


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


@_imported_in_turn("leads.csv")
def test_a_lead_and_its_deal_are_changed_by_what_the_import_leaves_of_either(
    store: Store,
    tmp_path: Path,
    imports: list[tuple[str, list[tuple[int, int, int]]]],
    batch_size: int,
) -> None:
    """Files whose rows are a lead and its deal, rows repeating leads, imported one after the
    other: a row is changed when its lead or its deal is, by what the store holds of them after
    the file against before it (each kept from its own latest line that differs)."""
    source, spec, folder = _new_source(tmp_path, LEADS_AND_DEALS_YAML)
    leads: dict[str, tuple] = {}  # lead -> (channel, file, line)
    deals_: dict[str, tuple] = {}  # its deal -> (amount in cents, file, line)
    for name, rows in imports:
        channels = ["web", "ads"]
        cells = [[f"L{k}", channels[c], "2024-03-01", "2024-03-09", str(a)] for k, c, a in rows]
        path = write(folder / name, ["Id", "Channel", "MQL", "Won", "Amount"], cells)
        before = {k: (leads[k][0], deals_[k][0]) for k in leads}  # (their values)
        seen: set[str] = set()
        for line, (key, channel, _mql, _won, amount) in enumerate(cells, 2):
            cents = int(amount) * 100
            if key not in seen:
                seen.add(key)
                leads[key], deals_[key] = (channel, name, line), (cents, name, line)
                continue
            if leads[key][0] != channel:
                leads[key] = (channel, name, line)
            if deals_[key][0] != cents:
                deals_[key] = (cents, name, line)
        with store.unit_of_work() as s:
            f = import_files(s, [path], spec, batch_size=batch_size).files[0]
        _counts_are(f, len(rows), seen, before, {k: (leads[k][0], deals_[k][0]) for k in leads})
        with store.engine.connect() as conn:
            d, lt = Deal.__table__, Lead.__table__
            where = d.c.source == source
            got = conn.execute(
                select(d.c.external_id, d.c.amount_cents, d.c.file, d.c.line).where(where)
            )
            assert {r[0]: tuple(r[1:]) for r in got} == deals_
            where = lt.c.source == source
            got = conn.execute(
                select(lt.c.external_id, lt.c.channel, lt.c.file, lt.c.line).where(where)
            )
            assert {r[0]: tuple(r[1:]) for r in got} == leads
