"""What a cycle takes from the funnel numbers.

- :func:`snapshot_baseline` freezes the KPIs of the cycle's baseline window (the
  ``settings.baseline_days`` before its start) the first time it is called.
- :func:`evaluate_gap_rules` (Identify) checks the playbook's KPI rules and question KPI checks
  against that baseline and records a gap, with its evidence, for every failed check. The gaps
  are ordinary gaps: people accept, defer or reject them. Re-running records nothing twice.
- :func:`set_target` gives an action item a measurable target (KPI, baseline, target, window).
- :func:`measure_recap` (Recap) measures every KPI and every target against the baseline, says
  what moved and by how much, and flags where the team's survey and the numbers disagree.

Like every service: a Session first, never commits.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from models.enums import GapSource, Phase
from models.errors import Forbidden, InvalidInput
from models.funnel.kpis import KPIS, KpiValue, compute_kpis, format_value, kpi_def
from models.funnel.tables import ActionTarget, CycleKpiSnapshot, Deal, Lead
from models.playbook import KpiCheck, PlaybookSpec
from models.rules import can_update_action, require_phase_allows
from models.schemas import GapCreate
from models.services.access import require_visible
from models.services.common import as_actor, check_version, get_or_raise, record_event
from models.services.cycles import permission_facts, spec
from models.services.gaps import add_gap
from models.services.recap import summarize_survey
from models.tables import ActionItem, ChecklistItem, Cycle, Gap, Person

BASELINE = "baseline"
RECAP = "recap"
#: A median, count or amount "moved" when it changed by at least this share of the baseline.
RELATIVE_MOVE = 0.10
#: A rate "moved" when the two-proportion z-test says so at 95% (|z| >= 1.96).
Z_95 = 1.96
#: Fewest values on each side for a median to be compared at all.
MIN_MEDIAN_SAMPLE = 5


# --- windows and snapshots ---------------------------------------------------------------------


def baseline_window(cycle: Cycle, pb: PlaybookSpec | None = None) -> tuple[date, date]:
    """The days before the cycle starts (inclusive), as many as ``settings.baseline_days``."""
    days = (pb or spec(cycle)).settings.effective_baseline_days
    return cycle.period_start - timedelta(days=days), cycle.period_start - timedelta(days=1)


def measure_window(cycle: Cycle, today: date | None = None) -> tuple[date, date]:
    """The cycle's own period, up to today while it still runs."""
    today = today or date.today()
    end = min(cycle.period_end, max(today, cycle.period_start))
    return cycle.period_start, end


def _snapshots(session: Session, cycle: Cycle, kind: str) -> dict[str, CycleKpiSnapshot]:
    rows = session.scalars(
        select(CycleKpiSnapshot).where(
            CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == kind
        )
    )
    return {r.kpi: r for r in rows}


def baseline_values(session: Session, cycle: Cycle) -> dict[str, float | None]:
    """The cycle's frozen baseline, KPI by KPI (empty before it is frozen). Reads only."""
    return {k: s.value for k, s in _snapshots(session, cycle, BASELINE).items()}


def _store_snapshot(
    session: Session,
    cycle: Cycle,
    kind: str,
    values: dict[str, KpiValue],
    window: tuple[date, date],
    sla_hours: int,
) -> dict[str, CycleKpiSnapshot]:
    out = {}
    for name, v in values.items():
        row = CycleKpiSnapshot(
            cycle_id=cycle.id,
            kind=kind,
            kpi=name,
            value=v.value,
            numerator=v.numerator,
            sample_size=v.sample_size,
            window_start=window[0],
            window_end=window[1],
            sla_hours=sla_hours,
            detail=v.detail,
        )
        session.add(row)
        out[name] = row
    session.flush()
    return out


def snapshot_baseline(
    session: Session, cycle: Cycle, *, as_of: datetime | None = None
) -> dict[str, CycleKpiSnapshot]:
    """The KPIs the cycle started from: computed and stored on the first call, then frozen
    (later imports do not move a cycle's baseline). Returns {kpi: snapshot}."""
    existing = _snapshots(session, cycle, BASELINE)
    if existing:
        return existing
    pb = spec(cycle)
    window = baseline_window(cycle, pb)
    report = compute_kpis(
        session,
        start=window[0],
        end=window[1],
        sla_hours=pb.settings.handoff_sla_hours,
        stall_days=pb.settings.stall_days,
        as_of=as_of,
    )
    rows = _store_snapshot(
        session, cycle, BASELINE, report.overall(), window, pb.settings.handoff_sla_hours
    )
    record_event(
        session,
        actor=None,
        verb="kpi.baseline_recorded",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={
            "window": f"{window[0].isoformat()}..{window[1].isoformat()}",
            "mql_volume": rows["mql_volume"].sample_size,
            "sla_hours": pb.settings.handoff_sla_hours,
        },
    )
    return rows


