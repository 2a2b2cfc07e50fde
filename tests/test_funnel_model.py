"""Leads and deals: HubSpot-shaped exports with several deals per contact, every KPI checked
against a hand computation, the same store and KPIs whatever the order of the files and runs
(permutations), two-dimensional groupings, a comparison of two windows, the flags the CLI
lists, and migration 0007 turning old funnel records into leads and deals."""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from migrations import runner
from models.db import Store, make_engine
from models.funnel.importer import import_files
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import load_profile
from tests.funnel_helpers import clear_funnel, funnel_content

AS_OF = datetime(2025, 4, 30, tzinfo=UTC)
MARCH = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}

CONTACTS = textwrap.dedent("""\
    Record ID,First Name,Create Date,Original Source,Contact owner,Became a Marketing Qualified Lead Date,Became a Sales Qualified Lead Date,Lead Status,Last Activity Date
    101,Ann,2025-03-01 09:00,Partner,Sam,2025-03-03 09:00,2025-03-04 10:00,Open,2025-03-04 10:00
    102,Bob,2025-03-01 09:00,Organic Search,Sam,2025-03-05 10:00,,Unqualified,2025-03-06 12:00
    103,Cy,2025-03-01 09:00,PARTNER,Ria,2025-03-10 08:00,2025-03-11 09:00,Open,2025-03-11 09:00
    104,Di,2025-03-01 09:00,Email Marketing,Ria,2025-04-02 08:00,,Open,2025-04-02 08:00
""")  # noqa: E501
DEALS_HEADER = (
    "Record ID,Deal Name,Deal Stage,Amount,Close Date,Create Date,Deal owner,Associated Contact IDs"
)
# Ann's lost deal, then her won deal; Cy's open deal (several contacts listed on the lost one)
DEALS_A = [
    '9001,Ann first try,Closed Lost,"5,000.00",2025-03-20 10:00,2025-03-05 10:00,Sam,101;999',
    '9002,Ann second try,Closed Won,"12,000.00",2025-03-28 10:00,2025-03-21 10:00,Sam,101',
    "9003,Cy pilot,Appointment Scheduled,3000,2025-06-30 10:00,2025-03-12 00:00,Ria,103",
]
# Cy's won deal in April, with a negative amount (a credit); a deal of a company only
DEALS_B = [
    "9004,Cy credit,Closed Won,(200.00),2025-04-05 10:00,2025-03-15 10:00,Ria,103",
    "9005,Company deal,Closed Won,800,2025-03-25 10:00,2025-03-01 10:00,Sam,",
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "contacts": tmp_path / "contacts.csv",
        "deals_a": tmp_path / "deals_a.csv",
        "deals_b": tmp_path / "deals_b.csv",
    }
    out["contacts"].write_text(CONTACTS)
    out["deals_a"].write_text(DEALS_HEADER + "\n" + "\n".join(DEALS_A) + "\n")
    out["deals_b"].write_text(DEALS_HEADER + "\n" + "\n".join(DEALS_B) + "\n")
    return out


def load(store: Store, *paths: Path) -> None:
    with store.unit_of_work() as s:
        import_files(s, list(paths), load_profile("hubspot"))


def report(store: Store, **kw):  # noqa: ANN003, ANN201
    kw.setdefault("as_of", AS_OF)
    with store.unit_of_work() as s:
        return compute_kpis(s, source="hubspot", **kw)


