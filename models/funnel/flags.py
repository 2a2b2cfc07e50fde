"""Data-quality flags: what is odd about records that were kept.

Call :func:`models.funnel.links.refresh_links` first: a deal's checks against its lead read
the lead's dates copied onto the deal.

A record that can be read is never dropped for being odd. What is odd about it becomes a flag,
with the file and line it was read from and a sentence people can act on:

- a lead's stages out of the usual order (first touch, SQL or rejection on an earlier day than
  the MQL date);
- a deal's dates against its own or its lead's (won or lost before the deal was created, or
  before the lead's MQL or SQL date: a negative duration), or a deal both won and lost;
- a negative amount, or a won deal with an amount of zero (a lost deal at zero is ordinary:
  many CRMs zero a lost deal's amount);
- a deal that lists several leads (it counts for the first one);
- a lead whose id is another lead's with its leading zeros dropped (one lead, counted twice);
- a deal that names a lead the source does not hold (when it holds leads): it counts with no
  channel, campaign or lead dates. When a lead the source holds is the same id written
  another way (its leading zeros dropped, as a file saved from Excel does, or a Salesforce id
  in its other length), the sentence names it.

Flags are computed from the store, for a whole source, after every import (set-based queries;
only flagged rows come back to Python, a chunk at a time, and their flags are written a chunk at
a time: a million deals naming leads that are not in the data are a million flags, and memory
holds a chunk of them): the same store gives the same flags whichever order its files came in.
Every KPI says how many of its records carry one (:mod:`models.funnel.kpis`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from typing import IO, Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel.bulk import Bulk
from models.funnel.links import DEAL_FROM_LEAD
from models.funnel.sql import deal_terms, holds, in_window, lead_terms, open_at, window
from models.funnel.tables import Deal, FunnelFlag, Lead
from models.funnel.values import salesforce_long, salesforce_root

L = Lead.__table__
D = Deal.__table__
F = FunnelFlag.__table__
DAY = 86400

_LEAD_LABEL = {
    "mql_at": "the MQL date",
    "first_touch_at": "the first sales touch",
    "sql_at": "the SQL date",
    "rejected_at": "the rejection",
}
_DEAL_LABEL = {
    "mql_at": "its lead's MQL date",
    "sql_at": "its lead's SQL date",
    "opportunity_at": "its creation",
    "won_at": "the win",
    "lost_at": "the loss",
}
#: (earlier, later): a lead's own stages.
LEAD_ORDER = (("mql_at", "first_touch_at"), ("mql_at", "sql_at"), ("mql_at", "rejected_at"))
#: (earlier, later): a deal's dates, and its lead's before them.
DEAL_ORDER = (
    ("opportunity_at", "won_at"),
    ("opportunity_at", "lost_at"),
    ("mql_at", "opportunity_at"),
    ("mql_at", "won_at"),
    ("mql_at", "lost_at"),
    ("sql_at", "won_at"),
    ("sql_at", "lost_at"),
)
#: The kind of flag of a deal both won and lost (the rollups count those deals apart).
WON_AND_LOST = "won_and_lost"
#: The kind of flag of a deal naming a lead its source does not hold.
LEAD_NOT_FOUND = "lead_not_found"
#: The kind of flag of a lead whose id is another's with its leading zeros dropped.
ZEROS_DROPPED = "zeros_dropped"
#: What each kind of flag is called where people read it.
KIND_TITLES = {
    "out_of_order": "stages out of the usual order",
    WON_AND_LOST: "won and lost",
    "zero_amount": "zero amount",
    "negative_amount": "negative amount",
    "several_leads": "several leads",
    LEAD_NOT_FOUND: "lead not in the data",
    ZEROS_DROPPED: "the same lead twice",
}


class FlagRead(BaseModel):
    source: str = ""
    file: str | None
    line: int | None
    record: str  # lead | deal
    key: str
    kind: str
    sentence: str


def _int(col: Any) -> ColumnElement[int]:
    return type_coerce(col, BigInteger)


def _earlier_day(earlier: ColumnElement[int], later: ColumnElement[int]) -> ColumnElement[bool]:
    """``later`` falls on an earlier (UTC) day than ``earlier``."""
    return and_(earlier.is_not(None), later < earlier - earlier % DAY)


def _days(a: int, b: int) -> str:
    n = a // DAY - b // DAY
    return f"{n} day{'s' if n != 1 else ''}"


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


#: How many flagged records are read, and their flags written, at a time.
_CHUNK = 5000


def lead_flags(conn: Connection, source: str) -> Iterator[list[dict[str, Any]]]:
    """The flags of the source's leads, a chunk at a time."""
    cols = {n: _int(L.c[n]) for n in ("mql_at", "first_touch_at", "sql_at", "rejected_at")}
    odd = or_(*(_earlier_day(cols[a], cols[b]) for a, b in LEAD_ORDER))
    stmt = select(L.c.external_id, L.c.file, L.c.line, *(c.label(n) for n, c in cols.items()))
    stmt = stmt.where(L.c.source == source, odd).execution_options(yield_per=_CHUNK)
    for part in conn.execute(stmt).partitions():
        out = []
        for r in part:
            for a, b in LEAD_ORDER:
                x, y = getattr(r, a), getattr(r, b)
                if x is not None and y is not None and y // DAY < x // DAY:
                    sentence = (
                        f"Lead {r.external_id}: {_LEAD_LABEL[b]} is {_days(x, y)} before "
                        f"{_LEAD_LABEL[a]}."
                    )
                    out.append(
                        _flag(
                            source,
                            "lead",
                            r.external_id,
                            None,
                            r.file,
                            r.line,
                            "out_of_order",
                            sentence,
                        )
                    )
        yield out
    yield from _zeros_dropped(conn, source)


