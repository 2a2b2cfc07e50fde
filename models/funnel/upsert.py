"""Writing one table's rows of an import: upserts on the natural key, only the columns the
file reads and only the rows that changed (plain SQL on the driver: ``INSERT ... ON CONFLICT``
on SQLite; on PostgreSQL, COPY straight into the table for the rows whose key it does not
hold, and for the others COPY into a temporary table and one set-based upsert), noting what the
KPI rollups must refresh (:class:`models.funnel.rollup_touched.Touched`).

The COPY of new rows relies on the batch's lookup, in the same transaction: the import holds a
lock on its source until commit (:func:`models.funnel.importer.import_files`), so no other
import of the source writes those keys meanwhile.

A first import (the table holds no row of the source when the file starts) looks nothing up:
each batch is written as new rows in a savepoint (COPY on PostgreSQL, a plain INSERT on
SQLite), and the table's unique key is the check. A key it holds after all (a record twice in
the file, an export in chunks) rolls the batch back and the file goes on with the lookups and
upserts above, so the counts and the rows are those of the general path (measured at 100,000
leads: the lookups were a third of PostgreSQL's time writing the files).

On PostgreSQL a first import's leads are staged in a temporary table and written once the
deals are in, with their deal summary; the deals of staged leads are COPied with their lead's
fields, looked up in the staging batch by batch (:mod:`models.funnel.staging`). On SQLite a
first import's deals go in with their lead's fields too, joined to the leads batch by batch
through a temporary table (:attr:`_Target.join_leads`). A file with one
target (a leads file, a deals file) streams those rows: each batch's COPY is open while the
batch is read, so PostgreSQL writes as Python parses, as a COPY of the whole file does.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from sqlalchemy import BigInteger, Connection, String, any_, bindparam, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from models.funnel.files import SAMPLE_ROWS, _FileRun
from models.funnel.links import DEAL_FROM_LEAD
from models.funnel.lost_dates import LostDatesTally
from models.funnel.repeats import Repeats, SeenKeys
from models.funnel.rollup_touched import Touched
from models.funnel.stages import StageCounts
from models.funnel.staging import Stage, Staging
from models.funnel.tables import STAGE_FIELDS, Deal, Lead
from models.words import field_label

LEADS = Lead.__table__
DEALS = Deal.__table__

#: PostgreSQL: each target table's batch goes by COPY into a temporary table (dropped at commit).
_PG_TYPES = {c: "bigint" for c in (*STAGE_FIELDS, "amount_cents", "line")}
_PG_TYPES["listed"] = "boolean"


#: SQLite: the temporary table a first import's deals go through (see _Target.join_leads)
_JOINED = "funnel_fresh_deals"

#: rows added between two writes into a streamed COPY
_FEED = 500


#: a stored column -> the mapping's field it holds
_FIELD_OF = {"amount_cents": "amount", "lead_key": "lead_id", "other_leads": "lead_id"}


def _column_of(run: _FileRun, stored: str) -> str:
    """The file's column a stored value is read from (for a person: the export's own words)."""
    name = _FIELD_OF.get(stored, stored)
    spec = run.compiled.part.fields.get(name)
    column = getattr(spec, "column", None)
    return str(column) if column else field_label(name)


def _unique_violation(exc: BaseException) -> bool:
    """A driver's error for a duplicate key (psycopg's UniqueViolation, sqlite3's
    IntegrityError)."""
    return getattr(exc, "sqlstate", None) == "23505" or type(exc).__name__ == "IntegrityError"


def _undo_fresh(execute: Any) -> None:
    """Undo a first import's batch: back to its savepoint (a key was there already)."""
    execute("ROLLBACK TO SAVEPOINT funnel_fresh")
    execute("RELEASE SAVEPOINT funnel_fresh")