def test_every_kpi_over_leads_with_several_deals(store: Store, files: dict[str, Path]) -> None:
    load(store, *files.values())
    r = report(store, **MARCH)
    k = r.overall()
    v = {name: x.value for name, x in k.items()}
    # March cohort: 101 102 103. SQL: 101 103. A won deal: 101 (9002), 103 (9004, in April)
    assert v["mql_volume"] == 3
    assert v["mql_to_sql_rate"] == pytest.approx(2 / 3)
    assert v["mql_to_won_rate"] == pytest.approx(2 / 3)
    # decided: 101 103 accepted, 102 rejected
    assert v["sales_acceptance_rate"] == pytest.approx(2 / 3)
    assert v["sales_rejection_rate"] == pytest.approx(1 / 3)
    # no first-touch column in this export: the hand-off KPIs have no data, not 0
    for name in ("handoff_latency_median_hours", "sla_attainment", "untouched_leads"):
        assert v[name] is None, name
    assert v["stalled_leads"] == 0  # 101 and 103 won, 102 rejected
    # deals closed in March: 9001 lost, 9002 won, 9005 won (a company's deal, no contact);
    # Ann's lost deal is not overwritten by her won one
    assert v["win_rate"] == pytest.approx(2 / 3)
    assert k["win_rate"].sample_size == 3
    assert v["revenue_won"] == 12_800.0  # 12,000 + 800
    assert v["average_deal_size"] == 6_400.0
    # cycle: 9002 7 days (03-21 to 03-28), 9005 24 days -> median 15.5
    assert v["sales_cycle_median_days"] == pytest.approx(15.5)
    # open at the end of March: 9003 (3,000), created 03-12 00:00, 49 days before as-of
    assert (v["open_pipeline_count"], v["open_pipeline_value"]) == (1, 3000.0)
    assert v["deal_aging_median_days"] == pytest.approx(49.0)
    # flags: 9001 lists two contacts (Ann's), 9004 has a negative amount (Cy's)
    assert k["mql_volume"].flagged == 2  # 101 and 103 carry a flagged deal
    assert k["win_rate"].flagged == 1  # 9001; 9004 closed in April
    assert k["open_pipeline_count"].flagged == 0
    steps = [(s.stage, s.count, s.step_rate, s.cumulative_rate) for s in r.groups[0].funnel]
    assert steps == [
        ("MQL", 3, None, 1.0),
        ("SQL", 2, pytest.approx(2 / 3), pytest.approx(2 / 3)),
        ("Opportunity", 2, 1.0, pytest.approx(2 / 3)),
        ("Won", 2, 1.0, pytest.approx(2 / 3)),
    ]
    april = report(store, start=date(2025, 4, 1), end=date(2025, 4, 30)).overall()
    # 9004 won in April with a negative amount: it counts as it is, and says it is flagged
    assert (april["revenue_won"].value, april["revenue_won"].flagged) == (-200.0, 1)
    assert april["mql_volume"].value == 1 and april["mql_to_won_rate"].value is None  # 104


def test_the_same_store_and_kpis_in_any_order_and_any_split(
    store: Store, files: dict[str, Path]
) -> None:
    def state() -> tuple:
        kpis = [
            report(store, **MARCH).model_dump(exclude={"as_of"}),
            report(store, by=["owner", "month"]).model_dump(exclude={"as_of"}),
            report(store, by="channel").model_dump(exclude={"as_of"}),
        ]
        return funnel_content(store), kpis

    load(store, *files.values())
    reference = state()
    paths = list(files.values())
    runs: list[list[list[Path]]] = [[[p] for p in order] for order in itertools.permutations(paths)]
    # and in one run with one of the files in a second run, before or after
    contacts, deals_a, deals_b = paths
    runs += [[[contacts, deals_a], [deals_b]], [[deals_b], [deals_a, contacts]]]
    runs += [[[deals_b, contacts], [deals_a]], [[deals_a], [contacts, deals_b]]]
    for plan in runs:
        clear_funnel(store)
        for batch in plan:
            load(store, *batch)
        assert state() == reference, [[p.name for p in b] for b in plan]
    # and again: importing everything a second time changes nothing
    for p in paths:
        load(store, p)
    assert state() == reference


def test_reversed_rows_give_the_same_kpis(store: Store, files: dict[str, Path]) -> None:
    load(store, *files.values())
    before = report(store, **MARCH).model_dump(exclude={"as_of"})
    clear_funnel(store)
    files["deals_a"].write_text(DEALS_HEADER + "\n" + "\n".join(reversed(DEALS_A)) + "\n")
    load(store, *files.values())
    assert report(store, **MARCH).model_dump(exclude={"as_of"}) == before