#: How many lead ids at a time are looked up by their form without leading zeros.
_ZEROS_CHUNK = 2000


def _zero_padded(conn: Connection, source: str) -> Iterator[dict[str, str]]:
    """The source's lead ids of digits that start with a zero, by their form without the
    zeros ({"123": "00123"}), a chunk at a time: read a range of the index at a time (memory
    holds a chunk; nothing is read where no id starts with a zero)."""
    after = "0"  # (the lead ids from "0" up to "1": those that start with a zero)
    while True:
        stmt = (
            select(L.c.external_id)
            .where(L.c.source == source, L.c.external_id > after, L.c.external_id < "1")
            .order_by(L.c.external_id)
            .limit(_ZEROS_CHUNK)
        )
        padded = [k for (k,) in conn.execute(stmt)]
        if not padded:
            return
        after = padded[-1]
        yield {k.lstrip("0"): k for k in padded if k.isdigit() and k.lstrip("0")}


def _zeros_dropped(conn: Connection, source: str) -> Iterator[list[dict[str, Any]]]:
    """Leads whose id is another lead's with its leading zeros dropped ("123" beside "00123"):
    most likely one lead, its id saved from Excel in one export, counted twice; a chunk of the
    ids that start with a zero at a time."""
    for twins in _zero_padded(conn, source):
        if not twins:
            continue
        out = []
        found = select(L.c.external_id, L.c.file, L.c.line).where(
            L.c.source == source, L.c.external_id.in_(list(twins))
        )
        for r in conn.execute(found):
            sentence = (
                f"Lead {r.external_id} is most likely the lead {twins[r.external_id]} with its "
                "leading zeros dropped (a file saved from Excel drops them): the two count as "
                "two leads. Export the file again without Excel (or format its id column as "
                "text); imported as the whole export, it removes the lead "
                f"{r.external_id}."
            )
            out.append(
                _flag(source, "lead", r.external_id, None, r.file, r.line, ZEROS_DROPPED, sentence)
            )
        yield out


def _lead_not_found(conn: Connection, source: str) -> ColumnElement[bool] | None:
    """A deal naming a lead the source does not hold; None when it holds no lead (its leads
    are not imported yet, or it has none). Its lead's fields copied onto it are all unset
    (models.funnel.links), so the lead is looked up only for those deals, not for each."""
    if conn.execute(select(L.c.id).where(L.c.source == source).limit(1)).first() is None:
        return None
    found = select(L.c.id).where(L.c.source == source, L.c.external_id == D.c.lead_key)
    return and_(
        D.c.lead_key.is_not(None),
        *(D.c[c].is_(None) for c in DEAL_FROM_LEAD),
        ~found.exists(),
    )


