"""PostgreSQL: a first import's leads held in a temporary table until the files are in, then
written into ``leads`` once, with their deal summary computed set-based on the way in; the
deals of staged leads written with their lead's fields (:mod:`models.funnel.links`).

Written straight into the tables, a first import's rows were written twice: every lead with
deals again by the links' UPDATE (a new row version of most leads), and every deal through an
index probe into the leads per row. Measured at 1,000,000 leads and 1,180,000 deals: the
links were 14.9 s and the deals' writes most of the files' 25.9 s, beside a plain COPY of the
same rows in 12.1 s.

How it goes (:class:`Staging`, one per import):

- A target (:class:`models.funnel.upsert._Target`) whose table holds no row of the source
  when its file starts COPies its batches into a temporary table shaped like the real one
  (its ``id`` drawn from the real table's sequence as the COPY goes: the ids a COPY into the
  table would give). A unique index on the key finds a record twice as the real table's
  would: the batch is rolled back, everything staged is written out, and the file goes on
  with lookups and upserts, exactly as an unstaged first import does. Not a deals target in a
  file whose leads name their deal (two targets write the deals).
- The deals of a first import whose leads are staged are not: they go straight into
  ``deals`` with their lead's fields, looked up in the staged leads (an index probe per key,
  once per batch).
- A file that writes a table with staged rows (a second leads file) has them written out
  first: it then finds the store as an unstaged import would.
- After the files (:meth:`Staging.finish`), staged deals (a mapping that lists them first)
  go in, joined to their leads (staged, or already in the store), then the leads, joined to
  their deals' summary. :attr:`Staging.exact` says whether the derived columns are then right
  for the whole source without :func:`models.funnel.links.refresh_links`: the source had no
  lead and no deal before the import, and every row went in through the staging at its end
  or as a deal of staged leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, column, insert, null, select, table

from models.db import local_setting
from models.funnel.links import DEAL_FROM_LEAD, LEAD_SUMMARY, deal_summary
from models.funnel.tables import Deal, Lead

L = Lead.__table__
D = Deal.__table__

#: work_mem of the statements that write the staged rows out: the join of a million deals to a
#: million leads (and the leads to their deals' summary) hashes in one pass (about 100 MB each
#: at 1,000,000 leads); with the default 4 MB, in 16 batches on disk, measured 40% slower
WORK_MEM = "256MB"


@dataclass
class Stage:
    """One table's staged rows: the temporary table and the columns its COPY writes."""

    table: str
    name: str
    columns: list[str]
    open: bool = True
    analyzed: bool = False  # since the last row was staged

    def analyze(self, conn: Connection) -> None:
        """Statistics for the plans that read the staged rows (a sample of 3,000 rows is
        enough to tell an index probe from a scan, and takes a fifth of the default's time)."""
        with local_setting(conn, "default_statistics_target", "10"):
            conn.exec_driver_sql(f"ANALYZE {self.name}")
        self.analyzed = True


@dataclass
class Staging:
    conn: Connection
    source: str
    stages: dict[str, Stage] = field(default_factory=dict)
    #: the derived columns are right after :meth:`finish` (no refresh of the links needed)
    exact: bool = False

    def __post_init__(self) -> None:
        self.exact = not any(
            self.conn.exec_driver_sql(
                f"SELECT 1 FROM {t} WHERE source = %(s)s LIMIT 1", {"s": self.source}
            ).first()
            for t in ("leads", "deals")
        )

    def open(self, table_name: str, columns: list[str]) -> Stage:
        """A temporary table for ``table_name``'s rows, COPY target of ``columns``."""
        assert table_name not in self.stages
        name = f"funnel_stage_{table_name}"
        conn = self.conn
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        # the real table's types and defaults (its id sequence among them), no constraints but
        # the key's uniqueness
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {name} (LIKE {table_name} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX ON {name} (external_id)")
        stage = Stage(table_name, name, columns)
        self.stages[table_name] = stage
        return stage

    def before_file(self, tables: set[str]) -> None:
        """A file is about to write ``tables``: rows staged for one of them go in first."""
        if tables & set(self.stages):
            self.write_out()

    def write_out(self, last: bool = False) -> None:
        """Write every staged row into its table (the deals, then the leads), with the
        derived columns computed from what the store and the staging hold. Before the
        ``last`` time, rows are written past the staging after them: the links must be
        refreshed."""
        if not last:
            self.exact = False
        if not self.stages:
            return
        conn = self.conn
        stages = self.stages
        self.stages = {}
        for stage in stages.values():
            stage.open = False
            if not stage.analyzed:  # (the plans of the joins below)
                stage.analyze(conn)
        leads = stages.get("leads")
        with local_setting(conn, "work_mem", WORK_MEM):
            if "deals" in stages:
                conn.execute(self._deals_in(stages["deals"], leads))
            if leads is not None:
                conn.execute(self._leads_in(leads))
        for stage in stages.values():
            conn.exec_driver_sql(f"DROP TABLE {stage.name}")
            # fresh statistics for what follows (the links, flags and rollups are planned on
            # them: the old ones may say the source has no rows)
            conn.exec_driver_sql(f"ANALYZE {stage.table}")

    def finish(self) -> bool:
        """After the files: write the staged rows; True when the derived columns of the whole
        source are right."""
        self.write_out(last=True)
        return self.exact

    def _deals_in(self, stage: Stage, leads: Stage | None):  # noqa: ANN202
        sd = _temp(stage)
        cols = ["id", *stage.columns]
        if "lead_key" not in stage.columns:
            got = [null() for _ in DEAL_FROM_LEAD]
            from_ = sd
        else:
            if leads is not None:  # the leads are staged too: the store has none of the source
                lead = _temp(leads)
                on = lead.c.external_id == sd.c.lead_key
            else:
                lead = L.alias("lead")
                on = (lead.c.source == self.source) & (lead.c.external_id == sd.c.lead_key)
            got = [lead.c[c] if c in lead.c else null() for c in DEAL_FROM_LEAD.values()]
            from_ = sd.outerjoin(lead, on)
        return insert(D).from_select(
            [*cols, *DEAL_FROM_LEAD],
            select(*(sd.c[c] for c in cols), *got).select_from(from_),
        )

    def _leads_in(self, stage: Stage):  # noqa: ANN202
        sl = _temp(stage)
        cols = ["id", *stage.columns]
        summary = deal_summary(self.source)
        return insert(L).from_select(
            [*cols, *LEAD_SUMMARY],
            select(*(sl.c[c] for c in cols), *(summary.c[c] for c in LEAD_SUMMARY)).select_from(
                sl.outerjoin(summary, summary.c.key == sl.c.external_id)
            ),
        )


def _temp(stage: Stage):  # noqa: ANN202
    return table(stage.name, *(column(c) for c in ["id", *stage.columns]))
