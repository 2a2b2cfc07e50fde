"""rows that repeat a record of their file: each import's count (funnel_imports.rows_repeated)

A file listing a record on several rows (a report with a row per product or per contact, an
export that repeats a record it updated while it ran) was stored from its latest row, as it
still is, but its earlier rows were counted as changed records, and nothing said so. Each
import now counts them apart, and says how many there were.

Imports before this one counted such rows as changed: their count is 0. Downgrade drops the
column.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.add_column(
            sa.Column("rows_repeated", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.drop_column("rows_repeated")
