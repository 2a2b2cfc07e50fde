"""An older export imported after a newer one would take the shared numbers back: its rows are
empty where the store holds a lead's SQL date or a deal's win. The import still writes them
(the CRM may have cleared a date), and says so, per file, with examples naming the line, the
file's column and the date the store holds (models.funnel.lost_dates)."""

from __future__ import annotations

from pathlib import Path

from models.db import Store
from models.funnel.importer import import_files
from models.funnel.mapping import load_profile, parse_mapping
from tests.test_funnel_import import records, write_csv
from tests.test_web_import import CONTACTS_HEADER, Web, contact, csv_text, text
from tests.test_web_import import web as web  # noqa: F401 (the fixture)

MAPPING = parse_mapping(
    """
name: crm
source: crm
files:
  - name: leads
    fields:
      external_id: Id
      mql_at: MQL
      sql_at: {column: Converted, optional: true}
      first_touch_at: {column: Touched, optional: true}
  - name: deals
    fields:
      deal_id: Deal
      lead_id: Lead
      stage: Stage
      opportunity_at: Created
      won_at: {column: Closed, when: {column: Stage, in: [Won]}}
"""
)
LEADS = ["Id", "MQL", "Converted", "Touched"]
DEALS = ["Deal", "Lead", "Stage", "Created", "Closed"]


def _import(store: Store, *paths: Path):  # noqa: ANN202
    with store.unit_of_work() as s:
        return import_files(s, list(paths), MAPPING)


def test_an_older_export_after_a_newer_one_is_said_and_still_imported(
    store: Store, tmp_path: Path
) -> None:
    newer = [
        ["L1", "2024-03-01", "2024-03-04", "2024-03-02"],
        ["L2", "2024-03-02", "", "2024-03-03"],
        ["L3", "2024-03-03", "2024-03-09", ""],
    ]
    won = [["D1", "L1", "Won", "2024-03-05", "2024-03-20"], ["D2", "L3", "Open", "2024-03-10", ""]]
    _import(
        store,
        write_csv(tmp_path / "leads.csv", newer, LEADS),
        write_csv(tmp_path / "deals.csv", won, DEALS),
    )
    older = [
        ["L1", "2024-03-01", "", ""],  # (two dates gone: one record)
        ["L2", "2024-03-02", "", "2024-03-03"],
        ["L3", "2024-03-03", "", ""],
    ]
    open_ = [["D1", "L1", "Open", "2024-03-05", ""], ["D2", "L3", "Open", "2024-03-10", ""]]
    summary = _import(
        store,
        write_csv(tmp_path / "leads.csv", older, LEADS),
        write_csv(tmp_path / "deals.csv", open_, DEALS),
    )
    leads, deals = summary.files
    assert leads.lost_dates is not None and deals.lost_dates is not None
    assert (leads.lost_dates.leads, leads.lost_dates.deals) == (2, 0)
    assert leads.lost_dates.sentence("leads.csv", done=False) == (
        "leads.csv: 2 leads would lose a date the store holds (for example “L1” on line 2 has "
        "no 'Converted' (the store has 4 Mar 2024) nor 'Touched' (2 Mar 2024); or “L3” on line "
        "4 has no 'Converted', where the store has 9 Mar 2024). An older export than the one "
        "imported last does this: if this is one, discard it. If the CRM cleared those dates, "
        "import it: the numbers will count those records as not having reached those stages."
    )
    assert deals.lost_dates.sentence("deals.csv", done=True).startswith(
        "deals.csv: 1 deal lost a date the store held (for example “D1” on line 2 has no "
        "'Closed', where the store had 20 Mar 2024). The numbers count them as not having "
        "reached those stages."
    )
    assert records(store)["L3"].sql_at is None  # (written: the file may be right)


def test_a_newer_export_and_a_file_that_reads_no_such_column_say_nothing(
    store: Store, tmp_path: Path
) -> None:
    rows = [["L1", "2024-03-01", "", ""], ["L2", "2024-03-02", "", ""]]
    _import(store, write_csv(tmp_path / "leads.csv", rows, LEADS))
    later = [["L1", "2024-03-01", "2024-03-04", "2024-03-02"], ["L2", "2024-03-02", "", ""]]
    assert (
        _import(store, write_csv(tmp_path / "leads.csv", later, LEADS)).files[0].lost_dates is None
    )
    # a file with no column of SQL or touch dates leaves them as they are: nothing lost
    only_mql = write_csv(tmp_path / "mql.csv", [["L1", "2024-03-01"]], ["Id", "MQL"])
    summary = _import(store, only_mql)
    assert summary.files[0].lost_dates is None
    assert records(store)["L1"].sql_at is not None


