"""Funnel evidence: the leads and deals both teams share, the KPIs computed from them, and the
evidence a cycle draws from them (KPI-driven gaps, baselines, targets, recap measurement).

Modules:
- :mod:`models.funnel.tables`   — leads, deals, data-quality flags, import log, cycle KPI
  snapshots, action targets.
- :mod:`models.funnel.mapping`  — the declarative CSV column mapping (profiles and custom files)
  and the locale it reads dates and amounts with.
- :mod:`models.funnel.importer` — streaming, idempotent, order-independent import with a rejects
  file published on commit.
- :mod:`models.funnel.links`    — what a lead knows of its deals and a deal of its lead
  (derived after every import).
- :mod:`models.funnel.flags`    — what is odd about kept records (derived after every import).
- :mod:`models.funnel.files`    — reading an import's files (and its rejects files);
  :mod:`models.funnel.parse` — their rows into what is written, in the import's process or,
  for a big import on SQLite, in a second one; :mod:`models.funnel.upsert` — writing them.
- :mod:`models.funnel.kpi_defs` — every KPI, defined once; :mod:`models.funnel.kpis` computes
  them, from the rollups (:mod:`models.funnel.rollup_read`) where they answer, else from the
  rows (:mod:`models.funnel.kpi_rows`); shared SQL in :mod:`models.funnel.sql`.
- :mod:`models.funnel.rollups`  — the KPI rollups the import keeps (the months it touched:
  :mod:`models.funnel.rollup_touched`).
- :mod:`models.funnel.numbers`  — the Numbers page's read model (periods compared, groupings,
  the SLA breach list), cached per import.
- :mod:`models.funnel.baseline` — a cycle's frozen baseline and the windows it is measured over.
- :mod:`models.funnel.targets`  — measurable targets on action items.
- :mod:`models.funnel.measure`  — the recap's measurement against the baseline.

What the numbers do to cycles (KPI rules raising gaps) is the phases layer's:
:mod:`models.phases.numbers`.
"""
