"""How fast the web app answers, with several people using it at once.

Builds (once, cached in the temp folder) an embedded SQLite store of 200 cycles with 50 action
items each (10,000), their checklists, gaps, check-ins, survey answers and audit log (the
builder of ``bench.read_commands``, scaled), starts the app with uvicorn in a separate process
on 127.0.0.1 and a free port (as many worker processes as ``aligncycle serve`` starts on this
machine, or ``--workers``), and sends a bounded number of requests from concurrent clients
(httpx, a process each, loopback only). Reports p50/p95/max per page and API read against the
target (p95 < 100 ms for the board, a cycle page and My work) beside a floor measured the same
way in the same run (``GET /api/v1/me``: the sign-in lookup and the framework), with a verdict
per target and a non-zero exit when one is missed (``bench/verdict.py``), and the number of SQL
statements each request runs (counted in-process with a SQLAlchemy event listener).

    python -m bench web [--clients 4] [--requests 120] [--workers N] [--rebuild] [--url URL]

Results: printed, and written to ``bench/results/web.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

from bench.verdict import Target, verdict

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results" / "web.md"
TARGET_MS = 100.0
TARGETED = ("board", "cycle page", "my work")
FLOOR = "floor: api me"
CYCLES, ACTIONS_PER_CYCLE, OPEN_CYCLES = 200, 50, 40
DATA_VERSION = 1


def _cache_path() -> Path:
    from migrations import runner

    heads = "-".join(sorted(runner.heads()))
    return Path(tempfile.gettempdir()) / "aligncycle-bench" / f"web-v{DATA_VERSION}-{heads}.db"


def build(url: str) -> None:
    """The read_commands builder at this benchmark's size (200 cycles x 50 action items)."""
    from bench import read_commands as rc

    saved = rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES
    rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES = CYCLES, ACTIONS_PER_CYCLE, OPEN_CYCLES
    try:
        rc.build(url)
    finally:
        rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES = saved


def ensure_store(url: str | None, rebuild: bool) -> tuple[str, float | None]:
    if url is not None:
        return url, None
    path = _cache_path()
    if rebuild or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("web-*.db*"):
            stale.unlink()
        partial = path.with_suffix(".building")
        partial.unlink(missing_ok=True)
        started = time.perf_counter()
        build(f"sqlite:///{partial}")
        partial.rename(path)
        return f"sqlite:///{path}", time.perf_counter() - started
    return f"sqlite:///{path}", None


def sign_in(url: str) -> dict[str, dict[str, str]]:
    """Sessions and tokens for a manager, a member and a point person (made in the store)."""
    from sqlalchemy import delete, func, select

    from models.accounts import ApiToken, WebSession
    from models.db import Store
    from models.services import accounts
    from models.services.common import person_by_email
    from models.tables import ActionItem, Cycle, Person

    store = Store(url)
    out: dict[str, dict[str, str]] = {}
    with store.unit_of_work() as s:
        s.execute(delete(WebSession))
        s.execute(delete(ApiToken))
        # the member with the most unfinished items in open cycles: the heaviest My work
        member = s.execute(
            select(Person.email, func.count())
            .join(ActionItem, ActionItem.owner_id == Person.id)
            .join(Cycle, ActionItem.cycle_id == Cycle.id)
            .where(
                Person.role == "member",
                Cycle.phase.in_(("plan", "execute", "recap")),
                ActionItem.status.not_in(("done", "dropped")),
            )
            .group_by(Person.email)
            .order_by(func.count().desc())
            .limit(1)
        ).first()[0]
        execute = s.scalar(select(func.max(Cycle.id)).where(Cycle.phase == "execute"))
        for name, email in (
            ("manager", "manager0@sales.bench"),
            ("member", member),
            ("point_person", "point_person0@sales.bench"),
        ):
            person = person_by_email(s, email)
            raw, _ = accounts.create_session(s, person)
            token, _ = accounts.create_token(s, person, "bench")
            out[name] = {"cookie": raw, "token": token, "email": email}
        out["_"] = {"execute": str(execute)}
    store.dispose()
    return out


