"""The KPIs' names and units, without the KPIs' machinery.

:mod:`models.funnel.kpis` defines every KPI (title, unit, formula, SQL) and stays the single
source of truth; this module repeats only each KPI's name and unit, in display order, for
:mod:`models.playbook`, which checks playbooks' KPI thresholds against them. Importing
``models.funnel.kpis`` there would load SQLAlchemy's SQL layer and the funnel tables into every
command that parses a playbook. ``tests/test_kpi_names.py`` holds the two modules together.
"""

from __future__ import annotations

#: Every KPI's unit by name, in the display order of ``models.funnel.kpis.KPIS``.
KPI_UNITS: dict[str, str] = {
    "mql_volume": "count",
    "mql_to_sql_rate": "rate",
    "mql_to_won_rate": "rate",
    "sales_acceptance_rate": "rate",
    "sales_rejection_rate": "rate",
    "handoff_latency_median_hours": "hours",
    "handoff_latency_p90_hours": "hours",
    "sla_attainment": "rate",
    "untouched_leads": "count",
    "stalled_leads": "count",
    "win_rate": "rate",
    "sales_cycle_median_days": "days",
    "revenue_won": "money",
    "average_deal_size": "money",
    "open_pipeline_count": "count",
    "open_pipeline_value": "money",
    "deal_aging_median_days": "days",
}
KPI_NAMES: tuple[str, ...] = tuple(KPI_UNITS)
