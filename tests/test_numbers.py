"""The Numbers page and its read model: the KPIs of a period beside the period before, the
funnel, groupings, and the SLA breach list, each checked against a hand computation over a
small HubSpot-shaped export; a new import is seen at once (the cache is keyed by it); the page
for every role, on a phone too, and its refusals in one sentence."""

from __future__ import annotations

import csv
import io
import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest

from models.db import Store
from models.errors import InvalidInput
from models.funnel.importer import import_files
from models.funnel.kpis import KPIS, compute_kpis
from models.funnel.mapping import load_profile, parse_mapping
from models.funnel.numbers import NumbersQuery, every_breach, numbers, sla_breaches
from tests.test_web_support import PERSONAS, Rig, rig

MARCH = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}
HEADER = (
    "Record ID,First Name,Create Date,Original Source,Contact owner,"
    "Became a Marketing Qualified Lead Date,Date of first engagement,"
    "Became a Sales Qualified Lead Date,Lead Status,Last Activity Date"
)
# 201 touched in 11 h; 202 after 48 h (24 h late); 203 never (due); 204 never, due on 31 March
# at noon; 205 never, not due by the end of March; 206 in February, touched after 30 h.
CONTACTS = textwrap.dedent(f"""\
    {HEADER}
    201,Ann,2025-03-01 09:00,Paid Search,Lee,2025-03-03 09:00,2025-03-03 20:00,,Open,2025-03-03 20:00
    202,Bob,2025-03-01 09:00,Paid Search,Lee,2025-03-04 09:00,2025-03-06 09:00,2025-03-07 09:00,Open,2025-03-07 09:00
    203,Cy,2025-03-01 09:00,Organic Search,Ria,2025-03-10 08:00,,,Open,2025-03-10 08:00
    204,Di,2025-03-01 09:00,Email Marketing,Ria,2025-03-30 12:00,,,Open,2025-03-30 12:00
    205,Ed,2025-03-01 09:00,Email Marketing,Lee,2025-03-31 20:00,,,Open,2025-03-31 20:00
    206,Fay,2025-02-01 09:00,Paid Search,Lee,2025-02-20 09:00,2025-02-21 15:00,,Open,2025-02-21 15:00
""")  # noqa: E501
# Later, the CRM shows Di touched 10 hours after she qualified.
DI_TOUCHED = textwrap.dedent(f"""\
    {HEADER}
    204,Di,2025-03-01 09:00,Email Marketing,Ria,2025-03-30 12:00,2025-03-30 22:00,,Open,2025-03-30 22:00
""")  # noqa: E501


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "hubspot-contacts.csv"
    path.write_text(CONTACTS)
    return path


def load(store: Store, path: Path) -> None:
    with store.unit_of_work() as s:
        import_files(s, [path], load_profile("hubspot"))


def card(result, kpi: str):  # noqa: ANN001, ANN201
    return next(c for c in result.cards if c.kpi == kpi)


def test_the_periods_kpis_beside_the_period_before(store: Store, export: Path) -> None:
    load(store, export)
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(**MARCH))
    q = result.query
    # the same number of days just before: 29 January to 28 February
    assert (q.compare_start, q.compare_end) == (date(2025, 1, 29), date(2025, 2, 28))
    volume = card(result, "mql_volume")
    assert (volume.value, volume.compared, volume.change_shown, volume.direction) == (
        5,
        1,
        "+4",
        "better",
    )
    # due: 201 and 202 (touched), 203 and 204 (deadline passed by the end of March); 205 is
    # not due yet. Within the SLA: 201 only. February: 206, touched late.
    sla = card(result, "sla_attainment")
    assert (sla.value, sla.sample_size, sla.shown) == (0.25, 4, "25.0%")
    assert (sla.compared, sla.change_shown, sla.direction) == (0.0, "+25.0 points", "better")
    assert sla.meaning == "The share of leads touched within the agreed hand-off time."
    latency = card(result, "handoff_latency_median_hours")
    assert (latency.value, latency.compared) == (29.5, 30.0)  # median of 11 and 48 hours
    assert (latency.change_shown, latency.direction) == ("−0.5 h", "better")
    assert card(result, "win_rate").shown == "no data"  # no deals in this export
    assert [(f.stage, f.count) for f in result.funnel][:2] == [("MQL", 5), ("SQL", 1)]


