"""Evidence in the cycle: playbook KPI rules, KPI-driven gaps in Identify, measurable targets on
action items, and the Recap measurement against the baseline (with survey disagreement)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from aligncycle import cli_common as cc
from aligncycle import cli_funnel
from models import phases
from models.db import Store
from models.enums import GapDecision, GapSource, Phase, Severity
from models.errors import Forbidden, InvalidInput, PlaybookError
from models.funnel import baseline, measure, targets
from models.funnel import kpis as kpis_module
from models.funnel.tables import CycleKpiSnapshot, FunnelRecord
from models.phases import numbers as kpi_checks
from models.playbook import KpiCheck, parse_playbook
from models.schemas import (
    ActionItemCreate,
    CheckInCreate,
    CycleCreate,
    GapDecide,
    SurveyRespond,
)
from models.services import actions, cycles, playbooks, recap
from models.services.common import person_by_email
from models.tables import ChecklistItem, Cycle, Gap
from tests.conftest import db_snapshot

PLAYBOOK = """
name: kpi-test
version: 1
title: KPI-driven hand-off cycle
settings: {handoff_sla_hours: 24, cycle_length_days: 30}
kpi_rules:
  - key: sla_low
    kpi: sla_attainment
    below: 80%
    title: Hand-off SLA attainment below 80%
    category: hand_off
    root_cause: process
    severity: high
    min_sample: 10
  - key: latency_high
    kpi: handoff_latency_median_hours
    above: 48
    title: Median hand-off latency above two days
    category: hand_off
    root_cause: adoption
    min_sample: 10
phases:
  identify:
    questions:
      - key: rejections
        text: Does sales reject many of marketing's leads?
        required: false
        owner: {role: point_person, team: sales}
        gap: {title: Sales rejects too many MQLs, category: lead_definition,
              root_cause: communication}
        kpi: {kpi: sales_rejection_rate, above: 0.3, min_sample: 10}
  plan: {}
  execute: {}
  recap: {}
