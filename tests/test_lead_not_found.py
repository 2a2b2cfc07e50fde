"""A deal that names a lead the source does not hold counts with no channel, campaign or lead
dates: it is flagged, and when a lead the source holds is the same id written another way (its
leading zeros dropped by Excel, a Salesforce id in its other length) the flag names it
(models.funnel.flags)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from models.db import Store
from models.funnel.flags import LEAD_NOT_FOUND, first_flags, iter_flags
from models.funnel.importer import import_files
from models.funnel.mapping import load_profile
from tests.test_funnel_import import run

CONTACTS = (
    "Record ID,Original Source,Became a Marketing Qualified Lead Date,"
    "Became a Sales Qualified Lead Date\n"
)
DEALS = "Record ID,Deal Name,Deal Stage,Amount,Close Date,Create Date,Associated Contact IDs\n"


def contacts_csv(folder: Path, ids: list[str]) -> Path:
    path = folder / "contacts.csv"
    path.write_text(CONTACTS + "".join(f"{i},Paid Search,2024-01-05,\n" for i in ids))
    return path


def deals_csv(folder: Path, leads: list[str]) -> Path:
    path = folder / "deals.csv"
    rows = [
        f"D{n},Deal {n},Closed Won,100,2024-03-10,2024-02-01,{lead}\n"
        for n, lead in enumerate(leads, 1)
    ]
    path.write_text(DEALS + "".join(rows))
    return path


def flags_of(store: Store) -> dict[str, str]:
    with store.unit_of_work() as s:
        return {f.key: f.sentence for f in iter_flags(s, "hubspot") if f.kind == LEAD_NOT_FOUND}


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_a_deal_whose_lead_is_not_in_the_data_is_flagged_with_the_id_it_may_be(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    contacts = contacts_csv(
        tmp_path, ["L1", "00123", "00Q5g00000AbCdEEAV", "987", "0065g00000XyZaB"]
    )
    # (D7 names an 18-character id whose checksum is not that of a lead's 15: another record)
    deals = deals_csv(
        tmp_path,
        [
            "L1",
            "123",
            "00Q5g00000AbCdE",
            "L9",
            "000987",
            "",
            "00Q5g00000AbCdEAAA",
            "0065g00000XyZaBAAV",
        ],
    )
    with store.unit_of_work() as s:
        summary = import_files(s, [contacts, deals], load_profile("hubspot"), parallel=parallel)
    assert summary.flags_by_kind.get(LEAD_NOT_FOUND) == 6
    flags = flags_of(store)
    # (D1's lead is there; D6 names none)
    assert set(flags) == {"D2", "D3", "D4", "D5", "D7", "D8"}
    assert flags["D7"].startswith(
        "Deal D7 names the lead “00Q5g00000AbCdEAAA”, which is not in the data: it counts"
    )
    assert (
        "the lead “0065g00000XyZaB” is, the same Salesforce record with its id written in 15 "
        "characters, not 18" in flags["D8"]
    )
    assert flags["D2"] == (
        "Deal D2 names the lead “123”, which is not in the data; the lead “00123” is: the "
        "leading zeros of one of the two look dropped (a file saved from Excel drops them). "
        "Export that file again, or format its id column as text, then import it again. Until "
        "then the deal counts with no channel, campaign or lead dates."
    )
    assert flags["D3"].startswith(
        "Deal D3 names the lead “00Q5g00000AbCdE”, which is not in the data; the lead "
        "“00Q5g00000AbCdEEAV” is, the same Salesforce record with its id written in 18 "
        "characters, not 15: import both files with the Salesforce profile (it reads either "
        "length as one record), or export them with the same length of id."
    )
    assert flags["D4"] == (
        "Deal D4 names the lead “L9”, which is not in the data: it counts with no channel, "
        "campaign or lead dates until that lead is imported."
    )
    assert "the lead “987” is: the leading zeros" in flags["D5"]  # (zeros added, not dropped)

    # the lead imported later: its deal's flag goes
    with store.unit_of_work() as s:
        import_files(s, [contacts_csv(tmp_path, ["L9"])], load_profile("hubspot"))
    assert set(flags_of(store)) == {"D2", "D3", "D5", "D7", "D8"}


def test_deals_of_a_source_that_holds_no_lead_yet_are_not_flagged(
    store: Store, tmp_path: Path
) -> None:
    """Deals imported before their leads (or a source of deals only) name leads the source does
    not hold yet: not one flag per deal, until it holds leads."""
    with store.unit_of_work() as s:
        summary = import_files(s, [deals_csv(tmp_path, ["L1", "L2"])], load_profile("hubspot"))
    assert LEAD_NOT_FOUND not in summary.flags_by_kind
    with store.unit_of_work() as s:
        import_files(s, [contacts_csv(tmp_path, ["L1"])], load_profile("hubspot"))
    assert set(flags_of(store)) == {"D2"}


def test_the_command_line_lists_the_flag_in_words(store: Store, tmp_path: Path) -> None:
    contacts = contacts_csv(tmp_path, ["L1"])
    deals = deals_csv(tmp_path, ["L1", "L7"])
    res = run("funnel", "import", str(contacts), str(deals), "-p", "hubspot")
    assert res.exit_code == 0, res.output
    assert "lead not in the data" in res.output
    assert "lead_not_found" not in res.output
    res = run("funnel", "import", str(deals), "-p", "hubspot", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["flags_by_kind"] == {LEAD_NOT_FOUND: 1}


# --- the flags in the web app and the API -------------------------------------------------


def test_the_flags_have_a_page_every_signed_in_person_reads_and_the_api_lists_them(
    org: Store, tmp_path: Path
) -> None:
    from tests.test_web_import import make_web, text

    web = make_web(org, tmp_path)
    contacts = contacts_csv(tmp_path, ["L1", "00123"])
    deals = deals_csv(tmp_path, ["L1", "123", "L9"])
    deals.write_text(deals.read_text() + "D9,Odd,Closed Won,0,2024-03-10,2024-02-01,L1\n")
    with org.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))

    numbers = text(web.client("sid").get("/numbers"))
    assert "3 data-quality flags: what is odd about the records kept" in numbers
    page = web.client("sid").get("/numbers/flags")  # a member, not an importer
    assert page.status_code == 200
    words = text(page)
    assert "3 flags" in words
    assert "Anything (3)" in words and "Lead not in the data (2)" in words
    assert "Zero amount (1)" in words
    assert (
        "deals.csv 3 Lead not in the data Deal D2 names the lead “123”, which is not in the "
        "data; the lead “00123” is"
    ) in words
    assert "deals.csv 5 Zero amount Deal D9 is won with an amount of zero." in words
    assert "lead_not_found" not in words and "zero_amount" not in words

    one_kind = text(web.client("sid").get("/numbers/flags?kind=zero_amount"))
    assert "1 flag: zero amount" in one_kind and "Deal D2" not in one_kind
    refused = web.client("sid").get("/numbers/flags?kind=nonsense&source=nowhere")
    assert refused.status_code == 422
    assert "There is no kind of flag 'nonsense'" in text(refused)
    assert "Every flag is shown instead." in text(refused)
    assert web.client("sid").get("/numbers/flags?source=nowhere").status_code == 422

    api = web.client().get("/api/v1/kpis/flags?limit=1&offset=1", headers=web.bearer("sid"))
    assert api.status_code == 200
    got = api.json()
    assert (got["total"], got["by_kind"], got["by_source"]) == (
        3,
        {"zero_amount": 1, LEAD_NOT_FOUND: 2},
        {"hubspot": 3},
    )
    assert [(f["file"], f["line"], f["kind"]) for f in got["items"]] == [
        ("deals.csv", 4, LEAD_NOT_FOUND)
    ]
    bad = web.client().get("/api/v1/kpis/flags?kind=nonsense", headers=web.bearer("sid"))
    assert bad.status_code == 422 and "no kind of flag" in bad.json()["error"]["message"]

    # every flag of the choice as a spreadsheet, in people's words
    assert "Download them all as a spreadsheet (CSV)" in words
    got = web.client("sid").get("/numbers/flags.csv?kind=lead_not_found")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "data-quality-flags.csv" in got.headers["content-disposition"]
    assert got.text.startswith("\ufeff")  # (UTF-8 as Excel reads it)
    rows = list(csv.reader(io.StringIO(got.text[1:])))
    assert rows[0] == ["Source", "File", "Line", "Record", "ID", "Flag", "What is odd"]
    assert [r[:6] for r in rows[1:]] == [
        ["hubspot", "deals.csv", "3", "deal", "D2", "lead not in the data"],
        ["hubspot", "deals.csv", "4", "deal", "D3", "lead not in the data"],
    ]
    assert rows[1][6].startswith("Deal D2 names the lead “123”")
    refused = web.client("sid").get("/numbers/flags.csv?source=nowhere")
    assert refused.status_code == 422 and "“nowhere”" in text(refused)


def test_deals_naming_their_leads_by_another_id_are_said_in_one_sentence(
    org: Store, tmp_path: Path
) -> None:
    """Most deals naming a lead the data does not hold: the deals name their leads by another
    id than the leads' own (an email for an id), said once, on the preview, the command line
    and in the API; a few such deals are only flagged."""
    from tests.test_web_import import job_id_of, make_web, text

    web = make_web(org, tmp_path)
    contacts = contacts_csv(tmp_path, ["101", "102", "103"])
    by_email = ["ann@example.com", "bob@example.com", "101"]
    deals = deals_csv(tmp_path, by_email)
    files = {"contacts.csv": contacts.read_bytes(), "deals.csv": deals.read_bytes()}
    job_id = job_id_of(web.upload("lee", files, profile="hubspot"))
    words = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    said = (
        "2 of the 3 deals of these files that name a lead name one that is not in the data "
        "(for example "
        "“ann@example.com”, while the leads' IDs are like “101”): they count with no channel, "
        "campaign or lead dates. Do the deals name their leads by the same ID as the leads "
        "file? If not, choose the column that holds the lead's ID, or export that ID with the "
        "deals."
    )
    assert said in words
    unfound = web.job("lee", job_id)["preview"]["summary"]["unfound"]
    assert (unfound["deals"], unfound["missing"]) == (3, 2)

    res = run("funnel", "import", str(contacts), str(deals), "-p", "hubspot")
    assert res.exit_code == 0 and said in " ".join(res.output.split())
    # one deal of three: flagged, no sentence
    fewer = deals_csv(tmp_path, ["101", "102", "ann@example.com"])
    res = run("funnel", "import", str(fewer), "-p", "hubspot")
    assert res.exit_code == 0 and "lead not in the data" in res.output
    assert "Do the deals name their leads" not in res.output
    # a file of its own whose deals all name unknown leads, beside the source's linked ones
    other = tmp_path / "more-deals.csv"
    other.write_text(
        DEALS
        + "E1,Deal 1,Closed Won,100,2024-03-10,2024-02-01,x@example.com\n"
        + "E2,Deal 2,Closed Won,100,2024-03-10,2024-02-01,y@example.com\n"
    )
    res = run("funnel", "import", str(other), "-p", "hubspot")
    assert res.exit_code == 0
    assert "All 2 deals of these files that name a lead name one" in " ".join(res.output.split())


def test_a_lead_whose_id_lost_its_leading_zeros_is_flagged_as_the_same_lead_twice(
    store: Store, tmp_path: Path
) -> None:
    """One export raw, the next saved from Excel: "00123" and "123" are two leads of one; the
    later is flagged, naming the earlier (ids of other forms are left alone)."""
    with store.unit_of_work() as s:
        import_files(
            s, [contacts_csv(tmp_path, ["00123", "0042", "00Q5g", "L7"])], load_profile("hubspot")
        )
    saved = tmp_path / "excel"
    saved.mkdir()
    with store.unit_of_work() as s:
        summary = import_files(
            s, [contacts_csv(saved, ["123", "Q5g", "7"])], load_profile("hubspot")
        )
    assert summary.flags_by_kind == {"zeros_dropped": 1}
    with store.unit_of_work() as s:
        (flag,) = [f for f in iter_flags(s, "hubspot") if f.kind == "zeros_dropped"]
    assert (flag.key, flag.line) == ("123", 2)
    assert flag.sentence.startswith(
        "Lead 123 is most likely the lead 00123 with its leading zeros dropped (a file saved "
        "from Excel drops them): the two count as two leads."
    )


def test_zeros_dropped_are_found_whatever_the_width_the_ids_are_padded_to(
    store: Store, tmp_path: Path
) -> None:
    """The leads' ids padded to two widths: each deal naming one without its zeros is told
    which lead it is; a key padded to neither width names none."""
    contacts = contacts_csv(tmp_path, ["00123", "0000456", "7"])
    deals = deals_csv(tmp_path, ["123", "456", "789", "07"])
    with store.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))
    flags = flags_of(store)
    assert "the lead “00123” is" in flags["D1"]
    assert "the lead “0000456” is" in flags["D2"]
    assert "not in the data: it counts" in flags["D3"]  # no lead 0…0789
    assert "the lead “7” is" in flags["D4"]  # (zeros added)


def test_many_flags_are_written_and_told_a_chunk_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More flagged records than a chunk: every flag is stored, the summary counts them all
    and shows the first few of each kind in file and line order, and the sentence about
    unknown leads names the first deal's lead."""
    from models.funnel import bulk, flags

    monkeypatch.setattr(flags, "_CHUNK", 3)
    monkeypatch.setattr(bulk, "BATCH", 2)
    contacts = contacts_csv(tmp_path, ["L1"])
    # 11 deals naming unknown leads (the first on line 2), then 4 won at zero
    path = tmp_path / "deals.csv"
    rows = [f"D{n},Deal {n},Closed Won,100,2024-03-10,2024-02-01,X{n}\n" for n in range(1, 12)]
    rows += [f"Z{n},Deal Z{n},Closed Won,0,2024-03-10,2024-02-01,L1\n" for n in range(1, 5)]
    path.write_text(DEALS + "".join(rows))
    with store.unit_of_work() as s:
        summary = import_files(s, [contacts, path], load_profile("hubspot"))
    assert summary.flags == 15
    assert summary.flags_by_kind == {LEAD_NOT_FOUND: 11, "zero_amount": 4}
    assert [f.key for f in summary.first_flags] == [
        "D1", "D2", "D3", "D4", "D5", "Z1", "Z2", "Z3", "Z4",
    ]  # fmt: skip
    assert [f.line for f in summary.first_flags] == [2, 3, 4, 5, 6, 13, 14, 15, 16]
    assert {Path(f.file).name: f.flagged for f in summary.files} == {
        "contacts.csv": 0,
        "deals.csv": 15,
    }
    assert summary.unfound is not None
    assert (summary.unfound.missing, summary.unfound.deals, summary.unfound.named) == (11, 15, "X1")
    with store.unit_of_work() as s:
        stored = list(iter_flags(s, "hubspot"))
        first = first_flags(s, "hubspot", per_kind=2)
    assert len(stored) == 15
    assert [f.key for f in first] == ["D1", "D2", "Z1", "Z2"]
    assert sorted(f.key for f in stored) == sorted(
        [*(f"D{n}" for n in range(1, 12)), *(f"Z{n}" for n in range(1, 5))]
    )


