"""Reading real exports without guessing: declared date orders and separators (en_GB, de_DE,
en_US), ambiguous or mixed dates refused with the setting that resolves them, amounts in every
common notation, encodings (Latin-1, UTF-16), NUL bytes, files that are no CSV, and mapping
bounds. Every refusal is one line naming the file (and line and column where there is one),
and leaves the store unchanged."""

from __future__ import annotations

import codecs
import json
import re
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models.db import Store
from models.errors import InvalidInput
from models.funnel import files
from models.funnel.importer import import_files
from models.funnel.mapping import FieldSpec, parse_mapping
from models.funnel.values import RowError, date_evidence, money_parser, salesforce_root
from tests.conftest import db_snapshot
from tests.funnel_helpers import funnel_content


def cli() -> typer.Typer:
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    return app


def run(*args: str):  # noqa: ANN201
    cc.reset_store()
    return CliRunner().invoke(cli(), list(args))


def one_line_refusal(res, *parts: str) -> None:  # noqa: ANN001
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in res.output
    for part in parts:
        assert part in err, err


# --- amounts ---------------------------------------------------------------------------------


def money(decimal: str = ".", thousands: str | None = None):  # noqa: ANN201
    spec = parse_mapping(
        f"name: m\nsource: m\ndecimal: {decimal!r}\n"
        + (f"thousands: {thousands!r}\n" if thousands is not None else "")
        + "fields: {external_id: id}\n"
    )
    return money_parser(FieldSpec(column="a"), spec)


@pytest.mark.parametrize(
    ("raw", "decimal", "cents"),
    [
        ("12.000,00 €", ",", 1_200_000),
        ("€ 12.000,00", ",", 1_200_000),
        ("EUR 1.234,5", ",", 123_450),
        ("1 234,50", ",", 123_450),
        ("1\u00a0234,50", ",", 123_450),  # non-breaking space
        ("1\u202f234,50", ",", 123_450),  # narrow non-breaking space
        ("(500.00)", ".", -50_000),
        ("-500", ".", -50_000),
        ("500-", ".", -50_000),
        ("$ (1,250.75)", ".", -125_075),
        ("1.5E+06", ".", 150_000_000),
        ("2,5e3", ",", 250_000),
        ("USD 8,000.00", ".", 800_000),
        ("R$ 1.000,00", ",", 100_000),
        ("1234.5", ".", 123_450),
        ("0", ".", 0),
        ("1,234,567.89", ".", 123_456_789),
    ],
)
def test_amounts_in_every_common_notation(raw: str, decimal: str, cents: int) -> None:
    assert money(decimal)(raw) == cents


@pytest.mark.parametrize(
    ("raw", "decimal", "why"),
    [
        ("12.000,00 €", ".", "has ',' after '.': is ',' its decimal?"),  # de_DE read as en_US
        ("1.234", ".", "has three decimals"),  # 1.234 or 1234? the setting says
        ("1.5E+06", ",", "scientific notation with '.'"),
        ("1,2,3", ",", "has ',' twice"),
        ("lots", ".", "is not a number"),
        ("12.345", ",", None),  # with a decimal comma, 12.345 is twelve thousand: readable
    ],
)
def test_an_amount_the_settings_cannot_read_names_the_setting(
    raw: str, decimal: str, why: str | None
) -> None:
    parse = money(decimal)
    if why is None:
        assert parse(raw) == 1_234_500
        return
    with pytest.raises(RowError, match="set --decimal/--thousands") as exc:
        parse(raw)
    assert why in str(exc.value)
    assert f"decimal {decimal!r}" in str(exc.value)


def test_salesforce_ids_compare_by_their_15_character_root() -> None:
    assert salesforce_root("0065g00000XyZaBAAV") == "0065g00000XyZaB"
    assert salesforce_root("0065g00000XyZaB") == "0065g00000XyZaB"
    # a wrong checksum: not the 18-character form of that record, kept as it is
    assert salesforce_root("0065g00000XyZaBAAA") == "0065g00000XyZaBAAA"
    # case matters: the root of another record is another id
    assert salesforce_root("0065G00000XYZABAAV") != salesforce_root("0065g00000XyZaBAAV")


