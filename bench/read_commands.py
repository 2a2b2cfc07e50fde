"""How fast the CLI's read commands answer on a store with a history.

Builds (once, cached in the temp folder) an embedded SQLite store holding 1,000 cycles of the
shipped ``sales-marketing-handoff`` playbook with 20 action items each, their checklists, gaps,
check-ins, retrospectives, survey answers and audit log; then runs each read command through
the installed ``aligncycle`` console script in fresh processes, as a user would, and reports
the median wall time of 5 runs against the 0.5 s target.

    python -m bench read_commands [--runs N] [--rebuild] [--url URL]

Results: printed, and written to ``bench/results/read_commands.md``.

Why one file of this size: the store it builds and the commands it times change together.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.verdict import Target, verdict

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results" / "read_commands.md"
TARGET_S = 0.5
CYCLES = 1_000
ACTIONS_PER_CYCLE = 20
OPEN_CYCLES = 40  # the newest; the rest are closed
PLAYBOOK = "sales-marketing-handoff"
#: Bump when the generated data changes, so a cached store is rebuilt.
DATA_VERSION = 1


# --- building the store -------------------------------------------------------------------


def _cache_path() -> Path:
    from migrations import runner

    heads = "-".join(sorted(runner.heads()))
    folder = Path(tempfile.gettempdir()) / "aligncycle-bench"
    return folder / f"read_commands-v{DATA_VERSION}-{heads}.db"


def build(url: str) -> None:
    """Migrate an empty store and fill it: people through the services, the bulk of the rows
    through SQLAlchemy Core multi-row inserts (a few statements per table, not one per row)."""
    from sqlalchemy import insert

    from migrations import runner
    from models.db import Store
    from models.enums import (
        WORK_PHASES,
        ActionStatus,
        AnswerKind,
        Confidence,
        GapCategory,
        GapDecision,
        GapSource,
        Phase,
        Priority,
        Role,
        RootCause,
        Severity,
    )
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people, playbooks
    from models.services.playbooks import spec_of
    from models.tables import (
        ActionItem,
        ActionItemGap,
        CheckIn,
        ChecklistItem,
        Cycle,
        CycleTeam,
        Event,
        Gap,
        Retrospective,
        SurveyParticipation,
        SurveyResponse,
    )

    rng = random.Random(20240601)
    store = Store(url)
    runner.upgrade(store.engine)
    staff: dict[tuple[str, str], list[int]] = {}
    with store.unit_of_work() as s:
        playbooks.sync_directory(s, PROJECT / "playbooks")
        playbook = playbooks.get_playbook(s, PLAYBOOK)
        playbook_id, spec = playbook.id, spec_of(playbook)
        teams = {}
        for key in ("sales", "marketing"):
            teams[key] = people.create_team(s, TeamCreate(key=key, name=key.title()))
        counts = {"point_person": 3, "lead": 3, "manager": 1, "member": 12}
        for key in teams:
            for role, n in counts.items():
                for i in range(n):
                    p = people.create_person(
                        s,
                        PersonCreate(
                            name=f"{key.title()} {role} {i}",
                            email=f"{role}{i}@{key}.bench",
                            team=key,
                            role=role,
                        ),
                    )
                    staff.setdefault((role, key), []).append(p.id)
        s.flush()
        team_ids = {k: t.id for k, t in teams.items()}

    today = date.today()
    now = datetime.now(UTC)
    questions = spec.questions()
    rows: dict[Any, list[dict[str, Any]]] = {
        t: []
        for t in (
            Cycle,
            CycleTeam,
            ChecklistItem,
            Gap,
            ActionItem,
            ActionItemGap,
            CheckIn,
            Retrospective,
            SurveyResponse,
            SurveyParticipation,
            Event,
        )
    }
    open_phases = [p for p in WORK_PHASES for _ in range(OPEN_CYCLES // len(WORK_PHASES))]
    action_id = 0
    for n in range(1, CYCLES + 1):
        newest = CYCLES - n  # 0 for the newest cycle
        start = today - timedelta(days=newest * 3 + 20)
        end = start + timedelta(days=42)
        phase = open_phases[newest] if newest < len(open_phases) else Phase.CLOSED
        closed = phase is Phase.CLOSED
        done_phases = list(WORK_PHASES) if closed else list(WORK_PHASES[: WORK_PHASES.index(phase)])
        pp = {k: rng.choice(staff[("point_person", k)]) for k in team_ids}
        lead = {k: rng.choice(staff[("lead", k)]) for k in team_ids}
        manager = staff[("manager", "sales")][0]
        started = datetime.combine(start, datetime.min.time(), UTC)
        rows[Cycle].append(
            {
                "id": n,
                "playbook_id": playbook_id,
                "title": f"Cycle {n}: hand-off {start:%Y-%m}",
                "period_start": start,
                "period_end": end,
                "phase": phase,
                "previous_cycle_id": n - 1 if n > 1 else None,
                "created_by_id": pp["sales"],
                "created_at": started,
                "updated_at": started,
                "phase_changed_at": started,
                "closed_at": started + timedelta(days=45) if closed else None,
                "version": 1 + len(done_phases),
            }
        )
        for key, team_id in team_ids.items():
            rows[CycleTeam].append({"cycle_id": n, "team_id": team_id, "point_person_id": pp[key]})
        events: list[dict[str, Any]] = [
            {
                "verb": "cycle.started",
                "object_type": "cycle",
                "object_id": n,
                "actor": pp["sales"],
                "after": {"title": f"Cycle {n}", "playbook": f"{PLAYBOOK}@3"},
            }
        ]
        for q_phase, position, q in questions:
            answered = q_phase in done_phases or (q_phase is phase and rng.random() < 0.5)
            owner = None
            if q.owner is not None and q.owner.team:
                owner = (pp if q.owner.role is Role.POINT_PERSON else lead).get(q.owner.team)
            elif q.owner is not None and q.owner.role is Role.MANAGER:
                owner = manager
            answer = None
            if answered:
                answer = "yes" if q.answer is AnswerKind.YES_NO else f"notes for {q.key}"
                events.append(
                    {
                        "verb": "checklist.answered",
                        "object_type": "checklist_item",
                        "actor": owner,
                        "after": {"answer": answer, "key": f"{q_phase}.{q.key}"},
                    }
                )
            rows[ChecklistItem].append(
                {
                    "cycle_id": n,
                    "phase": q_phase,
                    "key": q.key,
                    "position": position,
                    "text": q.text,
                    "help": q.help,
                    "answer_kind": q.answer,
                    "required": q.required,
                    "owner_id": owner,
                    "owner_role": q.owner.role if q.owner else Role.POINT_PERSON,
                    "owner_team_id": team_ids.get(q.owner.team)
                    if q.owner and q.owner.team
                    else None,
                    "answer": answer,
                    "answered_by_id": owner if answered else None,
                    "answered_at": started + timedelta(days=2) if answered else None,
                    "version": 2 if answered else 1,
                }
            )
        gap_ids = []
        for g in range(3):
            gap_id = (n - 1) * 3 + g + 1
            gap_ids.append(gap_id)
            decided = phase is not Phase.IDENTIFY
            decision = [GapDecision.ACCEPTED, GapDecision.ACCEPTED, GapDecision.DEFERRED][g]
            rows[Gap].append(
                {
                    "id": gap_id,
                    "cycle_id": n,
                    "key": f"person:gap-{g}",
                    "title": f"Gap {g} of cycle {n}",
                    "description": None,
                    "category": rng.choice(list(GapCategory)),
                    "root_cause": rng.choice(list(RootCause)),
                    "severity": rng.choice(list(Severity)),
                    "evidence": None,
                    "source": GapSource.PERSON,
                    "source_ref": None,
                    "reported_by_id": lead["sales"],
                    "decision": decision if decided else GapDecision.OPEN,
                    "decision_reason": None,
                    "decided_by_id": lead["sales"] if decided else None,
                    "decided_at": started + timedelta(days=3) if decided else None,
                    "created_at": started + timedelta(days=1),
                    "version": 2 if decided else 1,
                }
            )
            events.append(
                {
                    "verb": "gap.added",
                    "object_type": "gap",
                    "object_id": gap_id,
                    "actor": lead["sales"],
                    "after": {"title": f"Gap {g}"},
                }
            )
        for a in range(ACTIONS_PER_CYCLE):
            action_id += 1
            owner_team, other = ("sales", "marketing") if a % 2 else ("marketing", "sales")
            due = start + timedelta(days=7 + (a * 35) // ACTIONS_PER_CYCLE)
            if closed:
                status = (
                    ActionStatus.OPEN
                    if rng.random() < 0.05
                    else ActionStatus.DROPPED
                    if rng.random() < 0.05
                    else ActionStatus.DONE
                )
            elif phase in (Phase.IDENTIFY, Phase.PLAN):
                status = ActionStatus.OPEN
            else:
                status = rng.choice(list(ActionStatus))
            rows[ActionItem].append(
                {
                    "id": action_id,
                    "cycle_id": n,
                    "key": None,
                    "title": f"Action {a} of cycle {n}",
                    "description": "What to do, and why.",
                    "owner_id": rng.choice(staff[("member", owner_team)] + [pp[owner_team]]),
                    "counterpart_id": pp[other],
                    "assigned_by_id": lead["sales"],
                    "priority": rng.choice(list(Priority)),
                    "due_date": due,
                    "follow_up_date": due - timedelta(days=3),
                    "status": status,
                    "confidence": rng.choice(list(Confidence)),
                    "success_measure": "Measured in the weekly digest.",
                    "carried_from_id": None,
                    "completed_at": started + timedelta(days=30)
                    if status is ActionStatus.DONE
                    else None,
                    "created_at": started + timedelta(days=4),
                    "updated_at": started + timedelta(days=30),
                    "version": 3,
                }
            )
            rows[ActionItemGap].append({"action_item_id": action_id, "gap_id": gap_ids[a % 2]})
            events.append(
                {
                    "verb": "action.created",
                    "object_type": "action_item",
                    "object_id": action_id,
                    "actor": lead["sales"],
                    "after": {"title": f"Action {a}", "due_date": due.isoformat()},
                }
            )
            for c in range(2 if phase in (Phase.EXECUTE, Phase.RECAP, Phase.CLOSED) else 0):
                rows[CheckIn].append(
                    {
                        "action_item_id": action_id,
                        "key": None,
                        "on_date": start + timedelta(days=14 * (c + 1)),
                        "status": status if c else ActionStatus.IN_PROGRESS,
                        "confidence": Confidence.ON_TRACK,
                        "progress": 50 * (c + 1),
                        "note": "Progress noted in the digest.",
                        "author_id": pp[owner_team],
                        "created_at": started + timedelta(days=14 * (c + 1)),
                    }
                )
                events.append(
                    {
                        "verb": "checkin.added",
                        "object_type": "check_in",
                        "actor": pp[owner_team],
                        "after": {"progress": 50 * (c + 1)},
                    }
                )
        for p in done_phases:
            events.append(
                {
                    "verb": "cycle.advanced",
                    "object_type": "cycle",
                    "object_id": n,
                    "actor": pp["sales"],
                    "after": {"phase": p.next},
                }
            )
        if closed:
            rows[Retrospective].append(
                {
                    "cycle_id": n,
                    "improvements": ["SLA agreed"],
                    "growth_areas": ["scoring"],
                    "next_time": ["start earlier"],
                    "summary": "A good cycle.",
                    "facts": {"actions_total": ACTIONS_PER_CYCLE},
                    "recorded_by_id": pp["sales"],
                    "recorded_at": started + timedelta(days=44),
                    "signed_off_by_id": manager,
                    "signed_off_at": started + timedelta(days=45),
                    "version": 2,
                }
            )
            for r, person in enumerate(staff[("member", "sales")][:5]):
                batch = 1 if r < 3 else None  # three published, two waiting for the next batch
                rows[SurveyParticipation].append(
                    {"cycle_id": n, "person_id": person, "batch": batch}
                )
                rows[SurveyResponse].append(
                    {
                        "cycle_id": n,
                        "team_id": team_ids["sales"],
                        "respondent_id": None,
                        "anonymous": True,
                        "score": 1 + (n + r) % 5,
                        "comment": "fine",
                        "batch": batch,
                    }
                )
        for i, e in enumerate(events):
            rows[Event].append(
                {
                    "at": min(started + timedelta(minutes=i), now),
                    "actor_id": e["actor"],
                    "verb": e["verb"],
                    "object_type": e["object_type"],
                    "object_id": e.get("object_id"),
                    "cycle_id": n,
                    "before": None,
                    "after": e["after"],
                }
            )
    with store.engine.begin() as conn:
        for table, values in rows.items():
            for i in range(0, len(values), 5_000):
                conn.execute(insert(table.__table__), values[i : i + 5_000])
    store.dispose()


def ensure_store(url: str | None, rebuild: bool) -> tuple[str, float | None]:
    """The store to measure: the given URL, or the cached SQLite file (built when missing)."""
    if url is not None:
        return url, None
    path = _cache_path()
    if rebuild or not path.exists():
        for stale in path.parent.glob("read_commands-*.db*"):
            stale.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".building")
        if partial.exists():
            partial.unlink()
        started = time.perf_counter()
        build(f"sqlite:///{partial}")
        partial.rename(path)
        return f"sqlite:///{path}", time.perf_counter() - started
    return f"sqlite:///{path}", None


# --- measuring ----------------------------------------------------------------------------


def _script() -> str:
    beside = Path(sys.executable).with_name("aligncycle")
    found = str(beside) if beside.exists() else shutil.which("aligncycle")
    if not found:
        raise SystemExit("error: the aligncycle console script is not installed (pip install -e .)")
    return found


def _pick_cycle(url: str) -> int:
    """A cycle in execute: the busiest kind (open items, check-ins, overdue work)."""
    from sqlalchemy import select

    from models.db import Store
    from models.enums import Phase
    from models.tables import Cycle

    store = Store(url)
    try:
        with store.unit_of_work() as s:
            cid = s.scalar(
                select(Cycle.id).where(Cycle.phase == Phase.EXECUTE).order_by(Cycle.id).limit(1)
            )
    finally:
        store.dispose()
    if cid is None:
        raise SystemExit("error: the store has no cycle in execute to measure")
    return cid


def commands(cycle_id: int) -> list[list[str]]:
    c = str(cycle_id)
    return [
        ["cycle", "list"],
        ["cycle", "list", "--json"],
        ["cycle", "show", c],
        ["action", "list", "--cycle", c],
        ["action", "list", "--overdue"],
        ["events", "--cycle", c],
        ["checklist", "show", c],
        ["gap", "list", c],
    ]


#: Not a command: the libraries every read command needs, imported and nothing else. The
#: distance between this and a command is what the command itself costs.
FLOOR = ["-c", "import sqlalchemy.orm, pydantic, typer"]
#: The same libraries as far as a read command loads them: the packages above import little
#: of themselves until used (``pydantic`` defers ``BaseModel`` and ``Field``; Typer 0.2x
#: coerces each parameter through a Pydantic ``TypeAdapter``, whose validator loads Pydantic's
#: plugin loader and with it ``importlib.metadata``; the store needs the SQLite dialect).
FLOOR_LOADED = [
    "-c",
    "import sqlalchemy.orm, sqlalchemy.dialects.sqlite, pydantic.main, pydantic.fields, "
    "pydantic.plugin._loader, typer.main, typer._adapters",
]
FLOORS = (
    (FLOOR, "import sqlalchemy.orm, pydantic, typer"),
    (FLOOR_LOADED, "the same, as loaded by a command"),
)


def measure(
    script: str, args: list[str], url: str, runs: int
) -> tuple[list[float], list[float], int]:
    """Wall times and CPU times (user + system, of the child) of ``runs`` runs, and the
    number of output lines. CPU time shows the command's own cost when the machine is busy."""
    # As installed for a user: bytecode is cached (PYTHONDONTWRITEBYTECODE would make every run
    # compile the project's modules from source), and no ALIGNCYCLE_* setting leaks in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALIGNCYCLE_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["ALIGNCYCLE_DATABASE_URL"] = url
    times: list[float] = []
    cpu: list[float] = []
    lines = 0
    for i in range(runs + 1):  # the first run warms the caches (files, bytecode): not counted
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        argv = [sys.executable, *args] if args[0] == "-c" else [script, *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"error: aligncycle {' '.join(args)} failed: {done.stderr.strip()}")
        if i:
            times.append(elapsed)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        lines = done.stdout.count("\n")
    return times, cpu, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench read_commands", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    parser.add_argument("--url", help="measure this (already filled) store instead")
    args = parser.parse_args(argv)

    url, built = ensure_store(args.url, args.rebuild)
    if built is not None:
        print(f"built the store in {built:.1f} s")
    script = _script()
    cycle_id = _pick_cycle(url)
    load_before = os.getloadavg()
    floors = []
    for floor_args, label in FLOORS:
        floor_times, floor_cpu, _ = measure(script, floor_args, url, args.runs)
        wall, cpu = statistics.median(floor_times), statistics.median(floor_cpu)
        floors.append((floor_args, wall, cpu))
        print(f"  {'(floor: ' + label + ')':<44} {wall:6.3f} s  (cpu {cpu:.3f} s)")
    results = []
    for cmd in commands(cycle_id):
        times, cpu, lines = measure(script, cmd, url, args.runs)
        med = statistics.median(times)
        results.append((cmd, med, min(times), max(times), statistics.median(cpu), lines))
        print(f"  {'aligncycle ' + ' '.join(cmd):<44} {med:6.3f} s  (cpu {results[-1][4]:.3f} s)")
    load_after = os.getloadavg()

    from sqlalchemy.engine import make_url

    shown_url = make_url(url).render_as_string(hide_password=True)
    header = [
        "# Read commands: wall time",
        "",
        f"- date: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- store: {shown_url} ({CYCLES:,} cycles x {ACTIONS_PER_CYCLE} action items,"
        " with checklists, gaps, check-ins, retrospectives, survey answers and audit log)",
        f"- method: the installed `aligncycle` console script in a fresh process, one warm-up"
        f" run, then the median of {args.runs} runs; target < {TARGET_S} s wall each",
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}"
        " (other work on the machine slows the wall times; CPU time is the command's own)",
        "",
        "| command | median wall (s) | min (s) | max (s) | median CPU (s) | output lines |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    body = [
        f"| (floor: `python {floor_args[0]} '{floor_args[1]}'`) | {wall:.3f} | | | {cpu:.3f} | |"
        for floor_args, wall, cpu in floors
    ] + [
        f"| `aligncycle {' '.join(cmd)}` | {med:.3f} | {lo:.3f} | {hi:.3f} | {cpu:.3f} | {lines} |"
        for cmd, med, lo, hi, cpu, lines in results
    ]
    floor = f"the libraries as a command loads them, {floors[-1][1]:.3f} s wall"
    judged = verdict(
        Target(_key(cmd), f"aligncycle {' '.join(cmd)}", med, TARGET_S, floor=floor)
        for cmd, med, *_rest in results
    )
    report = "\n".join([*header, *body, "", "## Verdict", "", judged.markdown()])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print()
    print(report)
    print(f"written to {RESULTS.relative_to(PROJECT)}")
    return judged.report()


def _key(cmd: list[str]) -> str:
    """A command's target key: ``cycle-show-id`` for ``cycle show 17``."""
    return "-".join("id" if c.isdigit() else c.strip("-") for c in cmd)


if __name__ == "__main__":
    raise SystemExit(main())