def test_two_dimensions_and_caseless_channels(store: Store, files: dict[str, Path]) -> None:
    load(store, *files.values())
    g = {tuple(x.keys): x for x in report(store, by=["owner", "month"]).groups}
    assert set(g) == {("Sam", "2025-03"), ("Ria", "2025-03"), ("Ria", "2025-04")}
    sam = g[("Sam", "2025-03")]
    assert sam.group == "Sam / 2025-03"
    assert sam.kpis["mql_volume"].value == 2  # 101 102
    assert sam.kpis["win_rate"].value == pytest.approx(2 / 3)  # 9001 lost, 9002 9005 won
    assert g[("Ria", "2025-03")].kpis["open_pipeline_count"].value == 1  # 9003, created in March
    assert g[("Ria", "2025-04")].kpis["revenue_won"].value == -200.0  # 9004
    assert g[("Ria", "2025-04")].kpis["mql_volume"].value == 1  # 104
    # "Partner" and "PARTNER" are one channel, shown with the spelling that sorts first
    channels = {x.group: x.kpis for x in report(store, by="channel", **MARCH).groups}
    assert set(channels) == {"PARTNER", "organic_search", None}  # None: 9005, no contact
    assert channels[None]["win_rate"].value == 1.0 and channels[None]["mql_volume"].value == 0
    assert channels["PARTNER"]["mql_volume"].value == 2
    assert channels["PARTNER"]["mql_to_won_rate"].value == 1.0


# --- the CLI ---------------------------------------------------------------------------------


def run(*args: str):  # noqa: ANN201
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    cc.reset_store()
    return CliRunner().invoke(app, list(args))


def test_kpi_show_by_two_dimensions_and_against_another_window(
    store: Store, files: dict[str, Path]
) -> None:
    load(store, *files.values())
    res = run("kpi", "show", "--by", "owner", "--by", "month", "--source", "hubspot")
    assert res.exit_code == 0, res.output
    header = res.stdout.splitlines()[1].split()
    assert header[:3] == ["owner", "month", "MQLs"]
    assert any(line.split()[:3] == ["Sam", "2025-03", "2"] for line in res.stdout.splitlines())
    res = run(
        "kpi",
        "show",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31",
        "--compare-from",
        "2025-04-01",
        "--compare-to",
        "2025-04-30",
        "--json",
    )
    assert res.exit_code == 0, res.output
    changes = {c["kpi"]: c for c in json.loads(res.stdout)["changes"]["None"]}
    assert (changes["mql_volume"]["value"], changes["mql_volume"]["compared"]) == (3, 1)
    # (31 days against 30: what adds up over a window is compared per day, 3/31 against 1/30)
    volume = changes["mql_volume"]
    assert (volume["change"], volume["per_day"]) == (2, True)
    assert volume["change_pct"] == pytest.approx((3 / 31 - 1 / 30) / (1 / 30))
    assert changes["sla_attainment"]["per_day"] is False
    res = run(
        "kpi", "show", "--from", "2025-03-01", "--to", "2025-03-31",
        "--compare-from", "2025-04-01", "--compare-to", "2025-04-30",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1] == "compared with the window from 2025-04-01 to 2025-04-30"
    mqls = next(line for line in res.stdout.splitlines() if line.startswith("MQL volume"))
    assert mqls.split()[2:] == ["3", "1", "+2", "(+190%", "a", "day)"]
    res = run("kpi", "show", "--from", "2025-03-01", "--compare-from", "2025-04-01")
    assert res.exit_code == 2 and "give both --compare-from and --compare-to" in res.stderr
    res = run("kpi", "show", "--from", "2025-03-01", "--to", "2025-03-31")
    assert "Revenue won" in res.stdout and "12,800.00" in res.stdout
    assert "funnel stage" in res.stdout and "66.7%" in res.stdout


def test_kpi_show_of_an_unknown_source_names_the_sources(
    store: Store, files: dict[str, Path]
) -> None:
    load(store, files["contacts"])
    res = run("kpi", "show", "--source", "nope")
    assert res.exit_code == 1
    assert (
        res.stderr.strip()
        == "error: there is no funnel data from source “nope”; the sources are: hubspot"
    )