# --- dates: declared, detected, refused ------------------------------------------------------

GENERIC_LEADS = "lead_id,mql_date,channel\n"


def leads_file(tmp_path: Path, rows: list[str], name: str = "leads.csv", **kw) -> Path:  # noqa: ANN003
    p = tmp_path / name
    p.write_text(GENERIC_LEADS + "".join(r + "\n" for r in rows), **kw)
    return p


def import_generic(tmp_path: Path, *args: str):  # noqa: ANN201
    return run(
        "funnel", "import", *args, "-p", "generic", "--rejects-dir", str(tmp_path / "rej"), "--json"
    )


def mql_days(store: Store) -> dict[str, tuple[int, int]]:
    from sqlalchemy import select

    from models.funnel.tables import Lead

    with store.unit_of_work() as s:
        return {r.external_id: (r.mql_at.month, r.mql_at.day) for r in s.scalars(select(Lead))}


def test_day_first_dates_are_read_day_first_when_declared(store: Store, tmp_path: Path) -> None:
    f = leads_file(tmp_path, ["a,04/03/2025,web", "b,05/03/2025 14:30,web"])
    res = import_generic(tmp_path, str(f), "--dates", "day-first")
    assert res.exit_code == 0, res.output
    assert mql_days(store) == {"a": (3, 4), "b": (3, 5)}  # 4 and 5 March, not April and May


def test_the_file_shows_its_order_when_a_day_is_above_12(store: Store, tmp_path: Path) -> None:
    f = leads_file(tmp_path, ["a,04/03/2025,web", "b,25/03/2025,web"])
    res = import_generic(tmp_path, str(f))  # the generic profile says dates: auto
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"][0]["dates"] == (
        "day-first (line 3, column 'mql_date': '25/03/2025')"
    )
    assert mql_days(store) == {"a": (3, 4), "b": (3, 25)}


@pytest.mark.parametrize("args", [[], ["--dates", "iso"], ["--dates", "month-first"]])
def test_a_date_whose_month_is_named_is_read_whatever_the_order(
    store: Store, tmp_path: Path, args: list[str]
) -> None:
    """A date such as "5 Jan 2025" or "Jan 5, 2025" says which is the month: read as it is,
    in a file of numeric dates or not; a two-digit year is a rejected row that says why."""
    rows = [
        "a,5 Jan 2025,web",
        'b,"Jan 6, 2025 2:05 PM",web',
        "c,07-Feb-2025 09:30,web",
        'd,"Saturday, March 8, 2025",web',
        "e,9-Jan-25,web",
        "f,Smarch 9 2025,web",
    ]
    f = leads_file(tmp_path, rows)
    res = import_generic(tmp_path, str(f), *args)
    assert res.exit_code == 0, res.output
    assert mql_days(store) == {"a": (1, 5), "b": (1, 6), "c": (2, 7), "d": (3, 8)}
    reasons = [r["reason"] for r in json.loads(res.stdout)["files"][0]["first_rejects"]]
    assert reasons == [
        "mql_at: '9-Jan-25' has a two-digit year; export four-digit years",
        "mql_at: cannot read 'Smarch 9 2025' as a date",
    ]


