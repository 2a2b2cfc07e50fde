"""When a cycle's digest goes out and which days it covers, from the cadence in force.

A digest covers a period that has ended, always up to yesterday, and goes out on the first
working day after it:

==============  ============================================  =================================
cadence         goes out                                      covers (when nothing was missed)
==============  ============================================  =================================
``daily``       every working day (Monday to Friday)          the day before (on a Monday:
                                                              Friday to Sunday)
``weekly``      Mondays                                       the week before, Monday to Sunday
``biweekly``    every other Monday (the 3rd, 5th ... week     the two weeks before
                of the cycle)
``monthly``     the first working day of the month            the month before
==============  ============================================  =================================

Periods follow each other without gap or overlap: a digest starts the day after the last one
the cycle got ended (whatever the cadence was then), so a cadence changed mid-cycle neither
repeats days nor skips any: the first digest after the change covers everything since the last
one and says so. A digest never covers days before the cycle's period. The notification key
names the period (``digest:<cycle>:<first day>..<last day>``): a re-run of the day plans the
same key (nothing new), and a day planned after a later one plans nothing (its days were
covered). Pure functions: :mod:`models.cadence.digest` reads the cadence and the last digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from models.words import day, period

PREFIX = "digest"


@dataclass(frozen=True)
class DigestPeriod:
    """The days a digest covers (``start`` to ``end``, both included), under ``cadence``;
    ``since`` is the last day of the digest before when this one picks up from it (a longer
    period than the cadence's, after a change of cadence or a missed run)."""

    cycle_id: int
    cadence: str
    start: date
    end: date
    since: date | None = None

    @property
    def key(self) -> str:
        return key_of(self.cycle_id, self.start, self.end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def words(self) -> str:
        """The period in a sentence or two, for the message."""
        covered = day(self.start) if self.start == self.end else period(self.start, self.end)
        out = f"This digest covers {covered}."
        if self.since is not None:
            out += f" It picks up where the last one ended ({day(self.since)})."
        return out


def key_of(cycle_id: int, start: date, end: date) -> str:
    return f"{PREFIX}:{cycle_id}:{start.isoformat()}..{end.isoformat()}"


def parse_key(key: str) -> tuple[date, date] | None:
    """The period a stored digest key names (``#c<channel>`` allowed), or None for the keys
    of before (one a week, ``digest:<cycle>:2026-W10``)."""
    base = key.split("#", 1)[0]
    parts = base.split(":")
    if len(parts) != 3 or ".." not in parts[2]:
        return None
    first, _, last = parts[2].partition("..")
    try:
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        return None


def working_day(d: date) -> bool:
    return d.weekday() < 5


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _first_working_day(year: int, month: int) -> date:
    d = date(year, month, 1)
    while not working_day(d):
        d += timedelta(days=1)
    return d


def natural_start(cadence: str, today: date, cycle_start: date) -> date | None:
    """The first day today's digest covers when nothing was missed, or None when today is no
    digest day under ``cadence``."""
    if not working_day(today):
        return None
    if cadence == "daily":
        return today - timedelta(days=3 if today.weekday() == 0 else 1)
    if cadence == "weekly":
        return today - timedelta(days=7) if today.weekday() == 0 else None
    if cadence == "biweekly":
        weeks = (_monday(today) - _monday(cycle_start)).days // 7
        ok = today.weekday() == 0 and weeks >= 2 and weeks % 2 == 0
        return today - timedelta(days=14) if ok else None
    if cadence == "monthly":
        if today != _first_working_day(today.year, today.month):
            return None
        last_month = today.replace(day=1) - timedelta(days=1)
        return last_month.replace(day=1)
    raise ValueError(f"unknown cadence {cadence!r}")  # pragma: no cover - Terms validates it


def digest_period(
    cycle_id: int,
    cadence: str,
    today: date,
    cycle_start: date,
    last: tuple[date, date] | None,
) -> DigestPeriod | None:
    """The period today's digest of the cycle covers, or None (no digest today).

    ``last``: the period of the newest digest the cycle got. One ending yesterday is today's,
    planned before: the same period again (its key is stored, nothing new goes out)."""
    end = today - timedelta(days=1)
    if last is not None and last[1] >= end:
        if last[1] == end:  # a re-run of the day: the same key, already planned
            return DigestPeriod(cycle_id, cadence, last[0], last[1])
        return None  # a day planned after a later one: its days were covered
    start = natural_start(cadence, today, cycle_start)
    if start is None:
        return None
    since = None
    if last is not None and last[1] + timedelta(days=1) != start:
        since = last[1]
        start = last[1] + timedelta(days=1)
    start = max(start, cycle_start)
    if start > end:
        return None
    return DigestPeriod(cycle_id, cadence, start, end, since)


def next_digest_day(cadence: str, today: date, cycle_start: date) -> date:
    """The day the next digest after today's goes out (for "due by ...")."""
    d = today + timedelta(days=1)
    while natural_start(cadence, d, cycle_start) is None:
        d += timedelta(days=1)
    return d