# --- Identify: KPI-driven gaps -----------------------------------------------------------------


def describe_check(check: KpiCheck, snap: CycleKpiSnapshot) -> str:
    """The evidence of a KPI check, in one sentence: the KPI's value over the window, from how
    many records, against the threshold."""
    d = KPIS[check.kpi]
    window = f"{_day(snap.window_start)} to {_day(snap.window_end)}"
    value = format_value(check.kpi, snap.value)
    threshold = format_value(check.kpi, check.threshold)
    sla = f" (hand-off SLA {snap.sla_hours} h)" if check.kpi == "sla_attainment" else ""
    if snap.value is None:
        return f"{d.title}: no data from {window}, so nothing to check against {threshold}."
    head = f"{d.title} was {value} from {window}{sla}, from {snap.sample_size:,} {d.sample}"
    if snap.sample_size < check.min_sample:
        return f"{head}: too few to judge (at least {check.min_sample:,} are needed)."
    side = "under" if check.direction == "below" else "over"
    if check.breached(snap.value, snap.sample_size):
        return f"{head}: {side} the threshold of {threshold}."
    return f"{head}: within the threshold of {threshold}."


def evaluate_gap_rules(
    session: Session, cycle: Cycle, *, as_of: datetime | None = None
) -> list[Gap]:
    """Check the playbook's KPI rules and question KPI checks against the cycle's baseline and
    record a gap (source ``metric``) for each failed one. Returns the gaps of the failed
    checks, already recorded or not. Idempotent: each check has a fixed gap key."""
    pb = spec(cycle)
    checks: list[tuple[str, KpiCheck, dict[str, Any], ChecklistItem | None]] = []
    for rule in pb.kpi_rules:
        gap = {
            "title": rule.title,
            "description": rule.description,
            "category": rule.category,
            "root_cause": rule.root_cause,
            "severity": rule.severity,
        }
        checks.append((f"metric:{rule.key}", rule, gap, None))
    items = {
        (i.phase, i.key): i
        for i in session.scalars(select(ChecklistItem).where(ChecklistItem.cycle_id == cycle.id))
    }
    for phase, _, q in pb.questions():
        if q.kpi is None or q.gap is None:
            continue
        gap = {
            "title": q.gap.title,
            "description": q.text,
            "category": q.gap.category,
            "root_cause": q.gap.root_cause,
            "severity": q.gap.severity,
        }
        # An Identify question's gap has one key whether its answer or its numbers raise it
        # (``checklist:<question>``, as :func:`models.phases.identify.answer` records it).
        key = f"checklist:{q.key}" if phase is Phase.IDENTIFY else f"metric:{phase}.{q.key}"
        checks.append((key, q.kpi, gap, items.get((phase, q.key))))
    if not checks:
        return []
    require_phase_allows(cycle.phase, "kpi_gaps", cycle.id)
    baseline = snapshot_baseline(session, cycle, as_of=as_of)
    found: list[Gap] = []
    for key, check, gap, item in checks:
        snap = baseline[check.kpi]
        evidence = describe_check(check, snap)
        if item is not None and item.answer is None and item.evidence is None:
            item.evidence = evidence  # what the person answering the question sees
        if not check.breached(snap.value, snap.sample_size):
            continue
        row, _created = add_gap(
            session,
            cycle,
            GapCreate(
                **gap,
                evidence=evidence,
                key=key,
                source=GapSource.METRIC,
                source_ref=f"kpi:{check.kpi}",
            ),
            None,
        )
        found.append(row)
    session.flush()
    return found


# --- Plan: measurable targets on action items --------------------------------------------------


def has_funnel_data(session: Session) -> bool:
    """Whether the store holds any shared funnel data: leads, or deals (a store of deals only,
    e.g. an opportunities export, has numbers too)."""
    return bool(
        session.scalar(select(or_(exists().where(Lead.id > 0), exists().where(Deal.id > 0))))
    )


