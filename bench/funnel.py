"""Funnel benchmark: import a generated 1,000,000-lead CSV, then compute every KPI, against a
straightforward pandas version of the same KPIs in the same run.

    python -m bench funnel [--rows N] [--small N] [--postgres URL] [--out FILE] [--keep DIR]
    python -m bench.funnel ...

Measures, on the embedded SQLite store (and PostgreSQL with ``--postgres``):
- import wall time and peak RSS, each import in a fresh child process, for ``--small`` rows
  (default 250,000) and ``--rows`` rows (default 1,000,000): memory must not grow with the file;
- KPI time: every KPI over a one-year window, overall, by channel and by month (best of 5);
- the pandas version: read the same columns from the store (``pandas.read_sql``) and compute the
  same KPIs; reported as load + compute (what a pandas dashboard does) and compute alone; and
  its numbers are checked against the SQL ones.

Targets: import < 60 s with memory flat in the file size; all KPIs < 2 s and >= 5x faster than
pandas. Results go to bench/results/funnel.md (``--out``). Needs pandas (``pip install .[bench]``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.verdict import Target, verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "funnel.md"

MAPPING = """
name: bench
source: bench
fields:
  external_id: id
  channel: channel
  campaign: campaign
  owner: owner
  team: team
  mql_at: mql_at
  first_touch_at: first_touch_at
  sql_at: sql_at
  rejected_at: rejected_at
  rejection_reason: reason
  opportunity_at: opportunity_at
  won_at: won_at
  lost_at: lost_at
  amount: amount
"""
HEADER = [
    "id",
    "channel",
    "campaign",
    "owner",
    "team",
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "reason",
    "opportunity_at",
    "won_at",
    "lost_at",
    "amount",
]
CHANNELS = [
    "organic_search",
    "paid_search",
    "social",
    "email",
    "referral",
    "direct_traffic",
    "display",
    "events",
    "partners",
    "other",
]
REASONS = ["bad fit", "no budget", "no intent", "duplicate", "bad data", "competitor"]
WINDOW = (date(2024, 1, 1), date(2024, 12, 31))  # the KPI window: one year of two
AS_OF = datetime(2025, 1, 15, tzinfo=UTC)
SLA_HOURS = 24


# --- data ----------------------------------------------------------------------------------------


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A plausible funnel: MQLs over 2023-2024; 85% touched (latency ~ exponential, mean 20 h);
    70% of the touched decided (60% accepted); half the accepted become opportunities; 30% of
    those won, 40% lost."""
    rnd = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    span = 2 * 365 * 86400
    fmt = "%Y-%m-%d %H:%M:%S"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            mql = start + timedelta(seconds=rnd.randrange(span))
            row = [
                f"L{i:08d}",
                rnd.choice(CHANNELS),
                f"campaign-{rnd.randrange(200):03d}",
                f"rep{rnd.randrange(50):02d}",
                "sales" if rnd.random() < 0.8 else "partners",
                mql.strftime(fmt),
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            ]
            if rnd.random() < 0.85:
                touch = mql + timedelta(hours=rnd.expovariate(1 / 20))
                row[6] = touch.strftime(fmt)
                if rnd.random() < 0.7:
                    decided = touch + timedelta(hours=rnd.expovariate(1 / 30))
                    if rnd.random() < 0.6:
                        row[7] = decided.strftime(fmt)
                        if rnd.random() < 0.5:
                            opp = decided + timedelta(days=rnd.expovariate(1 / 5))
                            row[10] = opp.strftime(fmt)
                            u = rnd.random()
                            close = opp + timedelta(days=rnd.expovariate(1 / 30))
                            if u < 0.3:
                                row[11] = close.strftime(fmt)
                                row[13] = f"{rnd.randrange(1000, 50000)}.{rnd.randrange(100):02d}"
                            elif u < 0.7:
                                row[12] = close.strftime(fmt)
                    else:
                        row[8] = decided.strftime(fmt)
                        row[9] = rnd.choice(REASONS)
            w.writerow(row)


# --- child processes: one import or one KPI run, so peak memory is measured per run ---------------