#: How a lead's id was written otherwise: its leading zeros, or a Salesforce id's length.
ZEROS, SALESFORCE = "zeros", "salesforce"


def _padded_widths(conn: Connection, source: str) -> list[int]:
    """The lengths of the source's lead ids that start with a zero: a lead "00123" named
    "123" is found by looking the key up padded to each of them (ids padded with zeros are
    padded to a width or two; one pass over those ids, none where no id starts with a zero)."""
    stmt = select(func.length(L.c.external_id)).where(
        L.c.source == source, L.c.external_id > "0", L.c.external_id < "1"
    )
    return sorted({n for (n,) in conn.execute(stmt.distinct())})


def _written_otherwise(
    conn: Connection, source: str, keys: set[str], widths: Callable[[], list[int]]
) -> dict[str, tuple[str, str]]:
    """The leads the source holds whose id is one of ``keys`` written another way, and how
    (:data:`ZEROS`, :data:`SALESFORCE`): its leading zeros dropped or added, or a Salesforce
    record's id in its other length (18 characters are its 15 and a checksum of their case:
    :func:`models.funnel.values.salesforce_root`). Queries of those keys only, each form
    computed and looked up as it is (``widths``: :func:`_padded_widths`, asked once there
    are keys of digits)."""
    near: dict[str, tuple[str, str]] = {}

    def look(wanted: dict[str, str], how: str) -> None:  # {a lead id to look up: the key}
        ids = list(wanted)
        for i in range(0, len(ids), 500):
            stmt = select(L.c.external_id).where(
                L.c.source == source, L.c.external_id.in_(ids[i : i + 500])
            )
            for (found,) in conn.execute(stmt):
                near.setdefault(wanted[found], (found, how))

    # zeros dropped from the lead's id ("00123" named "123"), when a key is digits: the key
    # padded to the width of the ids that start with a zero
    digits = {k for k in keys if k.isdigit()}
    bare = [k for k in digits if not k.startswith("0")]
    if bare:
        look({"0" * (w - len(k)) + k: k for w in widths() for k in bare if len(k) < w}, ZEROS)
    # zeros added ("123" named "00123")
    look({k.lstrip("0"): k for k in digits if k.startswith("0") and k.lstrip("0")}, ZEROS)
    # a Salesforce record named by its 15 characters, held by its 18 (the 15 and the checksum
    # of their case: one form, looked up as it is)
    look({salesforce_long(k): k for k in keys if k not in near and len(k) == 15}, SALESFORCE)
    # ... and by its 18, held by its 15
    look({salesforce_root(k): k for k in keys if k not in near and len(k) == 18}, SALESFORCE)
    return near


def _not_found_sentence(name: str, key: str, near: tuple[str, str] | None) -> str:
    said = f"{name} names the lead “{key}”, which is not in the data"
    if near is None:
        return (
            f"{said}: it counts with no channel, campaign or lead dates until that lead is "
            "imported."
        )
    found, how = near
    if how == SALESFORCE:
        return (
            f"{said}; the lead “{found}” is, the same Salesforce record with its id written in "
            f"{len(found)} characters, not {len(key)}: import both files with the Salesforce "
            "profile (it reads either length as one record), or export them with the same "
            "length of id. Until then the deal counts with no channel, campaign or lead dates."
        )
    return (
        f"{said}; the lead “{found}” is: the leading zeros of one of the two look dropped (a "
        "file saved from Excel drops them). Export that file again, or format its id column "
        "as text, then import it again. Until then the deal counts with no channel, campaign "
        "or lead dates."
    )