def record_numbers_at_start(session: Session, cycle: Cycle) -> list[Gap]:
    """When a cycle starts on a store that holds shared funnel data: its baseline and the gaps
    the playbook's KPI rules find, recorded with the start, so the gap analysis people see
    (and the Identify gate) holds them from the first page, whichever face started the cycle.
    Without funnel data nothing is recorded (no empty baseline is frozen)."""
    if not has_funnel_data(session):
        return []
    return evaluate_gap_rules(session, cycle)


def record_numbers_after_import(session: Session) -> dict[int, int]:
    """After an import: the KPI gaps of every cycle in Identify, from its baseline (recorded now
    if the cycle started before any data was there; frozen otherwise). {cycle id: new gaps}."""
    out: dict[int, int] = {}
    for cycle in session.scalars(select(Cycle).where(Cycle.phase == Phase.IDENTIFY)).all():
        before = session.scalar(
            select(func.count()).select_from(Gap).where(Gap.cycle_id == cycle.id)
        )
        evaluate_gap_rules(session, cycle)
        session.flush()
        after = session.scalar(
            select(func.count()).select_from(Gap).where(Gap.cycle_id == cycle.id)
        )
        if after != before:
            out[cycle.id] = after - before
    return out


_UNIT = re.compile(r"\s*(h|hours?|d|days?)$", re.IGNORECASE)
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def _number(v: Any) -> Any:
    """A number as people type it (and as the pages show it): ``80%`` (a rate, 0.8), ``5.2 h``,
    ``14 d``, ``1,234.50``. A comma is a thousands separator only before groups of three
    digits; ``12,5`` is refused rather than guessed."""
    if not isinstance(v, str):
        return v
    text = v.strip().replace("\u00a0", " ")
    percent = text.endswith("%")
    text = _UNIT.sub("", text.removesuffix("%").strip()).replace(" ", "")
    if "," in text:
        if not _THOUSANDS.match(text):
            raise ValueError(f"not a number: {v!r} (write decimals with a point, e.g. 12.5)")
        text = text.replace(",", "")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {v!r} (e.g. 80% or 12.5)") from None
    return number / 100 if percent else number