def test_a_period_before_the_data_has_nothing_to_compare_with(store: Store, export: Path) -> None:
    """The export starts in February 2025: against January, March's 5 MQLs are not "+5,
    better" than zero, the data does not go back that far; against February they are +4."""
    load(store, export)
    january = {"compare_start": date(2025, 1, 1), "compare_end": date(2025, 1, 31)}
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(**MARCH, **january))
    for c in result.cards:
        assert (c.compared, c.change_shown, c.direction) == (None, None, None), c.kpi
    assert card(result, "mql_volume").value == 5
    february = {"compare_start": date(2025, 2, 1), "compare_end": date(2025, 2, 28)}
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(**MARCH, **february))
    volume = card(result, "mql_volume")
    # (31 days against 28: said in all, and judged per day)
    assert (volume.compared, volume.change_shown) == (1, "+4 in all, +352% a day")


def test_amounts_of_two_currencies_are_not_compared(store: Store) -> None:
    """March's revenue is of a source in EUR, February's of one in USD: 1,000 EUR against
    900 USD is no rise of 100; each is said in its currency and the card says why there is no
    change."""
    from models.funnel import currency
    from models.funnel.tables import Deal

    with store.unit_of_work() as s:
        for source, key, day, cents in (("eu", "d1", 40, 100_000), ("us", "d2", 10, 90_000)):
            won = datetime(2025, 2, 1, 12, tzinfo=UTC) + timedelta(days=day)
            s.add(
                Deal(
                    source=source,
                    external_id=key,
                    stage="won",
                    won_at=won,
                    amount_cents=cents,
                    listed=True,
                )
            )
        s.flush()
        currency.set_currency(s, "eu", "EUR", None)
        currency.set_currency(s, "us", "USD", None)
    february = {"compare_start": date(2025, 2, 1), "compare_end": date(2025, 2, 28)}
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(start=date(2025, 3, 1), end=date(2025, 3, 31), **february))
    revenue = card(result, "revenue_won")
    assert (revenue.shown, revenue.compared_shown) == ("1,000.00 EUR", "900.00 USD")
    assert (revenue.change_shown, revenue.direction) == (None, None)
    assert revenue.note == (
        "Not compared: the amounts are in EUR in this period and in USD in the other."
    )
    assert card(result, "average_deal_size").change_shown is None
    assert card(result, "win_rate").change_shown == "no change"  # (a rate: both 100%)


def test_periods_of_different_lengths_are_judged_per_day(store: Store, export: Path) -> None:
    """Ten days of March against February and March together (59 days): 3 MQLs against 6 are
    fewer in all but three times as many a day; the card says both and judges per day, the
    page says why. A rate is compared as it is."""
    load(store, export)
    longer = {"compare_start": date(2025, 2, 1), "compare_end": date(2025, 3, 31)}
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(start=date(2025, 3, 1), end=date(2025, 3, 10), **longer))
    volume = card(result, "mql_volume")
    assert (volume.value, volume.compared) == (3, 6)
    assert (volume.change_shown, volume.direction) == ("−3 in all, +195% a day", "better")
    assert result.lengths_note == (
        "The periods differ in length (10 and 59 days): whether the MQL volume, untouched "
        "leads, stalled leads and revenue won are better or worse is judged per day."
    )
    # 201 of 201 and 202 (203 is not due by 10 March); February and March: 201 of 5
    sla = card(result, "sla_attainment")
    assert (sla.value, sla.compared) == (0.5, 0.2)
    assert (sla.change_shown, sla.direction, sla.note) == ("+30.0 points", "better", None)
    with store.unit_of_work() as s:  # the same length: in all, no note
        same = numbers(s, NumbersQuery(start=date(2025, 3, 1), end=date(2025, 3, 31)))
    assert (card(same, "mql_volume").change_shown, same.lengths_note) == ("+4", None)


