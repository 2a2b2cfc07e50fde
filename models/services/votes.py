"""The vote on the gaps: each participant (a person of one of the cycle's teams) spreads a
small budget of votes over the gaps (the playbook's ``voting``: 3 a person, at most 2 on one
gap by default). While the vote is open a person sees only their own votes and how many
people have voted; once a point person closes it, everyone who sees the cycle sees the totals
and the gaps in vote order (most votes, then the more severe). Nobody ever sees who voted for
what. Like every service: a Session first, never commits.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.alignment_tables import GapVote, VoteClosure
from models.enums import GapDecision
from models.errors import Conflict, Forbidden, InvalidInput
from models.playbook import Voting
from models.rules import counted, is_point_person, phase_allows, require_phase_allows
from models.services import alignment_facts as af
from models.services.access import require_visible
from models.services.common import as_actor, flush_unique, record_event
from models.services.cycles import permission_facts, spec
from models.tables import Cycle, Gap, Person


class Ballot(BaseModel):
    """A person's votes: gap id -> how many (gaps left out: none)."""

    model_config = ConfigDict(extra="forbid")

    votes: dict[int, int] = Field(default_factory=dict)


class BallotGap(BaseModel):
    id: int
    title: str
    severity: str
    decision: str
    mine: int = 0
    #: The total: only once the vote is closed.
    total: int | None = None
    #: Place in the vote's order (1 = first): only once closed.
    rank: int | None = None


class VoteView(BaseModel):
    cycle_id: int
    closed: bool
    closed_at: datetime | None = None
    closed_by: str | None = None
    votes_per_person: int
    max_per_gap: int
    top_gaps_need_actions: int
    #: The viewer may vote (on one of the cycle's teams, the vote open, its phase).
    may_vote: bool
    votes_left: int
    #: How many people have voted (not who, nor for what).
    voters: int
    #: Open: in gap order with the viewer's own votes. Closed: in vote order with the totals.
    gaps: list[BallotGap]


def voting_of(cycle: Cycle) -> Voting:
    return spec(cycle).voting


def _voters(session: Session, cycle_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(GapVote.person_id))).where(GapVote.cycle_id == cycle_id)
        )
        or 0
    )


def _mine(session: Session, cycle_id: int, person: Person | None) -> dict[int, int]:
    if person is None:
        return {}
    return dict(
        session.execute(
            select(GapVote.gap_id, GapVote.votes).where(
                GapVote.cycle_id == cycle_id, GapVote.person_id == person.id
            )
        ).all()
    )


def on_cycle_team(cycle: Cycle, person: Person | None) -> bool:
    return person is not None and any(ct.team_id == person.team_id for ct in cycle.teams)


def view(session: Session, cycle: Cycle, viewer: Person | None) -> VoteView:
    """The vote as ``viewer`` may see it (``None``: an operator, who sees totals once closed)."""
    require_visible(viewer, cycle, "cycle", cycle.id)
    v = voting_of(cycle)
    closure = af.closure_of(session, cycle.id)
    mine = _mine(session, cycle.id, viewer)
    if closure is not None:
        gaps = [
            BallotGap(
                id=g.id,
                title=g.title,
                severity=g.severity.value,
                decision=g.decision.value,
                mine=mine.get(g.id, 0),
                total=total,
                rank=i,
            )
            for i, (g, total) in enumerate(af.ranking(session, cycle.id), start=1)
        ]
    else:
        rows = session.scalars(
            select(Gap)
            .where(Gap.cycle_id == cycle.id, Gap.decision != GapDecision.REJECTED)
            .order_by(Gap.id)
        )
        gaps = [
            BallotGap(
                id=g.id,
                title=g.title,
                severity=g.severity.value,
                decision=g.decision.value,
                mine=mine.get(g.id, 0),
            )
            for g in rows
        ]
    return VoteView(
        cycle_id=cycle.id,
        closed=closure is not None,
        closed_at=closure.closed_at if closure else None,
        closed_by=closure.closed_by.name if closure and closure.closed_by else None,
        votes_per_person=v.votes_per_person,
        max_per_gap=v.max_per_gap,
        top_gaps_need_actions=v.top_gaps_need_actions,
        may_vote=closure is None
        and on_cycle_team(cycle, viewer)
        and phase_allows(cycle.phase, "vote"),
        votes_left=v.votes_per_person - sum(mine.values()),
        voters=_voters(session, cycle.id),
        gaps=gaps,
    )


