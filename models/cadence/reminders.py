"""Reminders to action-item owners: an unfinished item due within the policy's window, and
once more when it is overdue."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from models.cadence.directory import Directory
from models.cadence.links import Links
from models.cadence.planning import (
    OpenItem,
    PlanResult,
    due_text,
    message_to,
    open_items,
    state_text,
    store_plan,
)
from models.cadence.policy import CadencePolicy, execute_policies, playbook_policies
from models.cadence.tables import NotificationKind
from models.tables import ActionItem
from models.words import quoted


def reminder_candidates(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> list[tuple[OpenItem, str]]:
    """Unfinished, owned items of cycles in Execute that need a reminder today: ``soon`` (due
    within the policy's window) or ``overdue``. One query."""
    max_window = max(p.remind_days_before for p in [policy, *execute_policies(session, policy)])
    items = open_items(
        session,
        ActionItem.owner_id.is_not(None),
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today + timedelta(days=max_window),
    )
    policies = playbook_policies(session, {i.playbook_id for i in items}, policy)
    out = []
    for item in items:
        assert item.due is not None
        days = (item.due - today).days
        if days < 0:
            out.append((item, "overdue"))
        elif days <= policies[item.playbook_id].remind_days_before:
            out.append((item, "soon"))
    return out


def plan_reminders(
    session: Session,
    today: date,
    policy: CadencePolicy = CadencePolicy(),
    links: Links | None = None,
) -> PlanResult:
    """Plan the day's reminders to action-item owners (due soon, or overdue)."""
    links = links or Links.from_settings()
    directory = Directory.load(session)
    candidates = reminder_candidates(session, today, policy)
    result = PlanResult(kind="reminder", candidates=len(candidates))
    messages = []
    for item, stage in candidates:
        assert item.due is not None and item.owner_id is not None
        owner = directory.people.get(item.owner_id)
        key = f"reminder:{item.id}:{item.due.isoformat()}:{stage}:p{item.owner_id}"
        if owner is None:  # deactivated owner
            result.unreachable.append(key)
            continue
        when = due_text(item.due, today)
        if stage == "soon":
            subject = f"Reminder: {quoted(item.title, 200)} is {when.split(' (')[0]}"
            ask = "If it will slip, say so now (status and confidence) so the other team can plan."
        else:
            subject = f"Overdue: {quoted(item.title, 200)}"
            ask = "Finish it, or update its status and confidence and talk to your lead."
        body = (
            f"Hi {owner.name},\n\nYour action item {quoted(item.title, 200)} in cycle "
            f"{quoted(item.cycle_title, 200)} is {when}. {state_text(item)}.\n{ask}"
            + links.act(*links.my_work(), "Update it")
        )
        messages.append(
            message_to(
                directory,
                owner,
                key=key,
                kind=NotificationKind.REMINDER,
                subject=subject,
                body=body,
                cycle_id=item.cycle_id,
                action_item_id=item.id,
            )
        )
    return store_plan(session, messages, result)
