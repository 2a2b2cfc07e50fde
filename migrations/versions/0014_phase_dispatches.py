"""phase dispatches: the outbox of a cycle's moves

``phase_dispatches`` holds, for every move of a cycle into a phase, the phase flow that move
asks for, written in the move's own transaction; a dispatcher starts the flow from it (in
process, or as a Prefect deployment run created with the row's idempotency key) and marks the
row. See ``models/phases/dispatch.py``.

Cycles already past Identify when this runs get no rows: their phase flows ran, or were
waited for, under the old cycle flow.

A new table only: downgrade drops it.

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('phase_dispatches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Enum('identify', 'plan', 'execute', 'recap', 'closed', name='phase', native_enum=False, length=32), nullable=False),
    sa.Column('today', sa.Date(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'claimed', 'started', 'skipped', name='dispatchstatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_phase_dispatches_cycle_id_cycles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phase_dispatches')),
    sa.UniqueConstraint('key', name=op.f('uq_phase_dispatches_key'))
    )
    with op.batch_alter_table('phase_dispatches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phase_dispatches_cycle_id'), ['cycle_id'], unique=False)
        batch_op.create_index('ix_phase_dispatches_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('phase_dispatches', schema=None) as batch_op:
        batch_op.drop_index('ix_phase_dispatches_status')
        batch_op.drop_index(batch_op.f('ix_phase_dispatches_cycle_id'))

    op.drop_table('phase_dispatches')