@pytest.mark.parametrize(
    ("rows", "args", "parts"),
    [
        (  # only values that read both ways: ask
            ["a,04/03/2025,web", "b,05/03/2025,web"],
            [],
            [
                "leads.csv: line 2, column 'mql_date': '04/03/2025' reads both day-first and "
                "month-first",
                "set dates: day-first or month-first in the mapping, or --dates",
            ],
        ),
        (  # both orders in one file
            ["a,25/03/2025,web", "b,03/26/2025,web"],
            [],
            [
                "leads.csv: line 3, column 'mql_date': '03/26/2025' is month-first but line 2",
                "the file mixes both orders",
            ],
        ),
        (  # declared day-first, but a value is month-first
            ["a,04/03/2025,web", "b,03/26/2025,web"],
            ["--dates", "day-first"],
            [
                "leads.csv: line 3, column 'mql_date': '03/26/2025' is month-first but the file is "
                "read day-first",
                "--dates month-first",
            ],
        ),
        (  # ISO declared, numeric dates found
            ["a,04/03/2025,web"],
            ["--dates", "iso"],
            ["line 2, column 'mql_date': '04/03/2025' is not an ISO date", "--dates"],
        ),
    ],
)
def test_dates_the_settings_cannot_read_without_guessing_refuse_the_file(
    store: Store, tmp_path: Path, rows: list[str], args: list[str], parts: list[str]
) -> None:
    ok = leads_file(tmp_path, ["z,2025-01-02,web"], name="ok.csv")
    assert import_generic(tmp_path, str(ok)).exit_code == 0
    before = db_snapshot(store)
    f = leads_file(tmp_path, rows)
    res = run("funnel", "import", str(f), "-p", "generic", "--rejects-dir", str(tmp_path), *args)
    one_line_refusal(res, *parts)
    assert db_snapshot(store) == before


