"""Each team's own answers: one team of a cycle answers the Identify questions and rates the
hand-off on its own, submits, and nobody outside the team sees its answers until the cycle's
answers are revealed (both teams submitted, or a point person revealed them).

The hiding rule is :func:`team_visible`, and every face reads the answers through
:func:`team_views` (the divergence map, the CSV export, the API, the CLI): a team's rows are
not even loaded for a viewer who may not see them. The audit log records that a team saved or
submitted, never what it answered. What a submission starts (the reveal once both teams are
in) is :mod:`models.phases.own_answers`'s. Like every service: a Session first, never commits.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.alignment_tables import QUESTION, RATING, AnswerReveal, TeamAnswer, TeamSubmission
from models.enums import Phase
from models.errors import Conflict, Forbidden, InvalidInput
from models.playbook import PrivateInput, Question, RatingSpec
from models.rules import counted, is_point_person, require_phase_allows
from models.services import alignment_facts as af
from models.services.access import require_visible
from models.services.checklist import normalize_answer
from models.services.common import as_actor, flush_unique, record_event
from models.services.cycles import permission_facts, spec
from models.tables import Cycle, CycleTeam, Person

MAX_COMMENT = 2000
MAX_ANSWER = 10_000


class OwnAnswers(BaseModel):
    """A team's answers as a person saves them: by question and by rating (an empty answer
    clears one), with an optional comment on each."""

    model_config = ConfigDict(extra="forbid")

    answers: dict[str, str] = Field(default_factory=dict)
    ratings: dict[str, int | None] = Field(default_factory=dict)
    comments: dict[str, str] = Field(default_factory=dict)


def settings_of(cycle: Cycle) -> PrivateInput:
    pi = spec(cycle).private_input
    if pi is None:
        raise InvalidInput(
            f"cycle {cycle.id}'s playbook does not ask each team for its own answers"
        )
    return pi


def asks(cycle: Cycle) -> bool:
    """Whether the cycle's playbook asks each team for its own answers."""
    return spec(cycle).private_input is not None


def questions(cycle: Cycle) -> list[Question]:
    return list(spec(cycle).phase(Phase.IDENTIFY).questions)


def ratings(cycle: Cycle) -> list[RatingSpec]:
    return list(settings_of(cycle).ratings)


def team_of(cycle: Cycle, person: Person | None) -> CycleTeam | None:
    """The cycle's team the person is on (None: on neither)."""
    if person is None:
        return None
    return next((ct for ct in cycle.teams if ct.team_id == person.team_id), None)


def team_visible(revealed: bool, viewer: Person | None, team_id: int) -> bool:
    """The one hiding rule: a team's own answers are seen by its own people, and by everyone
    who sees the cycle once the answers are revealed."""
    return revealed or (viewer is not None and viewer.team_id == team_id)


class TeamView(BaseModel):
    """One team's answers as one viewer may see them (none while hidden)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    team_id: int
    team: str
    mine: bool
    submitted: bool
    submitted_at: datetime | None = None
    visible: bool
    #: (kind, key) -> the row; empty while hidden from the viewer.
    rows: dict[tuple[str, str], TeamAnswer] = Field(default_factory=dict)


def team_views(session: Session, cycle: Cycle, viewer: Person | None) -> list[TeamView]:
    """Every team of the cycle, with its answers where ``viewer`` may see them (``None``: an
    operator or a flow, who sees them once revealed)."""
    require_visible(viewer, cycle, "cycle", cycle.id)
    settings_of(cycle)
    revealed = af.is_revealed(session, cycle)
    done = af.submissions(session, cycle.id)
    seen = [ct.team_id for ct in cycle.teams if team_visible(revealed, viewer, ct.team_id)]
    rows: dict[int, dict[tuple[str, str], TeamAnswer]] = {t: {} for t in seen}
    if seen:
        for row in session.scalars(
            select(TeamAnswer).where(TeamAnswer.cycle_id == cycle.id, TeamAnswer.team_id.in_(seen))
        ):
            rows[row.team_id][(row.kind, row.key)] = row
    return [
        TeamView(
            team_id=ct.team_id,
            team=ct.team.name,
            mine=viewer is not None and viewer.team_id == ct.team_id,
            submitted=ct.team_id in done,
            submitted_at=done[ct.team_id].submitted_at if ct.team_id in done else None,
            visible=ct.team_id in rows,
            rows=rows.get(ct.team_id, {}),
        )
        for ct in cycle.teams
    ]


def _writable_team(session: Session, cycle: Cycle, actor: Person) -> CycleTeam:
    """The actor's team, if it may still change its own answers."""
    require_visible(actor, cycle, "cycle", cycle.id)
    settings_of(cycle)
    require_phase_allows(cycle.phase, "own_answers", cycle.id)
    af.lock_cycle(session, cycle.id)
    ct = team_of(cycle, actor)
    if ct is None:
        names = " and ".join(c.team.name for c in cycle.teams)
        raise Forbidden(f"only people of {names} give their team's own answers")
    if af.is_revealed(session, cycle):
        raise InvalidInput("the teams' answers are revealed: they no longer change")
    if ct.team_id in af.submissions(session, cycle.id):
        raise InvalidInput(f"{ct.team.name} has submitted its answers: they no longer change")
    return ct


