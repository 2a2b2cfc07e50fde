"""The shared numbers as the Numbers page, the API and the digest read them: the KPIs of a
period beside an earlier one, the stage-by-stage funnel, the KPIs by one or two groupings, and
the SLA breach list (each lead that waited past the hand-off SLA).

Every figure comes from :func:`models.funnel.kpis.compute_kpis`, so the page shows exactly what
``aligncycle kpi show`` prints. That reads the KPI rollups where they answer — the cards and
the funnel of any period, the groupings by month, channel or team for any period, and by
campaign or owner for periods of whole months — and the rows otherwise (campaign or owner
over a period that starts or ends inside a month, two groupings of people or channels). The
SLA breach list names leads, so it reads the rows (one pass over the period's MQLs). Results
are cached per process, keyed by the store's data version (the newest import; a new import is
a new version), so a page read again after no import reads no rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import BigInteger, and_, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from models.errors import InvalidInput
from models.funnel.cache import cache as _cache
from models.funnel.cache import version_key as _version_key
from models.funnel.currency import source_currencies
from models.funnel.flags import LEAD_NOT_FOUND
from models.funnel.kpis import (
    KPIS,
    MONEY_KPIS,
    SUMMED_OVER_WINDOW,
    TOUCH_KPIS,
    FunnelStep,
    KpiChange,
    KpiReport,
    compare_reports,
    compute_kpis,
    format_change,
    format_value,
    never_lost_note,
    no_such_source,
    sources,
    untracked_sources,
    with_mqls,
)
from models.funnel.sql import D, F, L
from models.funnel.tables import FunnelImport, Lead, day_start, to_epoch
from models.words import listed

#: What the page and the API may group by (the KPI module's dimensions), in people's words.
GROUPINGS = {
    "channel": "Channel",
    "campaign": "Campaign",
    "owner": "Owner",
    "team": "Team",
    "month": "Month",
}
DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


class NumbersQuery(BaseModel):
    """Which numbers: a period (inclusive days), the period to compare with (default: the same
    number of days just before), up to two groupings, one source or all, the hand-off SLA."""

    start: date
    end: date
    compare_start: date | None = None
    compare_end: date | None = None
    by: list[str] = Field(default_factory=list, max_length=2)
    source: str | None = None
    sla_hours: float = Field(default=24, gt=0, le=24 * 60)
    stall_days: int = Field(default=30, ge=1, le=3650)

    @classmethod
    def around(cls, today: date, days: int = DEFAULT_DAYS, **kw: Any) -> NumbersQuery:
        """The last ``days`` days up to ``today``."""
        return cls(start=today - timedelta(days=days - 1), end=today, **kw)

    def checked(self) -> NumbersQuery:
        """The query with its comparison filled in, or ``InvalidInput`` in one sentence."""
        if self.end < self.start:
            raise InvalidInput(f"the period ends ({self.end}) before it starts ({self.start})")
        if (self.end - self.start).days >= MAX_DAYS:
            raise InvalidInput("choose a period of at most three years")
        for name in self.by:
            if name not in GROUPINGS:
                raise InvalidInput(
                    f"the numbers are grouped by {', '.join(GROUPINGS)}, not by {name!r}"
                )
        if len(set(self.by)) != len(self.by):
            raise InvalidInput("choose two different groupings")
        cs, ce = self.compare_start, self.compare_end
        if (cs is None) != (ce is None):
            raise InvalidInput("give both the start and the end of the period to compare with")
        if cs is None or ce is None:
            length = self.end - self.start
            ce = self.start - timedelta(days=1)
            cs = ce - length
        elif ce < cs:
            raise InvalidInput(f"the period to compare with ends ({ce}) before it starts ({cs})")
        return self.model_copy(update={"compare_start": cs, "compare_end": ce})


Direction = Literal["better", "worse", "same"]


class KpiCard(BaseModel):
    """One KPI of the period, beside the period compared with."""

    kpi: str
    title: str
    meaning: str
    unit: str
    value: float | None
    shown: str
    sample_size: int
    sample: str  # what the sample counts, in words
    #: the records it counts: the leads that became MQLs in the period, the deals closed in
    #: it, the deals open at its end (models.funnel.flags.Counted)
    population: str
    flagged: int  # of its records carrying a data-quality flag
    compared: float | None
    compared_shown: str
    change_shown: str | None  # e.g. "+12.5 points", "−3.1 h", None without both values
    direction: Direction | None
    #: What to know before reading it, in a sentence (None: nothing).
    note: str | None = None


class Breach(BaseModel):
    """A lead that waited past the hand-off SLA (touched late, or not yet touched)."""

    source: str
    lead: str
    owner: str | None
    channel: str | None
    campaign: str | None
    mql_at: datetime
    touched_at: datetime | None
    waited_hours: float
    late_hours: float


class Breaches(BaseModel):
    total: int
    rows: list[Breach]
    limit: int
    offset: int
    #: Sources with MQLs in the period that have never recorded a first touch on any lead (their
    #: export has no such date): how long their leads waited cannot be told, so none is listed.
    untracked: list[str] = []


class Numbers(BaseModel):
    query: NumbersQuery
    has_data: bool
    data_version: int
    cards: list[KpiCard]
    funnel: list[FunnelStep]
    compared_funnel: list[FunnelStep]
    grouped: KpiReport | None
    breaches: Breaches
    #: the currency of the period's amounts (None: none known, or not added up)
    currency: str | None = None
    #: the periods differ in length: which KPIs are compared per day, in a sentence
    lengths_note: str | None = None


# --- the data version and the cache ----------------------------------------------------------


def data_version(session: Session) -> int:
    """The newest import's id (0: no import yet). Imports only add versions, so a cached result
    keyed by it is never stale."""
    return session.scalar(select(func.max(FunnelImport.id))) or 0


def known_sources(session: Session) -> list[str]:
    """The sources the store holds leads or deals of (:func:`kpis.sources`: a scan of every
    lead and deal, ~0.1-0.3 s at 1,000,000 leads), cached by the data version like the KPIs:
    the page lists them on every view and checks a chosen source against them."""
    version = _version_key(session)
    if not version[1]:  # no import yet: rows written otherwise are not versioned, so not cached
        return sources(session)
    return _cache.get(("sources", *version), lambda: sources(session))


#: A source whose newest import is older than this is said to be behind, unless the caller
#: says otherwise (the teams' cadence: models.services.agreements.behind_after_days).
BEHIND_AFTER_DAYS = 7
#: A source is said to have many deals whose lead is not in the data when at least this share
#: of its deals do: its numbers by channel and campaign, and its deals' lead dates, miss them.
UNLINKED_SHARE = 0.1


class SourceState(BaseModel):
    """Where the shared numbers come from: one source, what it holds and when it was last
    imported."""

    source: str
    leads: int
    #: deals its deals files listed (a deal only a lead names is not counted)
    deals: int
    #: its records' data-quality flags
    flags: int
    #: of its deals, those naming a lead it does not hold (each flagged)
    unlinked: int = 0
    #: the currency of its amounts, when said (None: it holds none, or none was said)
    currency: str | None = None
    #: when its newest import finished (None: imported before imports were recorded)
    imported_at: datetime | None = None
    #: that import's files
    files: list[str] = []
    #: whole days since then
    days_since: int | None = None
    #: how many days it may go without an import before it is behind
    behind_after_days: int = BEHIND_AFTER_DAYS

    @computed_field  # type: ignore[prop-decorator]
    @property
    def many_unlinked(self) -> bool:
        """At least :data:`UNLINKED_SHARE` of its deals name a lead it does not hold."""
        return self.unlinked > 0 and self.unlinked >= UNLINKED_SHARE * self.deals

    @computed_field  # type: ignore[prop-decorator]
    @property
    def behind(self) -> bool:
        """Its newest import is older than :attr:`behind_after_days`."""
        return self.days_since is not None and self.days_since > self.behind_after_days


def source_states(
    session: Session, now: datetime | None = None, behind_after_days: int = BEHIND_AFTER_DAYS
) -> list[SourceState]:
    """Every source the store holds, by name: its leads, deals and flags (counted once per
    import: cached by the data version, as the KPIs), its currency, and its newest import
    (behind when older than ``behind_after_days``)."""

    def counts() -> dict[str, tuple[int, int, int, int]]:
        conn = session.connection()
        leads = dict(conn.execute(select(L.c.source, func.count()).group_by(L.c.source)).all())
        deals = dict(
            conn.execute(
                select(D.c.source, func.count()).where(D.c.listed).group_by(D.c.source)
            ).all()
        )
        flagged: Counter[str] = Counter()
        unlinked: Counter[str] = Counter()
        for src, kind, n in conn.execute(
            select(F.c.source, F.c.kind, func.count()).group_by(F.c.source, F.c.kind)
        ):
            flagged[src] += n
            if kind == LEAD_NOT_FOUND:
                unlinked[src] += n
        return {
            src: (int(leads.get(src, 0)), int(deals.get(src, 0)), flagged[src], unlinked[src])
            for src in {*leads, *deals}
        }

    version = _version_key(session)
    held = _cache.get(("source counts", *version), counts) if version[1] else counts()
    newest = select(func.max(FunnelImport.id)).group_by(FunnelImport.source)
    imports = {
        i.source: i
        for i in session.scalars(select(FunnelImport).where(FunnelImport.id.in_(newest)))
    }
    currencies = source_currencies(session)
    now = now or datetime.now(UTC)
    out = []
    for src in sorted(held):
        leads, deals, flagged, unlinked = held[src]
        log = imports.get(src)
        at = log.finished_at or log.started_at if log is not None else None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        out.append(
            SourceState(
                source=src,
                leads=leads,
                deals=deals,
                flags=flagged,
                unlinked=unlinked,
                currency=currencies.get(src),
                imported_at=at,
                files=list(log.files or []) if log is not None else [],
                days_since=(now - at).days if at is not None else None,
                behind_after_days=behind_after_days,
            )
        )
    return out


def imported_before(states: list[SourceState], day: date) -> list[tuple[str, datetime]]:
    """The sources of ``states`` (:func:`source_states`) whose newest import finished before
    ``day``, and when: the numbers of the days since lack what happened in them."""
    return [
        (st.source, st.imported_at)
        for st in states
        if st.imported_at is not None and st.imported_at.date() < day
    ]


def _as_of(end: date) -> datetime:
    """The numbers of a period are as of its end (the end of its last day), or, while the
    period runs, as of now to the minute: open pipeline, stalled and untouched leads, and SLA
    deadlines are counted at that moment (and a cached result holds for that minute)."""
    end_of_period = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return min(end_of_period, datetime.now(UTC).replace(second=0, microsecond=0))


def report(
    session: Session,
    *,
    start: date,
    end: date,
    by: Sequence[str] = (),
    source: str | None = None,
    sla_hours: float = 24,
    stall_days: int = 30,
) -> KpiReport:
    """:func:`compute_kpis` for a period, cached by the store's data version."""
    as_of = _as_of(end)
    key = ("report", *_version_key(session), start, end, tuple(by), source, sla_hours, stall_days)
    key += (as_of,)
    return _cache.get(
        key,
        lambda: compute_kpis(
            session,
            start=start,
            end=end,
            by=list(by) or None,
            source=source,
            sla_hours=sla_hours,
            stall_days=stall_days,
            as_of=as_of,
        ),
    )


