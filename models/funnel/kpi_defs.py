"""The shared KPIs: each one defined once, here: its name, formula, unit and meaning, and
the shapes of the results (how they are computed: :mod:`models.funnel.kpis`).

Three populations, set by the window (``--from``/``--to``, inclusive days, UTC):

- **MQL cohort** — leads whose ``mql_at`` falls in the window. The lead-flow KPIs follow this
  cohort through the funnel, whenever its later stages happened. A lead is *won* when at least
  one of its deals is won (MQL→won), whatever its other deals did.
- **Deals closed in the window** — deals won or lost in the window. Win rate, sales cycle,
  revenue and average deal size count deals, not leads: a contact with a lost and a won deal
  counts one loss and one win. Deals with no lead (an account only) count here too.
- **Open pipeline** — deals neither won nor lost, created before the window's end: count,
  value and age (as of the as-of time).

``by`` groups by one or two of channel, campaign, owner, team and month: the cohort by MQL
month, closed deals by close month, open deals by creation month; a deal's channel and campaign
are its lead's, its owner and team its own (else its lead's). Channel, campaign and team values
that differ only in case are one group, shown with the spelling that sorts first (in code-point
order, on both backends).

A KPI whose stage the data never records in the window (e.g. no lead has a first sales touch)
is *no data* (``None``), not 0: a source that does not track a stage cannot show a 0% for it.
Revenue with no won deal (or none with an amount) is no data, not 0.00. Every KPI says how many
of its records carry a data-quality flag (:mod:`models.funnel.flags`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from models.errors import InvalidInput

Unit = Literal["count", "rate", "hours", "days", "money"]
Better = Literal["higher", "lower"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class KpiDef:
    name: str
    title: str
    unit: Unit
    better: Better
    population: Literal["mql", "closed", "open"]
    formula: str
    sample: str  # what the sample size counts

    @property
    def meaning(self) -> str:
        """What the KPI says, in one sentence for people (the formula is for analysts)."""
        return MEANINGS[self.name]


_DEFS = [
    KpiDef(
        "mql_volume",
        "MQL volume",
        "count",
        "higher",
        "mql",
        "count of leads with mql_at in the window",
        "MQLs",
    ),
    KpiDef(
        "mql_to_sql_rate",
        "MQL→SQL rate",
        "rate",
        "higher",
        "mql",
        "MQLs with sql_at / MQLs (no data if no record in the window has sql_at)",
        "MQLs",
    ),
    KpiDef(
        "mql_to_won_rate",
        "MQL→won rate",
        "rate",
        "higher",
        "mql",
        "MQLs with at least one won deal / MQLs (no data if no MQL in the window was won)",
        "MQLs",
    ),
    KpiDef(
        "sales_acceptance_rate",
        "Sales acceptance rate",
        "rate",
        "higher",
        "mql",
        "accepted / decided, where accepted = sql_at set, decided = sql_at or rejected_at set",
        "MQLs sales accepted or rejected",
    ),
    KpiDef(
        "sales_rejection_rate",
        "Sales rejection rate",
        "rate",
        "lower",
        "mql",
        "rejected (rejected_at set, sql_at not) / decided; detail: top rejection reasons",
        "MQLs sales accepted or rejected",
    ),
    KpiDef(
        "handoff_latency_median_hours",
        "Hand-off latency, median",
        "hours",
        "lower",
        "mql",
        "median of (first_touch_at - mql_at) in hours over touched MQLs (negative → 0)",
        "touched MQLs",
    ),
    KpiDef(
        "handoff_latency_p90_hours",
        "Hand-off latency, p90",
        "hours",
        "lower",
        "mql",
        "90th percentile (linear, as percentile_cont) of (first_touch_at - mql_at) in hours",
        "touched MQLs",
    ),
    KpiDef(
        "sla_attainment",
        "SLA attainment",
        "rate",
        "higher",
        "mql",
        "MQLs touched within the SLA hours / MQLs due (touched, or untouched with the SLA "
        "deadline before the as-of time); no data if no MQL in the window was touched",
        "MQLs due",
    ),
    KpiDef(
        "untouched_leads",
        "Untouched leads",
        "count",
        "lower",
        "mql",
        "MQLs with no sales stage at all (no first touch, SQL, rejection, nor any deal); no "
        "data if no MQL in the window was touched",
        "MQLs",
    ),
    KpiDef(
        "stalled_leads",
        "Stalled leads",
        "count",
        "lower",
        "mql",
        "open MQLs (no won deal, not rejected, not every deal lost) that sales touched, "
        "accepted or gave a deal, whose latest such date (first touch, SQL, latest deal "
        "creation) is more than stall_days before the as-of time",
        "MQLs",
    ),
    KpiDef(
        "win_rate",
        "Win rate",
        "rate",
        "higher",
        "closed",
        "deals won / (deals won + deals lost), counting deals won or lost in the window",
        "deals closed in the period",
    ),
    KpiDef(
        "sales_cycle_median_days",
        "Sales cycle, median",
        "days",
        "lower",
        "closed",
        "median of (won_at - start) in days over deals won in the window, where start is the "
        "deal's opportunity_at, else its lead's sql_at, else its lead's mql_at (a negative "
        "duration counts as it is, and is flagged)",
        "deals won with a start date",
    ),
    KpiDef(
        "revenue_won",
        "Revenue won",
        "money",
        "higher",
        "closed",
        "sum of amount over deals won in the window (no data if none was won, or none of "
        "them has an amount; a negative amount counts as it is, and is flagged)",
        "deals won in the period",
    ),
    KpiDef(
        "average_deal_size",
        "Average deal size",
        "money",
        "higher",
        "closed",
        "revenue won / deals won in the window with an amount (no data if there are none)",
        "deals won with an amount",
    ),
    KpiDef(
        "open_pipeline_count",
        "Open pipeline, deals",
        "count",
        "higher",
        "open",
        "deals neither won nor lost, created before the window's end (or with no creation "
        "date); no data if the source has no deal at all",
        "open deals",
    ),
    KpiDef(
        "open_pipeline_value",
        "Open pipeline, value",
        "money",
        "higher",
        "open",
        "sum of amount over the open deals (no data if none has an amount)",
        "open deals with an amount",
    ),
    KpiDef(
        "deal_aging_median_days",
        "Deal aging, median",
        "days",
        "lower",
        "open",
        "median of (as-of time - opportunity_at) in days over the open deals with a creation date",
        "open deals with a creation date",
    ),
]

#: Every KPI by name, in display order.
KPIS: dict[str, KpiDef] = {d.name: d for d in _DEFS}
KPI_NAMES: tuple[str, ...] = tuple(KPIS)
GROUPS: tuple[str, ...] = ("channel", "campaign", "owner", "team", "month")
#: The KPIs of first touches: read beside others, the leads of a source that records no first
#: touch are left out of them (their sample, and their flagged count).
TOUCH_KPIS: tuple[str, ...] = ("sla_attainment", "untouched_leads")
#: The KPIs of the time to a first touch: their sample is touched MQLs, so only the sources
#: that record first touches are in it (their flagged count too).
LATENCY_KPIS: tuple[str, ...] = ("handoff_latency_median_hours", "handoff_latency_p90_hours")


#: Each KPI in one sentence, in the words of the people who read the Numbers page.
MEANINGS: dict[str, str] = {
    "mql_volume": "How many leads marketing qualified in the period.",
    "mql_to_sql_rate": "Of those leads, the share sales qualified as sales-ready.",
    "mql_to_won_rate": "Of those leads, the share that led to at least one won deal.",
    "sales_acceptance_rate": "Of the leads sales has reviewed, the share it accepted.",
    "sales_rejection_rate": "Of the leads sales has reviewed, the share it sent back.",
    "handoff_latency_median_hours": "How long a lead typically waits for its first sales touch.",
    "handoff_latency_p90_hours": "How long the slowest tenth of leads wait for a first touch.",
    "sla_attainment": "The share of leads touched within the agreed hand-off time.",
    "untouched_leads": "Leads that sales has not touched, accepted, rejected or opened a deal for.",
    "stalled_leads": "Open leads with no progress for longer than the stall limit.",
    "win_rate": "Of the deals closed in the period, the share that was won.",
    "sales_cycle_median_days": (
        "How long a won deal typically took to close, from its creation (else from its lead's "
        "SQL date, else from its MQL date)."
    ),
    "revenue_won": "What the deals won in the period are worth.",
    "average_deal_size": "What a won deal is worth on average.",
    "open_pipeline_count": "Deals still open at the end of the period.",
    "open_pipeline_value": "What the deals still open are worth.",
    "deal_aging_median_days": "How long the open deals have typically been open.",
}


def kpi_def(name: str) -> KpiDef:
    try:
        return KPIS[name]
    except KeyError:
        raise InvalidInput(f"unknown KPI {name!r}; known: {', '.join(KPI_NAMES)}") from None


# --- results ---------------------------------------------------------------------------------


class KpiValue(BaseModel):
    kpi: str
    value: float | None
    numerator: float | None = None
    sample_size: int = 0
    detail: dict[str, Any] | None = None
    #: how many of the KPI's records (leads of the cohort, deals closed or open) carry a
    #: data-quality flag
    flagged: int = 0


class FunnelStep(BaseModel):
    """One stage of the stage-by-stage funnel of an MQL cohort: how many of its leads reached
    the stage (or a later one), against the stage before and against the MQLs."""

    stage: str
    count: int
    step_rate: float | None  # count / the previous stage's count
    cumulative_rate: float | None  # count / MQLs


class KpiGroup(BaseModel):
    #: None: everything (no ``by``), or records with no value for the group. With two ``by``
    #: dimensions: both values joined by " / " (each in ``keys``).
    group: str | None
    kpis: dict[str, KpiValue]
    keys: list[str | None] = []
    funnel: list[FunnelStep] = []


class KpiReport(BaseModel):
    window_start: date | None
    window_end: date | None
    by: list[str] = []
    sla_hours: float
    stall_days: int
    as_of: datetime
    source: str | None
    groups: list[KpiGroup]
    #: The sources with MQLs in the window that record no first touch, read beside others:
    #: their leads are left out of SLA attainment and the untouched leads (not known untouched).
    left_out_of_touch_kpis: list[str] = []
    #: The sources with deals won in the window that record no lost deal at all (Olist's export
    #: lists won deals only): the win rate counts their wins and no loss.
    never_lost: list[str] = []
    #: The currency of the money KPIs' amounts (an ISO code), when the sources they add up
    #: recorded one, the same (:mod:`models.funnel.currency`); None: not known.
    currency: str | None = None
    #: Sources with amounts in the window whose currencies differ, each with its currency: the
    #: money KPIs are not added up across them ("no data"); one source at a time shows them.
    currencies: dict[str, str] = {}
    #: Sources with amounts in the window whose currency is not known, read beside sources
    #: with one: their amounts are added as they are.
    no_currency: list[str] = []
    #: What the money KPIs say of their currencies, as a sentence (None: nothing to say).
    currency_note: str | None = None

    def overall(self) -> dict[str, KpiValue]:
        """The KPIs of the whole window (only meaningful without ``by``)."""
        if self.by:
            raise ValueError("overall() is for a report computed without 'by'")
        return self.groups[0].kpis if self.groups else {}


class KpiChange(BaseModel):
    kpi: str
    value: float | None
    compared: float | None
    change: float | None  # value - compared
    #: change / |compared|; ``per_day``: the change a day, relative to the compared a day
    change_pct: float | None
    #: the windows differ in length and the KPI adds up over a window
    #: (:data:`SUMMED_OVER_WINDOW`): whether it rose or fell is told per day (:attr:`rose`)
    per_day: bool = False
    #: the value a day minus the compared a day (``per_day`` only)
    change_a_day: float | None = None

    @property
    def rose(self) -> bool | None:
        """Whether the KPI went up (None: no change, or nothing to compare): per day when
        the windows differ in length and it adds up over a window."""
        delta = self.change_a_day if self.per_day else self.change
        if delta is None or abs(delta) < 1e-12:
            return None
        return delta > 0


def holds_records(kpis: dict[str, KpiValue]) -> bool:
    """Whether a group's KPIs of a window count any record: every KPI counts its sample
    (the window's MQLs, its closed deals, the deals open at its end)."""
    return any(v.sample_size for v in kpis.values())


def compare_reports(current: KpiReport, earlier: KpiReport) -> dict[str | None, list[KpiChange]]:
    """Each group's KPIs against the same group of another window (matched by group).

    A group that holds no record in the other window (no lead qualified in it, no deal closed
    in it or open at its end: the data may not go back that far) has nothing to compare with:
    its counts would be zeros that say nothing, not a change.

    Windows of different lengths: what adds up over a window (:data:`SUMMED_OVER_WINDOW`:
    MQLs, untouched and stalled leads, revenue won) is compared per day, as a recap compares
    cycles: 900 MQLs in 30 days are more than 1,500 in 61, not 600 fewer. The change in all
    is kept beside it."""
    others = {g.group: g.kpis for g in earlier.groups if holds_records(g.kpis)}
    days = _lengths(current, earlier)
    out: dict[str | None, list[KpiChange]] = {}
    for g in current.groups:
        before = others.get(g.group, {})
        rows = []
        for name, v in g.kpis.items():
            b = before.get(name)
            then = b.value if b is not None else None
            change = None if v.value is None or then is None else v.value - then
            pct = change / abs(then) if change is not None and then else None
            a_day = None
            per_day = days is not None and name in SUMMED_OVER_WINDOW
            if per_day and days is not None and v.value is not None and then is not None:
                now, earlier_a_day = v.value / days[0], then / days[1]
                a_day = now - earlier_a_day
                pct = a_day / abs(earlier_a_day) if earlier_a_day else None
            rows.append(
                KpiChange(
                    kpi=name,
                    value=v.value,
                    compared=then,
                    change=change,
                    change_pct=pct,
                    per_day=per_day,
                    change_a_day=a_day,
                )
            )
        out[g.group] = rows
    return out


def _lengths(current: KpiReport, earlier: KpiReport) -> tuple[int, int] | None:
    """The two windows' lengths in days (both ends included), when both are bounded and
    they differ."""
    ends = (current.window_start, current.window_end, earlier.window_start, earlier.window_end)
    if any(d is None for d in ends):
        return None
    a, b, c, d = ends
    days = ((b - a).days + 1, (d - c).days + 1)  # type: ignore[operator]
    return days if days[0] != days[1] else None


_new = object.__new__
_set = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def built(cls: type[M], **fields: Any) -> M:
    """An instance of a result model from fields that are right by construction, every field
    given, without validation: a report by owner and month holds tens of thousands of KPI
    values, and building them validated (or with ``model_construct``) cost more than reading
    the rollups (measured). Equal, and dumped, like a validated one."""
    return build(cls, fields)


def build(cls: type[M], fields: dict[str, Any]) -> M:
    """:func:`built` with the fields as a dict (kept, not copied)."""
    inst = _new(cls)
    _set(inst, "__dict__", fields)
    _set_fields_set(inst, set(fields))
    _set_extra(inst, None)
    _set_private(inst, None)
    return inst


@dataclass
class Aggregates:
    """What a computation of the KPIs hands to their formulas, per group key (a tuple, one
    value per ``by`` dimension; ``()`` overall): the row-level queries and the rollups
    (:mod:`models.funnel.kpis`) both produce it, and :func:`models.funnel.kpis.compute_kpis`
    turns it into KPI values, so every formula is applied once.

    ``cohort`` and ``deals`` hold each group's counts and its ``labels``; the distributions
    are ``(n, {quantile: value})`` in seconds (latency clamped at 0)."""

    cohort: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    latency: dict[tuple, tuple[int, dict[int, float]]] = field(default_factory=dict)
    reasons: dict[tuple, list[tuple[str, int]]] = field(default_factory=dict)
    cohort_flags: dict[tuple, int] = field(default_factory=dict)
    #: the flagged leads of the cohort from the sources that record first touches (those the
    #: touch KPIs read)
    touch_flags: dict[tuple, int] = field(default_factory=dict)
    deals: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    cycle: dict[tuple, tuple[int, dict[int, float]]] = field(default_factory=dict)
    aging: dict[tuple, tuple[int, dict[int, float]]] = field(default_factory=dict)
    deal_flags: dict[tuple, tuple[int, int]] = field(default_factory=dict)


#: The cohort's counts, as both computations name them.
COHORT_COUNTS = (
    "mqls",
    "sqls",
    "won",
    "decided",
    "rejected",
    "touched",
    "within_sla",
    "due",
    "untouched",
    "stalled",
    "deal_leads",
    "opp_dated",
    "reached_sql",
    # the MQLs of the sources that record first touches: the untouched leads' population
    "touch_mqls",
)
#: The deals' counts and sums (cents), as both computations name them.
DEAL_COUNTS = ("won", "lost", "revenue", "with_amount", "open", "open_value", "open_with_amount")


def percentile(values: Sequence[int], q: int) -> float:
    """The ``q``-th percentile of sorted ``values``, interpolated linearly between the two
    nearest ranks exactly as SQL's ``percentile_cont(q / 100)``."""
    return percentile_of(values.__getitem__, len(values), q)


def percentile_of(nth: Callable[[int], int], n: int, q: int) -> float:
    """The same, given ``nth(i)``: the ``i``-th smallest of ``n`` values (0-based), so values
    kept in several sorted parts (the rollups) need not be merged."""
    lo, rem = divmod((n - 1) * q, 100)
    x_lo = nth(lo)
    x_hi = nth(lo + 1) if rem else x_lo
    return x_lo + (x_hi - x_lo) * rem / 100


#: The KPIs whose values are amounts of money.
MONEY_KPIS = tuple(k.name for k in _DEFS if k.unit == "money")
#: The KPIs that add up over their window (MQLs, and those of them untouched or stalled;
#: revenue won): a longer window holds more, so two windows compare per day. The others are
#: a state at the window's end (the open pipeline) or a ratio (the average deal size): they
#: compare as they are.
SUMMED_OVER_WINDOW = frozenset({"mql_volume", "untouched_leads", "stalled_leads", "revenue_won"})


def format_value(name: str, value: float | None, currency: str | None = None) -> str:
    """A KPI value as people read it: 72.5%, 5.2 h, 14.0 d, 1,234.00 (1,234.00 USD with the
    amounts' ``currency``), 812."""
    if value is None:
        return "no data"
    unit = KPIS[name].unit
    if unit == "rate":
        return f"{value * 100:.1f}%"
    if unit == "hours":
        return f"{value:.1f} h"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "money":
        return f"{value:,.2f} {currency}" if currency else f"{value:,.2f}"
    return f"{value:,.0f}"


def format_change(name: str, delta: float, currency: str | None = None) -> str:
    """A KPI's change as people read it beside its value: "+12.5 points" (a rate), "−3.1 h",
    "+2.0 d", "+1,234.00 USD" (an amount, with its ``currency``), "−70" (a count); "no change"
    when there is none."""
    if abs(delta) < 1e-12:
        return "no change"
    sign = "+" if delta > 0 else "−"
    if KPIS[name].unit == "rate":  # (a rate's change is in points, not percent)
        return f"{sign}{abs(delta) * 100:.1f} points"
    return sign + format_value(name, abs(delta), currency)


#: an amount followed by a currency's code, as :func:`format_value` writes it: "1,234.00 USD"
_WITH_CODE = re.compile(r"^(.*\d)\s*([A-Za-z]{3})$")
#: a duration's unit after its number ("5.2 h", "14 days"), which is no currency
DURATION_UNIT = re.compile(r"\s*(?<![a-z])(h|hours?|d|days?)$", re.IGNORECASE)


def split_currency(text: str) -> tuple[str, str | None]:
    """A value as people type it (and as the pages show it), and the currency's code said after
    it: ("1,234.00", "USD") for "1,234.00 USD"; (text, None) when it says none ("5.2 h")."""
    text = text.strip()
    m = _WITH_CODE.match(text)
    if m is None or DURATION_UNIT.search(text):
        return text, None
    return m.group(1), m.group(2).upper()


_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def read_number(v: Any) -> Any:
    """A target as people type it (and as the pages show it, its currency taken off by
    :func:`split_currency`): ``80%`` (a rate, 0.8), ``5.2 h``, ``14 d``, ``1,234.50``. A comma
    is a thousands separator only before groups of three digits; ``12,5`` is refused rather
    than guessed, and so is a word that is no unit (``12 apples``). Not a text: as it is."""
    if not isinstance(v, str):
        return v
    text = v.strip().replace("\u00a0", " ")
    percent = text.endswith("%")
    text = DURATION_UNIT.sub("", text.removesuffix("%").strip()).replace(" ", "")
    if "," in text:
        if not _THOUSANDS.match(text):
            raise ValueError(f"not a number: {v!r} (write decimals with a point, e.g. 12.5)")
        text = text.replace(",", "")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {v!r} (e.g. 80% or 12.5)") from None
    return number / 100 if percent else number
