"""recap reports in the store

``recap_reports`` keeps the Markdown report each recap run writes, one per cycle (replaced by
the next run), so the web app serves it whichever worker ran the flow; before, it was a file in
that worker's data dir. Reports already written to disk stay where they are (nothing reads
them); run the recap flow of a cycle again to store its report.

A new table only: downgrade drops it.

Revision ID: 0015
Revises: 0009
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('recap_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('headline', sa.String(length=500), nullable=False),
    sa.Column('markdown', sa.Text(), nullable=False),
    sa.Column('on_date', sa.Date(), nullable=False),
    sa.Column('written_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_recap_reports_cycle_id_cycles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recap_reports')),
    sa.UniqueConstraint('cycle_id', name=op.f('uq_recap_reports_cycle_id'))
    )


def downgrade() -> None:
    op.drop_table('recap_reports')
