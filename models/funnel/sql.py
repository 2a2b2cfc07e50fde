"""The SQL both ways of computing the KPIs share: the row-level queries
(:mod:`models.funnel.kpis`) and the rollups the import keeps (:mod:`models.funnel.rollups`).

Each condition a KPI counts by (touched, rejected and not accepted, open, stalled, ...) is
written once, here, as a SQLAlchemy expression over ``leads`` or ``deals``; both paths use the
same expressions, so they cannot drift apart. Timestamps are integer seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    and_,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from models.errors import InvalidInput
from models.funnel.tables import Deal, FunnelFlag, Lead, day_start

L = Lead.__table__
D = Deal.__table__
F = FunnelFlag.__table__
DAY = 86400

#: Separates the values of a ``concat``: a comma for numbers, the ASCII unit separator for text
#: (a rejection reason may hold commas).
NUMBERS, TEXTS = ",", "\x1f"
#: Group dimensions whose values differing only in case are one group.
CASELESS = ("channel", "campaign", "team")
#: Stands for "no date" where the latest of several dates is taken (before every real date).
NO_DATE = -(1 << 62)


def holds(conn: Connection, source: str) -> bool:
    """Whether the store holds leads or deals of ``source``: index probes, not a scan."""
    return any(
        conn.execute(select(t.c.id).where(t.c.source == source).limit(1)).first() is not None
        for t in (L, D)
    )


def ints(text: str | None) -> list[int]:
    return list(map(int, text.split(NUMBERS))) if text else []


class month_of(FunctionElement):
    """'YYYY-MM' of an epoch-seconds column, in UTC."""

    type = String()
    inherit_cache = True


@compiles(month_of, "sqlite")
def _month_of_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(month_of, "postgresql")
def _month_of_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    arg = compiler.process(element.clauses, **kw)
    return f"to_char(to_timestamp({arg}) AT TIME ZONE 'UTC', 'YYYY-MM')"


def day_of(x: Any) -> ColumnElement[int]:
    """The UTC day of an epoch-seconds column, as whole days since 1970-01-01 (floored, so a
    date before 1970 is on its own day too; the division is exact)."""
    return (x - ((x % DAY) + DAY) % DAY) // DAY


class concat(FunctionElement):
    """All non-NULL values of a group as one text, joined by ``sep`` (an aggregate):
    ``group_concat`` on SQLite, ``string_agg`` on PostgreSQL."""

    type = String()
    inherit_cache = True


@compiles(concat, "sqlite")
def _concat_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    expr, sep = list(element.clauses)
    return f"group_concat({compiler.process(expr, **kw)}, {compiler.process(sep, **kw)})"


@compiles(concat, "postgresql")
def _concat_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    expr, sep = list(element.clauses)
    arg = f"CAST({compiler.process(expr, **kw)} AS TEXT)"
    return f"string_agg({arg}, {compiler.process(sep, **kw)})"


class first_spelling(FunctionElement):
    """The spelling that sorts first in code-point order (an aggregate): ``min`` on SQLite
    (binary), ``min(x COLLATE "C")`` on PostgreSQL, whatever the database's collation, so both
    backends, and the rollups merged in Python, show the same label."""

    type = String()
    inherit_cache = True


@compiles(first_spelling, "sqlite")
def _first_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(first_spelling, "postgresql")
def _first_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    return f'min(({compiler.process(element.clauses, **kw)}) COLLATE "C")'


class latest(FunctionElement):
    """The latest of several epoch-second values, NULLs ignored (:data:`NO_DATE` if all are
    NULL): ``max(a, b, ...)`` on SQLite, ``greatest`` on PostgreSQL."""

    type = BigInteger()
    inherit_cache = True


@compiles(latest, "sqlite")
def _latest_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN202
    args = [f"coalesce({compiler.process(c, **kw)}, {NO_DATE})" for c in element.clauses]
    return f"max({', '.join(args)})"


@compiles(latest, "postgresql")
def _latest_pg(element, compiler, **kw):  # noqa: ANN001, ANN202
    args = [compiler.process(c, **kw) for c in element.clauses]
    return f"coalesce(greatest({', '.join(args)}), {NO_DATE})"


def as_int(col: Any) -> ColumnElement[int]:
    """A timestamp column as the plain integer it is stored as."""
    return type_coerce(col, BigInteger)


def count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
    # count(*) FILTER (WHERE ...): both backends; measured cheaper than sum(CASE ...) on SQLite
    return func.count().filter(cond)


def window(start: date | None, end: date | None) -> tuple[int | None, int | None]:
    """A window of days (its end included) as the epoch seconds it spans: [start, end + 1)."""
    if start and end and end < start:
        raise InvalidInput(f"the window ends ({end}) before it starts ({start})")
    s = day_start(start) if start else None
    e = day_start(end + timedelta(days=1)) if end else None
    return s, e


def in_window(col: ColumnElement[int], s: int | None, e: int | None) -> list[ColumnElement[bool]]:
    conds = []  # a bound excludes NULL already
    if s is not None:
        conds.append(col >= s)
    if e is not None:
        conds.append(col < e)
    return conds or [col.is_not(None)]


def open_at(t: Any, e: int | None) -> ColumnElement[bool]:
    """A deal (``t``: :func:`deal_terms`) open at the window's end ``e``: neither won nor lost,
    created before it (or with no creation date)."""
    return and_(
        t.won.is_(None),
        t.lost.is_(None),
        *([or_(t.opp.is_(None), t.opp < e)] if e is not None else []),
    )


def lead_dims() -> dict[str, ColumnElement[Any]]:
    return {b: L.c[b] for b in ("channel", "campaign", "owner", "team")}


def deal_dims() -> dict[str, ColumnElement[Any]]:
    """A deal's channel and campaign are its lead's; its owner and team its own, else its
    lead's (the lead's fields are copied onto the deal: :mod:`models.funnel.links`)."""
    return {
        "channel": D.c.lead_channel,
        "campaign": D.c.lead_campaign,
        "owner": func.coalesce(D.c.owner, D.c.lead_owner),
        "team": func.coalesce(D.c.team, D.c.lead_team),
    }


def dimension(
    by: str, columns: dict[str, ColumnElement[Any]], month_col: ColumnElement[int]
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(key, label) of a group dimension: the key groups, the label shows (the spelling that
    sorts first among values that differ only in case)."""
    if by == "month":
        key = month_of(month_col)
        return key, key
    value = columns[by]
    if by in CASELESS:
        return func.lower(value), first_spelling(value)
    return value, value


