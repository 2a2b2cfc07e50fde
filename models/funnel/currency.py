"""The currency of each source's amounts: one per source, recorded by its imports, so the numbers
never add up dollars and euros.

A file's amounts are in one currency (:class:`models.funnel.values.Currency`: the signs they
carry, a currency column, or the mapping's ``amount_currency``); an import records it
(``funnel_imports.currency``, migration 0026) once its files agree with each other and with
the source's currency (:func:`check`), which its first such import sets
(:class:`~models.funnel.tables.SourceCurrency`) and a person may set or correct on the import
page (:func:`set_currency`). Amounts that carry no sign, with no currency declared, record
nothing: the currency is not known, and nothing is refused.

The KPIs (:func:`models.funnel.kpis.compute_kpis`) read :func:`source_currencies`: the money
of sources in different currencies is not added up, and a sum of one currency says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.errors import InvalidInput
from models.funnel.access import require_importer
from models.funnel.mapping import currency_code
from models.funnel.tables import Deal, SourceCurrency
from models.services.common import record_event
from models.tables import Person
from models.words import quoted

SC = SourceCurrency.__table__
D = Deal.__table__


def check(conn: Connection, source: str, files: Sequence[tuple[Path, str | None]]) -> str | None:
    """The currency of an import's amounts (``files``: each file and its amounts' currency,
    None where not known), after refusing files whose amounts are in different currencies, or
    in another than the source's (its amounts are added up)."""
    found = [(path, code) for path, code in files if code is not None]
    codes = {code for _, code in found}
    if len(codes) > 1:
        (a, ca), (b, cb) = found[0], next(f for f in found if f[1] != found[0][1])
        raise InvalidInput(
            f"{a.name}: its amounts are in {ca} but those of {b.name} are in {cb}; a source's "
            "amounts are added up, so they must be in one currency: export them converted "
            "into one, or import each file as a source of its own"
        )
    if not codes:
        return None
    code = codes.pop()
    held = conn.execute(select(SC.c.currency, SC.c.set_at).where(SC.c.source == source)).first()
    if held is not None and held.currency != code:
        raise InvalidInput(
            f"{found[0][0].name}: its amounts are in {code} but source {quoted(source)} holds "
            f"amounts in {held.currency} (since {held.set_at:%Y-%m-%d}); a source's amounts are "
            f"added up, so they must be in one currency: export them converted into "
            f"{held.currency}, or import them as another source (the mapping's source); if "
            f"{quoted(source)} is in fact in {code}, say so first (its currency, on the import "
            "page)"
        )
    return code


def remember(session: Session, source: str, code: str | None) -> None:
    """An import of ``source`` read amounts in ``code`` (:func:`check`): the source's currency
    from now on, unless it has one."""
    if code is None or session.get(SourceCurrency, source) is not None:
        return
    session.add(SourceCurrency(source=source, currency=code))
    session.flush()


def set_currency(session: Session, source: str, code: str, actor: Person | None) -> str:
    """A lead or manager says which currency ``source``'s amounts are in (correcting the one
    an import recorded, or for amounts that carried none); the numbers read its amounts so
    from now on. Returns the code; refused when the source holds no amount or the code is no
    currency."""
    if actor is not None:
        require_importer(actor)
    found = currency_code(code)
    if found is None:
        raise InvalidInput("choose the currency from the list", field="currency")
    code = found
    if source not in sources_with_amounts(session):
        raise InvalidInput(f"source {quoted(source)} holds no amount", field="source")
    row = session.get(SourceCurrency, source)
    before = row.currency if row is not None else None
    if before == code:
        return code
    if row is None:
        session.add(
            SourceCurrency(source=source, currency=code, set_by_id=actor.id if actor else None)
        )
    else:
        row.currency, row.set_by_id, row.set_at = code, actor.id if actor else None, utcnow()
    session.flush()
    record_event(
        session,
        actor=actor,
        verb="funnel.currency_set",
        object_type="funnel_source",
        before={"source": source, "currency": before},
        after={"source": source, "currency": code},
    )
    return code


def source_currencies(session: Session | Connection) -> dict[str, str]:
    """Each source's currency, for those that have one (a row per source: read each time; the
    results computed from it are cached by a data version that counts its changes too:
    :func:`models.funnel.cache.version_key`)."""
    conn = session.connection() if isinstance(session, Session) else session
    return dict(conn.execute(select(SC.c.source, SC.c.currency)).tuples().all())


def sources_with_amounts(session: Session | Connection) -> list[str]:
    """The sources with a deal that has an amount, sorted: found one index seek at a time, the
    next source after the last found (a DISTINCT reads the whole index: 1 s at 1,000,000
    deals on SQLite, measured; this, 6 ms), so one statement per source and one more."""
    conn = session.connection() if isinstance(session, Session) else session
    found: list[str] = []
    after = select(D.c.source).where(D.c.amount_cents.is_not(None)).order_by(D.c.source).limit(1)
    src = conn.execute(after).scalar()
    while src is not None:
        found.append(src)
        src = conn.execute(after.where(D.c.source > src)).scalar()
    return found


@dataclass(frozen=True)
class SourceCurrencyRow:
    """A source with amounts, as the import page lists it: its currency (None: not known) and
    who said it (None: an import's amounts or mapping)."""

    source: str
    currency: str | None
    said_by: str | None
    said_at: datetime | None


def listing(session: Session) -> list[SourceCurrencyRow]:
    """Every source that holds amounts or has a currency, by name."""
    rows = {
        r.source: r
        for r in session.execute(
            select(SC.c.source, SC.c.currency, SC.c.set_at, Person.name)
            .select_from(SC)
            .join(Person, Person.id == SC.c.set_by_id, isouter=True)
        )
    }
    names = sorted({*rows, *sources_with_amounts(session)})
    return [
        SourceCurrencyRow(
            source=src,
            currency=rows[src].currency if src in rows else None,
            said_by=rows[src].name if src in rows else None,
            said_at=rows[src].set_at if src in rows else None,
        )
        for src in names
    ]


def numbers_currency(session: Session | Connection) -> str | None:
    """The currency the shared numbers' money is in, for what is said beside them (targets,
    the agreement): the one currency of the sources with amounts whose currency is known, when
    they have one (amounts of no known currency beside them are added as they are, as the KPIs
    do); None when no source's is known or they differ (then the money KPIs are per source)."""
    known = source_currencies(session)
    if not known:
        return None
    codes = {known[s] for s in sources_with_amounts(session) if s in known}
    return codes.pop() if len(codes) == 1 else None
