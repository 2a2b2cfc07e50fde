"""one action item for several gaps; counterpart sign-off; survey answers published in batches

- ``action_item_gaps`` (action item, gap) becomes the one record of which gaps an item
  addresses: every ``action_items.gap_id`` is copied into it, then the column is dropped. The
  Plan gate, the recap and every face read the links.
- Proposals are keyed by template within a cycle (``template:<template>``), no longer by gap
  (``template:<gap id>:<template>``): of the copies one template made for several gaps, the
  oldest takes the new key, so the next proposal links gaps to it instead of copying it again.
  The other copies are kept as they are (real records; people drop them).
- ``action_items.signed_off_by_id`` / ``signed_off_at``: the counterpart's sign-off.
- ``survey_responses.batch`` and ``survey_participations.batch``: the publication an answer
  (and who gave one) went out in. A cycle that already has at least three answers publishes
  them as its first batch; fewer wait for the next batch.

On SQLite, dropping a column rebuilds ``action_items`` (copy, drop, rename). With foreign keys
enforced (aligncycle's connections enforce them), dropping the old table would delete every
check-in, notification, target and link of the items (ON DELETE CASCADE), and an item
carried from another (``carried_from_id``) would stop the drop: those rows and references
are kept aside during the rebuild and put back after it.

Downgrade refuses a store where an action item addresses several gaps (the older schema holds
one): it names them. Items waiting for sign-off go back to in progress; carried gaps become
gaps recorded by a person (upgrading again knows them by their key, ``carried:<gap id>``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import models.base
from migrations.runner import MigrationRefused

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The threshold of the old rule, and the default of the playbook's ``survey_min_answers``.
MIN_ANSWERS = 3


def _sqlite_dependents(bind: sa.Connection, table: str) -> list[str]:
    """Tables whose rows a DROP TABLE of ``table`` would cascade to (directly or through
    another such table), parents before children."""
    names = [
        r[0]
        for r in bind.execute(
            sa.text("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        )
    ]
    parents = {
        n: {r[2] for r in bind.execute(sa.text(f'PRAGMA foreign_key_list("{n}")'))} - {n}
        for n in names
    }
    found: list[str] = []
    reached = {table}
    while True:
        more = [n for n in names if n not in reached and parents[n] & reached]
        if not more:
            break
        reached.update(more)
    # parents before children: a table comes after every dependent table it refers to
    pending = [n for n in names if n in reached and n != table]
    while pending:
        ready = [n for n in pending if not (parents[n] & set(pending))]
        found += ready
        pending = [n for n in pending if n not in ready]
    return found


@contextmanager
def _rebuilding(table: str) -> Iterator[None]:
    """Around a batch rebuild of ``table`` on SQLite with foreign keys on: keep the rows of
    the tables that refer to it and its references to itself aside, put them back after."""
    bind = op.get_bind()
    enforced = bind.dialect.name == 'sqlite' and bind.execute(sa.text('PRAGMA foreign_keys')).scalar()
    if not enforced:
        yield
        return
    dependents = _sqlite_dependents(bind, table)
    for name in dependents:
        bind.execute(sa.text(f'CREATE TEMP TABLE "_keep_{name}" AS SELECT * FROM "{name}"'))
    # A row referring to another of the same table would stop the old table's drop (the new
    # copy refers to it): the references are cleared for the rebuild and set again after it.
    own = sorted(
        {r[3] for r in bind.execute(sa.text(f'PRAGMA foreign_key_list("{table}")')) if r[2] == table}
    )
    for column in own:
        bind.execute(
            sa.text(
                f'CREATE TEMP TABLE "_keep_{table}_{column}" AS SELECT id, "{column}" AS ref '
                f'FROM "{table}" WHERE "{column}" IS NOT NULL'
            )
        )
        bind.execute(sa.text(f'UPDATE "{table}" SET "{column}" = NULL'))
    yield
    for column in own:
        keep = f'temp."_keep_{table}_{column}"'
        bind.execute(
            sa.text(
                f'UPDATE "{table}" SET "{column}" = (SELECT k.ref FROM {keep} k '
                f'WHERE k.id = "{table}".id) WHERE id IN (SELECT id FROM {keep})'
            )
        )
        bind.execute(sa.text(f'DROP TABLE {keep}'))
    for name in dependents:
        bind.execute(sa.text(f'DELETE FROM "{name}"'))
        bind.execute(sa.text(f'INSERT INTO "{name}" SELECT * FROM temp."_keep_{name}"'))
        bind.execute(sa.text(f'DROP TABLE temp."_keep_{name}"'))
    broken = bind.execute(sa.text('PRAGMA foreign_key_check')).all()
    if broken:
        raise MigrationRefused(
            f"rebuilding {table} would leave rows pointing at missing rows ({len(broken)}, "
            f"the first in {broken[0][0]}, row {broken[0][1]}); nothing was changed"
        )


def _rekey_proposals(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.text("SELECT id, cycle_id, key FROM action_items WHERE key LIKE 'template:%' ORDER BY id")
    ).all()
    taken = {(cycle_id, key) for _, cycle_id, key in rows}
    for item_id, cycle_id, key in rows:
        parts = key.split(':')
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        new_key = f'template:{parts[2]}'
        if (cycle_id, new_key) in taken:
            continue
        taken.add((cycle_id, new_key))
        bind.execute(
            sa.text('UPDATE action_items SET key = :key WHERE id = :id'), {'key': new_key, 'id': item_id}
        )


def _publish_surveys(bind: sa.Connection) -> None:
    for table in ('survey_responses', 'survey_participations'):
        bind.execute(
            sa.text(
                f'UPDATE {table} SET batch = 1 WHERE cycle_id IN (SELECT cycle_id FROM '
                'survey_responses GROUP BY cycle_id HAVING COUNT(*) >= :k)'
            ),
            {'k': MIN_ANSWERS},
        )


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table('action_item_gaps',
    sa.Column('action_item_id', sa.Integer(), nullable=False),
    sa.Column('gap_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['action_item_id'], ['action_items.id'], name=op.f('fk_action_item_gaps_action_item_id_action_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['gap_id'], ['gaps.id'], name=op.f('fk_action_item_gaps_gap_id_gaps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('action_item_id', 'gap_id', name=op.f('pk_action_item_gaps'))
    )
    op.create_index(op.f('ix_action_item_gaps_gap_id'), 'action_item_gaps', ['gap_id'], unique=False)
    bind.execute(
        sa.text(
            'INSERT INTO action_item_gaps (action_item_id, gap_id) '
            'SELECT id, gap_id FROM action_items WHERE gap_id IS NOT NULL'
        )
    )
    _rekey_proposals(bind)
    with _rebuilding('action_items'), op.batch_alter_table('action_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_off_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('signed_off_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_index(batch_op.f('ix_action_items_gap_id'))
        batch_op.drop_constraint(batch_op.f('fk_action_items_gap_id_gaps'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_action_items_signed_off_by_id_people'), 'people', ['signed_off_by_id'], ['id'])
        batch_op.drop_column('gap_id')
    # gaps a follow-up carried over (their key says so) that a downgrade had to call 'person'
    bind.execute(
        sa.text("UPDATE gaps SET source = 'carried' WHERE key LIKE 'carried:%' AND source = 'person'")
    )
    op.add_column('survey_responses', sa.Column('batch', sa.Integer(), nullable=True))
    op.add_column('survey_participations', sa.Column('batch', sa.Integer(), nullable=True))
    _publish_surveys(bind)


def downgrade() -> None:
    bind = op.get_bind()
    several = bind.execute(
        sa.text(
            'SELECT action_item_id, COUNT(*) FROM action_item_gaps GROUP BY action_item_id '
            'HAVING COUNT(*) > 1 ORDER BY action_item_id'
        )
    ).all()
    if several:
        named = ', '.join(f'action item {i} ({n} gaps)' for i, n in several[:10])
        more = f' and {len(several) - 10} more' if len(several) > 10 else ''
        raise MigrationRefused(
            f'these action items address several gaps, and the older schema holds one gap per '
            f'item: {named}{more}; unlink all but one gap of each (aligncycle action unlink), '
            'then downgrade again'
        )
    with op.batch_alter_table('survey_participations', schema=None) as batch_op:
        batch_op.drop_column('batch')
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_column('batch')
    bind.execute(
        sa.text("UPDATE action_items SET status = 'in_progress' WHERE status = 'awaiting_signoff'")
    )
    bind.execute(sa.text("UPDATE gaps SET source = 'person' WHERE source = 'carried'"))
    with _rebuilding('action_items'), op.batch_alter_table('action_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gap_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_action_items_signed_off_by_id_people'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_action_items_gap_id_gaps'), 'gaps', ['gap_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_action_items_gap_id'), ['gap_id'], unique=False)
        batch_op.drop_column('signed_off_at')
        batch_op.drop_column('signed_off_by_id')
    bind.execute(
        sa.text(
            'UPDATE action_items SET gap_id = (SELECT l.gap_id FROM action_item_gaps l '
            'WHERE l.action_item_id = action_items.id)'
        )
    )
    # back to the per-gap keys the older code proposes with
    bind.execute(
        sa.text(
            "UPDATE action_items SET key = 'template:' || CAST(gap_id AS VARCHAR(20)) || ':' || "
            "SUBSTR(key, 10) WHERE key LIKE 'template:%' AND gap_id IS NOT NULL "
            "AND key NOT LIKE 'template:%:%'"
        )
    )
    op.drop_index(op.f('ix_action_item_gaps_gap_id'), table_name='action_item_gaps')
    op.drop_table('action_item_gaps')
