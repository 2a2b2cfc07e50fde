"""Importing CSV exports: the mapping, the rejects file, idempotent re-import, and a store left
unchanged by a wrong mapping or an unreadable file.

Why one file of this size: every test here imports through the same mapping and fixtures."""

from __future__ import annotations

import csv
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models.db import Store
from models.errors import InvalidInput
from models.funnel.importer import import_files
from models.funnel.mapping import load_profile, parse_mapping, profile_names
from models.funnel.tables import Deal, FunnelFlag, FunnelImport, Lead
from tests.conftest import db_snapshot

MAPPING = """
name: test-crm
source: crm
timezone: Europe/Berlin
date_formats: ["%d.%m.%Y %H:%M", "%d.%m.%Y"]
fields:
  external_id: Lead ID
  channel: {column: Source, values: {Google Ads: paid_search, "": unknown}}
  owner: Owner
  team: {default: sales}
  mql_at: MQL date
  first_touch_at: {column: First call, optional: true}
  sql_at: Accepted
  rejected_at: {column: Status date, when: {column: Status, in: [Rejected]}}
  rejection_reason: {column: Reason, when: {column: Status, in: [Rejected]}}
  won_at: {column: Status date, when: {column: Status, in: [Won]}}
  amount: {column: Amount, decimal: ","}
"""

HEADER = [
    "Lead ID",
    "Source",
    "Owner",
    "MQL date",
    "Accepted",
    "Status",
    "Status date",
    "Reason",
    "Amount",
]
GOOD = [
    [
        "L1",
        "Google Ads",
        "ann",
        "01.03.2024 10:00",
        "02.03.2024",
        "Won",
        "20.03.2024 15:30",
        "",
        "1.234,50",
    ],
    ["L2", "Webinar", "bob", "01.03.2024", "", "Rejected", "03.03.2024", "bad fit", ""],
    ["L3", "", "", "05.03.2024 09:00", "", "Open", "", "", ""],
]
BAD = [
    ["", "Webinar", "bob", "01.03.2024", "", "", "", "", ""],  # no id
    ["L5", "Webinar", "bob", "31.02.2024", "", "", "", "", ""],  # no such date
    ["L6", "Webinar", "bob", "10.03.2024", "", "Won", "01.03.2024", "", ""],  # won before MQL
    ["L7", "Webinar"],  # short row
    ["L8", "Webinar", "bob", "10.03.2024", "", "", "", "", "lots"],  # amount
]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER, **kw) -> Path:  # noqa: ANN003
    with path.open("w", newline="", encoding=kw.pop("encoding", "utf-8")) as f:
        w = csv.writer(f, **kw)
        w.writerow(header)
        w.writerows(rows)
    return path


def records(store: Store, source: str = "crm") -> dict[str, Lead]:
    with store.unit_of_work() as s:
        rows = s.scalars(select(Lead).where(Lead.source == source)).all()
        return {r.external_id: r for r in rows}


def deal_rows(store: Store, source: str = "crm") -> dict[str, Deal]:
    with store.unit_of_work() as s:
        rows = s.scalars(select(Deal).where(Deal.source == source)).all()
        return {r.external_id: r for r in rows}


def flags(store: Store) -> list[tuple[str | None, int | None, str, str]]:
    with store.unit_of_work() as s:
        rows = s.scalars(select(FunnelFlag).order_by(FunnelFlag.file, FunnelFlag.line)).all()
        return [(f.file, f.line, f.kind, f.sentence) for f in rows]


def cli() -> typer.Typer:
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    return app


def run(*args: str):  # noqa: ANN201
    cc.reset_store()
    return CliRunner().invoke(cli(), list(args))


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    p = tmp_path / "mapping.yaml"
    p.write_text(MAPPING)
    return p