def _child_import(csv_path: str, url: str) -> dict:
    from migrations import runner
    from models.db import Store
    from models.funnel.importer import import_files
    from models.funnel.mapping import parse_mapping

    store = Store(url)
    runner.upgrade(store.engine)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, cpu = time.perf_counter(), time.process_time()
    with store.unit_of_work() as s:
        summary = import_files(s, [Path(csv_path)], parse_mapping(MAPPING))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    store.dispose()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": summary.rows,
        "new": summary.new,
        "rejected": summary.rejected,
        "rss_before_mb": base / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _best(fn, runs: int = 5) -> tuple[float, float, object]:  # noqa: ANN001
    """(best wall seconds, CPU seconds of that run, result) of ``runs`` calls."""
    best = (float("inf"), 0.0, None)
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if wall < best[0]:
            best = (wall, cpu, result)
    return best


def _sql_kpis(url: str) -> dict[str, tuple[float, float, object]]:
    from models.db import Store
    from models.funnel.kpis import compute_kpis

    store = Store(url)

    def run(by: str | None):  # noqa: ANN202
        with store.unit_of_work() as s:
            return compute_kpis(
                s, start=WINDOW[0], end=WINDOW[1], by=by, as_of=AS_OF, sla_hours=SLA_HOURS
            )

    out = {by or "overall": _best(lambda by=by: run(by)) for by in (None, "channel", "month")}
    store.dispose()
    return out


COLUMNS = [
    "channel",
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "rejection_reason",
    "opportunity_at",
    "won_at",
    "lost_at",
    "amount_cents",
]


def _pandas_load(url: str):  # noqa: ANN202
    import pandas as pd
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        df = pd.read_sql(text(f"SELECT {', '.join(COLUMNS)} FROM funnel_records"), conn)
    engine.dispose()
    return df


def pandas_kpis(
    df,
    start: date,
    end: date,
    as_of: datetime,
    sla_hours: float,  # noqa: ANN001
    stall_days: int = 30,
) -> dict[str, float | None]:
    """The same KPIs, written the obvious way with pandas (timestamps are epoch seconds)."""
    s = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    e = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp()) + 86400
    now = int(as_of.timestamp())
    sla = sla_hours * 3600
    c = df[df.mql_at.notna() & (df.mql_at >= s) & (df.mql_at < e)]
    mqls = len(c)
    touched = c.first_touch_at.notna()
    accepted = c.sql_at.notna()
    rejected_only = c.rejected_at.notna() & ~accepted
    decided = (accepted | c.rejected_at.notna()).sum()
    latency = (c.first_touch_at - c.mql_at)[touched].clip(lower=0)
    stages = ["first_touch_at", "sql_at", "rejected_at", "opportunity_at", "won_at", "lost_at"]
    open_ = c.won_at.isna() & c.lost_at.isna() & ~rejected_only
    progressed = touched | accepted | c.opportunity_at.notna()
    last = c[["first_touch_at", "sql_at", "opportunity_at"]].max(axis=1)
    won_in = df.won_at.notna() & (df.won_at >= s) & (df.won_at < e)
    lost_in = df.lost_at.notna() & (df.lost_at >= s) & (df.lost_at < e)
    begin = df.opportunity_at.fillna(df.sql_at).fillna(df.mql_at)
    cycle = (df.won_at - begin)[won_in & begin.notna()].clip(lower=0)
    won, lost = int(won_in.sum()), int(lost_in.sum())
    reasons = c[rejected_only].rejection_reason.fillna("(no reason given)").value_counts()

    def div(a, b):  # noqa: ANN001, ANN202
        return a / b if b else None

    return {
        "mql_volume": float(mqls),
        "mql_to_sql_rate": div(accepted.sum(), mqls),
        "mql_to_won_rate": div(c.won_at.notna().sum(), mqls),
        "sales_acceptance_rate": div(decided - rejected_only.sum(), decided),
        "sales_rejection_rate": div(rejected_only.sum(), decided),
        "top_reason": reasons.index[0] if len(reasons) else None,
        "handoff_latency_median_hours": latency.quantile(0.5) / 3600,
        "handoff_latency_p90_hours": latency.quantile(0.9) / 3600,
        "sla_attainment": div(
            (touched & (c.first_touch_at - c.mql_at <= sla)).sum(),
            (touched | (c.mql_at + sla <= now)).sum(),
        ),
        "untouched_leads": float(c[stages].isna().all(axis=1).sum()),
        "stalled_leads": float((open_ & progressed & (last < now - stall_days * 86400)).sum()),
        "win_rate": div(won, won + lost),
        "sales_cycle_median_days": cycle.median() / 86400,
        "revenue_won": df.amount_cents[won_in].sum() / 100,
    }


