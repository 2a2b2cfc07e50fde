"""KPI rollups' distributions stored as their excess over the smallest, not as plain 64-bit
integers

The rollups' distributions (``kpi_lead_rollups.latency``, ``untouched_mql``, ``progress`` and
``kpi_deal_rollups.times``) are each a group's sorted values. Stored as little-endian 64-bit
integers they took 162 MB at 1,000,000 leads on SQLite, more than the leads themselves; as the
smallest value and each value's excess over it in the fewest bytes that hold the largest
(:mod:`models.funnel.distributions`) they take about half, and the import writes them faster.

Upgrade rewrites every stored distribution in the new form; downgrade writes them back as
plain integers. Both are exact: the values read before and after are the same. The two
conversions are copied here (a migration keeps the format of its day).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 05:00:00.000000
"""

from collections.abc import Callable, Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | Sequence[str] | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "kpi_lead_rollups": ("latency", "untouched_mql", "progress"),
    "kpi_deal_rollups": ("times",),
}
#: rows read and written at a time
BATCH = 1000


def _excess(blob: bytes) -> bytes:
    """Plain little-endian 64-bit integers, sorted -> width, smallest value, excesses (width
    8: spread over 2**32 or more: as they are, from 0)."""
    values = np.frombuffer(blob, "<u8").astype(np.uint64)
    excess = values - values[0]  # (modulo 2**64: the true excess of sorted values)
    peak = int(excess[-1])
    width = next(w for w in (1, 2, 4, 8) if w == 8 or peak < 1 << (8 * w))
    if width == 8:
        return bytes((8,)) + bytes(8) + blob
    return bytes((width,)) + blob[:8] + excess.astype(f"<u{width}").tobytes()


def _plain(blob: bytes) -> bytes:
    """Width, smallest value, excesses -> plain little-endian 64-bit integers."""
    excess = np.frombuffer(blob, f"<u{blob[0]}", offset=9).astype(np.uint64)
    return (excess + np.frombuffer(blob, "<u8", 1, 1)[0]).astype("<u8").tobytes()


def _rewrite(convert: Callable[[bytes], bytes]) -> None:
    conn = op.get_bind()
    for table, columns in COLUMNS.items():
        names = ", ".join(columns)
        read = sa.text(
            f"SELECT id, {names} FROM {table} WHERE id > :after ORDER BY id LIMIT {BATCH}"
        )
        write = sa.text(
            f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in columns)} WHERE id = :id"
        )
        after = 0
        while rows := conn.execute(read, {"after": after}).all():
            after = rows[-1][0]
            conn.execute(
                write,
                [
                    {"id": r[0]} | {c: convert(bytes(v)) if v else v for c, v in zip(columns, r[1:])}
                    for r in rows
                ],
            )


def upgrade() -> None:
    _rewrite(_excess)


def downgrade() -> None:
    _rewrite(_plain)
