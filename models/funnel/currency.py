"""The currency of each source's amounts: one per source, recorded by its imports, so the numbers
never add up dollars and euros.

A file's amounts are in one currency (:class:`models.funnel.values.Currency`: the signs they
carry, or the mapping's ``amount_currency``); an import records it
(``funnel_imports.currency``, migration 0026) once its files agree with each other and with
what the source's earlier imports recorded (:func:`check`). Amounts that carry no sign and a
mapping that declares none record nothing: the currency is not known, and nothing is refused.

The KPIs (:func:`models.funnel.kpis.compute_kpis`) read :func:`source_currencies`: the money
of sources in different currencies is not added up, and a sum of one currency says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel.cache import cache, version_key
from models.funnel.tables import FunnelImport
from models.words import quoted

FI = FunnelImport.__table__


def check(conn: Connection, source: str, files: Sequence[tuple[Path, str | None]]) -> str | None:
    """The currency of an import's amounts (``files``: each file and its amounts' currency,
    None where not known), after refusing files whose amounts are in different currencies, or
    in another than the source's earlier imports (the source's amounts are added up)."""
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
    before = conn.execute(
        select(FI.c.currency, FI.c.started_at)
        .where(FI.c.source == source, FI.c.currency.is_not(None), FI.c.currency != code)
        .order_by(FI.c.id.desc())
        .limit(1)
    ).first()
    if before is not None:
        raise InvalidInput(
            f"{found[0][0].name}: its amounts are in {code} but source {quoted(source)} holds "
            f"amounts in {before.currency} (imported {before.started_at:%Y-%m-%d}); a source's "
            f"amounts are added up, so they must be in one currency: export them converted "
            f"into {before.currency}, or import them as another source (the mapping's source)"
        )
    return code


def source_currencies(session: Session | Connection) -> dict[str, str]:
    """Each source's currency, for those whose imports recorded one; cached by the data
    version."""
    conn = session.connection() if isinstance(session, Session) else session

    def read() -> dict[str, str]:
        stmt = select(FI.c.source, FI.c.currency).where(FI.c.currency.is_not(None)).distinct()
        return dict(conn.execute(stmt).tuples().all())

    version = version_key(conn)
    if not version[1]:
        return read()
    return cache.get(("currencies", *version), read)
