"""Recap: the retrospective, the manager's sign-off, and the team survey."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import date
from statistics import mean
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import ActionStatus, GapDecision, Phase, Role
from models.errors import Conflict, Forbidden, InvalidInput
from models.rules import require_manager
from models.schemas import RetrospectiveRecord, SurveyRespond, SurveySummary, SurveyTeamResult
from models.services.access import require_visible
from models.services.common import as_actor, check_version, flush_unique, record_event, snapshot
from models.services.cycles import point_person_ids
from models.tables import (
    ActionItem,
    ActionItemGap,
    Cycle,
    Gap,
    Person,
    Retrospective,
    SurveyParticipation,
    SurveyResponse,
    Team,
)

RETRO_FIELDS = ["improvements", "growth_areas", "next_time", "summary"]

#: Survey scores and comments are shown only when every team that answered has at least this
#: many answers and, if any of its answers are anonymous, at least this many anonymous ones.
#: Otherwise a team's mean, less the scores the audit log records for named answers (or the
#: overall mean less the other teams'), would give an anonymous answer away.
SURVEY_MIN_GROUP = 3


def survey_group_visible(answers: int, anonymous: int) -> bool:
    """Whether the results of a group of answers can be shown without giving one away."""
    return answers >= SURVEY_MIN_GROUP and (anonymous == 0 or anonymous >= SURVEY_MIN_GROUP)


def get_retrospective(session: Session, cycle: Cycle) -> Retrospective | None:
    return session.scalar(select(Retrospective).where(Retrospective.cycle_id == cycle.id))


def cycle_facts(session: Session, cycle: Cycle, today: date | None = None) -> dict[str, Any]:
    """What happened in the cycle, counted from the store: the retrospective's evidence."""
    today = today or date.today()
    items = (
        session.scalars(
            select(ActionItem).where(ActionItem.cycle_id == cycle.id).order_by(ActionItem.id)
        )
        .unique()
        .all()
    )
    gaps = session.scalars(select(Gap).where(Gap.cycle_id == cycle.id).order_by(Gap.id)).all()
    status = Counter(i.status.value for i in items)
    late = [i for i in items if i.was_late(today)]
    survey = summarize_survey(session, cycle)
    # A gap is resolved when it was rejected, or accepted and some work on it got done.
    done_ids = [i.id for i in items if i.status is ActionStatus.DONE]
    done_gaps = set(
        session.scalars(
            select(ActionItemGap.gap_id).where(ActionItemGap.action_item_id.in_(done_ids))
        )
        if done_ids
        else ()
    )
    unresolved = [
        g.title
        for g in gaps
        if g.decision in (GapDecision.DEFERRED, GapDecision.OPEN)
        or (g.decision is GapDecision.ACCEPTED and g.id not in done_gaps)
    ]
    return {
        "actions_total": len(items),
        "actions_done": status.get("done", 0),
        "actions_dropped": status.get("dropped", 0),
        "actions_unfinished": len(items) - status.get("done", 0) - status.get("dropped", 0),
        "actions_late": len(late),
        "late_actions": [i.title for i in late],
        "gaps_total": len(gaps),
        "gaps_by_decision": dict(Counter(g.decision.value for g in gaps)),
        "gaps_by_root_cause": dict(Counter(g.root_cause.value for g in gaps)),
        "unresolved_gaps": unresolved,
        "survey_responses": survey.responses,
        "survey_mean": survey.mean,
        "growth_areas": unresolved + [f"late: {i.title}" for i in late],
    }


def _require_point_person(cycle: Cycle, actor: Person, what: str) -> None:
    if actor.id not in point_person_ids(cycle):
        raise Forbidden(f"only a point person of this cycle can {what}")


def record_retrospective(
    session: Session,
    cycle: Cycle,
    data: RetrospectiveRecord,
    actor: Person | None,
    today: date | None = None,
) -> Retrospective:
    """Record (or revise) the retrospective. A revision clears an earlier sign-off.
    ``actor`` None means drafted by the Recap flow from the facts."""
    require_visible(actor, cycle, "cycle", cycle.id)
    if cycle.phase is not Phase.RECAP:
        raise InvalidInput(
            f"the retrospective is recorded in recap; cycle {cycle.id} is in {cycle.phase}"
        )
    if actor is not None:
        _require_point_person(cycle, actor, "record the retrospective")
    facts = cycle_facts(session, cycle, today)
    retro = get_retrospective(session, cycle)
    before = snapshot(retro, RETRO_FIELDS) if retro else None
    if retro is None:
        retro = Retrospective(cycle_id=cycle.id)
        session.add(retro)
        flush_unique(
            session,
            Conflict(
                f"the retrospective of cycle {cycle.id} was just recorded by someone else; "
                "reload and try again"
            ),
        )
    else:
        check_version(retro, data.expected_version, f"the retrospective of cycle {cycle.id}")
    retro.improvements = list(data.improvements)
    retro.growth_areas = list(data.growth_areas) or list(facts["growth_areas"])
    retro.next_time = list(data.next_time)
    retro.summary = data.summary
    retro.facts = facts
    retro.recorded_by = actor
    retro.recorded_at = utcnow()
    signoff_cleared = retro.signed_off_at is not None
    retro.signed_off_by = None
    retro.signed_off_at = None
    record_event(
        session,
        actor=actor,
        verb="retro.recorded" if before is None else "retro.revised",
        obj=retro,
        object_type="retrospective",
        cycle_id=cycle.id,
        before=before,
        after=snapshot(retro, RETRO_FIELDS)
        | ({"signoff_cleared": True} if signoff_cleared else {}),
    )
    session.flush()
    return retro