def test_a_kpis_flag_badge_opens_the_flags_of_the_records_it_counted(
    org: Store, tmp_path: Path
) -> None:
    """The Numbers page says how many of a KPI's records carry a flag; its badge opens the
    flags of those records (the leads that became MQLs in the period, the deals closed in it),
    not every flag of the source. So do the CSV and the API."""
    from tests.test_web_import import make_web, text

    web = make_web(org, tmp_path)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        CONTACTS
        + "L1,Paid Search,2024-01-05,2024-01-01\n"  # an MQL of January, its SQL before it
        + "L2,Paid Search,2024-06-05,2024-06-01\n"  # the same in June
    )
    deals = tmp_path / "deals.csv"
    deals.write_text(
        DEALS
        + "D1,One,Closed Won,0,2024-03-10,2024-02-01,L1\n"  # won at zero in March
        + "D2,Two,Closed Won,0,2024-07-10,2024-07-01,L2\n"  # won at zero in July
    )
    with org.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))

    numbers = web.client("sid").get("/numbers?from=2024-01-01&to=2024-01-31").text
    assert "/numbers/flags?counted=mql&amp;from=2024-01-01&amp;to=2024-01-31" in numbers

    def flags_of(url: str) -> tuple[int, str]:
        got = web.client("sid").get(url)
        return got.status_code, text(got)

    # January's MQL: L1, flagged by its own flag and by its deal's (the lead KPIs count both)
    status, words = flags_of("/numbers/flags?counted=mql&from=2024-01-01&to=2024-01-31")
    assert status == 200
    assert (
        "2 flags, of the leads that became marketing-qualified from 1 Jan 2024 to 31 Jan 2024"
        in words
    )
    assert "Lead L1: the SQL date" in words and "Deal D1 is won with an amount of zero" in words
    assert "L2" not in words and "D2" not in words
    assert "Every flag" in words
    # the deals closed in March: D1
    status, words = flags_of("/numbers/flags?counted=closed&from=2024-03-01&to=2024-03-31")
    assert "1 flag, of the deals won or lost from 1 Mar 2024 to 31 Mar 2024" in words
    assert "Deal D1" in words and "D2" not in words
    # a kind within them keeps the records chosen
    status, words = flags_of(
        "/numbers/flags?counted=mql&from=2024-06-01&to=2024-06-30&kind=zero_amount"
    )
    assert "1 flag: zero amount, of the leads that became marketing-qualified" in words
    assert "Deal D2" in words and "D1" not in words
    status, words = flags_of("/numbers/flags?counted=open&to=2024-12-31")
    assert "No record of this choice carries a flag." in words
    # refused in one line, every flag shown instead
    status, words = flags_of("/numbers/flags?counted=mql&from=2024-13-01")
    assert status == 422 and "Not a date" in words and "Every flag is shown instead." in words
    status, words = flags_of("/numbers/flags?counted=everything")
    assert status == 422
    assert (
        "There is no choice of records 'everything': a number counts the leads that became "
        "marketing-qualified, the deals won or lost, or the deals still open at the end of the "
        "period"
    ) in words

    got = web.client("sid").get("/numbers/flags.csv?counted=closed&from=2024-07-01&to=2024-07-31")
    rows = list(csv.reader(io.StringIO(got.text.removeprefix("\ufeff"))))
    assert [r[4] for r in rows[1:]] == ["D2"]
    api = web.client().get(
        "/api/v1/kpis/flags?counted=mql&from=2024-01-01&to=2024-01-31", headers=web.bearer("sid")
    )
    assert api.status_code == 200
    assert (api.json()["total"], api.json()["by_kind"]) == (
        2,
        {"out_of_order": 1, "zero_amount": 1},
    )


