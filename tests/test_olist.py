"""The public Olist marketing funnel (8,000 MQLs, 842 won deals), imported with the shipped
profile: the KPIs must equal figures computed here, independently, with the csv module.

The data ships beside the project (../shared/data/olist_marketing_funnel, see its README). If
it is missing the tests fail and say so: they are the proof that real data gives true numbers.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models.db import Store
from models.funnel.kpis import compute_kpis
from tests.conftest import SHARED_DATA
from tests.funnel_helpers import clear_funnel, funnel_content

FOLDER = SHARED_DATA / "olist_marketing_funnel"
MQL_FILE = FOLDER / "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = FOLDER / "olist_closed_deals_dataset.csv"


@pytest.fixture(scope="module")
def expected() -> dict:
    """The figures, from the files alone, over every row of both."""
    missing = [str(p) for p in (MQL_FILE, DEALS_FILE) if not p.is_file()]
    if missing:
        pytest.fail(
            "the Olist data set is missing: " + ", ".join(missing) + ". It ships in "
            "shared/data/olist_marketing_funnel next to the project (see shared/data/README.md)."
        )
    with MQL_FILE.open(newline="", encoding="utf-8") as f:
        mqls = {r["mql_id"]: r for r in csv.DictReader(f)}
    with DEALS_FILE.open(newline="", encoding="utf-8") as f:
        deals = list(csv.DictReader(f))
    odd = []
    for line, d in enumerate(deals, start=2):  # line 1 is the header; no multi-line cells
        if d["won_date"][:10] < mqls[d["mql_id"]]["first_contact_date"]:
            odd.append(line)  # won on an earlier day than its MQL: kept, and flagged

    def days(d: dict) -> float:
        start = datetime.fromisoformat(mqls[d["mql_id"]]["first_contact_date"])
        return (datetime.fromisoformat(d["won_date"]) - start).total_seconds() / 86400

    amounts = [
        round(float(d["declared_monthly_revenue"]) * 100)
        for d in deals
        if d["declared_monthly_revenue"].strip()
    ]
    zero = {
        line
        for line, d in enumerate(deals, start=2)
        if d["declared_monthly_revenue"].strip() and not float(d["declared_monthly_revenue"])
    }
    won_ids = {d["mql_id"] for d in deals}
    channel = Counter(r["origin"] or None for r in mqls.values())
    channel_won = Counter(mqls[k]["origin"] or None for k in won_ids)
    q1 = [k for k, r in mqls.items() if "2018-01-01" <= r["first_contact_date"] <= "2018-03-31"]
    return {
        "mqls": len(mqls),
        "deals": len(deals),
        "won_leads": len(won_ids),
        "odd_lines": odd,
        "flagged_deals": len(zero | set(odd)),  # the odd deal and the zero amounts
        "cycle_days": statistics.median(days(d) for d in deals),
        "revenue": sum(amounts) / 100,
        "with_amount": len(amounts),
        "channel": channel,
        "channel_won": channel_won,
        "cohort_month": Counter(r["first_contact_date"][:7] for r in mqls.values()),
        "won_month": Counter(d["won_date"][:7] for d in deals),
        "owner_won": Counter(d["sr_id"] for d in deals),
        "q1_mqls": len(q1),
        "q1_won": sum(1 for k in q1 if k in won_ids),
    }


def import_olist(tmp_path: Path, *files: Path) -> dict:
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    cc.reset_store()
    res = CliRunner().invoke(
        app,
        [
            "funnel",
            "import",
            *(str(f) for f in files or (DEALS_FILE, MQL_FILE)),
            "--profile",
            "olist",
            "--rejects-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_olist_kpis_equal_figures_computed_from_every_row(
    store: Store, tmp_path: Path, expected: dict
) -> None:
    out = import_olist(tmp_path)
    assert out["rows"] == expected["mqls"] + expected["deals"]
    assert (out["new"], out["rejected"]) == (expected["mqls"] + expected["deals"], 0)

    with store.unit_of_work() as s:
        k = compute_kpis(s, source="olist").overall()
        by_channel = {g.group: g.kpis for g in compute_kpis(s, by="channel").groups}
        by_month = {g.group: g.kpis for g in compute_kpis(s, by="month").groups}
        by_owner = {g.group: g.kpis for g in compute_kpis(s, by="owner").groups}
        q1 = compute_kpis(s, start=date(2018, 1, 1), end=date(2018, 3, 31)).overall()

    assert k["mql_volume"].value == expected["mqls"] == 8000
    assert k["mql_to_won_rate"].value == pytest.approx(expected["won_leads"] / expected["mqls"])
    assert k["win_rate"].value == 1.0  # the data set holds won deals only
    assert k["win_rate"].sample_size == expected["deals"] == 842
    assert k["sales_cycle_median_days"].value == pytest.approx(expected["cycle_days"], abs=1e-9)
    assert k["revenue_won"].value == pytest.approx(expected["revenue"], abs=0.005)
    assert k["average_deal_size"].value == pytest.approx(
        expected["revenue"] / expected["with_amount"]
    )
    # the flagged deals: the one won before its first contact, and the zero amounts
    assert k["win_rate"].flagged == expected["flagged_deals"]
    # stages Olist does not record are "no data", not 0%
    for name in ("mql_to_sql_rate", "sla_attainment", "handoff_latency_median_hours"):
        assert k[name].value is None, name
    assert k["stalled_leads"].value is None  # no open deal, no touch: nothing can stall
    assert [st.stage for st in compute_funnel(store)] == ["MQL", "Won"]

    assert {g: v["mql_volume"].value for g, v in by_channel.items()} == expected["channel"]
    for g, v in by_channel.items():
        rate = expected["channel_won"][g] / expected["channel"][g]
        assert v["mql_to_won_rate"].value == pytest.approx(rate), g
    cohort = {m: v["mql_volume"].value for m, v in by_month.items() if v["mql_volume"].value}
    assert cohort == expected["cohort_month"]
    closed = {m: v["win_rate"].numerator for m, v in by_month.items() if v["win_rate"].numerator}
    assert closed == expected["won_month"]
    owners = {o: v["win_rate"].numerator for o, v in by_owner.items() if v["win_rate"].numerator}
    assert owners == expected["owner_won"]
    assert q1["mql_volume"].value == expected["q1_mqls"]
    assert q1["mql_to_won_rate"].numerator == expected["q1_won"]


def compute_funnel(store: Store) -> list:
    with store.unit_of_work() as s:
        return compute_kpis(s, source="olist").groups[0].funnel


def test_olist_reimport_changes_nothing_and_the_odd_deal_is_flagged_not_dropped(
    store: Store, tmp_path: Path, expected: dict
) -> None:
    first = import_olist(tmp_path)
    again = import_olist(tmp_path)
    assert (again["new"], again["changed"], again["rejected"]) == (0, 0, 0)
    assert again["unchanged"] == expected["mqls"] + expected["deals"]
    assert not list(tmp_path.glob("*.rejects.csv"))  # nothing unreadable
    for out in (first, again):
        odd = [f for f in out["first_flags"] if f["kind"] == "out_of_order"]
        assert [f["line"] for f in odd] == expected["odd_lines"]
        assert odd[0]["file"] == DEALS_FILE.name
        assert odd[0]["sentence"].endswith("the win is 2 days before its lead's MQL date.")


def test_olist_in_any_order_or_in_two_runs_gives_the_same_store(
    store: Store, tmp_path: Path, expected: dict
) -> None:
    import_olist(tmp_path, MQL_FILE)
    import_olist(tmp_path, DEALS_FILE)
    two_runs = funnel_content(store)
    with store.unit_of_work() as s:
        kpis = compute_kpis(s, by=["channel", "month"]).model_dump(exclude={"as_of"})
    clear_funnel(store)
    import_olist(tmp_path, DEALS_FILE, MQL_FILE)
    assert funnel_content(store) == two_runs
    with store.unit_of_work() as s:
        assert compute_kpis(s, by=["channel", "month"]).model_dump(exclude={"as_of"}) == kpis
