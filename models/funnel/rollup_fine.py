"""One pass over a source's rows for the rollups kept by day (:mod:`models.funnel.rollups`).

The rollups by day (everything, each channel, each team) were one grouped pass over the rows
each: three sorts of the whole table for the leads and three for the deals' events. Here the
rows are grouped once, by day x channel x team (a few hundred groups a day whatever the
store's size), into a temporary table holding the same counts, sums and value lists; the three
groupings are then read from that table (their counts summed, their lists joined, their labels
the first spelling of the first spellings): the same numbers as from the rows
(``tests/test_kpi_rollups.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    case,
    column,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
    type_coerce,
)

from models.funnel.sql import (
    NUMBERS,
    TEXTS,
    D,
    L,
    concat,
    day_of,
    deal_dims,
    deal_terms,
    first_spelling,
    lead_counts,
    lead_dims,
    lead_terms,
    month_of,
)

FINE_LEADS = "funnel_rollup_fine_leads"
FINE_DEALS = "funnel_rollup_fine_deals"
#: lead counts summed from the fine groups (``flagged`` is counted from the flags)
_LEAD_SUMS = (
    "mqls",
    "sqls",
    "won",
    "decided",
    "rejected",
    "touched",
    "untouched",
    "deal_leads",
    "opp_dated",
    "reached_sql",
)
#: the fine table's columns (key, label) of each dimension kept by day
_DAY_KEYS = {"channel": ("ck", "cl"), "team": ("tk", "tl")}


def in_ranges(col: Any, ranges: list[tuple[int, int]] | None) -> Any:
    if ranges is None:
        return col.is_not(None)
    return or_(*(and_(col >= a, col < b) for a, b in ranges))


def make_fine(conn: Connection, name: str, stmt: Any) -> Any:
    """The grouped rows of ``stmt`` as a temporary table (dropped by the caller, and on
    PostgreSQL at commit), as a selectable."""
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    on_commit = " ON COMMIT DROP" if conn.dialect.name == "postgresql" else ""
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name}{on_commit} AS {sql}")
    return table(name, *(column(c.name) for c in stmt.selected_columns))


def drop_fine(conn: Connection) -> None:
    for name in (FINE_LEADS, FINE_DEALS):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def fine_leads_stmt(source: str, ranges: list[tuple[int, int]] | None) -> Any:
    t = lead_terms()
    dims = lead_dims()
    day = day_of(t.mql)
    ck, tk = func.lower(dims["channel"]), func.lower(dims["team"])
    return (
        select(
            day.label("day"),
            ck.label("ck"),
            first_spelling(dims["channel"]).label("cl"),
            tk.label("tk"),
            first_spelling(dims["team"]).label("tl"),
            *lead_counts(t),
            concat(case((t.touched, t.touch - t.mql)), literal(NUMBERS)).label("latency"),
            concat(case((t.touch.is_(None), t.mql)), literal(NUMBERS)).label("untouched_mql"),
            concat(case((and_(t.is_open, t.progressed), t.last_progress)), literal(NUMBERS)).label(
                "progress"
            ),
            concat(case((t.rejected_only, t.reason)), literal(TEXTS)).label("reasons"),
        )
        .where(L.c.source == source, in_ranges(t.mql, ranges))
        .group_by(day, ck, tk)
    )


def _key_label(fine: Any, dim: str) -> tuple[Any, Any]:
    if not dim:
        return type_coerce(null(), String), type_coerce(null(), String)
    k, lab = _DAY_KEYS[dim]
    return fine.c[k], first_spelling(fine.c[lab])


def leads_from_fine(fine: Any, dim: str) -> Any:
    """The leads' day rows of one dimension kept by day, from the fine groups (the columns of
    the row-level query in :func:`models.funnel.rollups._leads`)."""
    key, label = _key_label(fine, dim)
    groups = [fine.c.day, key] if dim else [fine.c.day]
    return (
        select(
            fine.c.day.label("day"),
            key.label("key"),
            label.label("label"),
            *(func.sum(fine.c[n]).label(n) for n in _LEAD_SUMS),
            *(
                concat(fine.c[n], literal(NUMBERS)).label(n)
                for n in ("latency", "untouched_mql", "progress")
            ),
            concat(fine.c.reasons, literal(TEXTS)).label("reasons"),
        )
        .group_by(*groups)
        .order_by(fine.c.day)
    )


def deal_events(undated: bool, ranges: list[tuple[int, int]] | None) -> dict[str, Any]:
    """The terms of the deals' ``events`` pass: a deal's win, else its loss, else its being
    open, at the date of that event (the open ones at their creation)."""
    t = deal_terms()
    won, lost = t.won.is_not(None), t.lost.is_not(None)
    at = func.coalesce(t.won, t.lost, t.opp)
    dated = [] if ranges == [] else [in_ranges(at, ranges)]
    priced = case((or_(won, ~lost), t.amount))  # a lost deal's amount counts nowhere
    return {
        "kinds": case(
            (won, literal_column("'won'")),
            (lost, literal_column("'lost'")),
            else_=literal_column("'open'"),
        ),
        "at": at,
        "month": month_of(at),
        "where": or_(*dated, *([at.is_(None)] if undated else [])),
        "amount": func.sum(priced),
        "with_amount": func.count(priced),
        "times": concat(
            case(
                (and_(won, t.start.is_not(None)), t.won - t.start),  # a won deal's cycle
                (and_(~won, ~lost), t.opp),  # an open deal's creation
            ),
            literal(NUMBERS),
        ),
    }


def fine_deals_stmt(source: str, ranges: list[tuple[int, int]] | None, undated: bool) -> Any:
    e = deal_events(undated, ranges)
    dims = deal_dims()
    day = day_of(e["at"])
    ck, tk = func.lower(dims["channel"]), func.lower(dims["team"])
    return (
        select(
            e["kinds"].label("kind"),
            day.label("day"),
            e["month"].label("month"),
            ck.label("ck"),
            first_spelling(dims["channel"]).label("cl"),
            tk.label("tk"),
            first_spelling(dims["team"]).label("tl"),
            func.count().label("deals"),
            e["amount"].label("amount"),
            e["with_amount"].label("with_amount"),
            e["times"].label("times"),
        )
        .where(D.c.listed, D.c.source == source, e["where"])
        .group_by(e["kinds"], day, e["month"], ck, tk)
    )


def deals_from_fine(fine: Any, dim: str) -> Any:
    """The deals' events day rows of one dimension kept by day, from the fine groups (the
    columns of the row-level query in :func:`models.funnel.rollups._deals`)."""
    key, label = _key_label(fine, dim)
    groups = [fine.c.kind, fine.c.day, fine.c.month, *([key] if dim else [])]
    return (
        select(
            fine.c.kind.label("kind"),
            fine.c.day.label("day"),
            type_coerce(null(), BigInteger).label("other"),
            fine.c.month.label("month"),
            key.label("key"),
            label.label("label"),
            func.sum(fine.c.deals).label("deals"),
            func.sum(fine.c.amount).label("amount"),
            func.sum(fine.c.with_amount).label("with_amount"),
            concat(fine.c.times, literal(NUMBERS)).label("times"),
        )
        .group_by(*groups)
        .order_by(fine.c.day)
    )
