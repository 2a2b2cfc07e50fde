"""Read models of the web app and the API: the board, a cycle, My work, the timeline, the recap.

Each view runs a fixed number of set-based queries, whatever the number of rows it shows (no
N+1: ``tests/test_web_queries.py`` counts the statements). Who may see what is decided here too:
managers see every cycle; everyone else sees the cycles their team takes part in. A cycle that
a person may not see is "not found" for them, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, select
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from models.enums import (
    ActionStatus,
    Confidence,
    GapDecision,
    Phase,
)
from models.schemas import BoardRow, ChecklistCounts, CycleCounts, TeamSlot
from models.services import cycles as cycle_service
from models.services import inbox
from models.services import recap as recap_service
from models.services.access import visible_cycles
from models.services.actions import ActionFilters, action_query, load_carried_to
from models.tables import (
    ActionItem,
    CheckIn,
    ChecklistItem,
    Cycle,
    CycleTeam,
    Event,
    Gap,
    Person,
    Playbook,
    Team,
)

#: Survey results of a group (all answers, or one team's) are shown only from this many answers
#: up: with fewer, an anonymous answer could be told apart by who took part.


# --- who sees what --------------------------------------------------------------------------


# --- the board ------------------------------------------------------------------------------


def _slots(session: Session, cycle_ids: list[int]) -> dict[int, list[TeamSlot]]:
    rows = session.execute(
        select(CycleTeam.cycle_id, Team.key, Team.name, Person.name, Person.id)
        .join(Team, CycleTeam.team_id == Team.id)
        .outerjoin(Person, CycleTeam.point_person_id == Person.id)
        .where(CycleTeam.cycle_id.in_(cycle_ids))
        .order_by(CycleTeam.id)
    ).all()
    out: dict[int, list[TeamSlot]] = {}
    for cid, key, name, pp, pp_id in rows:
        out.setdefault(cid, []).append(
            TeamSlot(key=key, name=name, point_person=pp, point_person_id=pp_id)
        )
    return out


def board(
    session: Session,
    viewer: Person | None,
    *,
    phase: Phase | None = None,
    include_closed: bool = True,
    today: date | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> tuple[list[BoardRow], int]:
    """The cycles board, the same for the web, the API and ``cycle list``: every cycle the
    viewer may see (``None``: the operator, every cycle), newest first, with its teams, point
    persons, progress and risk: (page, total)."""
    today = today or date.today()
    where = [visible_cycles(viewer)] if viewer is not None else []
    if phase is not None:
        where.append(Cycle.phase == phase)
    elif not include_closed:
        where.append(Cycle.phase != Phase.CLOSED)
    total = session.scalar(select(func.count()).select_from(Cycle).where(*where)) or 0
    # Columns, not entities: a Cycle row would load its playbook, and with it the playbook's
    # whole JSON body, once per row.
    cycles = session.execute(
        select(
            Cycle.id,
            Cycle.title,
            Cycle.phase,
            Cycle.period_start,
            Cycle.period_end,
            Playbook.name,
            Playbook.version,
        )
        .join(Playbook, Cycle.playbook_id == Playbook.id)
        .where(*where)
        .order_by(Cycle.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    if not cycles:
        return [], total
    ids = [c.id for c in cycles]
    counts = cycle_service.board_counts(session, ids, today)
    slots = _slots(session, ids)
    rows = [
        BoardRow(
            id=c.id,
            title=c.title,
            phase=c.phase,
            period_start=c.period_start,
            period_end=c.period_end,
            playbook=f"{c.name}@{c.version}",
            teams=slots.get(c.id, []),
            **counts[c.id].model_dump(exclude={"progress", "risk"}),
        )
        for c in cycles
    ]
    return rows, total


# --- one cycle ------------------------------------------------------------------------------


def checklist(session: Session, cycle: Cycle) -> list[ChecklistItem]:
    """Every question of the cycle, in phase order, with owners and who answered loaded."""
    rows = (
        session.scalars(
            select(ChecklistItem)
            .where(ChecklistItem.cycle_id == cycle.id)
            .options(joinedload(ChecklistItem.answered_by))
        )
        .unique()
        .all()
    )
    order = {p: i for i, p in enumerate(Phase)}
    return sorted(rows, key=lambda r: (order[r.phase], r.position))


def counts(session: Session, cycle: Cycle, today: date | None = None) -> CycleCounts:
    """One cycle's counts (the board's, plus each phase's checklist, gaps by decision, action
    items by status and the survey's responses), the same for every face."""
    today = today or date.today()
    out = CycleCounts()
    n = func.sum
    # The board's counts and the items by status in one read of the items (and one of the
    # gaps): the same numbers cycle_service.board_counts gives, each table read once.
    by_status: dict[ActionStatus, int] = {}
    for status, total, overdue, at_risk, off_track in session.execute(
        select(
            ActionItem.status,
            func.count(),
            n(case((cycle_service.overdue(today), 1), else_=0)),
            n(case((cycle_service.risk_is(Confidence.AT_RISK), 1), else_=0)),
            n(case((cycle_service.risk_is(Confidence.OFF_TRACK), 1), else_=0)),
        )
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(ActionItem.cycle_id == cycle.id)
        .group_by(ActionItem.status)
    ):
        by_status[status] = total
        out.actions_overdue += int(overdue or 0)
        out.actions_at_risk += int(at_risk or 0)
        out.actions_off_track += int(off_track or 0)
    out.actions_total = sum(by_status.values())
    out.actions_done = by_status.get(ActionStatus.DONE, 0)
    out.actions_dropped = by_status.get(ActionStatus.DROPPED, 0)
    out.actions_carried = by_status.get(ActionStatus.CARRIED_OVER, 0)
    out.actions_finished = out.actions_done + out.actions_dropped + out.actions_carried
    out.actions_by_status = by_status
    out.gaps_by_decision = dict(
        session.execute(
            select(Gap.decision, func.count())
            .where(Gap.cycle_id == cycle.id)
            .group_by(Gap.decision)
        ).all()
    )
    out.gaps_total = sum(out.gaps_by_decision.values())
    out.gaps_open = out.gaps_by_decision.get(GapDecision.OPEN, 0)
    for phase, total, required, answered, required_answered in session.execute(
        select(
            ChecklistItem.phase,
            func.count(),
            n(case((ChecklistItem.required, 1), else_=0)),
            n(case((ChecklistItem.answer.is_not(None), 1), else_=0)),
            n(case((and_(ChecklistItem.required, ChecklistItem.answer.is_not(None)), 1), else_=0)),
        )
        .where(ChecklistItem.cycle_id == cycle.id)
        .group_by(ChecklistItem.phase)
    ):
        out.checklist[phase] = ChecklistCounts(
            items=total,
            required=required or 0,
            answered=answered or 0,
            required_answered=required_answered or 0,
        )
    out.checklist = dict(sorted(out.checklist.items(), key=lambda kv: list(Phase).index(kv[0])))
    out.survey_responses = recap_service.survey_count(session, cycle)
    return out


