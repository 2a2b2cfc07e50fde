"""Funnel evidence: the leads and deals both teams share, the KPIs computed from them, and the
evidence a cycle draws from them (KPI-driven gaps, baselines, targets, recap measurement).

Modules:
- :mod:`models.funnel.tables`   — funnel records, import log, cycle KPI snapshots, action targets.
- :mod:`models.funnel.mapping`  — the declarative CSV column mapping (profiles and custom files).
- :mod:`models.funnel.importer` — streaming, idempotent import with a rejects file.
- :mod:`models.funnel.kpis`     — every KPI, defined once, computed set-based in SQL.
- :mod:`models.funnel.evidence` — what the Identify and Recap phases take from the KPIs.
"""