def cast(session: Session, cycle: Cycle, ballot: Ballot, actor: Person) -> int:
    """Replace the actor's votes with ``ballot`` (a gap left out: no votes on it). Refused,
    with nothing changed, over the budget, over the cap on one gap, on a gap of another cycle
    or a rejected one, once the vote is closed, or from someone on neither team. Returns the
    votes the actor has left."""
    require_visible(actor, cycle, "cycle", cycle.id)
    require_phase_allows(cycle.phase, "vote", cycle.id)
    af.lock_cycle(session, cycle.id)
    if af.closure_of(session, cycle.id) is not None:
        raise InvalidInput("the vote is closed: votes no longer change")
    if not on_cycle_team(cycle, actor):
        names = " and ".join(ct.team.name for ct in cycle.teams)
        raise Forbidden(f"only people of {names} vote on this cycle's gaps")
    v = voting_of(cycle)
    wanted = {gid: n for gid, n in ballot.votes.items() if n}
    if any(n < 0 for n in wanted.values()):
        raise InvalidInput("votes cannot be negative")
    if any(n > v.max_per_gap for n in wanted.values()):
        raise InvalidInput(f"at most {counted(v.max_per_gap, 'vote')} on one gap")
    total = sum(wanted.values())
    if total > v.votes_per_person:
        raise InvalidInput(
            f"you have {counted(v.votes_per_person, 'vote')} in all; this ballot uses {total}"
        )
    if wanted:
        found = {
            g.id: g
            for g in session.scalars(
                select(Gap).where(Gap.id.in_(list(wanted)), Gap.cycle_id == cycle.id)
            )
        }
        for gid in wanted:
            if gid not in found:
                raise InvalidInput(f"this cycle has no gap with id {gid}")
            if found[gid].decision is GapDecision.REJECTED:
                raise InvalidInput(f"“{found[gid].title}” was rejected: it takes no votes")
    existing = {
        r.gap_id: r
        for r in session.scalars(
            select(GapVote).where(GapVote.cycle_id == cycle.id, GapVote.person_id == actor.id)
        )
    }
    for gid, row in existing.items():
        if gid not in wanted:
            session.delete(row)
    for gid, n in wanted.items():
        row = existing.get(gid)
        if row is None:
            session.add(GapVote(cycle_id=cycle.id, gap_id=gid, person_id=actor.id, votes=n))
        else:
            row.votes = n
    flush_unique(session, Conflict("your votes were just saved elsewhere; vote again"))
    record_event(
        session,
        actor=actor,
        verb="vote.cast",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"votes": total},  # how many, never on which gaps: hidden, and secret after
    )
    return v.votes_per_person - total


def close(session: Session, cycle: Cycle, actor: Person) -> VoteClosure:
    """A point person of the cycle closes the vote: the totals show, votes no longer change."""
    require_visible(actor, cycle, "cycle", cycle.id)
    require_phase_allows(cycle.phase, "vote", cycle.id)
    if not is_point_person(as_actor(actor), permission_facts(cycle)):
        raise Forbidden("only the cycle's point persons close the vote")
    af.lock_cycle(session, cycle.id)
    if af.closure_of(session, cycle.id) is not None:
        raise InvalidInput("the vote is already closed")
    row = VoteClosure(cycle_id=cycle.id, closed_by_id=actor.id)
    session.add(row)
    flush_unique(session, Conflict("the vote was just closed"))
    record_event(
        session,
        actor=actor,
        verb="vote.closed",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"voters": _voters(session, cycle.id)},
    )
    return row
