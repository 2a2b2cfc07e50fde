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
only flagged rows come back to Python): the same store gives the same flags whichever order its
files came in. Every KPI says how many of its records carry one (:mod:`models.funnel.kpis`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO, Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel.links import DEAL_FROM_LEAD
from models.funnel.sql import holds
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


def lead_flags(session: Session, source: str) -> list[dict[str, Any]]:
    cols = {n: _int(L.c[n]) for n in ("mql_at", "first_touch_at", "sql_at", "rejected_at")}
    odd = or_(*(_earlier_day(cols[a], cols[b]) for a, b in LEAD_ORDER))
    stmt = select(L.c.external_id, L.c.file, L.c.line, *(c.label(n) for n, c in cols.items()))
    out = []
    for r in session.connection().execute(stmt.where(L.c.source == source, odd)):
        for a, b in LEAD_ORDER:
            x, y = getattr(r, a), getattr(r, b)
            if x is not None and y is not None and y // DAY < x // DAY:
                sentence = (
                    f"Lead {r.external_id}: {_LEAD_LABEL[b]} is {_days(x, y)} before "
                    f"{_LEAD_LABEL[a]}."
                )
                out.append(_flag(source, "lead", r.external_id, None, r, "out_of_order", sentence))
    return out + _zeros_dropped(session.connection(), source)


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


def _zeros_dropped(conn: Connection, source: str) -> list[dict[str, Any]]:
    """Leads whose id is another lead's with its leading zeros dropped ("123" beside "00123"):
    most likely one lead, its id saved from Excel in one export, counted twice."""
    out = []
    for twins in _zero_padded(conn, source):
        if not twins:
            continue
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
            out.append(_flag(source, "lead", r.external_id, None, r, ZEROS_DROPPED, sentence))
    return out


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


def _written_otherwise(conn: Connection, source: str, keys: set[str]) -> dict[str, tuple[str, str]]:
    """The leads the source holds whose id is one of ``keys`` written another way, and how
    (:data:`ZEROS`, :data:`SALESFORCE`): its leading zeros dropped or added, or a Salesforce
    record's id in its other length (18 characters are its 15 and a checksum of their case:
    :func:`models.funnel.values.salesforce_root`). Queries of those keys only."""
    near: dict[str, tuple[str, str]] = {}

    def look(wanted: dict[str, str], how: str) -> None:  # {a lead id to look up: the key}
        ids = list(wanted)
        for i in range(0, len(ids), 500):
            stmt = select(L.c.external_id).where(
                L.c.source == source, L.c.external_id.in_(ids[i : i + 500])
            )
            for (found,) in conn.execute(stmt):
                near.setdefault(wanted[found], (found, how))

    # zeros dropped from the lead's id ("00123" named "123"), when a key is digits
    digits = {k for k in keys if k.isdigit()}
    if any(not k.startswith("0") for k in digits):
        for twins in _zero_padded(conn, source):
            for k in digits & twins.keys():
                near.setdefault(k, (twins[k], ZEROS))
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


def deal_flags(session: Session, source: str) -> list[dict[str, Any]]:
    conn = session.connection()
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
    out = []
    rows = conn.execute(stmt).all()
    missing = {r.lead_key for r in rows if r.lead_missing}
    near = _written_otherwise(conn, source, missing) if missing else {}
    for r in rows:
        name = f"Deal {r.external_id}"

        def add(kind: str, sentence: str, r: Any = r) -> None:
            out.append(_flag(source, "deal", r.lead_key, r.external_id, r, kind, sentence))

        for a, b in DEAL_ORDER:
            x, y = getattr(r, a), getattr(r, b)
            if x is not None and y is not None and y // DAY < x // DAY:
                add(
                    "out_of_order",
                    f"{name}: {_DEAL_LABEL[b]} is {_days(x, y)} before {_DEAL_LABEL[a]}.",
                )
        if r.won_at is not None and r.lost_at is not None:
            add(WON_AND_LOST, f"{name} is both won and lost.")
        if r.amount_cents == 0 and r.won_at is not None:  # a lost deal at 0 is ordinary
            add("zero_amount", f"{name} is won with an amount of zero.")
        elif r.amount_cents is not None and r.amount_cents < 0:
            add(
                "negative_amount",
                f"{name} has a negative amount ({_money(r.amount_cents)}); it counts as it is.",
            )
        if r.other_leads:
            others = r.other_leads.split(";")
            add(
                "several_leads",
                f"{name} lists {len(others) + 1} leads; it counts for the first, {r.lead_key} "
                f"(also listed: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}).",
            )
        if r.lead_missing:
            add(LEAD_NOT_FOUND, _not_found_sentence(name, r.lead_key, near.get(r.lead_key)))
    return out


def _flag(
    source: str,
    record: str,
    lead_key: str | None,
    deal_key: str | None,
    r: Any,
    kind: str,
    sentence: str,
) -> dict[str, Any]:
    return {
        "source": source,
        "record": record,
        "lead_key": lead_key,
        "deal_key": deal_key,
        "file": r.file,
        "line": r.line,
        "kind": kind,
        "sentence": sentence,
    }


def recompute_flags(session: Session, source: str, import_id: int | None) -> list[FlagRead]:
    """Replace the flags of ``source`` with those its records carry now; returns them in file
    and line order."""
    conn = session.connection()
    conn.execute(delete(F).where(F.c.source == source))
    rows = lead_flags(session, source) + deal_flags(session, source)
    rows.sort(key=lambda f: (f["file"] or "", f["line"] or 0, f["kind"]))
    if rows:
        conn.execute(insert(F), [{**f, "import_id": import_id} for f in rows])
    return [_read(f) for f in rows]


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


def list_flags(
    session: Session, source: str | None = None, limit: int | None = None
) -> list[FlagRead]:
    """The flags the store holds (of one source), in file and line order."""
    stmt = select(F).order_by(F.c.source, F.c.file, F.c.line, F.c.kind, F.c.id)
    if source:
        stmt = stmt.where(F.c.source == source)
    if limit:
        stmt = stmt.limit(limit)
    return [_read(r) for r in session.connection().execute(stmt)]


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
    session: Session, source: str, flags: list[FlagRead], files: list[str]
) -> UnfoundLeads | None:
    """How many of the deals the import's ``files`` (their names) wrote name a lead the source
    does not hold, from its flags just computed (None when none does: then the deals are not
    counted). Those files' deals, not the source's: a new file whose deals all name unknown
    leads is said so beside a source of many linked deals."""
    missing = [f for f in flags if f.kind == LEAD_NOT_FOUND and f.file in files]
    if not missing:
        return None
    conn = session.connection()
    deals = conn.scalar(
        select(func.count())
        .select_from(D)
        .where(D.c.source == source, D.c.listed, D.c.lead_key.is_not(None), D.c.file.in_(files))
    )
    held = conn.scalar(select(L.c.external_id).where(L.c.source == source).limit(1))
    named = conn.scalar(
        select(D.c.lead_key).where(
            D.c.source == source, D.c.external_id == missing[0].key, D.c.listed
        )
    )
    return UnfoundLeads(
        deals=int(deals or 0), missing=len(missing), named=named or "", held=held or ""
    )


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


