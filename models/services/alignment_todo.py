"""What a person has to do for each team's own answers and the vote, across their cycles:
their team's answers still to give, and votes still to spread, with where to do it. A read
model for My work (the inbox) and notices; it says what, never another team's answers or
anyone's votes.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Integer, Select, bindparam, exists, func, select
from sqlalchemy.orm import Session

from models.alignment_tables import AnswerReveal, GapVote, TeamSubmission, VoteClosure
from models.enums import GapDecision, Phase
from models.rules import counted, phase_allows
from models.services import playbooks as playbook_service
from models.tables import Cycle, CycleTeam, Gap, Person

#: The phases where a team gives its own answers or votes on the gaps.
PHASES = (Phase.IDENTIFY, Phase.PLAN)


class Todo(BaseModel):
    kind: Literal["own_answers", "vote"]
    cycle_id: int
    cycle_title: str
    #: One sentence for people.
    text: str
    #: The page where it is done.
    href: str
    #: The person's team (own answers), or votes left (vote).
    team: str = ""
    votes_left: int = 0


def todo(session: Session, person: Person) -> list[Todo]:
    """The person's open work on own answers and votes, in the cycles of their team. One
    statement: each cycle of the team in Identify or Plan (with its playbook), whether the team
    submitted, whether the answers are revealed, whether the vote is closed, the person's votes
    so far and whether the cycle has a gap to vote on."""
    if person.team_id is None:
        return []
    rows = session.execute(_todo_stmt(), {"me": person.id, "team": person.team_id}).all()
    team = person.team.name if person.team is not None else "your team"
    out = []
    for c, submitted, revealed, closed, spent, with_gaps in rows:
        pb = playbook_service.spec_of(c.playbook)
        if (
            pb.private_input is not None
            and phase_allows(c.phase, "own_answers")
            and not submitted
            and not revealed
        ):
            out.append(
                Todo(
                    kind="own_answers",
                    cycle_id=c.id,
                    cycle_title=c.title,
                    text=f"Give {team}'s own answers to the Identify questions of “{c.title}”",
                    href=f"/cycles/{c.id}/own-answers",
                    team=team,
                )
            )
        left = pb.voting.votes_per_person - int(spent or 0)
        if with_gaps and not closed and left > 0 and phase_allows(c.phase, "vote"):
            out.append(
                Todo(
                    kind="vote",
                    cycle_id=c.id,
                    cycle_title=c.title,
                    text=f"Vote on the gaps of “{c.title}”: {counted(left, 'vote')} left",
                    href=f"/cycles/{c.id}/vote",
                    votes_left=left,
                )
            )
    return out


@cache
def _todo_stmt() -> Select[Any]:
    """:func:`todo`'s statement, built once (the person and their team are its parameters
    ``me`` and ``team``): it runs on every page, for the menu's count, and building it cost
    more than running it. Statements are immutable: shared safely."""
    person_id = bindparam("me", type_=Integer)
    team_id = bindparam("team", type_=Integer)
    cycle = Cycle.id

    def there(table: Any, *where: Any) -> Any:
        return exists().where(table.cycle_id == cycle, *where).correlate(Cycle)

    used = (
        select(func.coalesce(func.sum(GapVote.votes), 0))
        .where(GapVote.cycle_id == cycle, GapVote.person_id == person_id)
        .correlate(Cycle)
        .scalar_subquery()
    )
    return (
        select(
            Cycle,
            there(TeamSubmission, TeamSubmission.team_id == team_id),
            there(AnswerReveal),
            there(VoteClosure),
            used,
            there(Gap, Gap.decision != GapDecision.REJECTED),
        )
        .where(
            Cycle.phase.in_(PHASES),
            Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.team_id == team_id)),
        )
        .order_by(Cycle.id)
    )