def gaps(session: Session, cycle: Cycle, decision: GapDecision | None = None) -> list[Gap]:
    stmt = (
        select(Gap)
        .where(Gap.cycle_id == cycle.id)
        .options(joinedload(Gap.reported_by), joinedload(Gap.decided_by))
        .order_by(Gap.id)
    )
    if decision is not None:
        stmt = stmt.where(Gap.decision == decision)
    return list(session.scalars(stmt))


_ITEM_PEOPLE = (
    ActionItem.owner,
    ActionItem.counterpart,
    ActionItem.assigned_by,
    ActionItem.signed_off_by,
)


_ITEM_NAMES = ("owner", "counterpart", "assigned_by", "signed_off_by")


def _action_options() -> list:
    # the people an item names are read once per page (_with_people), not joined to each item
    return [*(lazyload(rel) for rel in _ITEM_PEOPLE), selectinload(ActionItem.gaps)]


def _with_people(session: Session, rows: list[ActionItem]) -> list[ActionItem]:
    """Load the people ``rows`` name (owner, counterpart, who assigned and who signed off),
    with their teams, in one query: each person once however many items name them; the items'
    references then resolve from the session without a statement each."""
    ids = {
        pid
        for a in rows
        for pid in (a.owner_id, a.counterpart_id, a.assigned_by_id, a.signed_off_by_id)
        if pid is not None
    }
    if not ids:
        return rows
    people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(ids)))}
    for a in rows:
        # set as loaded (not a change): the session holds people only weakly
        for rel, pid in zip(
            _ITEM_NAMES,
            (a.owner_id, a.counterpart_id, a.assigned_by_id, a.signed_off_by_id),
            strict=True,
        ):
            set_committed_value(a, rel, people.get(pid) if pid is not None else None)
    return rows


