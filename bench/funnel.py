"""Funnel benchmark: every KPI from aligncycle's store beside DuckDB over its own tables, and
the import beside its floor (plain executemany on SQLite, COPY on PostgreSQL), at 1M and 3M leads.

    python -m bench funnel [--sizes 1000000,3000000] [--postgres URL] [--rounds N]
                           [--out FILE] [--keep DIR]

For each size (leads, with about 1.2 deals each: a leads file and a deals file, generated):

- **import**, each in a fresh child process (peak memory per run): aligncycle's import
  (``import_files``: upserts, links, flags and the KPI rollups, one unit of work) into a new
  SQLite store (and PostgreSQL with ``--postgres``), and its **floor** in the same run: the
  same rows, parsed from the same files, written into the same tables of a new store with
  nothing else — a plain ``executemany`` on SQLite, ``COPY`` on PostgreSQL. At the smallest
  size, the same export is then imported again into the import's store, every record
  unchanged: under its own file names, and under other names (reported, no target).
- **KPIs**: every KPI over one year (2024), overall, by month and by owner x month, and over
  200 days (not whole months: the day rollups) by channel —
  ``compute_kpis`` from the store (the rollups answer these) beside **DuckDB** over its own
  tables (the same leads and deals loaded from the files; the same KPIs in one SQL query per
  grouping, the join to the deals in the query). Rounds interleave the two, medians are
  reported; every KPI of every group of each case is checked equal to DuckDB's
  (``<backend>-agree-<size>``: no KPI may differ; ties for the top rejection reason accept
  any of the reasons given most often, as DuckDB's ``mode()`` picks one of them).

Targets (bench.verdict): every KPI query no slower than DuckDB (``<backend>-<grouping>-<size>``
ratio <= 1); import within 1.3x its floor on SQLite and 2x on PostgreSQL
(``<backend>-import-<size>``); peak memory flat (the largest size within +10% of the
smallest), also when most deals name a lead that is not in the data (``<backend>-flags-memory``:
the smallest size's deals imported beside a tenth of its leads, about 900,000 flags per million
leads, within +10% of the import of all its leads). The machine is shared: the report records
the load averages; read the ratios. Results go to bench/results/funnel.md. Needs DuckDB
(``pip install '.[bench]'``).

Why one file of this size: the generator, the measured import and its floor, the DuckDB peer
and the report stay together so the peer and the floor are always measured on the same data
in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.verdict import Target, verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "funnel.md"
SIZES = (1_000_000, 3_000_000)

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
#: A window of days, not whole months: read from the day rollups (by channel: a group a day).
DAYS = (date(2024, 3, 3), date(2024, 9, 18))
#: Each case of the KPIs: its grouping and its window.
GROUPINGS = {
    "overall": (None, WINDOW),
    "month": ("month", WINDOW),
    "owner x month": (["owner", "month"], WINDOW),
    "channel, 200 days": ("channel", DAYS),
}

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


def _peak_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` (Linux: this program's own,
    whereas ``ru_maxrss`` keeps the high-water mark of the parent forked from, across exec:
    the parent that loaded DuckDB's tables showed as the import's peak, measured)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: the importer's steps after the files (what it tells), by the phase the report shows
STEPS = {
    "linking deals to their leads": "links",
    "checking the data quality": "flags",
    "finding the months whose numbers changed": "rollups",
    "summing up the numbers": "rollups",
}


def _child_import(url: str, leads: str, deals: str) -> dict:
    from migrations import runner
    from models.db import Store
    from models.funnel import importer, parse
    from models.funnel.importer import import_files
    from models.funnel.mapping import parse_mapping

    readers: list[parse.Reader] = []  # the second process parsing the files, if any

    class Seen(parse.Reader):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            readers.append(self)

    importer.Reader = Seen  # type: ignore[misc]
    store = Store(url)
    runner.upgrade(store.engine)
    base = _peak_mb()
    marks: dict[str, float] = {}  # when each step after the files began

    def mark(what: str, _done: int, _of: int) -> None:
        marks.setdefault(what, time.perf_counter())

    t, cpu = time.perf_counter(), time.process_time()
    with store.unit_of_work() as s:
        summary = import_files(
            s,
            [Path(leads), Path(deals)],
            parse_mapping(LEADS_DEALS_MAPPING),
            after_files=mark,
        )
        done = time.perf_counter()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    store.dispose()
    # the steps in order (models.funnel.importer): the files, then each step it tells (the
    # months to sum up belong to the rollups); the commit is the rest
    bounds = [t, *marks.values(), done]
    names = ["files", *(STEPS[what] for what in marks)]
    phases: dict[str, float] = {}
    for n, a, b in zip(names, bounds[:-1], bounds[1:], strict=True):
        phases[n] = phases.get(n, 0.0) + b - a
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": summary.rows,
        "flags": summary.flags,
        "rss_before_mb": base,
        "peak_rss_mb": _peak_mb(),
        # the second process (SQLite: models.funnel.parse), waited for by the import
        "reader_cpu": kids.ru_utime + kids.ru_stime if readers else None,
        "reader_peak_rss_mb": readers[0].peak_mb if readers else None,
        "phases": phases,
    }


def _epoch(text: str) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _cents(text: str) -> int | None:
    if not text:
        return None
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _floor_rows(leads: str, deals: str):  # noqa: ANN202
    """The rows the import writes, read from the same files with the csv module (dates and
    amounts converted), as (table, columns, row iterator)."""

    def lead_rows():  # noqa: ANN202
        with open(leads, newline="") as f:
            r = csv.reader(f)
            next(r)
            for line, (i, ch, camp, owner, team, mql, touch, sql, rej, why) in enumerate(r, 2):
                yield (
                    "bench", i, ch or None, camp or None, owner or None, team or None,
                    _epoch(mql), _epoch(touch), _epoch(sql), _epoch(rej), why or None,
                    "leads.csv", line,
                )  # fmt: skip

    def deal_rows():  # noqa: ANN202
        with open(deals, newline="") as f:
            r = csv.reader(f)
            next(r)
            for line, (d, lead, owner, stage, created, closed, amount) in enumerate(r, 2):
                at = _epoch(closed)
                yield (
                    "bench", d, lead or None, owner or None, stage or None, _epoch(created),
                    at if stage == "won" else None, at if stage == "lost" else None,
                    _cents(amount), True, "deals.csv", line,
                )  # fmt: skip

    lead_cols = "source, external_id, channel, campaign, owner, team, mql_at, first_touch_at, "
    lead_cols += "sql_at, rejected_at, rejection_reason, file, line"
    deal_cols = "source, external_id, lead_key, owner, stage, opportunity_at, won_at, lost_at, "
    deal_cols += "amount_cents, listed, file, line"
    return [("leads", lead_cols, lead_rows()), ("deals", deal_cols, deal_rows())]


def _child_floor(url: str, leads: str, deals: str) -> dict:
    """The floor of the import: the same rows into the same (migrated) tables, nothing else."""
    from migrations import runner
    from models.db import Store

    store = Store(url)
    runner.upgrade(store.engine)
    base = _peak_mb()
    t = time.perf_counter()
    rows = 0
    with store.engine.begin() as conn:
        pg = conn.dialect.name == "postgresql"
        for table, cols, it in _floor_rows(leads, deals):
            if pg:
                driver = conn.connection.driver_connection
                copy_sql = f"COPY {table} ({cols}) FROM STDIN"
                with driver.cursor() as cur, cur.copy(copy_sql) as copy:  # type: ignore[union-attr]
                    for row in it:
                        copy.write_row(row)
                        rows += 1
                continue
            marks = ", ".join("?" * (cols.count(",") + 1))
            sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
            batch: list[tuple] = []
            for row in it:
                batch.append(row)
                if len(batch) == 5000:
                    conn.exec_driver_sql(sql, batch)
                    rows += len(batch)
                    batch = []
            if batch:
                conn.exec_driver_sql(sql, batch)
                rows += len(batch)
    seconds = time.perf_counter() - t
    store.dispose()
    return {
        "seconds": seconds,
        "rows": rows,
        "rss_before_mb": base,
        "peak_rss_mb": _peak_mb(),
    }


# --- DuckDB over its own tables -------------------------------------------------------------------


def duck_load(path: str, leads: str, deals: str) -> None:
    import duckdb

    db = duckdb.connect(path)
    ep = "CAST(epoch(CAST({c} AS TIMESTAMP)) AS BIGINT)"
    db.execute(
        f"""CREATE OR REPLACE TABLE leads AS SELECT id AS external_id, channel, campaign, owner,
        team, {ep.format(c="mql_at")} AS mql_at, {ep.format(c="first_touch_at")} AS
        first_touch_at, {ep.format(c="sql_at")} AS sql_at, {ep.format(c="rejected_at")} AS
        rejected_at, reason AS rejection_reason
        FROM read_csv('{leads}', header = true, all_varchar = true)"""
    )
    db.execute(
        f"""CREATE OR REPLACE TABLE deals AS SELECT deal_id, lead_id, deal_owner AS owner,
        {ep.format(c="created_at")} AS opportunity_at,
        CASE WHEN stage = 'won' THEN {ep.format(c="closed_at")} END AS won_at,
        CASE WHEN stage = 'lost' THEN {ep.format(c="closed_at")} END AS lost_at,
        CAST(round(CAST(amount AS DECIMAL(18, 2)) * 100) AS BIGINT) AS amount_cents
        FROM read_csv('{deals}', header = true, all_varchar = true)"""
    )
    db.close()


def _duck_sql(grouping: str | None) -> tuple[str, str]:
    """The cohort's and the deals' KPIs, grouped, in DuckDB's SQL (the same definitions)."""
    month = "strftime(to_timestamp({c}), '%Y-%m')"
    if grouping is None:
        gc = gd = ""
    elif grouping == "channel":  # (a deal's channel is its lead's)
        gc, gd = "channel", "lead_channel"
    elif grouping == "month":
        gc = month.format(c="mql_at")
        gd = month.format(c="coalesce(won_at, lost_at, opportunity_at)")
    else:
        gc = f"owner, {month.format(c='mql_at')}"
        closed = month.format(c="coalesce(won_at, lost_at, opportunity_at)")
        gd = f"coalesce(owner, lead_owner), {closed}"
    sel_c = f"{gc}, " if gc else ""
    sel_d = f"{gd}, " if gd else ""
    grp_c = f"GROUP BY {gc}" if gc else ""
    grp_d = f"GROUP BY {gd}" if gd else ""
    cohort = f"""
    WITH ds AS (
      SELECT lead_id, count(*) AS n,
             count(*) FILTER (WHERE won_at IS NULL AND lost_at IS NULL) AS open_n,
             min(won_at) AS first_won, max(opportunity_at) AS last_deal
      FROM deals WHERE lead_id IS NOT NULL GROUP BY lead_id),
    c AS (
      SELECT l.*, ds.n, ds.open_n, ds.first_won, ds.last_deal FROM leads l
      LEFT JOIN ds ON ds.lead_id = l.external_id
      WHERE l.mql_at >= $s AND l.mql_at < $e)
    SELECT {sel_c}
      count(*) AS mqls, count(sql_at) AS sqls, count(first_won) AS won,
      count(*) FILTER (WHERE sql_at IS NOT NULL OR rejected_at IS NOT NULL) AS decided,
      count(*) FILTER (WHERE rejected_at IS NOT NULL AND sql_at IS NULL) AS rejected,
      count(first_touch_at) AS touched,
      count(*) FILTER (WHERE first_touch_at - mql_at <= $sla) AS within_sla,
      count(*) FILTER (WHERE first_touch_at IS NOT NULL OR mql_at + $sla <= $now) AS due,
      count(*) FILTER (WHERE first_touch_at IS NULL AND sql_at IS NULL
                       AND rejected_at IS NULL AND n IS NULL) AS untouched,
      count(*) FILTER (WHERE first_won IS NULL AND NOT coalesce(n IS NOT NULL AND open_n = 0, false)
                       AND NOT (rejected_at IS NOT NULL AND sql_at IS NULL)
                       AND (first_touch_at IS NOT NULL OR sql_at IS NOT NULL OR n IS NOT NULL)
                       AND coalesce(greatest(first_touch_at, sql_at, last_deal), -1) < $cutoff)
        AS stalled,
      quantile_cont(CASE WHEN first_touch_at IS NOT NULL
        THEN greatest(first_touch_at - mql_at, 0) END, [0.5, 0.9]) AS latency,
      mode(coalesce(rejection_reason, '(no reason given)'))
        FILTER (WHERE rejected_at IS NOT NULL AND sql_at IS NULL) AS top_reason
    FROM c {grp_c}"""
    deals = f"""
    WITH d AS (
      SELECT d.*, l.owner AS lead_owner, l.sql_at AS lead_sql, l.mql_at AS lead_mql,
        l.channel AS lead_channel FROM deals d
      LEFT JOIN leads l ON l.external_id = d.lead_id),
    w AS (
      SELECT *, won_at >= $s AND won_at < $e AS won_in, lost_at >= $s AND lost_at < $e AS lost_in,
        won_at IS NULL AND lost_at IS NULL AND (opportunity_at IS NULL OR opportunity_at < $e)
          AS is_open
      FROM d)
    SELECT {sel_d}
      count(*) FILTER (WHERE won_in) AS won, count(*) FILTER (WHERE lost_in) AS lost,
      sum(amount_cents) FILTER (WHERE won_in) AS revenue,
      count(amount_cents) FILTER (WHERE won_in) AS with_amount,
      count(*) FILTER (WHERE is_open) AS open,
      sum(amount_cents) FILTER (WHERE is_open) AS open_value,
      quantile_cont(won_at - coalesce(opportunity_at, lead_sql, lead_mql), 0.5)
        FILTER (WHERE won_in) AS cycle,
      quantile_cont($now - opportunity_at, 0.5) FILTER (WHERE is_open) AS aging
    FROM w WHERE won_in OR lost_in OR is_open {grp_d}"""
    return cohort, deals


