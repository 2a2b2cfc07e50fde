"""The Prefect flows of the four phases, the phase outbox and its dispatcher, the cycle flow,
and ``aligncycle demo``, under one Prefect server for the whole session.

The server runs on a Prefect database in a temporary folder, copied from a migrated template
kept in pytest's cache (the first session builds it: ~20 s; later ones start in a few seconds).
Nothing touches the user's ~/.prefect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import flows  # noqa: F401 - Prefect's quiet defaults before Prefect loads
from models import phases
from models.breach_tables import SlaBreach
from models.enums import Phase
from models.errors import TransitionRefused
from models.funnel.tables import Lead
from models.phases import identify
from models.schemas import (
    CheckInCreate,
    ChecklistAnswer,
    CycleCreate,
    GapDecide,
)
from models.services import actions, checklist, cycles, gaps, reports
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, Cycle, Gap
from tests.conftest import PROJECT, db_snapshot

pytestmark = pytest.mark.prefect

D0 = date.today()


@pytest.fixture
def env(prefect_server: str, org, data_dir: Path):  # noqa: ANN001, ANN201
    """The org's store, a Prefect server, a temporary data dir."""
    return org


# --- helpers ---------------------------------------------------------------------------------


def who(s, email: str):  # noqa: ANN001, ANN201
    return person_by_email(s, email)


def start_cycle(store) -> int:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = phases.start_cycle(
            s,
            CycleCreate(
                playbook="sales-marketing-handoff",
                title="Q1",
                point_persons=["mia@acme.test"],
                period_start=D0,
                period_end=D0 + timedelta(days=42),
            ),
            who(s, "sam@acme.test"),
            today=D0,
        )
        s.flush()
        return cycle.id


CALM = {
    "handoff_interruptions": "no",
    "inconsistent_process": "no",
    "missed_conversions": "no",
    "shared_lead_definitions": "yes",
    "handoff_sla_agreed": "yes",
    "process_documented": "yes",
    "shared_data": "yes",
    "tools_adopted": "yes",
    "shared_kpis": "yes",
    "regular_cadence": "yes",
}


def answer_identify(store, cid: int, **overrides: str) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        for key, value in (CALM | overrides).items():
            item = checklist.find_item(s, cycle, f"identify.{key}")
            phases.answer(s, item, ChecklistAnswer(answer=value), who(s, "sam@acme.test"))


def answer_required(store, cid: int, phase: Phase) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cid)
        for item in checklist.list_items(s, cycle, phase):
            if item.required and item.answer is None:
                value = "yes" if item.answer_kind.value == "yes_no" else "agreed"
                phases.answer(s, item, ChecklistAnswer(answer=value), who(s, "sam@acme.test"))


def accept_gaps(store, cid: int) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        for gap in gaps.list_gaps(s, cycles.get_cycle(s, cid)):
            phases.decide_gap(s, gap, GapDecide(decision="accepted"), who(s, "lee@acme.test"))


def advance(store, cid: int, today: date = D0, by: str = "sam@acme.test") -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        cycles.advance_cycle(s, cycles.get_cycle(s, cid), who(s, by), today=today)


def phase_of(store, cid: int) -> Phase:  # noqa: ANN001
    with store.unit_of_work() as s:
        return cycles.get_cycle(s, cid).phase


def count(store, model, **where) -> int:  # noqa: ANN001, ANN003
    with store.unit_of_work() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.scalar(stmt)


