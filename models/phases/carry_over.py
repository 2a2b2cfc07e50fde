"""Carry-over: a follow-up cycle takes over its previous cycle's unfinished work, with its
context.

Used when a follow-up cycle starts (:func:`models.phases.lifecycle.start_cycle`) and by the
recap of the previous cycle, which carries what is still open into its follow-up (idempotent
on ``carry:<action id>`` and ``carried:<gap id>``).

What moves, and how:

- An unfinished action item is copied with its owner, counterpart, priority, confidence and
  success measure; its due date (and follow-up date) is kept when it falls in the new period
  and moved into it when it does not (an overdue item is due on the new period's first day).
- The gaps it addressed come along as gaps of the new cycle (``carried:<gap id>``), accepted
  as they were, and the copy addresses them: the new cycle's Plan gate, its recap and every
  face see what the work is for. (Gaps are never linked across cycles: a cycle's gaps, its
  gates and who may see them stay the cycle's own.)
- A gap the previous cycle deferred is carried as an open gap of the new cycle, to be decided
  again there (while the new cycle still decides gaps: Identify or Plan).
- Each move is an audit event (``action.carried_over``: from which cycle and item, to which,
  the owner, the due date before and after; ``gap.carried_over``): what the owner is told.
- The original is then finished in its own cycle: ``carried_over`` (an ``action.updated``
  event from the status it had). The old cycle no longer counts it as unfinished (not
  overdue, in nobody's My work or reminders) and says where it went; its check-ins stay.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import FINISHED_STATUSES, ActionStatus, GapDecision, GapSource
from models.rules import phase_allows
from models.services.common import record_event
from models.tables import ActionItem, Cycle, Gap, Person


def follow_up_cycles(session: Session, cycle: Cycle) -> list[Cycle]:
    return list(
        session.scalars(select(Cycle).where(Cycle.previous_cycle_id == cycle.id).order_by(Cycle.id))
    )


def into_period(cycle: Cycle, day: date | None) -> date | None:
    """``day`` if it falls in the cycle's period, else the nearest day of the period."""
    if day is None:
        return None
    return min(max(day, cycle.period_start), cycle.period_end)


def _carried_gap(
    session: Session, previous: Cycle, cycle: Cycle, gap: Gap, actor: Person | None
) -> Gap:
    """The new cycle's copy of ``gap`` (made once): accepted if it was accepted, open (to be
    decided again) if it was deferred."""
    key = f"carried:{gap.id}"
    found = session.scalar(select(Gap).where(Gap.cycle_id == cycle.id, Gap.key == key))
    if found is not None:
        return found
    accepted = gap.decision is GapDecision.ACCEPTED
    copy = Gap(
        cycle_id=cycle.id,
        key=key,
        title=gap.title,
        description=gap.description,
        category=gap.category,
        root_cause=gap.root_cause,
        severity=gap.severity,
        evidence=gap.evidence,
        source=GapSource.CARRIED,
        source_ref=f"{'accepted' if accepted else 'deferred'} in “{previous.title}”",
        decision=GapDecision.ACCEPTED if accepted else GapDecision.OPEN,
        decision_reason=(
            f"accepted in “{previous.title}”; its unfinished work is carried over"
            if accepted
            else None
        ),
        decided_at=utcnow() if accepted else None,
    )
    session.add(copy)
    record_event(
        session,
        actor=actor,
        verb="gap.carried_over",
        obj=copy,
        object_type="gap",
        cycle_id=cycle.id,
        after={
            "title": copy.title,
            "from_cycle": previous.id,
            "from_gap": gap.id,
            "decision": copy.decision,
        },
    )
    return copy


def _mark_carried(
    session: Session, previous: Cycle, cycle: Cycle, item: ActionItem, actor: Person | None
) -> None:
    """The original is finished in its own cycle: carried over (its check-ins stay with it),
    logged as any status change is (``action.updated``, from its status before)."""
    before = item.status
    item.status = ActionStatus.CARRIED_OVER
    record_event(
        session,
        actor=actor,
        verb="action.updated",
        obj=item,
        object_type="action_item",
        cycle_id=previous.id,
        before={"status": before},
        after={"status": item.status, "reason": f"carried over to “{cycle.title}”"},
    )


def carry_over(session: Session, previous: Cycle, cycle: Cycle, actor: Person | None) -> int:
    """Carry the previous cycle's unfinished action items (with their gaps) and its deferred
    gaps into ``cycle`` (idempotent). Returns how many items were carried now."""
    items = session.scalars(
        select(ActionItem)
        .where(ActionItem.cycle_id == previous.id, ActionItem.status.not_in(FINISHED_STATUSES))
        .order_by(ActionItem.id)
    ).all()
    existing = set(session.scalars(select(ActionItem.key).where(ActionItem.cycle_id == cycle.id)))
    count = 0
    for item in items:
        key = f"carry:{item.id}"
        if key in existing:  # copied before, the original left unfinished: finish it here
            _mark_carried(session, previous, cycle, item, actor)
            continue
        due = into_period(cycle, item.due_date)
        follow_up = into_period(cycle, item.follow_up_date)
        if due is not None and follow_up is not None and follow_up > due:
            follow_up = due
        gaps = [_carried_gap(session, previous, cycle, g, actor) for g in item.gaps]
        copy = ActionItem(
            cycle_id=cycle.id,
            key=key,
            title=item.title,
            description=item.description,
            owner_id=item.owner_id,
            counterpart_id=item.counterpart_id,
            assigned_by_id=item.assigned_by_id,
            priority=item.priority,
            due_date=due,
            follow_up_date=follow_up,
            status=(
                ActionStatus.BLOCKED if item.status is ActionStatus.BLOCKED else ActionStatus.OPEN
            ),
            confidence=item.confidence,
            success_measure=item.success_measure,
            carried_from_id=item.id,
            gaps=gaps,
        )
        session.add(copy)
        after: dict[str, object] = {
            "title": copy.title,
            "from_cycle": previous.id,
            "from_action": item.id,
            "owner": item.owner.email if item.owner else None,
            "due_date": due,
        }
        if due != item.due_date:
            after["due_date_before"] = item.due_date
        if gaps:
            after["gaps"] = [g.title for g in gaps]
        record_event(
            session,
            actor=actor,
            verb="action.carried_over",
            obj=copy,
            object_type="action_item",
            cycle_id=cycle.id,
            after=after,
        )
        _mark_carried(session, previous, cycle, item, actor)
        count += 1
    if phase_allows(cycle.phase, "decide_gap"):  # deferred gaps are decided again there
        for gap in session.scalars(
            select(Gap)
            .where(Gap.cycle_id == previous.id, Gap.decision == GapDecision.DEFERRED)
            .order_by(Gap.id)
        ):
            _carried_gap(session, previous, cycle, gap, actor)
    session.flush()
    return count
