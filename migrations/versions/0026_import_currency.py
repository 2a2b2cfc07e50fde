"""funnel_imports.currency: the currency of the amounts an import read

Until now amounts were stored in cents with no currency, and the numbers added up the amounts
of every source: a store holding one export in dollars and one in euros showed a revenue that
was no number. Each import now records the currency its amounts carried (``$1,200.00``,
``EUR 900``) or its mapping declared (``amount_currency``), as an ISO code; a source's imports
must agree, and the KPIs do not add up amounts of sources in different currencies.

Imports before this one recorded none (NULL: not known), which is what an import of amounts
with no currency sign still records. Downgrade drops the column.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 14:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.add_column(sa.Column("currency", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.drop_column("currency")