def task_runs(flow_run_id: Any, expected: int, timeout: float = 90) -> list[Any]:
    """The flow run's task runs (the server records them from events: wait for them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(runs) >= expected or time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


def artifact(key: str) -> Any:
    from prefect.artifacts import Artifact

    return Artifact.get(key)


# --- the phase flows --------------------------------------------------------------------------


def test_identify_flow_records_the_gap_analysis_once(env) -> None:  # noqa: ANN001
    from flows.identify import identify_flow

    cid = start_cycle(env)
    answer_identify(env, cid, handoff_interruptions="yes", regular_cadence="no")
    state = identify_flow(cid, today=D0, return_state=True)
    assert state.is_completed()
    report = state.result()
    assert {g.title for g in report.gaps} == {
        "Avoidable interruptions in the MQL-to-SQL hand-off",
        "No regular cross-team meeting or digest",
    }
    with env.unit_of_work() as s:
        keys = set(s.scalars(select(Gap.key).where(Gap.cycle_id == cid)))
    assert keys == {"checklist:handoff_interruptions", "checklist:regular_cadence"}

    # Every checklist item is a task run named after its question, tagged phase and owner.
    # (and three steps: check phase, record gaps from answers, gap analysis)
    runs = task_runs(state.state_details.flow_run_id, expected=12 + 3)
    assert len(runs) == 12 + 3
    items = {r.name.split(":")[0]: r for r in runs if r.name.startswith("identify.")}
    assert len(items) == 12
    sla = items["identify.handoff_interruptions"]
    assert sla.name.startswith("identify.handoff_interruptions: Are there avoidable interruptions")
    assert set(sla.tags) == {"phase:identify", "owner:mia@acme.test"}
    assert "owner:max@acme.test" in items["identify.regular_cadence"].tags
    # Answered questions end Completed; the others say who still owes an answer.
    assert {k for k, r in items.items() if r.state.name == "Completed"} == {
        f"identify.{k}" for k in CALM
    }
    waiting = items["identify.campaign_surprises"].state
    assert (waiting.type.value, waiting.name) == ("COMPLETED", "AwaitingAnswer")
    assert waiting.message.startswith(
        "waiting for mia@acme.test to answer an optional question: Does sales learn about"
    )
    assert items["identify.followup_content_missing"].state.name == "AwaitingAnswer"

    summary = artifact(f"cycle-{cid}-identify")
    assert summary.type == "markdown" and "2 gaps" in summary.data
    table = artifact(f"cycle-{cid}-gaps")
    assert table.type == "table" and "No regular cross-team meeting or digest" in table.data

    # Run again (a retry, a schedule): nothing in the store changes.
    before = db_snapshot(env)
    again = identify_flow(cid, today=D0)
    assert db_snapshot(env) == before
    assert again.new_gaps == [] and len(again.gaps) == 2


def test_a_phase_flow_on_a_cycle_not_in_its_phase_fails_with_the_domains_message(env) -> None:  # noqa: ANN001
    from flows.execute import execute_flow
    from flows.plan import plan_flow

    cid = start_cycle(env)
    before = db_snapshot(env)
    state = plan_flow(cid, return_state=True)
    assert state.is_failed()
    with pytest.raises(TransitionRefused) as err:
        state.result()
    assert str(err.value).startswith("the Plan phase runs on a cycle in Plan; “")
    assert str(err.value).endswith(
        "” is in Identify (a point person moves it on first, from Next step on the cycle's page)"
    )
    assert err.value.next_step == ("advance", cid)
    with pytest.raises(TransitionRefused, match="the Execute phase runs on a cycle in Execute"):
        execute_flow(cid)
    assert db_snapshot(env) == before  # nothing written by either


def test_plan_execute_and_recap_flows_write_once_and_carry_over(env, data_dir) -> None:  # noqa: ANN001
    from flows.execute import execute_flow
    from flows.plan import plan_flow
    from flows.recap import recap_flow

    cid = start_cycle(env)
    answer_identify(env, cid, handoff_sla_agreed="no", regular_cadence="no")
    with env.unit_of_work() as s:
        identify.raise_gaps(s, cycles.get_cycle(s, cid))
    accept_gaps(env, cid)
    advance(env, cid)

    # Plan: one proposal per accepted gap and template; owners where one person fits.
    report = plan_flow(cid, today=D0 + timedelta(days=1))
    assert len(report.actions) == 4 and len(report.proposed) == 4
    assert {a.owner for a in report.actions} == {"lee@acme.test", "mia@acme.test", "sam@acme.test"}
    assert "Plan — cycle" in artifact(f"cycle-{cid}-plan").data
    before = db_snapshot(env)
    assert plan_flow(cid, today=D0 + timedelta(days=1)).proposed == []
    assert db_snapshot(env) == before

    answer_required(env, cid, Phase.PLAN)
    advance(env, cid, today=D0 + timedelta(days=2))

    # Execute: one check-in per open item per day, however often the pass runs.
    with env.unit_of_work() as s:
        first = actions.list_actions(s, cycle_id=cid)[0]
        actions.add_checkin(s, first, CheckInCreate(status="done"), who(s, "lee@acme.test"), D0)
    # ... and the late leads as of the pass's date: a lead of the cycle's second day nobody
    # has touched (the clock's today is before it: only the pass's date finds it late), in a
    # CRM that records touches (L0 was touched within the hour).
    mql = datetime.combine(D0 + timedelta(days=1), datetime.min.time(), UTC)
    with env.engine.begin() as conn:
        conn.execute(
            Lead.__table__.insert(),
            [
                {
                    "source": "crm",
                    "external_id": "L1",
                    "mql_at": mql,
                    "first_touch_at": None,
                    "channel": "web",
                },
                {
                    "source": "crm",
                    "external_id": "L0",
                    "mql_at": mql,
                    "first_touch_at": mql + timedelta(hours=1),
                    "channel": "web",
                },
            ],
        )
    day = D0 + timedelta(days=9)
    report = execute_flow(cid, today=day)
    assert (report.done, report.open, report.checkins_written) == (1, 3, 3)
    assert count(env, CheckIn, key=f"execute:{day.isoformat()}") == 3
    with env.unit_of_work() as s:
        late = s.scalars(select(SlaBreach).where(SlaBreach.cycle_id == cid)).one()
        assert (late.lead, late.waited_hours) == ("L1", 8 * 24.0)
    assert artifact(f"cycle-{cid}-progress").data == pytest.approx(25.0)
    before = db_snapshot(env)
    assert execute_flow(cid, today=day).checkins_written == 0
    assert db_snapshot(env) == before

    # Recap: after the period, the flow drafts the retrospective and keeps the report in the
    # store (not on the worker's disk), where the web app serves it.
    answer_required(env, cid, Phase.EXECUTE)
    advance(env, cid, today=D0 + timedelta(days=43))
    result = recap_flow(cid, today=D0 + timedelta(days=43))
    assert result.url == f"/cycles/{cid}/report.md"
    assert not (data_dir / "reports").exists()
    with env.unit_of_work() as s:
        stored = reports.recap_report(s, None, cid)
        text = stored.markdown
        assert (stored.on_date, stored.headline) == (
            D0 + timedelta(days=43),
            result.report.headline,
        )
    assert text.startswith(f"# Recap — cycle {cid}: Q1")
    assert "## Late" in text
    assert "Retrospective: a draft made from the cycle's facts, not yet saved by a point" in text
    assert len(result.report.actions_late) == 3
    assert artifact(f"cycle-{cid}-recap").data == text

    # A follow-up cycle started from it gets the open items, once.
    with env.unit_of_work() as s:
        follow = phases.start_cycle(
            s,
            CycleCreate(playbook="sales-marketing-handoff", title="Q2", previous_cycle_id=cid),
            who(s, "sam@acme.test"),
            today=D0 + timedelta(days=44),
        )
        s.flush()
        follow_id = follow.id
        s.add(ActionItem(cycle_id=cid, title="Found late"))  # still open in the old cycle
    assert count(env, ActionItem, cycle_id=follow_id) == 3
    again = recap_flow(cid, today=D0 + timedelta(days=44))
    assert again.report.carried_over == 1 and again.report.follow_up_cycles == [follow_id]
    assert count(env, ActionItem, cycle_id=follow_id) == 4
    with env.unit_of_work() as s:  # the second run replaced the report, one per cycle
        assert reports.recap_report(s, None, cid).on_date == D0 + timedelta(days=44)


# --- the decision between phases: the store, the outbox, the dispatcher ----------------------


def flow_run(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def dispatch_rows(store, cid: int) -> list[Any]:  # noqa: ANN001
    from models.phases import dispatch as outbox

    with store.unit_of_work() as s:
        return outbox.for_cycle(s, cid)


def test_a_move_asks_for_its_phase_flow_and_the_dispatcher_starts_it_once(env) -> None:  # noqa: ANN001
    """Whoever moves a cycle (here the domain call every face makes), the move writes the
    outbox row with it; the dispatcher starts the flow (in process: no deployment on this
    server), tagged with the cycle and the phase, and a second dispatch starts nothing."""
    from flows.dispatch import dispatch

    cid = start_cycle(env)
    answer_identify(env, cid)
    with env.unit_of_work() as s:
        phases.advance(s, cycles.get_cycle(s, cid), who(s, "sam@acme.test"), today=D0)
    (row,) = dispatch_rows(env, cid)
    assert (row.key, row.phase, row.status) == (f"cycle:{cid}:plan", Phase.PLAN, "pending")

    (done,) = dispatch("deployment", db=env, cycle_id=cid)
    assert done.via == "in-process" and done.error is None and done.flow_run_id
    (row,) = dispatch_rows(env, cid)
    assert row.status == "started" and row.flow_run_id == done.flow_run_id
    run = flow_run(row.flow_run_id)
    assert run.name == f"plan-cycle-{cid}" and run.state.is_completed()
    assert {"aligncycle", f"cycle:{cid}", "phase:plan"} <= set(run.tags)
    assert dispatch("deployment", db=env, cycle_id=cid) == []


def test_a_deployment_run_is_created_once_however_often_it_is_dispatched(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """With the phase's deployment on the server: the move's run is created (not waited
    for); a Prefect outage leaves the row pending with the reason; a dispatcher that died
    after creating the run (its row taken again) gets the same run back: one run per move."""
    from prefect.client.orchestration import get_client

    import flows.dispatch as fd
    from flows.plan import plan_flow
    from models.phases import dispatch as outbox

    cid = start_cycle(env)
    answer_identify(env, cid)
    with env.unit_of_work() as s:
        phases.advance(s, cycles.get_cycle(s, cid), who(s, "sam@acme.test"), today=D0)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(plan_flow)
        deployment_id = client.create_deployment(flow_id=flow_id, name="plan", paused=True)
    try:
        real = fd.start_deployment_run

        def outage(row: Any) -> str:
            raise ConnectionError("All connection attempts failed")

        monkeypatch.setattr(fd, "start_deployment_run", outage)
        (down,) = fd.dispatch("deployment", db=env, cycle_id=cid)
        assert down.error == "ConnectionError: All connection attempts failed"
        (row,) = dispatch_rows(env, cid)
        assert (row.status, row.attempts, row.error) == ("pending", 1, down.error)

        monkeypatch.setattr(fd, "start_deployment_run", real)
        (up,) = fd.dispatch("deployment", db=env, cycle_id=cid)
        assert up.via == "deployment" and up.error is None
        run = flow_run(up.flow_run_id)
        assert run.deployment_id == deployment_id and run.name == f"plan-cycle-{cid}"
        assert {f"cycle:{cid}", "phase:plan"} <= set(run.tags)
        assert run.parameters == {"cycle_id": cid, "today": D0.isoformat()}

        # The dispatcher died before its mark: the row is taken again once its claim is stale.
        with env.unit_of_work() as s:
            s.get(outbox.PhaseDispatch, row.id).status = outbox.DispatchStatus.CLAIMED
        (again,) = fd.dispatch("deployment", db=env, cycle_id=cid, stale_after=timedelta(0))
        assert again.flow_run_id == up.flow_run_id
        with get_client(sync_client=True) as client:
            from prefect.client.schemas.filters import (
                FlowRunFilter,
                FlowRunFilterDeploymentId,
            )

            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
                )
            )
        assert [r.id for r in runs] == [run.id]

        # The run's process died (Prefect's zombie automation marks it Crashed): the next
        # dispatch of every cycle puts the row back and starts a new run, once.
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)
        assert fd.restart_crashed(env) == [f"cycle:{cid}:plan"]
        assert fd.restart_crashed(env) == []  # pending again: nothing more to put back
        (row,) = dispatch_rows(env, cid)
        assert (row.status, row.restarts) == ("pending", 1)
        assert row.error == f"flow run plan-cycle-{cid} crashed: no heartbeat"
        (second,) = fd.dispatch("deployment", db=env, cycle_id=cid)
        assert second.flow_run_id != up.flow_run_id and second.error is None
        (row,) = dispatch_rows(env, cid)
        assert (row.status, row.restarts, row.flow_run_id) == ("started", 1, second.flow_run_id)
    finally:
        with get_client(sync_client=True) as client:  # the other tests run phase flows here
            client.delete_deployment(deployment_id)


def test_no_process_waits_for_a_decision(env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The cycle flow runs the phase the cycle is in and ends; it says where to decide: the
    cycle's page in the web app."""
    from flows.cycle import cycle_flow

    monkeypatch.setenv("ALIGNCYCLE_BASE_URL", "https://align.acme.test/")
    cid = start_cycle(env)
    answer_identify(env, cid, regular_cadence="no")
    state = cycle_flow(cid, today=D0, return_state=True)
    assert state.is_completed() and state.result().gaps
    text = artifact(f"cycle-{cid}-decision").data
    assert f"on [the cycle's page](https://align.acme.test/cycles/{cid}), signed in" in text
    assert f"cycle advance {cid}" in text
    assert phase_of(env, cid) is Phase.IDENTIFY  # nobody decided: nothing moved


