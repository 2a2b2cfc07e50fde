"""Recap due: the system opens Recap for a cycle whose period is over (through the Execute
gate), and tells its point persons that Recap is open, or what still blocks it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.directory import Directory
from models.cadence.links import Links
from models.cadence.planning import PlanResult, chunks, message_to, store_plan
from models.cadence.tables import NotificationKind
from models.enums import FINISHED_STATUSES, Phase
from models.errors import TransitionRefused
from models.phases.dispatch import DispatchStatus, PhaseDispatch, dispatch_key
from models.rules import CycleFacts, gate_blockers
from models.tables import ActionItem, ChecklistItem, Cycle, CycleTeam, Event
from models.words import day, phase_name, question_label


def execute_facts(session: Session, cycle_ids: Sequence[int]) -> dict[int, CycleFacts]:
    """The gate facts of cycles in Execute, gathered for many cycles in three queries."""
    out: dict[int, CycleFacts] = {}
    for chunk in chunks(list(cycle_ids)):
        cycles = session.execute(
            select(Cycle.id, Cycle.phase, Cycle.period_end).where(Cycle.id.in_(chunk))
        ).all()
        pps: dict[int, set[int]] = defaultdict(set)
        for cid, pp in session.execute(
            select(CycleTeam.cycle_id, CycleTeam.point_person_id).where(
                CycleTeam.cycle_id.in_(chunk), CycleTeam.point_person_id.is_not(None)
            )
        ):
            pps[cid].add(pp)
        unanswered: dict[int, list[str]] = defaultdict(list)
        for cid, text in session.execute(
            select(ChecklistItem.cycle_id, ChecklistItem.text)
            .where(
                ChecklistItem.cycle_id.in_(chunk),
                ChecklistItem.phase == Phase.EXECUTE,
                ChecklistItem.required.is_(True),
                ChecklistItem.answer.is_(None),
            )
            .order_by(ChecklistItem.cycle_id, ChecklistItem.position)
        ):
            unanswered[cid].append(f"“{question_label(text)}”")
        unfinished: dict[int, list[str]] = defaultdict(list)
        for cid, title in session.execute(
            select(ActionItem.cycle_id, ActionItem.title)
            .where(ActionItem.cycle_id.in_(chunk), ActionItem.status.not_in(FINISHED_STATUSES))
            .order_by(ActionItem.cycle_id, ActionItem.id)
        ):
            unfinished[cid].append(title)
        for cid, phase, period_end in cycles:
            out[cid] = CycleFacts(
                phase=phase,
                period_end=period_end,
                point_person_ids=frozenset(pps[cid]),
                required_unanswered=tuple(unanswered[cid]),
                unfinished_actions=tuple(unfinished[cid]),
            )
    return out


@dataclass
class RecapDue:
    opened: list[int] = field(default_factory=list)
    blocked: dict[int, list[str]] = field(default_factory=dict)


def open_recaps_due(
    session: Session, today: date, cycle_ids: Sequence[int] | None = None
) -> RecapDue:
    """Open Recap for every cycle in Execute whose period ended before ``today``, when the
    Execute gate allows it (the period is over, so unfinished items no longer block; required
    execute checklist items still do). Done by the system: the audit log records no actor and
    the reason "period ended". Set-based: a few queries and one UPDATE per 900 cycles."""
    stmt = select(Cycle.id).where(Cycle.phase == Phase.EXECUTE, Cycle.period_end < today)
    if cycle_ids is not None:
        stmt = stmt.where(Cycle.id.in_(list(cycle_ids)))
    ids = session.scalars(stmt.order_by(Cycle.id)).all()
    result = RecapDue()
    ready = []
    for cid, f in execute_facts(session, ids).items():
        if f.phase is not Phase.EXECUTE:
            continue
        blockers = gate_blockers(f, today)
        if blockers:
            result.blocked[cid] = blockers
        else:
            ready.append(cid)
    now = utcnow()
    table = Cycle.__table__
    for chunk in chunks(sorted(ready)):
        moved = (
            session.execute(
                update(table)
                .where(table.c.id.in_(chunk), table.c.phase == Phase.EXECUTE)
                .values(
                    phase=Phase.RECAP,
                    phase_changed_at=now,
                    updated_at=now,
                    version=table.c.version + 1,
                )
                .returning(table.c.id)
            )
            .scalars()
            .all()
        )
        result.opened.extend(sorted(moved))
        if moved:
            session.execute(
                insert(Event.__table__),
                [
                    {
                        "at": now,
                        "actor_id": None,
                        "verb": "cycle.advanced",
                        "object_type": "cycle",
                        "object_id": cid,
                        "cycle_id": cid,
                        "before": {"phase": Phase.EXECUTE.value},
                        "after": {
                            "phase": Phase.RECAP.value,
                            "reason": "period ended",
                            "by": "system",
                        },
                    }
                    for cid in sorted(moved)
                ],
            )
            # Each cycle's recap flow is asked for with its move (the phase outbox).
            session.execute(
                insert(PhaseDispatch.__table__),
                [
                    {
                        "key": dispatch_key(cid, Phase.RECAP),
                        "cycle_id": cid,
                        "phase": Phase.RECAP,
                        "today": today,
                        "status": DispatchStatus.PENDING,
                        "attempts": 0,
                        "created_at": now,
                    }
                    for cid in sorted(moved)
                ],
            )
    if result.opened:
        session.expire_all()
    return result


def open_recap_when_period_over(session: Session, cycle: Cycle, today: date) -> Cycle:
    """The system's own transition Execute → Recap for one cycle, once its period is over.
    Refused (nothing changes) when the cycle is not in Execute, its period has not ended, or
    the Execute gate still has blockers."""
    if cycle.phase is not Phase.EXECUTE:
        raise TransitionRefused(f"“{cycle.title}” is in {phase_name(cycle.phase)}, not Execute")
    if today <= cycle.period_end:
        raise TransitionRefused(f"the period of “{cycle.title}” runs to {day(cycle.period_end)}")
    session.flush()
    due = open_recaps_due(session, today, [cycle.id])
    if cycle.id in due.blocked:
        raise TransitionRefused("the cycle cannot leave Execute yet", due.blocked[cycle.id])
    session.refresh(cycle)
    return cycle


def plan_recap_due(
    session: Session, today: date, due: RecapDue, links: Links | None = None
) -> PlanResult:
    """Tell each point person of the cycles concerned: Recap opened, or what still blocks it."""
    links = links or Links.from_settings()
    result = PlanResult(
        kind="recap_due",
        candidates=len(due.opened) + len(due.blocked),
        changed=len(due.opened),
        details={"opened": len(due.opened), "blocked": len(due.blocked)},
    )
    ids = sorted([*due.opened, *due.blocked])
    if not ids:
        return result
    directory = Directory.load(session)
    cycles: dict[int, Any] = {}
    pps: dict[int, list[int]] = defaultdict(list)
    for chunk in chunks(ids):
        for c in session.execute(
            select(Cycle.id, Cycle.title, Cycle.period_end).where(Cycle.id.in_(chunk))
        ):
            cycles[c.id] = c
        for cid, pp in session.execute(
            select(CycleTeam.cycle_id, CycleTeam.point_person_id)
            .where(CycleTeam.cycle_id.in_(chunk), CycleTeam.point_person_id.is_not(None))
            .order_by(CycleTeam.id)
        ):
            pps[cid].append(pp)
    messages = []
    for cid in ids:
        c = cycles[cid]
        opened = cid in due.opened
        base = f"recap-due:{cid}:{c.period_end.isoformat()}:{'opened' if opened else 'blocked'}"
        if opened:
            subject = f"Recap is open: {c.title}"
            text = (
                f"The period of cycle “{c.title}” ended on {day(c.period_end)}, so "
                "aligncycle moved it to Recap. Record the retrospective, run the team survey, "
                "and ask a manager to sign off."
            ) + links.act(*links.recap(cid), "The recap")
        else:
            subject = f"Recap is due but blocked: {c.title}"
            text = (
                f"The period of cycle “{c.title}” ended on {day(c.period_end)}, but it "
                "cannot move to Recap yet: " + "; ".join(due.blocked[cid])
            ) + links.act(*links.cycle(cid), "What is missing")
        targets = [p for p in pps.get(cid, []) if p in directory.people]
        if not targets:
            result.unreachable.append(base)
        for pp in targets:
            person = directory.people[pp]
            key = f"{base}:p{pp}"
            messages.append(
                message_to(
                    directory,
                    person,
                    key=key,
                    kind=NotificationKind.RECAP_DUE,
                    subject=subject,
                    body=f"Hi {person.name},\n\n{text}",
                    cycle_id=cid,
                )
            )
    return store_plan(session, messages, result)
