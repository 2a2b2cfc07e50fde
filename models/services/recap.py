"""Recap: the retrospective, the manager's sign-off, and the team survey."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import date
from statistics import mean
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enums import ActionStatus, GapDecision, Phase, Role
from models.errors import Conflict, Forbidden, InvalidInput
from models.rules import require_manager
from models.schemas import RetrospectiveRecord, SurveyRespond, SurveySummary, SurveyTeamResult
from models.services.access import require_visible
from models.services.common import as_actor, check_version, flush_unique, record_event, snapshot
from models.services.cycles import point_person_ids, spec
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
from models.words import phase_name

RETRO_FIELDS = ["improvements", "growth_areas", "next_time", "summary"]


def survey_min_answers(cycle: Cycle) -> int:
    """The playbook's ``survey_min_answers``: results show from this many answers, go out
    this many at a time, and a team's own average needs this many from it in every batch."""
    return spec(cycle).settings.survey_min_answers


def survey_rule(k: int) -> str:
    """The survey's publication rule, in words, for every face."""
    return (
        f"Results appear once {k} people have answered, and then in batches: each time {k} "
        f"more answers are in, they join the results together, never one at a time. Answers "
        f"still waiting for their batch when the cycle closes are counted but never shown. "
        f"Team averages show only when every batch held none or at least {k} answers from each "
        "team. Comments are shown without names, in alphabetical order."
    )


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
        # carried into the follow-up cycle: finished here, the work goes on there
        "actions_carried": status.get("carried_over", 0),
        "actions_unfinished": len(items)
        - status.get("done", 0)
        - status.get("dropped", 0)
        - status.get("carried_over", 0),
        "actions_late": len(late),
        "late_actions": [i.title for i in late],
        "gaps_total": len(gaps),
        "gaps_by_decision": dict(Counter(g.decision.value for g in gaps)),
        "gaps_by_root_cause": dict(Counter(g.root_cause.value for g in gaps)),
        "unresolved_gaps": unresolved,
        "survey_responses": survey.responses,
        "survey_published": survey.published,
        "survey_mean": survey.mean,
        # what to grow in: gaps nobody resolved, and work still open past its due date (work
        # done late is done: it counts as late, not as a growth area)
        "growth_areas": unresolved
        + [f"still open past its due date: {i.title}" for i in late if not i.status.finished],
    }