def test_the_breach_list_is_every_lead_that_waited_past_the_sla(store: Store, export: Path) -> None:
    load(store, export)
    with store.unit_of_work() as s:
        got = sla_breaches(s, **MARCH, sla_hours=24)
    # as of the end of March: Cy waited 520 h, Bob 48 h (touched late), Di 36 h so far
    assert got.total == 3
    assert [(b.lead, b.owner, b.channel, b.waited_hours, b.late_hours) for b in got.rows] == [
        ("203", "Ria", "organic_search", 520.0, 496.0),
        ("202", "Lee", "paid_search", 48.0, 24.0),
        ("204", "Ria", "email", 36.0, 12.0),
    ]
    assert got.rows[1].touched_at is not None and got.rows[0].touched_at is None
    with store.unit_of_work() as s:  # a longer SLA: only Cy
        assert [b.lead for b in sla_breaches(s, **MARCH, sla_hours=72).rows] == ["203"]
        second = sla_breaches(s, **MARCH, sla_hours=24, limit=1, offset=1)
    assert (second.total, [b.lead for b in second.rows]) == (3, ["202"])


def test_a_source_that_records_no_first_touch_is_not_listed_as_late(
    store: Store, export: Path, tmp_path: Path
) -> None:
    """An export with no first-touch date (Olist's) cannot say who waited: its leads are not
    listed as late (nor recorded in a cycle's ledger and escalated), and the page says why."""
    load(store, export)
    untouched = tmp_path / "olist-like.csv"
    untouched.write_text("id,mql\n" + "".join(f"o{i},2025-03-0{i} 10:00\n" for i in range(1, 6)))
    mapping = tmp_path / "olist-like.yaml"
    mapping.write_text(
        "name: olist-like\nsource: olist-like\nfields:\n  external_id: id\n  mql_at: mql\n"
    )
    with store.unit_of_work() as s:
        import_files(s, [untouched], parse_mapping(mapping.read_text()))
    with store.unit_of_work() as s:
        both = sla_breaches(s, **MARCH, sla_hours=24)
        alone = sla_breaches(s, **MARCH, sla_hours=24, source="olist-like")
        ledger = list(
            every_breach(
                s,
                start=MARCH["start"],
                end=MARCH["end"],
                sla_hours=24,
                as_of=datetime(2025, 4, 1, tzinfo=UTC),
            )
        )
    assert (both.total, [b.lead for b in both.rows]) == (3, ["203", "202", "204"])
    assert both.untracked == ["olist-like"]
    assert (alone.total, alone.rows, alone.untracked) == (0, [], ["olist-like"])
    assert sorted(b.lead for b in ledger) == ["202", "203", "204"]


def test_a_period_in_which_sales_touched_no_lead_lists_every_lead_as_late(
    store: Store, export: Path, tmp_path: Path
) -> None:
    """The worst case is not a lack of data: a CRM that has recorded touches before, with no
    lead touched in April, lists April's leads as late (and its card says nothing of exports)."""
    load(store, export)
    april = tmp_path / "april.csv"
    april.write_text(
        f"{HEADER}\n"
        "301,Gus,2025-04-01 09:00,Paid Search,Lee,2025-04-02 09:00,,,Open,2025-04-02 09:00\n"
        "302,Hal,2025-04-01 09:00,Email Marketing,Ria,2025-04-03 09:00,,,Open,2025-04-03 09:00\n"
    )
    load(store, april)
    with store.unit_of_work() as s:
        got = sla_breaches(s, start=date(2025, 4, 1), end=date(2025, 4, 30), sla_hours=24)
    assert (got.total, [b.lead for b in got.rows], got.untracked) == (2, ["301", "302"], [])


def test_a_new_import_is_seen_at_once(store: Store, export: Path, tmp_path: Path) -> None:
    load(store, export)
    with store.unit_of_work() as s:
        before = numbers(s, NumbersQuery(**MARCH))
        again = numbers(s, NumbersQuery(**MARCH))
    assert again.data_version == before.data_version  # no import in between: the same result
    update = tmp_path / "di.csv"
    update.write_text(DI_TOUCHED)
    load(store, update)
    with store.unit_of_work() as s:
        after = numbers(s, NumbersQuery(**MARCH))
    assert after.data_version > before.data_version
    assert card(after, "sla_attainment").value == 0.5  # Di was touched within the SLA
    assert after.breaches.total == 2