def test_advancing_runs_the_next_phase_here_without_its_deployment(env) -> None:  # noqa: ANN001
    from aligncycle import orchestration

    cid = start_cycle(env)
    answer_identify(env, cid, regular_cadence="no")
    # The answer's gap is recorded with the answer, before anyone advances.
    assert count(env, Gap, cycle_id=cid) == 1
    # The gate holds (the gap is not decided), and the refusal writes nothing: not even what
    # refreshing Identify derives first (here the KPI baseline, which the Identify flow records).
    before = db_snapshot(env)
    with pytest.raises(TransitionRefused, match="1 gap not decided"):
        orchestration.advance(cid, "sam@acme.test", today=D0)
    assert db_snapshot(env) == before
    accept_gaps(env, cid)
    result = orchestration.advance(cid, "sam@acme.test", today=D0)
    assert result.via == "in-process", result.lines
    assert [r.status for r in dispatch_rows(env, cid)] == ["started"]
    assert result.lines[0] == f"cycle {cid} moved from Identify to Plan"
    # What Plan started with (recorded with the move), then the Plan flow's summary.
    assert result.lines[1].startswith("Plan: 1 action item proposed from the playbook")
    assert result.lines[2].startswith("plan: 1 action item for 1 accepted gap")
    with env.unit_of_work() as s:
        item = s.scalar(select(ActionItem).where(ActionItem.cycle_id == cid))
        assert item.key.endswith(":weekly_sync_and_digest") and item.owner.email == "mia@acme.test"
        assert s.get(Cycle, cid).phase is Phase.PLAN