def test_the_numbers_say_when_many_deals_of_a_source_name_leads_not_in_the_data(
    org: Store, tmp_path: Path
) -> None:
    """A week after an import whose deals named their leads by another id, the Numbers page
    still says so at its top (a tenth of a source's deals or more), with a link to those
    deals' flags; the sources' list and the API count them; a few are only counted."""
    from tests.test_web_import import make_web, text

    web = make_web(org, tmp_path)
    contacts = contacts_csv(tmp_path, ["101", "102", "103"])
    deals = deals_csv(tmp_path, ["ann@example.com", "bob@example.com", "101"])
    with org.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))
    page = web.client("sid").get("/numbers")
    words = text(page)
    assert (
        "2 of the 3 deals of “hubspot” name a lead that is not in the data: they count with no "
        "channel, campaign or lead dates, so the numbers by channel and campaign leave them out. "
        "See which deals, and the lead each names."
    ) in words
    assert "/numbers/flags?source=hubspot&amp;kind=lead_not_found" in page.text
    assert "2 of its deals name a lead that is not in the data." in words
    got = web.client().get("/api/v1/kpis/sources", headers=web.bearer("sid")).json()
    assert [(x["unlinked"], x["many_unlinked"]) for x in got] == [(2, True)]

    # the same deals beside many that name their leads: counted, not said at the top
    many = [f"{n}" for n in range(200, 230)]
    contacts = contacts_csv(tmp_path, ["101", "102", "103", *many])
    deals = deals_csv(tmp_path, ["ann@example.com", "bob@example.com", "101", *many])
    with org.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))
    words = text(web.client("sid").get("/numbers"))
    assert "name a lead that is not in the data: they count" not in words
    assert "2 of its deals name a lead that is not in the data." in words