def test_two_groupings(store: Store, export: Path) -> None:
    load(store, export)
    with store.unit_of_work() as s:
        result = numbers(s, NumbersQuery(**MARCH, by=["owner", "channel"]))
    cells = {tuple(g.keys): g.kpis["mql_volume"].value for g in result.grouped.groups}
    assert cells == {
        ("Lee", "email"): 1,
        ("Lee", "paid_search"): 2,
        ("Ria", "email"): 1,
        ("Ria", "organic_search"): 1,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            {"start": date(2025, 3, 31), "end": date(2025, 3, 1)},
            "the period ends (2025-03-01) before it starts (2025-03-31)",
        ),
        ({**MARCH, "by": ["owner", "owner"]}, "choose two different groupings"),
        (
            {**MARCH, "by": ["colour"]},
            "the numbers are grouped by channel, campaign, owner, team, month, not by 'colour'",
        ),
        (
            {**MARCH, "compare_start": date(2025, 2, 1)},
            "give both the start and the end of the period to compare with",
        ),
        (
            {**MARCH, "source": "nope"},
            "there is no funnel data from source “nope”; the sources are: hubspot",
        ),
    ],
)
def test_a_query_that_cannot_be_answered_is_refused_in_one_sentence(
    store: Store, export: Path, query: dict, message: str
) -> None:
    load(store, export)
    with pytest.raises(InvalidInput) as err, store.unit_of_work() as s:
        numbers(s, NumbersQuery(**query))
    assert str(err.value) == message


# --- the page ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("numbers")) as r:
        yield r


@pytest.fixture
def funnel(world: Rig, tmp_path: Path) -> Iterator[Rig]:
    with world.isolated():
        path = tmp_path / "hubspot-contacts.csv"
        path.write_text(CONTACTS)
        with world.store.unit_of_work() as s:
            import_files(s, [path], load_profile("hubspot"))
        yield world


MARCH_URL = "/numbers?from=2025-03-01&to=2025-03-31"


