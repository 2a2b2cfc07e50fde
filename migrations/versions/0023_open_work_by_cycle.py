"""open work by cycle: My work, the inbox and the menu's count read only the open cycles

- ``action_items (owner_id, cycle_id)`` and ``(counterpart_id, cycle_id)`` where the item is
  not finished replace 0012's ``(owner_id, due_date)`` and ``(counterpart_id, due_date)``: a
  person's unfinished items are looked up per open cycle, so the unfinished items left in
  closed cycles (years of them) are never read. ``owner_id IS NULL`` per open cycle is the
  inbox's "to assign".
- ``checklist_items (owner_id, cycle_id)`` and ``(owner_role, owner_team_id, cycle_id)`` where
  the question has no answer yet replace 0012's ``(owner_id)`` and ``(owner_role,
  owner_team_id)``: the questions a person owes, per open cycle (optional questions left
  unanswered in closed cycles are never read).

Only indexes are added and dropped: no table is rebuilt, so the audit log's triggers (0005)
stay in place.

Revision ID: 0023
Revises: 0019
Create Date: 2026-12-05 11:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ACTION = "status NOT IN ('done', 'dropped')"
UNANSWERED = "answer IS NULL"
BY_ROLE = f"{UNANSWERED} AND owner_id IS NULL"


def _where(sql: str) -> dict:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


def upgrade() -> None:
    op.create_index(
        "ix_action_items_open_owner_cycle",
        "action_items",
        ["owner_id", "cycle_id"],
        **_where(OPEN_ACTION),
    )
    op.create_index(
        "ix_action_items_open_counterpart_cycle",
        "action_items",
        ["counterpart_id", "cycle_id"],
        **_where(OPEN_ACTION),
    )
    op.drop_index("ix_action_items_open_owner", table_name="action_items")
    op.drop_index("ix_action_items_open_counterpart", table_name="action_items")
    op.create_index(
        "ix_checklist_items_open_owner_cycle",
        "checklist_items",
        ["owner_id", "cycle_id"],
        **_where(UNANSWERED),
    )
    op.create_index(
        "ix_checklist_items_open_role_cycle",
        "checklist_items",
        ["owner_role", "owner_team_id", "cycle_id"],
        **_where(BY_ROLE),
    )
    op.drop_index("ix_checklist_items_open_owner", table_name="checklist_items")
    op.drop_index("ix_checklist_items_open_role", table_name="checklist_items")


def downgrade() -> None:
    op.create_index(
        "ix_checklist_items_open_owner", "checklist_items", ["owner_id"], **_where(UNANSWERED)
    )
    op.create_index(
        "ix_checklist_items_open_role",
        "checklist_items",
        ["owner_role", "owner_team_id"],
        **_where(BY_ROLE),
    )
    op.drop_index("ix_checklist_items_open_role_cycle", table_name="checklist_items")
    op.drop_index("ix_checklist_items_open_owner_cycle", table_name="checklist_items")
    op.create_index(
        "ix_action_items_open_owner", "action_items", ["owner_id", "due_date"], **_where(OPEN_ACTION)
    )
    op.create_index(
        "ix_action_items_open_counterpart",
        "action_items",
        ["counterpart_id", "due_date"],
        **_where(OPEN_ACTION),
    )
    op.drop_index("ix_action_items_open_counterpart_cycle", table_name="action_items")
    op.drop_index("ix_action_items_open_owner_cycle", table_name="action_items")
