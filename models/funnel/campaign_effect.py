"""A campaign's conversion before and after its first material shipped: the same KPIs of the
leads carrying the campaign's key in the funnel data, over the days before the shipping date
and as many days from it (up to today). Reads only; the KPIs are :mod:`models.funnel.kpis`'s.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.agreement_tables import Campaign, Material
from models.funnel.kpis import KPIS, compute_kpis, format_value

#: The KPIs shown before and after, in this order.
EFFECT_KPIS = ("mql_volume", "mql_to_sql_rate", "sales_acceptance_rate", "mql_to_won_rate")
WINDOW_DAYS = 30


class EffectRow(BaseModel):
    kpi: str
    title: str
    before: str
    after: str
    before_sample: int
    after_sample: int


class CampaignEffect(BaseModel):
    #: Why there is nothing to compare yet (None: there is).
    missing: str | None = None
    shipped_on: date | None = None
    before_window: tuple[date, date] | None = None
    after_window: tuple[date, date] | None = None
    rows: list[EffectRow] = []


def _group(session: Session, key: str, start: date, end: date, sla_hours: float) -> dict:
    report = compute_kpis(session, start=start, end=end, by="campaign", sla_hours=sla_hours)
    wanted = key.strip().lower()
    for g in report.groups:
        if g.group is not None and g.group.strip().lower() == wanted:
            return g.kpis
    return {}


def campaign_effect(
    session: Session,
    campaign: Campaign,
    *,
    sla_hours: float = 24,
    today: date | None = None,
    days: int = WINDOW_DAYS,
) -> CampaignEffect:
    """The campaign's KPIs over ``days`` before its first material shipped and as many from
    that day (fewer if today comes first)."""
    today = today or date.today()
    if not campaign.funnel_key:
        return CampaignEffect(missing="the campaign is not linked to a campaign in the data yet")
    shipped = session.scalar(
        select(func.min(Material.shipped_on)).where(Material.campaign_id == campaign.id)
    )
    if shipped is None:
        return CampaignEffect(missing="none of its materials has a shipping date yet")
    if shipped > today:
        return CampaignEffect(missing="its first material ships later", shipped_on=shipped)
    before = (shipped - timedelta(days=days), shipped - timedelta(days=1))
    after = (shipped, min(shipped + timedelta(days=days - 1), today))
    was = _group(session, campaign.funnel_key, *before, sla_hours)
    now = _group(session, campaign.funnel_key, *after, sla_hours)
    rows = []
    for kpi in EFFECT_KPIS:
        b, a = was.get(kpi), now.get(kpi)
        rows.append(
            EffectRow(
                kpi=kpi,
                title=KPIS[kpi].title,
                before=format_value(kpi, b.value if b else None),
                after=format_value(kpi, a.value if a else None),
                before_sample=b.sample_size if b else 0,
                after_sample=a.sample_size if a else 0,
            )
        )
    return CampaignEffect(shipped_on=shipped, before_window=before, after_window=after, rows=rows)
