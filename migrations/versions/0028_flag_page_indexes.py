"""the data-quality flags' page reads an index: funnel_flags by (source, file, line, kind)
and by (source, kind)

A deals file whose lead column was matched wrong makes a flag of every deal: at 1,040,548 flags
a page of them sorted every flag of the source (1.3 s on SQLite; 1.7 s a kind at a time), and
their counts by kind read every row. The page now walks the first index in its own order
(source, file, line, kind), a kind's page and the counts by kind the second: 0.3 s. Building
both at that size took 2.3 s on SQLite; an import writing few flags pays nothing measurable.

Downgrade drops the indexes.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 23:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | Sequence[str] | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_funnel_flags_source_file_line", "funnel_flags", ["source", "file", "line", "kind"]
    )
    op.create_index("ix_funnel_flags_source_kind", "funnel_flags", ["source", "kind"])


def downgrade() -> None:
    op.drop_index("ix_funnel_flags_source_kind", table_name="funnel_flags")
    op.drop_index("ix_funnel_flags_source_file_line", table_name="funnel_flags")
