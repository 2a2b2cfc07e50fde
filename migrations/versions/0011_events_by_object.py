"""events by object: an index for an object's history

The admin pages show a person's history (added, moved, role changed, deactivated, links sent):
the audit entries of one object, newest first. The index on ``(object_type, object_id)`` finds
them without reading the whole log. An index only: downgrade drops it.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-05 08:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_events_object', 'events', ['object_type', 'object_id'])


def downgrade() -> None:
    op.drop_index('ix_events_object', table_name='events')
