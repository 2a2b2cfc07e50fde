"""notification retry_at: when a message whose send failed is tried again (backoff kept in
the store, so any deliverer, a scheduled sweep included, honours it)

A nullable column only: downgrade drops it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 11:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
