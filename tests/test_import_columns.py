"""Importing an export no profile knows, by matching its columns on a page: the mapping the
choices make reads the files as a hand-written mapping would (the KPIs checked by hand), the
command line reads the same mapping, every choice that cannot make a mapping is refused beside
its field, and in the browser a lead uploads, matches, previews and imports."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.db import Store
from models.errors import InvalidInput
from models.funnel import columns
from models.funnel.columns import FileColumns, mapping_from_columns, mapping_yaml, suggested
from models.funnel.importer import import_files
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import parse_mapping
from models.funnel.tables import Deal, Lead
from tests.test_maven import run as run_cli
from tests.test_web_import import Web, job_id_of, make_web, text

# A CRM none of the profiles knows: its own column names, day-first dates, a deal file whose
# stages are its own words.
PEOPLE_CSV = """\
Person No.,Signed up,Lead source,Rep,Qualified on,First call
P1,02/03/2025,Webinar,Ann,03/03/2025,03/03/2025
P2,05/03/2025,Webinar,Bob,,06/03/2025
P3,20/03/2025,Referral,Ann,21/03/2025,
"""
DEALS_CSV = """\
Opportunity,Person No.,Phase,Closed on,Value
O1,P1,Signed,25/03/2025,1200
O2,P2,Dropped,26/03/2025,300
O3,P3,Talking,,800
"""
# A lookup table downloaded with the exports: neither leads nor deals.
TEAMS_CSV = """\
Rep,Region
Ann,North
Bob,South
"""
PEOPLE = {
    "external_id": "Person No.",
    "mql_at": "Signed up",
    "channel": "Lead source",
    "owner": "Rep",
    "sql_at": "Qualified on",
    "first_touch_at": "First call",
}
DEALS = {
    "deal_id": "Opportunity",
    "lead_id": "Person No.",
    "stage": "Phase",
    "closed": "Closed on",
    "amount": "Value",
}


def header(text: str) -> list[str]:
    return text.splitlines()[0].split(",")


def choices(**changes: Any) -> list[FileColumns]:
    people = FileColumns("people.csv", header(PEOPLE_CSV), "leads", dict(PEOPLE))
    deals = FileColumns("deals.csv", header(DEALS_CSV), "deals", dict(DEALS), "signed", "dropped")
    for name, value in changes.items():
        setattr(deals if name.startswith("deal_") else people, name.removeprefix("deal_"), value)
    return [people, deals]


def files(tmp_path: Path) -> list[Path]:
    (tmp_path / "people.csv").write_text(PEOPLE_CSV)
    (tmp_path / "deals.csv").write_text(DEALS_CSV)
    return [tmp_path / "people.csv", tmp_path / "deals.csv"]


def test_matched_columns_import_the_files_and_the_numbers_are_right(
    store: Store, tmp_path: Path
) -> None:
    spec = mapping_from_columns(choices(), "mycrm").with_locale(dates="day-first")
    with store.unit_of_work() as s:
        import_files(s, files(tmp_path), spec)
    with store.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.source == "mycrm")) == 3
        won = s.scalar(select(Deal).where(Deal.external_id == "O1"))
        assert (won.won_at.date(), won.lost_at) == (date(2025, 3, 25), None)
        assert (won.lead_key, won.amount_cents) == ("P1", 120000)
        lost = s.scalar(select(Deal).where(Deal.external_id == "O2"))
        assert (lost.won_at, lost.lost_at.date()) == (None, date(2025, 3, 26))
        report = compute_kpis(s, start=date(2025, 3, 1), end=date(2025, 3, 31))
    kpis = report.groups[0].kpis
    assert kpis["mql_volume"].value == 3
    assert kpis["mql_to_sql_rate"].value == pytest.approx(2 / 3)  # P1 and P3
    assert kpis["win_rate"].value == 0.5  # O1 won, O2 lost
    assert kpis["revenue_won"].value == 1200
    assert kpis["open_pipeline_count"].value == 1  # O3


def test_the_command_line_reads_the_mapping_the_page_keeps(tmp_path: Path) -> None:
    spec = mapping_from_columns(choices(), "mycrm")
    again = parse_mapping(mapping_yaml(spec), "matched-columns.yaml")
    assert again == spec
    assert mapping_yaml(spec).startswith("# Made on the import page")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"holds": None},
            "holds-0",
            "people.csv: say whether the file holds leads or deals, or leave it out",
        ),
        (
            {"columns": {**PEOPLE, "external_id": ""}},
            "0-leads-external_id",
            "people.csv: choose the column of the lead's ID",
        ),
        (
            {"deal_columns": {**DEALS, "closed": ""}},
            "1-deals-closed",
            "deals.csv: choose the column of when it was won or lost",
        ),
        (
            {"columns": {**PEOPLE, "owner": "Owner (typed)"}},
            "0-leads-owner",
            "people.csv: the file has no column 'Owner (typed)'",
        ),
        ({"deal_won": " , "}, "won-1", "say which stages mean the deal is won"),
        (
            {"deal_lost": "Dropped, SIGNED"},
            "lost-1",
            "deals.csv: the stage 'signed' cannot mean both won and lost",
        ),
        (
            {"deal_holds": "leads", "deal_columns": {"external_id": "Person No."}},
            "holds-1",
            "people.csv and deals.csv both hold leads but with other columns: import them one "
            "at a time",
        ),
    ],
)
def test_a_choice_that_makes_no_mapping_is_refused_beside_its_field(
    changes: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        mapping_from_columns(choices(**changes), "mycrm")
    assert (refused.value.message, refused.value.field) == (message, field)


@pytest.mark.parametrize("source", ["", "My CRM", "-crm", "x" * 65])
def test_the_system_s_name_is_a_short_plain_name(source: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        mapping_from_columns(choices(), source)
    assert refused.value.field == "source"
    assert refused.value.message.startswith("name the export's system in lower-case letters")


def test_two_files_of_leads_with_the_same_columns_are_read_as_one_kind() -> None:
    more = FileColumns("people-2.csv", header(PEOPLE_CSV), "leads", dict(PEOPLE))
    spec = mapping_from_columns([*choices(), more], "mycrm")
    assert [p.description for p in spec.parts()] == ["people.csv, people-2.csv", "deals.csv"]


def test_a_column_is_suggested_only_where_its_name_is_the_field_s_usual_name() -> None:
    got = suggested(["Lead ID", "MQL date", "Notes", "Channel", "owner"], "leads")
    assert got == {"external_id": "Lead ID", "mql_at": "MQL date", "channel": "Channel",
                   "owner": "owner"}  # fmt: skip
    # nothing it cannot be sure of: a lead source is the channel, a person number may be anything
    assert suggested(header(PEOPLE_CSV), "leads") == {"channel": "Lead source"}
    # the names the usual CRMs' exports give them (X Education's leads, a Salesforce report)
    x_education = ["Prospect ID", "Lead Number", "Lead Origin", "Lead Source", "Converted"]
    assert suggested(x_education, "leads") == {"external_id": "Prospect ID",
                                               "channel": "Lead Source"}  # fmt: skip
    assert columns.suggested_kind(x_education) == "leads"
    report = ["Opportunity ID", "Stage", "Close Date", "Created Date", "Amount"]
    assert suggested(report, "deals") == {"deal_id": "Opportunity ID", "stage": "Stage",
                                          "closed": "Close Date", "opportunity_at": "Created Date",
                                          "amount": "Amount"}  # fmt: skip
    assert columns.suggested_kind(["opportunity_id", "deal_stage", "account"]) == "deals"
    assert columns.suggested_kind(["Lead ID", "deal_stage"]) == "leads"
    assert columns.suggested_kind(header(PEOPLE_CSV)) is None
    assert set(columns.CHOICES) == {"leads", "deals"}


# --- in the browser -----------------------------------------------------------------------------


@pytest.fixture
def web(org: Store, tmp_path: Path) -> Web:
    return make_web(org, tmp_path)


def form_of(page: str) -> dict[str, str]:
    """The columns form as the page fills it in (selected options, checked radios, values)."""
    out: dict[str, str] = {}
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        out[name] = chosen.group(1) if chosen else ""
    for m in re.finditer(r'<input type="radio" name="([^"]+)" value="([^"]+)" checked', page):
        out[m.group(1)] = m.group(2)
    for m in re.finditer(
        r'<input type="text" id="[^"]+" name="([^"]+)"[^>]* value="([^"]*)"', page
    ):
        out[m.group(1)] = m.group(2)
    return out


def test_a_lead_matches_the_columns_previews_and_imports(web: Web) -> None:
    resp = web.upload(
        "lee",
        {"people.csv": PEOPLE_CSV.encode(), "deals.csv": DEALS_CSV.encode()},
        profile="columns",
        dates="day-first",
    )
    assert resp.status_code == 303 and resp.headers["location"].endswith("/columns")
    job_id = int(resp.headers["location"].split("/")[-2])
    # the import's own page, before the columns are matched, says what to do
    waiting = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "Read as: nothing yet: match the columns of these files." in waiting
    assert "your own mapping, None" not in waiting
    page = web.client("lee").get(resp.headers["location"])
    assert page.status_code == 200
    words = text(page)
    assert "Match the columns" in words and "people.csv (6 columns)" in words
    assert "The lead's ID (needed)" in words and "When it was won or lost (needed)" in words
    form = form_of(page.text)
    # suggested only where a column has the field's usual name: here none of the people's
    assert form["source"] == "crm" and "holds-0" not in form and form["0-leads-external_id"] == ""
    form |= {"csrf": web.csrf("lee"), "source": "mycrm", "holds-0": "leads", "holds-1": "deals"}
    form |= {f"0-leads-{k}": v for k, v in PEOPLE.items()}
    form |= {f"1-deals-{k}": v for k, v in DEALS.items()}

    # a refusal keeps every choice and says why beside the field
    refused = web.client("lee").post(
        f"/numbers/import/{job_id}/columns", data={**form, "1-deals-closed": ""}
    )
    assert refused.status_code == 422
    assert "deals.csv: choose the column of when it was won or lost" in text(refused)
    assert 'id="c-1-deals-closed-err"' in refused.text
    assert form_of(refused.text)["0-leads-mql_at"] == "Signed up"

    form |= {"won-1": "signed", "lost-1": "dropped"}
    resp = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert resp.status_code == 303, text(resp)[:500]
    preview = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "Ready to import" in preview and "into the source “mycrm”" in preview
    assert "people.csv Leads 3 3 0 0 0 0" in preview and "deals.csv Deals 3 3 0 0 0 0" in preview
    # reading them another way offers the columns matched, in words (not a file's name)
    assert "Another system: the columns I matched" in preview
    assert "leave empty to keep the columns you matched" in preview
    assert "matched-columns.yaml)" not in preview
    # matching them again starts from the choices made (kept as the job's mapping)
    again = form_of(web.client("lee").get(f"/numbers/import/{job_id}/columns").text)
    assert (again["source"], again["holds-0"], again["holds-1"]) == ("mycrm", "leads", "deals")
    assert again["0-leads-mql_at"] == "Signed up" and again["1-deals-closed"] == "Closed on"
    assert (again["won-1"], again["lost-1"]) == ("signed", "dropped")
    # the mapping, downloaded (while the files are kept), for the command line
    download = web.client("lee").get(f"/numbers/import/{job_id}/matched-columns.yaml")
    assert download.status_code == 200
    assert 'filename="matched-columns.yaml"' in download.headers["content-disposition"]
    confirm = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert confirm.status_code == 303
    with web.store.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Deal).where(Deal.source == "mycrm")) == 3
    assert job_id_of(confirm) == job_id
    summary = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "Read as: the columns you matched." in summary  # (the files are gone: no links)
    # it imports the same exports from the command line: nothing new
    mapping = web.tmp / "matched-columns.yaml"
    mapping.write_text(download.text)
    (web.tmp / "people.csv").write_text(PEOPLE_CSV)
    (web.tmp / "deals.csv").write_text(DEALS_CSV)
    cli = [str(web.tmp / "people.csv"), str(web.tmp / "deals.csv"), "--mapping", str(mapping)]
    result = run_cli("funnel", "import", *cli, "--dates", "day-first", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["source"], summary["new"], summary["changed"]) == ("mycrm", 0, 0)


def test_leads_matched_with_no_mql_date_say_where_to_choose_one(web: Web) -> None:
    resp = web.upload("lee", {"people.csv": PEOPLE_CSV.encode()}, profile="columns")
    job_id = int(resp.headers["location"].split("/")[-2])
    form = {"csrf": web.csrf("lee"), "source": "mycrm", "holds-0": "leads"}
    form["0-leads-external_id"] = "Person No."
    resp = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert resp.status_code == 303, text(resp)[:500]
    page = web.client("lee").get(f"/numbers/import/{job_id}")
    assert "people.csv: 3 leads with no MQL date." in text(page)
    assert (
        "No column of this file was matched as the MQL date: if the export has one, choose it "
        "when you match the columns again."
    ) in text(page)
    assert f'<a href="/numbers/import/{job_id}/columns">match the columns again</a>' in page.text
    assert "your own mapping" not in text(page)


def test_a_file_left_out_is_not_read(tmp_path: Path) -> None:
    teams = FileColumns("teams.csv", ["Rep", "Region"], columns.LEFT_OUT)
    spec = mapping_from_columns([*choices(), teams], "mycrm")
    assert [p.description for p in spec.parts()] == ["people.csv", "deals.csv"]
    with pytest.raises(columns.ColumnsRefused) as refused:
        mapping_from_columns([teams], "mycrm")
    assert refused.value.field == "holds-0"
    assert "every file is left out" in refused.value.message


def test_a_value_is_looked_up_in_another_file_by_the_column_of_the_same_name(
    store: Store, tmp_path: Path
) -> None:
    teams = FileColumns("teams.csv", header(TEAMS_CSV), columns.LEFT_OUT)
    people, deals = choices()
    people.through = {"team": ("teams.csv", "Region")}
    refused = pytest.raises(columns.ColumnsRefused)
    with refused as why:  # the column to look it up by
        mapping_from_columns([people, deals, teams], "mycrm")
    assert why.value.field == "0-leads-team"
    assert "people.csv: choose the column of its team to look it up by" in why.value.message
    people.columns["team"] = "Lead source"  # teams.csv has no such column
    with refused as why:
        mapping_from_columns([people, deals, teams], "mycrm")
    assert why.value.field == "0-leads-team-through"
    assert "teams.csv has no column 'Lead source' to look its team up by" in why.value.message
    people.columns["team"] = "Rep"
    spec = mapping_from_columns([people, deals, teams], "mycrm").with_locale(dates="day-first")
    assert columns.lookup_files(spec) == {"teams.csv"}
    assert columns.chosen(spec, "people.csv").through == {"team": ("teams.csv", "Region")}
    (tmp_path / "teams.csv").write_text(TEAMS_CSV)
    spec._folder = tmp_path
    with store.unit_of_work() as s:
        import_files(s, files(tmp_path), spec)
        teams_of = dict(s.execute(select(Lead.external_id, Lead.team)).all())
    assert teams_of == {"P1": "North", "P2": "South", "P3": "North"}


def test_a_lead_leaves_a_lookup_file_out_of_the_import(web: Web) -> None:
    uploaded = {"people.csv": PEOPLE_CSV, "teams.csv": TEAMS_CSV, "deals.csv": DEALS_CSV}
    resp = web.upload("lee", {k: v.encode() for k, v in uploaded.items()}, profile="columns")
    job_id = int(resp.headers["location"].split("/")[-2])
    page = web.client("lee").get(resp.headers["location"])
    assert "neither: leave it out of the import" in text(page)
    names = re.findall(r"<legend>([^<]+) <span", page.text)  # (the files, as listed)
    i = {n.strip(): k for k, n in enumerate(names)}
    form = {"csrf": web.csrf("lee"), "source": "mycrm", "dates": "day-first"}
    form |= {f"holds-{i['people.csv']}": "leads", f"holds-{i['deals.csv']}": "deals"}
    form |= {f"{i['people.csv']}-leads-{k}": v for k, v in PEOPLE.items()}
    form |= {f"{i['deals.csv']}-deals-{k}": v for k, v in DEALS.items()}
    form |= {f"won-{i['deals.csv']}": "signed", f"lost-{i['deals.csv']}": "dropped"}
    # each lead's team is its rep's region, from teams.csv
    assert "Read a value through another of the files" in text(page)
    form |= {f"{i['people.csv']}-leads-team": "Rep"}
    form |= {f"{i['people.csv']}-leads-team-through": f"{i['teams.csv']}:Region"}
    # every file must be said: the lookup file too
    refused = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert refused.status_code == 422
    assert "teams.csv: say whether the file holds leads or deals, or leave it out" in text(refused)
    form[f"holds-{i['teams.csv']}"] = columns.LEFT_OUT
    resp = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert resp.status_code == 303, text(resp)[:500]
    preview = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "Ready to import" in preview and "6 rows read into the source “mycrm”" in preview
    assert "teams.csv (" in preview and "left out of the import)" in preview
    assert "people.csv (" in preview and preview.count("left out of the import") == 1
    # matching them again starts from it
    again = form_of(web.client("lee").get(f"/numbers/import/{job_id}/columns").text)
    assert again[f"holds-{i['teams.csv']}"] == columns.LEFT_OUT
    assert again[f"{i['people.csv']}-leads-team-through"] == f"{i['teams.csv']}:Region"
    confirm = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert confirm.status_code == 303
    with web.store.unit_of_work() as s:
        teams = dict(s.execute(select(Lead.external_id, Lead.team)).all())
    assert teams == {"P1": "North", "P2": "South", "P3": "North"}


def test_a_workbook_uploaded_in_place_of_a_csv_export_says_so(web: Web) -> None:
    workbook = b"PK\x03\x04\x14\x00\x06\x00\x85" + b"\x00" * 40
    resp = web.upload("lee", {"leads.xlsx": workbook}, profile="columns")
    page = web.client("lee").get(resp.headers["location"])
    words = text(page)
    assert "leads.xlsx: an Excel workbook (or another zip archive), not a CSV file" in words
    assert "Upload the CSV files" in words and "Encoding" not in words
    with_profile = text(web.upload("lee", {"leads.xlsx": workbook}, profile="hubspot"))
    assert "not a CSV file; export the report as CSV from the CRM" in with_profile
    assert "is not UTF-8 text" not in with_profile


def test_a_header_read_as_one_column_says_which_separator_splits_it(web: Web) -> None:
    semi = b"Lead ID;Created;Source\nL1;25.03.2025;Web\n"
    resp = web.upload("lee", {"semi.csv": semi}, profile="columns")
    words = text(web.client("lee").get(resp.headers["location"]))
    assert (
        "semi.csv: its columns are read as one, 'Lead ID;Created;Source' (the header looks "
        "separated by ';': choose that Column separator)"
    ) in words
    assert "Change how the files are written" in words
    resp = web.upload("lee", {"semi.csv": semi}, profile="columns", delimiter=";")
    words = text(web.client("lee").get(resp.headers["location"]))
    assert "semi.csv (3 columns)" in words
    one = web.upload("lee", {"ids.csv": b"Lead ID\nL1\n"}, profile="columns")
    assert "ids.csv (1 column)" in text(web.client("lee").get(one.headers["location"]))


def test_a_member_cannot_match_the_columns_of_an_import(web: Web) -> None:
    resp = web.upload("lee", {"people.csv": PEOPLE_CSV.encode()}, profile="columns")
    job_id = int(resp.headers["location"].split("/")[-2])
    for who in ("sid", "lou"):  # a member; a lead of the other team
        page = web.client(who).get(f"/numbers/import/{job_id}/columns")
        assert page.status_code in (403, 404), (who, page.status_code)
        post = web.client(who).post(
            f"/numbers/import/{job_id}/columns", data={"csrf": web.csrf(who), "source": "x"}
        )
        assert post.status_code in (403, 404), (who, post.status_code)


def test_values_written_several_ways_are_renamed_to_one(tmp_path: Path, store: Store) -> None:
    """An export writes one channel three ways: renamed on the page, the numbers group it as
    one; a value not listed stays as it is; nothing after "=" leaves it blank; the mapping
    the page keeps reads the same, and matching the columns again shows the renames."""
    people = PEOPLE_CSV + "P4,21/03/2025,webinar ,Ann,,\nP5,22/03/2025,Partner fair,Bob,,\n"
    (tmp_path / "people.csv").write_text(people)
    chosen = choices(renames={"channel": "Webinar = Events\n\nReferral ="})
    spec = mapping_from_columns(chosen[:1], "mycrm").with_locale(dates="day-first")
    with store.unit_of_work() as s:
        import_files(s, [tmp_path / "people.csv"], spec)
    with store.unit_of_work() as s:
        rows = dict(s.execute(select(Lead.external_id, Lead.channel)).tuples().all())
    assert rows == {
        "P1": "Events",
        "P2": "Events",
        "P3": None,
        "P4": "Events",
        "P5": "Partner fair",
    }
    assert "values:" in mapping_yaml(spec)
    again = columns.chosen(spec, "people.csv")
    assert again is not None
    assert again.renames == {"channel": "Webinar = Events\nReferral = "}


@pytest.mark.parametrize(
    ("renames", "message"),
    [
        (
            "Webinar => Events\nAds",
            "people.csv: where it came from (its channel): line 2 of the renamed values, 'Ads', "
            "is not “as in the file = as the numbers show it”",
        ),
        (
            "Webinar = Events\nWEBINAR = Other",
            "people.csv: where it came from (its channel): 'WEBINAR' is renamed twice",
        ),
    ],
)
def test_renamed_values_that_make_no_sense_are_refused_beside_their_field(
    renames: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        mapping_from_columns(choices(renames={"channel": renames}), "mycrm")
    assert (refused.value.message, refused.value.field) == (message, "0-leads-channel-values")


def people_form(web: Web, resp: Any, source: str) -> tuple[int, Any, dict[str, str]]:
    """The upload's job, its columns page, and that page's form with the people file's
    columns chosen (leads, :data:`PEOPLE`)."""
    job_id = int(resp.headers["location"].split("/")[-2])
    page = web.client("lee").get(resp.headers["location"])
    form = form_of(page.text) | {"csrf": web.csrf("lee"), "source": source, "holds-0": "leads"}
    return job_id, page, form | {f"0-leads-{k}": v for k, v in PEOPLE.items()}


def test_values_are_renamed_on_the_page(web: Web) -> None:
    resp = web.upload(
        "lee", {"people.csv": PEOPLE_CSV.encode()}, profile="columns", dates="day-first"
    )
    job_id, page, form = people_form(web, resp, "mycrm")
    assert "Rename values" in text(page) and 'name="0-leads-channel-values"' in page.text
    form["0-leads-channel-values"] = "Webinar = Events"
    done = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert done.status_code == 303, text(done)[:400]
    preview = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "P1 Events" in preview and "P3 Referral" in preview
    again = web.client("lee").get(f"/numbers/import/{job_id}/columns").text
    assert re.search(r'name="0-leads-channel-values"[^>]*>Webinar = Events</textarea>', again)
    bad = web.client("lee").post(
        f"/numbers/import/{job_id}/columns", data=form | {"0-leads-channel-values": "Webinar"}
    )
    assert bad.status_code == 422
    assert 'id="c-0-leads-channel-values-err"' in bad.text
    assert "line 1 of the renamed values, 'Webinar', is not" in text(bad)


# An API's export: its dates in seconds (the leads) and milliseconds (the deals) since 1970.
EPOCH_PEOPLE_CSV = """\
Person No.,Signed up,Lead source,Rep,Qualified on,First call
P1,1740873600,Webinar,Ann,1740960000,1740960000
P2,1741132800,Webinar,Bob,,
"""
EPOCH_DEALS_CSV = """\
Opportunity,Person No.,Phase,Closed on,Value
O1,P1,Signed,1742860800000,1200
O2,P2,Dropped,1742947200000,300
"""


def test_dates_written_as_numbers_are_read_as_the_page_says(tmp_path: Path, store: Store) -> None:
    """A file whose dates are seconds (or milliseconds) since 1970: said per file on the page,
    read so, kept in the mapping the page keeps, shown again when the columns are matched
    again; a form that is none is refused beside its field."""
    (tmp_path / "people.csv").write_text(EPOCH_PEOPLE_CSV)
    (tmp_path / "deals.csv").write_text(EPOCH_DEALS_CSV)
    chosen = choices(dates="epoch", deal_dates="epoch_ms")
    spec = mapping_from_columns(chosen, "api")
    with store.unit_of_work() as s:
        summary = import_files(s, [tmp_path / "people.csv", tmp_path / "deals.csv"], spec)
    assert summary.rejected == 0
    with store.unit_of_work() as s:
        leads = {r.external_id: r for r in s.scalars(select(Lead))}
        deals = {r.external_id: r for r in s.scalars(select(Deal))}
    assert leads["P1"].mql_at.date() == date(2025, 3, 2)
    assert leads["P1"].sql_at.date() == date(2025, 3, 3)
    assert deals["O1"].won_at.date() == date(2025, 3, 25) and deals["O1"].lost_at is None
    assert deals["O2"].lost_at.date() == date(2025, 3, 26)
    assert "epoch_ms" in mapping_yaml(spec)
    again = [columns.chosen(spec, name) for name in ("people.csv", "deals.csv")]
    assert [c.dates for c in again if c is not None] == ["epoch", "epoch_ms"]

    with pytest.raises(InvalidInput) as refused:
        mapping_from_columns(choices(dates="fortnights"), "api")
    assert (refused.value.message, refused.value.field) == (
        "people.csv: say how its dates are written",
        "dates-0",
    )


def test_the_page_says_how_a_file_s_dates_are_written(web: Web) -> None:
    resp = web.upload("lee", {"people.csv": EPOCH_PEOPLE_CSV.encode()}, profile="columns")
    job_id, page, form = people_form(web, resp, "api")
    assert "Its dates are written as" in text(page)
    assert "Seconds since 1 January 1970 (Unix time)" in text(page)
    form["dates-0"] = "epoch"
    done = web.client("lee").post(f"/numbers/import/{job_id}/columns", data=form)
    assert done.status_code == 303, text(done)[:400]
    preview = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "0 unreadable" in preview and "2025-03-02 00:00" in preview
    again = web.client("lee").get(f"/numbers/import/{job_id}/columns").text
    assert re.search(r'<option value="epoch" selected>', again)