def test_rows_are_mapped_into_records(store: Store, tmp_path: Path, mapping: Path) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    res = run(
        "funnel",
        "import",
        str(data),
        "--mapping",
        str(mapping),
        "--rejects-dir",
        str(tmp_path),
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["rows"], out["new"], out["rejected"]) == (3, 3, 0)
    r = records(store)
    l1, l2, l3 = r["L1"], r["L2"], r["L3"]
    # Berlin is UTC+1 in March: 10:00 local is 09:00 UTC
    assert l1.mql_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert l1.sql_at == datetime(2024, 3, 1, 23, 0, tzinfo=UTC)
    assert (l1.channel, l1.owner, l1.team) == ("paid_search", "ann", "sales")  # value mapping
    assert l1.rejected_at is None and l1.rejection_reason is None  # status is Won
    assert (l1.file, l1.line) == ("leads.csv", 2)
    assert l2.rejected_at == datetime(2024, 3, 2, 23, 0, tzinfo=UTC)
    assert (l2.rejection_reason, l2.channel) == ("bad fit", "Webinar")
    assert (l3.channel, l3.owner) == ("unknown", None)  # "" -> unknown
    assert all(x.first_touch_at is None for x in r.values())  # optional column, absent
    # one row is a lead and, when it has a deal's date or amount, its deal (keyed by the lead)
    (d1,) = deal_rows(store).values()
    assert (d1.external_id, d1.lead_key, d1.owner, d1.listed) == ("L1", "L1", "ann", True)
    assert d1.won_at == datetime(2024, 3, 20, 14, 30, tzinfo=UTC)
    assert d1.amount_cents == 123450  # "1.234,50" with a decimal comma


def test_bad_rows_go_to_the_rejects_file_with_line_and_reason(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD + BAD)
    res = run(
        "funnel",
        "import",
        str(data),
        "--mapping",
        str(mapping),
        "--rejects-dir",
        str(tmp_path / "out"),
    )
    assert res.exit_code == 0, res.output
    assert "8 rows, 4 new, 0 changed, 0 unchanged, 4 rejected" in res.stdout
    rejects = tmp_path / "out" / "leads.rejects.csv"
    assert f"-> {rejects}" in res.stdout
    with rejects.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason", *HEADER]
    by_line = {int(r[0]): r for r in rows[1:]}
    assert sorted(by_line) == [5, 6, 8, 9]  # header is line 1, the good rows 2-4
    assert by_line[5][1] == "missing id (column 'Lead ID')"
    assert by_line[6][1].startswith("mql_at: cannot read '31.02.2024' as a date")
    assert by_line[8][1] == "the row has 2 fields, the header has 9"
    assert by_line[9][1].startswith("amount: 'lots' is not a number (read with decimal ','")
    assert by_line[6][2:] == BAD[1]  # the original cells, to fix and re-import
    # won before its MQL: a real record in an odd order is kept, and flagged with its line
    assert set(records(store)) == {"L1", "L2", "L3", "L6"}
    assert flags(store) == [
        ("leads.csv", 7, "out_of_order", "Deal L6: the win is 9 days before its lead's MQL date.")
    ]
    assert "1 record kept with a data-quality flag" in res.stdout
    assert "leads.csv, line 7: Deal L6: the win is 9 days before its lead's MQL date." in res.stdout
    with store.unit_of_work() as s:
        log = s.scalars(select(FunnelImport)).one()
        assert (log.rows_read, log.rows_new, log.rows_rejected, log.rows_flagged) == (8, 4, 4, 1)


