"""The daily reminder + escalation run at company scale: does planning grow linearly?

Builds, for each size (default 1,000 and then 10,000 cycles in Execute x 20 action items), a
fresh store (a new PostgreSQL database, dropped at the end; or an SQLite file with
``--sqlite``), two teams of 47 people each with a personal webhook channel pointing at a local
HTTP receiver (``bench/cadence_world.py``), then measures:

1. the first run ever (the backlog: every item already due soon, overdue or past a grace
   period gets its message), without Prefect: planning (database) and delivery separately;
2. a normal day (the next day: only what crossed a threshold overnight), without Prefect,
   right after the backlog's inserts (the planner statistics of ``notifications`` are stale
   then, which is what made the old key lookup slow);
3. at the largest size, the next normal day through Prefect, as production runs it: a Prefect
   server on PostgreSQL, ``prefect deploy --all``, a process worker, ``run_deployment`` of
   ``daily-cadence`` (reminders, then escalations, in one flow run); and the day after, the
   two jobs' own flows in-process against that server.

Targets (``bench/verdict.py``; ``--target KEY=LIMIT`` changes one):

- ``planning-ratio``: a normal day's planning (reminders + escalations) at the largest size
  within 1.2 x the size ratio (12x for 10,000 against 1,000 cycles) of the smallest size's,
  measured in the same run: planning grows linearly with the data. Judged on the median of 3
  re-runs of that day per size, the sizes taking turns (see :func:`replan`); the first runs
  are in the table too;
- ``daily-run``: the whole daily run at the largest size (``daily-cadence``: both jobs, plan +
  deliver, through the worker) under 30 s (PostgreSQL with Prefect only).

    python -m bench cadence [--sizes 1000,10000] [--items 20] [--admin-url URL] [--sqlite]
                            [--no-prefect] [--out FILE]

Results: printed, and written to ``bench/results/cadence.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.cadence_world import CountingReceiver, seed
from bench.verdict import Target, Verdict, verdict

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cadence.md"
TARGET_S = 30.0  # the whole daily run through the worker
GROWTH = 1.2  # planning may grow 1.2x faster than the data
REPLANS = 3  # the normal day's planning again, per size, the sizes taking turns
ADMIN_URL = os.environ.get(
    "ALIGNCYCLE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
            "messages": delivery["messages"],
            "failed": delivery["failed"] + delivery["retrying"],
            "deliver_s": t2 - t1,
            "total_s": t2 - t0,
        }
    return out


def prefect_runs(store_url: str, day: date) -> dict[str, Any]:
    """The same two flows through a worker (as deployed), then in-process: wall time, and the
    work the flow measured itself."""
    from bench.prefect_server import POOL, PrefectStack

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
        stack.wait_for_worker()

        from prefect.deployments import run_deployment
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_RESULTS_PERSIST_BY_DEFAULT,
            temporary_settings,
        )

        with temporary_settings(
            updates={PREFECT_API_URL: stack.api_url, PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}
        ):
            for name in ("daily-cadence",):  # the daily run as deployed: one flow run
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
                out[f"worker:{name}"]["timeline"] = _timeline(run.id, wall)

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


def _timeline(flow_run_id: Any, wall: float) -> dict[str, float]:
    """Where a worker run's time went, from its states on the server: waiting for the worker
    to take it (scheduled → pending), the flow-run process starting (→ running: process,
    imports, engine), the flow itself (→ completed), and the rest of the wall time (creating
    the run, noticing its end)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    at: dict[str, float] = {}
    for st in states:
        at.setdefault(st.type.value, st.timestamp.timestamp())
    try:
        queued = at["PENDING"] - at["SCHEDULED"]
        start = at["RUNNING"] - at["PENDING"]
        body = at["COMPLETED"] - at["RUNNING"]
    except KeyError:
        return {}
    return {
        "queued_s": queued,
        "start_s": start,
        "flow_s": body,
        "rest_s": wall - queued - start - body,
    }


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
        "messages": result["delivery"].get("messages", 0),
        "state": state,
    }


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure_size(
    args: argparse.Namespace,
    cycles: int,
    receiver: CountingReceiver,
    day0: date,
    cleanup: list[Callable[[], None]],
) -> dict[str, Any]:
    """One size: a fresh store (dropped by ``cleanup`` at the end), seeded; the backlog and a
    normal day without Prefect."""
    from bench.pg import create_database, drop_database
    from models.db import Store

    out: dict[str, Any] = {"cycles": cycles, "load_before": _load()}
    if args.sqlite:
        folder = Path(tempfile.mkdtemp(prefix="aligncycle-bench-cadence-"))
        out["url"] = f"sqlite:///{folder / 'store.db'}"
        cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    else:
        out["url"], db = create_database(args.admin_url, "aligncycle_bench")
        cleanup.append(lambda: drop_database(args.admin_url, db))
    t = time.perf_counter()
    out["data"] = seed(out["url"], cycles, args.items, day0, receiver.port)
    out["seed_s"] = time.perf_counter() - t
    print(f"{cycles:,} cycles: seeded {out['data']} in {out['seed_s']:.1f} s", flush=True)
    store = Store(out["url"])
    out["backlog"] = plain_run(store, day0)
    print(f"{cycles:,} cycles, first run (backlog):", _short(out["backlog"]), flush=True)
    out["day"] = plain_run(store, day0 + timedelta(days=1))
    print(f"{cycles:,} cycles, a normal day:", _short(out["day"]), flush=True)
    store.dispose()
    out["load_after"] = _load()
    return out


