"""Every KPI on small hand-built funnel data with answers worked out by hand (in the comments).

The same tests run on SQLite and on PostgreSQL (``make test-postgres``): the expected values
are exact, so passing on both is the proof that both backends give the same numbers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models.db import Store
from models.errors import InvalidInput
from models.funnel.kpis import KPI_NAMES, KPIS, compute_kpis, format_value
from models.funnel.links import refresh_links
from models.funnel.rollups import refresh as refresh_rollups
from models.funnel.tables import Deal, Lead


def at(day: str, hours: float = 0) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=hours)


AS_OF = at("2024-04-30")
MARCH = {"start": date(2024, 3, 1), "end": date(2024, 3, 31)}

# name: fields. Times are UTC; the SLA is 24 h; "as of" is 2024-04-30 00:00.
RECORDS = {
    # won in March after an opportunity; touched after 2 h (within SLA)
    "A": dict(
        channel="paid",
        owner="ann",
        team="sales",
        mql_at=at("2024-03-01"),
        first_touch_at=at("2024-03-01", 2),
        sql_at=at("2024-03-02"),
        opportunity_at=at("2024-03-05"),
        won_at=at("2024-03-20"),
        amount_cents=100000,
    ),
    # touched after 30 h (SLA missed), then rejected: bad fit
    "B": dict(
        channel="paid",
        owner="bob",
        team="sales",
        mql_at=at("2024-03-01", 10),
        first_touch_at=at("2024-03-01", 40),
        rejected_at=at("2024-03-03"),
        rejection_reason="bad fit",
    ),
    # touched after 10 h, accepted, opportunity, lost in March
    "C": dict(
        channel="organic",
        owner="ann",
        team="sales",
        mql_at=at("2024-03-02"),
        first_touch_at=at("2024-03-02", 10),
        sql_at=at("2024-03-03"),
        opportunity_at=at("2024-03-06"),
        lost_at=at("2024-03-25"),
    ),
    # never touched: untouched, and due (its SLA deadline passed long ago)
    "D": dict(channel="organic", mql_at=at("2024-03-03")),
    # touched after 5 h, accepted on 03-05, nothing since: stalled (30+ days before as-of)
    "E": dict(
        channel="email",
        owner="cy",
        team="marketing",
        mql_at=at("2024-03-04"),
        first_touch_at=at("2024-03-04", 5),
        sql_at=at("2024-03-05"),
    ),
    # touched after 50 h, rejected: bad fit
    "F": dict(
        channel="email",
        mql_at=at("2024-03-05"),
        first_touch_at=at("2024-03-05", 50),
        rejected_at=at("2024-03-08"),
        rejection_reason="bad fit",
    ),
    # touched after 1 h, rejected the same day: no budget; no channel
    "G": dict(
        mql_at=at("2024-03-06"),
        first_touch_at=at("2024-03-06", 1),
        rejected_at=at("2024-03-06", 3),
        rejection_reason="no budget",
    ),
    # a deal without an MQL: opportunity 02-20, won 03-10 (19 days, 2024 is a leap year)
    "I": dict(opportunity_at=at("2024-02-20"), won_at=at("2024-03-10"), amount_cents=50050),
    # MQL in February (outside the March cohort), won in March 27 days after its opportunity
    "J": dict(
        channel="paid",
        owner="ann",
        team="sales",
        mql_at=at("2024-02-15"),
        first_touch_at=at("2024-02-15", 3),
        sql_at=at("2024-02-16"),
        opportunity_at=at("2024-02-17"),
        won_at=at("2024-03-15"),
        amount_cents=25000,
    ),
    # April: K touched within SLA; H untouched but its SLA deadline is after the as-of time
    "K": dict(channel="paid", mql_at=at("2024-04-10"), first_touch_at=at("2024-04-10", 3)),
    "H": dict(channel="paid", mql_at=at("2024-04-29", 23)),
}


DEAL_FIELDS = ("opportunity_at", "won_at", "lost_at", "amount_cents")


def load(store: Store, records: dict[str, dict], source: str = "t") -> None:
    """Each record is a lead (when it has a lead's field) and a deal of that lead keyed by the
    same id (when it has a deal's date or amount); a record with only a deal's fields is a deal
    with no lead, as migration 0007 turns old records into leads and deals."""
    leads, deals = [], []
    for key, fields in records.items():
        lead = {k: v for k, v in fields.items() if k not in DEAL_FIELDS}
        deal = {k: v for k, v in fields.items() if k in DEAL_FIELDS}
        has_lead = any(v is not None for k, v in lead.items() if k not in ("owner", "team"))
        if has_lead:
            leads.append({"source": source, "external_id": key, **lead})
        if deal:
            deals.append(
                {
                    "source": source,
                    "external_id": key,
                    "lead_key": key if has_lead else None,
                    "listed": True,
                    **({} if has_lead else {k: lead.get(k) for k in ("owner", "team")}),
                    **deal,
                }
            )
    with store.unit_of_work() as s:
        conn = s.connection()
        for table, rows in ((Lead.__table__, leads), (Deal.__table__, deals)):
            if rows:
                keys = {k for r in rows for k in r}
                conn.execute(table.insert(), [{k: r.get(k) for k in keys} for r in rows])
        refresh_links(s, source)  # as an import does
        refresh_rollups(s, source)


@pytest.fixture
def funnel(store: Store) -> Store:
    load(store, RECORDS)
    return store


def kpis(store: Store, **kw):  # noqa: ANN003, ANN201
    kw.setdefault("as_of", AS_OF)
    with store.unit_of_work() as s:
        return compute_kpis(s, **kw)


def values(report) -> dict[str, float | None]:  # noqa: ANN001
    return {k: v.value for k, v in report.overall().items()}


def test_every_kpi_over_march(funnel: Store) -> None:
    r = kpis(funnel, **MARCH)
    k = r.overall()
    # the cohort: A B C D E F G (MQL in March)
    assert k["mql_volume"].value == 7
    assert k["mql_to_sql_rate"].value == pytest.approx(3 / 7)  # A C E
    assert (k["mql_to_sql_rate"].numerator, k["mql_to_sql_rate"].sample_size) == (3, 7)
    assert k["mql_to_won_rate"].value == pytest.approx(1 / 7)  # A
    # decided: A B C E F G; rejected (and not accepted): B F G
    assert k["sales_acceptance_rate"].value == pytest.approx(0.5)
    assert k["sales_rejection_rate"].value == pytest.approx(0.5)
    assert k["sales_rejection_rate"].sample_size == 6
    assert k["sales_rejection_rate"].detail == {
        "top_reasons": [{"reason": "bad fit", "count": 2}, {"reason": "no budget", "count": 1}]
    }
    # latencies in hours, sorted: 1 2 5 10 30 50 -> median 7.5, p90 = 30 + 0.5 * 20 = 40
    assert k["handoff_latency_median_hours"].value == pytest.approx(7.5)
    assert k["handoff_latency_p90_hours"].value == pytest.approx(40.0)
    assert k["handoff_latency_median_hours"].sample_size == 6
    # within 24 h: A C E G; due: the 6 touched + D (untouched, past its deadline)
    assert k["sla_attainment"].value == pytest.approx(4 / 7)
    assert (k["sla_attainment"].numerator, k["sla_attainment"].sample_size) == (4, 7)
    assert k["untouched_leads"].value == 1  # D
    assert k["stalled_leads"].value == 1  # E
    # closed in March: won A I J, lost C
    assert k["win_rate"].value == pytest.approx(3 / 4)
    assert k["win_rate"].sample_size == 4
    # cycle days: A 15 (from its opportunity), I 19, J 27 -> median 19
    assert k["sales_cycle_median_days"].value == pytest.approx(19.0)
    assert k["sales_cycle_median_days"].sample_size == 3
    assert k["revenue_won"].value == pytest.approx(1750.50)
    assert k["average_deal_size"].value == pytest.approx(1750.50 / 3)
    # every deal is closed: an empty pipeline, truly zero, with no value and no age
    assert k["open_pipeline_count"].value == 0
    assert k["open_pipeline_value"].value is None
    assert k["deal_aging_median_days"].value is None
    assert all(v.flagged == 0 for v in k.values())
    assert set(k) == set(KPI_NAMES)
    # the stage funnel of the cohort: SQL A C E; a deal A C; won A
    steps = [(st.stage, st.count, st.step_rate, st.cumulative_rate) for st in r.groups[0].funnel]
    assert steps == [
        ("MQL", 7, None, 1.0),
        ("SQL", 3, pytest.approx(3 / 7), pytest.approx(3 / 7)),
        ("Opportunity", 2, pytest.approx(2 / 3), pytest.approx(2 / 7)),
        ("Won", 1, pytest.approx(1 / 2), pytest.approx(1 / 7)),
    ]


def test_by_channel(funnel: Store) -> None:
    r = kpis(funnel, by="channel", **MARCH)
    g = {grp.group: grp.kpis for grp in r.groups}
    assert list(g) == ["email", "organic", "paid", None]  # sorted, no value last
    assert g["paid"]["mql_volume"].value == 2  # A B
    assert g["paid"]["handoff_latency_median_hours"].value == pytest.approx(16.0)  # 2 and 30
    assert g["paid"]["win_rate"].value == 1.0  # A and J won in March
    assert g["paid"]["revenue_won"].value == pytest.approx(1250.0)
    assert g["organic"]["win_rate"].value == 0.0  # C lost
    assert g["organic"]["untouched_leads"].value == 1  # D
    assert g["organic"]["mql_to_sql_rate"].value == pytest.approx(0.5)
    assert g["email"]["stalled_leads"].value == 1  # E
    assert g["email"]["sales_rejection_rate"].value == pytest.approx(0.5)  # E accepted, F not
    # no channel: G in the cohort, I closed
    assert g[None]["mql_volume"].value == 1
    assert g[None]["win_rate"].value == 1.0
    assert g[None]["sales_cycle_median_days"].value == pytest.approx(19.0)


def test_by_owner_and_team(funnel: Store) -> None:
    owners = {g.group: g.kpis for g in kpis(funnel, by="owner", **MARCH).groups}
    assert owners["ann"]["mql_volume"].value == 2  # A C
    assert owners["ann"]["win_rate"].value == pytest.approx(2 / 3)  # A J won, C lost
    teams = {g.group: g.kpis for g in kpis(funnel, by="team", **MARCH).groups}
    assert teams["sales"]["mql_volume"].value == 3  # A B C
    assert teams["marketing"]["mql_to_sql_rate"].value == 1.0  # E


def test_by_month_groups_the_cohort_by_mql_month_and_deals_by_close_month(
    funnel: Store,
) -> None:
    months = {g.group: g.kpis for g in kpis(funnel, by="month").groups}
    assert list(months) == ["2024-02", "2024-03", "2024-04"]
    assert months["2024-02"]["mql_volume"].value == 1  # J
    assert months["2024-02"]["win_rate"].value is None  # nothing closed in February
    assert months["2024-03"]["mql_volume"].value == 7
    assert months["2024-03"]["win_rate"].value == pytest.approx(3 / 4)
    assert months["2024-04"]["mql_volume"].value == 2  # K H


def test_sla_counts_an_untouched_lead_only_once_its_deadline_passed(funnel: Store) -> None:
    april = {"start": date(2024, 4, 1), "end": date(2024, 4, 30)}
    # as of 04-30 00:00, H (MQL 04-29 23:00) still has 23 h: only K is due, and it made it
    assert values(kpis(funnel, **april))["sla_attainment"] == 1.0
    later = kpis(funnel, as_of=at("2024-05-02"), **april).overall()["sla_attainment"]
    assert (later.value, later.numerator, later.sample_size) == (0.5, 1, 2)
    # a longer SLA changes who made it: with 48 h, B (30 h) joins A C E G in March
    assert values(kpis(funnel, sla_hours=48, **MARCH))["sla_attainment"] == pytest.approx(5 / 7)


def test_stalled_depends_on_the_as_of_time_and_stall_days(funnel: Store) -> None:
    # E's last stage is 03-05: not stalled 20 days later, stalled 40 days later
    assert values(kpis(funnel, as_of=at("2024-03-25"), **MARCH))["stalled_leads"] == 0
    assert values(kpis(funnel, as_of=at("2024-04-14"), **MARCH))["stalled_leads"] == 1
    assert values(kpis(funnel, stall_days=90, **MARCH))["stalled_leads"] == 0


def test_a_stage_the_source_never_records_is_no_data_not_zero(store: Store) -> None:
    load(store, {"x1": {"mql_at": at("2024-03-01")}, "x2": {"mql_at": at("2024-03-02")}}, "u")
    k = values(kpis(store, **MARCH))
    assert k["mql_volume"] == 2
    for name in (
        "mql_to_sql_rate",
        "mql_to_won_rate",
        "sales_acceptance_rate",
        "sla_attainment",
        "handoff_latency_median_hours",
        "untouched_leads",
        "stalled_leads",
        "win_rate",
        "sales_cycle_median_days",
    ):
        assert k[name] is None, name
    assert k["revenue_won"] is None  # nothing won: no revenue figure, not 0.00
    assert k["average_deal_size"] is None
    assert k["open_pipeline_count"] is None  # the source has no deal at all


def test_won_deals_without_amounts_have_no_revenue_data(store: Store) -> None:
    load(store, {"w": {"mql_at": at("2024-03-01"), "won_at": at("2024-03-09")}})
    k = values(kpis(store, **MARCH))
    assert k["revenue_won"] is None
    assert k["mql_to_won_rate"] == 1.0


def test_source_filter_and_empty_store(funnel: Store) -> None:
    load(funnel, {"z": {"mql_at": at("2024-03-01"), "first_touch_at": at("2024-03-01", 1)}}, "u")
    assert values(kpis(funnel, source="u", **MARCH))["mql_volume"] == 1
    assert values(kpis(funnel, **MARCH))["mql_volume"] == 8
    with pytest.raises(InvalidInput, match=r"no funnel data from source “nobody”.*: t, u"):
        kpis(funnel, source="nobody", **MARCH)


def test_window_days_are_inclusive_and_utc(funnel: Store) -> None:
    # A and B have their MQL on 03-01 (00:00 and 10:00 UTC)
    one_day = values(kpis(funnel, start=date(2024, 3, 1), end=date(2024, 3, 1)))
    assert one_day["mql_volume"] == 2


def test_bad_arguments_are_refused(funnel: Store) -> None:
    with pytest.raises(InvalidInput, match="ends .* before it starts"):
        kpis(funnel, start=date(2024, 3, 2), end=date(2024, 3, 1))
    with pytest.raises(InvalidInput, match="cannot group by 'weekday'"):
        kpis(funnel, by="weekday")
    with pytest.raises(InvalidInput, match="SLA"):
        kpis(funnel, sla_hours=0)


def test_each_kpi_is_defined_once_with_a_formula() -> None:
    assert len(KPIS) == len(KPI_NAMES) == 17
    for d in KPIS.values():
        assert d.formula and d.title and d.sample
        assert d.unit in ("count", "rate", "hours", "days", "money")
        assert d.better in ("higher", "lower")
    assert format_value("sla_attainment", 0.725) == "72.5%"
    assert format_value("handoff_latency_median_hours", 5.25) == "5.2 h"
    assert format_value("revenue_won", 1234.5) == "1,234.50"
    assert format_value("win_rate", None) == "no data"


# --- the CLI ---------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    return app


def run(*args: str):  # noqa: ANN201
    cc.reset_store()
    return CliRunner().invoke(cli(), list(args))


def test_kpi_show_json_is_the_same_numbers(funnel: Store) -> None:
    res = run("kpi", "show", "--from", "2024-03-01", "--to", "2024-03-31", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    k = data["groups"][0]["kpis"]
    assert k["mql_volume"]["value"] == 7
    assert k["win_rate"]["value"] == pytest.approx(0.75)
    assert data["window_start"] == "2024-03-01" and data["sla_hours"] == 24


def test_kpi_show_table_and_by(funnel: Store) -> None:
    res = run("kpi", "show", "--from", "2024-03-01", "--to", "2024-03-31", "--sla-hours", "48")
    assert res.exit_code == 0, res.output
    assert "SLA 48 h" in res.stdout
    assert "SLA attainment" in res.stdout and "71.4%" in res.stdout  # 5 of 7
    assert "top: bad fit (2), no budget (1)" in res.stdout
    res = run("kpi", "show", "--by", "channel", "--from", "2024-03-01", "--to", "2024-03-31")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1].split()[0] == "channel"
    assert any(line.startswith("paid ") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "weekday"], "'weekday' is not one of"),
        (["--from", "March 1"], "Invalid value for '--from'"),
        (["--from", "2024-03-02", "--to", "2024-03-01"], "before it starts"),
        (["--cycle", "999"], "no cycle with id 999"),
    ],
)
def test_kpi_show_bad_input_is_one_line_and_nonzero(
    funnel: Store, args: list[str], message: str
) -> None:
    res = run("kpi", "show", *args)
    assert res.exit_code in (1, 2)
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_kpi_list_documents_every_formula(store: Store) -> None:
    res = run("kpi", "list", "--json")
    assert res.exit_code == 0
    assert [d["name"] for d in json.loads(res.stdout)] == list(KPI_NAMES)


def test_a_touch_recorded_before_its_mql_counts_as_no_wait(store: Store) -> None:
    """Same-day stages in the wrong order pass the import (exports mix dates and times); their
    negative latency counts as 0 hours, it does not pull the median below zero."""
    day = "2024-03-04"
    load(
        store,
        {
            "n1": {"mql_at": at(day, 10), "first_touch_at": at(day, 7)},  # -3 h
            "n2": {"mql_at": at(day, 10), "first_touch_at": at(day, 9)},  # -1 h
            "n3": {"mql_at": at(day, 10), "first_touch_at": at(day, 15)},  # 5 h
        },
    )
    k = kpis(store, **MARCH).overall()
    assert k["handoff_latency_median_hours"].value == 0.0
    assert k["handoff_latency_p90_hours"].value == pytest.approx(4.0)  # 0 + 0.8 * 5
    assert k["sla_attainment"].value == 1.0
