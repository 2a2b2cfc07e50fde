"""The Maven "CRM + Sales Opportunities" sample (fictitious, 8,800 opportunities: deals with no
lead) imported with a mapping of its own, the agent's regional office read from its sales-teams
file (a lookup), and its KPIs against a stdlib computation over every row.

The data ships beside the project (../shared/data/maven_crm_sales_opportunities, see its
README); without it the test fails and says so.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models.db import Store
from models.funnel.kpis import compute_kpis
from tests.conftest import SHARED_DATA

FOLDER = SHARED_DATA / "maven_crm_sales_opportunities"
PIPELINE = FOLDER / "sales_pipeline.csv"
TEAMS = FOLDER / "sales_teams.csv"
AS_OF = datetime(2018, 1, 1, tzinfo=UTC)

MAPPING = """\
name: maven
source: maven
fields:
  deal_id: opportunity_id
  account: account
  stage: deal_stage
  owner: sales_agent
  team:
    column: sales_agent
    lookup: {{file: {teams}, key: sales_agent, value: regional_office, unmatched: {unmatched}}}
  opportunity_at: engage_date
  won_at: {{column: close_date, when: {{column: deal_stage, in: [won]}}}}
  lost_at: {{column: close_date, when: {{column: deal_stage, in: [lost]}}}}
  amount: close_value
"""


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    missing = [str(p) for p in (PIPELINE, TEAMS) if not p.is_file()]
    if missing:
        pytest.fail(
            "the Maven data set is missing: " + ", ".join(missing) + ". It ships in "
            "shared/data/maven_crm_sales_opportunities next to the project (see "
            "shared/data/README.md)."
        )
    with PIPELINE.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run(*args: str):  # noqa: ANN201
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    cc.reset_store()
    return CliRunner().invoke(app, list(args))


def test_maven_deals_with_teams_from_a_lookup_equal_a_stdlib_computation(
    store: Store, tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    mapping = tmp_path / "maven.yaml"
    mapping.write_text(MAPPING.format(teams=TEAMS, unmatched="blank"))
    res = run(
        "funnel",
        "import",
        str(PIPELINE),
        "-m",
        str(mapping),
        "--rejects-dir",
        str(tmp_path),
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["rows"], out["new"], out["rejected"]) == (8800, 8800, 0)

    with TEAMS.open(newline="", encoding="utf-8") as f:
        office = {r["sales_agent"]: r["regional_office"] for r in csv.DictReader(f)}
    won = [r for r in rows if r["deal_stage"] == "Won"]
    lost = [r for r in rows if r["deal_stage"] == "Lost"]
    open_ = [r for r in rows if r["deal_stage"] not in ("Won", "Lost")]

    def days(a: str, b: str) -> float:
        return (date.fromisoformat(b) - date.fromisoformat(a)).days

    with store.unit_of_work() as s:
        k = compute_kpis(s, source="maven", as_of=AS_OF).overall()
        teams = {g.group: g.kpis for g in compute_kpis(s, by="team", as_of=AS_OF).groups}
    assert k["win_rate"].value == pytest.approx(len(won) / (len(won) + len(lost)))
    assert (len(won), len(lost)) == (4238, 2473)
    assert k["revenue_won"].value == sum(int(r["close_value"]) for r in won)
    assert k["average_deal_size"].value == pytest.approx(
        sum(int(r["close_value"]) for r in won) / len(won)
    )
    assert k["sales_cycle_median_days"].value == pytest.approx(
        statistics.median(days(r["engage_date"], r["close_date"]) for r in won)
    )
    assert k["open_pipeline_count"].value == len(open_) == 2089
    assert k["open_pipeline_value"].value is None  # open deals carry no close value here
    ages = [days(r["engage_date"], "2018-01-01") for r in open_ if r["engage_date"]]
    assert k["deal_aging_median_days"].value == pytest.approx(statistics.median(ages))
    assert k["mql_volume"].value == 0 and k["mql_to_won_rate"].value is None  # no leads
    by_office = Counter(office.get(r["sales_agent"]) for r in won)
    assert {t: v["win_rate"].numerator for t, v in teams.items()} == by_office
    assert k["win_rate"].flagged == 0  # lost deals at 0 are ordinary, not flagged


def test_a_lookup_that_lacks_a_value_rejects_the_row_when_asked_and_names_the_file(
    store: Store, tmp_path: Path
) -> None:
    teams = tmp_path / "teams.csv"
    teams.write_text("sales_agent,manager,regional_office\nann,Mo,East\n")
    deals = tmp_path / "deals.csv"
    deals.write_text(
        "opportunity_id,sales_agent,account,deal_stage,engage_date,close_date,close_value\n"
        "d1,ANN,a,Won,2017-01-01,2017-02-01,10\n"
        "d2,bob,a,Won,2017-01-01,2017-02-01,10\n"
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(MAPPING.format(teams="teams.csv", unmatched="reject"))  # next to it
    res = run(
        "funnel", "import", str(deals), "-m", str(mapping), "--rejects-dir", str(tmp_path), "--json"
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["new"], out["rejected"]) == (1, 1)
    assert out["files"][0]["first_rejects"] == [
        {"line": 3, "reason": "team: 'bob' is not in teams.csv"}
    ]
    mapping.write_text(MAPPING.format(teams="nowhere.csv", unmatched="blank"))
    res = run("funnel", "import", str(deals), "-m", str(mapping))
    assert res.exit_code == 1
    assert (
        res.stderr.strip() == f"error: fields.team.lookup: {tmp_path / 'nowhere.csv'} is not a file"
    )