def test_the_preview_says_the_file_would_take_dates_back(web: Web) -> None:
    newer = csv_text(
        CONTACTS_HEADER,
        [contact("101", "2024-02-10 10:00", sql="2024-02-11 08:00", touch="2024-02-10 12:30")],
    )
    older = csv_text(CONTACTS_HEADER, [contact("101", "2024-02-10 10:00")])
    resp = web.upload("lee", {"contacts.csv": newer}, profile="hubspot")
    done = web.client("lee").post(
        f"{resp.headers['location']}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert done.status_code == 303
    resp = web.upload("lee", {"contacts.csv": older}, profile="hubspot")
    words = text(web.client("lee").get(resp.headers["location"]))
    assert (
        "contacts.csv: 1 lead would lose a date the store holds (for example “101” on line 2"
        in words
    )
    assert (
        "An older export than the one imported last does this: if this is one, discard it." in words
    )


def test_a_report_without_an_optional_column_keeps_what_the_store_holds(
    store: Store, tmp_path: Path
) -> None:
    """Salesforce's profile reads the campaign, the owner, the conversion and the rejection
    when a leads report has those columns: a report exported without them says nothing of
    them, so every lead keeps its campaign, owner, SQL date and rejection (they were set to
    empty, every lead "changed")."""
    profile = load_profile("salesforce")
    full = ["Lead ID", "Created Date", "Lead Source", "Campaign Name", "Lead Owner"]
    full += ["Converted Date", "Lead Status", "Last Modified Date"]
    one, two = "00Q000000000001", "00Q000000000002"
    rows = [
        [one, "3/13/2024", "Web", "Spring webinar", "Ann", "3/14/2024", "Qualified", "3/14/2024"],
        [two, "3/15/2024", "Ads", "Search", "Bo", "", "Unqualified", "3/20/2024"],
    ]
    with store.unit_of_work() as s:
        import_files(s, [write_csv(tmp_path / "leads.csv", rows, full)], profile)
    short = [[one, "3/13/2024", "Partner"], [two, "3/15/2024", "Ads"]]
    path = write_csv(tmp_path / "leads.csv", short, full[:3])
    with store.unit_of_work() as s:
        f = import_files(s, [path], profile).files[0]
    assert (f.changed, f.unchanged, f.lost_dates) == (1, 1, None)
    got = {
        k: (r.channel, r.campaign, r.owner, r.sql_at is not None, r.rejected_at is not None)
        for k, r in records(store, "salesforce").items()
    }
    assert got == {
        one: ("Partner", "Spring webinar", "Ann", True, False),
        two: ("Ads", "Search", "Bo", False, True),
    }


def test_a_recycled_lead_and_a_revived_deal_lose_no_date(store: Store, tmp_path: Path) -> None:
    """A lead sales rejected and took back, a deal lost and reopened: their rejection and loss
    go as a matter of course, nothing to say."""
    mapping = parse_mapping(
        """
name: crm
source: crm
files:
  - name: leads
    fields:
      external_id: Id
      mql_at: MQL
      rejected_at: {column: Changed, when: {column: Status, in: [Unqualified]}}
  - name: deals
    fields:
      deal_id: Deal
      lead_id: Lead
      stage: Stage
      lost_at: {column: Closed, when: {column: Stage, in: [Lost]}}
"""
    )
    leads, deals = ["Id", "MQL", "Status", "Changed"], ["Deal", "Lead", "Stage", "Closed"]
    for status, stage in (("Unqualified", "Lost"), ("Working", "Open")):
        with store.unit_of_work() as s:
            summary = import_files(
                s,
                [
                    write_csv(
                        tmp_path / "leads.csv", [["L1", "2024-03-01", status, "2024-03-20"]], leads
                    ),
                    write_csv(tmp_path / "deals.csv", [["D1", "L1", stage, "2024-03-25"]], deals),
                ],
                mapping,
            )
    assert [(f.changed, f.lost_dates) for f in summary.files] == [(1, None), (1, None)]