def sign_off(
    session: Session, cycle: Cycle, actor: Person, expected_version: int | None = None
) -> Retrospective:
    require_visible(actor, cycle, "cycle", cycle.id)
    require_manager_actor(actor, "sign off a recap")
    if cycle.phase is not Phase.RECAP:
        raise InvalidInput(f"a recap is signed off in recap; cycle {cycle.id} is in {cycle.phase}")
    retro = get_retrospective(session, cycle)
    if retro is None:
        raise InvalidInput(f"cycle {cycle.id} has no retrospective to sign off")
    check_version(retro, expected_version, f"the retrospective of cycle {cycle.id}")
    if retro.signed_off_at is not None:
        raise InvalidInput(f"the recap of cycle {cycle.id} is already signed off")
    retro.signed_off_by = actor
    retro.signed_off_at = utcnow()
    record_event(
        session,
        actor=actor,
        verb="retro.signed_off",
        obj=retro,
        object_type="retrospective",
        cycle_id=cycle.id,
        before={"signed_off_by": None},
        after={"signed_off_by": actor.email},
    )
    session.flush()
    return retro


def require_manager_actor(actor: Person, what: str) -> None:
    require_manager(as_actor(actor), what)


def _unlinkable_id(session: Session) -> int:
    """A random id for a survey response. Sequential ids would give away the order of the
    answers, and the audit log says who answered when: together they would tie an anonymous
    answer to its author."""
    while True:
        candidate = secrets.randbelow(2**31 - 2) + 1  # fits a 32-bit INTEGER on every backend
        if session.get(SurveyResponse, candidate) is None:
            return candidate


def respond(session: Session, cycle: Cycle, data: SurveyRespond, actor: Person) -> SurveyResponse:
    """One answer per person per cycle. Anonymous answers carry no person and no time."""
    require_visible(actor, cycle, "cycle", cycle.id)
    if cycle.phase is not Phase.RECAP:
        raise InvalidInput(f"the survey is open in recap; cycle {cycle.id} is in {cycle.phase}")
    if actor.team_id not in {ct.team_id for ct in cycle.teams} and actor.role is not Role.MANAGER:
        raise Forbidden("only members of the cycle's teams answer its survey")
    already = session.scalar(
        select(SurveyParticipation.id).where(
            SurveyParticipation.cycle_id == cycle.id, SurveyParticipation.person_id == actor.id
        )
    )
    if already is not None:
        raise InvalidInput(f"you already answered the survey of cycle {cycle.id}")
    session.add(SurveyParticipation(cycle_id=cycle.id, person_id=actor.id))
    # A second answer sent at the same time (a double click) loses on the unique key.
    flush_unique(session, InvalidInput(f"you already answered the survey of cycle {cycle.id}"))
    response = SurveyResponse(
        id=_unlinkable_id(session),
        cycle_id=cycle.id,
        team_id=actor.team_id,
        respondent_id=None if data.anonymous else actor.id,
        anonymous=data.anonymous,
        score=data.score,
        comment=data.comment,
    )
    session.add(response)
    session.flush()
    # The audit log records that the person took part; an anonymous answer's content is not
    # linked to them there either.
    record_event(
        session,
        actor=actor,
        verb="survey.answered",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"anonymous": True}
        if data.anonymous
        else {"anonymous": False, "score": data.score, "response_id": response.id},
    )
    return response


def summarize_survey(session: Session, cycle: Cycle, viewer: Person | None = None) -> SurveySummary:
    """The survey's results as ``viewer`` may see them (``None``: everything, for the
    retrospective's facts).

    Scores are for everyone; comments for managers (all teams) or the viewer's own team.
    Nothing is attributable: comments are sorted alphabetically (the order of answering, with
    the audit log, would tie them to people), and scores and comments stay hidden until every
    team that answered is a big enough group (:func:`survey_group_visible`); the counts of
    answers are always shown (the audit log records who took part anyway)."""
    rows = session.execute(
        select(SurveyResponse, Team.key)
        .join(Team, SurveyResponse.team_id == Team.id)
        .where(SurveyResponse.cycle_id == cycle.id)
    ).all()
    groups: dict[str, list[SurveyResponse]] = {}
    for r, key in rows:
        groups.setdefault(key, []).append(r)
    shown = bool(rows) and all(
        survey_group_visible(len(g), sum(r.anonymous for r in g)) for g in groups.values()
    )
    scores = [r.score for r, _ in rows]
    comments = [
        r.comment
        for r, _ in rows
        if shown
        and r.comment
        and (viewer is None or viewer.role is Role.MANAGER or viewer.team_id == r.team_id)
    ]
    note = None
    if rows and not shown:
        note = (
            f"scores and comments are shown once every team has at least {SURVEY_MIN_GROUP} "
            f"answers (and at least {SURVEY_MIN_GROUP} anonymous ones if any are anonymous)"
        )
    return SurveySummary(
        cycle_id=cycle.id,
        responses=len(scores),
        shown=shown,
        note=note,
        mean=round(mean(scores), 2) if shown else None,
        distribution={k: scores.count(k) for k in range(1, 6)} if shown else {},
        by_team=[
            SurveyTeamResult(
                team=k, responses=len(g), mean=round(mean(r.score for r in g), 2) if shown else None
            )
            for k, g in sorted(groups.items())
        ],
        comments=sorted(comments, key=str.casefold),
    )


def survey_count(session: Session, cycle: Cycle) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(SurveyResponse)
            .where(SurveyResponse.cycle_id == cycle.id)
        )
        or 0
    )