def deal_flags(conn: Connection, source: str) -> Iterator[list[dict[str, Any]]]:
    """The flags of the source's deals (those a deals file listed), a chunk at a time."""
    cols = {n: _int(D.c[n]) for n in ("opportunity_at", "won_at", "lost_at")}
    # the lead's dates, copied onto the deal (models.funnel.links)
    cols |= {n: _int(D.c[f"lead_{n}"]) for n in ("mql_at", "sql_at")}
    odd = or_(
        *(_earlier_day(cols[a], cols[b]) for a, b in DEAL_ORDER),
        and_(D.c.won_at.is_not(None), D.c.lost_at.is_not(None)),
        D.c.amount_cents < 0,
        and_(D.c.amount_cents == 0, D.c.won_at.is_not(None)),
        D.c.other_leads.is_not(None),
    )
    not_found = _lead_not_found(conn, source)
    if not_found is not None:
        odd = or_(odd, not_found)
    stmt = select(
        D.c.external_id,
        D.c.lead_key,
        D.c.other_leads,
        D.c.amount_cents,
        D.c.file,
        D.c.line,
        *(c.label(n) for n, c in cols.items()),
        (not_found if not_found is not None else literal(False)).label("lead_missing"),
    ).where(D.c.source == source, D.c.listed, odd)
    assert tuple(stmt.selected_columns.keys()) == _DEAL_COLS
    widths: list[list[int]] = []  # (asked once, when a key of digits is missing)

    def padded() -> list[int]:
        if not widths:
            widths.append(_padded_widths(conn, source))
        return widths[0]

    for part in conn.execute(stmt.execution_options(yield_per=_CHUNK)).partitions():
        yield _deal_chunk(conn, source, part, padded)


#: The columns of a flagged deal's row (:func:`deal_flags`), and its dates' pairs by position.
_DEAL_COLS = (
    "external_id", "lead_key", "other_leads", "amount_cents", "file", "line",
    "opportunity_at", "won_at", "lost_at", "mql_at", "sql_at", "lead_missing",
)  # fmt: skip
_DEAL_PAIRS = tuple((_DEAL_COLS.index(a), _DEAL_COLS.index(b), a, b) for a, b in DEAL_ORDER)


