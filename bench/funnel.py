"""Funnel benchmark: import generated CSV exports, then compute every KPI, against a
straightforward pandas version of the same KPIs in the same run.

    python -m bench funnel [--rows N] [--small N] [--postgres URL] [--out FILE] [--keep DIR]
    python -m bench.funnel ...

Two shapes of data, each at ``--small`` (default 250,000) and ``--rows`` (default 1,000,000)
leads, each import in a fresh child process (memory must not grow with the file):
- **one file** (the floor from before leads and deals were apart): one row per lead with one
  deal's dates on it, imported through a single mapping (each row a lead and, when it has a
  deal's date, its deal);
- **leads + deals**: a leads file and a deals file with about 1.2 deals per lead (several per
  lead, some with no lead), imported together through a two-file mapping.

KPI time: every KPI over a one-year window, overall, by channel and by month (best of 5), on
the ``--rows`` stores of both shapes; the pandas version reads the same columns from the store
(``pandas.read_sql``) and computes the same KPIs; reported as load + compute (what a pandas
dashboard does) and compute alone; and its numbers are checked against the SQL ones.

Targets: import < 60 s with memory flat in the file size; all KPIs < 2 s and >= 5x faster than
pandas. Results go to bench/results/funnel.md (``--out``). Needs pandas (``pip install .[bench]``).

Why one file of this size: the generator, the measured import, its pandas peer and the report
stay together so the peer is always measured on the same data in the same run.
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

#: The two-file shape: leads, and deals that name their lead.
LEADS_DEALS_MAPPING = """
name: bench-leads-deals
source: bench
files:
  - name: leads
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
  - name: deals
    fields:
      deal_id: deal_id
      lead_id: lead_id
      owner: deal_owner
      stage: stage
      opportunity_at: created_at
      won_at: {column: closed_at, when: {column: stage, in: [won]}}
      lost_at: {column: closed_at, when: {column: stage, in: [lost]}}
      amount: amount