def _window_params(window: tuple[date, date] = WINDOW) -> dict:
    s = int(datetime.combine(window[0], datetime.min.time(), UTC).timestamp())
    e = int(datetime.combine(window[1] + timedelta(days=1), datetime.min.time(), UTC).timestamp())
    now = int(AS_OF.timestamp())
    return {"s": s, "e": e, "now": now, "sla": SLA_HOURS * 3600, "cutoff": now - 30 * 86400}


def duck_kpis(db, grouping: str | None, window: tuple[date, date] = WINDOW) -> tuple[list, list]:  # noqa: ANN001
    cohort, deals = _duck_sql(grouping)
    params = _window_params(window)
    c = db.execute(cohort, {k: v for k, v in params.items()}).fetchall()
    d = db.execute(deals, {k: v for k, v in params.items() if k != "sla" and k != "cutoff"})
    return c, d.fetchall()


def _child_kpis(url: str, duck: str, rounds: str) -> dict:
    import duckdb

    from models.db import Store
    from models.funnel.kpis import compute_kpis

    store = Store(url)
    db = duckdb.connect(duck, read_only=True)

    def ours(by, window):  # noqa: ANN001, ANN202
        with store.unit_of_work() as s:
            return compute_kpis(
                s, start=window[0], end=window[1], by=by, as_of=AS_OF, sla_hours=SLA_HOURS
            )

    out: dict[str, dict] = {}
    for name, (by, window) in GROUPINGS.items():
        ours(by, window), duck_kpis(db, by, window)  # warm both
        a: list[float] = []
        b: list[float] = []
        for _ in range(int(rounds)):
            t = time.perf_counter()
            report = ours(by, window)
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            duck = duck_kpis(db, by, window)
            b.append(time.perf_counter() - t)
        out[name] = {
            "ours": statistics.median(a),
            "duckdb": statistics.median(b),
            "groups": len(report.groups),
            "differences": _compare(report, duck, len(report.by)),
        }
    store.dispose()
    db.close()
    return out


