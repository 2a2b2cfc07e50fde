"""Identify, looking back: a recurring gap that needs a manager or a decision across the teams
(:mod:`models.services.recurring` finds them) goes to the managers of the cycle's teams, once:
one escalation notice per manager and channel through the cadence's outbox (its natural key
``recurring:<gap>:p<manager>`` is planned once, however often this runs) and one entry in the
cycle's audit log. Called when Identify records its gaps
(:func:`models.phases.identify.raise_gaps`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cadence.directory import Directory
from models.cadence.planning import PlanResult, message_to, store_plan
from models.cadence.tables import NotificationKind
from models.services import recurring
from models.services.common import record_event
from models.tables import Cycle, Event, Gap
from models.words import quoted


def escalate_recurring(session: Session, cycle: Cycle) -> PlanResult:
    """Tell the managers, once, about each of the cycle's recurring gaps that needs them."""
    result = PlanResult(kind="escalation")
    needing = [r for r in recurring.recurring_gaps(session, cycle, None) if r.needs == "manager"]
    result.candidates = len(needing)
    if not needing:
        return result
    directory = Directory.load(session)
    managers = directory.managers_of([ct.team_id for ct in cycle.teams])
    told = set(
        session.scalars(
            select(Event.object_id).where(
                Event.cycle_id == cycle.id,
                Event.verb == "gap.escalated",
                Event.object_id.in_([r.gap_id for r in needing]),
            )
        )
    )
    messages = []
    for r in needing:
        history = "\n".join(
            f"- {h.cycle_title} (from {h.period_start.strftime('%-d %b %Y')}): {h.decision}"
            + (f", {h.actions_done} of {h.actions} action items done" if h.actions else "")
            for h in r.history
        )
        for m in managers:
            key = f"recurring:{r.gap_id}:p{m.id}"
            messages.append(
                message_to(
                    directory,
                    m,
                    key=key,
                    kind=NotificationKind.ESCALATION,
                    subject=f"A gap keeps coming back: {quoted(r.title, 100)} ({r.cycles} cycles)",
                    body=(
                        f"Hi {m.name},\n\nThe gap {quoted(r.title, 200)} came up again in cycle "
                        f"{quoted(cycle.title, 200)}: {r.cycles} cycles of the same two teams "
                        "have had it. "
                        f"It needs you: {r.why}.\n\nEarlier:\n{history}"
                    ),
                    cycle_id=cycle.id,
                )
            )
        if r.gap_id not in told:
            record_event(
                session,
                actor=None,
                verb="gap.escalated",
                obj=session.get(Gap, r.gap_id),
                cycle_id=cycle.id,
                after={"title": r.title, "cycles": r.cycles},
            )
    return store_plan(session, messages, result)
