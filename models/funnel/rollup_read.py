"""The KPIs' aggregates read from the rollups (:mod:`models.funnel.rollups`), for
:func:`models.funnel.kpis.compute_kpis`.

:func:`answers` says whether the rollups answer a question, for a source (or every source)
whose rollups are kept: overall, by month, by channel or by team (and month) over any window
of days; by campaign or owner (and month) over a window of whole months (or none). Anything
else is computed from the rows: two of channel, campaign, owner and team; campaign or owner
over a window that starts or ends inside a month (their groups are kept by month, not by day:
by day they would be nearly as many as the leads, measured); a source written otherwise and
not refreshed.

:func:`aggregates` reads the months the window covers whole and the days at its edges (the
open pipeline: every period before the window's end, and the deals with no creation date),
sums the counts per group and answers the as-of questions from the sorted distributions:
due leads (untouched with their SLA deadline passed), stalled leads (latest progress before
the cut-off) and deal ages; medians and p90s are picked from the groups' sorted parts without
merging them, so the numbers are exactly the rows'.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, or_, select

from models.funnel.distributions import Distribution, unpack
from models.funnel.kpi_defs import Aggregates, percentile_of
from models.funnel.rollups import (
    DAY_DIMS,
    DR,
    LR,
    SR,
    month_of_day,
    month_start_day,
    month_text,
)
from models.funnel.sql import DAY, D, L

_MERGE_BELOW = 50_000  # parts totalling fewer values are merged and sorted, else searched


def answers(
    conn: Connection,
    dims: tuple[str, ...],
    source: str | None,
    s: int | None = None,
    e: int | None = None,
) -> bool:
    """Whether the rollups answer a question grouped by ``dims`` over the window [s, e) of
    epoch seconds on day boundaries (see the module docstring)."""
    grouped = sum(d != "month" for d in dims)
    if grouped > 1:
        return False  # two of channel, campaign, owner, team: the rows
    by_day = all(d in DAY_DIMS or d == "month" for d in dims)
    if not by_day and not all(x is None or _month_start(x // DAY) for x in (s, e)):
        return False  # campaigns and owners are kept by month: whole months, else the rows
    kept = list(conn.execute(select(SR.c.source).order_by(SR.c.source)).scalars())
    if source is not None:
        return source in kept
    if not kept:
        return False
    # every source with leads or deals is kept: probe the gaps between the kept ones
    # (index range probes on (source, external_id), not a scan)
    for table in (L, D):
        bounds: list[Any] = [None, *kept, None]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            conds = []
            if lo is not None:
                conds.append(table.c.source > lo)
            if hi is not None:
                conds.append(table.c.source < hi)
            if conn.execute(select(table.c.source).where(*conds).limit(1)).first():
                return False
    return True


def _month_start(day: int) -> bool:
    return month_start_day(month_of_day(day)) == day


def _periods(s_day: int | None, e_day: int | None, col_grain: Any, col_period: Any) -> Any:
    """Rows of the days [s_day, e_day): whole months from month rows, the edges from days."""
    first = None if s_day is None else month_of_day(s_day)
    if first is not None and month_start_day(first) < s_day:  # type: ignore[operator]
        first += 1
    last = None if e_day is None else month_of_day(e_day)  # the month e_day is in: not whole
    conds = []
    months = [c for c in ((first, ">="), (last, "<")) if c[0] is not None]
    m_cond = [col_grain == "m"]
    for value, op in months:
        m_cond.append(col_period >= value if op == ">=" else col_period < value)
    if first is not None and last is not None and first >= last:
        # no whole month inside: days only
        return and_(col_grain == "d", col_period >= s_day, col_period < e_day)
    m_cond.append(col_period.is_not(None))
    conds.append(and_(*m_cond))
    if first is not None:
        conds.append(
            and_(col_grain == "d", col_period >= s_day, col_period < month_start_day(first))
        )
    if last is not None:
        conds.append(
            and_(col_grain == "d", col_period >= month_start_day(last), col_period < e_day)
        )
    return or_(*conds)


class _Parts:
    """Sorted integer arrays of one group, read as one sorted sequence. Each is kept as
    stored (:class:`~models.funnel.distributions.Distribution`: its smallest value and each
    value's excess over it), and compared with ``x - smallest``: no value is made again."""

    __slots__ = ("parts", "n", "_merged")

    def __init__(self) -> None:
        self.parts: list[Distribution] = []
        self.n = 0
        self._merged: np.ndarray | None = None

    def add(self, d: Distribution) -> None:
        if d.excess:
            self.parts.append(d)
            self.n += len(d.excess)

    def count_le(self, x: int) -> int:
        return sum(bisect_right(p, x - low) for low, p in self.parts)

    def count_lt(self, x: int) -> int:
        return sum(bisect_left(p, x - low) for low, p in self.parts)

    def nth(self, i: int) -> int:
        """The ``i``-th smallest value (0-based)."""
        if len(self.parts) == 1:
            low, p = self.parts[0]
            return low + p[i]
        if self.n < _MERGE_BELOW:
            if self._merged is None:  # (numpy: a sum per value in Python took 4x the time)
                self._merged = np.sort(
                    np.concatenate(
                        [
                            np.frombuffer(p, p.typecode).astype(np.int64) + low
                            for low, p in self.parts
                        ]
                    )
                )
            return int(self._merged[i])
        lo = min(low + p[0] for low, p in self.parts)
        hi = max(low + p[-1] for low, p in self.parts)
        while lo < hi:  # the smallest x with more than i values <= x
            mid = (lo + hi) // 2
            if self.count_le(mid) > i:
                hi = mid
            else:
                lo = mid + 1
        return lo


def _quantiles(
    parts: _Parts, qs: tuple[int, ...], nth: Callable[[int], int] | None = None
) -> tuple[int, dict[int, float]] | None:
    if not parts.n:
        return None
    get = nth or parts.nth
    return parts.n, {q: percentile_of(get, parts.n, q) for q in qs}


def _label(old: Any, new: Any) -> Any:
    return new if old is None or (new is not None and new < old) else old


def aggregates(
    conn: Connection,
    dims: tuple[str, ...],
    s: int | None,
    e: int | None,
    now: int,
    sla_s: int,
    stall_s: int,
    source: str | None,
    untracked: frozenset[str] = frozenset(),
) -> Aggregates:
    """The KPIs' aggregates from the rollups; the leads of the ``untracked`` sources (they
    record no first touch) are neither untouched nor due, as in :func:`kpi_rows.cohort`."""
    agg = Aggregates()
    dim = next((d for d in dims if d != "month"), "")
    s_day = None if s is None else s // DAY
    e_day = None if e is None else e // DAY
    _cohort(agg, conn, dims, dim, s_day, e_day, now, sla_s, stall_s, source, untracked)
    _deals(agg, conn, dims, dim, s_day, e_day, now, source)
    return agg


def _month_of_row(grain: str, period: int) -> str:
    return month_text(period if grain == "m" else month_of_day(period))


def _cohort(
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    dim: str,
    s_day: int | None,
    e_day: int | None,
    now: int,
    sla_s: int,
    stall_s: int,
    source: str | None,
    untracked: frozenset[str],
) -> None:
    R = LR
    where = [R.c.dim == dim, _periods(s_day, e_day, R.c.grain, R.c.period)]
    if source is not None:
        where.append(R.c.source == source)
    cols = [R.c.source, R.c.grain, R.c.period, R.c.key, R.c.label]
    counts = ("mqls", "sqls", "won", "decided", "rejected", "touched", "untouched")
    counts += ("deal_leads", "opp_dated", "reached_sql", "flagged")
    stmt = select(*cols, *(R.c[n] for n in counts), R.c.latency, R.c.untouched_mql)
    stmt = stmt.add_columns(R.c.progress, R.c.reasons).where(*where)
    groups: dict[tuple, dict[str, Any]] = {}
    for r in conn.execute(stmt):
        month = _month_of_row(r.grain, r.period) if "month" in dims else None
        key = tuple(month if d == "month" else r.key for d in dims)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {n: 0 for n in (*counts, "touch_mqls", "touch_flagged")}
            g |= {"label": r.label, "month": month, "reasons": Counter()}
            g |= {"latency": _Parts(), "untouched_mql": _Parts(), "progress": _Parts()}
        else:
            g["label"] = _label(g["label"], r.label)
        for n in counts:
            g[n] += getattr(r, n)
        if r.source in untracked:  # its leads are not known untouched (nor due)
            g["untouched"] -= r.untouched
        else:
            g["touch_mqls"] += r.mqls
            g["touch_flagged"] += r.flagged
            g["untouched_mql"].add(unpack(r.untouched_mql))
        g["latency"].add(unpack(r.latency))
        g["progress"].add(unpack(r.progress))
        if r.reasons:
            g["reasons"].update(json.loads(r.reasons))
    cutoff = now - stall_s
    for key, g in groups.items():
        if not g["mqls"]:
            continue
        lat: _Parts = g["latency"]
        row = {n: g[n] for n in (*counts, "touch_mqls") if n != "flagged"}
        row["within_sla"] = lat.count_le(sla_s)
        row["due"] = g["touched"] + g["untouched_mql"].count_le(now - sla_s)
        row["stalled"] = g["progress"].count_lt(cutoff)
        row["labels"] = tuple(g["month"] if d == "month" else g["label"] for d in dims)
        agg.cohort[key] = row
        q = _quantiles(lat, (50, 90), lambda i, lat=lat: max(lat.nth(i), 0))
        if q:
            agg.latency[key] = q
        if g["reasons"]:
            agg.reasons[key] = list(g["reasons"].items())
        if g["flagged"]:
            agg.cohort_flags[key] = g["flagged"]
        if g["touch_flagged"]:
            agg.touch_flags[key] = g["touch_flagged"]


def _deals(
    agg: Aggregates,
    conn: Connection,
    dims: tuple[str, ...],
    dim: str,
    s_day: int | None,
    e_day: int | None,
    now: int,
    source: str | None,
) -> None:
    R = DR
    closed = and_(R.c.kind.in_(("won", "lost")), _periods(s_day, e_day, R.c.grain, R.c.period))
    open_ = and_(
        R.c.kind == "open",
        or_(R.c.period.is_(None), _periods(None, e_day, R.c.grain, R.c.period))
        if e_day is not None
        else R.c.grain == "m",
    )
    # deals won and lost in the window: both dates in it (days for everything; months, for
    # windows of whole months, for each dimension's groups)
    by_day = dim in DAY_DIMS
    both = [R.c.kind == "both", R.c.grain == ("d" if by_day else "m")]
    lo = s_day if by_day or s_day is None else month_of_day(s_day)
    hi = e_day if by_day or e_day is None else month_of_day(e_day)
    if lo is not None:
        both += [R.c.period >= lo, R.c.other >= lo]
    if hi is not None:
        both += [R.c.period < hi, R.c.other < hi]
    where = [R.c.dim == dim, or_(closed, open_, and_(*both))]
    if source is not None:
        where.append(R.c.source == source)
    stmt = select(
        R.c.kind,
        R.c.month,
        R.c.key,
        R.c.label,
        R.c.deals,
        R.c.amount,
        R.c.with_amount,
        R.c.flagged,
        R.c.times,
    ).where(*where)
    names = ("won", "lost", "revenue", "with_amount", "open", "open_value", "open_with_amount")
    groups: dict[tuple, dict[str, Any]] = {}
    for r in conn.execute(stmt):
        key = tuple(r.month if d == "month" else r.key for d in dims)
        g = groups.get(key)
        if g is None:
            g = groups[key] = dict.fromkeys(names, 0) | {"label": None, "month": r.month}
            g |= {"closed_flags": 0, "open_flags": 0, "cycle": _Parts(), "opened": _Parts()}
        if r.kind == "both":  # a deal won and lost in the window is one closed deal
            g["closed_flags"] -= r.flagged
            continue
        g["label"] = _label(g["label"], r.label)
        if r.kind == "won":
            g["won"] += r.deals
            g["revenue"] += r.amount or 0
            g["with_amount"] += r.with_amount
            g["closed_flags"] += r.flagged
            g["cycle"].add(unpack(r.times))
        elif r.kind == "lost":
            g["lost"] += r.deals
            g["closed_flags"] += r.flagged
        else:
            g["open"] += r.deals
            g["open_value"] += r.amount or 0
            g["open_with_amount"] += r.with_amount
            g["open_flags"] += r.flagged
            g["opened"].add(unpack(r.times))
    for key, g in groups.items():
        if not (g["won"] or g["lost"] or g["open"]):
            continue
        agg.deals[key] = {n: g[n] for n in names}
        agg.deals[key]["labels"] = tuple(g["month"] if d == "month" else g["label"] for d in dims)
        cycle = _quantiles(g["cycle"], (50,))
        if cycle:
            agg.cycle[key] = cycle
        opened: _Parts = g["opened"]
        # an open deal's age is now - its creation: the oldest deal is the largest age
        aging = _quantiles(opened, (50,), lambda i, p=opened: now - p.nth(p.n - 1 - i))
        if aging:
            agg.aging[key] = aging
        if g["closed_flags"] or g["open_flags"]:
            agg.deal_flags[key] = (g["closed_flags"], g["open_flags"])
