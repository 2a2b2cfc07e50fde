"""Identify, each team on its own first: submitting a team's answers reveals the cycle's
answers once every team of the cycle has submitted, and a point person may reveal them
before that. The single-record verbs are :mod:`models.services.team_input`'s; the map the
reveal shows is :mod:`models.services.divergence`'s.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from models.alignment_tables import AnswerReveal, TeamSubmission
from models.services import alignment_facts as af
from models.services import team_input
from models.tables import Cycle, Person


class Submitted(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    submission: TeamSubmission
    #: This submission was the last one: the answers are now shown to everyone.
    revealed: bool = False


def submit(session: Session, cycle: Cycle, actor: Person) -> Submitted:
    """Submit the actor's team's answers; the last team in reveals the cycle's answers."""
    sub = team_input.submit(session, cycle, actor)
    done = af.submissions(session, cycle.id)
    if all(ct.team_id in done for ct in cycle.teams):
        team_input.reveal(session, cycle, None)
        return Submitted(submission=sub, revealed=True)
    return Submitted(submission=sub)


def reveal(session: Session, cycle: Cycle, actor: Person) -> AnswerReveal:
    """A point person reveals the answers now (a team that has not submitted shows as such)."""
    return team_input.reveal(session, cycle, actor)