def test_a_phase_flow_whose_result_the_server_did_not_keep_counts_as_started(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """A flow run here that completed, but whose final state the server answered without its
    result (a proposal sent again after a slow answer), ran: its row is started, not put back
    to run the phase again, and the terminal is not told it failed."""
    from prefect.states import Completed

    import flows.phases
    from aligncycle import orchestration

    ran: list[int] = []

    def completed_without_result(phase, cycle_id, today=None, *, return_state=False):  # noqa: ANN001, ANN202
        ran.append(cycle_id)
        return Completed()  # no data: what Prefect gives back for a state read from its API

    monkeypatch.setattr(flows.phases, "run_phase", completed_without_result)
    cid = start_cycle(env)
    answer_identify(env, cid, regular_cadence="no")
    accept_gaps(env, cid)
    result = orchestration.advance(cid, "sam@acme.test", today=D0, use_server=False)
    assert ran == [cid]
    assert result.via == "in-process", result.lines
    assert [r.status for r in dispatch_rows(env, cid)] == ["started"]
    assert not any("has not started" in line for line in result.lines), result.lines


# --- the demo ---------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_demo_runs_a_whole_cycle_quietly(prefect_server, tmp_path: Path) -> None:  # noqa: ANN001
    """``aligncycle demo`` in a fresh process: exit 0, the recap's headline, the report, and
    nothing from Prefect on the terminal (its runs go to the session's server)."""
    home = tmp_path / "prefect"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ALIGNCYCLE_"))}
    env |= {
        "ALIGNCYCLE_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_API_URL": prefect_server,  # the session's server: no second server to start
        "PREFECT_HOME": str(home),
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from aligncycle.demo import main; raise SystemExit(main())"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert 'Recap of cycle 1 "Q1 hand-off alignment"' in out
    assert "gaps found     10 (7 accepted, 2 deferred, 1 rejected)" in out
    assert "actions        8: 4 done, 4 late, 1 dropped" in out
    # ten answers: three batches of three are out, the tenth waits for its batch
    assert "survey         mean 3.67 of 5 from 9 answers (1 more waiting)" in out
    # The evidence loop: the numbers raised gaps in Identify, Plan set targets, Recap measured
    # them (one reached, one not) and flagged where the survey and the numbers disagree.
    assert "from the numbers: Fewer than 80% of MQLs are touched within the hand-off SLA" in out
    # sales' rejection reasons past the shipped playbook's 30%: the lead definition drift gap
    assert "from the numbers: Lead definition drift: sales rejects too many" in out
    assert "target: SLA attainment from " in out and "target: MQL→SQL rate from " in out
    assert re.search(r"target +SLA attainment [\d.]+% against 70\.0%: reached", out)
    assert re.search(r"target +MQL→SQL rate [\d.]+% against 25\.0%: not reached", out)
    assert "disagreement   The team feels it improved, but the target of" in out
    # A third cycle: each team answers on its own, the reveal's divergence map beside the
    # numbers, and a gap back for the third time (issue 18).
    assert "marketing answered on its own and submitted; both are in: revealed" in out
    assert re.search(r"Sales 2 of 5, Marketing 4 of 5: the teams differ \(MQL→SQL rate", out)
    assert "recurring Avoidable interruptions in the MQL-to-SQL hand-off: came up in 3" in out
    assert "recurring Lead definition drift: sales rejects too many" in out
    report = tmp_path / "data" / "demo" / "reports" / "cycle-1-recap.md"
    assert f"Report: {report} (in the web app: /cycles/1/report.md)" in out
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Recap — cycle 1: Q1 hand-off")
    assert "## The numbers: KPIs against the baseline" in text
    assert re.search(r"Target of “Agree on a hand-off SLA and publish it”: .*: reached\.", text)
    assert "Feelings and numbers disagree: The team feels it improved" in text
    assert "Traceback" not in out


def test_the_demo_never_removes_a_folder_it_did_not_make(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from aligncycle import demo

    mine = tmp_path / "precious"
    mine.mkdir()
    (mine / "aligncycle.db").write_text("a user's store")
    monkeypatch.setenv("ALIGNCYCLE_DEMO_DIR", str(mine))
    assert demo.main() == 1
    assert (mine / "aligncycle.db").read_text() == "a user's store"


def test_flows_setup_creates_the_zombie_automation_once_and_updates_it(prefect_server) -> None:  # noqa: ANN001
    """Prefect's documented automation for self-hosted servers: a run whose heartbeats stop
    (after one) without a final state is marked Crashed; made again, it is updated."""
    from datetime import timedelta

    from prefect.automations import Automation

    from flows.zombies import NAME, ensure_zombie_automation

    first, created = ensure_zombie_automation(90)
    try:
        again, created_again = ensure_zombie_automation(120)
        assert created and not created_again and again == first
        found = Automation.read(name=NAME)
        assert found.trigger.after == {"prefect.flow-run.heartbeat"}
        assert "prefect.flow-run.Completed" in found.trigger.expect
        assert found.trigger.posture == "Proactive"
        assert found.trigger.within == timedelta(seconds=120)
        (action,) = found.actions
        assert action.type == "change-flow-run-state" and action.state == "CRASHED"
    finally:
        Automation.read(name=NAME).delete()