def _chosen(source: str | None, kind: str | None) -> list[ColumnElement[bool]]:
    return [
        *([F.c.source == source] if source is not None else []),
        *([F.c.kind == kind] if kind is not None else []),
    ]


#: The flags' order: by source, file and line.
_ORDER = (F.c.source, F.c.file, F.c.line, F.c.kind, F.c.id)
#: The columns of the flags' CSV, as people read them.
CSV_HEADER = ("Source", "File", "Line", "Record", "ID", "Flag", "What is odd")


def write_flags_csv(
    session: Session, out: IO[str], *, source: str | None = None, kind: str | None = None
) -> int:
    """The flags of one source and kind (None: all), in source, file and line order, as CSV
    written to ``out`` (a header, then a row per flag: people take it to put the records right
    in the system they came from); how many. Read in chunks: memory does not grow with them."""
    conn = session.connection()
    _check_choice(conn, source, kind)
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    # (the option on the statement: on the connection it would make every later statement of
    # the unit of work a server-side cursor on PostgreSQL, its SAVEPOINTs too)
    stmt = select(F).where(*_chosen(source, kind)).order_by(*_ORDER)
    n = 0
    for r in conn.execute(stmt.execution_options(yield_per=2000)):
        f = _read(r)
        title = KIND_TITLES.get(f.kind, f.kind)
        writer.writerow([f.source, f.file or "", f.line or "", f.record, f.key, title, f.sentence])
        n += 1
    return n


def flag_page(
    session: Session,
    *,
    source: str | None = None,
    kind: str | None = None,
    limit: int = FLAGS_PAGE,
    offset: int = 0,
) -> FlagPage:
    """The flags of one source (None: every source) and of one kind (None: every kind), a page
    at a time. A kind that is none, or a source the store does not hold, is refused."""
    conn = session.connection()
    _check_choice(conn, source, kind)
    by_source = dict(
        conn.execute(select(F.c.source, func.count()).group_by(F.c.source).order_by(F.c.source))
        .tuples()
        .all()
    )
    by_kind = dict(
        conn.execute(
            select(F.c.kind, func.count()).where(*_chosen(source, None)).group_by(F.c.kind)
        )
        .tuples()
        .all()
    )
    chosen = _chosen(source, kind)
    total = by_kind.get(kind, 0) if kind is not None else sum(by_kind.values())
    stmt = select(F).where(*chosen).order_by(*_ORDER).limit(limit).offset(offset)
    return FlagPage(
        items=[_read(r) for r in conn.execute(stmt)],
        total=total,
        by_kind={k: by_kind[k] for k in KIND_TITLES if k in by_kind},
        by_source=by_source,
    )