def actions(
    session: Session,
    cycle: Cycle,
    filters: ActionFilters | None = None,
    *,
    today: date | None = None,
    limit: int = 100,
    offset: int = 0,
    total: int | None = None,
) -> tuple[list[ActionItem], int]:
    """A cycle's action items, filtered, due first: (page, total). ``total``: how many match,
    when the caller knows it already (the cycle's count of items, with no filter)."""
    today = today or date.today()
    filters = replace(filters or ActionFilters(), cycle_id=cycle.id)
    stmt = action_query(filters, today)
    if total is None:
        # counted without the order (sorting rows only to count them is work thrown away)
        total = (
            session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        )
    rows = (
        session.scalars(stmt.options(*_action_options()).limit(limit).offset(offset)).unique().all()
    )
    rows = _with_people(session, list(rows))
    load_carried_to(session, rows)  # where each carried-over one went, in one query
    return rows, total


def checkins_by_action(session: Session, action_ids: list[int]) -> dict[int, list[CheckIn]]:
    """Check-ins of these action items, newest first, in one query."""
    if not action_ids:
        return {}
    out: dict[int, list[CheckIn]] = {}
    for c in session.scalars(
        select(CheckIn)
        .where(CheckIn.action_item_id.in_(action_ids))
        .options(joinedload(CheckIn.author))
        .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
    ):
        out.setdefault(c.action_item_id, []).append(c)
    return out


@dataclass(frozen=True)
class CheckinSummary:
    """What a list shows of an item's check-ins without its history: people's latest (with its
    author), and how many there are by people and automatic (the Execute pass's, no author)."""

    latest: CheckIn | None
    by_people: int
    automatic: int


def checkin_summaries(session: Session, action_ids: list[int]) -> dict[int, CheckinSummary]:
    """Each item's check-in summary, in one query whatever the length of the histories: the
    newest check-in of each kind (people's, automatic) with its kind's count (window functions,
    on SQLite and PostgreSQL alike). Items without check-ins are not in the result."""
    if not action_ids:
        return {}
    found: dict[int, list] = {}
    for c, count in session.execute(_checkin_summaries_stmt(), {"ids": list(action_ids)}):
        slot = found.setdefault(c.action_item_id, [None, 0, 0])
        if c.author_id is not None:
            slot[0], slot[1] = c, count
        else:
            slot[2] = count
    return {i: CheckinSummary(*slot) for i, slot in found.items()}


@cache
def _checkin_summaries_stmt() -> Select[Any]:
    """:func:`checkin_summaries`' statement, built once (the ids are its ``ids`` parameter):
    building it on every page cost more than running it."""
    kind = CheckIn.author_id.is_(None)
    part = (CheckIn.action_item_id, kind)
    ranked = (
        select(
            CheckIn.id.label("id"),
            func.row_number()
            .over(partition_by=part, order_by=(CheckIn.on_date.desc(), CheckIn.id.desc()))
            .label("rn"),
            func.count().over(partition_by=part).label("n"),
        )
        .where(CheckIn.action_item_id.in_(bindparam("ids", expanding=True)))
        .subquery()
    )
    return (
        select(CheckIn, ranked.c.n)
        .join(ranked, ranked.c.id == CheckIn.id)
        .where(ranked.c.rn == 1)
        .options(joinedload(CheckIn.author))
    )


def recent_checkins(session: Session, cycle: Cycle, limit: int = 20) -> list[CheckIn]:
    return list(
        session.scalars(
            select(CheckIn)
            .join(ActionItem, CheckIn.action_item_id == ActionItem.id)
            # People's check-ins: the automatic ones (no author) are kept apart, with each item
            .where(ActionItem.cycle_id == cycle.id, CheckIn.author_id.is_not(None))
            .options(joinedload(CheckIn.author))
            .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
            .limit(limit)
        )
    )


