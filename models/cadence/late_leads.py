"""Late leads as escalations, like overdue items: a lead recorded in the SLA breach ledger of a
cycle in Execute (:mod:`models.phases.breaches`, written by the Execute pass) that was late by
at least the playbook's ``escalate_late_leads_after_hours`` goes to the managers of the cycle's
teams (any manager when they have none). Without that setting a lead is escalated when it is as
late as an overdue item is before a manager hears of it (``escalate_after_days`` +
``escalate_to_manager_after_days`` days, :class:`~models.cadence.policy.CadencePolicy`).

Once per breach and manager: the key ``late-lead:<breach>:p<manager>`` is planned once, however
often the ``escalations`` job runs and however the ledger's wait grows. Delivery sends a
manager's escalations of the day on a channel as one message (:mod:`models.cadence.grouped`).
Set-based: three queries whatever the number of breaches (the breaches past the lowest
threshold, the cycles' teams, the playbooks' settings), besides the directory.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.breach_tables import SlaBreach
from models.cadence.directory import Directory
from models.cadence.links import Links
from models.cadence.planning import Planned, message_to
from models.cadence.policy import CadencePolicy, execute_policies, playbook_policies
from models.cadence.tables import NotificationKind
from models.enums import Phase
from models.tables import Cycle, CycleTeam
from models.words import data_word, day, hours, quoted, waited

#: The idempotency key's prefix (the grouped message counts its items by it).
KEY = "late-lead"


def late_lead_messages(
    session: Session,
    policy: CadencePolicy,
    directory: Directory,
    links: Links,
    unreachable: list[str],
) -> tuple[list[Planned], int]:
    """The escalations of late leads, one per breach and manager (``unreachable`` gets the
    breaches nobody can be told about), and how many breaches are late enough."""
    thresholds = [p.late_lead_hours for p in [policy, *execute_policies(session, policy)]]
    rows = session.execute(
        select(SlaBreach, Cycle.id, Cycle.title, Cycle.playbook_id)
        .join(Cycle, Cycle.id == SlaBreach.cycle_id)
        .where(Cycle.phase == Phase.EXECUTE, SlaBreach.late_hours >= min(thresholds))
        .order_by(SlaBreach.cycle_id, SlaBreach.late_hours.desc(), SlaBreach.id)
    ).all()
    if not rows:
        return [], 0
    policies = playbook_policies(session, {r[3] for r in rows}, policy)
    teams: dict[int, list[int]] = defaultdict(list)
    for cid, tid in session.execute(
        select(CycleTeam.cycle_id, CycleTeam.team_id)
        .where(CycleTeam.cycle_id.in_({r[1] for r in rows}))
        .order_by(CycleTeam.id)
    ):
        teams[cid].append(tid)
    messages: list[Planned] = []
    candidates = 0
    for b, cycle_id, title, playbook_id in rows:
        if b.late_hours < policies[playbook_id].late_lead_hours:
            continue
        candidates += 1
        base = f"{KEY}:{b.id}"
        managers = directory.managers_of(teams[cycle_id])
        if not managers:
            unreachable.append(base)
            continue
        where = f"from {data_word(b.channel)}" if b.channel else "with no channel"
        owner = f"its owner is {b.owner}" if b.owner else "it has no owner"
        touched = (
            f"Sales first touched it on {day(b.touched_at)}."
            if b.touched_at is not None
            else "Nobody in sales had touched it when the ledger was last recorded."
        )
        for m in managers:
            key = f"{base}:p{m.id}"
            messages.append(
                message_to(
                    directory,
                    m,
                    key=key,
                    kind=NotificationKind.ESCALATION,
                    subject=f"Late lead: {quoted(b.lead, 100)} waited {waited(b.late_hours)} past "
                    f"the hand-off time ({quoted(title, 100)})",
                    body=(
                        f"Hi {m.name},\n\nIn cycle {quoted(title, 200)}, the lead "
                        f"{quoted(b.lead, 200)} {where} ({owner}) came in on {day(b.mql_at)} "
                        f"and waited {waited(b.waited_hours)} for sales: "
                        f"{waited(b.late_hours)} past the hand-off time of {hours(b.sla_hours)}. "
                        f"{touched}\nPlease make sure "
                        "sales follows up on it, and look at why leads wait."
                        + links.act(
                            f"/cycles/{cycle_id}/late-leads",
                            "cycle's Late leads",
                            "The cycle's late leads",
                        )
                    ),
                    cycle_id=cycle_id,
                )
            )
    return messages, candidates
