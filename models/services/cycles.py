"""Cycles: start, read, staff with point persons, and advance through the phases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, selectinload

from models.agreement_tables import Amendment, AmendmentSignoff
from models.base import utcnow
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, GapDecision, Phase, Role
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.playbook import OwnerSpec, PlaybookSpec
from models.rules import (
    CycleFacts,
    check_transition,
    gate_blockers,
    overridable,
    require_point_person_role,
)
from models.schemas import ActionCounts, CycleCreate, Readiness
from models.services import alignment_facts
from models.services import playbooks as playbook_service
from models.services.access import require_visible, visible_cycle
from models.services.common import (
    as_actor,
    check_version,
    get_or_raise,
    person_by_email,
    record_event,
)
from models.services.people import team_by_key
from models.tables import (
    ActionItem,
    ActionItemGap,
    ChecklistItem,
    Cycle,
    CycleTeam,
    Gap,
    Person,
    Retrospective,
)
from models.words import listed, phase_name, question_label, value_word


def get_cycle(session: Session, cycle_id: int) -> Cycle:
    return get_or_raise(session, Cycle, cycle_id, "cycle")


def spec(cycle: Cycle) -> PlaybookSpec:
    return playbook_service.spec_of(cycle.playbook)


def point_person_ids(cycle: Cycle) -> frozenset[int]:
    return frozenset(ct.point_person_id for ct in cycle.teams if ct.point_person_id)


def permission_facts(cycle: Cycle) -> CycleFacts:
    """The facts a permission check needs (who the point persons are), without the queries
    the phase gates need."""
    return CycleFacts(
        phase=cycle.phase, period_end=cycle.period_end, point_person_ids=point_person_ids(cycle)
    )


def owner_for(
    session: Session,
    owner: OwnerSpec,
    cycle_teams: list[CycleTeam],
    holders: dict[tuple[Role, int | None], list[int]] | None = None,
) -> tuple[int | None, int | None]:
    """(person id, team id) of the one person a playbook owner rule points at in a cycle.

    A point person of a named team is that team's point person in the cycle; otherwise the
    rule points at the only active holder of the role in the named team, or (no team named)
    on one of the cycle's teams: nobody outside them owns the cycle's work. The person is None
    when nobody or several people fit, or when the team does not take part in the cycle.
    ``holders`` caches who holds a (role, team), so a playbook's questions cost one query per
    distinct owner rather than one per question."""
    ct = next((c for c in cycle_teams if owner.team and c.team.key == owner.team), None)
    if owner.team and ct is None:
        return None, None
    team_id = ct.team_id if ct else None
    if owner.role is Role.POINT_PERSON and ct is not None and ct.point_person_id:
        return ct.point_person_id, team_id
    holders = {} if holders is None else holders
    if (owner.role, team_id) not in holders:
        stmt = select(Person.id).where(Person.role == owner.role, Person.active.is_(True))
        if team_id is not None:
            stmt = stmt.where(Person.team_id == team_id)
        else:
            stmt = stmt.where(Person.team_id.in_([c.team_id for c in cycle_teams]))
        holders[(owner.role, team_id)] = list(session.scalars(stmt.limit(2)))
    candidates = holders[(owner.role, team_id)]
    return (candidates[0] if len(candidates) == 1 else None), team_id


def start_cycle(
    session: Session, data: CycleCreate, actor: Person, today: date | None = None
) -> Cycle:
    """Start a cycle from a playbook: its teams, point persons and every phase's checklist.
    With ``previous_cycle_id`` (a cycle the actor may see), the follow-up of that cycle (one
    per cycle). What it starts from (carried-over items, the KPI baseline) is
    :func:`models.phases.lifecycle.start_cycle`'s."""
    if actor.role is not Role.POINT_PERSON:
        raise Forbidden(f"only point persons start cycles (you are a {value_word(actor.role)})")
    today = today or date.today()
    playbook = playbook_service.get_playbook(session, data.playbook)
    pb = playbook_service.spec_of(playbook)
    team_keys = data.teams or pb.teams
    teams = {key: team_by_key(session, key) for key in dict.fromkeys(team_keys)}
    if len(teams) < 2:
        raise InvalidInput("an alignment cycle needs at least two teams")
    for key in pb.teams:
        if key not in teams:
            raise InvalidInput(f"the playbook {pb.name} needs the team {key} in the cycle")
    start = data.period_start or today
    end = data.period_end or start + timedelta(days=pb.settings.cycle_length_days)
    if end < start:
        raise InvalidInput("the end date is before the start date", field="period_end")

    previous = None
    if data.previous_cycle_id is not None:
        previous = visible_cycle(session, actor, data.previous_cycle_id)
        if previous.phase not in (Phase.RECAP, Phase.CLOSED):
            raise InvalidInput(
                f"“{previous.title}” is in {phase_name(previous.phase)}; a follow-up cycle "
                "starts from a cycle in Recap or closed"
            )
        # One follow-up per cycle: a second would get the same open action items carried over.
        follow_up = session.scalar(
            select(Cycle.id)
            .where(Cycle.previous_cycle_id == previous.id)
            .order_by(Cycle.id)
            .limit(1)
        )
        if follow_up is not None:
            raise Conflict(
                f"cycle {previous.id} already has a follow-up: cycle {follow_up}, where its open "
                "action items are carried over"
            )
        # Claim the previous cycle (its version moves): a second follow-up started at the same
        # moment (a form sent twice) then fails on it with a Conflict instead of duplicating.
        previous.updated_at = utcnow()

    # Point persons: the starter for their own team, plus any named (one per team).
    chosen: dict[int, Person] = {}
    if actor.team_id not in {t.id for t in teams.values()}:
        raise Forbidden(
            f"you start cycles your own team takes part in; {actor.team.name} is not one of "
            f"this cycle's teams"
        )
    chosen[actor.team_id] = actor
    for email in data.point_persons:
        person = person_by_email(session, email)
        if person.team_id not in {t.id for t in teams.values()}:
            raise InvalidInput(f"{person.email} is not on a team of this cycle")
        require_point_person_role(person)
        current = chosen.get(person.team_id)
        if current is not None and current.id not in (person.id, actor.id):
            raise InvalidInput(f"two point persons named for team {person.team.key!r}")
        chosen[person.team_id] = person
    if not chosen:
        raise InvalidInput("a cycle needs a point person on at least one of its teams")

    cycle = Cycle(
        playbook=playbook,
        title=data.title,
        period_start=start,
        period_end=end,
        phase=Phase.IDENTIFY,
        created_by_id=actor.id,
        previous_cycle_id=previous.id if previous else None,
    )
    cycle.teams = [
        CycleTeam(team=t, point_person_id=chosen[t.id].id if t.id in chosen else None)
        for t in teams.values()
    ]
    session.add(cycle)
    session.flush()

    holders: dict[tuple[Role, int | None], list[int]] = {}
    for phase, position, q in pb.questions():
        # Unowned questions belong to the cycle's point persons.
        owner_id, owner_team_id = (
            owner_for(session, q.owner, cycle.teams, holders) if q.owner else (None, None)
        )
        owner_role = q.owner.role if q.owner else Role.POINT_PERSON
        session.add(
            ChecklistItem(
                cycle_id=cycle.id,
                phase=phase,
                key=q.key,
                position=position,
                text=q.text,
                help=q.help,
                answer_kind=q.answer,
                required=q.required,
                owner_id=owner_id,
                owner_role=owner_role,
                owner_team_id=owner_team_id,
            )
        )
    record_event(
        session,
        actor=actor,
        verb="cycle.started",
        obj=cycle,
        cycle_id=cycle.id,
        after={
            "title": cycle.title,
            "playbook": f"{playbook.name}@{playbook.version}",
            "period": f"{start.isoformat()}..{end.isoformat()}",
            "teams": list(teams),
            "point_persons": [p.email for p in chosen.values()],
            "previous_cycle_id": cycle.previous_cycle_id,
        },
    )
    return cycle


