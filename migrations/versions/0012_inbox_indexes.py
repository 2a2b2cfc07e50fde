"""partial indexes for My work: only open work is read

- ``action_items (owner_id, due_date)`` and ``(counterpart_id, due_date)`` where the item is not
  finished: a person's open items, soonest due first, without reading finished ones.
- ``checklist_items (owner_id)`` and ``(owner_role, owner_team_id)`` where the question has no
  answer yet: the questions a person owes, by name or by role.
- ``gaps (cycle_id)`` where the gap is not decided yet: the gaps waiting for a decision.

Only indexes are added: no table is rebuilt, so the audit log's triggers (0005) stay in place.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ACTION = "status NOT IN ('done', 'dropped')"
UNANSWERED = "answer IS NULL"
UNDECIDED = "decision = 'open'"


def _where(sql: str) -> dict:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


def upgrade() -> None:
    op.create_index(
        'ix_action_items_open_owner', 'action_items', ['owner_id', 'due_date'], **_where(OPEN_ACTION)
    )
    op.create_index(
        'ix_action_items_open_counterpart',
        'action_items',
        ['counterpart_id', 'due_date'],
        **_where(OPEN_ACTION),
    )
    op.create_index(
        'ix_checklist_items_open_owner', 'checklist_items', ['owner_id'], **_where(UNANSWERED)
    )
    op.create_index(
        'ix_checklist_items_open_role',
        'checklist_items',
        ['owner_role', 'owner_team_id'],
        **_where(f"{UNANSWERED} AND owner_id IS NULL"),
    )
    op.create_index('ix_gaps_open', 'gaps', ['cycle_id'], **_where(UNDECIDED))


def downgrade() -> None:
    op.drop_index('ix_gaps_open', table_name='gaps')
    op.drop_index('ix_checklist_items_open_role', table_name='checklist_items')
    op.drop_index('ix_checklist_items_open_owner', table_name='checklist_items')
    op.drop_index('ix_action_items_open_counterpart', table_name='action_items')
    op.drop_index('ix_action_items_open_owner', table_name='action_items')
