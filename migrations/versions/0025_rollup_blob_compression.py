"""KPI rollups' distributions compressed with lz4 on PostgreSQL (was pglz)

The rollups' distributions (``kpi_lead_rollups.latency``, ``untouched_mql``, ``progress`` and
``kpi_deal_rollups.times``) are sorted 64-bit integers, a few kB to a few hundred kB a row.
PostgreSQL compresses such values with pglz by default, and at 1,000,000 leads that was 6.5 s
of the import's 15 s refreshing the rollups (measured: the COPY's ``finish`` waiting on the
server). With lz4 the same refresh took 9.2 s and the tables were as small (56 MB and 39 MB
after ``VACUUM FULL``); with no compression at all 9.6 s.

So on PostgreSQL the four columns are compressed with lz4 where the server was built with it
(``pg_settings`` lists the methods it has), else stored uncompressed (``STORAGE EXTERNAL``).
Values already stored keep their compression until rewritten (the next import of their months
rewrites them). SQLite has neither and is not changed. Downgrade gives the columns back
PostgreSQL's defaults (the server's default compression, ``STORAGE EXTENDED``).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 17:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "kpi_lead_rollups": ("latency", "untouched_mql", "progress"),
    "kpi_deal_rollups": ("times",),
}


def _has_lz4() -> bool:
    found = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)"
        )
        .first()
    )
    return found is not None


def _alter(how: str) -> None:
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} {how}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("SET COMPRESSION lz4" if _has_lz4() else "SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("SET STORAGE EXTENDED")
    if _has_lz4():
        _alter("SET COMPRESSION DEFAULT")
