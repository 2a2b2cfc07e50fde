"""The currency of the amounts: each import records the one its amounts carry (or its mapping
declares), a source's amounts stay in one, and the numbers never add up dollars and euros;
a sum in one currency says which, on the Numbers page and in ``kpi show``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.db import Store
from models.errors import InvalidInput
from models.funnel.currency import set_currency, source_currencies
from models.funnel.importer import deal_count, import_files
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import load_profile, parse_mapping
from models.funnel.numbers import NumbersQuery, numbers
from models.funnel.tables import FunnelImport
from tests.test_numbers import text_of
from tests.test_web_support import Rig, rig

MARCH = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}
HEADER = "id,stage,created,closed,amount\n"


def mapping(source: str, extra: str = "") -> object:
    return parse_mapping(
        f"name: {source}-deals\nsource: {source}\n{extra}fields:\n  deal_id: id\n"
        "  stage: stage\n  opportunity_at: created\n"
        "  won_at: {column: closed, when: {column: stage, in: [won]}}\n"
        "  lost_at: {column: closed, when: {column: stage, in: [lost]}}\n"
        "  amount: amount\n"
    )


def deals(folder: Path, name: str, *amounts: str, prefix: str = "d") -> Path:
    rows = [
        f'{prefix}{i},won,2025-03-0{i + 1},2025-03-1{i + 1},"{a}"\n' for i, a in enumerate(amounts)
    ]
    path = folder / name
    path.write_text(HEADER + "".join(rows))
    return path


def imported(store: Store, paths: list[Path], spec: object, **kw: object) -> None:
    with store.unit_of_work() as s:
        import_files(s, paths, spec, **kw)  # type: ignore[arg-type]


def recorded(store: Store) -> list[tuple[str, str | None]]:
    with store.unit_of_work() as s:
        rows = s.execute(select(FunnelImport.source, FunnelImport.currency).order_by("id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_an_import_records_its_amounts_currency(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    imported(
        store, [deals(tmp_path, "a.csv", "$1,200.00", "900")], mapping("crm"), parallel=parallel
    )
    assert recorded(store) == [("crm", "USD")]


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_a_row_the_import_rejects_says_nothing_of_the_file_s_currency(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    """Its amount's sign is not the file's currency (the row is not imported), though a file
    whose rows mix currencies is refused whichever of them are rejected."""
    path = tmp_path / "a.csv"
    path.write_text(
        HEADER + 'd1,won,someday,2025-03-10,"900 €"\nd2,won,2025-03-02,2025-03-11,700\n'
    )
    imported(store, [path], mapping("crm"), parallel=parallel)
    assert recorded(store) == [("crm", None)]
    with store.unit_of_work() as s:
        assert (deal_count(s, "crm"), source_currencies(s)) == (1, {})
    mixed = tmp_path / "b.csv"
    mixed.write_text(
        HEADER + 'e1,won,someday,2025-03-10,"900 €"\ne2,won,2025-03-02,2025-03-11,$7\n'
    )
    with pytest.raises(InvalidInput, match="is in USD but an earlier amount, '900 €', is in EUR"):
        imported(store, [mixed], mapping("crm"), parallel=parallel)


def test_a_source_s_amounts_stay_in_one_currency(store: Store, tmp_path: Path) -> None:
    imported(store, [deals(tmp_path, "a.csv", "USD 1200")], mapping("crm"))
    euros = deals(tmp_path, "b.csv", "900 €", prefix="e")
    with pytest.raises(InvalidInput) as refused:
        imported(store, [euros], mapping("crm"))
    message = str(refused.value)
    assert message.startswith("b.csv: its amounts are in EUR but source “crm” holds amounts in USD")
    assert "say so first (its currency, on the import page)" in message
    assert "import them as another source (the mapping's source)" in message
    # the store is unchanged: no euro deal, no import recorded
    with store.unit_of_work() as s:
        assert deal_count(s, "crm") == 1
        assert s.scalar(select(func.count()).select_from(FunnelImport)) == 1
    # amounts with no sign say nothing: they are kept, and the source stays in dollars
    imported(store, [deals(tmp_path, "c.csv", "700", prefix="p")], mapping("crm"))
    # as another source, the euros are welcome
    imported(store, [euros], mapping("eu"))
    assert recorded(store) == [("crm", "USD"), ("crm", None), ("eu", "EUR")]
    with store.unit_of_work() as s:
        assert source_currencies(s) == {"crm": "USD", "eu": "EUR"}


def test_the_files_of_one_import_must_agree(store: Store, tmp_path: Path) -> None:
    a = deals(tmp_path, "2024.csv", "$10")
    b = deals(tmp_path, "2025.csv", "10 EUR", prefix="e")
    with pytest.raises(InvalidInput, match=r"^2024\.csv: its amounts are in USD but those of "):
        imported(store, [a, b], mapping("crm"))
    assert recorded(store) == []


def test_a_declared_currency_is_recorded_and_holds_every_amount(
    store: Store, tmp_path: Path
) -> None:
    spec = mapping("crm", "amount_currency: EUR\n")
    imported(store, [deals(tmp_path, "a.csv", "1200", "€ 50")], spec)
    assert recorded(store) == [("crm", "EUR")]
    with pytest.raises(InvalidInput) as refused:
        imported(store, [deals(tmp_path, "b.csv", "1200", "$900", prefix="e")], spec)
    message = str(refused.value)
    assert (
        "line 3" in message
        and "'$900' is in USD but the mapping says the amounts are in EUR" in message
    )
    assert "(amount_currency)" in message
    with pytest.raises(InvalidInput, match="amount_currency"):
        mapping("crm", "amount_currency: euros\n")


def test_money_of_sources_in_different_currencies_is_not_added_up(
    store: Store, tmp_path: Path
) -> None:
    imported(store, [deals(tmp_path, "us.csv", "$1,000.00", "$500.00")], mapping("us"))
    imported(store, [deals(tmp_path, "br.csv", "R$ 200,00")], mapping("br", 'decimal: ","\n'))
    with store.unit_of_work() as s:
        both = compute_kpis(s, **MARCH)
        us = compute_kpis(s, **MARCH, source="us")
        br = compute_kpis(s, **MARCH, source="br")
        by_month = compute_kpis(s, **MARCH, by="month")
    kpis = both.overall()
    assert kpis["revenue_won"].value is None and kpis["average_deal_size"].value is None
    assert kpis["win_rate"].value == 1.0  # the other numbers are unchanged
    assert both.currencies == {"br": "BRL", "us": "USD"} and both.currency is None
    assert both.currency_note == (
        "Not added up: the amounts of “br” in BRL and those of “us” in USD, and amounts in "
        "different currencies add up to no number. Choose one source to see it."
    )
    assert all(g.kpis["revenue_won"].value is None for g in by_month.groups)
    assert (us.currency, us.overall()["revenue_won"].value) == ("USD", 1500.0)
    assert (br.currency, br.overall()["revenue_won"].value) == ("BRL", 200.0)
    # a window where only one source has money adds it up, and says its currency
    with store.unit_of_work() as s:
        one = compute_kpis(s, start=date(2025, 3, 12), end=date(2025, 3, 12))
    assert (one.currency, one.currencies, one.currency_note) == ("USD", {}, None)
    assert one.overall()["revenue_won"].value == 500.0
    with store.unit_of_work() as s:
        page = numbers(s, NumbersQuery(**MARCH, source="us"))
        mixed = numbers(s, NumbersQuery(**MARCH))
    revenue = next(c for c in page.cards if c.kpi == "revenue_won")
    assert (revenue.shown, revenue.note) == ("1,500.00 USD", None)
    notes = {c.kpi: (c.shown, c.note) for c in mixed.cards}
    assert notes["revenue_won"] == ("no data", both.currency_note)
    # no open deal: that card is "no data" for its own reason, and says nothing of currencies
    assert notes["open_pipeline_value"] == ("no data", None)


def test_amounts_of_no_known_currency_beside_known_ones_are_said(
    store: Store, tmp_path: Path
) -> None:
    imported(store, [deals(tmp_path, "us.csv", "$1,000.00")], mapping("us"))
    imported(store, [deals(tmp_path, "old.csv", "250", prefix="o")], mapping("old"))
    with store.unit_of_work() as s:
        report = compute_kpis(s, **MARCH)
    assert report.overall()["revenue_won"].value == 1250.0
    assert (report.currency, report.no_currency) == (None, ["old"])
    assert report.currency_note == (
        "The amounts of “old” carry no currency: they are added as they are to those of “us”, "
        "in USD. A lead or a manager can say which currency they are in on the import page."
    )


def test_a_column_of_currencies_holds_every_amount_to_one(store: Store, tmp_path: Path) -> None:
    """A multi-currency CRM writes each amount's currency in a column of its own: the file's
    rows must agree, or it is refused naming the line and the column."""
    spec = parse_mapping(
        "name: sf\nsource: sf\nfields:\n  deal_id: Id\n  stage: Stage\n"
        "  won_at: {column: Closed, when: {column: Stage, in: [Closed Won]}}\n"
        "  amount: {column: Amount, currency_column: Opportunity Currency}\n"
    )
    head = "Id,Stage,Closed,Amount,Opportunity Currency\n"
    same = tmp_path / "same.csv"
    same.write_text(head + "a,Closed Won,2025-03-03,100,eur\nb,Closed Won,2025-03-04,50,\n")
    imported(store, [same], spec)
    assert recorded(store) == [("sf", "EUR")]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(head + "c,Closed Won,2025-03-05,100,EUR\nd,Closed Won,2025-03-06,70,USD\n")
    with pytest.raises(InvalidInput) as refused:
        imported(store, [mixed], spec)
    assert str(refused.value) == (
        f"{mixed}: line 3, column 'Opportunity Currency': the currency column 'Opportunity "
        "Currency' says USD but the rows before are in EUR: the numbers add amounts up, so the "
        "amounts of a file must be in one currency; export them converted into one (CRMs have "
        "a converted amount column: map the amount to it); nothing was imported"
    )
    odd = tmp_path / "odd.csv"
    odd.write_text(head + "e,Closed Won,2025-03-05,100,Euro\n")
    with store.unit_of_work() as s:
        summary = import_files(s, [odd], spec)
    assert summary.files[0].first_rejects[0].reason == (
        "currency 'Euro' (column 'Opportunity Currency') is not a three-letter code"
    )
    with pytest.raises(InvalidInput, match="'currency_column' is for the amount"):
        parse_mapping("name: x\nsource: x\nfields:\n  deal_id: {column: Id, currency_column: C}\n")


def test_a_multi_currency_hubspot_export_is_held_to_one_currency(
    store: Store, tmp_path: Path
) -> None:
    """HubSpot adds a Currency column in multi-currency portals: the profile reads it, so a
    deals export in two currencies is refused; one without the column imports as before."""
    head = "Record ID,Deal Stage,Amount,Close Date,Create Date,Associated Contact IDs"
    multi = tmp_path / "deals.csv"
    multi.write_text(
        f"{head},Currency\n1,closedwon,100,2025-03-03,2025-03-01,,EUR\n"
        "2,closedwon,90,2025-03-04,2025-03-01,,GBP\n"
    )
    with pytest.raises(InvalidInput, match=r"line 3, column 'Currency': the currency column"):
        imported(store, [multi], load_profile("hubspot"))
    one = tmp_path / "one.csv"
    one.write_text(f"{head}\n1,closedwon,100,2025-03-03,2025-03-01,\n")
    imported(store, [one], load_profile("hubspot"))
    assert recorded(store) == [("hubspot", None)]


def test_a_person_says_or_corrects_a_source_s_currency(store: Store, tmp_path: Path) -> None:
    imported(store, [deals(tmp_path, "a.csv", "1000")], mapping("crm"))
    with store.unit_of_work() as s:
        assert compute_kpis(s, **MARCH).currency is None  # amounts with no sign: not known
        set_currency(s, "crm", "gbp", None)
    with store.unit_of_work() as s:
        report = compute_kpis(s, **MARCH)
        assert (report.currency, report.overall()["revenue_won"].value) == ("GBP", 1000.0)
    # from now on, an import in another currency is refused; corrected, it is welcome
    euros = deals(tmp_path, "b.csv", "€5", prefix="e")
    with pytest.raises(InvalidInput, match="holds amounts in GBP"):
        imported(store, [euros], mapping("crm"))
    with store.unit_of_work() as s:
        set_currency(s, "crm", "EUR", None)
    imported(store, [euros], mapping("crm"))
    with store.unit_of_work() as s:
        assert source_currencies(s) == {"crm": "EUR"}
        for code, source, what in (
            ("pounds", "crm", "from the list"),
            ("EUR", "nope", "no amount"),
        ):
            with pytest.raises(InvalidInput, match=what):
                set_currency(s, source, code, None)


def test_an_operator_lists_and_says_the_currencies_on_the_command_line(
    org: Store, tmp_path: Path
) -> None:
    from tests.test_cli import cli, cli_json

    imported(org, [deals(tmp_path, "a.csv", "1000")], mapping("crm"))
    imported(org, [deals(tmp_path, "b.csv", "$5", prefix="u")], mapping("us"))
    out = cli("funnel", "currency").stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows == [["crm", "not", "known"], ["us", "USD", "its", "import"]]
    refused = cli("funnel", "currency", "crm", "EUR", "--as", "sid@acme.test", code=1)
    assert "importing funnel data is for leads and managers" in refused.output
    said = cli("funnel", "currency", "crm", "eur", "--as", "lee@acme.test").stdout
    assert said == "The amounts of 'crm' are read as EUR from now on.\n"
    assert cli_json("funnel", "currency") == [
        {"source": "crm", "currency": "EUR"},
        {"source": "us", "currency": "USD"},
    ]
    bad = cli("funnel", "currency", "crm", "euros", "--as", "lee@acme.test", code=1)
    assert bad.output.strip() == "error: choose the currency from the list"


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("currency")) as r:
        yield r


def test_the_numbers_page_says_the_currency_and_what_it_does_not_add(
    world: Rig, tmp_path: Path
) -> None:
    with world.isolated():
        imported(world.store, [deals(tmp_path, "us.csv", "$1,000.00")], mapping("us"))
        url = "/numbers?from=2025-03-01&to=2025-03-31"
        words = text_of(world.client("lee").get(url).text)
        assert "Revenue won 1,000.00 USD" in words
        imported(world.store, [deals(tmp_path, "eu.csv", "€300")], mapping("eu"))
        words = text_of(world.client("lee").get(url).text)
        assert "Revenue won no data" in words
        assert "Not added up: the amounts of “eu” in EUR and those of “us” in USD" in words
        words = text_of(world.client("lee").get(url + "&source=eu").text)
        assert "Revenue won 300.00 EUR" in words and "Not added up" not in words
        grouped = text_of(world.client("lee").get(url + "&by=month").text)
        assert "Choose one source to see it." in grouped
        api = world.client().get(
            "/api/v1/kpis?from=2025-03-01&to=2025-03-31", headers=world.bearer("lee")
        )
        report = api.json()["report"]
        assert report["currencies"] == {"eu": "EUR", "us": "USD"}
        assert report["groups"][0]["kpis"]["revenue_won"]["value"] is None
        assert report["currency_note"].startswith("Not added up")
        # a lead says which currency a source is in, on the import page; the numbers follow
        page = world.client("lee").get("/numbers/import")
        assert "The currency of each source" in text_of(page.text)
        section = page.text.split('id="currencies"')[1].split("</section>")[0]
        assert "Choose…" not in section  # (both sources' currencies are known)
        client = world.client("lee")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        done = client.post(
            "/numbers/import/currency", data={"csrf": csrf, "source": "eu", "currency": "GBP"}
        )
        assert done.status_code == 303
        said = text_of(client.get(done.headers["location"]).text)
        assert "The amounts of “eu” are read as Pounds sterling (GBP) from now on." in said
        words = text_of(client.get(url + "&source=eu").text)
        assert "Revenue won 300.00 GBP" in words
        wrong = client.post(
            "/numbers/import/currency", data={"csrf": csrf, "source": "eu", "currency": "pounds"}
        )
        assert wrong.status_code == 422
        assert "Choose the currency from the list." in text_of(wrong.text)
        # a member reads the numbers but does not say a source's currency
        member = world.client("sid")
        home = member.get("/numbers").text
        token = re.search(r'name="csrf" value="([^"]+)"', home).group(1)
        refused = member.post(
            "/numbers/import/currency", data={"csrf": token, "source": "eu", "currency": "USD"}
        )
        assert refused.status_code == 403
        assert "Revenue won 300.00 GBP" in text_of(client.get(url + "&source=eu").text)


def test_the_api_lists_and_says_the_currencies_of_the_sources(world: Rig, tmp_path: Path) -> None:
    """As on the import page: leads and managers list each source's currency and say one; a
    member may not, and a word that is no currency is refused in one line."""
    with world.isolated():
        imported(world.store, [deals(tmp_path, "eu.csv", "300")], mapping("eu"))
        lee = world.bearer("lee")
        listed = world.client().get("/api/v1/sources/currencies", headers=lee)
        assert listed.status_code == 200
        assert [(s["source"], s["currency"]) for s in listed.json()] == [("eu", None)]
        said = world.client().put(
            "/api/v1/sources/eu/currency", json={"currency": "eur"}, headers=lee
        )
        assert said.status_code == 200, said.text
        assert (said.json()["currency"], said.json()["said_by"]) == ("EUR", "Lee Saleslead")
        with world.store.unit_of_work() as s:
            assert source_currencies(s) == {"eu": "EUR"}
        wrong = world.client().put(
            "/api/v1/sources/eu/currency", json={"currency": "euros"}, headers=lee
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"]["message"] == "choose the currency from the list"
        none = world.client().put(
            "/api/v1/sources/nowhere/currency", json={"currency": "USD"}, headers=lee
        )
        assert none.status_code == 422
        assert none.json()["error"]["message"] == "source “nowhere” holds no amount"
        member = world.client().get("/api/v1/sources/currencies", headers=world.bearer("sid"))
        assert member.status_code == 403


def test_targets_in_money_say_the_numbers_currency_and_keep_to_it(
    world: Rig, tmp_path: Path
) -> None:
    """An action item's target on revenue shows the shared numbers' currency, is read back as
    the page shows it, and is refused in another currency, or on a number that is no amount."""
    item = world.world.actions["execute_sid"]
    cycle = world.world.cycles["execute"]
    csrf = world.personas["sid"].csrf
    with world.isolated():
        imported(world.store, [deals(tmp_path, "us.csv", "$1,000.00")], mapping("us"))
        client = world.client("sid")

        def target(kpi: str, value: str) -> object:
            return client.post(
                f"/actions/{item}/target",
                data={
                    "kpi": kpi,
                    "target": value,
                    "csrf": csrf,
                    "next": f"/cycles/{cycle}/actions",
                },
            )

        sent = target("revenue_won", "60,000.00 USD")
        assert sent.status_code == 303, text_of(sent.text)[:300]
        said = text_of(client.get(sent.headers["location"]).text)
        assert "Target saved: Revenue won to 60,000.00 USD." in said
        assert "to 60,000.00 USD" in said
        box = client.get(f"/actions/{item}/form/target?next=/cycles/{cycle}/actions").text
        assert 'value="60,000.00 USD"' in box
        timeline = text_of(client.get(f"/cycles/{cycle}/timeline").text)
        assert ": Revenue won 60,000.00 USD" in timeline
        euros = target("revenue_won", "60,000 EUR")
        assert euros.status_code == 422
        assert "The shared numbers' amounts are in USD, not EUR: give the target in USD" in text_of(
            euros.text
        )
        rate = target("sla_attainment", "90 USD")
        assert rate.status_code == 422
        assert "SLA attainment is not an amount: give the target without a currency" in text_of(
            rate.text
        )
        api = world.client().put(
            f"/api/v1/actions/{item}/target",
            json={"kpi": "revenue_won", "target": 70000, "currency": "GBP"},
            headers=world.bearer("sid"),
        )
        assert api.status_code == 422
        assert "amounts are in USD, not GBP" in api.json()["error"]["message"]