def test_a_mapping_listing_both_orders_is_refused(store: Store, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(
        "name: m\nsource: m\ndate_formats: ['%d/%m/%Y', '%m/%d/%Y']\nfields: {external_id: id}\n"
    )
    f = leads_file(tmp_path, ["a,04/03/2025,web"])
    one_line_refusal(
        run("funnel", "import", str(f), "-m", str(m)),
        "m.yaml: date_formats: the formats read dates both day-first and month-first",
    )


def test_de_DE_salesforce_export_with_footer_timezone_and_amounts(
    store: Store, tmp_path: Path
) -> None:
    """A German Salesforce org's reports: 04.03.2025 dates, 12.000,00 € amounts, Berlin time,
    the report's footer; declared on the command line, without copying the profile."""
    leads = tmp_path / "leads.csv"
    leads.write_text(
        textwrap.dedent("""\
        "Lead ID","Lead Source","Lead Status","Lead Owner","Created Date","Converted Date","Last Modified Date","Converted Opportunity ID"
        "00Q5g000001AbCdEAK","Web","Closed - Converted","Jana","04.03.2025 09:30","06.03.2025","06.03.2025","0065g00000XyZaBAAV"
        "00Q5g000001AbCe","Messe","Open","Jana","05.03.2025 10:00","","05.03.2025",""

        "Confidential Information - Do Not Distribute"
        "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved."
        """),  # noqa: E501
        encoding="utf-8",
    )
    opps = tmp_path / "opps.csv"
    opps.write_text(
        textwrap.dedent("""\
        "Opportunity ID","Account Name","Stage","Amount","Close Date","Created Date","Opportunity Owner"
        "0065g00000XyZaB","Acme GmbH","Closed Won","12.000,00 €","01.04.2025","06.03.2025","Jana"
        "0065g00000XyZaC","Acme GmbH","Closed Lost","1 234,50 €","02.04.2025","07.03.2025","Jana"
        "Grand Totals (2 records)"
        """),  # noqa: E501
        encoding="utf-8",
    )
    res = run(
        "funnel",
        "import",
        str(opps),
        str(leads),
        "-p",
        "salesforce",
        "--dates",
        "day-first",
        "--decimal",
        ",",
        "--timezone",
        "Europe/Berlin",
        "--rejects-dir",
        str(tmp_path / "rej"),
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["rows"], out["new"], out["rejected"]) == (4, 4, 0)
    assert [f["skipped"] for f in out["files"]] == [3, 1]
    from models.funnel.kpis import compute_kpis

    with store.unit_of_work() as s:
        k = compute_kpis(s, source="salesforce").overall()
        from sqlalchemy import select

        from models.funnel.tables import Deal, Lead

        lead = s.scalars(select(Lead).where(Lead.external_id == "00Q5g000001AbCd")).one()
        deals = {d.external_id: d for d in s.scalars(select(Deal))}
    # 09:30 in Berlin (UTC+1 in March) is 08:30 UTC; the 18-character lead id is stored as its root
    assert lead.mql_at == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    assert deals["0065g00000XyZaB"].amount_cents == 1_200_000
    assert deals["0065g00000XyZaB"].lead_key == "00Q5g000001AbCd"
    assert deals["0065g00000XyZaC"].amount_cents == 123_450
    assert deals["0065g00000XyZaB"].won_at == datetime(2025, 3, 31, 22, 0, tzinfo=UTC)
    assert k["revenue_won"].value == 12_000.0
    assert k["win_rate"].value == 0.5
    assert k["mql_to_won_rate"].value == 0.5


# --- encodings, NUL bytes, files that are no CSV ------------------------------------------------


def test_a_latin1_file_names_the_line_of_its_first_bad_byte_and_the_setting(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "leads.csv"
    f.write_bytes(b"lead_id,mql_date,channel\na,2025-03-01,web\nb,2025-03-02,M\xfcnchen Messe\n")
    before = db_snapshot(store)
    res = import_generic(tmp_path, str(f))
    one_line_refusal(
        res, "leads.csv: line 3: byte 0xfc is not utf-8-sig text", "--encoding latin-1"
    )
    assert db_snapshot(store) == before
    res = import_generic(tmp_path, str(f), "--encoding", "latin-1")
    assert res.exit_code == 0, res.output
    from sqlalchemy import select

    from models.funnel.tables import Lead

    with store.unit_of_work() as s:
        assert s.scalar(select(Lead.channel).where(Lead.external_id == "b")) == "München Messe"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_files_with_a_byte_order_mark_are_read(
    store: Store, tmp_path: Path, encoding: str
) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    text = "lead_id,mql_date,channel\r\na,2025-03-01,Café\r\nb,2025-03-02,web\r\n"
    (tmp_path / "leads.csv").write_bytes(bom + text.encode(encoding))
    res = import_generic(tmp_path, str(tmp_path / "leads.csv"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["new"] == 2
    assert mql_days(store) == {"a": (3, 1), "b": (3, 2)}


def test_a_nul_byte_rejects_its_row_with_its_line_not_the_import(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "leads.csv"
    f.write_bytes(
        b"lead_id,mql_date,channel\na,2025-03-01,web\nb,2025-03-02,w\x00eb\nc,2025-03-03,web\n"
    )
    res = import_generic(tmp_path, str(f))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["new"], out["rejected"]) == (2, 1)
    assert out["files"][0]["first_rejects"] == [
        {
            "line": 3,
            "reason": "the row holds a NUL byte (column 'channel'): a corrupt or binary line",
        }
    ]
    assert set(mql_days(store)) == {"a", "c"}
    rejects = (tmp_path / "rej" / "leads.rejects.csv").read_text()
    assert rejects.splitlines()[1].startswith("3,the row holds a NUL byte")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: Path("/dev/zero"), "/dev/zero: is not a regular file"),
        (
            lambda tmp: (
                (tmp / "one.csv").write_bytes(b"lead_id,mql_date\n" + b"x" * 2_000_000)
                and tmp / "one.csv"
            ),
            "one.csv: line 2: longer than 1,000,000 characters",
        ),
        (
            lambda tmp: (tmp / "zeros.csv").write_bytes(b"\x00" * 3_000_000) and tmp / "zeros.csv",
            "zeros.csv: line 1: longer than 1,000,000 characters",
        ),
        (  # a workbook uploaded as it was saved: not an encoding to choose
            lambda tmp: (
                (tmp / "leads.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x85")
                and tmp / "leads.xlsx"
            ),
            "leads.xlsx: an Excel workbook (or another zip archive), not a CSV file; export the "
            "report as CSV from the CRM, or save the sheet as CSV (in Excel: File, Save As, CSV "
            "UTF-8) and import that file",
        ),
        (  # a column the mapping reads, twice in the header: not the first silently
            lambda tmp: (
                (tmp / "two.csv").write_text("lead_id,mql_date,lead_id\nA,2025-03-01,B\n")
                and tmp / "two.csv"
            ),
            "two.csv: column 'lead_id' (external_id) is in the header 2 times (columns 1 and 3), "
            "so which one the mapping means cannot be told; rename or remove the others",
        ),
        (
            lambda tmp: (
                (tmp / "old.xls").write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") * 4)
                and tmp / "old.xls"
            ),
            "old.xls: an Excel 97-2003 workbook, not a CSV file",
        ),
    ],
)
def test_a_file_that_is_no_csv_is_refused_quickly(
    store: Store,
    tmp_path: Path,
    make,
    message: str,  # noqa: ANN001
) -> None:
    before = db_snapshot(store)
    started = time.monotonic()
    res = run("funnel", "import", str(make(tmp_path)), "-p", "generic")
    one_line_refusal(res, message)
    assert time.monotonic() - started < 20  # refused, not read forever
    assert db_snapshot(store) == before


# --- mapping bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: m\nsource: m\nfiles: []\n", "m.yaml: files: List should have at least 1 item"),
        (
            "name: m\nsource: m\nencoding: rot13\nfields: {external_id: id}\n",
            "m.yaml: encoding: unknown encoding 'rot13' (use a text encoding",
        ),
        (  # deep enough for the mapping's own bound, well under the YAML reader's (50)
            "name: m\nsource: m\nfields: {external_id: id}\nx: " + "[" * 20 + "]" * 20 + "\n",
            "m.yaml: the mapping nests deeper than 12 levels",
        ),
        (  # past the YAML reader's bound: refused while reading, with its line
            "name: m\nsource: m\nfields: {external_id: id}\nx: " + "[" * 200 + "]" * 200 + "\n",
            "m.yaml: line 4: invalid YAML: nested more than 50 levels deep",
        ),
        (
            "name: m\nsource: m\nthousands: ','\ndecimal: ','\nfields: {external_id: id}\n",
            "thousands: ',' is also the decimal separator",
        ),
        (
            "name: m\nsource: m\nfiles:\n  - {name: a, fields: {external_id: id, channel: c}}\n"
            "  - {name: b, fields: {external_id: k, channel: d}}\n",
            "files[b].fields.channel: the leads' channel is already read from the file 'a'",
        ),
        (
            "name: m\nsource: m\nfields: {deal_id: d, mql_at: m}\n",
            "fields.mql_at: a deals file (keyed by deal_id) holds no lead fields",
        ),
    ],
)
def test_mapping_bounds_are_one_line_naming_the_file_and_field(
    store: Store, tmp_path: Path, text: str, message: str
) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(text)
    f = leads_file(tmp_path, ["a,2025-03-01,web"])
    before = db_snapshot(store)
    one_line_refusal(run("funnel", "import", str(f), "-m", str(m)), message)
    assert db_snapshot(store) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", ""], "--profile is empty; shipped profiles: generic, hubspot, olist, salesforce"),
        (["-p", "generic", "--timezone", "Mars/Olympus"], "--timezone: unknown time zone"),
        (["-p", "generic", "--encoding", "rot13"], "--encoding: unknown encoding 'rot13'"),
        (["-p", "generic", "--decimal", ";"], "--decimal: Input should be '.' or ','"),
    ],
)
def test_command_line_settings_are_checked(
    store: Store, tmp_path: Path, args: list[str], message: str
) -> None:
    f = leads_file(tmp_path, ["a,2025-03-01,web"])
    one_line_refusal(run("funnel", "import", str(f), *args), message)


