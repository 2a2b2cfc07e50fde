"""The shared numbers as a spreadsheet reads them: the Numbers page's KPIs (every one, not
only those its tables have room for) and its list of the leads that waited past the hand-off
SLA (every lead, not a page of them), as CSV for the decks and follow-up lists people make
from them. The same figures as the page (:mod:`models.funnel.numbers`), as plain numbers: a
rate in percent, a duration in hours or days, an amount in its currency (named in the last
column), empty where the page says "no data"."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy.orm import Session

from models.funnel.kpis import KPIS, KpiGroup, KpiReport
from models.funnel.numbers import GROUPINGS, NumbersQuery, checked, every_breach, report
from models.words import data_word

#: The unit a KPI's column names after its title ("MQL→SQL rate (%)"); amounts carry none:
#: their currency is a column of its own.
_UNIT_WORDS = {"rate": " (%)", "hours": " (hours)", "days": " (days)"}
NO_GROUP = "All"
BREACH_HEADER = [
    "Source",
    "Lead",
    "Owner",
    "Channel",
    "Campaign",
    "Qualified (UTC)",
    "First touch (UTC)",
    "Waited (hours)",
    "Late by (hours)",
]


def kpi_header(by: Sequence[str]) -> list[str]:
    """The KPI file's columns: the groupings', the period's, a KPI's each, the currency's."""
    kpis = [d.title + _UNIT_WORDS.get(d.unit, "") for d in KPIS.values()]
    return [*(GROUPINGS[b] for b in by), "From", "To", *kpis, "Currency of the amounts"]


def _number(name: str, value: float | None) -> str:
    if value is None:
        return ""
    unit = KPIS[name].unit
    if unit == "rate":
        return f"{value * 100:.2f}"
    if unit in ("hours", "days", "money"):
        return f"{value:.2f}"
    return f"{value:.0f}"


def _key(value: Any) -> str:
    return "(none)" if value is None or value == "" else data_word(value)


def _row(keys: list[str], start: date, end: date, group: KpiGroup | None, rep: KpiReport) -> list:
    kpis = group.kpis if group is not None else {}
    values = [_number(name, v.value if (v := kpis.get(name)) else None) for name in KPIS]
    return [*keys, start.isoformat(), end.isoformat(), *values, rep.currency or ""]


def write_numbers_csv(session: Session, out: IO[str], query: NumbersQuery) -> int:
    """The KPIs of ``query`` as CSV written to ``out``: the period and the period it is
    compared with, then, with groupings, each group of the period; how many rows. A query the
    page would refuse is refused the same way (:class:`~models.errors.InvalidInput`)."""
    q = checked(session, query)
    common = {"source": q.source, "sla_hours": q.sla_hours, "stall_days": q.stall_days}
    writer = csv.writer(out)
    writer.writerow(kpi_header(q.by))
    everything = [NO_GROUP] * len(q.by)
    rows = 0
    for start, end in ((q.start, q.end), (q.compare_start, q.compare_end)):
        assert start is not None and end is not None  # (a checked query has both)
        rep = report(session, start=start, end=end, **common)
        writer.writerow(_row(everything, start, end, rep.groups[0] if rep.groups else None, rep))
        rows += 1
    if q.by:
        rep = report(session, start=q.start, end=q.end, by=q.by, **common)
        for g in rep.groups:
            keys = g.keys if len(g.keys) == len(q.by) else [g.group]
            writer.writerow(_row([_key(k) for k in keys], q.start, q.end, g, rep))
            rows += 1
    return rows


def _moment(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at is not None else ""


def write_breaches_csv(session: Session, out: IO[str], query: NumbersQuery) -> int:
    """Every lead of ``query``'s period that waited past its hand-off SLA, latest first by how
    late (the page's list, whole), as CSV written to ``out``; how many. Read in chunks: memory
    does not grow with them."""
    q = checked(session, query)
    writer = csv.writer(out)
    writer.writerow(BREACH_HEADER)
    n = 0
    for b in every_breach(
        session,
        start=q.start,
        end=q.end,
        sla_hours=q.sla_hours,
        source=q.source,
        latest_first=True,
    ):
        writer.writerow(
            [
                b.source,
                b.lead,
                b.owner or "",
                _key(b.channel) if b.channel else "",
                b.campaign or "",
                _moment(b.mql_at),
                _moment(b.touched_at),
                f"{b.waited_hours:.1f}",
                f"{b.late_hours:.1f}",
            ]
        )
        n += 1
    return n
