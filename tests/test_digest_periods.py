"""Which days a cycle's digest covers and when it goes out, under each cadence (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from models.cadence.digest_periods import digest_period, next_digest_day, parse_key

MON = date(2026, 3, 2)  # a Monday
START = date(2026, 1, 5)  # the cycle's first day, a Monday


def covers(cadence: str, today: date, last: tuple[date, date] | None = None):  # noqa: ANN201
    p = digest_period(7, cadence, today, START, last)
    return None if p is None else (p.start, p.end)


@pytest.mark.parametrize(
    ("cadence", "today", "expected"),
    [
        ("daily", MON, (date(2026, 2, 27), date(2026, 3, 1))),  # Monday: Friday to Sunday
        ("daily", date(2026, 3, 3), (MON, MON)),
        ("daily", date(2026, 3, 7), None),  # Saturday
        ("weekly", MON, (date(2026, 2, 23), date(2026, 3, 1))),
        ("weekly", date(2026, 3, 6), None),
        ("biweekly", MON, (date(2026, 2, 16), date(2026, 3, 1))),  # the cycle's 9th week
        ("biweekly", date(2026, 3, 9), None),
        ("monthly", MON, (date(2026, 2, 1), date(2026, 3, 1))),  # 1 March is a Sunday
        ("monthly", date(2026, 4, 1), (date(2026, 3, 1), date(2026, 3, 31))),
        ("monthly", date(2026, 4, 2), None),
    ],
)
def test_each_cadence_covers_the_period_before_its_day(cadence, today, expected) -> None:  # noqa: ANN001
    assert covers(cadence, today) == expected


def test_the_next_digest_picks_up_where_the_last_ended_and_a_rerun_plans_the_same() -> None:
    last = (date(2026, 2, 16), date(2026, 2, 22))  # the weekly digest of a week ago
    p = digest_period(7, "daily", date(2026, 2, 26), START, last)  # daily since then
    assert p is not None and (p.start, p.end, p.since) == (
        date(2026, 2, 23),
        date(2026, 2, 25),
        date(2026, 2, 22),
    )
    assert "picks up where the last one ended (22 Feb 2026)" in p.words()
    assert covers("weekly", MON, (date(2026, 2, 23), date(2026, 3, 1))) == (
        date(2026, 2, 23),
        date(2026, 3, 1),
    )  # the day's own digest: the same key again
    assert covers("daily", MON, (date(2026, 3, 1), date(2026, 3, 2))) is None  # a later day's
    assert covers("daily", date(2026, 1, 5)) is None  # nothing before the cycle's first day
    assert parse_key(p.key + "#c3") == (p.start, p.end)
    assert parse_key("digest:7:2026-W10#c3") is None
    assert next_digest_day("daily", date(2026, 3, 6), START) == date(2026, 3, 9)