def test_reimport_is_idempotent_and_changes_are_updates(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    assert run("funnel", "import", str(data), "-m", str(mapping)).exit_code == 0
    before = {t: db_snapshot(store)[t] for t in ("leads", "deals", "funnel_flags")}
    res = run("funnel", "import", str(data), "-m", str(mapping), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["new"], out["changed"], out["unchanged"]) == (0, 0, 3)
    assert {t: db_snapshot(store)[t] for t in before} == before
    # L3 is now won; L2 has a new reason: two updates, no new rows
    rows = [list(r) for r in GOOD]
    rows[2][5:7] = ["Won", "25.03.2024 10:00"]
    rows[1][7] = "no budget"
    write_csv(data, rows)
    out = json.loads(run("funnel", "import", str(data), "-m", str(mapping), "--json").stdout)
    assert (out["new"], out["changed"], out["unchanged"]) == (0, 2, 1)
    r = records(store)
    assert len(r) == 3
    assert deal_rows(store)["L3"].won_at == datetime(2024, 3, 25, 9, 0, tzinfo=UTC)
    assert r["L2"].rejection_reason == "no budget"


def test_the_same_record_twice_in_a_file_is_counted_once_and_said(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    """A record on several rows of one file (a report with a row per product or contact) is
    stored once, from its latest row; the repeats are counted apart, not as new or changed
    records, and the summary names the lines and the columns whose values differ."""
    later = list(GOOD[2])
    later[2] = "cy"
    data = write_csv(tmp_path / "leads.csv", [GOOD[2], GOOD[0], later, GOOD[0]])
    out = json.loads(run("funnel", "import", str(data), "-m", str(mapping), "--json").stdout)
    assert (out["rows"], out["new"], out["changed"], out["repeated"]) == (4, 2, 0, 2)
    assert records(store)["L3"].owner == "cy"
    assert (records(store)["L1"].line, records(store)["L3"].line) == (3, 4)  # (the same: kept)
    assert out["files"][0]["repeats"] == {
        "record": "lead",
        "rows": 2,
        "differ": 1,
        "examples": [
            {"key": "L3", "line": 4, "earlier": 2, "columns": ["Owner"]},
            {"key": "L1", "line": 5, "earlier": 3, "columns": []},
        ],
    }
    text = run("funnel", "import", str(data), "-m", str(mapping)).stdout
    assert (
        "leads.csv: 2 rows list a lead that an earlier row lists too, 1 of them with other "
        "values (for example “L3” on line 4, whose 'Owner' differs from line 2; or “L1” on "
        "lines 3 and 5). Each lead is counted once; where the rows differ, the later one is "
        "kept." in text
    )
    # the same file again: L3's first row differs from what its later row left, which gives it
    # back: nothing changed
    assert "4 rows, 0 new, 0 changed, 2 unchanged, 0 rejected, 2 repeating" in text
    assert records(store)["L3"].owner == "cy"
    with store.unit_of_work() as s:
        assert [i.rows_repeated for i in s.scalars(select(FunnelImport))] == [2, 2]


def test_a_later_file_fills_in_the_same_records(store: Store, tmp_path: Path) -> None:
    """Two mappings of one source: the second only writes its own fields."""
    leads = tmp_path / "leads.yaml"
    leads.write_text("name: l\nsource: crm\nfields: {external_id: id, mql_at: mql, channel: ch}\n")
    deals = tmp_path / "deals.yaml"
    deals.write_text("name: d\nsource: crm\nfields: {external_id: lead, won_at: won}\n")
    write_csv(
        tmp_path / "l.csv",
        [["a", "2024-03-01", "web"], ["b", "2024-03-05", "ads"]],
        ["id", "mql", "ch"],
    )
    write_csv(
        tmp_path / "d.csv",
        [["a", "2024-03-09"], ["b", "2024-03-01"], ["c", "2024-03-02"]],
        ["lead", "won"],
    )
    assert run("funnel", "import", str(tmp_path / "l.csv"), "-m", str(leads)).exit_code == 0
    res = run(
        "funnel",
        "import",
        str(tmp_path / "d.csv"),
        "-m",
        str(deals),
        "--rejects-dir",
        str(tmp_path),
        "--json",
    )
    out = json.loads(res.stdout)
    # a: won after its MQL; b: won before its MQL (kept, flagged); c: a deal of a lead not
    # imported (yet): kept and flagged, it finds its lead by id whenever the lead arrives
    assert (out["new"], out["changed"], out["rejected"]) == (3, 0, 0)
    r, d = records(store), deal_rows(store)
    assert set(r) == {"a", "b"} and r["a"].channel == "web"  # the leads are not touched
    assert {k: (v.lead_key, v.won_at.day) for k, v in d.items()} == {
        "a": ("a", 9),
        "b": ("b", 1),
        "c": ("c", 2),
    }
    assert [(f[0], f[1], f[2]) for f in flags(store)] == [
        ("d.csv", 3, "out_of_order"),
        ("d.csv", 4, "lead_not_found"),
    ]


def test_progress_is_only_for_terminals_and_json_stays_clean(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    res = run("funnel", "import", str(data), "-m", str(mapping), "--json")
    assert "importing" not in res.stderr
    json.loads(res.stdout)


# --- refusals leave the store unchanged --------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.replace("Owner\n", "Rep\n"), "column 'Rep' (owner) is not in the file"),
        (lambda m: m.replace("  mql_at:", "  mql_date:"), "fields.mql_date: invalid key"),
        (lambda m: m.replace("  external_id: Lead ID\n", ""), "fields.external_id: map the column"),
        (lambda m: m.replace("Europe/Berlin", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (
            lambda m: m.replace("team: {default: sales}", "team: {default: x, format: '%Y'}"),
            "fields.team: 'format' is for timestamp fields",
        ),
        (lambda m: m.replace('"%d.%m.%Y"]', '"dd.mm.yyyy"]'), "is not a date format"),
        (lambda m: m + "  owner: X\n", "duplicate key 'owner'"),
        (lambda m: m.replace("source: crm", "source: CRM Data"), "source: String should match"),
    ],
)
def test_a_wrong_mapping_is_one_line_and_changes_nothing(
    store: Store,
    tmp_path: Path,
    mapping: Path,
    change,
    message: str,  # noqa: ANN001
) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    assert run("funnel", "import", str(data), "-m", str(mapping)).exit_code == 0
    before = db_snapshot(store)
    mapping.write_text(change(MAPPING))
    rows = [list(r) for r in GOOD]
    rows[0][2] = "someone else"
    write_csv(data, rows)
    res = run("funnel", "import", str(data), "-m", str(mapping), "--rejects-dir", str(tmp_path))
    assert res.exit_code == 1, res.output
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert db_snapshot(store) == before


def test_an_unreadable_file_changes_nothing_and_leaves_no_rejects(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    good = write_csv(tmp_path / "leads.csv", GOOD)
    assert run("funnel", "import", str(good), "-m", str(mapping)).exit_code == 0
    before = db_snapshot(store)
    # a bad row first (it would go to the rejects file), then bytes that are not UTF-8
    broken = tmp_path / "broken.csv"
    write_csv(broken, [["L9", "x", "y", "bad date", "", "", "", "", ""]] + GOOD * 2000)
    with broken.open("ab") as f:
        f.write(b"L10,Caf\xe9,ann,01.03.2024,,,,,\n")
    res = run(
        "funnel", "import", str(broken), "-m", str(mapping), "--rejects-dir", str(tmp_path / "rej")
    )
    assert res.exit_code == 1
    assert "not utf-8-sig text" in res.stderr and "line 6003" in res.stderr  # header 1, rows 2-6002
    assert "nothing was imported" in res.stderr
    assert db_snapshot(store) == before
    assert not (tmp_path / "rej" / "broken.rejects.csv").exists()
    for args, message in [
        ([str(tmp_path / "missing.csv")], "cannot read"),
        ([str(tmp_path)], "is a folder"),
        ([str(good), str(good)], "the same file is given twice"),
    ]:
        res = run("funnel", "import", *args, "-m", str(mapping))
        assert res.exit_code == 1 and message in res.stderr, res.output
    (tmp_path / "empty.csv").write_text("")
    res = run("funnel", "import", str(tmp_path / "empty.csv"), "-m", str(mapping))
    assert res.exit_code == 1 and "the file is empty" in res.stderr
    assert db_snapshot(store) == before


def test_a_wrong_delimiter_gets_a_hint(store: Store, tmp_path: Path, mapping: Path) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD, delimiter=";")
    before = db_snapshot(store)
    res = run("funnel", "import", str(data), "-m", str(mapping))
    assert res.exit_code == 1
    assert "separated by ';': set 'delimiter' in the mapping" in res.stderr
    assert db_snapshot(store) == before


def test_profile_and_mapping_options(store: Store, tmp_path: Path, mapping: Path) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    res = run("funnel", "import", str(data))
    assert res.exit_code == 2 and "--profile NAME or --mapping FILE" in res.stderr
    res = run("funnel", "import", str(data), "-p", "olist", "-m", str(mapping))
    assert res.exit_code == 2
    res = run("funnel", "import", str(data), "-p", "pipedrive")
    assert res.exit_code == 1 and "unknown profile 'pipedrive'" in res.stderr
    assert "hubspot, olist, salesforce" in res.stderr


def test_the_mapping_is_checked_before_anything_is_written(store: Store, tmp_path: Path) -> None:
    spec = parse_mapping(MAPPING)
    ok = write_csv(tmp_path / "ok.csv", GOOD)
    other = write_csv(tmp_path / "other.csv", [["1"]], ["something"])
    before = db_snapshot(store)
    refused = pytest.raises(InvalidInput, match="other.csv: column 'Lead ID'")
    with refused, store.unit_of_work() as s:
        import_files(s, [ok, other], spec)
    assert db_snapshot(store) == before


# --- the shipped profiles ------------------------------------------------------------------------


def test_every_shipped_profile_is_valid() -> None:
    assert set(profile_names()) >= {"hubspot", "salesforce", "olist"}
    for name in profile_names():
        assert load_profile(name).name == name


HUBSPOT_CONTACTS = textwrap.dedent("""\
    Record ID,First Name,Email,Create Date,Original Source,Contact owner,Became a Marketing Qualified Lead Date,Became a Sales Qualified Lead Date,Lead Status,Last Activity Date,Date of first engagement
    101,Ann,ann@x.io,2024-02-28 09:00,Paid Search,Sam Rep,2024-03-01 10:00,2024-03-02 08:00,OPEN_DEAL,2024-03-02 08:00,2024-03-01 12:30
    102,Bob,bob@x.io,2024-02-28 09:00,Organic Search,Sam Rep,2024-03-03 10:00,,Unqualified,2024-03-04 16:00,2024-03-04 09:00
""")  # noqa: E501
HUBSPOT_DEALS = textwrap.dedent("""\
    Record ID,Deal Name,Deal Stage,Amount,Close Date,Create Date,Deal owner,Associated Contact IDs
    9001,Ann's deal,Closed Won,"12,500.00",2024-03-20 17:00,2024-03-05 11:00,Sam Rep,101;555
    9002,Nobody's deal,Closed Lost,300,2024-03-21 10:00,2024-03-06 11:00,Sam Rep,
""")
SF_LEADS = textwrap.dedent("""\
    Lead ID,First Name,Company / Account,Lead Source,Lead Status,Lead Owner,Created Date,Converted Date,Last Modified Date,Converted Opportunity ID
    00Q5g000001AbCd,Ann,Acme,Web,Closed - Converted,Sam Rep,3/1/2024,3/4/2024,3/4/2024,0065g00000XyZaBAAV
    00Q5g000001AbCe,Bob,Beta,Trade Show,Closed - Not Converted,Sam Rep,3/2/2024,,3/6/2024,

    "Confidential Information - Do Not Distribute"
    "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved."
""")  # noqa: E501
SF_OPPS = textwrap.dedent("""\
    Opportunity ID,Opportunity Name,Account Name,Stage,Amount,Close Date,Created Date,Opportunity Owner
    0065g00000XyZaB,Acme deal,Acme,Closed Won,"USD 8,000.00",4/2/2024,3/4/2024,Ava Closer
    0065g00000XyZaC,Acme upsell,Acme,Prospecting,"USD 1,000.00",5/30/2024,4/3/2024,Ava Closer

    "Grand Totals (2 records)"
    "Confidential Information - Do Not Distribute"
    "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved."
""")  # noqa: E501


def test_hubspot_contacts_and_deals_join_by_contact_id(store: Store, tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text(HUBSPOT_CONTACTS)
    (tmp_path / "deals.csv").write_text(HUBSPOT_DEALS)
    res = run(
        "funnel",
        "import",
        str(tmp_path / "deals.csv"),
        str(tmp_path / "contacts.csv"),
        "-p",
        "hubspot",
        "--rejects-dir",
        str(tmp_path),
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [f["part"] for f in out["files"]] == ["contacts", "deals"]
    assert (out["new"], out["changed"], out["rejected"]) == (4, 0, 0)
    r, d = records(store, "hubspot"), deal_rows(store, "hubspot")
    ann, bob = r["101"], r["102"]
    assert ann.channel == "paid_search" and ann.first_touch_at.hour == 12
    assert bob.rejected_at.day == 4 and bob.sql_at is None
    won, lost = d["9001"], d["9002"]
    assert (won.lead_key, won.other_leads, won.stage) == ("101", "555", "Closed Won")
    assert (won.won_at.day, won.opportunity_at.day, won.amount_cents) == (20, 5, 1250000)
    # a deal with no associated contact belongs to its company only: kept, counted as a deal
    assert (lost.lead_key, lost.lost_at.day, lost.amount_cents) == (None, 21, 30000)
    assert out["flags"] == 1
    assert out["first_flags"][0]["sentence"] == (
        "Deal 9001 lists 2 leads; it counts for the first, 101 (also listed: 555)."
    )


def test_salesforce_reports_link_by_the_converted_opportunity_and_id_roots(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "leads.csv").write_text(SF_LEADS)
    (tmp_path / "opps.csv").write_text(SF_OPPS)
    files = [str(tmp_path / "opps.csv"), str(tmp_path / "leads.csv")]
    before = db_snapshot(store)
    # every date (3/1/2024, 4/2/2024, ...) reads both ways: the import asks, it does not guess
    res = run("funnel", "import", *files, "-p", "salesforce")
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'leads.csv'}: line 2, column 'Created Date': '3/1/2024' reads both"
        " day-first"
        " and month-first, and no date in the file tells which; set dates: day-first or "
        "month-first in the mapping, or --dates on the command line"
    )
    assert db_snapshot(store) == before
    res = run("funnel", "import", *files, "-p", "salesforce", "--dates", "month-first", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["rows"], out["new"], out["rejected"]) == (4, 4, 0)
    assert [f["skipped"] for f in out["files"]] == [3, 4]  # the footers and blank lines
    r, d = records(store, "salesforce"), deal_rows(store, "salesforce")
    acme, beta = r["00Q5g000001AbCd"], r["00Q5g000001AbCe"]
    assert (acme.mql_at.day, acme.sql_at.day, beta.rejected_at.day) == (1, 4, 6)
    # the lead names its opportunity by the 18-character id; the report has the 15-character one
    assert set(d) == {"0065g00000XyZaB", "0065g00000XyZaC"}
    deal = d["0065g00000XyZaB"]
    assert (deal.lead_key, deal.amount_cents, deal.owner) == (
        "00Q5g000001AbCd",
        800000,
        "Ava Closer",
    )
    assert (deal.won_at.month, deal.won_at.day) == (4, 2)  # month-first: 2 April
    from models.funnel.kpis import compute_kpis

    with store.unit_of_work() as s:
        k = compute_kpis(s, source="salesforce", as_of=datetime(2024, 5, 3, tzinfo=UTC)).overall()
    assert k["mql_to_won_rate"].value == 0.5  # Acme won of Ann and Bob
    assert k["open_pipeline_count"].value == 1 and k["open_pipeline_value"].value == 1000.0
    assert k["deal_aging_median_days"].value == 30.0  # created 3 April, as of 3 May


def test_the_work_after_the_files_is_told_step_by_step(
    store: Store, tmp_path: Path, mapping: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal shows what the import does once the files are read: linking, checking,
    finding the months to sum up again, and summing up the numbers, whose steps move while
    the rows are read for them (the longest part, seconds at a million leads), not only once
    the months are built: of a number told from the first step, up to it, never back."""
    from models.funnel import rollup_build, rollups

    # a row at a time (one chunk per row), and what the numbers do, in order
    monkeypatch.setattr(rollup_build, "CHUNK", 1)
    events: list[tuple] = []
    partition, write = rollup_build._partition, rollups._write

    def chunk(*args):  # noqa: ANN002, ANN202
        events.append(("chunk read",))
        return partition(*args)

    def built(*args):  # noqa: ANN002, ANN202
        events.append(("months built",))
        return write(*args)

    monkeypatch.setattr(rollup_build, "_partition", chunk)
    monkeypatch.setattr(rollups, "_write", built)
    data = write_csv(tmp_path / "leads.csv", GOOD)
    with store.unit_of_work() as s:
        import_files(
            s,
            [data],
            parse_mapping(mapping.read_text()),
            after_files=lambda what, done, of: events.append((what, done, of)),
        )
    steps = [e for e in events if len(e) == 3]
    assert [w for w, _d, _o in steps[:4]] == [
        "linking deals to their leads",
        "checking the data quality",
        "finding the months whose numbers changed",
        "summing up the numbers",
    ]
    numbers = [(d, o) for w, d, o in steps if w == "summing up the numbers"]
    assert numbers[0] == (0, 1)  # told before the rows are counted: no share yet
    numbers = numbers[1:]
    of = numbers[0][1]
    assert numbers[0] == (0, of) and of > 1
    assert all(o == of for _d, o in numbers)  # never changes once told
    done = [d for d, _o in numbers]
    assert done == sorted(done) and done[-1] == of  # only grows, up to the end
    # steps are told while the rows are read: after the first chunk, before the last
    chunks = [i for i, e in enumerate(events) if e == ("chunk read",)]
    assert len(chunks) >= len(GOOD)
    during = [e for e in events[chunks[0] : chunks[-1]] if len(e) == 3]
    assert during and all(w == "summing up the numbers" and d > 0 for w, d, _o in during)
    # ... and the months built move them on from there to the end
    first_built = events.index(("months built",))
    assert first_built > chunks[-1]
    read = [e[1] for e in events[:first_built] if e[0] == "summing up the numbers"]
    assert 0 < read[-1] < of


def test_the_terminal_says_how_much_of_the_numbers_is_summed_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The steps of summing up the numbers are chunks of rows, a size nobody knows: the
    terminal shows the share done."""
    progress = cli_funnel._Progress()
    try:
        progress.after_files("summing up the numbers", 134, 536)
    finally:
        progress.close()
    assert "summing up the numbers (25%), 0 s after reading the files" in capsys.readouterr().err


TWO_FILES = """
name: two-files
source: crm
files:
  - name: leads
    fields: {external_id: id, channel: ch, mql_at: mql}
  - name: deals
    fields: {deal_id: deal, lead_id: lead, opportunity_at: created, amount: amount}
"""


def test_a_first_import_with_repeated_records_counts_and_links_them(
    store: Store, tmp_path: Path
) -> None:
    """A first import writes new rows without looking them up; a record repeated in a file,
    or in the next chunk of an export, still counts as a change, the later row wins, and each
    deal carries its lead's fields."""
    lead_header, deal_header = ["id", "ch", "mql"], ["deal", "lead", "created", "amount"]
    a = write_csv(tmp_path / "leads-1.csv", [["a", "web", "2024-03-01"]], lead_header)
    b = write_csv(
        tmp_path / "leads-2.csv",
        [["b", "ads", "2024-03-02"], ["a", "events", "2024-03-03"]],
        lead_header,
    )
    deals = write_csv(
        tmp_path / "deals.csv",
        [["d1", "a", "2024-03-05", "10"], ["d2", "b", "2024-03-06", "20"]]
        + [["d1", "b", "2024-03-07", "30"]],
        deal_header,
    )
    with store.unit_of_work() as s:
        summary = import_files(s, [a, b, deals], parse_mapping(TWO_FILES))
    by_file = {Path(f.file).name: (f.new, f.changed) for f in summary.files}
    assert by_file == {"leads-1.csv": (1, 0), "leads-2.csv": (1, 1), "deals.csv": (2, 0)}
    # (a record in two files of one export counts as changed; twice in one file, as repeated)
    assert [f.repeated for f in summary.files] == [0, 0, 1]
    r, d = records(store), deal_rows(store)
    assert (r["a"].channel, r["a"].line) == ("events", 3)
    assert (d["d1"].lead_key, d["d1"].amount_cents, d["d1"].lead_channel) == ("b", 3000, "ads")
    assert (d["d2"].lead_key, d["d2"].lead_channel) == ("b", "ads")
    assert (r["a"].deal_count, r["b"].deal_count) == (None, 2)
    # again: a record of two files changes back and forth, one file after the other; a record
    # twice in one file ends as it was (its first row, on its own, differed)
    with store.unit_of_work() as s:
        again = import_files(s, [a, b, deals], parse_mapping(TWO_FILES))
    by_file = {Path(f.file).name: (f.new, f.changed, f.unchanged) for f in again.files}
    assert by_file == {"leads-1.csv": (0, 1, 0), "leads-2.csv": (0, 1, 1), "deals.csv": (0, 0, 2)}
    assert [f.repeated for f in again.files] == [0, 0, 1]
    d = deal_rows(store)
    assert (records(store)["a"].channel, d["d1"].lead_key, d["d1"].lead_channel) == (
        "events",
        "b",
        "ads",
    )


def test_a_file_no_part_of_the_profile_reads_says_how_to_read_it(
    store: Store, tmp_path: Path
) -> None:
    """An export of another system (Maven's opportunities, say) given with the generic
    profile: refused before anything is written, naming its columns, what each of the
    profile's files lacks, and what resolves it."""
    path = tmp_path / "sales_pipeline.csv"
    path.write_text(
        "opportunity_id,sales_agent,deal_stage,engage_date,close_date,close_value\n"
        "1C1I7A6R,Moses Frase,Won,2016-10-20,2017-03-01,1054\n"
    )
    before = db_snapshot(store)
    with store.unit_of_work() as s, pytest.raises(InvalidInput) as refused:
        import_files(s, [path], load_profile("generic"))
    assert str(refused.value) == (
        f"{path}: its columns fit none of the mapping's files (leads: no column 'lead_id'; "
        "deals: no column 'deal_id'); the file's columns are: opportunity_id, sales_agent, "
        "deal_stage, engage_date, close_date, close_value; choose the profile of the system "
        "it came from, or write your own mapping naming these columns"
    )
    assert db_snapshot(store) == before


def test_leads_with_no_mql_date_are_counted_and_said_to_be_in_no_kpi(
    store: Store, tmp_path: Path
) -> None:
    """An export whose leads carry no MQL date (X Education's has no date at all) imports, and
    the summary says how many are in none of the KPIs, and what resolves it; the KPIs agree."""
    path = tmp_path / "leads.csv"
    path.write_text(
        "id,source,mql\nL1,Google,2025-03-03 09:00\nL2,Google,\nL3,Olark Chat,\nL4,Google,\n"
    )
    spec = "name: plain\nsource: plain\nfields:\n  external_id: id\n  channel: source\n"
    spec += "  mql_at: {column: mql, optional: true}\n"
    (tmp_path / "plain.yaml").write_text(spec)
    with store.unit_of_work() as s:
        summary = import_files(s, [path], parse_mapping(spec))
    assert [(f.rows, f.undated, f.reads_mql) for f in summary.files] == [(4, 3, True)]
    again = run("funnel", "import", "-m", str(tmp_path / "plain.yaml"), str(path))
    assert again.exit_code == 0, again.output
    assert (
        "leads.csv: 3 leads with no MQL date, in none of the KPIs (they count each lead from its "
        "MQL date)\n"
    ) in again.output
    shown = run("kpi", "show", "--json")
    assert json.loads(shown.output)["groups"][0]["kpis"]["mql_volume"]["value"] == 1
    # a mapping that reads no MQL date at all: every lead, and what resolves it
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: bare\nsource: bare\nfields:\n  external_id: id\n")
    out = run("funnel", "import", "-m", str(bare), str(path))
    assert (
        "leads.csv: 4 leads with no MQL date, in none of the KPIs (they count each lead from its "
        "MQL date); the mapping reads none: name its column as mql_at"
    ) in out.output
