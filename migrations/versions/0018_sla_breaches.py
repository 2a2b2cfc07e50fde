"""sla breaches: the SLA breach ledger of each cycle (leads that waited past the hand-off SLA
during Execute), read by the digest and by the next cycle's start

A new table only: downgrade drops it.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-05 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sla_breaches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("lead", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=300), nullable=True),
        sa.Column("channel", sa.String(length=300), nullable=True),
        sa.Column("campaign", sa.String(length=300), nullable=True),
        sa.Column("mql_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("touched_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sla_hours", sa.Float(), nullable=False),
        sa.Column("waited_hours", sa.Float(), nullable=False),
        sa.Column("late_hours", sa.Float(), nullable=False),
        sa.Column("recorded_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycles.id"],
            name=op.f("fk_sla_breaches_cycle_id_cycles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_breaches")),
        sa.UniqueConstraint("cycle_id", "source", "lead", name=op.f("uq_sla_breaches_cycle_id_source_lead")),
    )
    with op.batch_alter_table("sla_breaches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_breaches_cycle_id"), ["cycle_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sla_breaches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_breaches_cycle_id"))
    op.drop_table("sla_breaches")
