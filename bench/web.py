"""How fast the web app answers, with several people using it at once.

Builds (once, cached in the temp folder) an embedded SQLite store of 200 cycles with 50 action
items each (10,000) at ``--scale 1``, their checklists, gaps, check-ins, survey answers and
audit log (the builder of ``bench.read_commands``, scaled); ``--scale 10`` builds 2,000 cycles
(100,000 action items): ten times the history (the newest 40 cycles are open at every scale,
the rest closed, going back 16 years), as a company has after years of use. It starts the app
with uvicorn in a separate process on 127.0.0.1 and a free port (as many worker processes as
``aligncycle serve`` starts on this machine, or ``--workers``), and sends a bounded number of
requests from concurrent clients (httpx, a process each, loopback only). Reports p50/p95/max
per page and API read against the target (p95 < 100 ms for the board, a cycle page, My work
and a cycle's actions page; p95 < 300 ms for the Numbers page over ``--leads`` leads with
their deals, imported through the CRM importer: 1,000,000 by default at 1x, none at other
scales, since the Numbers page reads only the leads and the scale changes the cycles) beside a
floor measured the same way in the same run (``GET /api/v1/me``: the sign-in lookup and the
framework), with a verdict per target and a non-zero exit when one is missed
(``bench/verdict.py``), and the number of SQL statements each request runs (counted
in-process with a SQLAlchemy event listener).

    python -m bench web [--scale 1|10] [--clients 4] [--requests 120] [--workers N]
                        [--leads N] [--rebuild] [--url URL]

The Numbers page's KPIs are cached per import (a new import is a new data version), so the
served rows measure the page as people meet it between imports; the first view of each
period and grouping after an import (nothing cached) is timed in-process and reported beside
them.

Results: printed, and written to ``bench/results/web.md`` (``web-10x.md`` at ``--scale 10``).

Why one file of this size: the store it sizes, the pages it times and the report of both change
together (the builder itself is ``bench.read_commands``'s).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from bench.verdict import Target, verdict

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results" / "web.md"
TARGET_MS = 100.0
TARGETED = ("board", "cycle page", "my work", "actions page")
NUMBERS_TARGET_MS = 300.0
LEADS = 1_000_000
#: (row name, query string): the page as a lead opens it on a period of the generated data, and
#: the groupings people choose (the data runs from 2023 to 2024; see bench.funnel).
NUMBERS_VIEWS = (
    ("numbers page", "from=2024-10-01&to=2024-12-31"),
    ("numbers by channel", "from=2024-10-01&to=2024-12-31&by=channel"),
    ("numbers by owner and month", "from=2024-01-01&to=2024-12-31&by=owner&then_by=month"),
)
FLOOR = "floor: api me"
CYCLES, ACTIONS_PER_CYCLE, OPEN_CYCLES = 200, 50, 40  # at --scale 1
DATA_VERSION = 1


def cycles_at(scale: int) -> int:
    """Cycles in the store at ``scale``: the history grows, the open cycles stay 40."""
    return CYCLES * scale


def results_file(scale: int) -> Path:
    return RESULTS if scale == 1 else RESULTS.with_name(f"web-{scale}x.md")


def _cache_path(leads: int, scale: int = 1) -> Path:
    import hashlib

    from migrations import runner

    heads = "-".join(sorted(runner.heads()))
    # every migration's file, not the head alone: two branches can reach the same head number
    # by different paths (a store cached on one lacks the other's columns)
    versions = Path(runner.__file__).resolve().parent / "versions"
    chain = hashlib.sha1(
        "\n".join(sorted(p.name for p in versions.glob("*.py"))).encode()
    ).hexdigest()[:8]
    size = f"{leads}" + (f"-x{scale}" if scale != 1 else "")
    name = f"web-v{DATA_VERSION}-{heads}-{chain}-{size}.db"
    return Path(tempfile.gettempdir()) / "aligncycle-bench" / name


def build(url: str, leads: int, scale: int = 1) -> None:
    """The read_commands builder at this benchmark's size (200 x ``scale`` cycles x 50 action
    items), and ``leads`` generated leads with their deals imported as a CRM export would be."""
    from bench import read_commands as rc

    saved = rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES
    rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES = (
        cycles_at(scale),
        ACTIONS_PER_CYCLE,
        OPEN_CYCLES,
    )
    try:
        rc.build(url)
    finally:
        rc.CYCLES, rc.ACTIONS_PER_CYCLE, rc.OPEN_CYCLES = saved
    if leads:
        import_funnel(url, leads)


def import_funnel(url: str, leads: int) -> None:
    from bench import funnel
    from models.db import Store
    from models.funnel.importer import import_files
    from models.funnel.mapping import parse_mapping

    with tempfile.TemporaryDirectory(prefix="aligncycle-web-bench-") as tmp:
        paths = Path(tmp) / "leads.csv", Path(tmp) / "deals.csv"
        funnel.generate_leads_deals(*paths, leads)
        store = Store(url)
        with store.unit_of_work() as s:
            import_files(s, list(paths), parse_mapping(funnel.LEADS_DEALS_MAPPING))
        store.dispose()


def ensure_store(
    url: str | None, rebuild: bool, leads: int, scale: int = 1
) -> tuple[str, float | None]:
    if url is not None:
        return url, None
    path = _cache_path(leads, scale)
    if rebuild or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        same_scale = "web-*.db*" if scale == 1 else f"web-*-x{scale}.db*"
        for stale in path.parent.glob(same_scale):
            if scale != 1 or "-x" not in stale.name:  # another scale's store stays
                stale.unlink()
        partial = path.with_suffix(".building")
        partial.unlink(missing_ok=True)
        started = time.perf_counter()
        build(f"sqlite:///{partial}", leads, scale)
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
        *((name, "manager", f"/numbers?{query}", False) for name, query in NUMBERS_VIEWS),
    ]


def first_views(url: str) -> dict[str, float]:
    """Milliseconds of each Numbers view's first computation after an import (nothing cached),
    in-process: the work one person waits for once per view and import."""
    from datetime import date as day
    from urllib.parse import parse_qs

    import models.tables  # noqa: F401 - every mapper, as the app has them (imports name people)
    from models.db import Store
    from models.funnel import numbers as n

    store = Store(url)
    out = {}
    for name, query in NUMBERS_VIEWS:
        q = {k: v[0] for k, v in parse_qs(query).items()}
        n._cache.clear()
        with store.unit_of_work() as s:
            started = time.perf_counter()
            n.numbers(
                s,
                n.NumbersQuery(
                    start=day.fromisoformat(q["from"]),
                    end=day.fromisoformat(q["to"]),
                    by=[b for b in (q.get("by"), q.get("then_by")) if b],
                ),
            )
            out[name] = (time.perf_counter() - started) * 1000
    store.dispose()
    return out


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
            "aligncycle.web:serve_app",  # as `aligncycle serve` starts it
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


CLIENT_TIMEOUT_S = 30.0


def _client_run(job: tuple[str, dict, str, str, int]) -> tuple[list[float], str]:
    """One client (its own process, like a separate browser): ``count`` requests, their
    latencies in ms, and why it stopped early ("" when every request answered 200): a request
    with no answer within the timeout, an error status or a lost connection ends this client's
    run and is reported as the view's missed target, never as a traceback."""
    import httpx

    base, creds, name, path, count = job
    times: list[float] = []
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT_S) as c:
        c.cookies.set("aligncycle_session", creds["cookie"])
        c.headers["Authorization"] = f"Bearer {creds['token']}"
        for i in range(count):
            started = time.perf_counter()
            try:
                resp = c.get(path)
            except httpx.TimeoutException:
                return times, f"no answer within {CLIENT_TIMEOUT_S:g} s (request {i + 1})"
            except httpx.HTTPError as exc:
                return times, f"request {i + 1} failed: {type(exc).__name__}"
            times.append((time.perf_counter() - started) * 1000)
            if resp.status_code != 200:
                return times, f"answered {resp.status_code} (request {i + 1})"
    return times, ""