def assign_point_person(
    session: Session, cycle: Cycle, team_key: str, email: str, actor: Person
) -> CycleTeam:
    """Name a team's point person. Allowed to the cycle's point persons, leads and managers."""
    require_visible(actor, cycle, "cycle", cycle.id)
    pp = point_person_ids(cycle)
    if actor.id not in pp and actor.role not in (Role.LEAD, Role.MANAGER):
        raise Forbidden("only the cycle's point persons, leads and managers name point persons")
    if cycle.phase is Phase.CLOSED:
        raise InvalidInput("the cycle is closed")
    team = team_by_key(session, team_key)
    ct = next((c for c in cycle.teams if c.team_id == team.id), None)
    if ct is None:
        raise InvalidInput(f"team {team.key!r} does not take part in cycle {cycle.id}")
    person = person_by_email(session, email)
    if person.team_id != team.id:
        raise InvalidInput(f"{person.email} is not on team {team.key!r}")
    require_point_person_role(person)
    before = ct.point_person.email if ct.point_person else None
    ct.point_person_id = person.id
    # Unanswered point-person questions of that team now belong to the new point person.
    reowned = 0
    for item in session.scalars(
        select(ChecklistItem).where(
            ChecklistItem.cycle_id == cycle.id,
            ChecklistItem.owner_role == Role.POINT_PERSON,
            ChecklistItem.owner_team_id == team.id,
            ChecklistItem.answer.is_(None),
        )
    ).unique():
        if item.owner_id != person.id:
            item.owner = person
            reowned += 1
    cycle.updated_at = utcnow()
    record_event(
        session,
        actor=actor,
        verb="cycle.point_person_set",
        obj=cycle,
        cycle_id=cycle.id,
        before={"team": team.key, "point_person": before},
        after={"team": team.key, "point_person": person.email, "checklist_items": reowned},
    )
    session.flush()
    session.refresh(ct)
    return ct


