"""Importing CSV exports: the mapping, the rejects file, idempotent re-import, and a store left
unchanged by a wrong mapping or an unreadable file."""

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
from models.funnel.tables import FunnelImport, FunnelRecord
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


def records(store: Store, source: str = "crm") -> dict[str, FunnelRecord]:
    with store.unit_of_work() as s:
        rows = s.scalars(select(FunnelRecord).where(FunnelRecord.source == source)).all()
        return {r.external_id: r for r in rows}


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
    assert l1.won_at == datetime(2024, 3, 20, 14, 30, tzinfo=UTC)
    assert l1.amount_cents == 123450  # "1.234,50" with a decimal comma
    assert (l1.channel, l1.owner, l1.team) == ("paid_search", "ann", "sales")  # value mapping
    assert l1.rejected_at is None and l1.rejection_reason is None  # status is Won
    assert l2.rejected_at == datetime(2024, 3, 2, 23, 0, tzinfo=UTC)
    assert (l2.rejection_reason, l2.won_at, l2.channel) == ("bad fit", None, "Webinar")
    assert (l3.channel, l3.owner, l3.amount_cents) == ("unknown", None, None)  # "" -> unknown
    assert all(x.first_touch_at is None for x in r.values())  # optional column, absent


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
    assert "8 rows, 3 new, 0 changed, 0 unchanged, 5 rejected" in res.stdout
    rejects = tmp_path / "out" / "leads.rejects.csv"
    assert f"-> {rejects}" in res.stdout
    with rejects.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason", *HEADER]
    by_line = {int(r[0]): r for r in rows[1:]}
    assert sorted(by_line) == [5, 6, 7, 8, 9]  # header is line 1, the good rows 2-4
    assert by_line[5][1] == "missing external id (column 'Lead ID')"
    assert by_line[6][1].startswith("mql_at: cannot read '31.02.2024' as a date")
    assert by_line[7][1] == "impossible order of stages: won is before MQL"
    assert by_line[8][1] == "the row has 2 fields, the header has 9"
    assert by_line[9][1] == "amount: cannot read 'lots' as an amount"
    assert by_line[6][2:] == BAD[1]  # the original cells, to fix and re-import
    assert set(records(store)) == {"L1", "L2", "L3"}
    with store.unit_of_work() as s:
        log = s.scalars(select(FunnelImport)).one()
        assert (log.rows_read, log.rows_new, log.rows_rejected) == (8, 3, 5)


def test_reimport_is_idempotent_and_changes_are_updates(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    data = write_csv(tmp_path / "leads.csv", GOOD)
    assert run("funnel", "import", str(data), "-m", str(mapping)).exit_code == 0
    before = db_snapshot(store)["funnel_records"]
    res = run("funnel", "import", str(data), "-m", str(mapping), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["new"], out["changed"], out["unchanged"]) == (0, 0, 3)
    assert db_snapshot(store)["funnel_records"] == before
    # L3 is now won; L2 has a new reason: two updates, no new rows
    rows = [list(r) for r in GOOD]
    rows[2][5:7] = ["Won", "25.03.2024 10:00"]
    rows[1][7] = "no budget"
    write_csv(data, rows)
    out = json.loads(run("funnel", "import", str(data), "-m", str(mapping), "--json").stdout)
    assert (out["new"], out["changed"], out["unchanged"]) == (0, 2, 1)
    r = records(store)
    assert len(r) == 3
    assert r["L3"].won_at == datetime(2024, 3, 25, 9, 0, tzinfo=UTC)
    assert r["L2"].rejection_reason == "no budget"


def test_the_same_record_twice_in_a_file_keeps_the_later_row(
    store: Store, tmp_path: Path, mapping: Path
) -> None:
    later = list(GOOD[2])
    later[2] = "cy"
    data = write_csv(tmp_path / "leads.csv", [GOOD[2], GOOD[0], later])
    out = json.loads(run("funnel", "import", str(data), "-m", str(mapping), "--json").stdout)
    assert (out["rows"], out["new"], out["changed"]) == (3, 2, 1)
    assert records(store)["L3"].owner == "cy"


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
    # a: won after its MQL; b: won before its MQL (rejected); c: a deal of an unknown lead
    assert (out["new"], out["changed"], out["rejected"]) == (1, 1, 1)
    r = records(store)
    assert (r["a"].channel, r["a"].won_at.day) == ("web", 9)  # channel kept
    assert r["b"].won_at is None
    assert r["c"].mql_at is None and r["c"].won_at.day == 2


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
    Lead ID,First Name,Company,Lead Source,Lead Status,Lead Owner,Created Date,Converted Date,Last Modified Date
    00Q1,Ann,Acme,Web,Closed - Converted,Sam Rep,3/1/2024,3/4/2024,3/4/2024
    00Q2,Bob,Beta,Trade Show,Closed - Not Converted,Sam Rep,3/2/2024,,3/6/2024
""")  # noqa: E501
SF_OPPS = textwrap.dedent("""\
    Opportunity ID,Opportunity Name,Stage,Amount,Close Date,Created Date,Opportunity Owner,Lead ID
    0061,Acme deal,Closed Won,"USD 8,000.00",4/2/2024,3/4/2024,Ava Closer,00Q1
""")


def test_hubspot_contacts_and_deals_join_by_contact_id(store: Store, tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text(HUBSPOT_CONTACTS)
    (tmp_path / "deals.csv").write_text(HUBSPOT_DEALS)
    # deals first on the command line: the profile still imports contacts first
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
    assert (out["new"], out["changed"], out["rejected"]) == (2, 1, 1)  # 9002 has no contact
    r = records(store, "hubspot")
    ann, bob = r["101"], r["102"]
    assert ann.channel == "paid_search" and ann.first_touch_at.hour == 12
    assert (ann.won_at.day, ann.opportunity_at.day, ann.amount_cents) == (20, 5, 1250000)
    assert ann.lost_at is None
    assert bob.rejected_at.day == 4 and bob.sql_at is None


def test_salesforce_leads_and_opportunities_join_by_lead_id(store: Store, tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text(SF_LEADS)
    (tmp_path / "opps.csv").write_text(SF_OPPS)
    res = run(
        "funnel",
        "import",
        str(tmp_path / "leads.csv"),
        str(tmp_path / "opps.csv"),
        "-p",
        "salesforce",
        "--json",
    )
    assert res.exit_code == 0, res.output
    r = records(store, "salesforce")
    acme, beta = r["00Q1"], r["00Q2"]
    assert (acme.mql_at.day, acme.sql_at.day, acme.won_at.month) == (1, 4, 4)
    assert (acme.amount_cents, acme.owner) == (800000, "Ava Closer")
    assert beta.rejected_at.day == 6 and beta.channel == "Trade Show"
