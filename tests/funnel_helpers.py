"""Helpers of the funnel tests: what the funnel tables hold, without row and import ids."""

from __future__ import annotations

from sqlalchemy import delete, select

from models.db import Store
from models.funnel.rollups import forget
from models.funnel.tables import Deal, FunnelFlag, FunnelImport, Lead


def funnel_content(store: Store) -> dict[str, list[tuple]]:
    """Every lead, deal and flag, sorted, without the row ids and import ids (which count
    runs, not data): two stores with equal content hold the same funnel."""
    out = {}
    with store.engine.connect() as conn:
        for table in (Lead.__table__, Deal.__table__, FunnelFlag.__table__):
            cols = [c for c in table.c if c.name not in ("id", "import_id")]
            rows = conn.execute(select(*cols)).all()
            out[table.name] = sorted(tuple(repr(v) for v in r) for r in rows)
    return out


def clear_funnel(store: Store) -> None:
    with store.unit_of_work() as s:
        forget(s)  # the KPI rollups of what is cleared
        for t in (FunnelFlag, Deal, Lead, FunnelImport):
            s.execute(delete(t))