def facts(session: Session, cycle: Cycle) -> CycleFacts:
    """Gather what the phase gates need, in a handful of set-based queries."""
    phase = cycle.phase
    unanswered: Sequence[str] = ()
    if phase is not Phase.CLOSED:
        texts = session.scalars(
            select(ChecklistItem.text)
            .where(
                ChecklistItem.cycle_id == cycle.id,
                ChecklistItem.phase == phase,
                ChecklistItem.required.is_(True),
                ChecklistItem.answer.is_(None),
            )
            .order_by(ChecklistItem.position)
        ).all()
        unanswered = [f"“{question_label(t)}”" for t in texts]
    undecided = session.scalars(
        select(Gap.title)
        .where(Gap.cycle_id == cycle.id, Gap.decision == GapDecision.OPEN)
        .order_by(Gap.id)
    ).all()
    planned = (
        select(ActionItem.id)
        .join(ActionItemGap, ActionItemGap.action_item_id == ActionItem.id)
        .where(
            ActionItemGap.gap_id == Gap.id,
            ActionItem.owner_id.is_not(None),
            ActionItem.due_date.is_not(None),
            ActionItem.status != ActionStatus.DROPPED,
        )
        .exists()
    )
    unplanned = session.scalars(
        select(Gap.title)
        .where(Gap.cycle_id == cycle.id, Gap.decision == GapDecision.ACCEPTED, ~planned)
        .order_by(Gap.id)
    ).all()
    unfinished = session.scalars(
        select(ActionItem.title)
        .where(ActionItem.cycle_id == cycle.id, ActionItem.status.not_in(FINISHED_STATUSES))
        .order_by(ActionItem.id)
    ).all()
    retro = session.scalar(select(Retrospective).where(Retrospective.cycle_id == cycle.id))
    pb = spec(cycle)
    vote_open, top_voted = alignment_facts.vote_gate(session, cycle, pb)
    return CycleFacts(
        phase=phase,
        period_end=cycle.period_end,
        point_person_ids=point_person_ids(cycle),
        required_unanswered=tuple(unanswered),
        undecided_gaps=tuple(undecided),
        accepted_gaps_without_plan=tuple(unplanned),
        teams_without_point_person=tuple(
            ct.team.name for ct in cycle.teams if not ct.point_person_id
        ),
        unfinished_actions=tuple(unfinished),
        has_retrospective=retro is not None and retro.recorded_by_id is not None,
        retrospective_drafted=retro is not None and retro.recorded_by_id is None,
        signed_off=retro is not None and retro.signed_off_at is not None,
        signoff_required=pb.settings.manager_signoff_required,
        teams_without_own_answers=alignment_facts.teams_without_own_answers(session, cycle, pb),
        vote_open=vote_open,
        top_voted_without_actions=top_voted,
        amendments_waiting=amendments_waiting(session, cycle) if phase is Phase.RECAP else (),
    )


