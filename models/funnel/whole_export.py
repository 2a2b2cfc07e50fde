"""An import of a source's whole export (``whole_export: true`` in the mapping, *These files are
the whole export* on the import page, ``--whole-export`` on the command line): the records of
the source that its files do not list are removed, as the CRM removed them (a contact merged
into another, a deleted lead, a deal taken out of the pipeline).

An import otherwise only adds and updates, so a record gone from the CRM stays in the shared
numbers for good, and every count, rate and sum that includes it is wrong in a way nobody can
see. Removing is asked for, never guessed: only a person's setting does it, the preview says how
many records it would remove with examples, and the import's summary and history say how many
it removed.

It is per kind of record the import's files list: a leads file that is the whole export
removes the source's leads it does not list, and leaves the deals alone unless a deals file is
in the import too (then the deals its deals files do not list). A deal that only a lead names
(a converted opportunity no deals file listed yet) is not a listed deal, and stays.

The keys the files list are kept as 64-bit hashes (:class:`models.funnel.repeats.SeenKeys`,
8 bytes a row); a record is removed when its key's hash is not among them, so a collision of
hashes can only keep a record, never remove one. What the removed records touched is told to
the KPI rollups (their months, their leads' and deals' months: :class:`Touched`); the links and
flags are computed from the store afterwards, as after every import.
"""

from __future__ import annotations

from array import array
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, delete, select

from models.errors import InvalidInput
from models.funnel.repeats import SeenKeys
from models.funnel.rollup_touched import Touched
from models.funnel.sql import D, L, deal_terms, lead_terms
from models.words import listed, quoted

#: examples of removed records kept per kind
SAMPLES = 3
#: store rows read (and removed) at a time
CHUNK = 20000


class Removed(BaseModel):
    """The records of one kind an import of the whole export removed (or, previewed, would)."""

    record: str  # "lead" or "deal"
    rows: int
    #: how many of them the source held before (listed deals)
    held: int
    examples: list[str] = []

    def sentence(self, source: str, done: bool = True) -> str:
        """E.g. "2 of the 40 leads of the source “hubspot” are in none of these files: they
        were removed (for example “L7” and “L9”)." """
        kinds = self.record if self.held == 1 else f"{self.record}s"
        are = "is" if self.rows == 1 else "are"
        they = "it" if self.rows == 1 else "they"
        was = ("was" if self.rows == 1 else "were") if done else "would be"
        some = listed([quoted(e, 40) for e in self.examples])
        return (
            f"{self.rows:,} of the {self.held:,} {kinds} of the source “{source}” {are} in none "
            f"of these files: {they} {was} removed (for example {some})."
        )


class Listed:
    """The keys an import's files list, per table: ``leads``, and ``deals`` (listed by a file
    of deals, not only named by a lead)."""

    def __init__(self) -> None:
        self.keys = {"leads": SeenKeys(), "deals": SeenKeys()}
        self.read: set[str] = set()  # the tables a file of the import lists

    def of(self, table: str) -> SeenKeys:
        self.read.add(table)
        return self.keys[table]


def remove_unlisted(
    conn: Connection,
    source: str,
    listed: Listed,
    touched: Touched,
    most: bool = True,
    files: str = "these files",
) -> list[Removed]:
    """Remove the source's records of each kind the files list that they do not list; what
    was removed, per kind (none: nothing was). ``most``: more than half of a kind may go;
    without it such an import is refused before anything is removed (an export that came down
    in part, run unattended, would otherwise empty the source)."""
    found = []
    for table in (L, D):
        if table.name not in listed.read:
            continue
        gone = _unlisted(conn, source, table, listed.keys[table.name], touched)
        if gone is not None:
            found.append((table, *gone))
    for _table, _ids, removed in found:
        if not most and removed.rows * 2 > removed.held:
            kinds = f"{removed.record}s"
            raise InvalidInput(
                f"{files}: as the whole export of the source “{source}” they would remove "
                f"{removed.rows:,} of its {removed.held:,} {kinds}, more than half; if that is "
                "right, import them with --remove-most; if they are only a part of the export, "
                "without --whole-export"
            )
    for table, ids, _removed in found:
        for at in range(0, len(ids), CHUNK):
            conn.execute(delete(table).where(table.c.id.in_(ids[at : at + CHUNK].tolist())))
    return [removed for _table, _ids, removed in found]


def _unlisted(
    conn: Connection, source: str, table: Any, keys: SeenKeys, touched: Touched
) -> tuple[array, Removed] | None:
    """The ids of the records of ``table`` the keys do not list, and what they are."""
    deals = table is D
    if deals:
        t = deal_terms()
        dates: list[Any] = [t.won, t.lost, t.opp, D.c.lead_key]
        where = [D.c.source == source, D.c.listed]
    else:
        dates = [lead_terms().mql]
        where = [L.c.source == source]
    stmt = select(table.c.id, table.c.external_id, *dates).where(*where).order_by(table.c.id)
    ids = array("q")
    examples: list[str] = []
    held = 0
    # (on the statement: a connection's execution_options would stay set for the DELETEs)
    result = conn.execute(stmt.execution_options(stream_results=True))
    try:
        while rows := result.fetchmany(CHUNK):
            held += len(rows)
            found = keys.holds([r[1] for r in rows])
            for r, known in zip(rows, found.tolist(), strict=True):
                if known:
                    continue
                ids.append(r[0])
                if len(examples) < SAMPLES:
                    examples.append(r[1])
                _touch(touched, deals, r)
    finally:
        result.close()
    if not ids:
        return None
    kind = "deal" if deals else "lead"
    return ids, Removed(record=kind, rows=len(ids), held=held, examples=examples)


def _touch(touched: Touched, deals: bool, row: Any) -> None:
    """What a removed record's rollups were: its months, and its lead's (a deal's lead has one
    deal fewer) or its deals' (a lead's deals lose its channel and team)."""
    if touched.everything:
        return
    if deals:
        won, lost, opp, lead_key = row[2:]
        touched.add_dates(won, lost, opp)
        if won is None and lost is None and opp is None:
            touched.add_open_undated()
        if lead_key is not None:
            touched.lead(lead_key)
        return
    touched.add_dates(row[2])
    touched.lead(row[1])