def text_of(html: str) -> str:
    """What a person reads: the page without its tags and attribute values."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


@pytest.mark.parametrize("who", sorted(PERSONAS))
def test_every_signed_in_person_reads_the_numbers(funnel: Rig, who: str) -> None:
    page = funnel.client(who).get(MARCH_URL)
    assert page.status_code == 200
    words = text_of(page.text)
    assert "SLA attainment 25.0%" in words
    assert "+25.0 points, better against 0.0%" in words
    assert "From 4 MQLs due." in words
    assert "3 of this period's MQLs waited longer than 24 hours" in words
    assert "not yet" in words and "organic search" in words  # a channel in words, not a key
    # how late each lead is: in hours below two days, in days from then on
    assert re.search(r"not yet 20\.7 days .* 24\.0 hours .* 12\.0 hours", words)
    for key in ("sla_attainment", "organic_search", "mql_volume", "(s)"):
        assert key not in words, key


def test_the_page_says_which_exports_record_no_first_touch(funnel: Rig, tmp_path: Path) -> None:
    path = tmp_path / "olist-like.csv"
    path.write_text("id,mql\n" + "".join(f"o{i},2025-03-0{i} 10:00\n" for i in range(1, 6)))
    spec = "name: olist-like\nsource: olist-like\nfields:\n  external_id: id\n  mql_at: mql\n"
    with funnel.store.unit_of_work() as s:
        import_files(s, [path], parse_mapping(spec))
    both = text_of(funnel.client("lee").get(MARCH_URL).text)
    assert "3 of this period's MQLs waited longer than 24 hours" in both
    # the KPIs of first touches leave those leads out, and say so (twice: two cards): they
    # read as the touch-recording source's alone, not 5 leads the worse
    note = (
        "The leads from olist-like are left out: that export has no date of a first sales "
        "touch, so whether they were touched cannot be told."
    )
    assert both.count(note) == 2
    with funnel.store.unit_of_work() as s:
        every, crm = (
            {
                k: (v.value, v.sample_size)
                for k, v in compute_kpis(
                    s, **MARCH, source=source, as_of=datetime(2025, 4, 1, tzinfo=UTC)
                )
                .groups[0]
                .kpis.items()
            }
            for source in (None, "hubspot")
        )
    assert every["mql_volume"][0] == crm["mql_volume"][0] + 5  # the MQLs count them
    for kpi in ("sla_attainment", "untouched_leads"):
        assert every[kpi] == crm[kpi], kpi
    assert "Not counted: the leads from olist-like. That export has no date of a first" in both
    alone = text_of(funnel.client("lee").get(MARCH_URL + "&source=olist-like").text)
    assert "of this period's MQLs waited" not in alone and "No MQL of this period" not in alone
    assert "so how long those leads waited cannot be told" in alone
    assert "are left out" not in alone  # alone: its touch KPIs are "no data"
    hubspot = text_of(funnel.client("lee").get(MARCH_URL + "&source=hubspot&sla=1000").text)
    assert "No MQL of this period waited longer than 1000 hours for a first sales touch" in hubspot
    assert "Not counted" not in hubspot


OLIST_MQLS = """\
mql_id,first_contact_date,landing_page_id,origin
m1,2025-03-02,p1,social
m2,2025-03-03,p1,social
m3,2025-03-04,p2,paid_search
"""
OLIST_WON = """\
mql_id,seller_id,sdr_id,sr_id,won_date,business_segment,lead_type,lead_behaviour_profile,\
has_company,has_gtin,average_stock,business_type,declared_product_catalog_size,\
declared_monthly_revenue
m1,s1,d1,r1,2025-03-10 10:00:00,pet,online_medium,cat,,,,reseller,,100.0
m2,s2,d1,r1,2025-03-12 10:00:00,pet,online_medium,cat,,,,reseller,,50.0
"""


def csv_rows(text: str) -> list[dict[str, str]]:
    """A download's rows: UTF-8 with a byte-order mark, which Excel needs to read it so."""
    assert text.startswith("\ufeff") and not text.startswith("\ufeff\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_the_numbers_download_as_a_spreadsheet_every_kpi_of_both_periods(funnel: Rig) -> None:
    """The page links to its numbers as CSV: every KPI (the grouped table shows seven) of the
    period, of the period compared with and of each group, as the cards and the table say
    them, in plain numbers a spreadsheet adds up."""
    page = funnel.client("sid").get(MARCH_URL + "&by=channel")
    link = re.search(r'href="(/numbers\.csv\?[^"]+)"', page.text)
    assert link, "the page has no download link"
    got = funnel.client("sid").get(unescape(link.group(1)))
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/csv")
    assert "shared-numbers-2025-03-01-to-2025-03-31.csv" in got.headers["content-disposition"]
    rows = csv_rows(got.text)
    header = list(rows[0])
    assert header[:3] == ["Channel", "From", "To"]
    assert {"MQL volume", "SLA attainment (%)", "Hand-off latency, median (hours)"} <= set(header)
    assert len(header) == 3 + len(KPIS) + 1  # every KPI, then the amounts' currency
    march, february = rows[0], rows[1]
    assert (march["Channel"], march["From"], march["To"]) == ("All", "2025-03-01", "2025-03-31")
    assert (march["MQL volume"], march["SLA attainment (%)"]) == ("5", "25.00")
    assert (february["From"], february["To"]) == ("2025-01-29", "2025-02-28")  # as long
    assert (february["MQL volume"], february["SLA attainment (%)"]) == ("1", "0.00")
    by_channel = {r["Channel"]: r for r in rows[2:]}
    assert set(by_channel) == {"paid search", "organic search", "email"}  # words, not keys
    assert by_channel["paid search"]["MQL volume"] == "2"
    assert by_channel["organic search"]["Hand-off latency, median (hours)"] == ""  # no data


def test_every_lead_past_the_sla_downloads_in_the_lists_order(funnel: Rig) -> None:
    page = funnel.client("meg").get(MARCH_URL)
    link = re.search(
        r'href="(/numbers/late-leads\.csv\?[^"]+)"[^>]*>Download all of them', page.text
    )
    assert link, "the list has no download link"
    got = funnel.client("meg").get(unescape(link.group(1)))
    assert got.status_code == 200
    rows = csv_rows(got.text)
    assert [
        (r["Lead"], r["Owner"], r["Channel"], r["Waited (hours)"], r["Late by (hours)"])
        for r in rows
    ] == [
        ("203", "Ria", "organic search", "520.0", "496.0"),
        ("202", "Lee", "paid search", "48.0", "24.0"),
        ("204", "Ria", "email", "36.0", "12.0"),
    ]
    assert rows[1]["Qualified (UTC)"] == "2025-03-04 09:00"
    assert (rows[1]["First touch (UTC)"], rows[0]["First touch (UTC)"]) == ("2025-03-06 09:00", "")
    # the page's own choices: a longer SLA lists only Cy
    longer = funnel.client("meg").get(
        "/numbers/late-leads.csv?from=2025-03-01&to=2025-03-31&sla=72"
    )
    assert [r["Lead"] for r in csv_rows(longer.text)] == ["203"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "/numbers.csv?from=2025-03-31&to=2025-03-01",
            "The period ends (2025-03-01) before it starts",
        ),
        ("/numbers/late-leads.csv?from=March", "Not a date: 'March'"),
        (
            "/numbers.csv?from=2025-03-01&to=2025-03-31&source=nope",
            "There is no funnel data from source",
        ),
    ],
)
def test_a_download_that_cannot_be_made_says_why(funnel: Rig, url: str, message: str) -> None:
    got = funnel.client("sid").get(url)
    assert got.status_code == 422
    assert message in unescape(got.text)
    assert "Traceback" not in got.text