def amendments_waiting(session: Session, cycle: Cycle) -> tuple[str, ...]:
    """The changes to the agreement proposed in ``cycle`` and neither adopted nor rejected,
    each named with who still has to sign it ("“Reason…” (Mia Point of Marketing still has to
    sign)"): the Recap gate waits for them."""
    rows = list(
        session.scalars(
            select(Amendment)
            .where(Amendment.cycle_id == cycle.id, Amendment.status == "proposed")
            .order_by(Amendment.id)
        )
    )
    if not rows:
        return ()
    signed: dict[int, set[int]] = {a.id: set() for a in rows}
    for aid, team_id in session.execute(
        select(AmendmentSignoff.amendment_id, AmendmentSignoff.team_id).where(
            AmendmentSignoff.amendment_id.in_(list(signed))
        )
    ):
        signed[aid].add(team_id)
    out = []
    for a in rows:
        who = [
            f"{ct.point_person.name} of {ct.team.name}"
            if ct.point_person
            else f"the point person of {ct.team.name}"
            for ct in sorted(cycle.teams, key=lambda ct: ct.team_id)
            if ct.team_id not in signed[a.id]
        ]
        out.append(f"{a.label} ({listed(who)} still {'has' if len(who) == 1 else 'have'} to sign)")
    return tuple(out)


def readiness(session: Session, cycle: Cycle, today: date | None = None) -> Readiness:
    return readiness_of(cycle, facts(session, cycle), today or date.today())


def readiness_of(cycle: Cycle, f: CycleFacts, today: date) -> Readiness:
    """The readiness these facts make (gathered once, by :func:`facts`)."""
    blockers = gate_blockers(f, today)
    return Readiness(
        cycle_id=cycle.id,
        phase=cycle.phase,
        next_phase=cycle.phase.next,
        ready=not blockers,
        blockers=blockers,
        overridable=overridable(f, today),
    )


def advance_cycle(
    session: Session,
    cycle: Cycle,
    actor: Person,
    to: Phase | None = None,
    override_reason: str | None = None,
    expected_version: int | None = None,
    today: date | None = None,
) -> Cycle:
    """Move the cycle to its next phase if the gate allows it (or is overridden with reason)."""
    require_visible(actor, cycle, "cycle", cycle.id)
    today = today or date.today()
    check_version(cycle, expected_version, f"cycle {cycle.id}")
    f = facts(session, cycle)
    target = to or cycle.phase.next or Phase.CLOSED  # a closed cycle: check_transition refuses
    check_transition(as_actor(actor), f, target, today, override_reason)
    overridden = bool(gate_blockers(f, today))
    before = cycle.phase
    cycle.phase = target
    cycle.phase_changed_at = utcnow()
    if target is Phase.CLOSED:
        cycle.closed_at = utcnow()
    after: dict[str, object] = {"phase": target}
    if overridden:
        after["override_reason"] = override_reason
        after["overridden"] = list(f.unfinished_actions)
    record_event(
        session,
        actor=actor,
        verb="cycle.advanced",
        obj=cycle,
        cycle_id=cycle.id,
        before={"phase": before},
        after=after,
    )
    session.flush()
    return cycle


