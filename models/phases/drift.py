"""Rejection reasons feed marketing: when sales sends back more of marketing's leads than the
playbook allows (``settings.rejection_drift_above``, over the cycle's KPI baseline), Identify
gets a proposed "lead definition drift" gap whose evidence is the top rejection reasons by
channel and campaign, and whose target is the playbook's share. Raised with the numbers' other
gaps (:func:`models.phases.numbers.evaluate_gap_rules`); idempotent on its gap key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import GapCategory, GapSource, RootCause, Severity
from models.funnel.kpis import format_value
from models.funnel.tables import CycleKpiSnapshot, Lead
from models.schemas import GapCreate
from models.services.agreements import InForce
from models.services.cycles import spec
from models.services.gaps import add_gap
from models.tables import Cycle, Gap
from models.words import counted, data_word

KEY = "metric:lead_definition_drift"
KPI = "sales_rejection_rate"
MIN_SAMPLE = 10
TOP = 5


def _day(d) -> str:  # noqa: ANN001
    return d.strftime("%-d %b %Y")


def top_reasons(
    session: Session, start, end, limit: int = TOP
) -> list[tuple[str | None, str | None, str | None, int]]:  # noqa: ANN001
    """The most frequent (channel, campaign, reason) of the leads sales rejected among the
    MQLs of ``start``..``end`` (inclusive days), most first."""
    s = datetime(start.year, start.month, start.day, tzinfo=UTC)
    e = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    n = func.count().label("n")
    rows = session.execute(
        select(Lead.channel, Lead.campaign, Lead.rejection_reason, n)
        .where(
            Lead.mql_at >= s,
            Lead.mql_at < e,
            Lead.rejected_at.is_not(None),
            Lead.sql_at.is_(None),
        )
        .group_by(Lead.channel, Lead.campaign, Lead.rejection_reason)
        .order_by(n.desc(), Lead.channel, Lead.campaign, Lead.rejection_reason)
        .limit(limit)
    ).all()
    return [(r.channel, r.campaign, r.rejection_reason, int(r.n)) for r in rows]


def evidence(snap: CycleKpiSnapshot, reasons, target: float, whose: str = "the playbook's") -> str:  # noqa: ANN001
    rate = format_value(KPI, snap.value)
    head = (
        f"Sales sent back {rate} of the {snap.sample_size:,} MQLs it reviewed from "
        f"{_day(snap.window_start)} to {_day(snap.window_end)}; {whose} target is at most "
        f"{format_value(KPI, target)}."
    )
    parts = []
    for channel, campaign, reason, n in reasons:
        where = f"from {data_word(channel)}" if channel else "from no channel"
        where += f", campaign {data_word(campaign)}" if campaign else ""
        parts.append(f"{counted(n, 'lead')} {where}: “{reason or 'no reason given'}”")
    # one paragraph: every face shows evidence as plain text
    return head + (f" The most frequent reasons: {'; '.join(parts)}." if parts else "")


def drift_gap(
    session: Session,
    cycle: Cycle,
    baseline: dict[str, CycleKpiSnapshot],
    settings: InForce | None = None,
) -> Gap | None:
    """The cycle's lead definition drift gap when its baseline's rejection rate is over the
    playbook's share (opt-in) on enough reviewed MQLs (recorded once); None otherwise. Where
    the team pair's agreement in force sets a target for the rejection rate, that is the
    share."""
    target = spec(cycle).settings.rejection_drift_above
    agreed = settings.agreed_targets.get(KPI) if settings is not None else None
    whose = "the playbook's"
    if target is not None and agreed is not None:
        target, whose = agreed, "the agreed"
    snap = baseline.get(KPI)
    if target is None or snap is None or snap.value is None:
        return None
    if snap.sample_size < MIN_SAMPLE or snap.value <= target:
        return None
    reasons = top_reasons(session, snap.window_start, snap.window_end)
    gap, _ = add_gap(
        session,
        cycle,
        GapCreate(
            title="Lead definition drift: sales rejects too many of marketing's leads",
            description=(
                "Marketing's idea of a qualified lead and sales' have drifted apart. Target: "
                f"bring the sales rejection rate from {format_value(KPI, snap.value)} to at most "
                f"{format_value(KPI, target)}."
            ),
            category=GapCategory.LEAD_DEFINITION,
            root_cause=RootCause.COMMUNICATION,
            severity=Severity.HIGH if snap.value >= 2 * target else Severity.MEDIUM,
            evidence=evidence(snap, reasons, target, whose),
            key=KEY,
            source=GapSource.METRIC,
            source_ref=f"kpi:{KPI}",
        ),
        None,
    )
    return gap