def test_a_win_rate_of_an_export_with_no_lost_deal_says_so(funnel: Rig, tmp_path: Path) -> None:
    (tmp_path / "mqls.csv").write_text(OLIST_MQLS)
    (tmp_path / "won.csv").write_text(OLIST_WON)
    with funnel.store.unit_of_work() as s:
        import_files(s, [tmp_path / "mqls.csv", tmp_path / "won.csv"], load_profile("olist"))
    note = (
        "No deal from olist is recorded as lost: if that export lists won deals only, this rate "
        "counts their wins and none of their losses."
    )
    words = text_of(funnel.client("lee").get(MARCH_URL + "&source=olist").text)
    assert "Win rate 100.0%" in words and note in words
    # a window with none of its deals won reads no note: the rate is "no data"
    april = text_of(funnel.client("lee").get("/numbers?from=2025-04-01&to=2025-04-30").text)
    assert "recorded as lost" not in april
    # nor does its hand-off list say that no MQL waited: there was none
    assert "No lead became an MQL in this period: none could wait." in april
    assert "No MQL of this period waited" not in april
    with funnel.store.unit_of_work() as s:
        assert compute_kpis(s, **MARCH).never_lost == ["olist"]
    # once the source records a lost deal, its win rate is a real one
    lost = "id,lead,stage,closed\nx1,m3,lost,2025-03-20\n"
    (tmp_path / "lost.csv").write_text(lost)
    spec = "name: lost\nsource: olist\nfields:\n  deal_id: id\n  lead_id: lead\n"
    spec += "  stage: stage\n  lost_at: {column: closed, when: {column: stage, in: [lost]}}\n"
    with funnel.store.unit_of_work() as s:
        import_files(s, [tmp_path / "lost.csv"], parse_mapping(spec))
    words = text_of(funnel.client("lee").get(MARCH_URL + "&source=olist").text)
    assert "Win rate 66.7%" in words and "recorded as lost" not in words


def test_the_page_says_periods_of_different_lengths_are_judged_per_day(funnel: Rig) -> None:
    words = text_of(
        funnel.client("sid").get(MARCH_URL + "&compare_from=2025-02-01&compare_to=2025-03-31").text
    )
    assert "The periods differ in length (31 and 59 days): whether the MQL volume" in words
    assert "in all," in words and "a day" in words
    assert "differ in length" not in text_of(funnel.client("sid").get(MARCH_URL).text)


def test_the_page_groups_by_owner_and_month(funnel: Rig) -> None:
    words = text_of(funnel.client("sid").get(MARCH_URL + "&by=owner&then_by=month").text)
    assert "By owner and month" in words
    assert "SLA attainment: Owner down, month across" in words
    assert "Mar 2025" in words and "2025-03" not in words


def test_a_page_that_cannot_be_shown_says_why_and_shows_the_last_30_days(funnel: Rig) -> None:
    page = funnel.client("sid").get("/numbers?from=2025-03-31&to=2025-03-01")
    assert page.status_code == 422
    words = text_of(page.text)
    assert "The period ends (2025-03-01) before it starts (2025-03-31). The last 30 days" in words
    assert "KPIs" in words
    bad = funnel.client("sid").get("/numbers?from=31/03/2025")
    assert bad.status_code == 422
    assert "Not a date: '31/03/2025' (use the date picker, or YYYY-MM-DD)" in text_of(bad.text)


def test_without_funnel_data_the_page_says_who_imports_it(world: Rig) -> None:
    with world.isolated():
        member = text_of(world.client("sid").get("/numbers").text)
        lead = world.client("lee").get("/numbers").text
    assert "No shared numbers yet." in member and "A lead or a manager imports" in member
    assert 'href="/numbers/import"' in lead