def replan(runs: list[dict[str, Any]], day: date) -> None:
    """The normal day's planning (both flows) again, REPLANS times per size, the sizes taking
    turns: each size's median, measured under the same load as the others'. The machine is
    shared and its load swings from 1 to 10 within minutes; the first runs of the sizes are
    minutes apart, so their ratio measured the load as much as the code. A re-run plans
    nothing new (every key is there) but does the same work otherwise: the candidates, the
    messages, the insert that ignores known keys."""
    from flows.cadence import plan_job
    from models.db import Store

    stores = [Store(r["url"]) for r in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(REPLANS):
        for store, spent in zip(stores, times, strict=True):
            t = time.perf_counter()
            for name in ("overdue-reminders", "escalations"):
                plan_job(name, store, day)
            spent.append(time.perf_counter() - t)
    for run, store, spent in zip(runs, stores, times, strict=True):
        run["replan_s"] = statistics.median(spent)
        store.dispose()
    print(
        "re-planned, medians: "
        + ", ".join(f"{r['cycles']:,} cycles {r['replan_s']:.2f} s" for r in runs),
        flush=True,
    )


def planning_s(run: dict[str, Any]) -> float:
    """A day's planning: both flows' planning time."""
    return sum(v["plan_s"] for v in run.values())


def targets(runs: list[dict[str, Any]]) -> list[Target]:
    small, large = runs[0], runs[-1]
    size_ratio = large["cycles"] / small["cycles"]
    base, top = small["replan_s"], large["replan_s"]
    out = [
        Target(
            key="planning-ratio",
            what=f"a normal day's planning at {large['cycles']:,} cycles ({top:.2f} s, median of "
            f"{REPLANS} taking turns with the other size) against {small['cycles']:,} cycles",
            value=top / base if base > 0 else math.inf,
            limit=GROWTH * size_ratio,
            unit="x",
            floor=f"the {small['cycles']:,}-cycle day's planning, {base:.2f} s "
            f"(limit {GROWTH} x the {size_ratio:g}x size)",
        )
    ]
    worker = [v for k, v in large.get("prefect", {}).items() if k.startswith("worker:")]
    if worker:
        wall = sum(v["wall_s"] for v in worker)
        work = sum(v.get("work_s", math.nan) for v in worker)
        out.append(
            Target(
                key="daily-run",
                what=f"the daily run at {large['cycles']:,} cycles (reminders and escalations, "
                "one flow run) through the worker",
                value=wall if all(v.get("work_s") is not None for v in worker) else math.nan,
                limit=TARGET_S,
                floor=f"the same flows' own work (plan + deliver) {work:.2f} s, Prefect's "
                f"overhead {wall - work:.2f} s",
            )
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench cadence", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000",
        help="cycles per run, comma-separated, smallest first (default 1000,10000)",
    )
    parser.add_argument("--items", type=int, default=20, help="action items per cycle")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to create the DBs on")
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite files instead")
    parser.add_argument("--no-prefect", action="store_true", help="skip the Prefect runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError:
        parser.error("--sizes takes whole numbers, e.g. 1000,10000")
    if len(sizes) < 2 or sizes[0] < 1 or not 1 <= args.items <= 1000:
        parser.error("--sizes needs two sizes or more (the smallest is the floor); --items 1..1000")

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    receiver = CountingReceiver()
    day0 = date.today()
    report: dict[str, Any] = {"load": _load(), "runs": []}
    cleanup: list[Callable[[], None]] = []
    try:
        for n in sizes:
            report["runs"].append(measure_size(args, n, receiver, day0, cleanup))
        replan(report["runs"], day0 + timedelta(days=1))
        if not (args.no_prefect or args.sqlite):
            largest = report["runs"][-1]
            largest["prefect"] = prefect_runs(largest["url"], day0 + timedelta(days=2))
            for k, v in largest["prefect"].items():
                print(f"{largest['cycles']:,} cycles, {k}: {v}", flush=True)
        report["received"] = receiver.count
    finally:
        receiver.close()
        for done in cleanup:
            done()
    report["load_end"] = _load()
    judged = verdict(targets(report["runs"]))
    text = render(report, args, judged)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return judged.report()


def _short(run: dict[str, Any]) -> str:
    return "; ".join(
        f"{k}: planned {v['planned']} in {v['plan_s']:.2f} s, sent {v['sent']} in "
        f"{v['messages']} messages in {v['deliver_s']:.2f} s"
        for k, v in run.items()
    )


def render(report: dict[str, Any], args: argparse.Namespace, judged: Verdict) -> str:
    runs = report["runs"]
    d = runs[-1]["data"]
    backend = "SQLite (a new file, embedded)" if args.sqlite else "PostgreSQL (a new database)"
    lines = [
        "# Cadence: the daily reminder + escalation run",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; shared with other "
        f"engineers' work: load average {report['load']} at the start, "
        f"{report['load_end']} at the end",
        f"- store: {backend} per size: "
        + ", ".join(f"{r['cycles']:,}" for r in runs)
        + f" cycles in Execute x {args.items} action items; {d['people']} people with a "
        "personal webhook channel each (apprise json:// to a local HTTP receiver)",
        "- due dates spread over -20..+40 days; 80-85% of the items due by the last simulated "
        "day finished, 15% of the later ones; each item assigned by one lead of its owner's team",
        "- method: `python -m bench cadence`; planning = the set-based queries and batched "
        "INSERT ... ON CONFLICT (key) DO NOTHING RETURNING (one transaction, no lookup of the "
        "keys first); delivery = claim whole (channel, person) groups of pending "
        "notifications, as many as fit in 2,000 rows, in one UPDATE; send a person's "
        "reminders (or escalations) on a channel as one message through apprise listing every "
        "item (at most 50 a message); mark its rows sent in one statement at once; 4 threads, "
        "one send per destination at a time",
        "",
        "## Verdict",
        "",
        judged.markdown(),
        "## Without Prefect: database work and delivery",
        "",
        "| cycles | run | flow | planned | planning (s) | sent | messages | delivery (s) | "
        "total (s) | load before → after |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        for label, key in (("first run (backlog)", "backlog"), ("a normal day", "day")):
            for name, v in r[key].items():
                lines.append(
                    f"| {r['cycles']:,} | {label} | {name} | {v['planned']:,} | "
                    f"{v['plan_s']:.2f} | {v['sent']:,} | {v['messages']:,} | "
                    f"{v['deliver_s']:.2f} | {v['total_s']:.2f} | "
                    f"{r['load_before']} → {r['load_after']} |"
                )
    lines += [
        "",
        "A normal day's planning (both flows), per size, its first run (minutes apart, each "
        "under the load of its moment): "
        + "; ".join(f"{r['cycles']:,} cycles {planning_s(r['day']):.2f} s" for r in runs)
        + f"; ratio {planning_s(runs[-1]['day']) / planning_s(runs[0]['day']):.2f} for "
        f"{runs[-1]['cycles'] / runs[0]['cycles']:g}x the data. Re-run {REPLANS} times per "
        "size, the sizes taking turns (the median judged above): "
        + "; ".join(f"{r['cycles']:,} cycles {r['replan_s']:.2f} s" for r in runs)
        + ".",
    ]
    p = runs[-1].get("prefect")
    if p:
        lines += [
            "",
            f"## Through Prefect at {runs[-1]['cycles']:,} cycles (server on PostgreSQL, "
            "process worker)",
            "",
            f"- server start on a new database: {p['server_start_s']:.1f} s; "
            f"`prefect deploy --all`: {p['deploy_s']:.1f} s (once, not per run)",
            "",
            "| mode | flow | wall (s) | planning (s) | delivery (s) | Prefect overhead (s) | "
            "planned | sent | messages |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, v in p.items():
            if ":" not in key:
                continue
            mode, name = key.split(":", 1)
            if "work_s" not in v:
                lines.append(
                    f"| {mode} | {name} | {v['wall_s']:.2f} | – | – | – | – | {v['state']} | – |"
                )
                continue
            lines.append(
                f"| {mode} | {name} | {v['wall_s']:.2f} | {v['plan_s']:.2f} | "
                f"{v['deliver_s']:.2f} | {v['overhead_s']:.2f} | {v['planned']:,} | "
                f"{v['sent']:,} | {v['messages']:,} |"
            )
        timelines = [
            (k.split(":", 1)[1], v["timeline"])
            for k, v in p.items()
            if isinstance(v, dict) and v.get("timeline")
        ]
        if timelines:
            lines += [
                "",
                "Where a worker run's wall time went (from the flow run's states on the server):",
                "",
                "| flow | waiting for the worker (s) | process start, imports, engine (s) | "
                "the flow: tasks, plan, deliver (s) | creating the run, noticing its end (s) |",
                "|---|---:|---:|---:|---:|",
            ]
            for name, t in timelines:
                lines.append(
                    f"| {name} | {t['queued_s']:.2f} | {t['start_s']:.2f} | {t['flow_s']:.2f} | "
                    f"{t['rest_s']:.2f} |"
                )
        lines += [
            "",
            "- Prefect overhead per worker run = the worker's poll, the flow-run process start "
            "and its imports, task and state bookkeeping, the 1 s heartbeat wait of a sync "
            "flow; it does not grow with the data. The daily run is one flow run "
            "(`daily-cadence`: reminders, then escalations, each planned then delivered), so it "
            "pays that once a day",
        ]
    lines += [
        "",
        f"Messages received by the HTTP receiver: {report.get('received', 0):,} (a grouped "
        "message carries several notifications)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
