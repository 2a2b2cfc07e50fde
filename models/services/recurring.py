"""Recurring gaps: a gap of a cycle that came up before in earlier cycles of the same two
teams (the same question or KPI rule, a copy carried over, or the same area with a title
that reads the same), flagged once it has come up in the playbook's
``settings.recurring_after_cycles`` cycles (3 by default), with its history and who can fix
it: either team, or, when the teams' own fix did not hold or it was put off every time, a
manager or a decision across the teams.

Read only; the history holds only cycles the viewer may see (the same two teams: any of their
people, and managers). Like every service: a Session first, never commits.
"""

from __future__ import annotations

import re
from datetime import date
from difflib import SequenceMatcher
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from models.enums import ActionStatus, GapDecision
from models.services.access import require_visible, visible_cycles
from models.services.cycles import spec
from models.tables import ActionItem, ActionItemGap, Cycle, CycleTeam, Gap, Person

#: Two titles of the same area read the same when this similar (0..1).
SIMILAR = 0.8
DECISION_WORDS = {
    GapDecision.OPEN: "not decided",
    GapDecision.ACCEPTED: "accepted",
    GapDecision.DEFERRED: "deferred",
    GapDecision.REJECTED: "rejected",
}


class Occurrence(BaseModel):
    cycle_id: int
    cycle_title: str
    period_start: date
    gap_id: int
    title: str
    #: What was decided on it then ("accepted", "deferred", ...).
    decision: str
    actions: int = 0
    actions_done: int = 0


class RecurringGap(BaseModel):
    gap_id: int
    title: str
    #: In how many cycles of the two teams it has come up, this one included.
    cycles: int
    #: The earlier times, oldest first.
    history: list[Occurrence]
    #: "team": either team can fix it; "manager": it needs a manager or a cross-team decision.
    needs: Literal["team", "manager"]
    why: str


def _words(title: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", title.lower()))


def _root(gap: Gap, by_id: dict[int, Gap]) -> str:
    """The key a gap stands for: a carried copy stands for the gap it was carried from."""
    seen = set()
    while gap.key.startswith("carried:") and gap.id not in seen:
        seen.add(gap.id)
        ref = gap.key.removeprefix("carried:")
        origin = by_id.get(int(ref)) if ref.isdigit() else None
        if origin is None:
            break
        gap = origin
    return gap.key


def _same(a: Gap, root_a: str, b: Gap, root_b: str) -> bool:
    if root_a == root_b:
        return True
    return (
        a.category is b.category
        and SequenceMatcher(None, _words(a.title), _words(b.title)).ratio() >= SIMILAR
    )


def _needs(history: list[Occurrence]) -> tuple[Literal["team", "manager"], str]:
    if any(h.decision == "accepted" and h.actions and h.actions_done for h in history):
        return "manager", (
            "it came back although an earlier cycle finished work on it: the teams' own fix "
            "did not hold, so a manager or a decision across the teams is needed"
        )
    if all(h.decision in ("deferred", "rejected") for h in history):
        return "manager", "it was put off every time it came up: a manager needs to decide on it"
    return "team", "earlier cycles did not finish work on it: either team can take it on"


def recurring_gaps(session: Session, cycle: Cycle, viewer: Person | None) -> list[RecurringGap]:
    """The cycle's gaps that came up in at least the playbook's number of cycles of the same two
    teams, with their history (``viewer`` None: an operator or a flow)."""
    require_visible(viewer, cycle, "cycle", cycle.id)
    threshold = spec(cycle).settings.recurring_after_cycles
    pair = frozenset(ct.team_id for ct in cycle.teams)
    some_team = next(iter(pair))
    stmt = (
        select(Cycle)
        .options(selectinload(Cycle.teams))
        .where(
            Cycle.id != cycle.id,
            Cycle.period_start <= cycle.period_start,
            Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.team_id == some_team)),
        )
    )
    if viewer is not None:
        stmt = stmt.where(visible_cycles(viewer))
    earlier = [
        c
        for c in session.scalars(stmt)
        if frozenset(ct.team_id for ct in c.teams) == pair
        and (c.period_start, c.id) < (cycle.period_start, cycle.id)
    ]
    if not earlier:
        return []
    ids = [c.id for c in earlier] + [cycle.id]
    gaps = list(session.scalars(select(Gap).where(Gap.cycle_id.in_(ids)).order_by(Gap.id)))
    by_id = {g.id: g for g in gaps}
    counts = {
        gid: (int(total), int(done or 0))
        for gid, total, done in session.execute(
            select(
                ActionItemGap.gap_id,
                func.count(),
                func.sum(case((ActionItem.status == ActionStatus.DONE, 1), else_=0)),
            )
            .join(ActionItem, ActionItem.id == ActionItemGap.action_item_id)
            .where(ActionItemGap.gap_id.in_(list(by_id)))
            .group_by(ActionItemGap.gap_id)
        )
    }
    roots = {g.id: _root(g, by_id) for g in gaps}
    order = sorted(earlier, key=lambda c: (c.period_start, c.id))
    out = []
    for gap in (g for g in gaps if g.cycle_id == cycle.id):
        history = []
        for c in order:
            match = next(
                (
                    g
                    for g in gaps
                    if g.cycle_id == c.id and _same(gap, roots[gap.id], g, roots[g.id])
                ),
                None,
            )
            if match is None:
                continue
            total, done = counts.get(match.id, (0, 0))
            history.append(
                Occurrence(
                    cycle_id=c.id,
                    cycle_title=c.title,
                    period_start=c.period_start,
                    gap_id=match.id,
                    title=match.title,
                    decision=DECISION_WORDS[match.decision],
                    actions=total,
                    actions_done=done,
                )
            )
        if len(history) + 1 >= threshold:
            needs, why = _needs(history)
            out.append(
                RecurringGap(
                    gap_id=gap.id,
                    title=gap.title,
                    cycles=len(history) + 1,
                    history=history,
                    needs=needs,
                    why=why,
                )
            )
    return out