@dataclass(frozen=True)
class LeadTerms:
    """A lead's dates and the conditions the MQL cohort's KPIs count by."""

    mql: Any
    touch: Any
    sql: Any
    rejected: Any
    won: Any  # the lead's first won deal
    last_deal: Any  # its latest deal's creation
    has_deal: Any
    touched: Any
    rejected_only: Any  # rejected and not accepted
    no_stage: Any  # untouched: no touch, SQL, rejection, nor any deal
    is_open: Any  # no won deal, not rejected only, not every deal lost
    progressed: Any  # touched, accepted or given a deal
    #: the latest progress (touch, SQL, latest deal creation; NO_DATE if none has a date): an
    #: open lead that progressed is stalled when this is before the cut-off
    last_progress: Any
    reason: Any  # the rejection reason of a lead rejected only


def lead_terms() -> LeadTerms:
    mql, touch, sql_, rej = (
        as_int(L.c[n]) for n in ("mql_at", "first_touch_at", "sql_at", "rejected_at")
    )
    # the lead's deals, summed up on the lead (models.funnel.links): one table to scan
    won, last_deal = as_int(L.c.first_won_at), as_int(L.c.last_deal_at)
    has_deal = L.c.deal_count.is_not(None)
    rejected_only = and_(rej.is_not(None), sql_.is_(None))
    lost_lead = and_(has_deal, won.is_(None), L.c.open_deal_count == 0)
    return LeadTerms(
        mql=mql,
        touch=touch,
        sql=sql_,
        rejected=rej,
        won=won,
        last_deal=last_deal,
        has_deal=has_deal,
        touched=touch.is_not(None),
        rejected_only=rejected_only,
        no_stage=and_(touch.is_(None), sql_.is_(None), rej.is_(None), ~has_deal),
        is_open=and_(won.is_(None), ~func.coalesce(lost_lead, False), ~rejected_only),
        progressed=or_(touch.is_not(None), sql_.is_not(None), has_deal),
        last_progress=latest(touch, sql_, last_deal),
        reason=func.coalesce(L.c.rejection_reason, "(no reason given)"),
    )


def lead_conditions(t: LeadTerms) -> dict[str, ColumnElement[bool]]:
    """The conditions the cohort's counts count by (besides every MQL), row by row: those that
    depend on nothing but the leads (not on the SLA, the as-of time or the stall limit)."""
    return {
        "sqls": t.sql.is_not(None),
        "won": t.won.is_not(None),
        "decided": or_(t.sql.is_not(None), t.rejected.is_not(None)),
        "rejected": t.rejected_only,
        "touched": t.touched,
        "untouched": t.no_stage,
        "deal_leads": t.has_deal,
        "opp_dated": t.last_deal.is_not(None),
        "reached_sql": or_(t.sql.is_not(None), t.has_deal),
    }


@dataclass(frozen=True)
class DealTerms:
    won: Any
    lost: Any
    opp: Any
    amount: Any
    #: where a won deal's cycle starts: its creation, else its lead's SQL, else its MQL date
    start: Any


def deal_terms() -> DealTerms:
    won, lost, opp = (as_int(D.c[n]) for n in ("won_at", "lost_at", "opportunity_at"))
    return DealTerms(
        won=won,
        lost=lost,
        opp=opp,
        amount=D.c.amount_cents,
        start=func.coalesce(opp, as_int(D.c.lead_sql_at), as_int(D.c.lead_mql_at)),
    )