"""
LEADS_HEADER = HEADER[:10]
DEALS_HEADER = ["deal_id", "lead_id", "deal_owner", "stage", "created_at", "closed_at", "amount"]


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


def generate_leads_deals(leads_path: Path, deals_path: Path, rows: int, seed: int = 11) -> int:
    """The same leads as :func:`generate`, and deals in their own file: 0-4 per lead (about
    1.2 on average), created after the lead's last sales stage; 30% won (with an amount), 40%
    lost, the rest open; 2% of the deals name no lead (an account's deal). Returns the number
    of deals."""
    rnd = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    span = 2 * 365 * 86400
    fmt = "%Y-%m-%d %H:%M:%S"
    deals = 0
    with leads_path.open("w", newline="") as lf, deals_path.open("w", newline="") as df:
        lw, dw = csv.writer(lf), csv.writer(df)
        lw.writerow(LEADS_HEADER)
        dw.writerow(DEALS_HEADER)
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
            ]
            last = mql
            if rnd.random() < 0.85:
                touch = mql + timedelta(hours=rnd.expovariate(1 / 20))
                row[6], last = touch.strftime(fmt), touch
                if rnd.random() < 0.7:
                    decided = touch + timedelta(hours=rnd.expovariate(1 / 30))
                    if rnd.random() < 0.6:
                        row[7], last = decided.strftime(fmt), decided
                    else:
                        row[8] = decided.strftime(fmt)
                        row[9] = rnd.choice(REASONS)
            lw.writerow(row)
            n = rnd.choices((0, 1, 2, 3, 4), weights=(32, 35, 20, 9, 4))[0]
            for _ in range(n):
                created = last + timedelta(days=rnd.expovariate(1 / 5))
                u = rnd.random()
                stage = "won" if u < 0.3 else "lost" if u < 0.7 else "open"
                closed = created + timedelta(days=rnd.expovariate(1 / 30))
                dw.writerow(
                    [
                        f"D{deals:08d}",
                        "" if rnd.random() < 0.02 else row[0],
                        f"rep{rnd.randrange(50):02d}",
                        stage,
                        created.strftime(fmt),
                        closed.strftime(fmt) if stage != "open" else "",
                        f"{rnd.randrange(1000, 50000)}.{rnd.randrange(100):02d}"
                        if stage != "lost"
                        else "",
                    ]
                )
                deals += 1
    return deals


# --- child processes: one import or one KPI run, so peak memory is measured per run ---------------


def _child_import(shape: str, url: str, *csv_paths: str) -> dict:
    from migrations import runner
    from models.db import Store
    from models.funnel.importer import import_files
    from models.funnel.mapping import parse_mapping

    store = Store(url)
    runner.upgrade(store.engine)
    mapping = parse_mapping(MAPPING if shape == "one-file" else LEADS_DEALS_MAPPING)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, cpu = time.perf_counter(), time.process_time()
    with store.unit_of_work() as s:
        summary = import_files(s, [Path(p) for p in csv_paths], mapping)
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


def _sql_kpis(url: str) -> dict[str, tuple[float, float, object]]:  # noqa: D103
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


LEAD_COLUMNS = [
    "source",
    "external_id",
    "channel",
    "mql_at",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "rejection_reason",
]
DEAL_COLUMNS = ["source", "lead_key", "opportunity_at", "won_at", "lost_at", "amount_cents"]


def _pandas_load(url: str):  # noqa: ANN202
    import pandas as pd
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        leads = pd.read_sql(text(f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads"), conn)
        deals = pd.read_sql(text(f"SELECT {', '.join(DEAL_COLUMNS)} FROM deals WHERE listed"), conn)
    engine.dispose()
    # each deal with its lead's channel and dates (a left join: deals with no lead stay)
    deals = deals.merge(
        leads[["source", "external_id", "channel", "mql_at", "sql_at"]],
        how="left",
        left_on=["source", "lead_key"],
        right_on=["source", "external_id"],
    )
    return leads, deals


def pandas_kpis(
    leads,  # noqa: ANN001
    deals,  # noqa: ANN001
    start: date,
    end: date,
    as_of: datetime,
    sla_hours: float,
    stall_days: int = 30,
) -> dict[str, float | None]:
    """The same KPIs, written the obvious way with pandas (timestamps are epoch seconds)."""
    s = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    e = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp()) + 86400
    now = int(as_of.timestamp())
    sla = sla_hours * 3600
    c = leads[leads.mql_at.notna() & (leads.mql_at >= s) & (leads.mql_at < e)]
    linked = deals[deals.lead_key.notna()]
    per_lead = linked.assign(open=linked.won_at.isna() & linked.lost_at.isna()).groupby(
        ["source", "lead_key"]
    )
    summary = per_lead.agg(
        won=("won_at", "min"),
        opp_last=("opportunity_at", "max"),
        n=("lead_key", "size"),
        open=("open", "sum"),
    )
    c = c.join(summary, on=["source", "external_id"])
    mqls = len(c)
    touched = c.first_touch_at.notna()
    accepted = c.sql_at.notna()
    rejected_only = c.rejected_at.notna() & ~accepted
    has_deal = c.n.notna()
    decided = (accepted | c.rejected_at.notna()).sum()
    latency = (c.first_touch_at - c.mql_at)[touched].clip(lower=0)
    lost_lead = has_deal & c.won.isna() & (c.open == 0)
    open_ = c.won.isna() & ~lost_lead & ~rejected_only
    progressed = touched | accepted | has_deal
    last = c[["first_touch_at", "sql_at", "opp_last"]].max(axis=1)
    untouched = ~touched & ~accepted & c.rejected_at.isna() & ~has_deal
    won_in = deals.won_at.notna() & (deals.won_at >= s) & (deals.won_at < e)
    lost_in = deals.lost_at.notna() & (deals.lost_at >= s) & (deals.lost_at < e)
    open_d = deals.won_at.isna() & deals.lost_at.isna()
    open_d &= deals.opportunity_at.isna() | (deals.opportunity_at < e)
    begin = deals.opportunity_at.fillna(deals.sql_at).fillna(deals.mql_at)
    cycle = (deals.won_at - begin)[won_in & begin.notna()]
    aging = (now - deals.opportunity_at)[open_d & deals.opportunity_at.notna()]
    won, lost = int(won_in.sum()), int(lost_in.sum())
    amounts = deals.amount_cents[won_in].dropna()
    open_amounts = deals.amount_cents[open_d].dropna()
    reasons = c[rejected_only].rejection_reason.fillna("(no reason given)").value_counts()

    def div(a, b):  # noqa: ANN001, ANN202
        return a / b if b else None

    return {
        "mql_volume": float(mqls),
        "mql_to_sql_rate": div(accepted.sum(), mqls),
        "mql_to_won_rate": div(c.won.notna().sum(), mqls),
        "sales_acceptance_rate": div(decided - rejected_only.sum(), decided),
        "sales_rejection_rate": div(rejected_only.sum(), decided),
        "top_reason": reasons.index[0] if len(reasons) else None,
        "handoff_latency_median_hours": latency.quantile(0.5) / 3600,
        "handoff_latency_p90_hours": latency.quantile(0.9) / 3600,
        "sla_attainment": div(
            (touched & (c.first_touch_at - c.mql_at <= sla)).sum(),
            (touched | (c.mql_at + sla <= now)).sum(),
        ),
        "untouched_leads": float(untouched.sum()),
        "stalled_leads": float((open_ & progressed & (last < now - stall_days * 86400)).sum()),
        "win_rate": div(won, won + lost),
        "sales_cycle_median_days": cycle.median() / 86400,
        "revenue_won": amounts.sum() / 100 if len(amounts) else None,
        "average_deal_size": amounts.sum() / 100 / len(amounts) if len(amounts) else None,
        "open_pipeline_count": float(open_d.sum()),
        "open_pipeline_value": open_amounts.sum() / 100 if len(open_amounts) else None,
        "deal_aging_median_days": aging.median() / 86400 if len(aging) else None,
    }


def _pandas_by_channel(leads, deals) -> None:  # noqa: ANN001
    for channel, part in leads.groupby("channel"):
        pandas_kpis(part, deals[deals.channel == channel], *WINDOW, AS_OF, SLA_HOURS)


def _pandas_by_month(leads, deals) -> None:  # noqa: ANN001
    import pandas as pd

    lead_month = pd.to_datetime(leads.mql_at, unit="s").dt.strftime("%Y-%m")
    closed = deals.won_at.fillna(deals.lost_at).fillna(deals.opportunity_at)
    deal_month = pd.to_datetime(closed, unit="s").dt.strftime("%Y-%m")
    for m, part in leads.groupby(lead_month):
        pandas_kpis(part, deals[deal_month == m], *WINDOW, AS_OF, SLA_HOURS)


def _child_kpis(url: str) -> dict:
    sql = _sql_kpis(url)
    overall = sql["overall"][2].overall()
    values = {k: v.value for k, v in overall.items()}
    values["top_reason"] = overall["sales_rejection_rate"].detail["top_reasons"][0]["reason"]
    load = _best(lambda: _pandas_load(url))
    leads, deals = load[2]
    pandas = {
        "overall": _best(lambda: pandas_kpis(leads, deals, *WINDOW, AS_OF, SLA_HOURS)),
        "channel": _best(lambda: _pandas_by_channel(leads, deals)),
        "month": _best(lambda: _pandas_by_month(leads, deals)),
    }
    pd_values = pandas["overall"][2]
    mismatches = []
    for k, v in values.items():
        p = pd_values[k]
        if k == "top_reason" or v is None or p is None:
            ok = v == p
        else:
            ok = abs(float(v) - float(p)) <= 1e-9 * max(1.0, abs(float(p)))
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


SHAPES = {"one-file": "one file (a lead and its deal per row)", "leads-deals": "leads + deals"}


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

    files: dict[tuple[str, int], list[Path]] = {}
    deal_counts: dict[int, int] = {}
    for n in (args.small, args.rows):
        one = work / f"leads-{n}.csv"
        leads, deals = work / f"two-leads-{n}.csv", work / f"two-deals-{n}.csv"
        t = time.perf_counter()
        if not one.exists():
            generate(one, n)
        deal_counts[n] = generate_leads_deals(leads, deals, n)
        print(f"generated {n:,} leads in {time.perf_counter() - t:.1f} s", flush=True)
        files[("one-file", n)] = [one]
        files[("leads-deals", n)] = [leads, deals]

    from bench.pg import create_database, drop_database

    backends = [("SQLite (embedded)", None)]
    if args.postgres:
        backends.append(("PostgreSQL", args.postgres))
    results = {}
    for label, admin in backends:
        imports: dict[tuple[str, int], dict] = {}
        kpis: dict[str, dict] = {}
        for (shape, n), paths in files.items():
            if admin is None:
                db = work / f"bench-{shape}-{n}.db"
                db.unlink(missing_ok=True)
                url, pg_name = f"sqlite:///{db}", None
            else:
                url, pg_name = create_database(admin, "aligncycle_bench")
            try:
                imports[(shape, n)] = r = _run_child("import", shape, url, *map(str, paths))
                print(
                    f"{label}: {shape} {n:,} leads: {r['rows']:,} rows in {r['seconds']:.1f} s, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                if n == args.rows:
                    kpis[shape] = _run_child("kpis", url)
            finally:
                if pg_name:
                    drop_database(admin, pg_name)
        results[label] = (imports, kpis, admin)

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
        "Data: generated leads with MQLs over 2023-2024 (bench/funnel.py). **One file**: one "
        "row per lead with one deal's dates on it (`generate()`; the shape measured before "
        "leads and deals were apart, now imported as leads and, for the rows with a deal, "
        "deals). **Leads + deals**: a leads file and a deals file, about 1.2 deals per lead "
        f"(`generate_leads_deals()`: {deal_counts[args.rows]:,} deals for {args.rows:,} leads). "
        f"KPI window {WINDOW[0]}..{WINDOW[1]} (one year, about half the leads), SLA "
        f"{SLA_HOURS} h. Every import ends with the source's data-quality flags computed "
        "afresh. Targets: import < 60 s with peak memory flat in the file size; every KPI "
        "< 2 s and >= 5x faster than pandas."
    )
    for label, (imports, kpis, admin) in results.items():
        say("")
        say(f"## {label}")
        say("")
        say(
            "| import | rows read | wall time | CPU (client) | rows/s (wall) | peak RSS | "
            "RSS before |"
        )
        say("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (shape, n), r in imports.items():
            what = f"{SHAPES[shape]}: {n:,} leads"
            if shape == "leads-deals":
                what += f", {deal_counts[n]:,} deals"
            say(
                f"| {what} | {r['rows']:,} | {r['seconds']:.1f} s | {r['cpu']:.1f} s | "
                f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_mb']:.0f} MB | "
                f"{r['rss_before_mb']:.0f} MB |"
            )
        say("")
        for shape in SHAPES:
            small, big = imports[(shape, args.small)], imports[(shape, args.rows)]
            growth = big["peak_rss_mb"] - small["peak_rss_mb"]
            say(
                f"Memory, {SHAPES[shape]}: {args.rows / args.small:g}x the rows, peak RSS "
                f"{growth:+.0f} MB ({small['peak_rss_mb']:.0f} → {big['peak_rss_mb']:.0f} MB)."
            )
        for shape, kpi in kpis.items():
            load_wall, load_cpu = kpi["pandas_load"]
            say("")
            say(
                f"KPIs over the {args.rows:,}-lead store, {SHAPES[shape]}, best of 5 (wall / "
                "CPU of this process; on PostgreSQL the server's CPU is not in the CPU column, "
                "so only wall times compare):"
            )
            say("")
            say(
                "| every KPI | SQL (aligncycle) | pandas: compute only | pandas: read_sql + "
                "compute | SQL vs pandas (read + compute): wall | same: CPU |"
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
                f"pandas `read_sql` of leads and deals (and their join): {load_wall * 1000:,.0f} "
                f"ms wall / {load_cpu * 1000:,.0f} ms CPU (best of 5)."
            )
            say("")
            if kpi["mismatches"]:
                say("**The pandas numbers differ:** " + "; ".join(kpi["mismatches"]))
            else:
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
