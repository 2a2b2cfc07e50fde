"""What the shared numbers do to cycles: the playbook's KPI rules and question KPI checks,
evaluated over a cycle's baseline, record gaps with their evidence (when a cycle starts on a
store with data, when Identify refreshes, after every import, or when someone runs the checks).
The gaps are ordinary gaps: people accept, defer or reject them; re-running records nothing
twice (each check has a fixed gap key).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import GapSource, Phase
from models.funnel.baseline import has_funnel_data, snapshot_baseline
from models.funnel.kpis import KPIS, format_value
from models.funnel.tables import CycleKpiSnapshot
from models.phases.drift import drift_gap
from models.playbook import KpiCheck
from models.rules import require_phase_allows
from models.schemas import GapCreate
from models.services.agreements import InForce, settings_in_force
from models.services.cycles import spec
from models.services.gaps import add_gap
from models.tables import ChecklistItem, Cycle, Gap


def _day(d: date) -> str:
    return d.strftime("%-d %b %Y")


def describe_check(check: KpiCheck, snap: CycleKpiSnapshot, against: str = "the threshold") -> str:
    """The evidence of a KPI check, in one sentence: the KPI's value over the window, from how
    many records, against the threshold (``against``: what people call it, e.g. "the agreed
    target")."""
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
        return f"{head}: {side} {against} of {threshold}."
    return f"{head}: within {against} of {threshold}."


def in_force(check: KpiCheck, settings: InForce) -> tuple[KpiCheck, str]:
    """The check as the team pair's agreement in force has it: the agreed target of its KPI
    replaces the playbook's threshold (same direction); what people call the threshold."""
    target = settings.agreed_targets.get(check.kpi)
    if target is None or target == check.threshold:
        return check, "the threshold" if target is None else "the agreed target"
    return check.model_copy(update={check.direction: target}), "the agreed target"


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
    if not checks and pb.settings.rejection_drift_above is None:
        return []
    require_phase_allows(cycle.phase, "kpi_gaps", cycle.id)
    baseline = snapshot_baseline(session, cycle, as_of=as_of)
    settings = settings_in_force(session, cycle, as_of.date() if as_of else None, pb)
    found: list[Gap] = []
    for key, playbook_check, gap, item in checks:
        check, against = in_force(playbook_check, settings)
        snap = baseline[check.kpi]
        evidence = describe_check(check, snap, against)
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
    drift = drift_gap(session, cycle, baseline, settings)  # rejection reasons, as marketing's gap
    if drift is not None:
        found.append(drift)
    session.flush()
    return found


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
