"""what each import counted apart: rows repeating a record of their file
(funnel_imports.rows_repeated) and records an import of the whole export removed
(funnel_imports.rows_removed)

A file listing a record on several rows (a report with a row per product or per contact, an
export that repeats a record it updated while it ran) was stored from its latest row, as it
still is, but its earlier rows were counted as changed records, and nothing said so. Each
import now counts them apart.

An import of a source's whole export (``whole_export`` in the mapping, a setting on the import
page) removes the records of the source its files do not list; the import records how many.

Imports before this one counted repeats as changed and removed nothing: both counts are 0.
Downgrade drops the columns.

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
        batch.add_column(
            sa.Column("rows_removed", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.drop_column("rows_removed")
        batch.drop_column("rows_repeated")