class _Target:
    """Upserts one table's rows of a file (leads, deals, or the lead→deal links of a leads
    file), writing only the columns that file reads, and only rows that changed.

    The upsert is plain SQL on the driver (``INSERT ... ON CONFLICT (source, external_id) DO
    UPDATE``): per-row parameter processing in SQLAlchemy would cost more than the database."""

    def __init__(
        self,
        conn: Connection,
        table: Any,
        source: str,
        columns: list[str],
        counts: _FileRun | None = None,
        primary: _Target | None = None,
        touched: Touched | None = None,
        staging: Staging | None = None,
        stage: bool = False,
        stream: bool = False,
        listed: SeenKeys | None = None,
    ) -> None:
        self.conn = conn
        #: the keys of every row read, when the import is of the whole export
        #: (models.funnel.whole_export)
        self.listed = listed
        #: PostgreSQL: the import's staging (models.funnel.staging); ``stage``: this target
        #: may stage its rows there (the only one of its file writing its table)
        self.staging = staging
        #: the months (and records) the rollups must be refreshed for
        self.touched = touched
        self.is_deal = table is DEALS
        dated = ("opportunity_at", "won_at", "lost_at") if self.is_deal else ("mql_at",)
        self.date_idx = [i for i, c in enumerate(columns) if c in dated]
        #: a deal whose dates this file does not all write may be an open deal with none
        self.maybe_undated = self.is_deal and len(self.date_idx) < 3
        self.lead_key_idx = columns.index("lead_key") if "lead_key" in columns else None
        self.counts = counts  # the file run whose new/changed/unchanged this target counts
        #: the target that counts the file's rows, when this one writes the same rows' other
        #: half (a row that is a lead and its deal): a new or changed deal changes the row
        self.primary = primary
        self.unchanged_keys: set[str] = set()
        #: the keys of the first rows added (SAMPLE_ROWS of them), for a preview's sample
        self.first: list[str] = []
        self.table = table
        self.source = source
        self.columns = ["source", "external_id", *columns]
        self.data_columns = columns
        self.pg = conn.dialect.name == "postgresql"
        self.written = 0
        self.analyze_at = 1  # PostgreSQL: refresh statistics after the first batch, then x2
        self.batch: dict[str, tuple[Any, ...]] = {}
        cols = ", ".join(self.columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns[2:])
        conflict = " ON CONFLICT (source, external_id) DO " + (
            f"UPDATE SET {updates}" if updates else "NOTHING"
        )
        if self.pg:
            # The table grows batch by batch inside one transaction. With the statistics of
            # the table before the import (none, on a first one), PostgreSQL looks a batch's
            # keys up by `source` alone and filters every row of the source: measured, the
            # import became quadratic (18 s of lookups in the last quarter of 1M rows). So
            # each lookup is planned afresh, and the statistics are refreshed whenever the rows
            # written have doubled (ANALYZE counts this transaction's own rows).
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            temp = f"funnel_import_{table.name}_{'_'.join(c[:4] for c in columns)}"[:60]
            types = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in self.columns)
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} ({types}) ON COMMIT DROP"
            )
            self.temp = temp
            self.copy_sql = f"COPY {temp} ({cols}) FROM STDIN"
            # rows whose key the store does not hold (looked up just before, in this
            # transaction): COPY straight into the table, no upsert to pay
            self.copy_new_sql = f"COPY {table.name} ({cols}) FROM STDIN"
            self.insert_sql = f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp}"
            self.insert_sql += conflict
        else:
            marks = ", ".join(["?"] * len(self.columns))
            self.insert_sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks}){conflict}"
        self.lookup_cols = [
            type_coerce(table.c[c], BigInteger) if c in _PG_TYPES and c != "listed" else table.c[c]
            for c in columns
        ]
        #: the table holds no row of the source yet (a first import): each batch is written
        #: without looking its keys up, as plain new rows (COPY on PostgreSQL), in a savepoint;
        #: a key the table holds after all (a record twice in a file, chunks of one export, or
        #: another file of the import) fails the table's unique key, the savepoint is rolled
        #: back and the batch (and every later one) takes the lookup and the upsert
        self.fresh = (
            conn.exec_driver_sql(
                f"SELECT 1 FROM {table.name} WHERE source = {'%(s)s' if self.pg else '?'} LIMIT 1",
                {"s": source} if self.pg else (source,),
            ).first()
            is None
        )
        marks = ", ".join(["?"] * len(self.columns))
        self.fresh_sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks})"
        #: where unchanged records were read from, written alone (see _move)
        self.move_sql = (
            f"UPDATE {table.name} AS t SET file = m.file, line = m.line FROM unnest("
            "%(files)s::text[], %(lines)s::int[], %(keys)s::text[]) AS m(file, line, key) "
            "WHERE t.source = %(s)s AND t.external_id = m.key"
            if self.pg
            else f"UPDATE {table.name} SET file = ?, line = ? WHERE external_id = ? AND source = ?"
        )
        #: rows listing a record an earlier row of the file lists (models.funnel.repeats):
        #: of the target counting the file's rows, and of the deals of a file whose rows are
        #: leads (a repeat with the same values is not written, as its lead's is not)
        self.repeats: Repeats | None = None
        self.repeat_columns: list[str] = []
        run = counts or (primary.counts if primary is not None else None)
        self.record = "deal" if self.is_deal else "lead"
        #: the rows end with the file and line they were read from (a file's leads or deals,
        #: not the lead→deal links): the rest is the record's values
        self.placed = columns[-2:] == ["file", "line"]
        if run is not None and self.placed:
            self.repeat_columns = [_column_of(run, c) for c in columns]
            if counts is not None:
                self.repeats = Repeats(run.path.name, self.record, self.repeat_columns, self.fresh)
            elif primary is not None and primary.repeats is not None:
                self.repeats = primary.repeats
                self.repeats.paired = True
        #: a deals file's stages are counted a row at a time as they are read, so a deal listed
        #: on several rows counts once per row: the stored row each repeat replaces (or
        #: repeats) is counted here, and taken away (models.funnel.stages.Stages.less)
        self.replaced = StageCounts()
        self.stage_idx = (
            [columns.index(c) if c in columns else None for c in ("stage", "won_at", "lost_at")]
            if self.is_deal and "stage" in columns
            else None
        )
        #: the file whose records' lost dates this writer counts, and where they are
        self.run = run
        self.lost_watch = (
            LostDatesTally.watch(self.record, columns) if run is not None and self.placed else []
        )
        self.fresh_via_temp = False
        self.fresh_written = 0
        deals_file = self.is_deal and "lead_key" in columns and "listed" in columns
        #: a first import's rows go to a temporary table, and into the table after the files
        self.stage: Stage | None = None
        #: or, a first import's deals when their leads are staged: straight into the table,
        #: with the fields of their leads looked up in the staging
        self.lead_stage: Stage | None = None
        if self.pg and self.fresh and stage and staging is not None:
            leads = staging.stages.get(LEADS.name)
            if deals_file and leads is not None:
                self.lead_stage = leads
                leads.analyze(conn)  # (an index probe per key, not a scan per batch)
                got = [c for c in DEAL_FROM_LEAD.values() if c in leads.columns]
                self.lead_fields = [d for d, c in DEAL_FROM_LEAD.items() if c in got]
                # the keys as one JSON text: psycopg dumps a list of 5,000 strings in Python
                # (measured: a third of the lookups' time), json in C
                self.lead_lookup_sql = (
                    f"SELECT external_id, {', '.join(got)} FROM {leads.name} WHERE external_id "
                    "= ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
                )
                self.copy_with_lead_sql = (
                    f"COPY {table.name} ({cols}, {', '.join(self.lead_fields)}) FROM STDIN"
                )
            else:
                self.stage = staging.open(table.name, self.columns)
                self.copy_stage_sql = f"COPY {self.stage.name} ({cols}) FROM STDIN"
        #: the only target of its file, staging or writing deals of staged leads: a first
        #: import's rows go into a COPY left open while the batch is read (every _FEED rows),
        #: so PostgreSQL writes them while Python parses the next (one COPY per batch, in a
        #: savepoint; measured at 200,000 leads, the files took 4.5 s, 5.0 s with the COPY
        #: of each batch after it was read). A deal's row waits for the next batch: its
        #: lead's fields are looked up once per batch, with no COPY open.
        self.stream = stream and (self.stage is not None or self.lead_stage is not None)
        self._streaming = self.stream and self.fresh
        self._copy: tuple[Any, Any, Any] | None = None  # (cursor, COPY context, its Copy)
        self._added = 0  # rows added since the last ones were written into the COPY
        self._ready: list[tuple[Any, ...]] = []  # deals with their lead's fields, to COPY
        self._ready_at = 0
        self._pending: dict[str, tuple[Any, ...]] | None = None  # the batch in the COPY
        if self.pg and self.fresh and deals_file:
            # PostgreSQL: a deals file's new deals are written with their lead's fields already
            # (the links would otherwise write every deal a second time, measured: 0.8 s of
            # the server's 2.2 s at 100,000 leads; models.funnel.links still checks them all
            # after the files are in). SQLite: join_leads, below.
            lead_cols = ", ".join(DEAL_FROM_LEAD)
            got = ", ".join(f"l.{c}" for c in DEAL_FROM_LEAD.values())
            self.fresh_via_temp = True
            # LIMIT 1: an index probe per deal, never a scan of the leads per batch
            self.fresh_sql = (
                f"INSERT INTO {table.name} ({cols}, {lead_cols}) "
                f"SELECT {', '.join(f't.{c}' for c in self.columns)}, {got} FROM {self.temp} t "
                f"LEFT JOIN LATERAL (SELECT {', '.join(DEAL_FROM_LEAD.values())} FROM leads "
                "WHERE leads.source = t.source AND leads.external_id = t.lead_key LIMIT 1) l "
                "ON true"
            )
        #: SQLite, a first import's deals file (no leads in it): each batch goes into a
        #: temporary table, then into the table by one INSERT ... SELECT joined to the leads,
        #: so a deal is written once, with its lead's fields, and the links need not write it
        #: again (:attr:`joined`). At 1,000,000 leads' 1,179,754 deals: 6.1 s against 5.9 s of
        #: plain inserts and 2.5 s of the links' UPDATE after them (measured); per row, an
        #: INSERT ... SELECT cost more than the UPDATE it saves.
        self.join_leads = not self.pg and self.fresh and deals_file and primary is None
        if self.join_leads:
            temp = f"temp.{_JOINED}"
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {temp}")
            conn.exec_driver_sql(f"CREATE TABLE {temp} ({cols})")
            self.join_sql = f"INSERT INTO {temp} ({cols}) VALUES ({marks})"
            self.fresh_sql = (
                f"INSERT INTO {table.name} ({cols}, {', '.join(DEAL_FROM_LEAD)}) "
                f"SELECT {', '.join(f't.{c}' for c in self.columns)}, "
                f"{', '.join(f'l.{c}' for c in DEAL_FROM_LEAD.values())} FROM {temp} AS t "
                "LEFT JOIN leads AS l ON l.source = t.source AND l.external_id = t.lead_key "
                "ORDER BY t.rowid"
            )
            self.join_clear_sql = f"DELETE FROM {temp}"

    @property
    def joined(self) -> bool:
        """SQLite: every row of this deals file was written with its lead's fields, as they
        were then (a first import's deals, which never fell back to the upserts)."""
        return self.join_leads and self.fresh

    def existing(self, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        t = self.table
        if not self.pg:
            # SQLite, plain SQL on the driver: one statement per number of keys, which the
            # driver keeps prepared (and SQLAlchemy's cache would keep each statement's key
            # list: measured, memory grew with the file). Padding the keys to a power of two
            # (repeating one) keeps a dozen statements.
            size = 1 << (len(keys) - 1).bit_length()
            padded = keys + keys[-1:] * (size - len(keys))
            cursor = self.conn.exec_driver_sql(
                f"SELECT external_id, {', '.join(self.data_columns)} FROM {t.name} "
                f"WHERE source = ? AND external_id IN ({', '.join(['?'] * size)})",
                (self.source, *padded),
            )
            return {r[0]: tuple(r[1:]) for r in cursor.fetchall()}
        # PostgreSQL: one array parameter, not thousands of binds to parse and plan
        in_batch = t.c.external_id == any_(bindparam("keys", keys, type_=ARRAY(String)))
        result = self.conn.execute(
            select(t.c.external_id, *self.lookup_cols).where(t.c.source == self.source, in_batch)
        )
        try:
            rows = result.cursor.fetchall()  # plain values; no per-row work in SQLAlchemy
        finally:
            result.close()
        return {r[0]: tuple(r[1:]) for r in rows}

    def _lost(self, key: str, stored: tuple[Any, ...], row: tuple[Any, ...], at: list[int]) -> None:
        """A record whose row is empty in the dates at ``at`` where the store holds them."""
        assert self.run is not None
        dates = [(_column_of(self.run, self.data_columns[i]), int(stored[i])) for i in at]
        self.run.lost.add(self.record, key, row[-1], dates)

    def _replaced(self, stored: tuple[Any, ...]) -> None:
        """A deal's row the file's next row of it replaces, or repeats: its stage as read."""
        assert self.stage_idx is not None
        stage, won, lost = (None if i is None else stored[i] for i in self.stage_idx)
        self.replaced.add(stage, won is not None, lost is not None, stored[-1])

    def _write(self, rows: list[tuple[Any, ...]], new: list[tuple[Any, ...]]) -> None:
        """Write ``rows`` (stored already) and ``new`` (keys the store does not hold)."""
        if not self.pg:
            self.conn.exec_driver_sql(self.insert_sql, rows + new)
            return
        self._past_staging()
        # psycopg's COPY, on the connection (and so in the transaction) of the unit of work
        with self.conn.connection.driver_connection.cursor() as cur:
            if new:
                with cur.copy(self.copy_new_sql) as copy:
                    for row in new:
                        copy.write_row(row)
            if rows:
                cur.execute(f"TRUNCATE {self.temp}")
                with cur.copy(self.copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(self.insert_sql)

    def _move(self, moved: list[tuple[str | None, int | None, str]]) -> None:
        """Write where unchanged records were read from (file, line, key): those two columns
        only, so the rows count as not written (their links and rollups stay as they are).
        Measured at 1,000,000 leads and their deals, the same export imported again under
        other file names: on SQLite 20.0 s against 27.3 s when every such record was written
        whole and the links refreshed (the same files under their own names: 13.7 s); on
        PostgreSQL 52.3 s against 60.0 s (23.3 s), each row a new version of itself there."""
        if not self.pg:
            self.conn.exec_driver_sql(self.move_sql, [(*m, self.source) for m in moved])
            return
        files, lines, keys = (list(c) for c in zip(*moved, strict=True))
        self.conn.exec_driver_sql(
            self.move_sql, {"files": files, "lines": lines, "keys": keys, "s": self.source}
        )

    def _past_staging(self) -> None:
        """Rows written into the table during the import: the links must be refreshed."""
        if self.staging is not None:
            self.staging.exact = False

    def add(self, key: str, values: tuple[Any, ...]) -> None:
        if key in self.batch:  # the same record twice in one file: the later row wins, in order
            # (and is counted as repeated: models.funnel.repeats)
            self.flush()
        self.batch[key] = values
        if self._streaming:
            self._added += 1
            if self._added >= _FEED:
                self._feed(self.batch)

    def _feed(self, batch: dict[str, tuple[Any, ...]]) -> None:
        """Into the open COPY: the rows of ``batch`` added since the last time (staged), or
        as many of the batch before (deals with their lead's fields)."""
        n, self._added = self._added, 0
        if self.lead_stage is None:
            if self._copy is None:
                self._begin(self.copy_stage_sql)
            assert self._copy is not None
            write, source = self._copy[2].write_row, self.source
            for key, values in list(islice(reversed(batch.items()), n))[::-1]:
                write((source, key, *values))
            return
        ready, at = self._ready, self._ready_at
        if at < len(ready):
            assert self._copy is not None
            write = self._copy[2].write_row
            for row in ready[at : at + n]:
                write(row)
            self._ready_at = at + n

    def _begin(self, sql: str) -> None:
        """A savepoint, and a COPY left open for the rows to come."""
        cur = self.conn.connection.driver_connection.cursor()
        cur.execute("SAVEPOINT funnel_fresh")
        cm = cur.copy(sql)
        self._copy = (cur, cm, cm.__enter__())

    def _end(self) -> bool:
        """End the open COPY; False, and nothing written since :meth:`_begin`, when a key
        was there already."""
        assert self._copy is not None
        cur, cm, _copy = self._copy
        self._copy = None
        try:
            try:
                cm.__exit__(None, None, None)
            except Exception as exc:  # the driver's own error
                if not _unique_violation(exc):
                    raise
                _undo_fresh(cur.execute)
                return False
            cur.execute("RELEASE SAVEPOINT funnel_fresh")
            return True
        finally:
            cur.close()

    def abort(self, exc: BaseException) -> None:
        """The import failed: end the open COPY, if any, so the connection can roll back."""
        if self._copy is not None:
            cur, cm, _copy = self._copy
            self._copy = None
            try:
                cm.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:  # noqa: S110 (the import's own error is the one to raise)
                pass
            finally:
                cur.close()

    def _flush_stream(self, batch: dict[str, tuple[Any, ...]]) -> bool:
        """The end of a batch read as a stream: True when it is written (or, deals, on its
        way), False when the lookups and upserts must write it."""
        if self.lead_stage is None:  # staged: the batch's rows are in the open COPY
            if self._added:
                self._feed(batch)
            if self._copy is None:
                return True
            if self._end():
                self._fresh_done(batch, staged=True)
                return True
            self._fell_back()
            return False
        pending, self._pending = self._pending, None
        if pending is not None:  # the batch before is in the open COPY: written in full
            assert self._copy is not None
            copy = self._copy[2]
            for row in self._ready[self._ready_at :]:
                copy.write_row(row)
            self._ready, self._added = [], 0
            if not self._end():
                self.fresh = self._streaming = False
                self._upsert(pending)
                return False
            self._fresh_done(pending, staged=False)
        if batch:
            # (the staged leads stay staged while this file is read: no other target of the
            # file writes them out, see models.funnel.staging)
            assert self.lead_stage.open
            self._ready, self._ready_at = self._with_leads(batch), 0
            self._begin(self.copy_with_lead_sql)
            self._pending = batch
        return True

    def _fell_back(self) -> None:
        """A key of a first import's batch was written already: this batch and the next
        take the lookups and upserts, which find what was staged."""
        self.fresh = self._streaming = False
        if self.staging is not None and self.stage is not None and self.stage.open:
            self.staging.write_out()

    def _touch(self, key: str, old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> None:
        t = self.touched
        assert t is not None
        if t.everything:
            return
        dates = [v for i in self.date_idx for v in (new[i], old[i] if old else None)]
        t.add_dates(*dates)
        if not self.is_deal:
            t.lead(key)
            return
        t.deal(key)
        if self.maybe_undated or not any(v is not None for v in dates):
            t.add_open_undated()
        i = self.lead_key_idx
        if i is not None and old is not None and old[i] is not None and old[i] != new[i]:
            t.lead(old[i])  # the deal's former lead: its deal summary changes

    def _write_fresh(self, batch: dict[str, tuple[Any, ...]]) -> bool:
        """Write rows as new (no key looked up); False, and nothing written, when the table
        holds one of their keys already."""
        conn = self.conn
        source = self.source
        rows = [(source, key, *values) for key, values in batch.items()]
        conn.exec_driver_sql("SAVEPOINT funnel_fresh")
        try:
            if self.stage is not None and self.stage.open:
                driver = conn.connection.driver_connection
                with driver.cursor() as cur, cur.copy(self.copy_stage_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            elif self.lead_stage is not None and self.lead_stage.open:
                with_leads = self._with_leads(batch)
                driver = conn.connection.driver_connection
                with driver.cursor() as cur, cur.copy(self.copy_with_lead_sql) as copy:
                    for row in with_leads:
                        copy.write_row(row)
            elif self.fresh_via_temp:
                self._past_staging()
                with conn.connection.driver_connection.cursor() as cur:
                    cur.execute(f"TRUNCATE {self.temp}")
                    with cur.copy(self.copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(self.fresh_sql)
            elif self.pg:
                self._past_staging()
                driver = conn.connection.driver_connection
                with driver.cursor() as cur, cur.copy(self.copy_new_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            elif self.join_leads:  # SQLite: into the temporary table, then with their leads
                conn.exec_driver_sql(self.join_sql, rows)
                conn.exec_driver_sql(self.fresh_sql)
                conn.exec_driver_sql(self.join_clear_sql)
            else:
                conn.exec_driver_sql(self.fresh_sql, rows)
        except Exception as exc:  # SQLAlchemy's, or the driver's own (raised outside it)
            if not (isinstance(exc, IntegrityError) or _unique_violation(exc)):
                raise
            _undo_fresh(conn.exec_driver_sql)
            return False
        conn.exec_driver_sql("RELEASE SAVEPOINT funnel_fresh")
        return True

    def _with_leads(self, batch: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """New deals' rows with the fields of their leads (staged) appended: the deals are
        written once, with them."""
        i = self.lead_key_idx
        assert i is not None
        keys = {v[i] for v in batch.values()}
        keys.discard(None)
        with self.conn.connection.driver_connection.cursor() as cur:
            cur.execute(self.lead_lookup_sql, (json.dumps(list(keys)),))
            found = {r[0]: r[1:] for r in cur.fetchall()}
        none = (None,) * len(self.lead_fields)
        get, source = found.get, self.source
        return [(source, key, *v, *get(v[i], none)) for key, v in batch.items()]

    def _flush_fresh(self, batch: dict[str, tuple[Any, ...]]) -> bool:
        staged = self.stage is not None and self.stage.open
        if not self._write_fresh(batch):
            self._fell_back()
            return False
        self._fresh_done(batch, staged)
        return True

    def _fresh_done(self, batch: dict[str, tuple[Any, ...]], staged: bool) -> None:
        """A first import's batch is written (or staged): its rows are new."""
        self.written += len(batch)
        if not staged:  # (staged rows are in the table's statistics once written out)
            self.fresh_written += len(batch)
        self.unchanged_keys = set()
        if self.counts is not None:
            self.counts.new += len(batch)
        primary = self.primary
        if primary is not None and primary.counts and primary.unchanged_keys:
            for key in batch:  # a new deal changes the row its unchanged lead was read from
                if key in primary.unchanged_keys:
                    primary.counts.unchanged -= 1
                    primary.counts.changed += 1
                    primary.unchanged_keys.discard(key)
        t = self.touched
        if t is not None and not t.everything:
            for key, values in batch.items():
                self._touch(key, None, values)

    def finish(self) -> None:
        """After the file: the rows written without lookups are new to PostgreSQL's
        statistics too (the old ones may say the source has no rows): the links, flags and
        rollups that follow are planned with fresh ones."""
        self.flush()
        if self._pending is not None:  # (deals: the last batch is in the COPY)
            self.flush()
        if self.join_leads:
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_JOINED}")
        if self.pg and self.fresh_written:
            self.conn.exec_driver_sql(f"ANALYZE {self.table.name}")
            self.fresh_written = 0

    def flush(self) -> None:
        """Write the rows added since the last flush."""
        batch, self.batch = self.batch, {}
        try:
            self._flush(batch)
        finally:
            if self.repeats is not None and self.counts is None:
                self.repeats.done()

    def _flush(self, batch: dict[str, tuple[Any, ...]]) -> None:
        if len(self.first) < SAMPLE_ROWS and batch:
            self.first += [k for k in islice(batch, SAMPLE_ROWS) if k not in self.first]
            del self.first[SAMPLE_ROWS:]
        if self.listed is not None and batch:
            self.listed.add(list(batch))
        if self.repeats is not None and self.counts is not None:
            self.repeats.batch(batch)
        if self._streaming:
            if self._flush_stream(batch):
                return
        elif not batch or (self.fresh and self._flush_fresh(batch)):
            return
        if batch:
            self._upsert(batch)

    def _upsert(self, batch: dict[str, tuple[Any, ...]]) -> None:
        """Look the batch's keys up, and write the rows that are new or changed."""
        counts = self.counts
        if self.pg and self.written >= self.analyze_at:
            self.conn.exec_driver_sql(f"ANALYZE {self.table.name}")
            self.analyze_at = 2 * self.written
        stored = self.existing(list(batch))
        out: list[tuple[Any, ...]] = []
        new: list[tuple[Any, ...]] = []
        source = self.source
        self.unchanged_keys = set()
        primary = self.primary
        listed = self.data_columns.index("listed") if "listed" in self.data_columns else None
        repeats = self.repeats
        written: dict[str, tuple[Any, ...] | None] = {}  # the rows written that are no repeat
        watch = self.lost_watch
        placed = self.placed
        moved: list[tuple[str | None, int | None, str]] = []  # (file, line, key)
        half = 0 if counts is not None else 1  # (of a record, for its repeats)
        tally = counts if counts is not None else primary.counts if primary is not None else None
        for key, values in batch.items():
            old = stored.get(key)
            if old is not None and repeats is not None:
                if counts is not None:
                    write = repeats.check(key, old, values)
                else:
                    write = repeats.also(old, values, self.repeat_columns)
                if write is not None:  # counted as repeated, not as new or changed
                    if self.stage_idx is not None:
                        self._replaced(old)
                    if write:  # (the later row is kept)
                        # the record may be changed now, or as it was before the import
                        shift = repeats.settle(half, key, old, values)
                        if shift and tally is not None:
                            tally.changed += shift
                            tally.unchanged -= shift
                        out.append((source, key, *values))
                        if self.touched is not None:
                            self._touch(key, old, values)
                    continue
            if old == values or (placed and old is not None and old[:-2] == values[:-2]):
                # unchanged; a record read from another file or line (the same export under
                # another name, or in another order) has where it was read written (the flags
                # name it), nothing else: no value of it changes, nor anything derived from it
                if counts is not None:
                    counts.unchanged += 1
                    self.unchanged_keys.add(key)
                if old != values:
                    moved.append((values[-2], values[-1], key))
                continue
            if old is not None and watch:  # a date the store holds, empty: an older export?
                gone = [i for i in watch if values[i] is None and old[i] is not None]
                if gone:
                    self._lost(key, old, values, gone)
            before = old  # (for the record's repeats: None, it is new)
            if counts is not None:
                if old is None or (listed is not None and not old[listed]):
                    counts.new += 1  # a deal only a lead named so far is new to its deals file
                    before = None
                else:
                    counts.changed += 1
            elif primary is not None and key in primary.unchanged_keys and primary.counts:
                primary.counts.unchanged -= 1
                primary.counts.changed += 1
                primary.unchanged_keys.discard(key)
            written[key] = before
            # (SQLite: one statement, the rows in file order)
            (new if old is None and self.pg else out).append((source, key, *values))
            if self.touched is not None:
                self._touch(key, old, values)
        if out or new:
            self._write(out, new)
            self.written += len(out) + len(new)
        if moved:
            self._move(moved)
        if repeats is not None:
            repeats.first(half, written)
