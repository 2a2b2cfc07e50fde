"""Escalations of overdue items: to the owner's lead once the grace period is over, then to a
manager after the second grace period; and of late leads, to the managers of the cycle's teams
(:mod:`models.cadence.late_leads`)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from models.cadence.directory import Directory
from models.cadence.late_leads import late_lead_messages
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


def escalation_candidates(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> list[tuple[OpenItem, str]]:
    """Owned items overdue past the grace period: ``lead`` level, then ``manager`` level after
    the second grace period (both when a run finds an item already past both). One query."""
    min_grace = min(p.escalate_after_days for p in [policy, *execute_policies(session, policy)])
    items = open_items(
        session,
        ActionItem.owner_id.is_not(None),
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today - timedelta(days=min_grace),
    )
    policies = playbook_policies(session, {i.playbook_id for i in items}, policy)
    out = []
    for item in items:
        assert item.due is not None
        p = policies[item.playbook_id]
        late = (today - item.due).days
        if late >= p.escalate_after_days:
            out.append((item, "lead"))
        if late >= p.escalate_after_days + p.escalate_to_manager_after_days:
            out.append((item, "manager"))
    return out


def plan_escalations(
    session: Session,
    today: date,
    policy: CadencePolicy = CadencePolicy(),
    links: Links | None = None,
) -> PlanResult:
    """Plan escalations of overdue items: to the owner's team lead (the lead who assigned the
    item, else every lead of the team; a manager when the team has none), then to the team's
    manager(s) (any manager when it has none). Then the leads of the SLA breach ledger late
    enough to go to the managers (:func:`late_lead_messages`), each once."""
    links = links or Links.from_settings()
    directory = Directory.load(session)
    candidates = escalation_candidates(session, today, policy)
    result = PlanResult(kind="escalation", candidates=len(candidates))
    messages = []
    for item, level in candidates:
        assert item.due is not None and item.owner_id is not None
        base = f"escalation:{item.id}:{item.due.isoformat()}:{level}"
        owner = directory.people.get(item.owner_id)
        if owner is None:
            result.unreachable.append(base)
            continue
        recipients = (
            directory.leads_for(owner, item.assigned_by_id)
            if level == "lead"
            else directory.managers_for(owner)
        )
        if not recipients:
            result.unreachable.append(base)
            continue
        team = directory.team_names.get(owner.team_id, "no team")
        for r in recipients:
            key = f"{base}:p{r.id}"
            body = (
                f"Hi {r.name},\n\n{owner.name} ({owner.email}, {team}) has an overdue action "
                f"item in cycle {quoted(item.cycle_title, 200)}: {quoted(item.title, 200)}, "
                f"{due_text(item.due, today)}. {state_text(item)}.\nPlease help unblock it, "
                "re-plan it, or drop it with a reason."
                + links.act(*links.actions(item.cycle_id), "The cycle's action items")
            )
            messages.append(
                message_to(
                    directory,
                    r,
                    key=key,
                    kind=NotificationKind.ESCALATION,
                    subject=f"Escalation ({level}): {quoted(item.title, 200)} is overdue "
                    f"({owner.name})",
                    body=body,
                    cycle_id=item.cycle_id,
                    action_item_id=item.id,
                )
            )
    late, found = late_lead_messages(session, policy, directory, links, result.unreachable)
    result.candidates += found
    result.details["late_leads"] = found
    return store_plan(session, messages + late, result)
