"""``aligncycle demo`` (``make demo``): one whole alignment cycle, scripted, through the flows.

A fresh embedded SQLite store in a demo folder (``$ALIGNCYCLE_DEMO_DIR``, default
``<data dir>/demo``), recreated on every run so the demo is repeatable; a user's real store is
never touched (the folder is only removed if an earlier demo made it). The flows run in this
process against the demo's own Prefect server (:mod:`aligncycle.demo_server`: started in the
background by the first demo, with its home next to the store, ``<data dir>/demo-prefect``, and
reused by the next ones; ``aligncycle demo --stop`` stops it), unless ``PREFECT_API_URL`` points
at a server (which then shows the runs) or ``ALIGNCYCLE_DEMO_PREFECT=ephemeral`` asks for
Prefect's in-process server (7-8 s more per demo).

The script: two teams with a point person and leads each, a manager and members; a cycle on the
``sales-marketing-handoff`` playbook; Identify answers and a gap added by hand; gap decisions; a
refused advance (gaps undecided); Plan proposals, assignments, a dropped item and targets on
the numbers; Execute check-ins and scheduled check-in passes; Recap survey (published in
batches), the point person saving the drafted retrospective, sign-off, and closing with a
follow-up cycle that carries the open items over. Simulated dates: the cycle ran over the last
45 days (so the imported numbers are all in the past, as a real export's are).

The shared numbers: a HubSpot contacts and deals export (``aligncycle.demo_funnel``) is imported
before the cycle starts, so its baseline is frozen and the playbook's KPI rules raise gaps with
their evidence in Identify; a fresh export is imported before Recap, which measures every KPI and
target against the baseline and says where the survey and the numbers disagree.

Why one file of this size: the demo is one story read top to bottom (a cycle from its first
answer to its recap); split, its steps would lose their order.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

MARKER = ".aligncycle-demo"
PLAYBOOK = "sales-marketing-handoff"
DOMAIN = "acme.example"

#: name, email user, team, role
PEOPLE = [
    ("Sam Rivera", "sam", "sales", "point_person"),
    ("Mia Chen", "mia", "marketing", "point_person"),
    ("Lee Okafor", "lee", "sales", "lead"),
    ("Lena Berg", "lena", "sales", "lead"),
    ("Lou Martin", "lou", "marketing", "lead"),
    ("Max Weber", "max", "sales", "manager"),
    ("Sid Patel", "sid", "sales", "member"),
    ("Sue Novak", "sue", "sales", "member"),
    ("Meg Ito", "meg", "marketing", "member"),
    ("Mo Haddad", "mo", "marketing", "member"),
]

#: Identify answers: question key -> (who answers, answer, note)
IDENTIFY_ANSWERS = {
    "handoff_interruptions": ("mia", "yes", "MQLs wait 2.5 days on average before a rep sees them"),
    "inconsistent_process": ("sam", "no", None),
    "missed_conversions": ("lee", "yes", "14 qualified leads last month had no follow-up"),
    "shared_lead_definitions": ("lou", "no", "marketing scores on fit, sales on intent"),
    "handoff_sla_agreed": ("lee", "no", None),
    "process_documented": ("sam", "yes", None),
    "shared_data": ("mia", "yes", None),
    "tools_adopted": ("sam", "yes", None),
    "shared_kpis": ("lou", "yes", None),
    "regular_cadence": ("max", "no", "the monthly meeting lapsed in spring"),
    "followup_content_missing": ("sam", "yes", None),
}

#: gap (checklist question key, or "person") -> (decider, decision, reason)
GAP_DECISIONS = {
    # raised by the numbers (the playbook's KPI rules over the baseline)
    "sla_attainment_low": ("lee", "accepted", None),
    "mql_to_sql_low": ("lou", "accepted", None),
    # sales' rejection reasons (the playbook's rejection_drift_above)
    "lead_definition_drift": ("lou", "accepted", None),
    # raised by answers (and, for some questions, by the numbers too)
    "handoff_sla_agreed": ("lee", "accepted", None),
    "shared_lead_definitions": ("lou", "accepted", None),
    "regular_cadence": ("sam", "accepted", None),
    "person": ("mia", "accepted", None),
    "handoff_interruptions": ("lee", "deferred", "revisit when the SLA report shows the waits"),
    "missed_conversions": ("lee", "deferred", "measure first, with the SLA in place"),
    "followup_content_missing": (
        "lou",
        "rejected",
        "the follow-up templates exist; reps did not know where they are",
    ),
}


@dataclass
class Demo:
    out: Callable[[str], None] = print
    day0: date = field(default_factory=lambda: date.today() - timedelta(days=45))
    cycle_id: int = 0
    flows_run: int = 0
    started: float = field(default_factory=time.perf_counter)
    #: The demo's own Prefect server (None: ``PREFECT_API_URL``'s server, or in-process).
    server: Any = None

    def prefect_ready(self) -> None:
        """Before a flow runs: the demo's server answers (it started while the store was set
        up; a first start migrates its database)."""
        if self.server is not None:
            self.server.wait()

    def email(self, user: str) -> str:
        return f"{user}@{DOMAIN}"

    def day(self, n: int) -> date:
        return self.day0 + timedelta(days=n)


def demo_dirs() -> tuple[Path, Path]:
    from aligncycle.settings import get_settings

    base = get_settings().data_dir
    demo = Path(os.environ.get("ALIGNCYCLE_DEMO_DIR") or base / "demo").expanduser()
    return demo, demo.parent / "demo-prefect"


def _fresh_folder(folder: Path) -> None:
    """Recreate the demo folder; refuse to remove a folder an earlier demo did not make."""
    if folder.exists():
        if not (folder / MARKER).exists() and any(folder.iterdir()):
            raise SystemExit(
                f"error: {folder} exists and was not made by the demo; remove it or set "
                "ALIGNCYCLE_DEMO_DIR to another folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `aligncycle demo`; recreated on every run\n")


def _own_server_wanted() -> bool:
    """The demo's own Prefect server, unless a server is configured or the in-process one is
    asked for (see the module's docstring)."""
    if os.environ.get("PREFECT_API_URL"):
        return False
    return os.environ.get("ALIGNCYCLE_DEMO_PREFECT", "server").strip().lower() != "ephemeral"


def _point_env_at(folder: Path, prefect_home: Path, server: Any = None) -> None:
    """This process (and the flows it runs) use the demo store and the demo's Prefect home
    (and its server, if it has one)."""
    os.environ["ALIGNCYCLE_DATA_DIR"] = str(folder)
    os.environ["ALIGNCYCLE_DATABASE_URL"] = f"sqlite:///{folder / 'aligncycle.db'}"
    if server is not None:  # read when Prefect is first imported
        os.environ["PREFECT_HOME"] = str(prefect_home)
        os.environ["PREFECT_API_URL"] = server.api_url
    elif not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(prefect_home)
    from aligncycle import settings

    settings.get_settings.cache_clear()
    try:
        from aligncycle import cli_common

        cli_common.reset_store()
    except ImportError:  # pragma: no cover - the CLI module is optional here
        pass


def main() -> int:
    """Run the demo; 0 when the whole cycle ran, 1 with a one-line error otherwise."""
    from models.errors import DomainError

    folder, prefect_home = demo_dirs()
    try:
        _fresh_folder(folder)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    from aligncycle import demo_server

    # Started first and not waited for: it comes up while the store is set up.
    server = demo_server.ensure(prefect_home) if _own_server_wanted() else None
    _point_env_at(folder, prefect_home, server)
    demo = Demo(server=server)
    try:
        run(demo, folder)
    except DomainError as exc:
        print(f"error: the demo was refused: {exc}", file=sys.stderr)
        return 1
    except demo_server.ServerFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def stop_server() -> int:
    """``aligncycle demo --stop``: stop the demo's Prefect server (0 whether or not one ran)."""
    from aligncycle import demo_server

    print(demo_server.stop(demo_dirs()[1]))
    return 0


# --- the script --------------------------------------------------------------------------


def run(demo: Demo, folder: Path) -> Any:
    from flows.runtime import no_heartbeat

    with no_heartbeat():  # once for the whole demo (each flow would otherwise wait ~1 s)
        return _script(demo, folder)


def _script(demo: Demo, folder: Path) -> Any:
    from aligncycle import demo_agreement
    from aligncycle.orchestration import clip, summarize
    from flows.runtime import enable_log_file
    from models.errors import DomainError
    from models.rules import counted

    out = demo.out
    log = enable_log_file(folder / "logs" / "prefect.log")
    out("aligncycle demo: one alignment cycle of sales and marketing, run through the flows")
    _setup(demo, folder)
    out(f"  store     {folder / 'aligncycle.db'} (fresh)")
    out(f"  org       sales and marketing, {len(PEOPLE)} people; playbook {PLAYBOOK}")
    out(f"  numbers   {_import_export(demo, folder, demo.day(-1))}")
    out(f"  {_agreement(demo_agreement.first_version, demo.cycle_id)}")

    # Identify: the numbers' gaps (recorded when the cycle started), answers and a gap added by
    # hand; the flow builds the gap analysis.
    for line in _numbers_gaps(demo):
        out(f"          {clip(line, 90)}")
    _identify_answers(demo)
    report = _phase(demo, "identify", demo.day(1))
    out(f"identify  {summarize(report)[0].removeprefix('identify: ')}")
    try:
        _advance(demo, "sam", demo.day(2))
    except DomainError as exc:  # the gate holds: the gaps are not decided yet
        out(f"          {clip(f'refused, as it should be: {exc}', 90)}")
    out(f"          gaps decided by leads and point persons: {_decide_gaps(demo)}")

    # Plan: the flow proposes items from the playbook; a manager assigns, a lead drops one.
    result = _advance(demo, "sam", demo.day(3))
    out(f"plan      {result.lines[0]} (by sam)")
    out(f"          {result.lines[1].removeprefix('plan: ')}")
    assigned, dropped = _plan_work(demo)
    who = f"{counted(assigned, 'item')} assigned by the manager, {dropped} dropped by a lead"
    out(f"          {who}")
    for line in _targets(demo):
        out(f"          {clip(line, 90)}")
    out(f"          {_agreement(demo_agreement.propose, demo.cycle_id, demo.email)}")

    # Execute: people check in; the scheduled pass rolls progress up.
    result = _advance(demo, "mia", demo.day(4))
    out(f"execute   {result.lines[0]} (by mia)")
    for when, updates in EXECUTE_WEEKS:
        _checkins(demo, updates, demo.day(when - 1))
        report = _phase(demo, "execute", demo.day(when))
        out(f"          day {when:>2}: {summarize(report)[0].removeprefix('execute: ')}")

    # Recap: a fresh CRM export; the flow drafts the retrospective and measures the numbers;
    # survey, sign-off, close with a follow-up.
    _execute_answers(demo)
    out(f"          {_import_export(demo, folder, demo.day(42))}")
    result = _advance(demo, "sam", demo.day(43))
    out(f"recap     {result.lines[0]} (by sam, after the period ended)")
    _survey(demo)
    _phase(demo, "recap", demo.day(44))  # the draft picks up the survey
    _sign_off(demo)
    out(f"          {_agreement(demo_agreement.adopt, demo.cycle_id, demo.email)}")
    out(
        f"          {len(SURVEY)} survey answers, published in batches; sam saved the draft "
        "retrospective and the manager signed it off"
    )
    result = _advance(demo, "sam", demo.day(45), follow_up_title="Q2 hand-off alignment")
    final = result.report
    recap = final.report
    closed = result.outcome
    out(
        f"          cycle {demo.cycle_id} closed; follow-up cycle {closed.follow_up_cycle_id} "
        f"starts with {counted(closed.carried_over, 'open item')} carried over"
    )

    out("")
    out(f'Recap of cycle {recap.cycle_id} "{recap.title}"')
    by = recap.gaps_by_decision
    out(
        f"  gaps found     {recap.gaps_found} ({by.get('accepted', 0)} accepted, "
        f"{by.get('deferred', 0)} deferred, {by.get('rejected', 0)} rejected)"
    )
    out(
        f"  actions        {recap.actions_total}: {len(recap.actions_done)} done, "
        f"{len(recap.actions_late)} late, {len(recap.actions_dropped)} dropped"
    )
    from models.phases.recap import survey_words

    survey = survey_words(recap.survey_responses, recap.survey_published, recap.survey_mean)
    out(f"  survey         {survey.removeprefix('survey ').removeprefix('survey: ')}")
    for line in _measured(demo, demo.day(45)):
        out(f"  {line}")
    out(f"  growth areas   {len(recap.growth_areas)}:")
    for area in recap.growth_areas:
        out(f"                 - {clip(area, 80)}")
    from aligncycle.demo_alignment import each_team_first

    out("")
    store = _store()
    for line in each_team_first(store, demo.email, demo.day(45), clip):
        out(line)
    store.dispose()
    out(f"Report: {_export_report(demo.cycle_id)} (in the web app: {final.url})")
    elapsed = time.perf_counter() - demo.started
    out(f"Prefect: {demo.flows_run} flow runs in {elapsed:.0f} s; its log: {log}")
    if demo.server is not None:
        how = "started for this demo" if demo.server.started_here else "kept from an earlier demo"
        out(
            f"  the runs, each checklist item with its owner: {demo.server.ui_url} (the demo's "
            f"Prefect server, {how}; `aligncycle demo --stop` stops it)"
        )
    return final


def _phase(demo: Demo, phase: str, today: date) -> Any:
    from flows.phases import run_phase
    from models.enums import Phase

    demo.prefect_ready()
    demo.flows_run += 1
    return run_phase(Phase(phase), demo.cycle_id, today)


def _advance(demo: Demo, who: str, today: date, **kwargs: Any) -> Any:
    from aligncycle import orchestration

    demo.prefect_ready()
    result = orchestration.advance(
        demo.cycle_id, demo.email(who), today=today, use_server=False, store=_store(), **kwargs
    )
    demo.flows_run += 1 if result.report is not None else 0
    return result


def _export_report(cycle_id: int) -> Path:
    """The recap report, as the recap flow stored it, copied to a file of the demo's folder to
    read without starting the web app."""
    from aligncycle.settings import get_settings
    from models.services import reports

    with _store().unit_of_work() as s:
        markdown = reports.recap_report(s, None, cycle_id).markdown
    target = Path(get_settings().data_dir) / "reports" / f"cycle-{cycle_id}-recap.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown, encoding="utf-8")
    return target


def _agreement(step: Callable[..., str], *args: Any) -> str:
    """One step of the teams' agreement (:mod:`aligncycle.demo_agreement`), its line."""
    store = _store()
    try:
        return step(store, *args)
    finally:
        store.dispose()


def _store() -> Any:
    """The demo store: one engine for the whole demo, the one its flows use (so each statement
    is compiled once, not once per step; ``dispose`` only closes its idle connections)."""
    from flows.runtime import store

    return store()


def _setup(demo: Demo, folder: Path) -> None:
    from migrations import runner
    from models import phases
    from models.config import PROJECT_ROOT
    from models.schemas import CycleCreate, PersonCreate, TeamCreate
    from models.services import people, playbooks
    from models.services.common import person_by_email

    store = _store()
    runner.upgrade(store.engine)
    with store.unit_of_work() as s:
        playbooks.sync_directory(s, PROJECT_ROOT / "playbooks")
        people.create_team(s, TeamCreate(key="sales", name="Sales"))
        people.create_team(s, TeamCreate(key="marketing", name="Marketing"))
        for name, user, team, role in PEOPLE:
            people.create_person(
                s, PersonCreate(name=name, email=demo.email(user), team=team, role=role)
            )
    with store.unit_of_work() as s:
        cycle = phases.start_cycle(
            s,
            CycleCreate(
                playbook=PLAYBOOK,
                title="Q1 hand-off alignment",
                point_persons=[demo.email("mia")],
                period_start=demo.day0,
                period_end=demo.day(42),
            ),
            person_by_email(s, demo.email("sam")),
            today=demo.day0,
        )
        s.flush()
        demo.cycle_id = cycle.id
    store.dispose()


def _import_export(demo: Demo, folder: Path, through: date) -> str:
    """Import the CRM's export of every MQL from the baseline's start to ``through`` (a
    HubSpot contacts and deals export, through the hubspot profile, as a user would)."""
    from aligncycle.demo_funnel import hubspot_mapping, write_hubspot_exports
    from models.funnel.importer import import_files
    from models.phases.numbers import record_numbers_after_import
    from models.services.common import person_by_email

    paths = write_hubspot_exports(
        folder / "exports" / through.isoformat(), demo.day0, start=demo.day(-42), end=through
    )
    store = _store()
    with store.unit_of_work() as s:
        summary = import_files(
            s, list(paths), hubspot_mapping(), actor=person_by_email(s, demo.email("max"))
        )
        record_numbers_after_import(s)
    store.dispose()
    return (
        f"CRM export through {through:%-d %b} imported: {summary.new:,} new and "
        f"{summary.unchanged:,} unchanged rows of contacts and deals"
    )


def _numbers_gaps(demo: Demo) -> list[str]:
    """The gaps the numbers raised when the cycle started, with their evidence."""
    from models.enums import GapSource
    from models.services import cycles, gaps

    store = _store()
    with store.unit_of_work() as s:
        found = [
            g
            for g in gaps.list_gaps(s, cycles.get_cycle(s, demo.cycle_id))
            if g.source is GapSource.METRIC
        ]
        lines = [f"from the numbers: {g.title} ({g.evidence.split(';')[0]})" for g in found]
    store.dispose()
    return lines


#: Targets a lead sets in Plan: (template key of the action item, KPI, target, who)
TARGETS = [
    ("agree_handoff_sla", "sla_attainment", "70%", "lee"),
    ("write_lead_definitions", "mql_to_sql_rate", "25%", "lou"),
]


def _targets(demo: Demo) -> list[str]:
    from models.funnel import targets
    from models.funnel.kpis import KPIS, format_value
    from models.services import actions
    from models.services.common import person_by_email

    store = _store()
    lines = []
    with store.unit_of_work() as s:
        items = actions.list_actions(s, cycle_id=demo.cycle_id)
        for key, kpi, target, who in TARGETS:
            item = next(i for i in items if i.key and i.key.endswith(f":{key}"))
            t = targets.set_target(
                s,
                item,
                targets.TargetSet(kpi=kpi, target=target),
                person_by_email(s, demo.email(who)),
            )
            lines.append(
                f"target: {KPIS[kpi].title} from {format_value(kpi, t.baseline)} to "
                f"{format_value(kpi, t.target)} ({item.title})"
            )
    store.dispose()
    return lines


def _measured(demo: Demo, today: date) -> list[str]:
    """The recap's numbers: what moved, each target reached or not, and disagreements."""
    from models.funnel import measure
    from models.funnel.kpis import KPIS, format_value
    from models.services import cycles

    store = _store()
    with store.unit_of_work() as s:
        m = measure.measure_recap(
            s, cycles.get_cycle(s, demo.cycle_id), today=today, read_only=True
        )
    store.dispose()
    moved = {c.kpi: c for c in m.kpis}
    lines = [f"numbers        {m.measured} against the baseline"]
    for name in ("sla_attainment", "handoff_latency_median_hours", "mql_to_sql_rate"):
        c = moved.get(name)
        if c is not None:
            lines.append(
                f"                 {c.title}: {format_value(name, c.baseline)} → "
                f"{format_value(name, c.current)} ({c.verdict})"
            )
    for t in m.targets:
        state = {True: "reached", False: "not reached", None: "no data"}[t.achieved]
        lines.append(
            f"  target         {KPIS[t.kpi].title} {format_value(t.kpi, t.current)} against "
            f"{format_value(t.kpi, t.target)}: {state}"
        )
    lines += [f"  disagreement   {d}" for d in m.disagreements]
    return lines


def _answer(s: Any, cycle: Any, ref: str, who: str, answer: str, note: str | None = None) -> None:
    from models import phases
    from models.schemas import ChecklistAnswer
    from models.services import checklist
    from models.services.common import person_by_email

    item = checklist.find_item(s, cycle, ref)
    phases.answer(
        s, item, ChecklistAnswer(answer=answer, note=note), person_by_email(s, f"{who}@{DOMAIN}")
    )


def _identify_answers(demo: Demo) -> None:
    from models.schemas import GapCreate
    from models.services import cycles, gaps
    from models.services.common import person_by_email

    store = _store()
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        for key, (who, answer, note) in IDENTIFY_ANSWERS.items():
            _answer(s, cycle, f"identify.{key}", who, answer, note)
        gaps.add_gap(
            s,
            cycle,
            GapCreate(
                title="Lead source is missing on a third of the MQLs in the CRM",
                category="data_and_tools",
                root_cause="adoption",
                severity="medium",
                evidence="CRM report, last 90 days",
            ),
            person_by_email(s, demo.email("sid")),
        )
    store.dispose()


def _decide_gaps(demo: Demo) -> str:
    from collections import Counter

    from models import phases
    from models.enums import GapSource
    from models.schemas import GapDecide
    from models.services import cycles, gaps
    from models.services.common import person_by_email

    store = _store()
    counts: Counter[str] = Counter()
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        for gap in gaps.list_gaps(s, cycle):
            ref = "person" if gap.source is GapSource.PERSON else gap.key.split(":", 1)[1]
            who, decision, reason = GAP_DECISIONS[ref]
            decider = person_by_email(s, demo.email(who))
            phases.decide_gap(s, gap, GapDecide(decision=decision, reason=reason), decider)
            counts[decision] += 1
    store.dispose()
    return ", ".join(f"{n} {d}" for d, n in counts.items())


def _plan_work(demo: Demo) -> tuple[int, int]:
    from models.schemas import ActionItemAssign, ActionItemUpdate
    from models.services import actions, cycles
    from models.services.common import person_by_email

    store = _store()
    assigned = dropped = 0
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        _answer(
            s,
            cycle,
            "plan.gaps_to_address",
            "lee",
            "the SLA, shared definitions, a weekly "
            "review and the CRM lead source; interruptions and missed conversions wait",
        )
        _answer(s, cycle, "plan.process_efficiency", "lou", "one routing rule, one shared queue")
        _answer(s, cycle, "plan.ensure_adherence", "max", "a weekly SLA report in the digest")
        manager = person_by_email(s, demo.email("max"))
        owners = iter(["lee", "lena"])
        for item in actions.list_actions(s, cycle_id=cycle.id):
            if item.owner_id is None:
                who = next(owners, "lee")
                actions.assign_action(s, item, ActionItemAssign(owner=demo.email(who)), manager)
                assigned += 1
        rejection = next(
            i
            for i in actions.list_actions(s, cycle_id=cycle.id)
            if i.key and i.key.endswith(":rejection_reasons")
        )
        actions.update_action(
            s,
            rejection,
            ActionItemUpdate(status="dropped", description="folded into the shared definitions"),
            person_by_email(s, demo.email("lee")),
        )
        dropped += 1
    store.dispose()
    return assigned, dropped


#: Check-ins people write before each scheduled Execute pass:
#: (day of the pass, [(template key, who, status, confidence, progress, note)])
EXECUTE_WEEKS = [
    (
        11,
        [
            ("agree_handoff_sla", "lee", "done", None, 100, "SLA: first contact within 24 h"),
            ("weekly_sync_and_digest", "mia", "done", None, 100, "first digest sent"),
            ("write_lead_definitions", "lou", "in_progress", "on_track", 60, "draft shared"),
            ("map_handoff_flow", "mia", "in_progress", "on_track", 30, None),
        ],
    ),
    (
        18,
        [
            ("write_lead_definitions", "lou", "done", None, 100, "both leads signed off"),
            ("crm_required_fields", "sam", "done", None, 100, None),
            ("map_handoff_flow", "mia", "in_progress", "at_risk", 60, "routing rule needs IT"),
            ("handoff_checklist", "sam", "in_progress", "on_track", 40, None),
        ],
    ),
    (
        32,
        [
            ("one_shared_dashboard", "mia", "blocked", "off_track", 20, "CRM export blocked"),
            ("handoff_checklist", "sam", "in_progress", "at_risk", 70, "training on day 35"),
        ],
    ),
]


def _checkins(demo: Demo, updates: list[tuple], on: date) -> None:
    from models.schemas import CheckInCreate
    from models.services import actions
    from models.services.common import person_by_email

    store = _store()
    with store.unit_of_work() as s:
        items = actions.list_actions(s, cycle_id=demo.cycle_id)
        for key, who, status, confidence, progress, note in updates:
            item = next(i for i in items if i.key and i.key.endswith(f":{key}"))
            actions.add_checkin(
                s,
                item,
                CheckInCreate(
                    status=status, confidence=confidence, progress=progress, note=note, on_date=on
                ),
                person_by_email(s, demo.email(who)),
                today=on,
            )
    store.dispose()


def _execute_answers(demo: Demo) -> None:
    from models.services import cycles

    store = _store()
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        _answer(s, cycle, "execute.point_persons", "max", "Sam (sales), Mia (marketing)")
        _answer(s, cycle, "execute.how_we_know", "lee", "SLA attainment of 90% or more by week 4")
        _answer(s, cycle, "execute.when_items_slip", "lou", "flag it in the digest; agree a date")
    store.dispose()


#: Survey: (who, score, anonymous, comment)
SURVEY = [
    ("sam", 4, False, "the weekly digest keeps us honest"),
    ("mia", 4, False, None),
    ("lee", 5, False, "the SLA made the queue visible"),
    ("lena", 3, True, "still too many meetings"),
    ("lou", 4, True, None),
    ("max", 4, False, None),
    ("sid", 3, True, "CRM fields are a chore"),
    ("sue", 2, True, "leads still arrive without a source"),
    ("meg", 4, True, "we finally hear back about our leads"),
    ("mo", 3, True, None),
]


def _survey(demo: Demo) -> None:
    from models.schemas import SurveyRespond
    from models.services import cycles, recap
    from models.services.common import person_by_email

    store = _store()
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        for who, score, anonymous, comment in SURVEY:
            recap.respond(
                s,
                cycle,
                SurveyRespond(score=score, anonymous=anonymous, comment=comment),
                person_by_email(s, demo.email(who)),
            )
        _answer(s, cycle, "recap.saw_improvements", "max", "yes", "SLA attainment 86% in week 5")
        _answer(s, cycle, "recap.growth_areas", "lee", "the dashboard and the hand-off training")
    store.dispose()


def _sign_off(demo: Demo) -> None:
    """Sam reviews the draft retrospective and saves it with his summary; Max signs it off."""
    from models.schemas import RetrospectiveRecord
    from models.services import cycles, recap
    from models.services.common import person_by_email

    store = _store()
    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, demo.cycle_id)
        draft = recap.get_retrospective(s, cycle)
        reviewed = RetrospectiveRecord(
            improvements=draft.improvements,
            growth_areas=draft.growth_areas,
            next_time=[*draft.next_time, "invite sales to campaign planning"],
            summary=f"{draft.summary} The SLA and the digest stuck; the dashboard did not.",
            expected_version=draft.version,
        )
        recap.record_retrospective(s, cycle, reviewed, person_by_email(s, demo.email("sam")))
        recap.sign_off(s, cycle, person_by_email(s, demo.email("max")))
    store.dispose()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
