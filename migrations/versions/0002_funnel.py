"""funnel evidence: funnel records, import log, cycle KPI snapshots, action targets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:17:26.514529

Funnel timestamps are BIGINT seconds since the epoch (UTC); amounts are BIGINT cents
(see models/funnel/tables.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('funnel_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=200), nullable=True),
    sa.Column('campaign', sa.String(length=300), nullable=True),
    sa.Column('owner', sa.String(length=200), nullable=True),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=True),
    sa.Column('mql_at', sa.BigInteger(), nullable=True),
    sa.Column('first_touch_at', sa.BigInteger(), nullable=True),
    sa.Column('sql_at', sa.BigInteger(), nullable=True),
    sa.Column('rejected_at', sa.BigInteger(), nullable=True),
    sa.Column('rejection_reason', sa.String(length=300), nullable=True),
    sa.Column('opportunity_at', sa.BigInteger(), nullable=True),
    sa.Column('won_at', sa.BigInteger(), nullable=True),
    sa.Column('lost_at', sa.BigInteger(), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_funnel_records')),
    sa.UniqueConstraint('source', 'external_id', name=op.f('uq_funnel_records_source_external_id'))
    )
    op.create_table('funnel_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('mapping', sa.String(length=200), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('rows_new', sa.Integer(), nullable=False),
    sa.Column('rows_changed', sa.Integer(), nullable=False),
    sa.Column('rows_unchanged', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('imported_by_id', sa.Integer(), nullable=True),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['imported_by_id'], ['people.id'], name=op.f('fk_funnel_imports_imported_by_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_funnel_imports'))
    )
    op.create_table('cycle_kpi_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('kpi', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('numerator', sa.Float(), nullable=True),
    sa.Column('sample_size', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.Date(), nullable=False),
    sa.Column('window_end', sa.Date(), nullable=False),
    sa.Column('sla_hours', sa.Integer(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('computed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_cycle_kpi_snapshots_cycle_id_cycles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cycle_kpi_snapshots')),
    sa.UniqueConstraint('cycle_id', 'kind', 'kpi', name=op.f('uq_cycle_kpi_snapshots_cycle_id_kind_kpi'))
    )
    with op.batch_alter_table('cycle_kpi_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cycle_kpi_snapshots_cycle_id'), ['cycle_id'], unique=False)

    op.create_table('action_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action_item_id', sa.Integer(), nullable=False),
    sa.Column('kpi', sa.String(length=64), nullable=False),
    sa.Column('baseline', sa.Float(), nullable=True),
    sa.Column('target', sa.Float(), nullable=False),
    sa.Column('window_start', sa.Date(), nullable=False),
    sa.Column('window_end', sa.Date(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('set_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['action_item_id'], ['action_items.id'], name=op.f('fk_action_targets_action_item_id_action_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['set_by_id'], ['people.id'], name=op.f('fk_action_targets_set_by_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_targets')),
    sa.UniqueConstraint('action_item_id', name=op.f('uq_action_targets_action_item_id'))
    )


def downgrade() -> None:
    op.drop_table('action_targets')
    with op.batch_alter_table('cycle_kpi_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cycle_kpi_snapshots_cycle_id'))

    op.drop_table('cycle_kpi_snapshots')
    op.drop_table('funnel_imports')
    op.drop_table('funnel_records')
