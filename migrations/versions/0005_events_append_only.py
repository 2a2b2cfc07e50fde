"""events: the audit log is append-only, enforced by the database

Triggers refuse UPDATE and DELETE on ``events`` (and TRUNCATE on PostgreSQL), whoever sends
them: the app, a script, or someone at a SQL prompt. Inserting stays as it was. The message
is the same on both stores, and both raise an integrity error (SQLite's ``RAISE(ABORT)`` is
a constraint error; PostgreSQL's is raised with SQLSTATE 23001, restrict_violation).

A later migration that rebuilds ``events`` with ``batch_alter_table`` on SQLite (copy, drop,
rename) loses these triggers with the old table: it must create them again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPDATED = 'the audit log is append-only: events cannot be updated'
DELETED = 'the audit log is append-only: events cannot be deleted'
TRUNCATED = 'the audit log is append-only: events cannot be truncated'


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == 'sqlite':
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            f"BEGIN SELECT RAISE(ABORT, '{UPDATED}'); END"
        )
        op.execute(
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
            f"BEGIN SELECT RAISE(ABORT, '{DELETED}'); END"
        )
    elif dialect == 'postgresql':
        op.execute(
            "CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "    RAISE EXCEPTION '%', CASE TG_OP\n"
            f"        WHEN 'UPDATE' THEN '{UPDATED}'\n"
            f"        WHEN 'DELETE' THEN '{DELETED}'\n"
            f"        ELSE '{TRUNCATED}'\n"
            "    END USING ERRCODE = 'restrict_violation';\n"
            "END\n"
            "$$"
        )
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "FOR EACH ROW EXECUTE FUNCTION events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()"
        )
    else:  # pragma: no cover - aligncycle runs on SQLite and PostgreSQL only
        raise NotImplementedError(f'no append-only triggers for {dialect}')


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == 'sqlite':
        op.execute('DROP TRIGGER IF EXISTS events_no_delete')
        op.execute('DROP TRIGGER IF EXISTS events_no_update')
    elif dialect == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS events_no_truncate ON events')
        op.execute('DROP TRIGGER IF EXISTS events_no_delete ON events')
        op.execute('DROP TRIGGER IF EXISTS events_no_update ON events')
        op.execute('DROP FUNCTION IF EXISTS events_append_only()')
