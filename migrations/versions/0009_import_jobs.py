"""import jobs: imports started in the web app or the API

``import_jobs`` holds each import a lead or a manager starts in the browser or through the
API: the uploaded files' names and sizes (the files themselves live in a folder of their own
under the data dir until the import, or until they expire), the settings chosen, the preview
computed before anything is written, then the state of the import and its summary. Every web
worker process reads it, so a page served by any of them shows the same state.

A new table only: downgrade drops it (the funnel data the jobs imported stays).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('import_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('profile', sa.String(length=100), nullable=True),
    sa.Column('mapping_name', sa.String(length=255), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('folder', sa.String(length=64), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('preview', sa.JSON(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('funnel_import_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['people.id'], name=op.f('fk_import_jobs_created_by_id_people')),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['people.id'], name=op.f('fk_import_jobs_confirmed_by_id_people')),
    sa.ForeignKeyConstraint(['funnel_import_id'], ['funnel_imports.id'], name=op.f('fk_import_jobs_funnel_import_id_funnel_imports'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_jobs'))
    )
    op.create_index(op.f('ix_import_jobs_created_by_id'), 'import_jobs', ['created_by_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_import_jobs_created_by_id'), table_name='import_jobs')
    op.drop_table('import_jobs')
