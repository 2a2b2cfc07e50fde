"""KPI rollups: the MQL cohort and the deals' events summed up by day and month

``kpi_lead_rollups`` and ``kpi_deal_rollups`` hold, per source, day or month and group (none,
or one channel, campaign, owner or team), the counts, sums and exact distributions the KPIs
need, so a KPI query reads groups, not rows; ``kpi_rollup_sources`` lists the sources whose
rollups are kept. The import keeps them (models/funnel/rollups.py). New tables only: a store
with funnel data from before this revision reads its KPIs row by row until its next import
(or ``aligncycle funnel rollups``). Downgrade drops them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('kpi_lead_rollups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('grain', sa.String(length=1), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('dim', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=True),
    sa.Column('label', sa.String(length=300), nullable=True),
    sa.Column('mqls', sa.Integer(), nullable=False),
    sa.Column('sqls', sa.Integer(), nullable=False),
    sa.Column('won', sa.Integer(), nullable=False),
    sa.Column('decided', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('touched', sa.Integer(), nullable=False),
    sa.Column('untouched', sa.Integer(), nullable=False),
    sa.Column('deal_leads', sa.Integer(), nullable=False),
    sa.Column('opp_dated', sa.Integer(), nullable=False),
    sa.Column('reached_sql', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Integer(), nullable=False),
    sa.Column('latency', sa.LargeBinary(), nullable=False),
    sa.Column('untouched_mql', sa.LargeBinary(), nullable=False),
    sa.Column('progress', sa.LargeBinary(), nullable=False),
    sa.Column('reasons', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kpi_lead_rollups'))
    )
    op.create_index('ix_kpi_lead_rollups_lookup', 'kpi_lead_rollups', ['dim', 'grain', 'period', 'source'], unique=False)
    op.create_table('kpi_deal_rollups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('grain', sa.String(length=1), nullable=False),
    sa.Column('kind', sa.String(length=4), nullable=False),
    sa.Column('period', sa.Integer(), nullable=True),
    sa.Column('other', sa.Integer(), nullable=True),
    sa.Column('month', sa.String(length=7), nullable=True),
    sa.Column('dim', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=True),
    sa.Column('label', sa.String(length=300), nullable=True),
    sa.Column('deals', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('with_amount', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Integer(), nullable=False),
    sa.Column('times', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kpi_deal_rollups'))
    )
    op.create_index('ix_kpi_deal_rollups_lookup', 'kpi_deal_rollups', ['dim', 'kind', 'grain', 'period'], unique=False)
    op.create_table('kpi_rollup_sources',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('refreshed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_kpi_rollup_sources'))
    )


def downgrade() -> None:
    op.drop_table('kpi_rollup_sources')
    op.drop_index('ix_kpi_deal_rollups_lookup', table_name='kpi_deal_rollups')
    op.drop_table('kpi_deal_rollups')
    op.drop_index('ix_kpi_lead_rollups_lookup', table_name='kpi_lead_rollups')
    op.drop_table('kpi_lead_rollups')
