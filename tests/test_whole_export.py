"""An import of a source's whole export removes the records of the source its files do not list
(a contact merged into another, a deleted lead, a deal taken out of the pipeline), of each kind
its files list; the numbers are then those of the export alone (models.funnel.whole_export)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import Store
from models.funnel.importer import deal_count, import_files, record_count
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import MappingSpec, parse_mapping
from models.funnel.tables import FunnelImport
from tests.conftest import db_snapshot
from tests.funnel_helpers import clear_funnel, funnel_content
from tests.test_funnel_import import run

TWO_FILES = """
name: two-files
source: crm
files:
  - name: leads
    fields: {external_id: id, channel: ch, mql_at: mql}
  - name: deals
    fields:
      deal_id: deal
      lead_id: lead
      opportunity_at: created
      won_at: {column: closed, when: {column: stage, in: [won]}}
      amount: amount
"""
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
LEADS = [
    ["L1", "web", "2024-01-05"],
    ["L2", "ads", "2024-02-06"],
    ["L3", "web", "2024-03-07"],  # merged away in the CRM: gone from the next export
    ["L4", "events", "2024-04-08"],
]
DEALS = [
    ["D1", "L1", "2024-01-20", "won", "2024-02-01", "100"],
    ["D2", "L2", "2024-02-20", "", "", "50"],  # taken out of the pipeline
    ["D3", "L3", "2024-03-20", "won", "2024-05-02", "70"],  # its lead is gone, it stays
    ["D4", "L4", "2024-04-20", "", "", "30"],
]


def write(folder: Path, leads: list[list[str]], deals: list[list[str]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "leads.csv", folder / "deals.csv"
    a.write_text("id,ch,mql\n" + "".join(",".join(r) + "\n" for r in leads))
    b.write_text(
        "deal,lead,created,stage,closed,amount\n" + "".join(",".join(r) + "\n" for r in deals)
    )
    return [a, b]


def spec(whole: bool = True) -> MappingSpec:
    return parse_mapping(TWO_FILES).with_locale(whole_export=whole)


def numbers(s: Session) -> dict:
    out = {}
    for by in ("channel", "month"):
        report = compute_kpis(s, start=date(2024, 1, 1), end=date(2024, 12, 31), by=by, as_of=AS_OF)
        out[by] = report.model_dump()
    return out


def test_the_whole_export_removes_what_it_does_not_list_and_the_numbers_are_its_own(
    store: Store, tmp_path: Path
) -> None:
    with store.unit_of_work() as s:
        import_files(s, write(tmp_path / "before", LEADS, DEALS), spec(False))
    now = write(tmp_path / "now", [LEADS[0], LEADS[1], LEADS[3]], [DEALS[0], DEALS[2], DEALS[3]])
    with store.unit_of_work() as s:
        summary = import_files(s, now, spec())
    assert [(r.record, r.rows, r.examples) for r in summary.removed] == [
        ("lead", 1, ["L3"]),
        ("deal", 1, ["D2"]),
    ]
    assert summary.removed[0].sentence("crm") == (
        "1 of the 4 leads of the source “crm” is in none of these files: it was removed (for "
        "example “L3”)."
    )
    with store.unit_of_work() as s:
        assert (record_count(s, "crm"), deal_count(s, "crm")) == (3, 3)
        assert s.scalars(select(FunnelImport.rows_removed).order_by(FunnelImport.id)).all() == [
            0,
            2,
        ]
        after = numbers(s)
    content = funnel_content(store)
    # the same as the export imported into an empty store: rows, links, flags and the KPIs
    # (the rollups of the months the removed records touched)
    clear_funnel(store)
    with store.unit_of_work() as s:
        import_files(s, now, spec(False))
    with store.unit_of_work() as s:
        assert numbers(s) == after
    assert funnel_content(store) == content


def test_a_whole_export_of_leads_leaves_the_deals_alone(store: Store, tmp_path: Path) -> None:
    with store.unit_of_work() as s:
        import_files(s, write(tmp_path / "before", LEADS, DEALS), spec(False))
    leads_only = write(tmp_path / "now", LEADS[:2], [])[:1]
    with store.unit_of_work() as s:
        summary = import_files(s, leads_only, spec())
    assert [(r.record, r.rows) for r in summary.removed] == [("lead", 2)]
    with store.unit_of_work() as s:
        assert (record_count(s, "crm"), deal_count(s, "crm")) == (2, 4)


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_without_the_setting_nothing_is_removed(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    with store.unit_of_work() as s:
        import_files(s, write(tmp_path / "before", LEADS, DEALS), spec(False))
    with store.unit_of_work() as s:
        summary = import_files(
            s, write(tmp_path / "now", LEADS[:1], DEALS[:1]), spec(False), parallel=parallel
        )
    assert summary.removed == []
    with store.unit_of_work() as s:
        assert (record_count(s, "crm"), deal_count(s, "crm")) == (4, 4)
    with store.unit_of_work() as s:
        summary = import_files(
            s, write(tmp_path / "now", LEADS[:1], DEALS[:1]), spec(), parallel=parallel
        )
    assert [r.rows for r in summary.removed] == [3, 3]


def test_the_command_line_says_what_it_removed(store: Store, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(TWO_FILES)
    paths = [str(p) for p in write(tmp_path / "before", LEADS, DEALS)]
    assert run("funnel", "import", *paths, "-m", str(mapping)).exit_code == 0
    now = [str(p) for p in write(tmp_path / "now", LEADS[1:], DEALS[1:])]
    out = run("funnel", "import", *now, "-m", str(mapping), "--whole-export").stdout
    assert (
        "1 of the 4 deals of the source “crm” is in none of these files: it was removed (for "
        "example “D1”)." in out
    )
    again = run("funnel", "import", *now, "-m", str(mapping), "--whole-export", "--json")
    data = json.loads(again.stdout)
    assert (data["removed"], data["removed_records"], data["unchanged"]) == ([], 0, 6)


def test_the_command_line_previews_the_removal_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(TWO_FILES)
    paths = [str(p) for p in write(tmp_path / "before", LEADS, DEALS)]
    assert run("funnel", "import", *paths, "-m", str(mapping)).exit_code == 0
    before = db_snapshot(store)
    now = [str(p) for p in write(tmp_path / "now", LEADS[:1], DEALS[:1])]
    out = run("funnel", "import", *now, "-m", str(mapping), "--whole-export", "--preview").stdout
    assert "would import into source 'crm': 2 rows, 0 new, 0 changed, 2 unchanged" in out
    assert (
        "3 of the 4 leads of the source “crm” are in none of these files: they would be removed "
        "(for example “L2”, “L3” and “L4”)." in out
    )
    assert "a preview: nothing was written" in out
    assert db_snapshot(store) == before


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_a_record_whose_row_cannot_be_read_is_not_removed(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    """Its row is rejected (an unreadable date, too few fields): it is in the export, so it is
    not removed; a row with no id lists nothing."""
    with store.unit_of_work() as s:
        import_files(s, write(tmp_path / "before", LEADS, DEALS), spec(False))
    leads = [LEADS[0], ["L2", "ads", "the 6th"], ["L3"], ["", "web", "2024-03-07"]]
    now = write(tmp_path / "now", leads, DEALS)[:1]
    with store.unit_of_work() as s:
        summary = import_files(s, now, spec(), parallel=parallel)
    assert summary.rejected == 3
    assert [(r.record, r.rows, r.examples) for r in summary.removed] == [("lead", 1, ["L4"])]
    with store.unit_of_work() as s:
        assert record_count(s, "crm") == 3


def test_the_command_line_refuses_to_remove_most_of_a_source_unless_told(
    store: Store, tmp_path: Path
) -> None:
    """Run unattended, an export that came down in part would empty the source: removing
    more than half of a kind is refused, the store unchanged, unless --remove-most says so."""
    mapping = tmp_path / "m.yaml"
    mapping.write_text(TWO_FILES)
    paths = [str(p) for p in write(tmp_path / "before", LEADS, DEALS)]
    assert run("funnel", "import", *paths, "-m", str(mapping)).exit_code == 0
    before = db_snapshot(store)
    part = [str(p) for p in write(tmp_path / "now", LEADS[:1], DEALS)]
    refused = run("funnel", "import", *part, "-m", str(mapping), "--whole-export")
    assert refused.exit_code != 0
    assert refused.output.strip() == (
        "error: leads.csv, deals.csv: as the whole export of the source “crm” they would remove "
        "3 of its 4 leads, more than half; if that is right, import them with --remove-most; "
        "if they are only a part of the export, without --whole-export"
    )
    assert db_snapshot(store) == before
    told = run("funnel", "import", *part, "-m", str(mapping), "--whole-export", "--remove-most")
    assert told.exit_code == 0, told.output
    with store.unit_of_work() as s:
        assert record_count(s, "crm") == 1