def endpoints(who: dict[str, dict[str, str]]) -> list[tuple[str, str, str, bool]]:
    """(name, persona, path, is_api)."""
    ex = who["_"]["execute"]
    return [
        (FLOOR, "manager", "/api/v1/me", True),  # the floor: sign-in lookup and the framework
        ("board", "manager", "/cycles", False),
        ("cycle page", "manager", f"/cycles/{ex}", False),
        ("my work", "member", "/my", False),
        ("actions page", "manager", f"/cycles/{ex}/actions", False),
        ("recap page", "manager", f"/cycles/{int(ex) - 20}/recap", False),
        ("api board", "manager", "/api/v1/cycles", True),
        ("api cycle", "manager", f"/api/v1/cycles/{ex}", True),
        ("api actions", "manager", f"/api/v1/cycles/{ex}/actions", True),
        ("api my work", "member", "/api/v1/me/work", True),
        ("api events", "manager", f"/api/v1/cycles/{ex}/events", True),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, data_dir: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(
        os.environ,
        ALIGNCYCLE_DATABASE_URL=url,
        ALIGNCYCLE_DATA_DIR=data_dir,
        ALIGNCYCLE_SECRET_KEY="bench",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "aligncycle.web:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        cwd=PROJECT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/login", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("error: the web app did not start within 60 s")


def _client_run(job: tuple[str, dict, str, str, int]) -> list[float]:
    """One client (its own process, like a separate browser): ``count`` requests, their
    latencies in ms."""
    import httpx

    base, creds, name, path, count = job
    with httpx.Client(base_url=base, timeout=30) as c:
        c.cookies.set("aligncycle_session", creds["cookie"])
        c.headers["Authorization"] = f"Bearer {creds['token']}"
        times = []
        for _ in range(count):
            started = time.perf_counter()
            resp = c.get(path)
            times.append((time.perf_counter() - started) * 1000)
            if resp.status_code != 200:
                raise SystemExit(f"error: {name} {path} answered {resp.status_code}")
    return times


def measure(base: str, who: dict, eps: list, clients: int, requests: int) -> dict[str, dict]:
    """Each client is a process of its own (one thread each), so a client waiting for the GIL
    never shows up as server latency."""
    import multiprocessing

    import httpx

    results: dict[str, dict] = {}
    per_client = max(1, requests // clients)
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        for name, persona, path, _api in eps:
            creds = who[persona]
            pool.map(_client_run, [(base, creds, name, path, 2)] * clients)  # warm up
            started = time.perf_counter()
            chunks = pool.map(_client_run, [(base, creds, name, path, per_client)] * clients)
            wall = time.perf_counter() - started
            times = sorted(t for chunk in chunks for t in chunk)
            with httpx.Client(base_url=base, timeout=30) as c:
                c.cookies.set("aligncycle_session", creds["cookie"])
                c.headers["Authorization"] = f"Bearer {creds['token']}"
                size = len(c.get(path).content)
            results[name] = {
                "p50": statistics.median(times),
                "p95": times[max(0, int(len(times) * 0.95) - 1)],
                "max": times[-1],
                "rps": len(times) / wall,
                "bytes": size,
            }
    return results


def statements(url: str, who: dict, eps: list, data_dir: str) -> dict[str, int]:
    """SQL statements of one request of each read, counted in this process."""
    from sqlalchemy import event

    from aligncycle.web import create_app
    from aligncycle.web.deps import WebSettings
    from models.db import Store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    store = Store(url)
    app = create_app(store, WebSettings(data_dir=data_dir, secret_key="bench"))
    counts: dict[str, int] = {}
    for name, persona, path, _api in eps:
        c = TestClient(app)
        c.cookies.set("aligncycle_session", who[persona]["cookie"])
        headers = {"Authorization": f"Bearer {who[persona]['token']}"}
        c.get(path, headers=headers)
        seen: list[int] = []

        def listener(*_args: object, seen: list[int] = seen) -> None:
            seen.append(1)

        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            c.get(path, headers=headers)
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
        counts[name] = len(seen)
    store.dispose()
    return counts


def report(
    url: str,
    built: float | None,
    clients: int,
    requests: int,
    workers: int,
    timing: dict,
    counts: dict,
) -> str:
    from aligncycle.cli_common import display_url

    lines = [
        "# Web app: pages and API reads under concurrent clients",
        "",
        f"Measured {date.today().isoformat()} with `python -m bench web` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"store {display_url(url)}" + (f" (built in {built:.0f} s)" if built else "") + ".",
        f"Data: {CYCLES} cycles, {CYCLES * ACTIONS_PER_CYCLE:,} action items, their checklists, "
        "gaps, check-ins, survey answers and audit log. Server: `aligncycle serve`'s uvicorn "
        f"with {workers} worker process{'es' if workers > 1 else ''} on 127.0.0.1; "
        f"{clients} concurrent clients (httpx, a process each); {requests} requests "
        "per row after a warm-up. Target: p95 < 100 ms for the board, a cycle page and My work.",
        "",
        "| read | p50 ms | p95 ms | max ms | req/s | KiB | SQL statements | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in timing.items():
        target = ("met" if t["p95"] < TARGET_MS else "MISSED") if name in TARGETED else ""
        lines.append(
            f"| {name} | {t['p50']:.1f} | {t['p95']:.1f} | {t['max']:.1f} | {t['rps']:.0f} | "
            f"{t['bytes'] / 1024:.0f} | {counts.get(name, '')} | {target} |"
        )
    lines += [
        "",
        "SQL statements per request are the same on the small test world and here "
        "(`tests/test_web_queries.py` checks that they do not grow with the rows shown); they "
        "include the session lookup and the savepoint-free unit of work.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench web", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=120, help="per read (bounded)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--url", help="measure this store instead (it must hold bench data)")
    parser.add_argument(
        "--workers",
        type=int,
        help="uvicorn worker processes (default: what `aligncycle serve` starts here)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    args = parser.parse_args(argv or [])
    if not 1 <= args.clients <= 32 or not 10 <= args.requests <= 5000:
        parser.error("--clients 1..32, --requests 10..5000")
    if args.workers is None:
        from aligncycle.settings import Settings

        args.workers = Settings().effective_workers
    url, built = ensure_store(args.url, args.rebuild)
    who = sign_in(url)
    eps = endpoints(who)
    data_dir = tempfile.mkdtemp(prefix="aligncycle-web-bench-")
    proc, base = start_server(url, data_dir, args.workers)
    try:
        timing = measure(base, who, eps, args.clients, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    counts = statements(url, who, eps, data_dir)
    text = report(url, built, args.clients, args.requests, args.workers, timing, counts)
    floor = f"GET /api/v1/me (the sign-in lookup and the framework), p95 {timing[FLOOR]['p95']:.1f}"
    judged = verdict(
        Target(n.replace(" ", "-"), f"{n}, p95", timing[n]["p95"], TARGET_MS, "ms", f"{floor} ms")
        for n in TARGETED
    )
    text += "\n## Verdict\n\n" + judged.markdown()
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    return judged.report()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