def cycle_people(session: Session, cycle: Cycle) -> list[Person]:
    """The active people of the cycle's teams (who can own its items), by team and name."""
    return team_people(session, [ct.team_id for ct in cycle.teams])


def team_people(session: Session, team_ids: Iterable[int]) -> list[Person]:
    """The active people of these teams (e.g. a cycle's, an agreement's pair), by team and
    name."""
    team_ids = list(team_ids)
    return list(
        session.scalars(
            select(Person)
            .join(Team, Person.team_id == Team.id)
            .where(Person.team_id.in_(team_ids), Person.active.is_(True))
            .order_by(Team.key, Person.name)
        ).unique()
    )


def timeline(
    session: Session, cycle: Cycle, *, limit: int = 50, offset: int = 0
) -> tuple[list[Event], int]:
    """The cycle's audit log, newest first. Survey events say only that someone took part."""
    total = (
        session.scalar(select(func.count()).select_from(Event).where(Event.cycle_id == cycle.id))
        or 0
    )
    rows = list(
        session.scalars(
            select(Event)
            .where(Event.cycle_id == cycle.id)
            .order_by(Event.id.desc())
            .limit(limit)
            .offset(offset)
        ).unique()
    )
    for e in rows:
        redact(session, e)
    return rows, total


def redact(session: Session, event: Event) -> Event:
    """Strip what a reader must not see from an audit entry (never written back)."""
    if event.verb == "survey.answered":
        session.expunge(event)
        event.before = None
        event.after = None
    return event


# --- My work --------------------------------------------------------------------------------


def my_checklist(session: Session, person: Person) -> list[tuple[ChecklistItem, Cycle]]:
    """Unanswered questions the person owns (by name or by role) in phases already open."""
    # The inbox's statement: open questions only, read through their partial indexes.
    rows = (
        session.execute(
            inbox.questions_stmt(person)
            .options(lazyload(Cycle.playbook))
            .order_by(Cycle.period_end, Cycle.id, ChecklistItem.position)
        )
        .unique()
        .all()
    )
    order = {p: i for i, p in enumerate(Phase)}
    return sorted(
        [(i, c) for i, c in rows],
        key=lambda r: (r[1].period_end, r[1].id, order[r[0].phase], r[0].position),
    )


def my_actions(
    session: Session, person: Person, *, today: date | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[ActionItem], int, int]:
    """The person's unfinished action items (as owner, or as the owner's counterpart on the
    other team) in cycles that are not closed, overdue first, then by due date: (page, total,
    overdue). A follow-up cycle in Identify holds the work carried over into it: it stays in
    My work when its first cycle closes."""
    today = today or date.today()
    where = inbox.owned_where(person)  # open items only, through their partial indexes
    overdue = and_(ActionItem.due_date.is_not(None), ActionItem.due_date < today)
    total, late = session.execute(
        select(func.count(), func.sum(case((overdue, 1), else_=0))).where(*where)
    ).one()
    rows = (
        session.scalars(
            select(ActionItem)
            .where(*where)
            .options(*_action_options())
            .order_by(
                case((overdue, 0), else_=1),
                ActionItem.due_date.is_(None),
                ActionItem.due_date,
                ActionItem.id,
            )
            .limit(limit)
            .offset(offset)
        )
        .unique()
        .all()
    )
    return _with_people(session, list(rows)), int(total or 0), int(late or 0)


def cycles_by_id(session: Session, ids: set[int]) -> dict[int, Cycle]:
    if not ids:
        return {}
    rows = session.scalars(_cycles_by_id_stmt(), {"ids": list(ids)}).unique()
    return {c.id: c for c in rows}


@cache
def _cycles_by_id_stmt() -> Select[Any]:
    """:func:`cycles_by_id`'s statement, built once (the ids are its ``ids`` parameter)."""
    return (
        select(Cycle)
        .where(Cycle.id.in_(bindparam("ids", expanding=True)))
        .options(selectinload(Cycle.teams), lazyload(Cycle.playbook))
    )