def test_funnel_status_and_flags_list_each_flag_with_its_line(
    store: Store, files: dict[str, Path]
) -> None:
    res = run("funnel", "import", *map(str, files.values()), "-p", "hubspot")
    assert res.exit_code == 0, res.output
    assert "2 records kept with a data-quality flag" in res.stdout
    res = run("funnel", "status")
    assert res.exit_code == 0, res.output
    assert "hubspot" in res.stdout and "deals" in res.stdout
    # the import, by whom (nobody named: no --as) and from where
    assert (
        "contacts.csv, deals_a.csv, deals_b.csv  9     9    0        0         0        2"
        in res.stdout
    )
    assert res.stdout.split("\n\n")[1].splitlines()[2].endswith("command line")
    status = json.loads(run("funnel", "status", "--json").stdout)
    listed = status["imports"]
    assert [
        (i["files"], i["rows"], i["new"], i["flagged"], i["by"], i["upload"]) for i in listed
    ] == [(["contacts.csv", "deals_a.csv", "deals_b.csv"], 9, 9, 2, None, None)]
    # the first few flags of each kind, and how many of each
    assert status["flags_by_kind"] == {"several_leads": 1, "negative_amount": 1}
    assert [f["line"] for f in status["flags"]] == [2, 2]
    words = " ".join(res.stdout.split())  # (a sentence wraps at the terminal's width, whole)
    assert (
        "deals_a.csv, line 2: Deal 9001 lists 2 leads; it counts for the first, 101 "
        "(also listed: 999)." in words
    )
    assert (
        "deals_b.csv, line 2: Deal 9004 has a negative amount (-200.00); it counts as it is."
        in words
    )
    listed = run("funnel", "flags")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0] == "hubspot: deals_a.csv, line 2 · several leads"
    assert "Deal 9004 has a negative amount (-200.00); it counts as it is." in " ".join(
        listed.stdout.split()
    )
    assert all(len(line) <= 100 for line in listed.stdout.splitlines())
    res = run("funnel", "flags", "--json")
    assert [(f["file"], f["line"], f["kind"]) for f in json.loads(res.stdout)] == [
        ("deals_a.csv", 2, "several_leads"),
        ("deals_b.csv", 2, "negative_amount"),
    ]


# --- migration 0007 ----------------------------------------------------------------------------


def test_0007_turns_funnel_records_into_leads_and_deals_and_back(
    database_url: str,
    store: Store,  # noqa: ARG001 - empties the store before and after
) -> None:
    engine = make_engine(database_url)
    try:
        runner.downgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO funnel_records (source, external_id, channel, owner, mql_at, "
                    "sql_at, opportunity_at, won_at, amount_cents) VALUES "
                    "('crm', 'a', 'web', 'ann', 100000, 200000, 300000, 400000, 12345), "
                    "('crm', 'b', 'ads', 'bob', 100000, NULL, NULL, NULL, NULL)"
                )
            )
        runner.upgrade(engine)
        with engine.connect() as conn:
            leads = conn.execute(
                text("SELECT external_id, channel, owner, mql_at, sql_at FROM leads ORDER BY 1")
            ).all()
            deals = conn.execute(
                text(
                    "SELECT external_id, lead_key, owner, opportunity_at, won_at, amount_cents, "
                    "listed FROM deals"
                )
            ).all()
        assert [tuple(r) for r in leads] == [
            ("a", "web", "ann", 100000, 200000),
            ("b", "ads", "bob", 100000, None),
        ]
        assert [tuple(r) for r in deals] == [("a", "a", "ann", 300000, 400000, 12345, True)]
        runner.downgrade(engine, "0006")
        with engine.connect() as conn:
            back = conn.execute(
                text(
                    "SELECT external_id, channel, mql_at, won_at, amount_cents FROM "
                    "funnel_records ORDER BY 1"
                )
            ).all()
        assert [tuple(r) for r in back] == [
            ("a", "web", 100000, 400000, 12345),
            ("b", "ads", 100000, None, None),
        ]
    finally:
        runner.upgrade(engine)
        engine.dispose()


def test_a_deal_moved_to_another_contact_leaves_the_first(
    store: Store, files: dict[str, Path]
) -> None:
    load(store, *files.values())
    moved = [row.replace(",Ria,103", ",Ria,104") for row in DEALS_A]  # 9003 now Di's
    files["deals_a"].write_text(DEALS_HEADER + "\n" + "\n".join(moved) + "\n")
    load(store, files["deals_a"])
    with store.unit_of_work() as s:
        from sqlalchemy import select

        from models.funnel.tables import Lead

        counts = dict(s.execute(select(Lead.external_id, Lead.deal_count)).all())
    assert counts == {"101": 2, "102": None, "103": 1, "104": 1}
    april = report(store, start=date(2025, 4, 1), end=date(2025, 4, 30)).overall()
    assert april["mql_to_won_rate"].value is None  # Di's deal is open
    assert report(store, **MARCH).overall()["open_pipeline_count"].value == 1  # still 9003