# --- the page's numbers -------------------------------------------------------------------------


def _change(c: KpiChange | None, currency: str | None) -> tuple[str | None, Any]:
    """A KPI's change from the period compared with, in words, and whether it is better: what
    adds up over a period, in periods of different lengths, is judged per day
    (:func:`compare_reports`), its change in all said beside its change a day."""
    if c is None or c.change is None:
        return None, None
    words = format_change(c.kpi, c.change, currency)
    if c.per_day:
        words += " in all"
        if c.change_pct is not None:
            words += f", {c.change_pct * 100:+.0f}% a day".replace("-", "−")
        elif c.rose is None:
            words += ", the same a day"
    rose = c.rose
    if rose is None:
        return words, "same"
    return words, "better" if rose == (KPIS[c.kpi].better == "higher") else "worse"


def checked(session: Session, query: NumbersQuery) -> NumbersQuery:
    """The query made whole (:meth:`NumbersQuery.checked`), of a source the store holds."""
    q = query.checked()
    if q.source is not None and q.source not in known_sources(session):
        known = ", ".join(known_sources(session)) or "none yet"
        raise InvalidInput(no_such_source(q.source, known))
    return q


def numbers(
    session: Session,
    query: NumbersQuery,
    *,
    breach_limit: int = 25,
    breach_offset: int = 0,
) -> Numbers:
    """Everything the Numbers page shows for ``query`` (see the module's docstring)."""
    q = checked(session, query)
    common = {"source": q.source, "sla_hours": q.sla_hours, "stall_days": q.stall_days}
    current = report(session, start=q.start, end=q.end, **common)
    earlier = report(session, start=q.compare_start, end=q.compare_end, **common)  # type: ignore[arg-type]
    changes = {c.kpi: c for c in compare_reports(current, earlier).get(None, [])}
    overall = current.groups[0] if current.groups else None
    # amounts of two currencies are not compared (1,000 EUR against 900 USD is no rise of
    # 100); a change of amounts says their currency when both periods' are in it
    apart = _apart(current.currency, earlier.currency)
    money = current.currency if current.currency == earlier.currency else None
    cards = []
    for name, d in KPIS.items():
        v = overall.kpis.get(name) if overall else None
        compared = changes[name].compared if name in changes else None
        note = apart if name in MONEY_KPIS else None
        change, direction = (None, None) if note else _change(changes.get(name), money)
        cards.append(
            KpiCard(
                kpi=name,
                title=d.title,
                meaning=d.meaning,
                unit=d.unit,
                value=v.value if v else None,
                shown=format_value(name, v.value if v else None, current.currency),
                sample_size=v.sample_size if v else 0,
                sample=d.sample,
                population=d.population,
                flagged=v.flagged if v else 0,
                compared=compared,
                compared_shown=format_value(name, compared, earlier.currency),
                change_shown=change,
                direction=direction,
                note=note,
            )
        )
    grouped = report(session, start=q.start, end=q.end, by=q.by, **common) if q.by else None
    version = data_version(session)
    breaches = sla_breaches(
        session,
        start=q.start,
        end=q.end,
        sla_hours=q.sla_hours,
        source=q.source,
        limit=breach_limit,
        offset=breach_offset,
    )
    _note_untracked(cards, current.left_out_of_touch_kpis)  # (what the numbers left out)
    _note_never_lost(cards, current.never_lost)
    _note_currency(cards, current)
    return Numbers(
        query=q,
        has_data=version > 0 or bool(known_sources(session)),
        data_version=version,
        cards=cards,
        funnel=overall.funnel if overall else [],
        compared_funnel=earlier.groups[0].funnel if earlier.groups else [],
        grouped=grouped,
        breaches=breaches,
        currency=current.currency,
        lengths_note=_lengths_note(q),
    )


