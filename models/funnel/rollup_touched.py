"""What an import touched, for the KPI rollups (:func:`models.funnel.rollups.refresh`): the
months of the old and new dates of every lead and deal it wrote, and of the leads and deals
linked to them (a lead's deals carry its channel, campaign, owner and team; a lead carries its
deals' summary and their flags).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from models.funnel.rollups import Month, _epoch_of, month_of_epoch
from models.funnel.sql import D, L, deal_terms, lead_terms


@dataclass
class Touched:
    """The months an import's rows touched, for :func:`refresh`: collected as rows are written
    (the months of their old and new dates, in Python: bounded by the number of months), and
    the keys of the written records in the store itself (``mark_*``), so the leads and deals
    linked to them are found in SQL after the files are in."""

    months: set[Month] = field(default_factory=set)
    lead_keys: set[str] = field(default_factory=set)
    deal_keys: set[str] = field(default_factory=set)
    everything: bool = False
    #: beyond this many written keys, every month is refreshed (a first import, a large file)
    limit: int = 20000

    def add_dates(self, *values: Any) -> None:
        for v in values:
            seconds = _epoch_of(v)
            if seconds is not None:
                self.months.add(month_of_epoch(seconds))

    def add_open_undated(self) -> None:
        self.months.add(None)

    def lead(self, key: str) -> None:
        if not self.everything:
            self.lead_keys.add(key)
            if len(self.lead_keys) > self.limit:
                self.all()

    def deal(self, key: str) -> None:
        if not self.everything:
            self.deal_keys.add(key)
            if len(self.deal_keys) > self.limit:
                self.all()

    def all(self) -> None:
        self.everything = True
        self.lead_keys.clear()
        self.deal_keys.clear()
        self.months.clear()


def touched_months(conn: Connection, source: str, touched: Touched) -> set[Month] | None:
    """The months to refresh after an import (None: every month): those collected, and those
    of the leads and deals linked to the written ones (their current dates)."""
    if touched.everything:
        return None
    months = set(touched.months)
    lt, dt = lead_terms(), deal_terms()
    lead_keys = set(touched.lead_keys)
    for chunk in _chunks(sorted(touched.deal_keys)):
        # the written deals' dates now, and their leads
        for won, lost, opp, lead_key in conn.execute(
            select(dt.won, dt.lost, dt.opp, D.c.lead_key).where(
                D.c.source == source, D.c.external_id.in_(chunk)
            )
        ):
            months.update(month_of_epoch(x) for x in (won, lost, opp) if x is not None)
            if won is None and lost is None and opp is None:
                months.add(None)
            if lead_key is not None:
                lead_keys.add(lead_key)
    for chunk in _chunks(sorted(lead_keys)):
        for (mql,) in conn.execute(
            select(lt.mql).where(L.c.source == source, L.c.external_id.in_(chunk))
        ):
            if mql is not None:
                months.add(month_of_epoch(mql))
        # the deals of the written leads (and of the leads of written deals)
        for won, lost, opp in conn.execute(
            select(dt.won, dt.lost, dt.opp).where(D.c.source == source, D.c.lead_key.in_(chunk))
        ):
            months.update(month_of_epoch(x) for x in (won, lost, opp) if x is not None)
            if won is None and lost is None and opp is None:
                months.add(None)
    return months


def _chunks(keys: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]