def current_facts(session: Session, cycle: Cycle, retro: Retrospective | None) -> dict[str, Any]:
    """The retrospective's facts as they are now while it can still change (in recap, not
    signed off: a draft made when Recap opened would say "0 survey answers" after seven);
    the facts it was signed off (or closed) with afterwards."""
    if retro is None or (cycle.phase is Phase.RECAP and retro.signed_off_at is None):
        return cycle_facts(session, cycle)
    return dict(retro.facts)


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
    ``actor`` None means drafted from the facts (the Recap phase's draft): a draft until a
    point person saves it; only a saved retrospective can be signed off."""
    require_visible(actor, cycle, "cycle", cycle.id)
    if cycle.phase is not Phase.RECAP:
        raise InvalidInput(
            f"the retrospective is recorded in Recap; this cycle is in {phase_name(cycle.phase)}"
        )
    if actor is not None:
        _require_point_person(cycle, actor, "record the retrospective")
    facts = cycle_facts(session, cycle, today)
    retro = get_retrospective(session, cycle)
    before = snapshot(retro, RETRO_FIELDS) if retro else None
    was_draft = retro is None or retro.recorded_by_id is None
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
        verb="retro.drafted"
        if actor is None
        else ("retro.recorded" if was_draft else "retro.revised"),
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
        raise InvalidInput(
            f"a recap is signed off in Recap; this cycle is in {phase_name(cycle.phase)}"
        )
    retro = get_retrospective(session, cycle)
    if retro is None:
        raise InvalidInput(f"cycle {cycle.id} has no retrospective to sign off")
    check_version(retro, expected_version, f"the retrospective of cycle {cycle.id}")
    if retro.recorded_by_id is None:
        raise InvalidInput(
            f"the retrospective of cycle {cycle.id} is still the draft made from the cycle's "
            "facts: a point person reviews and saves it before a manager signs it off"
        )
    if retro.signed_off_at is not None:
        raise InvalidInput(f"the recap of cycle {cycle.id} is already signed off")
    retro.signed_off_by = actor
    retro.signed_off_at = utcnow()
    retro.facts = cycle_facts(session, cycle)  # the numbers as they were signed off
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
    answers: together with who took part when, they would tie an answer to its author."""
    while True:
        candidate = secrets.randbelow(2**31 - 2) + 1  # fits a 32-bit INTEGER on every backend
        if session.get(SurveyResponse, candidate) is None:
            return candidate


def respond(session: Session, cycle: Cycle, data: SurveyRespond, actor: Person) -> SurveyResponse:
    """One answer per person per cycle. An anonymous answer carries no person and no time.

    Nothing about the answer is visible at once: it waits for its batch. When the answers
    waiting reach the playbook's ``survey_min_answers``, they are published together (their
    scores and comments join the results) and the audit log records, in name order, who took
    part in that batch: so reading the results (or the timeline) before and after someone
    answers never tells their answer apart."""
    require_visible(actor, cycle, "cycle", cycle.id)
    if cycle.phase is not Phase.RECAP:
        raise InvalidInput(
            f"the survey is open in Recap; this cycle is in {phase_name(cycle.phase)}"
        )
    if actor.team_id not in {ct.team_id for ct in cycle.teams} and actor.role is not Role.MANAGER:
        raise Forbidden("only members of the cycle's teams answer its survey")
    already = session.scalar(
        select(SurveyParticipation.id).where(
            SurveyParticipation.cycle_id == cycle.id, SurveyParticipation.person_id == actor.id
        )
    )
    if already is not None:
        raise InvalidInput(f"you already answered the survey of cycle {cycle.id}")
    # Answers of one cycle are counted and published one after the other (PostgreSQL: the
    # cycle's row; SQLite takes its one write lock at the first insert below).
    session.execute(select(Cycle.id).where(Cycle.id == cycle.id).with_for_update(key_share=True))
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
    publish_ready(session, cycle)
    return response


def _waiting(cycle: Cycle, model: type[Any]) -> Any:
    return model.cycle_id == cycle.id, model.batch.is_(None)


def publish_ready(session: Session, cycle: Cycle) -> int | None:
    """Publish the answers waiting for their batch if there are enough of them (at least the
    playbook's ``survey_min_answers``); returns the batch number, or None."""
    k = survey_min_answers(cycle)
    waiting = (
        session.scalar(
            select(func.count()).select_from(SurveyResponse).where(*_waiting(cycle, SurveyResponse))
        )
        or 0
    )
    if waiting < k:
        return None
    number = 1 + (
        session.scalar(
            select(func.max(SurveyResponse.batch)).where(SurveyResponse.cycle_id == cycle.id)
        )
        or 0
    )
    people = _waiting_people(session, cycle)
    for model in (SurveyResponse, SurveyParticipation):
        session.execute(update(model).where(*_waiting(cycle, model)).values(batch=number))
    record_event(
        session,
        actor=None,
        verb="survey.published",
        object_type="cycle",
        object_id=cycle.id,
        cycle_id=cycle.id,
        after={"batch": number, "answers": waiting, "people": people},
    )
    session.flush()
    return number


def _waiting_people(session: Session, cycle: Cycle) -> list[str]:
    """Who gave the answers still waiting, in name order."""
    return sorted(
        session.scalars(
            select(Person.name)
            .join(SurveyParticipation, SurveyParticipation.person_id == Person.id)
            .where(*_waiting(cycle, SurveyParticipation))
        ),
        key=str.casefold,
    )


def close_survey(session: Session, cycle: Cycle) -> int:
    """When the cycle closes: the answers still waiting for their batch are never shown; the
    audit log records who took part in them (in name order). Returns how many."""
    people = _waiting_people(session, cycle)
    if people:
        record_event(
            session,
            actor=None,
            verb="survey.closed",
            object_type="cycle",
            object_id=cycle.id,
            cycle_id=cycle.id,
            after={"unpublished": len(people), "people": people},
        )
        session.flush()
    return len(people)


def summarize_survey(session: Session, cycle: Cycle, viewer: Person | None = None) -> SurveySummary:
    """The survey's results as ``viewer`` may see them (``None``: everything, for the
    retrospective's facts and the recap report).

    Only published answers count (:func:`respond`): the mean and the spread of scores once a
    batch is out; the teams' averages only when no team's average ever moved by fewer than
    the playbook's ``survey_min_answers`` (every batch held none or at least that many answers
    from each team). Comments, without names and in alphabetical order: for managers every
    published one; for the others their own team's, when the team averages show (else a
    team's new comments could be told apart). How many answered is always shown: taking part
    is no secret, an answer is."""
    k = survey_min_answers(cycle)
    rows = session.execute(
        select(SurveyResponse, Team.key)
        .join(Team, SurveyResponse.team_id == Team.id)
        .where(SurveyResponse.cycle_id == cycle.id)
    ).all()
    published = [(r, key) for r, key in rows if r.batch is not None]
    cells = Counter((r.batch, key) for r, key in published)
    teams_shown = bool(published) and all(n >= k for n in cells.values())
    groups: dict[str, list[SurveyResponse]] = {}
    for r, key in rows:
        groups.setdefault(key, []).append(r)
    everyone = viewer is None or viewer.role is Role.MANAGER
    comments = [
        r.comment
        for r, _ in published
        if r.comment and (everyone or (teams_shown and viewer.team_id == r.team_id))
    ]
    scores = [r.score for r, _ in published]
    return SurveySummary(
        cycle_id=cycle.id,
        responses=len(rows),
        published=len(published),
        shown=bool(published),
        teams_shown=teams_shown,
        min_answers=k,
        note=survey_rule(k),
        mean=round(mean(scores), 2) if scores else None,
        distribution={n: scores.count(n) for n in range(1, 6)} if scores else {},
        by_team=[
            SurveyTeamResult(
                team=key,
                responses=len(g),
                published=sum(r.batch is not None for r in g),
                mean=round(mean(r.score for r in g if r.batch is not None), 2)
                if teams_shown and any(r.batch is not None for r in g)
                else None,
            )
            for key, g in sorted(groups.items())
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