def _deal_chunk(
    conn: Connection, source: str, rows: list[Any], widths: Callable[[], list[int]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    missing = {r[1] for r in rows if r[11]}  # (lead_key, lead_missing)
    near = _written_otherwise(conn, source, missing, widths) if missing else {}
    # (a row by position: a million flagged deals read their dates' pairs by name in 10 s)
    for r in rows:
        key, lead_key, other_leads, amount, file, line = r[:6]
        won_at, lost_at, lead_missing = r[7], r[8], r[11]
        name = f"Deal {key}"
        said: list[tuple[str, str]] = []
        for ia, ib, a, b in _DEAL_PAIRS:
            x, y = r[ia], r[ib]
            if x is not None and y is not None and y // DAY < x // DAY:
                said.append(
                    (
                        "out_of_order",
                        f"{name}: {_DEAL_LABEL[b]} is {_days(x, y)} before {_DEAL_LABEL[a]}.",
                    )
                )
        if won_at is not None and lost_at is not None:
            said.append((WON_AND_LOST, f"{name} is both won and lost."))
        if amount == 0 and won_at is not None:  # a lost deal at 0 is ordinary
            said.append(("zero_amount", f"{name} is won with an amount of zero."))
        elif amount is not None and amount < 0:
            said.append(
                (
                    "negative_amount",
                    f"{name} has a negative amount ({_money(amount)}); it counts as it is.",
                )
            )
        if other_leads:
            others = other_leads.split(";")
            said.append(
                (
                    "several_leads",
                    f"{name} lists {len(others) + 1} leads; it counts for the first, {lead_key} "
                    f"(also listed: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}).",
                )
            )
        if lead_missing:
            said.append((LEAD_NOT_FOUND, _not_found_sentence(name, lead_key, near.get(lead_key))))
        for kind, sentence in said:
            out.append(_flag(source, "deal", lead_key, key, file, line, kind, sentence))
    return out


def _flag(
    source: str,
    record: str,
    lead_key: str | None,
    deal_key: str | None,
    file: str | None,
    line: int | None,
    kind: str,
    sentence: str,
) -> dict[str, Any]:
    return {
        "source": source,
        "record": record,
        "lead_key": lead_key,
        "deal_key": deal_key,
        "file": file,
        "line": line,
        "kind": kind,
        "sentence": sentence,
    }


#: A flag's columns, as :func:`_flag` gives them.
_FLAG_COLS = ("source", "record", "lead_key", "deal_key", "file", "line", "kind", "sentence")
#: How many flags of each kind an import's summary shows.
SAMPLE_FLAGS = 5


def _order(f: dict[str, Any]) -> tuple[str, int, str]:
    """Flags in file and line order (then kind)."""
    return (f["file"] or "", f["line"] or 0, f["kind"])


@dataclass
class FlagTally:
    """The flags just computed for a source, told without holding them: how many, of each
    kind and of each file, the first few of each kind in file and line order, and per file the
    deals naming a lead that is not in the data."""

    samples: int = SAMPLE_FLAGS
    total: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_file: Counter[str] = field(default_factory=Counter)  # ("" for none)
    #: the deals naming a lead not in the data, per file, and the first one's (line, lead id)
    unfound: Counter[str] = field(default_factory=Counter)
    first_unfound: dict[str, tuple[int, str]] = field(default_factory=dict)
    _first: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, flags: Iterable[dict[str, Any]]) -> None:
        for f in flags:
            self.total += 1
            kind, file = f["kind"], f["file"] or ""
            self.by_kind[kind] += 1
            self.by_file[file] += 1
            first = self._first.setdefault(kind, [])
            first.append(f)
            if len(first) > 8 * self.samples:  # (kept short: sorted and cut now and then)
                first.sort(key=_order)
                del first[self.samples :]
            if kind == LEAD_NOT_FOUND:
                self.unfound[file] += 1
                seen = self.first_unfound.get(file)
                if seen is None or (f["line"] or 0) < seen[0]:
                    self.first_unfound[file] = (f["line"] or 0, f["lead_key"] or "")

    def first(self) -> list[FlagRead]:
        """The first few flags of each kind, in file and line order."""
        kept = [f for fs in self._first.values() for f in sorted(fs, key=_order)[: self.samples]]
        return [_read(f) for f in sorted(kept, key=_order)]


def recompute_flags(
    session: Session, source: str, import_id: int | None, samples: int = SAMPLE_FLAGS
) -> FlagTally:
    """Replace the flags of ``source`` with those its records carry now, written a chunk at a
    time; what they are, told by a :class:`FlagTally` (its first ``samples`` of each kind)."""
    conn = session.connection()
    conn.execute(delete(F).where(F.c.source == source))
    tally = FlagTally(samples=samples)
    writer = Bulk(conn, F, (*_FLAG_COLS, "import_id"))
    for chunk in chain(lead_flags(conn, source), deal_flags(conn, source)):
        for f in chunk:
            writer.add((*(f[c] for c in _FLAG_COLS), import_id))
        tally.add(chunk)
    writer.flush()
    return tally


def _read(f: Any) -> FlagRead:
    get = f.get if isinstance(f, dict) else lambda k: getattr(f, k)
    return FlagRead(
        source=get("source") or "",
        file=get("file"),
        line=get("line"),
        record=get("record"),
        key=get("deal_key") if get("record") == "deal" else get("lead_key"),
        kind=get("kind"),
        sentence=get("sentence"),
    )


def iter_flags(
    session: Session,
    source: str | None = None,
    kind: str | None = None,
    counted: Counted | None = None,
) -> Iterator[FlagRead]:
    """The flags the store holds (of one source, of one kind), in source, file and line
    order, read in chunks: memory does not grow with them (a million are a million)."""
    # (the option on the statement: on the connection it would make every later statement of
    # the unit of work a server-side cursor on PostgreSQL, its SAVEPOINTs too)
    stmt = select(F).where(*_chosen(source, kind, counted)).order_by(*_ORDER)
    for r in session.connection().execute(stmt.execution_options(yield_per=2000)):
        yield _read(r)


def first_flags(
    session: Session, source: str | None = None, per_kind: int = SAMPLE_FLAGS
) -> list[FlagRead]:
    """The first ``per_kind`` flags of each kind (of one source), in source, file and line
    order: what a summary shows of them, however many there are (a query per kind the store
    holds, each keeping its first few as it reads: at 1,000,000 flags a ranking of them all
    took 4 s, this 0.5 s)."""
    conn = session.connection()
    kinds = conn.scalars(select(F.c.kind).where(*_chosen(source, None)).distinct()).all()
    first = []
    for kind in kinds:
        stmt = select(F).where(*_chosen(source, kind)).order_by(*_ORDER).limit(per_kind)
        first += [_read(r) for r in conn.execute(stmt)]
    return sorted(first, key=lambda f: (f.source, f.file or "", f.line or 0, f.kind))


class UnfoundLeads(BaseModel):
    """The deals an import's files wrote that name a lead the source does not hold, against all
    their deals naming one: most of them means the deals name their leads by another id than
    the leads' own (a column matched wrong, an email for an id), which no single flag says."""

    #: the deals the import's files wrote that name a lead
    deals: int
    #: of them, those whose lead the source does not hold
    missing: int
    #: a lead id such a deal names
    named: str
    #: a lead id the source holds, to compare with
    held: str

    @property
    def most(self) -> bool:
        return 2 * self.missing > self.deals

    @property
    def _head(self) -> str:
        n, m = self.deals, self.missing
        if n == 1:
            return "The one deal of these files that names a lead names one"
        how_many = f"All {n:,}" if m == n else f"{m:,} of the {n:,}"
        return f"{how_many} deals of these files that name a lead name one"

    def sentence(self) -> str | None:
        """What people read when most deals' leads are not in the data (else None)."""
        if not self.most:
            return None
        example = f"for example “{self.named}”, while the leads' IDs are like “{self.held}”"
        return (
            f"{self._head} that is not in the data ({example}): they count with no channel, "
            "campaign or lead dates. Do the deals name their leads by the same ID as the leads "
            "file? If not, choose the column that holds the lead's ID, or export that ID with "
            "the deals."
        )


def unfound_leads(
    session: Session, source: str, flags: FlagTally, files: list[str]
) -> UnfoundLeads | None:
    """How many of the deals the import's ``files`` (their names) wrote name a lead the source
    does not hold, from its flags just computed (None when none does: then the deals are not
    counted). Those files' deals, not the source's: a new file whose deals all name unknown
    leads is said so beside a source of many linked deals."""
    missing = sum(flags.unfound[f] for f in files)
    if not missing:
        return None
    # the lead the first of them names, in file and line order
    named = min((f, *flags.first_unfound[f]) for f in files if f in flags.first_unfound)[2]
    conn = session.connection()
    deals = conn.scalar(
        select(func.count())
        .select_from(D)
        .where(D.c.source == source, D.c.listed, D.c.lead_key.is_not(None), D.c.file.in_(files))
    )
    held = conn.scalar(select(L.c.external_id).where(L.c.source == source).limit(1))
    return UnfoundLeads(deals=int(deals or 0), missing=missing, named=named, held=held or "")


#: How many flags a page of them shows.
FLAGS_PAGE = 50


class FlagPage(BaseModel):
    """A page of the flags the store holds, in source, file and line order."""

    items: list[FlagRead]
    #: how many flags the filters select
    total: int
    #: how many flags of each kind the chosen source holds (every source: the whole store)
    by_kind: dict[str, int]
    #: how many flags each source holds
    by_source: dict[str, int]


def _check_choice(conn: Connection, source: str | None, kind: str | None) -> None:
    """A kind that is none, or a source the store does not hold, is refused."""
    if kind is not None and kind not in KIND_TITLES:
        kinds = ", ".join(KIND_TITLES.values())
        raise InvalidInput(f"there is no kind of flag {kind!r}: the kinds are {kinds}")
    if source is not None and not holds(conn, source):
        raise InvalidInput(f"the shared numbers hold no source “{source}”")


#: The records a KPI counts (its population: :class:`models.funnel.kpi_defs.KpiDef`), as
#: people read them after "the flags of the ...".
COUNTED = {
    "mql": "leads that became marketing-qualified",
    "closed": "deals won or lost",
    "open": "deals still open at the end of the period",
}


class Counted(BaseModel):
    """The records a KPI counted over a window of days (its end included): the leads that
    became marketing-qualified in it (``mql``), the deals won or lost in it (``closed``), the
    deals open at its end (``open``); the flags of those records are the ones it says it
    counted with a flag."""

    population: str
    start: date | None = None
    end: date | None = None

    def condition(self) -> ColumnElement[bool]:
        """A flag of one of those records: of a lead by the lead a flag names (a deal's flag
        names its lead too, and flags it in the lead KPIs), of a deal by the deal."""
        if self.population not in COUNTED:
            *some, last = (f"the {v}" for v in COUNTED.values())
            raise InvalidInput(
                f"there is no choice of records {self.population!r}: a number counts "
                f"{', '.join(some)}, or {last}"
            )
        s, e = window(self.start, self.end)
        if self.population == "mql":
            return (
                select(L.c.id)
                .where(
                    L.c.source == F.c.source,
                    L.c.external_id == F.c.lead_key,
                    *in_window(lead_terms().mql, s, e),
                )
                .exists()
            )
        t = deal_terms()
        if self.population == "closed":
            counted = or_(and_(*in_window(t.won, s, e)), and_(*in_window(t.lost, s, e)))
        else:
            counted = open_at(t, e)
        return (
            select(D.c.id)
            .where(D.c.source == F.c.source, D.c.external_id == F.c.deal_key, D.c.listed, counted)
            .exists()
        )

    def words(self) -> str:
        """ "the leads that became marketing-qualified from 7 Nov to 6 Dec 2026"."""
        what = COUNTED.get(self.population, self.population)
        a, b = (d.strftime("%-d %b %Y") if d else None for d in (self.start, self.end))
        if self.population == "open":
            return f"the deals still open at the end of {b}" if b else "the deals still open"
        if a and b:
            return f"the {what} from {a} to {b}"
        return f"the {what}" + (f" from {a}" if a else "") + (f" up to {b}" if b else "")


def _chosen(
    source: str | None, kind: str | None, counted: Counted | None = None
) -> list[ColumnElement[bool]]:
    return [
        *([F.c.source == source] if source is not None else []),
        *([F.c.kind == kind] if kind is not None else []),
        *([counted.condition()] if counted is not None else []),
    ]


#: The flags' order: by source, file and line.
_ORDER = (F.c.source, F.c.file, F.c.line, F.c.kind, F.c.id)
#: The columns of the flags' CSV, as people read them.
CSV_HEADER = ("Source", "File", "Line", "Record", "ID", "Flag", "What is odd")


def write_flags_csv(
    session: Session,
    out: IO[str],
    *,
    source: str | None = None,
    kind: str | None = None,
    counted: Counted | None = None,
) -> int:
    """The flags of one source and kind (None: all), of the records a KPI ``counted`` (None:
    of every record), in source, file and line order, as CSV
    written to ``out`` (a header, then a row per flag: people take it to put the records right
    in the system they came from); how many. Read in chunks: memory does not grow with them."""
    conn = session.connection()
    _check_choice(conn, source, kind)
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    n = 0
    for f in iter_flags(session, source, kind, counted):
        title = KIND_TITLES.get(f.kind, f.kind)
        writer.writerow([f.source, f.file or "", f.line or "", f.record, f.key, title, f.sentence])
        n += 1
    return n


def flag_page(
    session: Session,
    *,
    source: str | None = None,
    kind: str | None = None,
    counted: Counted | None = None,
    limit: int = FLAGS_PAGE,
    offset: int = 0,
) -> FlagPage:
    """The flags of one source (None: every source) and of one kind (None: every kind), of the
    records a KPI ``counted`` (None: of every record), a page at a time. A kind that is none,
    or a source the store does not hold, is refused."""
    conn = session.connection()
    _check_choice(conn, source, kind)
    by_source = dict(
        conn.execute(select(F.c.source, func.count()).group_by(F.c.source).order_by(F.c.source))
        .tuples()
        .all()
    )
    by_kind = dict(
        conn.execute(
            select(F.c.kind, func.count()).where(*_chosen(source, None, counted)).group_by(F.c.kind)
        )
        .tuples()
        .all()
    )
    chosen = _chosen(source, kind, counted)
    total = by_kind.get(kind, 0) if kind is not None else sum(by_kind.values())
    stmt = select(F).where(*chosen).order_by(*_ORDER).limit(limit).offset(offset)
    return FlagPage(
        items=[_read(r) for r in conn.execute(stmt)],
        total=total,
        by_kind={k: by_kind[k] for k in KIND_TITLES if k in by_kind},
        by_source=by_source,
    )
