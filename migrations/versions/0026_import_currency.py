"""the currency of the amounts: each import's (funnel_imports.currency) and each source's
(funnel_source_currencies)

Until now amounts were stored in cents with no currency, and the numbers added up the amounts
of every source: a store holding one export in dollars and one in euros showed a revenue that
was no number.

- ``funnel_imports.currency``: the currency the amounts of an import carried (``$1,200.00``,
  ``EUR 900``) or its mapping declared (``amount_currency``), as a code; NULL when neither said.
- ``funnel_source_currencies``: one row per source whose currency is known: set by its first
  import that said one, or by a person on the import page (``set_by_id``). A source's later
  imports must agree with it; the KPIs do not add up amounts of sources in different
  currencies.

Imports before this one recorded none, and no source has a currency: the next import that
says one, or a person, sets it. Downgrade drops the table and the column.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 14:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("funnel_imports") as batch:
        batch.add_column(sa.Column("currency", sa.String(8), nullable=True))
    op.create_table(
        "funnel_source_currencies",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("set_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["set_by_id"], ["people.id"], name=op.f("fk_funnel_source_currencies_set_by_id_people")
        ),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_funnel_source_currencies")),
    )


def downgrade() -> None:
    op.drop_table("funnel_source_currencies")
    with op.batch_alter_table("funnel_imports") as batch:
        batch.drop_column("currency")
