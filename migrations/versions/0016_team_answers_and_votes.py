"""team answers and votes: each team's own Identify answers, the reveal, the vote on the gaps

``team_answers`` holds each team's own answers to the Identify questions and its ratings of
the hand-off, ``team_submissions`` that a team submitted them, ``answer_reveals`` that a
cycle's answers are shown to everyone who sees the cycle (both teams submitted, or a point
person revealed them). ``gap_votes`` holds how many of a person's votes are on one gap,
``vote_closures`` that a cycle's vote is closed (its totals show).

New tables only: downgrade drops them (the cycles, gaps and checklists stay as they were).

Revision ID: 0016
Revises: 0009
Create Date: 2026-12-05 07:58:43.369584
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('answer_reveals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('revealed_by_id', sa.Integer(), nullable=True),
    sa.Column('early', sa.Boolean(), nullable=False),
    sa.Column('revealed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_answer_reveals_cycle_id_cycles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['revealed_by_id'], ['people.id'], name=op.f('fk_answer_reveals_revealed_by_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_answer_reveals')),
    sa.UniqueConstraint('cycle_id', name=op.f('uq_answer_reveals_cycle_id'))
    )
    op.create_table('team_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_team_answers_cycle_id_cycles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_answers_team_id_teams')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['people.id'], name=op.f('fk_team_answers_updated_by_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_answers')),
    sa.UniqueConstraint('cycle_id', 'team_id', 'kind', 'key', name=op.f('uq_team_answers_cycle_id_team_id_kind_key'))
    )
    with op.batch_alter_table('team_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_answers_cycle_id'), ['cycle_id'], unique=False)

    op.create_table('team_submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_team_submissions_cycle_id_cycles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['people.id'], name=op.f('fk_team_submissions_submitted_by_id_people')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_submissions_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_submissions')),
    sa.UniqueConstraint('cycle_id', 'team_id', name=op.f('uq_team_submissions_cycle_id_team_id'))
    )
    with op.batch_alter_table('team_submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_submissions_cycle_id'), ['cycle_id'], unique=False)

    op.create_table('vote_closures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('closed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['closed_by_id'], ['people.id'], name=op.f('fk_vote_closures_closed_by_id_people')),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_vote_closures_cycle_id_cycles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vote_closures')),
    sa.UniqueConstraint('cycle_id', name=op.f('uq_vote_closures_cycle_id'))
    )
    op.create_table('gap_votes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('gap_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('votes', sa.Integer(), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_gap_votes_cycle_id_cycles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['gap_id'], ['gaps.id'], name=op.f('fk_gap_votes_gap_id_gaps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_gap_votes_person_id_people')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gap_votes')),
    sa.UniqueConstraint('gap_id', 'person_id', name=op.f('uq_gap_votes_gap_id_person_id'))
    )
    with op.batch_alter_table('gap_votes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gap_votes_cycle_id'), ['cycle_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('gap_votes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gap_votes_cycle_id'))

    op.drop_table('gap_votes')
    op.drop_table('vote_closures')
    with op.batch_alter_table('team_submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_submissions_cycle_id'))

    op.drop_table('team_submissions')
    with op.batch_alter_table('team_answers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_answers_cycle_id'))

    op.drop_table('team_answers')
    op.drop_table('answer_reveals')
