"""The gap analysis: findings of the Identify phase and the decisions on them."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from models.base import utcnow
from models.enums import FINISHED_STATUSES, GapDecision, GapSource
from models.errors import Conflict, Forbidden, InvalidInput
from models.rules import can_decide_gap, counted, require_phase_allows
from models.schemas import GapCreate, GapDecide
from models.services.access import require_visible
from models.services.common import (
    as_actor,
    check_version,
    flush_unique,
    get_or_raise,
    record_event,
    snapshot,
)
from models.services.cycles import permission_facts
from models.tables import ActionItem, ActionItemGap, Cycle, Gap, Person

_VERB = {GapDecision.DEFERRED: "defer", GapDecision.REJECTED: "reject"}


def get_gap(session: Session, gap_id: int) -> Gap:
    return get_or_raise(session, Gap, gap_id, "gap")


def list_gaps(session: Session, cycle: Cycle, decision: GapDecision | None = None) -> list[Gap]:
    stmt = (
        select(Gap)
        .where(Gap.cycle_id == cycle.id)
        .order_by(Gap.id)
        .options(selectinload(Gap.reported_by), selectinload(Gap.decided_by))
    )
    if decision is not None:
        stmt = stmt.where(Gap.decision == decision)
    return list(session.scalars(stmt))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:150] or "gap"


def add_gap(
    session: Session, cycle: Cycle, data: GapCreate, actor: Person | None
) -> tuple[Gap, bool]:
    """Record a gap. Idempotent on its natural key (given, or derived from the title):
    returns (gap, created); an existing gap with the same key is returned unchanged."""
    require_visible(actor, cycle, "cycle", cycle.id)
    require_phase_allows(cycle.phase, "add_gap", cycle.id)
    if data.source is GapSource.PERSON and actor is None:
        raise InvalidInput("a gap reported by a person needs the person")
    key = data.key or f"{data.source}:{_slug(data.title)}"
    existing = session.scalar(select(Gap).where(Gap.cycle_id == cycle.id, Gap.key == key))
    if existing is not None:
        return existing, False
    gap = Gap(
        cycle_id=cycle.id,
        key=key,
        title=data.title,
        description=data.description,
        category=data.category,
        root_cause=data.root_cause,
        severity=data.severity,
        evidence=data.evidence,
        source=data.source,
        source_ref=data.source_ref,
        reported_by_id=actor.id if actor else None,
        decision=GapDecision.OPEN,
    )
    session.add(gap)
    flush_unique(session, Conflict(f"gap {key!r} was just added by someone else; reload"))
    record_event(
        session,
        actor=actor,
        verb="gap.added",
        obj=gap,
        cycle_id=cycle.id,
        after=snapshot(gap, ["title", "category", "root_cause", "severity", "source", "key"]),
    )
    return gap, True


def unfinished_actions(session: Session, gap: Gap) -> int:
    """How many of the action items addressing the gap are neither done nor dropped."""
    return (
        session.scalar(
            select(func.count())
            .select_from(ActionItem)
            .join(ActionItemGap, ActionItemGap.action_item_id == ActionItem.id)
            .where(ActionItemGap.gap_id == gap.id, ActionItem.status.not_in(FINISHED_STATUSES))
        )
        or 0
    )


def decide_gap(session: Session, gap: Gap, data: GapDecide, actor: Person) -> Gap:
    """Accept, defer or reject a gap. A gap with unfinished action items stays accepted until
    they are dropped or done (they would be orphaned work). What accepting one starts (Plan's
    proposals) is :func:`models.phases.plan.decide_gap`'s."""
    cycle = get_or_raise(session, Cycle, gap.cycle_id, "cycle")
    require_visible(actor, cycle, "gap", gap.id)
    require_phase_allows(cycle.phase, "decide_gap", cycle.id)
    if not can_decide_gap(as_actor(actor), permission_facts(cycle)):
        raise Forbidden("only leads, managers and the cycle's point persons decide gaps")
    check_version(gap, data.expected_version, f"gap {gap.id}")
    if data.decision is not GapDecision.ACCEPTED:
        open_items = unfinished_actions(session, gap)
        if open_items:
            raise InvalidInput(
                f"gap {gap.id} has {counted(open_items, 'unfinished action item')}: drop or "
                f"finish {'it' if open_items == 1 else 'them'} (or unlink the gap) first, then "
                f"{_VERB.get(data.decision, 'decide')} the gap"
            )
    fields = ["decision", "decision_reason"]
    before = snapshot(gap, fields)
    gap.decision = data.decision
    gap.decision_reason = data.reason
    gap.decided_by = actor
    gap.decided_at = utcnow()
    record_event(
        session,
        actor=actor,
        verb="gap.decided",
        obj=gap,
        cycle_id=cycle.id,
        before=before,
        after=snapshot(gap, fields),
    )
    session.flush()
    return gap
