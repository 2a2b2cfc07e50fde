"""What a person has to do for each team's own answers and the vote, across their cycles:
their team's answers still to give, and votes still to spread, with where to do it. A read
model for My work (the inbox) and notices; it says what, never another team's answers or
anyone's votes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from models.alignment_tables import AnswerReveal, GapVote, TeamSubmission, VoteClosure
from models.enums import GapDecision, Phase
from models.rules import counted, phase_allows
from models.services import playbooks as playbook_service
from models.tables import Cycle, CycleTeam, Gap, Person


class Todo(BaseModel):
    kind: Literal["own_answers", "vote"]
    cycle_id: int
    cycle_title: str
    #: One sentence for people.
    text: str
    #: The page where it is done.
    href: str


def todo(session: Session, person: Person) -> list[Todo]:
    """The person's open work on own answers and votes, in the cycles of their team."""
    cycles = session.scalars(
        select(Cycle)
        .options(selectinload(Cycle.teams))
        .where(
            Cycle.phase.in_([Phase.IDENTIFY, Phase.PLAN]),
            Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.team_id == person.team_id)),
        )
        .order_by(Cycle.id)
    ).all()
    if not cycles:
        return []
    ids = [c.id for c in cycles]
    submitted = set(
        session.scalars(
            select(TeamSubmission.cycle_id).where(
                TeamSubmission.cycle_id.in_(ids), TeamSubmission.team_id == person.team_id
            )
        )
    )
    revealed = set(
        session.scalars(select(AnswerReveal.cycle_id).where(AnswerReveal.cycle_id.in_(ids)))
    )
    closed = set(session.scalars(select(VoteClosure.cycle_id).where(VoteClosure.cycle_id.in_(ids))))
    used = dict(
        session.execute(
            select(GapVote.cycle_id, func.sum(GapVote.votes))
            .where(GapVote.cycle_id.in_(ids), GapVote.person_id == person.id)
            .group_by(GapVote.cycle_id)
        ).all()
    )
    with_gaps = set(
        session.scalars(
            select(Gap.cycle_id).where(Gap.cycle_id.in_(ids), Gap.decision != GapDecision.REJECTED)
        )
    )
    out = []
    for c in cycles:
        pb = playbook_service.spec_of(c.playbook)
        team = next(ct.team.name for ct in c.teams if ct.team_id == person.team_id)
        if (
            pb.private_input is not None
            and phase_allows(c.phase, "own_answers")
            and c.id not in submitted
            and c.id not in revealed
        ):
            out.append(
                Todo(
                    kind="own_answers",
                    cycle_id=c.id,
                    cycle_title=c.title,
                    text=f"Give {team}'s own answers to the Identify questions of “{c.title}”",
                    href=f"/cycles/{c.id}/own-answers",
                )
            )
        left = pb.voting.votes_per_person - int(used.get(c.id) or 0)
        if c.id in with_gaps and c.id not in closed and left > 0 and phase_allows(c.phase, "vote"):
            out.append(
                Todo(
                    kind="vote",
                    cycle_id=c.id,
                    cycle_title=c.title,
                    text=f"Vote on the gaps of “{c.title}”: {counted(left, 'vote')} left",
                    href=f"/cycles/{c.id}/vote",
                )
            )
    return out