def overdue(today: date) -> Any:
    """An action item is overdue: unfinished past its due date, in a cycle that is not closed
    (nothing is due in a closed cycle: what it left open is left unfinished). A SQL condition
    on ``ActionItem`` joined to its ``Cycle``."""
    return and_(ActionItem.overdue_on(today), Cycle.phase != Phase.CLOSED)


def is_overdue(item: ActionItem, today: date) -> bool:
    """:func:`overdue` of one loaded item (its cycle read from the session: the cycle of a
    page or a list is loaded already, and one query loads those of a list of items that are
    not: ``selectinload(ActionItem.cycle)``)."""
    return item.overdue_on(today) and item.cycle.phase is not Phase.CLOSED


def left_unfinished(item: ActionItem) -> bool:
    """An item its cycle left unfinished: not finished, in a closed cycle (nothing is due or
    at risk there any more; its cycle read as :func:`is_overdue` reads it)."""
    return not item.status.finished and item.cycle.phase is Phase.CLOSED


def risk_is(confidence: Confidence) -> Any:
    """An action item counts as at risk (or off track): unfinished, its owner's last word on it
    that confidence, in a cycle that is not closed (a closed cycle risks nothing any more: its
    unfinished items are left unfinished). A SQL condition on ``ActionItem`` joined to its
    ``Cycle``."""
    return and_(
        ActionItem.status.not_in(FINISHED_STATUSES),
        ActionItem.confidence == confidence,
        Cycle.phase != Phase.CLOSED,
    )


def board_counts(session: Session, ids: list[int], today: date) -> dict[int, ActionCounts]:
    """Progress and risk of the given cycles, in two set-based queries (one per table): action
    items total/done/dropped/carried over/finished/overdue/at risk/off track (risk counts
    unfinished items of cycles not closed only), gaps total/open. Every id is in the result (a
    cycle with neither counts zeros)."""
    out = {i: ActionCounts() for i in ids}
    if not ids:
        return out

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    for row in session.execute(
        select(
            ActionItem.cycle_id,
            func.count(),
            n(ActionItem.status == ActionStatus.DONE),
            n(ActionItem.status == ActionStatus.DROPPED),
            n(ActionItem.status == ActionStatus.CARRIED_OVER),
            n(overdue(today)),
            n(risk_is(Confidence.AT_RISK)),
            n(risk_is(Confidence.OFF_TRACK)),
        )
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(ActionItem.cycle_id.in_(ids))
        .group_by(ActionItem.cycle_id)
    ):
        c = out[row[0]]
        c.actions_total, c.actions_done, c.actions_dropped, c.actions_carried = (
            int(x or 0) for x in row[1:5]
        )
        c.actions_finished = c.actions_done + c.actions_dropped + c.actions_carried
        c.actions_overdue, c.actions_at_risk, c.actions_off_track = (int(x or 0) for x in row[5:])
    for cid, total, undecided in session.execute(
        select(Gap.cycle_id, func.count(), n(Gap.decision == GapDecision.OPEN))
        .where(Gap.cycle_id.in_(ids))
        .group_by(Gap.cycle_id)
    ):
        out[cid].gaps_total, out[cid].gaps_open = int(total or 0), int(undecided or 0)
    return out


def load_cycle_full(session: Session, cycle_id: int) -> Cycle:
    cycle = session.scalar(
        select(Cycle).where(Cycle.id == cycle_id).options(selectinload(Cycle.teams))
    )
    if cycle is None:
        raise NotFound(f"no cycle with id {cycle_id}")
    return cycle
