"""Execute check-ins: confidence flags raised from the facts, and asking each owner for
progress once per cadence period of the cycle."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.directory import Directory
from models.cadence.links import Links
from models.cadence.planning import (
    OpenItem,
    PlanResult,
    chunks,
    due_text,
    message_to,
    open_items,
    store_plan,
)
from models.cadence.policy import (
    CADENCE_DAYS,
    CadencePolicy,
    execute_policies,
    playbook_policies,
)
from models.cadence.tables import NotificationKind
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, Phase
from models.tables import ActionItem, Cycle, Event
from models.words import counted, day, quoted, value_word


def update_confidence(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> int:
    """Raise the confidence flag of unfinished items in Execute from the facts: overdue →
    off_track; due within the reminder window and not started → at_risk. Never lowers a flag
    (people do). Bulk UPDATE + bulk audit events; returns how many items changed."""
    window = max(p.remind_days_before for p in [policy, *execute_policies(session, policy)])
    items = open_items(
        session,
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today + timedelta(days=window),
    )
    policies = playbook_policies(session, {i.playbook_id for i in items}, policy)
    moves: dict[tuple[Confidence, Confidence], list[OpenItem]] = defaultdict(list)
    for item in items:
        assert item.due is not None
        if item.due < today and item.confidence is not Confidence.OFF_TRACK:
            moves[(item.confidence, Confidence.OFF_TRACK)].append(item)
        elif (
            item.due >= today
            and (item.due - today).days <= policies[item.playbook_id].remind_days_before
            and item.status is ActionStatus.OPEN
            and item.confidence is Confidence.ON_TRACK
        ):
            moves[(item.confidence, Confidence.AT_RISK)].append(item)
    changed = 0
    now = utcnow()
    by_id = {i.id: i for group in moves.values() for i in group}
    for (old, new), group in moves.items():
        for chunk in chunks([i.id for i in group]):
            ids = (
                session.execute(
                    update(ActionItem.__table__)
                    .where(
                        ActionItem.__table__.c.id.in_(chunk),
                        ActionItem.__table__.c.confidence == old,
                        ActionItem.__table__.c.status.not_in(FINISHED_STATUSES),
                    )
                    .values(
                        confidence=new, updated_at=now, version=ActionItem.__table__.c.version + 1
                    )
                    .returning(ActionItem.__table__.c.id)
                )
                .scalars()
                .all()
            )
            changed += len(ids)
            events = []
            for aid in ids:
                item = by_id[aid]
                assert item.due is not None
                reason = (
                    f"overdue since {day(item.due)}"
                    if new is Confidence.OFF_TRACK
                    else f"due {day(item.due)} and not started"
                )
                events.append(
                    {
                        "at": now,
                        "actor_id": None,
                        "verb": "action.updated",
                        "object_type": "action_item",
                        "object_id": aid,
                        "cycle_id": item.cycle_id,
                        "before": {"confidence": old.value},
                        "after": {"confidence": new.value, "reason": reason, "by": "system"},
                    }
                )
            if events:
                session.execute(insert(Event.__table__), events)
    if changed:
        session.expire_all()
    return changed


def plan_checkins(
    session: Session,
    today: date,
    policy: CadencePolicy = CadencePolicy(),
    links: Links | None = None,
) -> PlanResult:
    """Ask each owner of unfinished items in Execute for progress, once per cadence period of
    the cycle (daily, weekly, biweekly or monthly: the cadence of the cycle's team pair's
    agreement in force, else the playbook's ``settings.cadence``)."""
    from models.services.agreements import cadences_in_force  # the agreed cadence

    links = links or Links.from_settings()
    directory = Directory.load(session)
    cycles = session.execute(
        select(Cycle.id, Cycle.title, Cycle.period_start, Cycle.playbook_id).where(
            Cycle.phase == Phase.EXECUTE
        )
    ).all()
    policies = playbook_policies(session, {c.playbook_id for c in cycles}, policy)
    # the cadence the cycle's two teams agreed (their agreement in force today), else the
    # playbook's
    cadence = cadences_in_force(
        session, {c.id: policies[c.playbook_id].cadence for c in cycles}, today
    )
    period = {
        c.id: max(0, (today - c.period_start).days) // CADENCE_DAYS[cadence[c.id]] for c in cycles
    }
    titles = {c.id: c.title for c in cycles}
    items = open_items(session, ActionItem.owner_id.is_not(None))
    by_owner: dict[tuple[int, int], list[OpenItem]] = defaultdict(list)
    for item in items:
        assert item.owner_id is not None
        by_owner[(item.cycle_id, item.owner_id)].append(item)
    result = PlanResult(kind="checkin", candidates=len(by_owner))
    messages = []
    for (cycle_id, owner_id), owned in sorted(by_owner.items()):
        key = f"checkin:{cycle_id}:p{owner_id}:n{period[cycle_id]}"
        owner = directory.people.get(owner_id)
        if owner is None:
            result.unreachable.append(key)
            continue
        lines = [
            f"- {quoted(i.title, 200)}: {due_text(i.due, today) if i.due else 'no due date'}; "
            f"{value_word(i.status)}, {value_word(i.confidence)}"
            for i in owned
        ]
        body = (
            f"Hi {owner.name},\n\nCheck-in time for cycle {quoted(titles[cycle_id], 200)}. "
            "How are these going? Record progress, status and confidence for each:\n"
            + "\n".join(lines)
            + links.act(*links.my_work(), "Update them")
        )
        messages.append(
            message_to(
                directory,
                owner,
                key=key,
                kind=NotificationKind.CHECKIN,
                subject=f"Check-in: {counted(len(owned), 'action item')} in "
                f"{quoted(titles[cycle_id], 200)}",
                body=body,
                cycle_id=cycle_id,
            )
        )
    return store_plan(session, messages, result)
