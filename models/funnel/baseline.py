"""A cycle's baseline: the KPIs of the weeks before it starts, frozen the first time they are
measured (later imports do not move it), and the windows a cycle is measured over.

Like every service: a Session first, never commits.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from models.funnel.kpis import MONEY_KPIS, KpiValue, compute_kpis
from models.funnel.tables import CycleKpiSnapshot, Deal, Lead
from models.playbook import PlaybookSpec
from models.services.agreements import sla_hours_in_force
from models.services.common import record_event
from models.services.cycles import spec
from models.tables import Cycle

BASELINE = "baseline"
RECAP = "recap"
#: the key of an amount's currency in its snapshot's ``detail``
CURRENCY = "currency"


def baseline_window(cycle: Cycle, pb: PlaybookSpec | None = None) -> tuple[date, date]:
    """The days before the cycle starts (inclusive), as many as ``settings.baseline_days``."""
    days = (pb or spec(cycle)).settings.effective_baseline_days
    return cycle.period_start - timedelta(days=days), cycle.period_start - timedelta(days=1)


def measure_window(cycle: Cycle, today: date | None = None) -> tuple[date, date]:
    """The cycle's own period, up to today while it still runs."""
    today = today or date.today()
    end = min(cycle.period_end, max(today, cycle.period_start))
    return cycle.period_start, end


def snapshots(session: Session, cycle: Cycle, kind: str) -> dict[str, CycleKpiSnapshot]:
    rows = session.scalars(
        select(CycleKpiSnapshot).where(
            CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == kind
        )
    )
    return {r.kpi: r for r in rows}


def baseline_values(session: Session, cycle: Cycle) -> dict[str, float | None]:
    """The cycle's frozen baseline, KPI by KPI (empty before it is frozen). Reads only."""
    return {k: s.value for k, s in snapshots(session, cycle, BASELINE).items()}


def store_snapshot(
    session: Session,
    cycle: Cycle,
    kind: str,
    values: dict[str, KpiValue],
    window: tuple[date, date],
    sla_hours: int,
    currency: str | None = None,
) -> dict[str, CycleKpiSnapshot]:
    """Store ``values`` as the cycle's ``kind`` snapshot; an amount keeps the ``currency`` it
    was measured in (the report's: later imports may be in another)."""
    out = {}
    for name, v in values.items():
        detail = v.detail
        if currency is not None and name in MONEY_KPIS:
            detail = {**(detail or {}), CURRENCY: currency}
        row = CycleKpiSnapshot(
            cycle_id=cycle.id,
            kind=kind,
            kpi=name,
            value=v.value,
            numerator=v.numerator,
            sample_size=v.sample_size,
            window_start=window[0],
            window_end=window[1],
            sla_hours=sla_hours,
            detail=detail,
        )
        session.add(row)
        out[name] = row
    session.flush()
    return out


def stored_currency(detail: dict[str, Any] | None) -> str | None:
    """The currency an amount's snapshot (its ``detail``) was measured in (None: not
    recorded, as before amounts kept theirs, or no amount)."""
    return detail.get(CURRENCY) if isinstance(detail, dict) else None


def snapshot_baseline(
    session: Session, cycle: Cycle, *, as_of: datetime | None = None
) -> dict[str, CycleKpiSnapshot]:
    """The KPIs the cycle started from: computed and stored on the first call, then frozen
    (later imports do not move a cycle's baseline). Returns {kpi: snapshot}."""
    existing = snapshots(session, cycle, BASELINE)
    if existing:
        return existing
    pb = spec(cycle)
    sla = sla_hours_in_force(session, cycle, pb)  # the agreement in force, else the playbook
    window = baseline_window(cycle, pb)
    report = compute_kpis(
        session,
        start=window[0],
        end=window[1],
        sla_hours=sla,
        stall_days=pb.settings.stall_days,
        as_of=as_of,
    )
    rows = store_snapshot(
        session, cycle, BASELINE, report.overall(), window, sla, currency=report.currency
    )
    record_event(
        session,
        actor=None,
        verb="kpi.baseline_recorded",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={
            "window": f"{window[0].isoformat()}..{window[1].isoformat()}",
            "mql_volume": rows["mql_volume"].sample_size,
            "sla_hours": sla,
        },
    )
    return rows


def has_funnel_data(session: Session) -> bool:
    """Whether the store holds any shared funnel data: leads, or deals (a store of deals only,
    e.g. an opportunities export, has numbers too)."""
    return bool(
        session.scalar(select(or_(exists().where(Lead.id > 0), exists().where(Deal.id > 0))))
    )