def _pandas_by_channel(df) -> None:  # noqa: ANN001
    for _channel, part in df.groupby("channel"):
        pandas_kpis(part, *WINDOW, AS_OF, SLA_HOURS)


def _pandas_by_month(df) -> None:  # noqa: ANN001
    import pandas as pd

    month = pd.to_datetime(df.mql_at, unit="s").dt.strftime("%Y-%m")
    for _m, part in df.groupby(month):
        pandas_kpis(part, *WINDOW, AS_OF, SLA_HOURS)


def _child_kpis(url: str) -> dict:
    sql = _sql_kpis(url)
    overall = sql["overall"][2].overall()
    values = {k: v.value for k, v in overall.items()}
    values["top_reason"] = overall["sales_rejection_rate"].detail["top_reasons"][0]["reason"]
    load = _best(lambda: _pandas_load(url))
    df = load[2]
    pandas = {
        "overall": _best(lambda: pandas_kpis(df, *WINDOW, AS_OF, SLA_HOURS)),
        "channel": _best(lambda: _pandas_by_channel(df)),
        "month": _best(lambda: _pandas_by_month(df)),
    }
    pd_values = pandas["overall"][2]
    mismatches = []
    for k, v in values.items():
        p = pd_values[k]
        if k == "top_reason":
            ok = v == p
        else:
            ok = v is not None and abs(float(v) - float(p)) <= 1e-9 * max(1.0, abs(float(p)))
        if not ok:
            mismatches.append(f"{k}: sql {v!r} pandas {p!r}")
    return {
        "sql": {k: v[:2] for k, v in sql.items()},
        "pandas_load": load[:2],
        "pandas": {k: v[:2] for k, v in pandas.items()},
        "values": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()},
        "mismatches": mismatches,
    }


