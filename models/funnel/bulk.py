"""Rows written in bulk on the driver: a binary ``COPY`` on PostgreSQL, a prepared
``executemany`` on SQLite (the KPI rollups' rows, the data-quality flags)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Connection, Integer, LargeBinary, String

#: Rows written at a time.
BATCH = 5000
#: A batch is also written once its sized values hold this many bytes: a rollup's day row
#: holds every value of the day, so rows grow with the store and a batch of 5,000 held 20 MB
#: at 1,000,000 leads (memory would grow with the store, measured).
BATCH_BYTES = 2 << 20


def wire_type(column: Any) -> str:
    """The PostgreSQL type a value of ``column`` travels as in a binary ``COPY`` (the
    column's own: an ``integer`` column takes 4 bytes, no more)."""
    kind = column.type
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, String):  # (Text too; a varchar's binary form is its text's)
        return "text"
    # a column of another type would travel as text bytes the server cannot read: say which
    raise TypeError(f"no binary COPY type for {column.table.name}.{column.name} ({kind})")


class Bulk:
    """Rows of one table (tuples of ``columns``), written in batches on the driver: a binary
    COPY on PostgreSQL (as text, each rollup distribution's bytes were spelled out in hex for
    the server to read back: the rollups' refresh of 1,000,000 leads took 13.3 s, now 12.1 s,
    medians of three interleaved rounds on a noisy machine), a prepared ``executemany`` on
    SQLite (per-row parameter processing in SQLAlchemy cost more than the database, measured:
    a million flags took 9 s of SQLAlchemy's parameter processing). The rows go as they are:
    no Python-side default of the table's columns is applied. ``sized``: the columns whose
    values' lengths also end a batch (:data:`BATCH_BYTES`). The caller calls :meth:`flush`
    after its last row."""

    def __init__(
        self, conn: Connection, table: Any, columns: tuple[str, ...], sized: tuple[str, ...] = ()
    ) -> None:
        self.conn, self.table, self.rows = conn, table, []
        self.columns = columns
        self.blobs = [i for i, c in enumerate(columns) if c in sized]
        self.size = 0
        names = ", ".join(self.columns)
        self.pg = conn.dialect.name == "postgresql"
        if self.pg:
            self.sql = f"COPY {table.name} ({names}) FROM STDIN (FORMAT binary)"
            self.types = [wire_type(table.c[c]) for c in columns]
        else:
            marks = ", ".join("?" * len(self.columns))
            self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        for i in self.blobs:
            self.size += len(row[i])
        if len(self.rows) >= BATCH or self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.pg:
            driver = self.conn.connection.driver_connection
            with driver.cursor() as cur, cur.copy(self.sql) as copy:  # type: ignore[union-attr]
                copy.set_types(self.types)
                for row in self.rows:
                    copy.write_row(row)
        else:
            self.conn.exec_driver_sql(self.sql, self.rows)
        self.rows, self.size = [], 0
