"""Did we see improvements? Every KPI and every action target measured against the cycle's
baseline, what moved and by how much (a two-proportion z-test for rates, a relative change for
the rest), and where the team's survey and the numbers disagree.

Like every service: a Session first, never commits (in Recap the measurement is stored).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.enums import Phase
from models.funnel.baseline import (
    BASELINE,
    RECAP,
    baseline_window,
    measure_window,
    snapshot_baseline,
    snapshots,
    store_snapshot,
    stored_currency,
)
from models.funnel.kpis import (
    KPIS,
    MONEY_KPIS,
    SUMMED_OVER_WINDOW,
    KpiValue,
    compute_kpis,
    format_change,
    format_value,
)
from models.funnel.numbers import imported_before, source_states
from models.funnel.tables import CycleKpiSnapshot
from models.funnel.targets import list_targets
from models.services.agreements import cadence_days_in_force, sla_hours_in_force
from models.services.cycles import spec
from models.services.recap import summarize_survey
from models.tables import Cycle

#: A median, count or amount "moved" when it changed by at least this share of the baseline.
RELATIVE_MOVE = 0.10
#: A rate "moved" when the two-proportion z-test says so at 95% (|z| >= 1.96).
Z_95 = 1.96
#: Fewest values on each side for a median to be compared at all.
MIN_MEDIAN_SAMPLE = 5

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
    change_pct: float | None  # relative change (of what adds up over a window: per day)
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
    #: the sources whose newest import is before the end of the measured days: what happened
    #: in them since is not in the numbers (a sentence each)
    incomplete: list[str] = []
    #: the currency of the amounts (None: none known, or amounts of several)
    currency: str | None = None


def _allowed(
    session: Session, cycle: Cycle, mwin: tuple[date, date], today: date | None
) -> timedelta:
    """How many days before the end of the measured days a source's newest import may be
    before the recap says its numbers are not complete: one once those days are over; while
    they run (they end today), the days of the teams' cadence (a source imported last week is
    not late for a weekly team)."""
    running = mwin[1] >= (today or date.today())
    return timedelta(days=cadence_days_in_force(session, cycle) if running else 1)


def _days(window: tuple[date, date]) -> int:
    return (window[1] - window[0]).days + 1


def _apart(change: KpiChange, before: str | None, after: str | None) -> KpiChange:
    """An amount measured in one currency before and another after is not compared: the
    change of 1,000 EUR to 1,100 USD is no rise of 100 (the exports changed currency). Only an
    amount's snapshot records a currency (``before``)."""
    if change.verdict == "no data" or change.kpi not in MONEY_KPIS:
        return change
    if before is None or after is None or before == after:
        return change
    return change.model_copy(
        update={
            "change": None,
            "change_pct": None,
            "verdict": "no data",
            "how": f"not compared: the amounts were in {before} before and are in {after} now",
        }
    )


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
    - what adds up over a window (:data:`SUMMED_OVER_WINDOW`: MQLs, revenue won): at least
      10% per day of window (the windows may differ in length);
    - the other counts and amounts (the open pipeline at the window's end, the average deal
      size): at least 10%."""
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
        elif name in SUMMED_OVER_WINDOW:
            how = f"per day of window, changed by {RELATIVE_MOVE:.0%} or more"
            rb, rc = b / base_days, c / cur_days
            pct = (rc - rb) / rb if rb else None
            moved = abs(pct) >= RELATIVE_MOVE if pct is not None else rc != rb
        else:
            how = f"changed by {RELATIVE_MOVE:.0%} or more"
            pct = (c - b) / abs(b) if b else None
            moved = abs(pct) >= RELATIVE_MOVE if pct is not None else c != b
        if not moved:
            verdict = "unchanged"
        else:
            up = (c / cur_days > b / base_days) if name in SUMMED_OVER_WINDOW else c > b
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


def _fmt_change(ch: KpiChange, money: str | None = None) -> str:
    if ch.change is None:
        return f"{ch.title}: no data"
    delta = format_change(ch.kpi, ch.change, money)
    return (
        f"{ch.title} {format_value(ch.kpi, ch.baseline, money)} → "
        f"{format_value(ch.kpi, ch.current, money)} "
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
    sla = sla_hours_in_force(session, cycle, pb)  # the agreement in force, else the playbook
    if read_only:
        baseline = snapshots(session, cycle, BASELINE)
    else:
        baseline = snapshot_baseline(session, cycle, as_of=as_of)
    bwin = baseline_window(cycle, pb)
    mwin = measure_window(cycle, today)
    report = compute_kpis(
        session,
        start=mwin[0],
        end=mwin[1],
        sla_hours=sla,
        stall_days=pb.settings.stall_days,
        as_of=as_of,
    )
    current = report.overall()
    money = report.currency  # (the currency of its amounts, when one)
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
            and stored_currency(r.detail) == (money if k in MONEY_KPIS else None)
            for k, r in stored.items()
        )
        if not same:  # a re-run with the same numbers rewrites nothing
            session.execute(
                delete(CycleKpiSnapshot).where(
                    CycleKpiSnapshot.cycle_id == cycle.id, CycleKpiSnapshot.kind == RECAP
                )
            )
            store_snapshot(session, cycle, RECAP, current, mwin, sla, currency=money)

    changes = [
        _apart(
            compare(name, baseline[name], current[name], _days(bwin), _days(mwin)),
            stored_currency(baseline[name].detail),
            money,
        )
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
        moved.append("improved: " + "; ".join(_fmt_change(by_kpi[k], money) for k in improved))
    if worsened:
        moved.append("worsened: " + "; ".join(_fmt_change(by_kpi[k], money) for k in worsened))
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
                f"{KPIS[r.kpi].title} {format_value(r.kpi, r.current, money)} against a target of "
                f"{format_value(r.kpi, r.target, money)}."
            )

    incomplete = [
        f"“{source}” was last imported on {_day(at.date())}: what happened in it from then to "
        f"{_day(mwin[1])} is not in these numbers. Import its export again before judging "
        "the cycle by them."
        for source, at in imported_before(
            source_states(session), mwin[1] - _allowed(session, cycle, mwin, today)
        )
    ]
    summary = [
        f"Baseline {_day(bwin[0])} to {_day(bwin[1])}, measured {_day(mwin[0])} to "
        f"{_day(mwin[1])}: {measured}.",
        *incomplete,
    ]
    summary += [f"Improved: {_fmt_change(by_kpi[k], money)}." for k in improved]
    summary += [f"Worsened: {_fmt_change(by_kpi[k], money)}." for k in worsened]
    for r in targets:
        state = {True: "reached", False: "not reached", None: "no data"}[r.achieved]
        summary.append(
            f"Target of “{r.action_title}”: {KPIS[r.kpi].title} "
            f"{format_value(r.kpi, r.current, money)} (baseline "
            f"{format_value(r.kpi, r.baseline, money)}, target "
            f"{format_value(r.kpi, r.target, money)}): {state}."
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
        incomplete=incomplete,
        currency=money,
    )