# --- the API ----------------------------------------------------------------------------------


def test_the_api_gives_the_kpis_and_the_breaches(funnel: Rig) -> None:
    c, auth = funnel.client("sid"), funnel.bearer("sid")
    got = c.get("/api/v1/kpis?from=2025-03-01&to=2025-03-31", headers=auth).json()
    overall = got["report"]["groups"][0]["kpis"]
    assert overall["sla_attainment"]["value"] == 0.25
    assert got["compared"]["groups"][0]["kpis"]["mql_volume"]["value"] == 1
    assert got["query"]["compare_start"] == "2025-01-29"
    by = c.get("/api/v1/kpis?from=2025-03-01&to=2025-03-31&by=owner&by=month", headers=auth).json()
    assert {tuple(g["keys"]) for g in by["report"]["groups"]} == {
        ("Lee", "2025-03"),
        ("Ria", "2025-03"),
    }
    bad = c.get("/api/v1/kpis?from=2025-03-01&to=2025-03-31&by=colour", headers=auth)
    assert bad.status_code == 422
    assert "not by 'colour'" in bad.json()["error"]["message"]
    nope = c.get("/api/v1/kpis?source=nope", headers=auth)
    assert (nope.status_code, nope.json()["error"]["message"]) == (
        422,
        "there is no funnel data from source “nope”; the sources are: hubspot",
    )
    late = c.get("/api/v1/kpis/breaches?from=2025-03-01&to=2025-03-31&limit=2", headers=auth).json()
    assert (late["total"], [b["lead"] for b in late["rows"]]) == (3, ["203", "202"])


def test_a_target_set_through_the_api_is_in_the_cycles_targets(funnel: Rig) -> None:
    item = funnel.world.actions["execute_sid"]
    cycle = funnel.world.cycles["execute"]
    c = funnel.client("lee")
    put = c.put(
        f"/api/v1/actions/{item}/target",
        json={"kpi": "sla_attainment", "target": "85%"},
        headers=funnel.bearer("lee"),
    )
    assert put.status_code == 200, put.text
    assert (put.json()["kpi"], put.json()["target"]) == ("sla_attainment", 0.85)
    listed = c.get(f"/api/v1/cycles/{cycle}/targets", headers=funnel.bearer("lee")).json()
    assert [(t["action_item_id"], t["target"]) for t in listed] == [(item, 0.85)]
    wrong = c.put(
        f"/api/v1/actions/{item}/target",
        json={"kpi": "lead_quality", "target": 1},
        headers=funnel.bearer("lee"),
    )
    assert wrong.status_code == 422 and "unknown KPI 'lead_quality'" in wrong.text


def test_a_target_is_set_on_the_actions_page_with_the_baseline_in_view(funnel: Rig) -> None:
    item = funnel.world.actions["execute_sid"]
    cycle = funnel.world.cycles["execute"]
    page = funnel.client("sid").get(f"/cycles/{cycle}/actions").text
    assert f'hx-get="/actions/{item}/form/target?' in page and "Set a target" in page
    box = funnel.client("sid").get(f"/actions/{item}/form/target?next=/cycles/{cycle}/actions")
    assert (
        f'action="/actions/{item}/target"' in box.text and "Which number should move?" in box.text
    )
    sent = funnel.client("sid").post(
        f"/actions/{item}/target",
        data={
            "kpi": "handoff_latency_median_hours",
            "target": "6 h",
            "csrf": funnel.personas["sid"].csrf,
        },
    )
    assert sent.status_code == 303
    after = text_of(funnel.client("sid").get(f"/cycles/{cycle}/actions").text)
    assert "Target: Hand-off latency, median from" in after and "to 6.0 h" in after
    refused = funnel.client("sid").post(
        f"/actions/{item}/target",
        data={
            "kpi": "sla_attainment",
            "target": "12,5",
            "next": f"/cycles/{cycle}/actions",
            "csrf": funnel.personas["sid"].csrf,
        },
    )
    assert refused.status_code == 422
    words = text_of(refused.text)
    assert "not a number: '12,5' (write decimals with a point, e.g. 12.5)" in words
    assert 'value="12,5"' in refused.text  # what was typed is kept
