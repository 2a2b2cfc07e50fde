"""leads and deals apart; data-quality flags

``funnel_records`` held one row per lead with one deal's dates on it, so several deals of one
contact overwrote each other. It becomes two tables:

- ``leads``: one row per lead, the lead's own fields (``(source, external_id)`` unique);
- ``deals``: one row per deal, naming its lead by the lead's natural key (``lead_key``), not a
  row id, so deals imported before their leads find them all the same.

Each record becomes a lead, and a deal (keyed by the record's id, belonging to that lead) when
it carried a deal's date or an amount. ``funnel_flags`` holds what is odd about kept records
(computed afresh by the next import of each source); ``funnel_imports.rows_flagged`` counts them.

Downgrade puts each lead back with one of its deals (its first won deal, else its first deal):
a lead's other deals, and deals with no lead, do not fit the old table and are lost.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEAD_COLUMNS = (
    "source, external_id, channel, campaign, owner, team, created_at, mql_at, first_touch_at, "
    "sql_at, rejected_at, rejection_reason"
)


def _records_table() -> None:
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


def upgrade() -> None:
    op.create_table('leads',
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
    sa.Column('file', sa.String(length=255), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('deal_count', sa.Integer(), nullable=True),
    sa.Column('open_deal_count', sa.Integer(), nullable=True),
    sa.Column('first_won_at', sa.BigInteger(), nullable=True),
    sa.Column('last_deal_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_leads')),
    sa.UniqueConstraint('source', 'external_id', name=op.f('uq_leads_source_external_id'))
    )
    op.create_table('deals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('lead_key', sa.String(length=200), nullable=True),
    sa.Column('other_leads', sa.String(length=1000), nullable=True),
    sa.Column('account', sa.String(length=200), nullable=True),
    sa.Column('stage', sa.String(length=100), nullable=True),
    sa.Column('owner', sa.String(length=200), nullable=True),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('opportunity_at', sa.BigInteger(), nullable=True),
    sa.Column('won_at', sa.BigInteger(), nullable=True),
    sa.Column('lost_at', sa.BigInteger(), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=True),
    sa.Column('listed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('file', sa.String(length=255), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('lead_channel', sa.String(length=200), nullable=True),
    sa.Column('lead_campaign', sa.String(length=300), nullable=True),
    sa.Column('lead_owner', sa.String(length=200), nullable=True),
    sa.Column('lead_team', sa.String(length=100), nullable=True),
    sa.Column('lead_mql_at', sa.BigInteger(), nullable=True),
    sa.Column('lead_sql_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deals')),
    sa.UniqueConstraint('source', 'external_id', name=op.f('uq_deals_source_external_id'))
    )
    op.create_index('ix_deals_source_lead_key', 'deals', ['source', 'lead_key'], unique=False)
    op.create_table('funnel_flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('record', sa.String(length=8), nullable=False),
    sa.Column('lead_key', sa.String(length=200), nullable=True),
    sa.Column('deal_key', sa.String(length=200), nullable=True),
    sa.Column('file', sa.String(length=255), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('sentence', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['funnel_imports.id'], name=op.f('fk_funnel_flags_import_id_funnel_imports'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_funnel_flags'))
    )
    op.create_index('ix_funnel_flags_source_lead_key', 'funnel_flags', ['source', 'lead_key'], unique=False)
    with op.batch_alter_table('funnel_imports') as batch:
        batch.add_column(sa.Column('rows_flagged', sa.Integer(), server_default='0', nullable=False))

    has_deal = (
        "opportunity_at IS NOT NULL OR won_at IS NOT NULL OR lost_at IS NOT NULL "
        "OR amount_cents IS NOT NULL"
    )
    # each lead with its one deal summed up, each deal with its lead's fields (as
    # models.funnel.links derives them after an import)
    op.execute(
        f"INSERT INTO leads ({_LEAD_COLUMNS}, deal_count, open_deal_count, first_won_at, "
        f"last_deal_at) SELECT {_LEAD_COLUMNS}, CASE WHEN {has_deal} THEN 1 END, "
        f"CASE WHEN {has_deal} THEN CASE WHEN won_at IS NULL AND lost_at IS NULL THEN 1 "
        "ELSE 0 END END, won_at, opportunity_at FROM funnel_records"
    )
    op.execute(
        "INSERT INTO deals (source, external_id, lead_key, owner, team, opportunity_at, won_at, "
        "lost_at, amount_cents, listed, lead_channel, lead_campaign, lead_owner, lead_team, "
        "lead_mql_at, lead_sql_at) SELECT source, external_id, external_id, owner, team, "
        "opportunity_at, won_at, lost_at, amount_cents, TRUE, channel, campaign, owner, team, "
        f"mql_at, sql_at FROM funnel_records WHERE {has_deal}"
    )
    op.drop_table('funnel_records')


def downgrade() -> None:
    _records_table()
    op.execute(
        f"INSERT INTO funnel_records ({_LEAD_COLUMNS}, opportunity_at, won_at, lost_at, "
        "amount_cents) SELECT l.source, l.external_id, l.channel, l.campaign, l.owner, l.team, "
        "l.created_at, l.mql_at, l.first_touch_at, l.sql_at, l.rejected_at, l.rejection_reason, "
        "d.opportunity_at, d.won_at, d.lost_at, d.amount_cents FROM leads l LEFT JOIN deals d "
        "ON d.id = (SELECT d2.id FROM deals d2 WHERE d2.source = l.source AND d2.lead_key = "
        "l.external_id AND d2.listed ORDER BY CASE WHEN d2.won_at IS NULL THEN 1 ELSE 0 END, "
        "d2.won_at, d2.id LIMIT 1)"
    )
    with op.batch_alter_table('funnel_imports') as batch:
        batch.drop_column('rows_flagged')
    op.drop_index('ix_funnel_flags_source_lead_key', table_name='funnel_flags')
    op.drop_table('funnel_flags')
    op.drop_index('ix_deals_source_lead_key', table_name='deals')
    op.drop_table('deals')
    op.drop_table('leads')