def _run_child(kind: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "bench.funnel", "--child", kind, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench funnel", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--small", type=int, default=250_000)
    p.add_argument("--postgres", metavar="URL", default=os.environ.get("BENCH_POSTGRES_URL"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--keep", type=Path, help="Keep the generated CSVs and SQLite files here.")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        kind, *rest = args.child
        result = _child_import(*rest) if kind == "import" else _child_kpis(*rest)
        print(json.dumps(result))
        return 0
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("error: the funnel benchmark needs pandas: pip install '.[bench]'", file=sys.stderr)
        return 2

    load_start = os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="aligncycle-bench-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    files = {}
    for n in (args.small, args.rows):
        path = work / f"leads-{n}.csv"
        if not path.exists():
            t = time.perf_counter()
            generate(path, n)
            print(
                f"generated {n:,} leads ({path.stat().st_size / 2**20:.0f} MiB) in "
                f"{time.perf_counter() - t:.1f} s",
                flush=True,
            )
        files[n] = path

    from bench.pg import create_database, drop_database

    backends = [("SQLite (embedded)", None)]
    if args.postgres:
        backends.append(("PostgreSQL", args.postgres))
    results = {}
    for label, admin in backends:
        imports = {}
        kpi = None
        for n, path in files.items():
            if admin is None:
                db = work / f"bench-{n}.db"
                db.unlink(missing_ok=True)
                url, pg_name = f"sqlite:///{db}", None
            else:
                url, pg_name = create_database(admin, "aligncycle_bench")
            try:
                imports[n] = _run_child("import", str(path), url)
                print(
                    f"{label}: imported {n:,} rows in {imports[n]['seconds']:.1f} s, "
                    f"peak RSS {imports[n]['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                if n == args.rows:
                    kpi = _run_child("kpis", url)
            finally:
                if pg_name:
                    drop_database(admin, pg_name)
        results[label] = (imports, kpi, admin)

    say("# Funnel benchmark (`python -m bench funnel`)")
    say("")
    say(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {__import__('pandas').__version__}. Load average at start "
        f"{load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f} (other work on the machine "
        "slows wall time; CPU time is this process alone)."
    )
    say("")
    say(
        f"Data: generated leads with MQLs over 2023-2024 (`generate()` in bench/funnel.py); "
        f"KPI window {WINDOW[0]}..{WINDOW[1]} (one year, about half the leads), SLA "
        f"{SLA_HOURS} h. Targets: import < 60 s with peak memory flat in the file size; every "
        "KPI < 2 s and >= 5x faster than pandas."
    )
    for label, (imports, kpi, admin) in results.items():
        say("")
        say(f"## {label}")
        say("")
        say("| import | rows | wall time | CPU (client) | rows/s (wall) | peak RSS | RSS before |")
        say("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n, r in imports.items():
            say(
                f"| {n:,} leads | {r['rows']:,} | {r['seconds']:.1f} s | {r['cpu']:.1f} s | "
                f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_mb']:.0f} MB | "
                f"{r['rss_before_mb']:.0f} MB |"
            )
        small, big = imports[args.small], imports[args.rows]
        growth = big["peak_rss_mb"] - small["peak_rss_mb"]
        say("")
        say(
            f"Memory: {args.rows / args.small:g}x the rows, peak RSS {growth:+.0f} MB "
            f"({small['peak_rss_mb']:.0f} → {big['peak_rss_mb']:.0f} MB)."
        )
        if kpi is None:
            continue
        load_wall, load_cpu = kpi["pandas_load"]
        say("")
        say(
            f"KPIs over {args.rows:,} leads, best of 5 (wall / CPU of this process; on "
            "PostgreSQL the server's CPU is not in the CPU column, so only wall times compare):"
        )
        say("")
        say(
            "| every KPI | SQL (aligncycle) | pandas: compute only | pandas: read_sql + compute "
            "| SQL vs pandas (read + compute): wall | same: CPU |"
        )
        say("| --- | ---: | ---: | ---: | ---: | ---: |")
        for k in ("overall", "channel", "month"):
            sw, sc = kpi["sql"][k]
            pw, pc = kpi["pandas"][k]
            name = {"overall": "overall", "channel": "--by channel", "month": "--by month"}[k]
            cpu_ratio = "n/a" if admin else f"{(load_cpu + pc) / sc:.1f}x"
            say(
                f"| {name} | {sw * 1000:,.0f} / {sc * 1000:,.0f} ms | "
                f"{pw * 1000:,.0f} / {pc * 1000:,.0f} ms | "
                f"{(load_wall + pw) * 1000:,.0f} / {(load_cpu + pc) * 1000:,.0f} ms | "
                f"{(load_wall + pw) / sw:.1f}x | {cpu_ratio} |"
            )
        say("")
        say(
            f"pandas `read_sql` of the {len(COLUMNS)} columns: {load_wall * 1000:,.0f} ms wall / "
            f"{load_cpu * 1000:,.0f} ms CPU (best of 5)."
        )
        if kpi["mismatches"]:
            say("")
            say("**The pandas numbers differ:** " + "; ".join(kpi["mismatches"]))
        else:
            say("")
            say(
                "pandas and SQL agree on every KPI (overall): "
                + ", ".join(f"{k} {v}" for k, v in kpi["values"].items())
                + "."
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")
    tmp.cleanup()
    return verdict(_targets(results, args)).report()


def _targets(results: dict, args: argparse.Namespace) -> list[Target]:
    """The targets of the docstring, per backend, for ``bench.verdict``."""
    out = []
    for label, (imports, kpi, _admin) in results.items():
        b = "pg" if "PostgreSQL" in label else "sqlite"
        small, big = imports[args.small], imports[args.rows]
        out += [
            Target(f"{b}-import", f"{label}: import {args.rows:,} leads", big["seconds"], 60.0),
            Target(
                f"{b}-memory",
                f"{label}: peak RSS importing {args.rows:,} leads",
                big["peak_rss_mb"],
                small["peak_rss_mb"] * 1.1,
                "MB",
                f"the {args.small:,}-lead import, {small['peak_rss_mb']:.0f} MB (flat: +10%)",
            ),
        ]
        for k, (sw, _sc) in (kpi or {}).get("sql", {}).items():
            pandas = kpi["pandas_load"][0] + kpi["pandas"][k][0]
            floor = f"pandas read_sql + compute, {pandas * 1000:,.0f} ms"
            out += [
                Target(f"{b}-kpis-{k}", f"{label}: every KPI, {k}", sw, 2.0),
                Target(
                    f"{b}-vs-pandas-{k}",
                    f"{label}: {k}, SQL against pandas",
                    pandas / sw,
                    5.0,
                    "x",
                    floor,
                    at_least=True,
                ),
            ]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
