"""carried over: an item copied into its cycle's follow-up is finished in its own cycle

Until now the carry-over copied a cycle's unfinished action items into its follow-up and left
the originals open, in progress, blocked or waiting for sign-off in the old cycle: its counts,
its recap, the overdue counts and people's lists counted them as unfinished work forever.

- Every original with a copy in a follow-up cycle (``carried_from_id``) that is still
  unfinished becomes ``carried_over`` (a finished status; its check-ins stay). Each change is
  an ``action.updated`` entry in the audit log, from the status it had to ``carried_over``,
  as the carry-over itself records it from now on (once: an item the log already has so is
  not logged again). Only the status changes (not ``version``): a form opened before is
  refused by the rule that a carried-over item is changed through its copy.
- The partial indexes of unfinished items (0023's ``ix_action_items_open_owner_cycle`` and
  ``ix_action_items_open_counterpart_cycle``) are made again with ``carried_over`` among the
  finished statuses, in the words the queries use.
- ``action_items.carried_from_id`` gets an index: an item's copy is looked up by it.

The status column is a plain string (no enum type, no check constraint: ``create_constraint``
is off since 0001), so no table is rebuilt and the audit log's triggers (0005) stay.

Downgrade gives each ``carried_over`` item the status the audit log says it had before (the
newest ``action.updated`` entry that made it ``carried_over``), else ``open``; it writes no
entry (the log is append-only, and upgrading again finds the entries it has), so a round trip
leaves every row as it was. Then the indexes are as 0023 had them.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 14:30:00.000000
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARRIED = "carried_over"
UNFINISHED = ("open", "in_progress", "blocked", "awaiting_signoff")
OPEN_BEFORE = "status NOT IN ('done', 'dropped')"
OPEN_AFTER = "status NOT IN ('done', 'dropped', 'carried_over')"
OPEN_INDEXES = {
    "ix_action_items_open_owner_cycle": ["owner_id", "cycle_id"],
    "ix_action_items_open_counterpart_cycle": ["counterpart_id", "cycle_id"],
}

items = sa.table(
    "action_items",
    sa.column("id", sa.Integer),
    sa.column("cycle_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("carried_from_id", sa.Integer),
)
cycles = sa.table("cycles", sa.column("id", sa.Integer), sa.column("title", sa.String))
events = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("at", models.base.UTCDateTime(timezone=True)),
    sa.column("actor_id", sa.Integer),
    sa.column("verb", sa.String),
    sa.column("object_type", sa.String),
    sa.column("object_id", sa.Integer),
    sa.column("cycle_id", sa.Integer),
    sa.column("before", sa.JSON),
    sa.column("after", sa.JSON),
)


def _where(sql: str) -> dict:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


def _open_indexes(predicate: str) -> None:
    for name, columns in OPEN_INDEXES.items():
        op.drop_index(name, table_name="action_items")
        op.create_index(name, "action_items", columns, **_where(predicate))


def _set_statuses(status_of: dict[int, str]) -> None:
    """Give each item (by id) its status. Only the status: neither ``version`` nor
    ``updated_at`` moves, so a round trip leaves every row as it was."""
    bind = op.get_bind()
    for status in sorted(set(status_of.values())):
        ids = sorted(i for i, s in status_of.items() if s == status)
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            bind.execute(items.update().where(items.c.id.in_(chunk)).values(status=status))


def _logged_as_carried(ids: list[int]) -> dict[int, str]:
    """The status each of these items had before an ``action.updated`` entry made it
    ``carried_over`` (the newest such entry), for the items the audit log has one for."""
    bind = op.get_bind()
    was: dict[int, str] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        for object_id, before, after in bind.execute(
            sa.select(events.c.object_id, events.c.before, events.c.after)
            .where(
                events.c.verb == "action.updated",
                events.c.object_type == "action_item",
                events.c.object_id.in_(chunk),
            )
            .order_by(events.c.id)
        ):
            status = _status_before(before)
            if _status_after(after) == CARRIED and status is not None:
                was[object_id] = status
    return was


def upgrade() -> None:
    op.create_index(op.f("ix_action_items_carried_from_id"), "action_items", ["carried_from_id"])
    bind = op.get_bind()
    copy = items.alias("copy")
    rows = bind.execute(
        sa.select(items.c.id, items.c.cycle_id, items.c.status, cycles.c.title)
        .join(copy, copy.c.carried_from_id == items.c.id)
        .join(cycles, cycles.c.id == copy.c.cycle_id)
        .where(items.c.status.in_(UNFINISHED))
        .order_by(items.c.id)
    ).all()
    _set_statuses({row.id: CARRIED for row in rows})
    # Logged once: an item the log already has made carried over (a store downgraded and
    # upgraded again) gets no second entry.
    known = _logged_as_carried([row.id for row in rows])
    news = [
        {
            "at": datetime.now(UTC),
            "actor_id": None,
            "verb": "action.updated",
            "object_type": "action_item",
            "object_id": item_id,
            "cycle_id": cycle_id,
            "before": {"status": status},
            "after": {"status": CARRIED, "reason": f"carried over to “{title}”"},
        }
        for item_id, cycle_id, status, title in rows
        if known.get(item_id) != status
    ]
    if news:
        bind.execute(events.insert(), news)
    _open_indexes(OPEN_AFTER)


def _status_before(value: Any) -> str | None:
    """The status an ``action.updated`` entry's ``before`` records (JSON, or its text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    status = value.get("status") if isinstance(value, dict) else None
    return status if status in UNFINISHED else None


def _status_after(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value.get("status") if isinstance(value, dict) else None


def downgrade() -> None:
    bind = op.get_bind()
    ids = list(bind.scalars(sa.select(items.c.id).where(items.c.status == CARRIED)))
    was = _logged_as_carried(ids)
    _set_statuses({item_id: was.get(item_id, "open") for item_id in ids})
    _open_indexes(OPEN_BEFORE)
    op.drop_index(op.f("ix_action_items_carried_from_id"), table_name="action_items")