def _note_untracked(cards: list[KpiCard], untracked: list[str]) -> None:
    """Where the period mixes sources and some record no first touch, the KPIs of touches
    leave their leads out (:func:`compute_kpis`; alone, such a source's are "no data"): the
    card says so."""
    for c in cards:
        if c.kpi in TOUCH_KPIS and c.value is not None and untracked:
            which = listed(untracked)
            c.note = (
                f"The leads from {which} are left out: "
                f"{'that export has' if len(untracked) == 1 else 'those exports have'} no date "
                "of a first sales touch, so whether they were touched cannot be told."
            )


def _apart(now: str | None, then: str | None) -> str | None:
    """Why amounts are not compared, when the two periods' are in different currencies (the
    sources with amounts in one differ from the other's); else None."""
    if now is None or then is None or now == then:
        return None
    return f"Not compared: the amounts are in {now} in this period and in {then} in the other."


def _lengths_note(q: NumbersQuery) -> str | None:
    """Where the two periods differ in length, which KPIs were compared per day
    (:func:`_change`), in a sentence."""
    days = ((q.end - q.start).days + 1, (q.compare_end - q.compare_start).days + 1)  # type: ignore[operator]
    if days[0] == days[1]:
        return None
    titles = [_lower_first(d.title) for n, d in KPIS.items() if n in SUMMED_OVER_WINDOW]
    return (
        f"The periods differ in length ({days[0]:,} and {days[1]:,} days): whether the "
        f"{listed(titles)} are better or worse is judged per day."
    )