def _failure(stage: str, chunks: list[tuple[list[float], str]]) -> str:
    """The first client's reason for stopping, with how many of the clients stopped."""
    reasons = [why for _, why in chunks if why]
    if not reasons:
        return ""
    of = f"{len(reasons)} of {len(chunks)} clients" if len(chunks) > 1 else "the client"
    return f"{stage}: {reasons[0]}; {of}"


def measure(base: str, who: dict, eps: list, clients: int, requests: int) -> dict[str, dict]:
    """Each client is a process of its own (one thread each), so a client waiting for the GIL
    never shows up as server latency. A view whose requests fail or time out gets an
    ``error`` (its reason) instead of timings; the other views are still measured."""
    import multiprocessing

    import httpx

    results: dict[str, dict] = {}
    per_client = max(1, requests // clients)
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        for name, persona, path, _api in eps:
            creds = who[persona]
            warm = pool.map(_client_run, [(base, creds, name, path, 2)] * clients)
            if why := _failure("warm-up", warm):
                results[name] = {"error": why}
                print(f"{name}: {why}", file=sys.stderr)
                continue
            started = time.perf_counter()
            chunks = pool.map(_client_run, [(base, creds, name, path, per_client)] * clients)
            wall = time.perf_counter() - started
            if why := _failure("timed run", chunks):
                results[name] = {"error": why}
                print(f"{name}: {why}", file=sys.stderr)
                continue
            times = sorted(t for chunk, _ in chunks for t in chunk)
            try:
                with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT_S) as c:
                    c.cookies.set("aligncycle_session", creds["cookie"])
                    c.headers["Authorization"] = f"Bearer {creds['token']}"
                    size = len(c.get(path).content)
            except httpx.HTTPError:
                size = 0
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
    leads: int,
    first: dict[str, float],
    scale: int = 1,
    loads: tuple[str, str] = ("?", "?"),
    member: str = "",
) -> str:
    from aligncycle.cli_common import display_url

    cycles = cycles_at(scale)
    numbers = f"; p95 < {NUMBERS_TARGET_MS:.0f} ms for each Numbers view" if leads else ""
    lines = [
        f"# Web app: pages and API reads under concurrent clients ({scale}x data)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m bench web --scale "
        f"{scale}` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; store {display_url(url)}"
        + (f" (built in {built:.0f} s)" if built else "")
        + f". The machine is shared with other engineers' work: load average {loads[0]} at the "
        f"start, {loads[1]} at the end.",
        f"Data ({scale}x): {cycles:,} cycles ({OPEN_CYCLES} open, the rest closed: "
        f"about {max(1, round(cycles * 3 / 365))} years of history), "
        f"{cycles * ACTIONS_PER_CYCLE:,} action items, "
        "their checklists, gaps, check-ins, survey answers and audit log; "
        + (
            f"{leads:,} leads with their deals (bench.funnel's generator, imported by the CRM "
            "importer). "
            if leads
            else "no funnel data (no Numbers page rows: `--leads N`, 1,000,000 by default at 1x). "
        )
        + f"My work is the member with the most open work ({member}). "
        "Server: `aligncycle serve`'s uvicorn "
        f"with {workers} worker process{'es' if workers > 1 else ''} on 127.0.0.1; "
        f"{clients} concurrent clients (httpx, a process each); {requests} requests "
        "per row after a warm-up. Targets: p95 < 100 ms for the board, a cycle page, My "
        f"work and a cycle's actions page{numbers}.",
        "",
        "| read | p50 ms | p95 ms | max ms | req/s | KiB | SQL statements | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in timing.items():
        limit = _limit(name)
        if "error" in t:
            lines.append(
                f"| {name} | – | – | – | – | – | {counts.get(name, '')} | "
                f"{'MISSED' if limit else 'failed'}: {t['error']} |"
            )
            continue
        target = ("met" if t["p95"] < limit else "MISSED") if limit else ""
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
    if first:
        lines += [
            "",
            "First view after an import (nothing cached yet; in-process, one run each):",
            "",
            "| Numbers view | ms |",
            "|---|---:|",
            *(f"| {name} | {ms:.0f} |" for name, ms in first.items()),
        ]
    return "\n".join(lines) + "\n"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _limit(name: str) -> float | None:
    if name in TARGETED:
        return TARGET_MS
    if any(name == view for view, _ in NUMBERS_VIEWS):
        return NUMBERS_TARGET_MS
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench web", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="data size: 1 = 200 cycles, 10,000 action items; 10 = ten times the history",
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=120, help="per read (bounded)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--url", help="measure this store instead (it must hold bench data)")
    parser.add_argument(
        "--workers",
        type=int,
        help="uvicorn worker processes (default: what `aligncycle serve` starts here)",
    )
    parser.add_argument(
        "--leads",
        type=int,
        help=f"funnel leads in the store (0: none; default {LEADS:,} at --scale 1, else 0)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    args = parser.parse_args(argv or [])
    if not 1 <= args.clients <= 32 or not 10 <= args.requests <= 5000:
        parser.error("--clients 1..32, --requests 10..5000")
    if not 1 <= args.scale <= 50:
        parser.error("--scale 1..50 (1: 200 cycles; 10: 2,000 cycles)")
    if args.leads is None:
        args.leads = LEADS if args.scale == 1 else 0
    if args.leads < 0:
        parser.error("--leads takes a whole number of leads, 0 or more")
    load_start = _load()
    if args.workers is None:
        from aligncycle.settings import Settings

        args.workers = Settings().effective_workers
    url, built = ensure_store(args.url, args.rebuild, args.leads, args.scale)
    who = sign_in(url)
    eps = endpoints(who)
    if not args.leads:
        eps = [e for e in eps if _limit(e[0]) != NUMBERS_TARGET_MS]
    data_dir = tempfile.mkdtemp(prefix="aligncycle-web-bench-")
    proc, base = start_server(url, data_dir, args.workers)
    try:
        timing = measure(base, who, eps, args.clients, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    counts = statements(url, who, eps, data_dir)
    first = first_views(url) if args.leads else {}
    text = report(
        url,
        built,
        args.clients,
        args.requests,
        args.workers,
        timing,
        counts,
        args.leads,
        first,
        args.scale,
        (load_start, _load()),
        who["member"]["email"],
    )
    floor_p95 = timing[FLOOR].get("p95")
    floor = "GET /api/v1/me (the sign-in lookup and the framework), " + (
        f"p95 {floor_p95:.1f} ms" if floor_p95 is not None else timing[FLOOR]["error"]
    )
    judged = verdict(
        Target(
            n.replace(" ", "-"),
            f"{n}, p95",
            timing[n].get("p95", math.nan),
            limit,
            "ms",
            floor,
            reason=timing[n].get("error", ""),
        )
        for n in timing
        if (limit := _limit(n))
    )
    text += "\n## Verdict\n\n" + judged.markdown()
    print(text)
    if not args.no_write:
        out = results_file(args.scale)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return judged.report()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