class TargetSet(BaseModel):
    """A measurable target for an action item. Rates as fractions (0.9) or "90%"."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kpi: str
    target: float
    baseline: float | None = None  # default: the cycle's baseline value of the KPI
    window_start: date | None = None  # default: the cycle's period
    window_end: date | None = None
    note: str | None = Field(default=None, max_length=2000)
    expected_version: int | None = None

    @field_validator("target", "baseline", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        return _number(v)

    @field_validator("kpi")
    @classmethod
    def _known(cls, v: str) -> str:
        kpi_def(v)
        return v


class TargetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action_item_id: int
    kpi: str
    baseline: float | None
    target: float
    window_start: date
    window_end: date
    note: str | None
    version: int


def _check_value(kpi: str, what: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"the {what} must be a number of at least 0")
    if KPIS[kpi].unit == "rate" and value > 1:
        raise InvalidInput(
            f"{kpi} is a rate: give the {what} as a fraction (0.9) or a percentage (90%)"
        )


def get_target(session: Session, item: ActionItem) -> ActionTarget | None:
    return session.scalar(select(ActionTarget).where(ActionTarget.action_item_id == item.id))


def set_target(session: Session, item: ActionItem, data: TargetSet, actor: Person) -> ActionTarget:
    """Give an action item its measurable target (or change it): one target per item."""
    cycle = get_or_raise(session, Cycle, item.cycle_id, "cycle")
    require_visible(actor, cycle, "action item", item.id)
    require_phase_allows(cycle.phase, "set_target", cycle.id)
    facts = permission_facts(cycle)
    if not can_update_action(as_actor(actor), item.owner_id, facts, item.counterpart_id):
        raise Forbidden(f"action item {item.id} is not yours to set a target on")
    d = kpi_def(data.kpi)
    _check_value(data.kpi, "target", data.target)
    _check_value(data.kpi, "baseline", data.baseline)
    start = data.window_start or cycle.period_start
    end = data.window_end or cycle.period_end
    if end < start:
        raise InvalidInput(f"the target window ends ({end}) before it starts ({start})")
    baseline = data.baseline
    if baseline is None:
        baseline = snapshot_baseline(session, cycle)[data.kpi].value
    if baseline is not None:
        better = data.target > baseline if d.better == "higher" else data.target < baseline
        if not better:
            way = "above" if d.better == "higher" else "below"
            raise InvalidInput(
                f"a target of {format_value(data.kpi, data.target)} for {d.title} is not an "
                f"improvement: it must be {way} the baseline {format_value(data.kpi, baseline)}"
            )
    row = get_target(session, item)
    fields = ["kpi", "baseline", "target", "window_start", "window_end", "note"]
    before = {f: getattr(row, f) for f in fields} if row else None
    if row is None:
        row = ActionTarget(action_item_id=item.id)
        session.add(row)
    else:
        check_version(row, data.expected_version, f"the target of action item {item.id}")
    row.kpi = data.kpi
    row.baseline = baseline
    row.target = data.target
    row.window_start = start
    row.window_end = end
    row.note = data.note
    row.set_by_id = actor.id
    record_event(
        session,
        actor=actor,
        verb="action.target_set",
        object_type="action_item",
        object_id=item.id,
        cycle_id=cycle.id,
        before=before,
        after={f: getattr(row, f) for f in fields},
    )
    session.flush()
    return row


def list_targets(session: Session, cycle: Cycle) -> list[tuple[ActionTarget, ActionItem]]:
    return list(
        session.execute(
            select(ActionTarget, ActionItem)
            .join(ActionItem, ActionTarget.action_item_id == ActionItem.id)
            .where(ActionItem.cycle_id == cycle.id)
            .order_by(ActionItem.id)
        ).tuples()
    )


# --- Recap: measured change --------------------------------------------------------------------

Verdict = Literal["improved", "worsened", "unchanged", "no data"]


class KpiChange(BaseModel):
    kpi: str
    title: str
    unit: str
    better: str
    baseline: float | None
    baseline_sample: int
    current: float | None
    current_sample: int
    change: float | None  # current - baseline, in the KPI's unit
    change_pct: float | None  # relative change (counts and money: per day of window)
    verdict: Verdict
    how: str  # how "moved" was judged


class TargetResult(BaseModel):
    action_item_id: int
    action_title: str
    kpi: str
    baseline: float | None
    target: float
    current: float | None
    sample_size: int
    window_start: date
    window_end: date
    achieved: bool | None  # None: no data in the window
    progress: float | None  # share of the way from baseline to target (1.0 = reached)


class Sentiment(BaseModel):
    """How the team feels, from the recap survey (1-5). The survey hides its scores until every
    team that answered has enough answers; then the sentiment is "too few answers" too."""

    responses: int
    mean: float | None
    label: Literal["positive", "mixed", "negative", "no answers", "too few answers"]


class RecapMeasurement(BaseModel):
    cycle_id: int
    baseline_window: tuple[date, date]
    measure_window: tuple[date, date]
    kpis: list[KpiChange]
    targets: list[TargetResult]
    sentiment: Sentiment
    measured: Literal["improved", "worsened", "mixed", "no change", "no data"]
    improved: list[str]
    worsened: list[str]
    disagreements: list[str]
    summary: list[str]


def _days(window: tuple[date, date]) -> int:
    return (window[1] - window[0]).days + 1


def _two_proportion_z(x1: float, n1: int, x2: float, n2: int) -> float:
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0
    return (x2 / n2 - x1 / n1) / se


def compare(
    name: str,
    base: KpiValue | CycleKpiSnapshot,
    cur: KpiValue | CycleKpiSnapshot,
    base_days: int,
    cur_days: int,
) -> KpiChange:
    """Whether a KPI moved between two windows, and by how much.

    - rates: the two-proportion z-test at 95% (|z| >= 1.96);
    - medians (hours, days): a change of at least 10%, with 5+ values on each side;
    - counts and money: at least 10% per day of window (the windows may differ in length)."""
    d = KPIS[name]
    b, c = base.value, cur.value
    nb, nc = base.sample_size, cur.sample_size
    change = pct = None
    verdict: Verdict = "no data"
    how = ""
    if b is not None and c is not None:
        change = c - b
        if d.unit == "rate":
            how = "two-proportion z-test, 95%"
            pct = (c - b) / b if b else None
            xb = base.numerator if base.numerator is not None else b * nb
            xc = cur.numerator if cur.numerator is not None else c * nc
            moved = nb > 0 and nc > 0 and abs(_two_proportion_z(xb, nb, xc, nc)) >= Z_95
        elif d.unit in ("hours", "days"):
            how = f"median changed by {RELATIVE_MOVE:.0%} or more"
            pct = (c - b) / b if b else None
            enough = nb >= MIN_MEDIAN_SAMPLE and nc >= MIN_MEDIAN_SAMPLE
            moved = enough and (abs(pct) >= RELATIVE_MOVE if pct is not None else c != b)
            if not enough:
                how += f" (needs {MIN_MEDIAN_SAMPLE}+ values each side)"
        else:
            how = f"per day of window, changed by {RELATIVE_MOVE:.0%} or more"
            rb, rc = b / base_days, c / cur_days
            pct = (rc - rb) / rb if rb else None
            moved = abs(pct) >= RELATIVE_MOVE if pct is not None else rc != rb
        if not moved:
            verdict = "unchanged"
        else:
            up = (c / cur_days > b / base_days) if d.unit in ("count", "money") else c > b
            verdict = "improved" if up == (d.better == "higher") else "worsened"
    return KpiChange(
        kpi=name,
        title=d.title,
        unit=d.unit,
        better=d.better,
        baseline=b,
        baseline_sample=nb,
        current=c,
        current_sample=nc,
        change=change,
        change_pct=pct,
        verdict=verdict,
        how=how,
    )


def _sentiment(mean: float | None, responses: int) -> Sentiment:
    if not responses:
        label = "no answers"
    elif mean is None:
        label = "too few answers"
    elif mean >= 3.5:
        label = "positive"
    elif mean <= 2.5:
        label = "negative"
    else:
        label = "mixed"
    return Sentiment(responses=responses, mean=mean, label=label)  # type: ignore[arg-type]


def _day(d: date) -> str:
    return d.strftime("%-d %b %Y")


def _fmt_change(ch: KpiChange) -> str:
    if ch.change is None:
        return f"{ch.title}: no data"
    if ch.unit == "rate":
        delta = f"{ch.change * 100:+.1f} pts"
    else:
        delta = f"{ch.change:+,.1f}" + {"hours": " h", "days": " d"}.get(ch.unit, "")
    return (
        f"{ch.title} {format_value(ch.kpi, ch.baseline)} → {format_value(ch.kpi, ch.current)} "
        f"({delta})"
    )


def measure_recap(
    session: Session,
    cycle: Cycle,
    *,
    today: date | None = None,
    as_of: datetime | None = None,
    read_only: bool = False,
) -> RecapMeasurement:
    """Every KPI and every action target against the baseline, what moved and by how much,
    and where the team's survey sentiment and the measured change disagree.

    In Recap the measurement is stored (``cycle_kpi_snapshots`` kind ``recap``, replaced by a
    later measurement); in earlier phases it is only computed (progress so far).
    ``read_only`` (a page being read) writes nothing: a baseline not yet frozen is no data."""
    pb = spec(cycle)
    sla = pb.settings.handoff_sla_hours
    if read_only:
        baseline = _snapshots(session, cycle, BASELINE)
    else:
        baseline = snapshot_baseline(session, cycle, as_of=as_of)
    bwin = baseline_window(cycle, pb)
    mwin = measure_window(cycle, today)
    current = compute_kpis(
        session,
        start=mwin[0],
        end=mwin[1],
        sla_hours=sla,
        stall_days=pb.settings.stall_days,
        as_of=as_of,
    ).overall()
    if cycle.phase is Phase.RECAP and not read_only:
        stored = {
            r.kpi: r
            for r in session.scalars(
                select(CycleKpiSnapshot).where(
                    CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == RECAP
                )
            )
        }
        same = set(stored) == set(current) and all(
            (r.value, r.numerator, r.sample_size, r.window_start, r.window_end, r.sla_hours)
            == (current[k].value, current[k].numerator, current[k].sample_size, *mwin, sla)
            for k, r in stored.items()
        )
        if not same:  # a re-run with the same numbers rewrites nothing
            session.execute(
                delete(CycleKpiSnapshot).where(
                    CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == RECAP
                )
            )
            _store_snapshot(session, cycle, RECAP, current, mwin, sla)

    changes = [
        compare(name, baseline[name], current[name], _days(bwin), _days(mwin))
        for name in KPIS
        if name in baseline
    ]

    targets: list[TargetResult] = []
    for t, item in list_targets(session, cycle):
        if (t.window_start, t.window_end) == mwin:
            value = current[t.kpi]
        else:
            value = compute_kpis(
                session,
                start=t.window_start,
                end=min(t.window_end, mwin[1]),
                sla_hours=sla,
                stall_days=pb.settings.stall_days,
                as_of=as_of,
            ).overall()[t.kpi]
        higher = KPIS[t.kpi].better == "higher"
        achieved = progress = None
        if value.value is not None:
            achieved = value.value >= t.target if higher else value.value <= t.target
            if t.baseline is not None and t.target != t.baseline:
                progress = (value.value - t.baseline) / (t.target - t.baseline)
        targets.append(
            TargetResult(
                action_item_id=item.id,
                action_title=item.title,
                kpi=t.kpi,
                baseline=t.baseline,
                target=t.target,
                current=value.value,
                sample_size=value.sample_size,
                window_start=t.window_start,
                window_end=t.window_end,
                achieved=achieved,
                progress=progress,
            )
        )

    improved = [c.kpi for c in changes if c.verdict == "improved"]
    worsened = [c.kpi for c in changes if c.verdict == "worsened"]
    with_data = [c for c in changes if c.verdict != "no data"]
    if not with_data:
        measured = "no data"
    elif len(improved) > len(worsened):
        measured = "improved"
    elif len(worsened) > len(improved):
        measured = "worsened"
    elif improved:
        measured = "mixed"
    else:
        measured = "no change"

    survey = summarize_survey(session, cycle)
    sentiment = _sentiment(survey.mean, survey.responses)
    by_kpi = {c.kpi: c for c in changes}
    moved = []
    if improved:
        moved.append("improved: " + "; ".join(_fmt_change(by_kpi[k]) for k in improved))
    if worsened:
        moved.append("worsened: " + "; ".join(_fmt_change(by_kpi[k]) for k in worsened))
    moved_text = " | ".join(moved) or "nothing moved"
    answers = "answer" if sentiment.responses == 1 else "answers"
    feel = f"survey mean {sentiment.mean} of 5 from {sentiment.responses} {answers}"
    disagreements: list[str] = []
    if sentiment.label == "positive" and measured in ("worsened", "no change", "mixed"):
        disagreements.append(
            f"The team feels it improved ({feel}), but the numbers did not: {measured} "
            f"({moved_text})."
        )
    elif sentiment.label == "negative" and measured == "improved":
        disagreements.append(
            f"The numbers improved ({moved_text}), but the team does not feel it ({feel})."
        )
    for r in targets:
        if sentiment.label == "positive" and r.achieved is False:
            disagreements.append(
                f"The team feels it improved, but the target of “{r.action_title}” was missed: "
                f"{KPIS[r.kpi].title} {format_value(r.kpi, r.current)} against a target of "
                f"{format_value(r.kpi, r.target)}."
            )

    summary = [
        f"Baseline {_day(bwin[0])} to {_day(bwin[1])}, measured {_day(mwin[0])} to "
        f"{_day(mwin[1])}: {measured}.",
    ]
    summary += [f"Improved: {_fmt_change(by_kpi[k])}." for k in improved]
    summary += [f"Worsened: {_fmt_change(by_kpi[k])}." for k in worsened]
    for r in targets:
        state = {True: "reached", False: "not reached", None: "no data"}[r.achieved]
        summary.append(
            f"Target of “{r.action_title}”: {KPIS[r.kpi].title} {format_value(r.kpi, r.current)} "
            f"(baseline {format_value(r.kpi, r.baseline)}, target "
            f"{format_value(r.kpi, r.target)}): {state}."
        )
    summary.append(f"Survey: {sentiment.label}" + (f" ({feel})." if sentiment.mean else "."))
    summary += [f"Feelings and numbers disagree: {d}" for d in disagreements]
    return RecapMeasurement(
        cycle_id=cycle.id,
        baseline_window=bwin,
        measure_window=mwin,
        kpis=changes,
        targets=targets,
        sentiment=sentiment,
        measured=measured,  # type: ignore[arg-type]
        improved=improved,
        worsened=worsened,
        disagreements=disagreements,
        summary=summary,
    )