def save(session: Session, cycle: Cycle, data: OwnAnswers, actor: Person) -> int:
    """Save some of the actor's team's answers (a draft until the team submits). Returns how
    many answers the team has now."""
    ct = _writable_team(session, cycle, actor)
    qs = {q.key: q for q in questions(cycle)}
    rs = {r.key for r in ratings(cycle)}
    for key in data.answers:
        if key not in qs:
            raise InvalidInput(f"this cycle's Identify has no question {key!r}")
    for key in data.comments:
        if key not in qs and key not in rs:
            raise InvalidInput(f"this cycle's Identify has no question or rating {key!r}")
    for key in data.ratings:
        if key not in rs:
            raise InvalidInput(f"this cycle's Identify has no rating {key!r}")
    existing = {
        (r.kind, r.key): r
        for r in session.scalars(
            select(TeamAnswer).where(
                TeamAnswer.cycle_id == cycle.id, TeamAnswer.team_id == ct.team_id
            )
        )
    }

    def row(kind: str, key: str) -> TeamAnswer:
        found = existing.get((kind, key))
        if found is None:
            found = TeamAnswer(cycle_id=cycle.id, team_id=ct.team_id, kind=kind, key=key)
            session.add(found)
            existing[(kind, key)] = found
        found.updated_by_id = actor.id
        return found

    for key, value in data.answers.items():
        if len(value) > MAX_ANSWER:
            raise InvalidInput(f"an answer has at most {MAX_ANSWER} characters")
        row(QUESTION, key).answer = (
            normalize_answer(qs[key].answer, value) if value.strip() else None
        )
    for key, rating in data.ratings.items():
        if rating is not None and not 1 <= rating <= 5:
            raise InvalidInput("a rating is a whole number from 1 (poor) to 5 (very good)")
        row(RATING, key).rating = rating
    for key, comment in data.comments.items():
        if len(comment) > MAX_COMMENT:
            raise InvalidInput(f"a comment has at most {MAX_COMMENT} characters")
        row(QUESTION if key in qs else RATING, key).comment = comment.strip() or None
    flush_unique(session, Conflict("someone of your team saved at the same moment; save again"))
    record_event(
        session,
        actor=actor,
        verb="team_answers.saved",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"team": ct.team.name},  # never what the team answered: hidden until revealed
    )
    return sum(1 for r in existing.values() if r.answer is not None or r.rating is not None)


def missing(session: Session, cycle: Cycle, team_id: int) -> tuple[list[str], list[str]]:
    """The required questions and the ratings a team has not answered yet (their texts)."""
    rows = {
        (r.kind, r.key): r
        for r in session.scalars(
            select(TeamAnswer).where(TeamAnswer.cycle_id == cycle.id, TeamAnswer.team_id == team_id)
        )
    }
    qs = [
        q.text
        for q in questions(cycle)
        if q.required and getattr(rows.get((QUESTION, q.key)), "answer", None) is None
    ]
    rs = [
        r.text for r in ratings(cycle) if getattr(rows.get((RATING, r.key)), "rating", None) is None
    ]
    return qs, rs


def submit(session: Session, cycle: Cycle, actor: Person) -> TeamSubmission:
    """Submit the actor's team's answers: every required question and every rating answered.
    They no longer change; the other team still does not see them until the reveal."""
    ct = _writable_team(session, cycle, actor)
    qs, rs = missing(session, cycle, ct.team_id)
    if qs or rs:
        parts = [counted(len(qs), "question")] if qs else []
        parts += [counted(len(rs), "rating")] if rs else []
        raise InvalidInput(
            f"answer every question and rating before submitting: {' and '.join(parts)} still open"
        )
    sub = TeamSubmission(cycle_id=cycle.id, team_id=ct.team_id, submitted_by_id=actor.id)
    session.add(sub)
    flush_unique(session, Conflict(f"{ct.team.name} has just submitted its answers"))
    record_event(
        session,
        actor=actor,
        verb="team_answers.submitted",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"team": ct.team.name},
    )
    return sub


def reveal(session: Session, cycle: Cycle, actor: Person | None) -> AnswerReveal:
    """Reveal the cycle's answers to everyone who sees the cycle. ``actor`` None: the system,
    once every team has submitted; a person: one of the cycle's point persons, before that
    (early). Revealing twice changes nothing."""
    require_visible(actor, cycle, "cycle", cycle.id)
    settings_of(cycle)
    af.lock_cycle(session, cycle.id)
    found = af.reveal_of(session, cycle.id)
    if found is not None:
        return found
    done = af.submissions(session, cycle.id)
    early = any(ct.team_id not in done for ct in cycle.teams)
    if actor is not None:
        require_phase_allows(cycle.phase, "own_answers", cycle.id)
        if not is_point_person(as_actor(actor), permission_facts(cycle)):
            raise Forbidden("only the cycle's point persons reveal the teams' answers")
    elif early:
        raise InvalidInput("the answers are revealed early only by a point person")
    row = AnswerReveal(cycle_id=cycle.id, revealed_by_id=actor.id if actor else None, early=early)
    session.add(row)
    flush_unique(session, Conflict("the answers were just revealed"))
    record_event(
        session,
        actor=actor,
        verb="team_answers.revealed",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"early": early},
    )
    return row