"""
PLAIN = """
name: plain
version: 1
title: No KPI rules
settings: {handoff_sla_hours: 24, cycle_length_days: 30}
phases: {identify: {}, plan: {}, execute: {}, recap: {}}
"""
START, END = date(2024, 3, 1), date(2024, 3, 30)  # baseline: 30 days, 01-31..02-29
AFTER = date(2024, 4, 15)
AS_OF = datetime(2024, 4, 15, tzinfo=UTC)


def load_playbook(s, text: str):  # noqa: ANN001, ANN201
    return playbooks.register(
        s, parse_playbook(text), hashlib.sha256(text.encode()).hexdigest(), "test.yaml"
    )[0]


def leads(store: Store, prefix: str, day: date, fast: int, slow: int, rejected: int) -> None:
    """``fast`` MQLs touched after 2 h, ``slow`` after 30 h; the first ``rejected`` of them
    rejected by sales, the others accepted."""
    rows = []
    for i in range(fast + slow):
        mql = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(minutes=i)
        touch = mql + timedelta(hours=2 if i < fast else 30)
        decided = touch + timedelta(hours=1)
        rej = i < rejected
        rows.append(
            {
                "source": "crm",
                "external_id": f"{prefix}{i}",
                "mql_at": mql,
                "first_touch_at": touch,
                "sql_at": None if rej else decided,
                "rejected_at": decided if rej else None,
                "rejection_reason": "bad fit" if rej else None,
            }
        )
    with store.engine.begin() as conn:
        conn.execute(FunnelRecord.__table__.insert(), rows)


def start(s, pb: str = "kpi-test") -> Cycle:  # noqa: ANN001
    sam = person_by_email(s, "sam@acme.test")
    return phases.start_cycle(
        s,
        CycleCreate(
            playbook=pb,
            title="March",
            period_start=START,
            period_end=END,
            point_persons=["mia@acme.test"],
        ),
        sam,
        today=START,
    )


@pytest.fixture
def cycle_id(org: Store) -> int:
    """A cycle of the KPI playbook, in Identify; the baseline (February): 20 MQLs, half of them
    touched within the SLA, 8 rejected."""
    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=8)
    with org.unit_of_work() as s:
        load_playbook(s, PLAYBOOK)
        return start(s).id


def cli() -> typer.Typer:
    app = typer.Typer(cls=cc.ErrorMappingGroup, pretty_exceptions_enable=False)
    cli_funnel.register(app)
    return app


def run(*args: str):  # noqa: ANN201
    cc.reset_store()
    return CliRunner().invoke(cli(), list(args))


# --- the playbook schema ------------------------------------------------------------------------


def test_kpi_rules_and_question_checks_parse() -> None:
    spec = parse_playbook(PLAYBOOK)
    sla, latency = spec.kpi_rules
    assert (sla.kpi, sla.below, sla.direction, sla.severity) == (
        "sla_attainment",
        0.8,
        "below",
        Severity.HIGH,
    )
    assert (latency.above, latency.threshold) == (48, 48)
    q = spec.question(Phase.IDENTIFY, "rejections")
    assert q.kpi.kpi == "sales_rejection_rate" and q.kpi.above == 0.3
    assert spec.settings.effective_baseline_days == 30  # as long as the cycle by default


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("kpi: sla_attainment", "kpi: sla"), "kpi_rules[0].kpi: unknown KPI 'sla'"),
        (("below: 80%", "below: 80"), "is a rate: write the threshold as a fraction"),
        (("below: 80%", "below: 80%\n    above: 90%"), "exactly one threshold"),
        (("below: 80%", "below: lots%"), "not a percentage"),
        (("key: latency_high", "key: sla_low"), "duplicate kpi rule key 'sla_low'"),
        (
            (
                "        gap: {title: Sales rejects too many MQLs, category: lead_definition,\n"
                "              root_cause: communication}\n",
                "",
            ),
            "needs the 'gap' it records",
        ),
        (("min_sample: 10\n  - key", "min_sample: 0\n  - key"), "kpi_rules[0].min_sample"),
    ],
)
def test_bad_kpi_rules_are_refused_with_the_field(change: tuple[str, str], message: str) -> None:
    text = PLAYBOOK.replace(*change)
    assert text != PLAYBOOK
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "kpi-test.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("kpi-test.yaml: ")


def test_a_check_needs_data_and_a_large_enough_sample() -> None:
    check = KpiCheck(kpi="sla_attainment", below="80%", min_sample=10)
    assert check.breached(0.5, 10)
    assert not check.breached(0.5, 9)  # too small a sample to judge
    assert not check.breached(None, 100)  # no data
    assert not check.breached(0.8, 100)  # at the threshold is not below it
    assert KpiCheck(kpi="stalled_leads", above=5, min_sample=1).breached(6, 1)


# --- Identify: KPI-driven gaps ------------------------------------------------------------------


def test_failed_checks_become_gaps_with_their_evidence(org: Store, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        cycle = s.get(Cycle, cycle_id)
        found = kpi_checks.evaluate_gap_rules(s, cycle, as_of=AS_OF)
        by_key = {g.key: g for g in found}
    # SLA 50% < 80%: a gap; rejections 40% > 30%: the question's gap; latency 16 h: none
    assert set(by_key) == {"metric:sla_low", "checklist:rejections"}
    sla = by_key["metric:sla_low"]
    assert (sla.title, sla.severity, sla.source) == (
        "Hand-off SLA attainment below 80%",
        Severity.HIGH,
        GapSource.METRIC,
    )
    assert sla.source_ref == "kpi:sla_attainment" and sla.decision is GapDecision.OPEN
    assert sla.evidence == (
        "SLA attainment was 50.0% from 31 Jan 2024 to 29 Feb 2024 (hand-off SLA 24 h), from 20 "
        "MQLs due: under the threshold of 80.0%."
    )
    rej = by_key["checklist:rejections"]
    assert rej.title == "Sales rejects too many MQLs"
    assert "was 40.0%" in rej.evidence and "over the threshold of 30.0%" in rej.evidence
    assert "from 20 MQLs sales accepted or rejected" in rej.evidence
    with org.unit_of_work() as s:
        item = s.scalar(select(ChecklistItem).where(ChecklistItem.key == "rejections"))
        assert item.evidence == rej.evidence  # what the person answering sees


def test_re_running_records_nothing_twice_and_the_baseline_is_frozen(
    org: Store, cycle_id: int
) -> None:
    with org.unit_of_work() as s:
        kpi_checks.evaluate_gap_rules(s, s.get(Cycle, cycle_id), as_of=AS_OF)
    before = db_snapshot(org)
    # more February data arrives later: the cycle's baseline does not move
    leads(org, "late", date(2024, 2, 20), fast=30, slow=0, rejected=0)
    after_import = db_snapshot(org)
    with org.unit_of_work() as s:
        again = kpi_checks.evaluate_gap_rules(s, s.get(Cycle, cycle_id), as_of=AS_OF)
        assert len(again) == 2
        assert s.scalar(select(func.count()).select_from(Gap)) == 2
        snap = baseline.snapshot_baseline(s, s.get(Cycle, cycle_id))
        assert (snap["sla_attainment"].value, snap["mql_volume"].value) == (0.5, 20)
    assert db_snapshot(org) == after_import
    assert after_import["gaps"] == before["gaps"]


def test_metric_gaps_are_decided_like_any_other(org: Store, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        found = kpi_checks.evaluate_gap_rules(s, s.get(Cycle, cycle_id), as_of=AS_OF)
        lee = person_by_email(s, "lee@acme.test")
        sla = next(g for g in found if g.key == "metric:sla_low")
        rej = next(g for g in found if g.key != "metric:sla_low")
        phases.decide_gap(s, sla, GapDecide(decision="accepted"), lee)
        phases.decide_gap(s, rej, GapDecide(decision="rejected", reason="one bad list"), lee)
        assert (sla.decision, rej.decision) == (GapDecision.ACCEPTED, GapDecision.REJECTED)


def test_no_data_and_small_samples_raise_no_gap(org: Store) -> None:
    leads(org, "few", date(2024, 2, 10), fast=1, slow=8, rejected=0)  # 9 < min_sample 10
    with org.unit_of_work() as s:
        load_playbook(s, PLAYBOOK)
        cycle = start(s)
        assert kpi_checks.evaluate_gap_rules(s, cycle, as_of=AS_OF) == []
        item = s.scalar(select(ChecklistItem).where(ChecklistItem.key == "rejections"))
        assert "from 9 MQLs sales accepted or rejected" in item.evidence
        assert item.evidence.endswith("too few to judge (at least 10 are needed).")


def test_kpi_gaps_command(org: Store, cycle_id: int) -> None:
    before = db_snapshot(org)
    res = run("kpi", "gaps", str(cycle_id), "--as", "sid@acme.test")
    assert res.exit_code == 1 and "only leads, managers and the cycle's point persons" in res.stderr
    assert db_snapshot(org) == before
    res = run("kpi", "gaps", str(cycle_id), "--as", "lee@acme.test", "--json")
    assert res.exit_code == 0, res.output
    assert {g["key"] for g in json.loads(res.stdout)} == {
        "metric:sla_low",
        "checklist:rejections",
    }
    res = run("kpi", "baseline", str(cycle_id))
    assert res.exit_code == 0 and "2024-01-31..2024-02-29" in res.stdout
    assert "SLA attainment" in res.stdout and "50.0%" in res.stdout


# --- Plan: targets --------------------------------------------------------------------------------


def to_plan(s, cycle: Cycle) -> int:  # noqa: ANN001
    """Decide the metric gaps, move to Plan, add an action on the SLA gap (owner Sam)."""
    lee = person_by_email(s, "lee@acme.test")
    found = kpi_checks.evaluate_gap_rules(s, cycle, as_of=AS_OF)
    for g in found:
        decision = "accepted" if g.key == "metric:sla_low" else "deferred"
        phases.decide_gap(s, g, GapDecide(decision=decision), lee)
    cycles.advance_cycle(s, cycle, person_by_email(s, "sam@acme.test"), today=START)
    sla_gap = next(g for g in found if g.key == "metric:sla_low")
    item, _ = actions.add_action(
        s,
        cycle,
        ActionItemCreate(
            gap_id=sla_gap.id,
            title="Route MQLs to one queue",
            owner="sam@acme.test",
            counterpart="mia@acme.test",
            due_date=date(2024, 3, 20),
        ),
        lee,
    )
    return item.id


def test_targets_are_set_in_plan_by_the_owner_and_must_improve(org: Store, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        cycle = s.get(Cycle, cycle_id)
        sam = person_by_email(s, "sam@acme.test")
        action_id = to_plan(s, cycle)
        item = actions.get_action(s, action_id)
        with pytest.raises(Forbidden, match="not yours"):
            targets.set_target(
                s,
                item,
                targets.TargetSet(kpi="sla_attainment", target=0.9),
                person_by_email(s, "sid@acme.test"),
            )
        t = targets.set_target(s, item, targets.TargetSet(kpi="sla_attainment", target="90%"), sam)
        # the baseline defaults to the cycle's; the window to its period
        assert (t.baseline, t.target, t.window_start, t.window_end) == (0.5, 0.9, START, END)
    before = db_snapshot(org)
    for args, message in [
        (
            ["--kpi", "sla_attainment", "--target", "40%"],
            "not an improvement: it must be above the baseline 50.0%",
        ),
        (["--kpi", "sla_attainment", "--target", "90"], "give the target as a fraction"),
        (["--kpi", "happiness", "--target", "1"], "unknown KPI 'happiness'"),
        (
            [
                "--kpi",
                "sla_attainment",
                "--target",
                "0.9",
                "--window-start",
                "2024-03-10",
                "--window-end",
                "2024-03-01",
            ],
            "ends (2024-03-01) before it starts",
        ),
        (["--kpi", "handoff_latency_median_hours", "--target", "20"], "must be below"),
    ]:
        res = run("kpi", "target", str(action_id), *args, "--as", "sam@acme.test")
        assert res.exit_code in (1, 2), res.output
        assert message in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert db_snapshot(org) == before
    res = run(
        "kpi",
        "target",
        str(action_id),
        "--kpi",
        "handoff_latency_median_hours",
        "--target",
        "4",
        "--as",
        "lee@acme.test",
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["kpi"], out["baseline"], out["target"]) == ("handoff_latency_median_hours", 16, 4)


def test_targets_are_not_set_outside_plan_and_execute(org: Store, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        cycle = s.get(Cycle, cycle_id)
        action_id = to_plan(s, cycle)
        cycle.phase = Phase.IDENTIFY  # as if the item had been planned too early
        with pytest.raises(InvalidInput, match="targets are set in Plan or Execute"):
            targets.set_target(
                s,
                actions.get_action(s, action_id),
                targets.TargetSet(kpi="sla_attainment", target=0.9),
                person_by_email(s, "sam@acme.test"),
            )


# --- Recap: measured change -----------------------------------------------------------------------


def to_recap(s, cycle: Cycle, scores: list[tuple[str, int]]) -> None:  # noqa: ANN001
    sam = person_by_email(s, "sam@acme.test")
    if cycle.phase is Phase.IDENTIFY:
        cycles.advance_cycle(s, cycle, sam, today=START)
    for item in actions.list_actions(s, cycle_id=cycle.id):
        actions.add_checkin(s, item, CheckInCreate(status="done"), sam, today=date(2024, 3, 25))
    cycles.advance_cycle(s, cycle, sam, today=START)  # plan -> execute
    cycles.advance_cycle(s, cycle, sam, today=AFTER)  # execute -> recap
    for email, score in scores:
        recap.respond(s, cycle, SurveyRespond(score=score), person_by_email(s, email))


def test_recap_measures_kpis_and_targets_and_flags_a_gloomy_team(org: Store, cycle_id: int) -> None:
    # March: 19 of 20 within the SLA, 2 rejected
    leads(org, "mar", date(2024, 3, 12), fast=19, slow=1, rejected=2)
    with org.unit_of_work() as s:
        cycle = s.get(Cycle, cycle_id)
        action_id = to_plan(s, cycle)
        targets.set_target(
            s,
            actions.get_action(s, action_id),
            targets.TargetSet(kpi="sla_attainment", target=0.9),
            person_by_email(s, "sam@acme.test"),
        )
        to_recap(
            s,
            cycle,
            [
                ("sam@acme.test", 2),
                ("lee@acme.test", 2),
                ("sid@acme.test", 1),
                ("mia@acme.test", 1),
                ("lou@acme.test", 2),
                ("meg@acme.test", 2),
            ],
        )
        m = measure.measure_recap(s, cycle, today=AFTER, as_of=AS_OF)
        stored = s.scalar(
            select(func.count())
            .select_from(CycleKpiSnapshot)
            .where(CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == "recap")
        )
    assert m.baseline_window == (date(2024, 1, 31), date(2024, 2, 29))
    assert m.measure_window == (START, END)
    k = {c.kpi: c for c in m.kpis}
    sla = k["sla_attainment"]
    assert (sla.baseline, sla.current, sla.verdict) == (0.5, 0.95, "improved")
    assert sla.change == pytest.approx(0.45)
    rej = k["sales_rejection_rate"]  # 40% -> 10%: z = -2.19, it moved
    assert (rej.baseline, rej.current, rej.verdict) == (0.4, 0.1, "improved")
    assert k["mql_volume"].verdict == "unchanged"  # 20 and 20 in windows of the same length
    # 16 h -> 2 h median latency
    assert (
        k["handoff_latency_median_hours"].current,
        k["handoff_latency_median_hours"].verdict,
    ) == (2.0, "improved")
    assert k["win_rate"].verdict == "no data"
    # accepted leads that never became opportunities: 18 stalled against 12 in the baseline
    assert (k["stalled_leads"].baseline, k["stalled_leads"].current) == (12, 18)
    assert m.worsened == ["stalled_leads"]
    assert m.measured == "improved"  # four KPIs improved, one worsened
    (t,) = m.targets
    assert (t.action_item_id, t.baseline, t.target, t.current, t.achieved) == (
        action_id,
        0.5,
        0.9,
        0.95,
        True,
    )
    assert t.progress == pytest.approx(1.125)
    assert m.sentiment.label == "negative" and m.sentiment.mean == pytest.approx(1.67)
    (d,) = m.disagreements
    assert d.startswith(
        "The numbers improved (improved: MQL→SQL rate 60.0% → 90.0% (+30.0 points);"
    )
    assert "SLA attainment 50.0% → 95.0% (+45.0 points)" in d
    assert "| worsened: Stalled leads 12 → 18 (+6))" in d  # a count: no decimals
    assert "but the team does not feel it (survey mean 1.67 of 5 from 6 answers)" in d
    assert stored == len(kpis_module.KPIS)  # the recap measurement is kept with the cycle


@pytest.mark.parametrize(
    ("kpi", "before", "after", "verdict"),
    [
        # what adds up over a window compares per day: 60 MQLs in 60 days is 30 in 30
        ("mql_volume", 30.0, 60.0, "unchanged"),
        ("revenue_won", 30_000.0, 30_000.0, "worsened"),  # half as much a day
        # a ratio and the state at the window's end compare as they are
        ("average_deal_size", 12_000.0, 12_000.0, "unchanged"),
        ("open_pipeline_count", 80.0, 80.0, "unchanged"),
        ("open_pipeline_value", 1_000_000.0, 1_500_000.0, "improved"),
    ],
)
def test_the_recap_compares_windows_of_different_lengths_by_what_each_kpi_is(
    kpi: str, before: float, after: float, verdict: str
) -> None:
    """A baseline of 30 days against a cycle of 60: MQLs and revenue per day, the average deal
    size and the open pipeline as they are (they were judged per day too: the same average
    deal size over twice the days read as halved, "worsened")."""
    base = kpis_module.KpiValue(kpi=kpi, value=before, sample_size=40)
    cur = kpis_module.KpiValue(kpi=kpi, value=after, sample_size=40)
    assert measure.compare(kpi, base, cur, base_days=30, cur_days=60).verdict == verdict


def test_recap_flags_a_team_that_feels_better_while_the_numbers_got_worse(org: Store) -> None:
    leads(org, "feb", date(2024, 2, 10), fast=19, slow=1, rejected=0)
    leads(org, "mar", date(2024, 3, 12), fast=8, slow=12, rejected=0)
    with org.unit_of_work() as s:
        load_playbook(s, PLAIN)
        cycle = start(s, "plain")
        to_recap(s, cycle, [("sam@acme.test", 5), ("lee@acme.test", 4), ("sid@acme.test", 5)])
        cycle_id = cycle.id
    res = run("kpi", "recap", str(cycle_id), "--json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    k = {c["kpi"]: c for c in m["kpis"]}
    assert k["sla_attainment"]["verdict"] == "worsened"  # 95% -> 40%
    assert m["measured"] == "worsened"
    assert m["sentiment"]["label"] == "positive"
    feel = "The team feels it improved (survey mean 4.67 of 5 from 3 answers)"
    assert any(
        d.startswith(f"{feel}, but the numbers did not: worsened") for d in m["disagreements"]
    )
    res = run("kpi", "recap", str(cycle_id))
    assert res.exit_code == 0
    assert "disagreement: The team feels it improved" in res.stdout
    assert "SLA attainment" in res.stdout and "worsened" in res.stdout


def test_no_disagreement_when_feelings_and_numbers_agree(org: Store) -> None:
    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=0)
    leads(org, "mar", date(2024, 3, 12), fast=20, slow=0, rejected=0)
    with org.unit_of_work() as s:
        load_playbook(s, PLAIN)
        cycle = start(s, "plain")
        to_recap(s, cycle, [("sam@acme.test", 4), ("lee@acme.test", 5), ("sid@acme.test", 4)])
        m = measure.measure_recap(s, cycle, today=AFTER, as_of=AS_OF)
    assert (m.measured, m.sentiment.label, m.disagreements) == ("improved", "positive", [])


def test_a_recap_says_which_source_was_imported_before_its_days_ended(org: Store) -> None:
    """A source whose newest import is days before the end of the measured days: the numbers
    lack what happened in it since, and the recap says so (a source imported after it, not)."""
    from models.funnel.tables import FunnelImport, FunnelRecord

    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=0)
    leads(org, "mar", date(2024, 3, 12), fast=20, slow=0, rejected=0)
    with org.unit_of_work() as s:
        s.add(
            FunnelRecord(source="forms", external_id="f1", mql_at=datetime(2024, 3, 5, tzinfo=UTC))
        )
        for source, day in (("crm", date(2024, 3, 20)), ("forms", date(2024, 4, 2))):
            at = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
            s.add(FunnelImport(source=source, mapping="m", files=[], started_at=at, finished_at=at))
        load_playbook(s, PLAIN)
        cycle = start(s, "plain")
        to_recap(s, cycle, [("sam@acme.test", 4), ("lee@acme.test", 5), ("sid@acme.test", 4)])
        m = measure.measure_recap(s, cycle, today=AFTER, as_of=AS_OF)
    said = (
        "“crm” was last imported on 20 Mar 2024: what happened in it from then to 30 Mar 2024 "
        "is not in these numbers. Import its export again before judging the cycle by them."
    )
    assert m.incomplete == [said]
    assert m.summary[1] == said


def test_while_a_cycle_runs_a_source_is_late_only_past_the_teams_cadence(
    org: Store, cycle_id: int
) -> None:
    """Measured while the cycle runs (its days end today): a source imported five days ago is
    not late for a weekly team; one imported thirteen days ago is."""
    from models.funnel.tables import FunnelImport, FunnelRecord

    with org.unit_of_work() as s:
        for source, day in (("crm", date(2024, 3, 5)), ("forms", date(2024, 2, 26))):
            at = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
            s.add(FunnelRecord(source=source, external_id="x", mql_at=at))
            s.add(FunnelImport(source=source, mapping="m", files=[], started_at=at, finished_at=at))
    with org.unit_of_work() as s:
        m = measure.measure_recap(
            s, s.get(Cycle, cycle_id), today=date(2024, 3, 10), read_only=True
        )
    assert [x.split(":")[0] for x in m.incomplete] == ["“forms” was last imported on 26 Feb 2024"]


def test_an_amount_keeps_the_currency_it_was_measured_in(org: Store) -> None:
    """The baseline's revenue was measured in EUR; the source's amounts are in USD by the
    recap (a lead corrected it, or the CRM changed currency): the recap says each amount in
    the currency it was measured in, and does not call 1,000 EUR to 3,000 USD a rise."""
    from models.funnel import currency
    from models.funnel.tables import Deal
    from models.services.recap_views import funnel_snapshots

    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=0)
    leads(org, "mar", date(2024, 3, 12), fast=20, slow=0, rejected=0)
    with org.unit_of_work() as s:
        for key, day, cents in (
            ("d1", date(2024, 2, 12), 100_000),
            ("d2", date(2024, 3, 14), 300_000),
        ):
            won = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            s.add(
                Deal(
                    source="crm",
                    external_id=key,
                    stage="won",
                    won_at=won,
                    amount_cents=cents,
                    listed=True,
                )
            )
        s.flush()
        currency.set_currency(s, "crm", "EUR", None)
        load_playbook(s, PLAIN)
        cycle = start(s, "plain")
        baseline.snapshot_baseline(s, cycle, as_of=AS_OF)
        currency.set_currency(s, "crm", "USD", None)
        to_recap(s, cycle, [("sam@acme.test", 4), ("lee@acme.test", 5), ("sid@acme.test", 4)])
        m = measure.measure_recap(s, cycle, today=AFTER, as_of=AS_OF)
        shown = {k.kpi: k for k in funnel_snapshots(s, cycle)}
    revenue = next(c for c in m.kpis if c.kpi == "revenue_won")
    assert (revenue.baseline, revenue.current, revenue.change) == (1000.0, 3000.0, None)
    assert revenue.verdict == "no data"
    assert revenue.how == "not compared: the amounts were in EUR before and are in USD now"
    assert "revenue_won" not in m.improved + m.worsened
    won = shown["revenue_won"]
    assert (won.before_shown, won.after_shown) == ("1,000.00 EUR", "3,000.00 USD")
    assert shown["mql_volume"].before_shown == "20"  # (no currency for a count)


def test_a_survey_too_small_to_show_is_not_read_as_a_feeling(org: Store) -> None:
    """The survey hides its scores until each team has three answers: no sentiment, no
    disagreement, and nothing that would give a score away."""
    leads(org, "feb", date(2024, 2, 10), fast=19, slow=1, rejected=0)
    leads(org, "mar", date(2024, 3, 12), fast=8, slow=12, rejected=0)
    with org.unit_of_work() as s:
        load_playbook(s, PLAIN)
        cycle = start(s, "plain")
        to_recap(s, cycle, [("sam@acme.test", 5), ("mia@acme.test", 5)])
        m = measure.measure_recap(s, cycle, today=AFTER, as_of=AS_OF)
    assert m.measured == "worsened"
    assert (m.sentiment.label, m.sentiment.mean, m.sentiment.responses) == (
        "too few answers",
        None,
        2,
    )
    assert m.disagreements == []
    assert m.summary[-1] == "Survey: too few answers."


def test_measuring_before_recap_stores_nothing(org: Store, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        baseline.snapshot_baseline(s, s.get(Cycle, cycle_id))
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        m = measure.measure_recap(s, s.get(Cycle, cycle_id), today=date(2024, 3, 10))
    assert m.measure_window == (START, date(2024, 3, 10))  # progress so far
    assert db_snapshot(org) == before


# --- the numbers at the moments they arrive -------------------------------------------------------


def test_a_cycle_started_on_shared_funnel_data_holds_its_kpi_gaps_from_the_start(
    org: Store,
) -> None:
    """Whichever face starts the cycle (web, API, CLI without flows), its gap analysis and the
    Identify gate hold the KPI gaps at once: a point person can decide them before advancing."""
    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=8)
    with org.unit_of_work() as s:
        load_playbook(s, PLAYBOOK)
        cycle = start(s)
        keys = set(s.scalars(select(Gap.key).where(Gap.cycle_id == cycle.id)))
        assert keys == {"metric:sla_low", "checklist:rejections"}
        ready = cycles.readiness(s, cycle, START)
        assert any("2 gaps not decided" in b for b in ready.blockers), ready.blockers


def test_a_cycle_started_before_any_data_gets_its_kpi_gaps_when_the_data_arrives(
    org: Store,
) -> None:
    with org.unit_of_work() as s:
        load_playbook(s, PLAYBOOK)
        cid = start(s).id
    with org.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Gap)) == 0
        assert s.scalar(select(func.count()).select_from(CycleKpiSnapshot)) == 0  # none frozen
    leads(org, "feb", date(2024, 2, 10), fast=10, slow=10, rejected=8)
    with org.unit_of_work() as s:
        assert kpi_checks.record_numbers_after_import(s) == {cid: 2}
    with org.unit_of_work() as s:
        assert kpi_checks.record_numbers_after_import(s) == {}  # nothing twice
