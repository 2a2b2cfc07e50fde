"""alignment agreements of team pairs, their versions and amendments; campaigns and materials

``agreements`` holds one agreement per pair of teams, ``agreement_versions`` each version of its
terms (written once: who changed what and why), ``amendments`` the changes a cycle's Plan
proposed and its Recap adopted or rejected, ``amendment_signoffs`` each point person's sign-off.
``campaigns`` and ``materials`` hold a pair's campaigns and their content, ``material_ratings``
how useful people of the other team found a material and what it fails to answer.

New tables only: downgrade drops them (the cycles, gaps and teams stay as they were).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 08:47:24.304705
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agreements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_a_id', sa.Integer(), nullable=False),
    sa.Column('team_b_id', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_a_id'], ['teams.id'], name=op.f('fk_agreements_team_a_id_teams')),
    sa.ForeignKeyConstraint(['team_b_id'], ['teams.id'], name=op.f('fk_agreements_team_b_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agreements')),
    sa.UniqueConstraint('team_a_id', 'team_b_id', name=op.f('uq_agreements_team_a_id_team_b_id'))
    )
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=True),
    sa.Column('ends_on', sa.Date(), nullable=True),
    sa.Column('channels', sa.Text(), nullable=True),
    sa.Column('funnel_key', sa.String(length=200), nullable=True),
    sa.Column('owner_a_id', sa.Integer(), nullable=True),
    sa.Column('owner_b_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_campaigns_agreement_id_agreements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['people.id'], name=op.f('fk_campaigns_created_by_id_people')),
    sa.ForeignKeyConstraint(['owner_a_id'], ['people.id'], name=op.f('fk_campaigns_owner_a_id_people')),
    sa.ForeignKeyConstraint(['owner_b_id'], ['people.id'], name=op.f('fk_campaigns_owner_b_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_agreement_id'), ['agreement_id'], unique=False)

    op.create_table('amendments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('base_number', sa.Integer(), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposed_by_id', sa.Integer(), nullable=False),
    sa.Column('proposed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('gap_ids', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_amendments_agreement_id_agreements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_amendments_cycle_id_cycles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['people.id'], name=op.f('fk_amendments_decided_by_id_people')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['people.id'], name=op.f('fk_amendments_proposed_by_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_amendments'))
    )
    with op.batch_alter_table('amendments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_amendments_agreement_id'), ['agreement_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_amendments_cycle_id'), ['cycle_id'], unique=False)

    op.create_table('materials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('link', sa.String(length=2000), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('action_item_id', sa.Integer(), nullable=True),
    sa.Column('shipped_on', sa.Date(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_item_id'], ['action_items.id'], name=op.f('fk_materials_action_item_id_action_items'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_materials_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['people.id'], name=op.f('fk_materials_created_by_id_people')),
    sa.ForeignKeyConstraint(['owner_id'], ['people.id'], name=op.f('fk_materials_owner_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_materials'))
    )
    with op.batch_alter_table('materials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_materials_campaign_id'), ['campaign_id'], unique=False)

    op.create_table('agreement_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('changed_by_id', sa.Integer(), nullable=True),
    sa.Column('cycle_id', sa.Integer(), nullable=True),
    sa.Column('amendment_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_agreement_versions_agreement_id_agreements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['amendment_id'], ['amendments.id'], name=op.f('fk_agreement_versions_amendment_id_amendments')),
    sa.ForeignKeyConstraint(['changed_by_id'], ['people.id'], name=op.f('fk_agreement_versions_changed_by_id_people')),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_agreement_versions_cycle_id_cycles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agreement_versions')),
    sa.UniqueConstraint('agreement_id', 'number', name=op.f('uq_agreement_versions_agreement_id_number'))
    )
    with op.batch_alter_table('agreement_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agreement_versions_agreement_id'), ['agreement_id'], unique=False)

    op.create_table('amendment_signoffs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('amendment_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('signed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['amendment_id'], ['amendments.id'], name=op.f('fk_amendment_signoffs_amendment_id_amendments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_amendment_signoffs_person_id_people')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_amendment_signoffs_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_amendment_signoffs')),
    sa.UniqueConstraint('amendment_id', 'team_id', name=op.f('uq_amendment_signoffs_amendment_id_team_id'))
    )
    with op.batch_alter_table('amendment_signoffs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_amendment_signoffs_amendment_id'), ['amendment_id'], unique=False)

    op.create_table('material_ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('usefulness', sa.Integer(), nullable=False),
    sa.Column('objections', sa.Text(), nullable=True),
    sa.Column('rated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['material_id'], ['materials.id'], name=op.f('fk_material_ratings_material_id_materials'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_material_ratings_person_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_material_ratings')),
    sa.UniqueConstraint('material_id', 'person_id', name=op.f('uq_material_ratings_material_id_person_id'))
    )
    with op.batch_alter_table('material_ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_material_ratings_material_id'), ['material_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('material_ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_material_ratings_material_id'))

    op.drop_table('material_ratings')
    with op.batch_alter_table('amendment_signoffs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_amendment_signoffs_amendment_id'))

    op.drop_table('amendment_signoffs')
    with op.batch_alter_table('agreement_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agreement_versions_agreement_id'))

    op.drop_table('agreement_versions')
    with op.batch_alter_table('materials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_materials_campaign_id'))

    op.drop_table('materials')
    with op.batch_alter_table('amendments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_amendments_cycle_id'))
        batch_op.drop_index(batch_op.f('ix_amendments_agreement_id'))

    op.drop_table('amendments')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_agreement_id'))

    op.drop_table('campaigns')
    op.drop_table('agreements')