# --- rejects files: next to the store, and only for a committed import -------------------------


def test_rejects_go_next_to_the_store_and_not_where_the_command_runs(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGNCYCLE_DATA_DIR", str(tmp_path / "data"))
    f = leads_file(tmp_path, ["a,2025-03-01,web", ",2025-03-02,web"])
    res = run("funnel", "import", str(f), "-p", "generic")
    assert res.exit_code == 0, res.output
    expected = cli_funnel.default_rejects_dir() / "leads.rejects.csv"
    assert f"-> {expected}" in res.stdout
    assert expected.is_file() and not list(tmp_path.glob("*.rejects.csv"))
    if store.engine.dialect.name == "sqlite":
        assert expected.parent.parent == Path(store.engine.url.database).parent
    else:
        assert expected.parent == tmp_path / "data" / "rejects"
    assert not [p for p in expected.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_an_import_that_rolls_back_leaves_no_rejects_file(store: Store, tmp_path: Path) -> None:
    bad = leads_file(tmp_path, [",2025-03-01,web", "a,2025-03-01,web"])  # one unreadable row
    deals = tmp_path / "deals.csv"  # ... then a file the settings refuse: nothing is kept
    deals.write_text("deal_id,lead_id,stage,closed\nd1,a,won,04/03/2025\n")
    before = db_snapshot(store)
    res = run(
        "funnel",
        "import",
        str(bad),
        str(deals),
        "-p",
        "generic",
        "--dates",
        "iso",
        "--rejects-dir",
        str(tmp_path / "rej"),
    )
    one_line_refusal(res, "deals.csv: line 2, column 'closed'")
    assert db_snapshot(store) == before
    assert not (tmp_path / "rej").exists() or not list((tmp_path / "rej").iterdir())


def test_refusals_keep_earlier_data(store: Store, tmp_path: Path) -> None:
    """A refusal after a good import leaves the earlier import's funnel as it was."""
    ok = leads_file(tmp_path, ["a,2025-03-01,web"], name="ok.csv")
    assert import_generic(tmp_path, str(ok)).exit_code == 0
    before = funnel_content(store)
    with pytest.raises(InvalidInput), store.unit_of_work() as s:
        from models.funnel.importer import import_files
        from models.funnel.mapping import load_profile

        import_files(s, [Path("/dev/zero")], load_profile("generic"))
    assert funnel_content(store) == before


def test_dates_on_the_command_line_replace_the_mappings_date_formats(
    store: Store, tmp_path: Path
) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(
        "name: m\nsource: m\ndate_formats: ['%m/%d/%Y']\n"
        "fields: {external_id: lead_id, mql_at: mql_date}\n"
    )
    f = leads_file(tmp_path, ["a,04/03/2025,web"])
    res = run("funnel", "import", str(f), "-m", str(m), "--dates", "day-first", "--json")
    assert res.exit_code == 0, res.output
    assert mql_days(store) == {"a": (3, 4)}  # 4 March, as declared, not the mapping's order


def test_a_rejects_file_has_no_name_until_its_import_commits(tmp_path: Path) -> None:
    """Until it is published the rejects file is an unnamed file (a killed import's vanishes
    with its process); publishing names it in one step, replacing an older one."""
    from models.funnel.importer import RejectsFiles

    folder = tmp_path / "rejects"
    (folder).mkdir()
    (folder / "leads.rejects.csv").write_text("old\n")
    sink = RejectsFiles(folder)
    handle, final = sink.open("leads")
    handle.write("line,reason\n3,bad\n")
    handle.flush()
    assert sorted(p.name for p in folder.iterdir()) == ["leads.rejects.csv"]  # only the old one
    assert final.read_text() == "old\n"
    sink.publish()
    assert final.read_text() == "line,reason\n3,bad\n"
    assert sorted(p.name for p in folder.iterdir()) == ["leads.rejects.csv"]
    sink = RejectsFiles(folder)
    sink.open("other")[0].write("x\n")
    sink.discard()
    assert sorted(p.name for p in folder.iterdir()) == ["leads.rejects.csv"]


# --- dates: auto skips the scan of a file that holds no numeric date -----------------------------

#: What the quick look finds, as a regular expression (slow, but plain to read).
LOOKS_LIKE_A_DATE = re.compile(r"(?<!\d)\d{1,3}([./-])\d{1,2}\1\d")
_CELLS = st.one_of(
    st.sampled_from(["2025-03-25", "2025-03-25 14:05:00", "2025-03-25T14:05", "1.234.567", "abc"]),
    st.from_regex(r"\d{1,4}[./-]\d{1,3}[./-]\d{1,4}( \d{1,2}:\d\d( [AP]M)?)?", fullmatch=True),
    st.text(alphabet="0123456789./- :abT", max_size=14),
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(_CELLS, min_size=1, max_size=4), min_size=1, max_size=30),
       chunk=st.integers(5, 64))  # fmt: skip
def test_a_file_said_to_hold_no_numeric_date_holds_none(
    rows: list[list[str]], chunk: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The quick look at the bytes never misses a value that tells (or does not tell) the order
    of day and month, whatever the chunk the file is read in (the file's rows are then read)."""
    path = tmp_path_factory.mktemp("dates") / "leads.csv"
    text = "".join(",".join(r) + "\n" for r in rows)
    path.write_text(text)
    spec = parse_mapping("name: m\nsource: m\nfields:\n  external_id: id\n")
    tells = any(date_evidence(cell) != (None, False) for r in rows for cell in r)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "_CHUNK", chunk)
        found = files._may_hold_numeric_dates(path, spec)
    assert found or not tells
    if text.isascii():  # (and none is seen where there is none; other scripts: any by a separator)
        assert found == bool(LOOKS_LIKE_A_DATE.search(text))


def test_an_iso_export_with_one_numeric_date_at_its_end_still_tells_its_order(
    store: Store, tmp_path: Path
) -> None:
    rows = [f"i{n},2025-03-{1 + n % 28:02d} 10:00,web" for n in range(20_000)]
    f = leads_file(tmp_path, [*rows, "last,25/03/2025,web"])
    res = import_generic(tmp_path, str(f))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"][0]["dates"] == (
        "day-first (line 20002, column 'mql_date': '25/03/2025')"
    )
    iso = leads_file(tmp_path, rows, name="iso.csv")
    res = import_generic(tmp_path, str(iso))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"][0]["dates"] is None


def test_a_file_whose_amounts_are_in_two_currencies_is_refused(
    store: Store, tmp_path: Path
) -> None:
    spec = parse_mapping(
        "name: m\nsource: m\nfields:\n  deal_id: id\n  stage: stage\n  amount: amount\n"
    )
    ok = tmp_path / "one.csv"  # a currency's sign and code are one currency
    ok.write_text('id,stage,amount\nd1,open,"$1,200.00"\nd2,open,USD 300\nd3,open,450\n')
    with store.unit_of_work() as s:
        assert import_files(s, [ok], spec).new == 3
    before = db_snapshot(store)
    mixed = tmp_path / "deals.csv"
    mixed.write_text('id,stage,amount\nd4,open,"$1,200.00"\nd5,open,"EUR 900.00"\n')
    for parallel in (False, True):  # (read here, or by the import's second process)
        with pytest.raises(InvalidInput) as refused, store.unit_of_work() as s:
            import_files(s, [mixed], spec, parallel=parallel)
        assert (
            "deals.csv: line 3, column 'amount': 'EUR 900.00' is in EUR but an earlier amount, "
            "'$1,200.00', is in USD: the numbers add amounts up, so the amounts of a file must "
            "be in one currency"
        ) in refused.value.message
        assert db_snapshot(store) == before