def _lower_first(title: str) -> str:
    """A title inside a sentence: "untouched leads"; an acronym stays ("MQL volume")."""
    return title if title[1:2].isupper() else title[:1].lower() + title[1:]


def _note_currency(cards: list[KpiCard], report: KpiReport) -> None:
    """The money cards say what the report says of their currencies: why a sum of amounts in
    different currencies is "no data", or that amounts of no known currency were added."""
    overall = report.groups[0].kpis if report.groups else {}
    for c in cards:
        v = overall.get(c.kpi)
        if c.kpi not in MONEY_KPIS or v is None or not report.currency_note:
            continue
        if c.value is not None or (v.detail and "currencies" in v.detail):
            c.note = f"{report.currency_note} {c.note}" if c.note else report.currency_note


def _note_never_lost(cards: list[KpiCard], never_lost: list[str]) -> None:
    """Where the period's won deals come from exports that record no lost deal at all, the
    win rate counts their wins and no loss: the card says so."""
    for c in cards:
        if c.kpi == "win_rate" and c.value is not None and never_lost:
            c.note = never_lost_note(never_lost) + "."


# --- the SLA breach list ------------------------------------------------------------------------


def sla_breaches(
    session: Session,
    *,
    start: date,
    end: date,
    sla_hours: float = 24,
    source: str | None = None,
    limit: int = 25,
    offset: int = 0,
    as_of: datetime | None = None,
) -> Breaches:
    """Each lead of the period's MQLs that waited past the SLA: touched later than the SLA
    allows, or not touched although its deadline has passed (as of the period's end, or now),
    latest first by how late. The same leads the SLA attainment KPI counts as missed."""
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("show between 1 and 500 breaches a page")
    when = as_of or _as_of(end)
    key = ("breaches", *_version_key(session), start, end, sla_hours, source, limit, offset)
    key += (when,)
    return _cache.get(
        key, lambda: _breaches(session, start, end, sla_hours, source, limit, offset, when)
    )


