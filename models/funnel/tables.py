"""Tables of the funnel evidence. The core tables in :mod:`models.tables` are not touched:
targets and snapshots live here, keyed by the core rows' ids.

Funnel timestamps are stored as whole **seconds since 1970-01-01 UTC** (``BIGINT``): the same
integer arithmetic on SQLite and PostgreSQL gives the same durations to the second, and the KPI
queries compare and subtract plain integers (fast on both). Python sees aware UTC datetimes.
Money is stored in cents (``BIGINT``) so sums are exact on both backends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

import models.tables  # noqa: F401 - ImportJob's relationships name Person: registered first
from models.base import Base, utcnow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch(value: datetime) -> int:
    """Whole seconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - _EPOCH).total_seconds() // 1)


def day_start(d: date) -> int:
    """The first second of a UTC day, since the epoch (a window's bound)."""
    return to_epoch(datetime(d.year, d.month, d.day, tzinfo=UTC))


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class EpochSeconds(TypeDecorator[datetime]):
    """A UTC instant stored as integer seconds since the epoch (see the module docstring)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect):  # noqa: ANN001
        if value is None or isinstance(value, int):
            return value
        if isinstance(value, datetime):
            return to_epoch(value)
        if isinstance(value, date):
            return to_epoch(datetime(value.year, value.month, value.day))
        raise TypeError(f"cannot store {type(value).__name__} as a funnel timestamp")

    def process_result_value(self, value: int | None, dialect):  # noqa: ANN001
        return None if value is None else from_epoch(int(value))


#: A lead's dated stages, in the order a lead normally passes them.
LEAD_STAGES = ("created_at", "mql_at", "first_touch_at", "sql_at", "rejected_at")
#: A deal's dated stages.
DEAL_STAGES = ("opportunity_at", "won_at", "lost_at")
STAGE_FIELDS = (*LEAD_STAGES, *DEAL_STAGES)
#: Text a lead carries (``owner`` and ``team`` a deal carries too).
LEAD_TEXT = ("channel", "campaign", "owner", "team", "rejection_reason")
DEAL_TEXT = ("account", "stage", "owner", "team")
TEXT_FIELDS = tuple(dict.fromkeys((*LEAD_TEXT, *DEAL_TEXT)))
#: The ids a mapping can read: the lead's own id (``external_id``), the deal's own id
#: (``deal_id``), the id of a deal's lead (``lead_id``, on a deals file) and the id of the deal
#: a lead was converted into (``converted_deal_id``, on a leads file: Salesforce's link).
KEY_FIELDS = ("external_id", "deal_id", "lead_id", "converted_deal_id")
#: Every field a mapping can fill.
RECORD_FIELDS = (*KEY_FIELDS, *TEXT_FIELDS, *STAGE_FIELDS, "amount")


class Lead(Base):
    """A lead (a contact, an MQL) from one source: its journey up to the hand-off.

    ``(source, external_id)`` is the natural key: importing the same lead again updates it.
    ``file`` and ``line`` say where it was last read (data-quality flags cite them)."""

    __tablename__ = "leads"
    # No index on the stage dates: the KPI queries scan the table (bench/funnel.py measured a
    # full scan 5x cheaper on SQLite than walking an mql_at index over 1M leads, even for a
    # 42-day window: rows are stored in import order, so an index means random row lookups),
    # and every index slows the import.
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(String(300))
    owner: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    mql_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    first_touch_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    sql_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    rejected_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    rejection_reason: Mapped[str | None] = mapped_column(String(300))
    file: Mapped[str | None] = mapped_column(String(255))
    line: Mapped[int | None] = mapped_column(Integer)
    # What the lead's deals add up to, derived from ``deals`` after every import
    # (:mod:`models.funnel.links`), so the KPIs read one table: NULL counts = no deal.
    deal_count: Mapped[int | None] = mapped_column(Integer)
    open_deal_count: Mapped[int | None] = mapped_column(Integer)
    first_won_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    last_deal_at: Mapped[datetime | None] = mapped_column(EpochSeconds())


#: The name the funnel's lead table had before leads and deals were apart (one row per lead,
#: with the deal's dates on it); kept for the callers that only ask whether funnel data exists.
FunnelRecord = Lead


class Deal(Base):
    """A deal (an opportunity): it belongs to at most one lead, or to an account only.

    ``(source, external_id)`` is the natural key. The lead is held by its natural key
    (``lead_key`` = the lead's ``external_id`` in the same source), not by a row id resolved at
    import time: deals imported before their leads, or in another run, find them all the same.
    ``other_leads`` keeps further lead ids a row listed (a flag says the deal counts for the
    first). ``listed`` is true once a deals file listed the deal: a leads file that names the
    deal its lead was converted into (Salesforce) writes only ``lead_key``, and a deal no deals
    file listed yet is no deal to count. ``amount_cents`` is in cents (one currency per store).
    """

    __tablename__ = "deals"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_deals_source_lead_key", "source", "lead_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))
    lead_key: Mapped[str | None] = mapped_column(String(200))
    other_leads: Mapped[str | None] = mapped_column(String(1000))
    account: Mapped[str | None] = mapped_column(String(200))
    stage: Mapped[str | None] = mapped_column(String(100))
    owner: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    opportunity_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    won_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    lost_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    file: Mapped[str | None] = mapped_column(String(255))
    line: Mapped[int | None] = mapped_column(Integer)
    # The lead's fields a deal's KPIs group or measure by, derived from ``leads`` after every
    # import (:mod:`models.funnel.links`): NULL when the deal has no lead (yet).
    lead_channel: Mapped[str | None] = mapped_column(String(200))
    lead_campaign: Mapped[str | None] = mapped_column(String(300))
    lead_owner: Mapped[str | None] = mapped_column(String(200))
    lead_team: Mapped[str | None] = mapped_column(String(100))
    lead_mql_at: Mapped[datetime | None] = mapped_column(EpochSeconds())
    lead_sql_at: Mapped[datetime | None] = mapped_column(EpochSeconds())


class FunnelFlag(Base):
    """Something odd about a record that was kept: a stage out of the usual order, a negative
    duration, a zero or negative amount, a deal that lists several leads.

    Flags are derived from the store: after every import the flags of its source are computed
    afresh, so they do not depend on the order the files came in. ``import_id`` is the import
    that computed them; ``file`` and ``line`` where the record was read."""

    __tablename__ = "funnel_flags"
    __table_args__ = (
        Index("ix_funnel_flags_source_lead_key", "source", "lead_key"),
        # the flags' page: in its order, and a kind at a time (migration 0028)
        Index("ix_funnel_flags_source_file_line", "source", "file", "line", "kind"),
        Index("ix_funnel_flags_source_kind", "source", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int | None] = mapped_column(
        ForeignKey("funnel_imports.id", ondelete="SET NULL")
    )
    source: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(String(8))  # lead | deal
    lead_key: Mapped[str | None] = mapped_column(String(200))
    deal_key: Mapped[str | None] = mapped_column(String(200))
    file: Mapped[str | None] = mapped_column(String(255))
    line: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    sentence: Mapped[str] = mapped_column(Text)


class FunnelImport(Base):
    """One run of ``aligncycle funnel import``: what was read, loaded and rejected."""

    __tablename__ = "funnel_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    mapping: Mapped[str] = mapped_column(String(200))
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_new: Mapped[int] = mapped_column(Integer, default=0)
    rows_changed: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    #: rows listing a record an earlier row of their file lists (migration 0027)
    rows_repeated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: records of the source an import of the whole export removed (migration 0027)
    rows_removed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rows_flagged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the currency of the amounts it read (an ISO code, ``USD``), when they or the mapping say
    #: it: a source's amounts are in one currency (:func:`models.funnel.currency.check`)
    currency: Mapped[str | None] = mapped_column(String(8))
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class SourceCurrency(Base):
    """The currency of a source's amounts (an ISO code, ``USD``): set by its first import whose
    amounts or mapping said it, or by a person (correcting one, or saying it of amounts that
    carried none). The numbers read it (:mod:`models.funnel.currency`)."""

    __tablename__ = "funnel_source_currencies"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    #: who said it; None: an import (``funnel_imports.currency`` tells which)
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class CycleKpiSnapshot(Base):
    """A KPI as measured for a cycle: ``baseline`` (the window before the cycle, frozen when
    Identify first evaluates it) or ``recap`` (the cycle's own period, measured in Recap)."""

    __tablename__ = "cycle_kpi_snapshots"
    __table_args__ = (UniqueConstraint("cycle_id", "kind", "kpi"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    kpi: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    numerator: Mapped[float | None] = mapped_column(Float)
    sample_size: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    sla_hours: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionTarget(Base):
    """A measurable target on an action item: move ``kpi`` from ``baseline`` to ``target``,
    measured over ``window_start``..``window_end`` (inclusive)."""

    __tablename__ = "action_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(
        ForeignKey("action_items.id", ondelete="CASCADE"), unique=True
    )
    kpi: Mapped[str] = mapped_column(String(64))
    baseline: Mapped[float | None] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class ImportJob(Base):
    """An import started in the web app or the API: the uploaded files (kept in a folder of
    their own under the data dir, named by ``folder``, until the import or after a while), the
    settings chosen, the preview, then the import and its summary.

    Its ``state`` moves: previewing -> previewed | refused; previewed -> importing -> imported |
    failed; and discarded or expired once its files are removed. Every worker process reads
    it; progress while a file is read lives beside the files (see
    :mod:`models.funnel.jobs`)."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    state: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str | None] = mapped_column(String(100))
    mapping_name: Mapped[str | None] = mapped_column(String(255))
    #: the settings chosen over the mapping's (dates, decimal, thousands, timezone, ...)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: [{"name": ..., "size": bytes}, ...] as uploaded
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: the name of the job's folder of uploaded files; None once they are removed
    folder: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    funnel_import_id: Mapped[int | None] = mapped_column(
        ForeignKey("funnel_imports.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]

    created_by = relationship("Person", foreign_keys=[created_by_id])
    confirmed_by = relationship("Person", foreign_keys=[confirmed_by_id])


class KpiLeadRollup(Base):
    """The MQL cohort summed up by period and group, kept by the import
    (:mod:`models.funnel.rollups`): one row per source, ``grain`` (``d``: a UTC day, ``period``
    = days since 1970-01-01; ``m``: a month, ``period`` = year * 12 + month - 1), dimension
    (``dim``: "" for everything, or channel, campaign, owner, team) and group (``key``: the
    value, lower-cased for channel, campaign and team; ``label``: the spelling that sorts
    first). A lead's period is its MQL date's.

    The counts are the cohort's (see :func:`models.funnel.sql.lead_conditions`); the
    distributions are sorted 64-bit integers, exact to the second, stored as their excess over
    the smallest (:mod:`models.funnel.distributions`): ``latency`` (first touch - MQL, touched
    leads), ``untouched_mql`` (the MQL times of leads not touched: which are due as of a time),
    ``progress`` (the latest progress of open leads that progressed: which are stalled as of a
    time). ``reasons``: JSON {reason: count}."""

    __tablename__ = "kpi_lead_rollups"
    __table_args__ = (Index("ix_kpi_lead_rollups_lookup", "dim", "grain", "period", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    grain: Mapped[str] = mapped_column(String(1))
    period: Mapped[int] = mapped_column(Integer)
    dim: Mapped[str] = mapped_column(String(8))
    key: Mapped[str | None] = mapped_column(String(300))
    label: Mapped[str | None] = mapped_column(String(300))
    mqls: Mapped[int] = mapped_column(Integer)
    sqls: Mapped[int] = mapped_column(Integer)
    won: Mapped[int] = mapped_column(Integer)
    decided: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    touched: Mapped[int] = mapped_column(Integer)
    untouched: Mapped[int] = mapped_column(Integer)
    deal_leads: Mapped[int] = mapped_column(Integer)
    opp_dated: Mapped[int] = mapped_column(Integer)
    reached_sql: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[int] = mapped_column(Integer)
    latency: Mapped[bytes] = mapped_column(LargeBinary)
    untouched_mql: Mapped[bytes] = mapped_column(LargeBinary)
    progress: Mapped[bytes] = mapped_column(LargeBinary)
    reasons: Mapped[str | None] = mapped_column(Text)


class KpiDealRollup(Base):
    """The deals' events summed up by period and group, kept by the import: ``kind`` ``won``
    and ``lost`` (period: the day or month of the win or loss), ``open`` (neither: period of
    its creation, NULL without a creation date), ``both`` (won and lost: day of the loss,
    ``other`` the day of the win; day grain only, so a deal both won and lost in a window is
    one closed deal among the flagged). ``month`` is the 'YYYY-MM' a deal is grouped under by
    month (of its win, else loss, else creation). Grain, dimension, key and label as
    :class:`KpiLeadRollup`; a deal's channel and campaign are its lead's, its owner and team
    its own, else its lead's.

    ``amount`` sums the cents of ``with_amount`` deals; ``times`` (sorted, as the lead
    rollups): a won deal's cycle in seconds (those with a start), an open deal's creation time
    (its age as of a time)."""

    __tablename__ = "kpi_deal_rollups"
    __table_args__ = (Index("ix_kpi_deal_rollups_lookup", "dim", "kind", "grain", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    grain: Mapped[str] = mapped_column(String(1))
    kind: Mapped[str] = mapped_column(String(4))
    period: Mapped[int | None] = mapped_column(Integer)
    other: Mapped[int | None] = mapped_column(Integer)
    month: Mapped[str | None] = mapped_column(String(7))
    dim: Mapped[str] = mapped_column(String(8))
    key: Mapped[str | None] = mapped_column(String(300))
    label: Mapped[str | None] = mapped_column(String(300))
    deals: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    with_amount: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[int] = mapped_column(Integer)
    times: Mapped[bytes] = mapped_column(LargeBinary)


class KpiRollupSource(Base):
    """A source whose rollups are kept: the KPIs read them only for sources listed here (a
    source written otherwise is read row by row until :func:`models.funnel.rollups.refresh`)."""

    __tablename__ = "kpi_rollup_sources"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
