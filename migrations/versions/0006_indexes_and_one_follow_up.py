"""indexes for the web's reads and the sign-in throttle; one follow-up per cycle

- ``action_items (cycle_id, status, confidence, due_date)``: the board's and the gates'
  per-cycle counts read the index alone; it replaces the single-column index on ``cycle_id``.
- ``events (verb, at)``: the sign-in throttle counts one verb's recent rows.
- ``cycles.previous_cycle_id`` becomes unique: a second follow-up of one cycle would carry the
  same open action items over twice (the service refuses it; this makes the store refuse it
  too). A store that already holds two follow-ups of one cycle is named, and left unchanged.

Only indexes change: no table is rebuilt, so the audit log's triggers (0005) stay in place.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.runner import MigrationRefused

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    twice = op.get_bind().execute(
        sa.text(
            "SELECT previous_cycle_id, COUNT(*) FROM cycles WHERE previous_cycle_id IS NOT NULL "
            "GROUP BY previous_cycle_id HAVING COUNT(*) > 1 ORDER BY previous_cycle_id"
        )
    ).all()
    if twice:
        named = ", ".join(f"cycle {cid} ({n})" for cid, n in twice)
        raise MigrationRefused(
            f"these cycles have more than one follow-up: {named}; give all but one of each a "
            "different previous cycle (or none), then run 'aligncycle db upgrade' again"
        )
    op.drop_index('ix_cycles_previous_cycle_id', table_name='cycles')
    op.create_index('ix_cycles_previous_cycle_id', 'cycles', ['previous_cycle_id'], unique=True)
    op.create_index(
        'ix_action_items_cycle_progress',
        'action_items',
        ['cycle_id', 'status', 'confidence', 'due_date'],
    )
    op.drop_index('ix_action_items_cycle_id', table_name='action_items')
    op.create_index('ix_events_verb_at', 'events', ['verb', 'at'])


def downgrade() -> None:
    op.drop_index('ix_events_verb_at', table_name='events')
    op.create_index('ix_action_items_cycle_id', 'action_items', ['cycle_id'])
    op.drop_index('ix_action_items_cycle_progress', table_name='action_items')
    op.drop_index('ix_cycles_previous_cycle_id', table_name='cycles')
    op.create_index('ix_cycles_previous_cycle_id', 'cycles', ['previous_cycle_id'], unique=False)