#: DuckDB's rows of a group it has no lead (cohort) or no deal of: counts of zero, no values
_NO_LEAD = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None)
_NO_DEAL = (0, 0, None, 0, 0, 0, None, None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _expected(c: tuple | None, d: tuple | None) -> dict[str, float | None]:
    """The KPIs DuckDB's rows of one group say (``c``: its cohort row, ``d``: its deals' row,
    without the group's columns; None: DuckDB has no such row, no lead or no deal of it)."""
    mqls, sqls, won, decided, rejected, _touched, within, due, untouched, stalled, lat, _top = (
        c or _NO_LEAD
    )
    dwon, dlost, revenue, with_amount, open_, open_value, cycle, aging = d or _NO_DEAL
    hours = lambda v: None if v is None else v / 3600  # noqa: E731
    days = lambda v: None if v is None else v / 86400  # noqa: E731
    return {
        "mql_volume": float(mqls),
        "mql_to_sql_rate": _ratio(sqls, mqls),
        "mql_to_won_rate": _ratio(won, mqls),
        "sales_acceptance_rate": _ratio(sqls, decided),
        "sales_rejection_rate": _ratio(rejected, decided),
        "handoff_latency_median_hours": hours(lat[0] if lat else None),
        "handoff_latency_p90_hours": hours(lat[1] if lat else None),
        "sla_attainment": _ratio(within, due),
        "untouched_leads": float(untouched),
        "stalled_leads": float(stalled),
        "win_rate": _ratio(dwon, dwon + dlost),
        "revenue_won": None if revenue is None else revenue / 100,
        "average_deal_size": _ratio(None if revenue is None else revenue / 100, with_amount),
        "sales_cycle_median_days": days(cycle),
        "open_pipeline_count": float(open_),
        "open_pipeline_value": None if open_value is None else open_value / 100,
        "deal_aging_median_days": days(aging),
    }


def _compare(report: Any, duck: tuple[list, list], dims: int) -> list[str]:
    """Our KPIs against DuckDB's, group by group (``dims``: how many columns name a group in
    DuckDB's rows): the mismatches, in words."""
    cohort = {tuple(r[:dims]): r[dims:] for r in duck[0]}
    deals = {tuple(r[:dims]): r[dims:] for r in duck[1]}
    ours = {tuple(g.keys): g.kpis for g in report.groups}
    bad = []
    for key in sorted(set(ours) | set(cohort) | set(deals), key=lambda k: [str(v) for v in k]):
        name = " / ".join(map(str, key)) or "overall"
        k = ours.get(key)
        if k is None:
            bad.append(f"{name}: a group of DuckDB's that aligncycle does not have")
            continue
        for kpi, b in _expected(cohort.get(key), deals.get(key)).items():
            a = k[kpi].value
            if (a is None) != (b is None) or (
                a is not None and abs(a - b) > 1e-9 * max(1.0, abs(b))  # type: ignore[operator]
            ):
                bad.append(f"{name}, {kpi}: aligncycle {a!r}, DuckDB {b!r}")
        top = cohort[key][-1] if key in cohort else None
        reasons = (k["sales_rejection_rate"].detail or {}).get("top_reasons") or []
        # DuckDB's mode() picks any of the reasons given most often: ours must be one of them
        most = [r["reason"] for r in reasons if r["count"] == reasons[0]["count"]]
        if (top is None and most) or (top is not None and top not in most):
            bad.append(f"{name}, top rejection reason: aligncycle {most!r}, DuckDB {top!r}")
    return bad


def _run_child(kind: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "bench.funnel", "--child", kind, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if out.returncode:
        raise SystemExit(f"error: the {kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench funnel", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="leads, comma-separated")
    p.add_argument("--postgres", metavar="URL", default=os.environ.get("BENCH_POSTGRES_URL"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--keep", type=Path, help="Keep (and reuse) the generated CSVs here.")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        kind, *rest = args.child
        run = {"import": _child_import, "floor": _child_floor, "kpis": _child_kpis}[kind]
        print(json.dumps(run(*rest)))
        return 0
    try:
        import duckdb
    except ImportError:
        print("error: the funnel benchmark needs DuckDB: pip install '.[bench]'", file=sys.stderr)
        return 2
    try:
        sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        print(f"error: --sizes takes numbers of leads, not {args.sizes!r}", file=sys.stderr)
        return 2

    loads = [os.getloadavg()]
    tmp = tempfile.TemporaryDirectory(prefix="aligncycle-bench-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    results: dict[tuple[str, int], dict] = {}
    deal_counts: dict[int, int] = {}
    for n in sizes:
        leads, deals = work / f"leads-{n}.csv", work / f"deals-{n}.csv"
        counted = work / f"deals-{n}.count"
        if not (leads.exists() and deals.exists() and counted.exists()):
            t = time.perf_counter()
            counted.write_text(str(generate_leads_deals(leads, deals, n)))
            print(f"generated {n:,} leads in {time.perf_counter() - t:.0f} s", flush=True)
        deal_counts[n] = int(counted.read_text())
        tenth = work / f"leads-{n}-tenth.csv"  # (the deals of the other leads name unknown ones)
        if n == sizes[0] and not tenth.exists():
            with leads.open() as src, tenth.open("w") as dst:
                dst.writelines(line for i, line in zip(range(n // 10 + 1), src, strict=False))
        duck = str(work / f"duck-{n}.duckdb")
        duck_load(duck, str(leads), str(deals))
        for label, admin in backends:
            r: dict = {}
            for kind in ("floor", "import"):
                with _store(admin, work / f"{kind}-{n}.db", keep=kind == "import") as url:
                    r[kind] = _run_child(kind, url, str(leads), str(deals))
                    print(f"{label} {n:,}: {kind} {r[kind]['seconds']:.1f} s", flush=True)
                    if kind == "import":
                        r["kpis"] = _run_child("kpis", url, duck, str(args.rounds))
                        print(f"{label} {n:,}: kpis {json.dumps(r['kpis'])}", flush=True)
                    if kind == "import" and n == sizes[0]:
                        r |= _again(url, leads, deals, f"{label} {n:,}")
            if n == sizes[0]:  # most deals naming a lead that is not in the data
                with _store(admin, work / f"unfound-{n}.db") as url:
                    r["unfound"] = _run_child("import", url, str(tenth), str(deals))
                    print(f"{label} {n:,}: unfound {r['unfound']['seconds']:.1f} s", flush=True)
            results[(label, n)] = r
            loads.append(os.getloadavg())
        Path(duck).unlink(missing_ok=True)
    targets = _targets(results, sizes)
    text = _report(results, sizes, deal_counts, loads, duckdb.__version__, targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\nwritten to {args.out}")
    tmp.cleanup()
    return targets.report()


def _again(url: str, leads: Path, deals: Path, label: str) -> dict[str, dict]:
    """The same export imported again into the store that holds it, every record unchanged:
    under its own file names, then under other names (a CRM names each export anew: each
    record's file and line are written, nothing else)."""
    out = {"again": _run_child("import", url, str(leads), str(deals))}
    renamed = []
    for path in (leads, deals):
        other = path.with_name(f"{path.stem}-renamed{path.suffix}")
        other.unlink(missing_ok=True)
        other.symlink_to(path.name)
        renamed.append(str(other))
    try:
        out["renamed"] = _run_child("import", url, *renamed)
    finally:
        for other in renamed:
            Path(other).unlink(missing_ok=True)
    print(
        f"{label}: again {out['again']['seconds']:.1f} s, under other names "
        f"{out['renamed']['seconds']:.1f} s",
        flush=True,
    )
    return out


@contextlib.contextmanager
def _store(admin: str | None, db: Path, keep: bool = False) -> Iterator[str]:
    """The URL of a new store for one run: the SQLite file ``db`` (removed after, unless
    ``keep``), or with ``admin`` a new PostgreSQL database on its server (dropped after)."""
    from bench.pg import create_database, drop_database

    if admin is None:
        db.unlink(missing_ok=True)
        try:
            yield f"sqlite:///{db}"
        finally:
            if not keep:
                db.unlink(missing_ok=True)
        return
    url, name = create_database(admin, "aligncycle_bench")
    try:
        yield url
    finally:
        drop_database(admin, name)


def _targets(results: dict, sizes: list[int]):  # noqa: ANN202
    out = []
    for (label, n), r in results.items():
        b = "pg" if label == "PostgreSQL" else "sqlite"
        size = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)
        differ = sum(len(k["differences"]) for k in r["kpis"].values())
        groups = sum(k["groups"] for k in r["kpis"].values())
        out.append(
            Target(
                f"{b}-agree-{size}",
                f"{label}, {n:,} leads: KPIs of a group that differ from DuckDB's, in any case",
                float(differ),
                0.0,
                "KPIs",
                f"DuckDB's KPIs of the same {groups:,} groups, over its own tables",
            )
        )
        for name, k in r["kpis"].items():
            out.append(
                Target(
                    f"{b}-{name.replace(' x ', '-').replace(', ', '-').replace(' ', '-')}-{size}",
                    f"{label}, {n:,} leads: every KPI {name}, against DuckDB",
                    k["ours"] / k["duckdb"],
                    1.0,
                    "x",
                    f"DuckDB over its own tables, {k['duckdb'] * 1000:,.0f} ms",
                )
            )
        limit = 2.0 if b == "pg" else 1.3
        floor = r["floor"]["seconds"]
        out.append(
            Target(
                f"{b}-import-{size}",
                f"{label}: import {n:,} leads with their deals, against the floor",
                r["import"]["seconds"] / floor,
                limit,
                "x",
                f"{'COPY' if b == 'pg' else 'plain executemany'} of the same rows, {floor:.1f} s",
            )
        )
    for (label, n), r in results.items():
        if "unfound" in r:
            b = "pg" if label == "PostgreSQL" else "sqlite"
            whole = r["import"]["peak_rss_mb"]
            out.append(
                Target(
                    f"{b}-flags-memory",
                    f"{label}: peak RSS importing {n:,} leads' deals beside a tenth of the leads "
                    f"({r['unfound']['flags']:,} flags)",
                    r["unfound"]["peak_rss_mb"],
                    whole * 1.1,
                    "MB",
                    f"the import of all {n:,} leads, {whole:.0f} MB (+10%)",
                )
            )
    for label in {lab for lab, _ in results}:
        have = [n for n in sizes if (label, n) in results]
        if len(have) > 1:
            small, big = results[(label, have[0])], results[(label, have[-1])]
            b = "pg" if label == "PostgreSQL" else "sqlite"
            rs, rb = (
                small["import"].get("reader_peak_rss_mb"),
                big["import"].get("reader_peak_rss_mb"),
            )
            if rs and rb:
                out.append(
                    Target(
                        f"{b}-reader-memory",
                        f"{label}: peak RSS of the second process importing {have[-1]:,} leads",
                        rb,
                        rs * 1.1,
                        "MB",
                        f"the {have[0]:,}-lead import's, {rs:.0f} MB (+10%)",
                    )
                )
            out.append(
                Target(
                    f"{b}-memory",
                    f"{label}: peak RSS importing {have[-1]:,} leads",
                    big["import"]["peak_rss_mb"],
                    small["import"]["peak_rss_mb"] * 1.1,
                    "MB",
                    f"the {have[0]:,}-lead import, {small['import']['peak_rss_mb']:.0f} MB (+10%)",
                )
            )
    return verdict(out)


def _report(results, sizes, deal_counts, loads, duck_version, targets) -> str:  # noqa: ANN001
    lines = [
        "# Funnel benchmark (`python -m bench funnel`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duck_version}. "
        "Load averages (1, 5, 15 min) at the start and after each backend and size: "
        + "; ".join(f"{a:.1f} {b:.1f} {c:.1f}" for a, b, c in loads)
        + ". The machine is shared: wall times are inflated, read the ratios (each measured "
        "within the same minutes).",
        "",
        "Data: generated leads with MQLs over 2023-2024 and their deals (bench/funnel.py "
        "`generate_leads_deals()`: "
        + ", ".join(f"{deal_counts[n]:,} deals for {n:,} leads" for n in sizes)
        + "). "
        f"KPI window {WINDOW[0]}..{WINDOW[1]} ({DAYS[0]}..{DAYS[1]} for the case of 200 days), "
        f"SLA {SLA_HOURS} h, as of {AS_OF:%Y-%m-%d}.",
        "",
        "## KPIs: aligncycle from its store beside DuckDB over its own tables",
        "",
        "Median of interleaved rounds, wall time. aligncycle: `compute_kpis` (every KPI, with "
        "data-quality flags, top rejection reasons and the stage funnel) in the same process, "
        "from the rollups; DuckDB: the same KPIs over its own `leads` and `deals` tables, the "
        "join to the deals in the query.",
        "",
        "| store | leads | grouping | groups | aligncycle | DuckDB | ratio |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for (label, n), r in results.items():
        for name, k in r["kpis"].items():
            lines.append(
                f"| {label} | {n:,} | {name} | {k['groups']:,} | {k['ours'] * 1000:,.1f} ms | "
                f"{k['duckdb'] * 1000:,.1f} ms | {k['ours'] / k['duckdb']:.2f}x |"
            )
    lines.append("")
    for (label, n), r in results.items():
        for name, k in r["kpis"].items():
            differ = k["differences"]
            lines.append(
                f"{label}, {n:,}, {name}: "
                + (
                    f"DuckDB and aligncycle agree on every KPI of every group ({k['groups']:,})."
                    if not differ
                    else f"**they differ in {len(differ):,} KPIs:** "
                    + "; ".join(differ[:10])
                    + ("; …" if len(differ) > 10 else "")
                )  # fmt: skip
            )
    lines += [
        "",
        "## Import beside its floor",
        "",
        "Each in a fresh process. The import: `import_files` (upserts, links, flags, KPI "
        "rollups). The floor: the same rows into the same tables, nothing else (SQLite: plain "
        "`executemany`; PostgreSQL: `COPY`).",
        "",
        "The second process: on SQLite a big import's files are parsed in a process of their "
        "own while the import's process writes (`models.funnel.parse`); its CPU and peak memory "
        "are in their own columns.",
        "",
        "| store | leads | import | floor | ratio | import CPU (client) | peak RSS | second "
        "process CPU | its peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, n), r in results.items():
        i, f = r["import"], r["floor"]
        rc, rm = i.get("reader_cpu"), i.get("reader_peak_rss_mb")
        lines.append(
            f"| {label} | {n:,} | {i['seconds']:.1f} s | {f['seconds']:.1f} s | "
            f"{i['seconds'] / f['seconds']:.2f}x | {i['cpu']:.1f} s | {i['peak_rss_mb']:.0f} MB | "
            + (f"{rc:.1f} s | " if rc is not None else "- | ")
            + (f"{rm:.0f} MB |" if rm is not None else "- |")
        )
    lines += [
        "",
        "Where the import's time goes (the same runs): reading and writing the files; linking "
        "deals and leads (each lead's deal summary, each deal's lead fields); the data-quality "
        "flags; the KPI rollups; the commit is the rest.",
        "",
        "| store | leads | files | links | flags | rollups | floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, n), r in results.items():
        ph = r["import"].get("phases") or {}
        cells = " | ".join(
            f"{ph[k]:.1f} s" if k in ph else "-" for k in ("files", "links", "flags", "rollups")
        )
        lines.append(f"| {label} | {n:,} | {cells} | {r['floor']['seconds']:.1f} s |")
    lines += [
        "",
        "Most deals naming a lead that is not in the data (a deals file whose lead column was "
        "matched wrong): the deals of the smallest size imported beside a tenth of its leads, "
        "each other deal a data-quality flag.",
        "",
        "| store | leads | deals | flags | import | peak RSS | files | links | flags step "
        "| rollups |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, n), r in results.items():
        if "unfound" not in r:
            continue
        u = r["unfound"]
        ph = u.get("phases") or {}
        cells = " | ".join(
            f"{ph[k]:.1f} s" if k in ph else "-" for k in ("files", "links", "flags", "rollups")
        )
        lines.append(
            f"| {label} | {n // 10:,} | {deal_counts[n]:,} | {u['flags']:,} | "
            f"{u['seconds']:.1f} s | {u['peak_rss_mb']:.0f} MB | {cells} |"
        )
    lines += [
        "",
        "The same export imported again into the store that holds it (the smallest size), "
        "every record unchanged: under its own file names, and under other names (a CRM names "
        "each export anew: each record's file and line are written, nothing else).",
        "",
        "| store | leads | again | its files step | under other names | its files step |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, n), r in results.items():
        if "again" not in r:
            continue
        a, b = r["again"], r["renamed"]
        lines.append(
            f"| {label} | {n:,} | {a['seconds']:.1f} s | {a['phases']['files']:.1f} s | "
            f"{b['seconds']:.1f} s | {b['phases']['files']:.1f} s |"
        )
    lines += ["", "## Verdict", "", targets.markdown()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