def _breach_select(
    start: date,
    end: date,
    sla_hours: float,
    source: str | None,
    as_of: datetime,
    untracked: frozenset[str],
) -> tuple[Any, list[Any], Any, int]:
    """The breach list's query: (the SELECT of its rows, its WHERE, how long each waited, the
    SLA in seconds). The one definition of a breach, for the page and the cycle's ledger."""
    moment = to_epoch(as_of)
    sla = int(round(sla_hours * 3600))
    L = Lead.__table__
    mql = type_coerce(L.c.mql_at, BigInteger)
    touch = type_coerce(L.c.first_touch_at, BigInteger)
    s, e = day_start(start), day_start(end + timedelta(days=1))
    # A touch after ``as_of`` had not happened yet: a replayed pass reads what it read then.
    touched = and_(touch.is_not(None), touch <= moment)
    late = or_(
        and_(touched, touch - mql > sla),
        and_(~touched, mql + sla <= moment),
    )
    in_period = [mql >= s, mql < e, *([L.c.source == source] if source else [])]
    # A source that has never recorded a first touch (Olist's export, for one) cannot say who
    # waited: its leads are not judged. (Judged by the whole source, not the period: a period
    # in which sales touched no lead at all is the worst case, not a lack of data.)
    untracked_rule = [L.c.source.not_in(sorted(untracked))] if untracked else []
    where = [*in_period, late, *untracked_rule]
    touch_then = case((touched, touch), else_=None)
    waited = func.coalesce(touch_then, moment) - mql
    stmt = select(
        L.c.source,
        L.c.external_id,
        L.c.owner,
        L.c.channel,
        L.c.campaign,
        mql.label("mql"),
        touch_then.label("touch"),
        waited.label("waited"),
    ).where(*where)
    return stmt, where, waited, sla


def _breach(r: Any, sla: int) -> Breach:
    return Breach(
        source=r.source,
        lead=r.external_id,
        owner=r.owner,
        channel=r.channel,
        campaign=r.campaign,
        mql_at=datetime.fromtimestamp(r.mql, UTC),
        touched_at=datetime.fromtimestamp(r.touch, UTC) if r.touch is not None else None,
        waited_hours=round(r.waited / 3600, 1),
        late_hours=round((r.waited - sla) / 3600, 1),
    )


def every_breach(
    session: Session,
    *,
    start: date,
    end: date,
    sla_hours: float,
    as_of: datetime | None = None,
    source: str | None = None,
    latest_first: bool = False,
) -> Iterator[Breach]:
    """Every lead of the period's MQLs (of one source) that waited past the SLA (as
    :func:`sla_breaches` counts them), read in one pass and not cached: what a cycle's breach
    ledger records, and the list's download (``latest_first``: in the list's order)."""
    untracked = untracked_sources(session)
    when = as_of or _as_of(end)
    stmt, _where, waited, sla = _breach_select(start, end, sla_hours, source, when, untracked)
    if latest_first:
        stmt = stmt.order_by(waited.desc(), Lead.__table__.c.id)
    for r in session.execute(stmt.execution_options(yield_per=2000)):
        yield _breach(r, sla)


def _breaches(
    session: Session,
    start: date,
    end: date,
    sla_hours: float,
    source: str | None,
    limit: int,
    offset: int,
    as_of: datetime,
) -> Breaches:
    untracked = untracked_sources(session)
    stmt, where, waited, sla = _breach_select(start, end, sla_hours, source, as_of, untracked)
    L = Lead.__table__
    total = session.scalar(select(func.count()).select_from(L).where(*where)) or 0
    rows = session.execute(stmt.order_by(waited.desc(), L.c.id).limit(limit).offset(offset)).all()
    return Breaches(
        total=total,
        limit=limit,
        offset=offset,
        rows=[_breach(r, sla) for r in rows],
        untracked=_in_period(session, untracked, start, end, source),
    )


def _in_period(
    session: Session, untracked: frozenset[str], start: date, end: date, source: str | None
) -> list[str]:
    """Those of ``untracked`` with MQLs in the period (and the chosen source)."""
    wanted = [u for u in untracked if source is None or u == source]
    return with_mqls(session, wanted, day_start(start), day_start(end + timedelta(days=1)))
