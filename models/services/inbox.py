"""My work, everyone's inbox: what waits for one person, across every cycle they may see.

- questions they owe an answer (by name, or by role) in phases already open,
- gaps to decide (leads, managers and the cycle's point persons, in Identify and Plan),
- action items without an owner (leads and managers, where items are assigned),
- their unfinished action items (as owner or counterpart), overdue / this week / later,
- check-ins due on the items they own in Execute,
- their team's own answers to the Identify questions still to give, and votes on the gaps
  still to cast while the vote is open (:mod:`models.services.alignment_todo`),
- surveys to answer (Recap), retrospectives to record (point persons) and recaps to sign off
  (managers).

Only open work is read, through partial indexes (migrations 0012 and 0023; ``OPEN_ACTION_SQL``,
``UNANSWERED_SQL``, ``UNDECIDED_GAP_SQL`` in :mod:`models.tables`): each query says "open" in
the index's own words, so the store never reads finished items, answered questions or decided
gaps; and a person's items and questions are looked up per open cycle (the few cycles not
closed, through the phase index), so what was left unfinished in closed cycles over the years
is never read either. Visibility (:func:`access.visible_cycles`) applies to every section:
nothing of a cycle the person may not see. A fixed number of queries, whatever the number of
rows or the length of the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from models.enums import WORK_PHASES, Phase, Role
from models.rules import ASSIGNERS, PHASE_WORK
from models.services import alignment_todo
from models.services.access import visible_cycles
from models.services.alignment_todo import Todo
from models.tables import (
    ActionItem,
    CheckIn,
    ChecklistItem,
    Cycle,
    CycleTeam,
    Gap,
    Person,
    Retrospective,
    SurveyParticipation,
    action_is_open,
    gap_is_undecided,
)

#: Each list shows at most this many entries (its total is counted in full).
SECTION_LIMIT = 25
#: An owner checks in on an item in Execute at least this often (or on its follow-up date).
CHECKIN_EVERY_DAYS = 7
#: "This week": due within this many days from today.
WEEK_DAYS = 7


def _phases(work: str) -> list[Phase]:
    return sorted(PHASE_WORK[work][0], key=list(Phase).index)


# --- the statements (shared by the lists, the counts and the index test) ---------------------


def open_cycle_ids(person: Person, phases: tuple[Phase, ...] = WORK_PHASES) -> Select[Any]:
    """Ids of the cycles in ``phases`` (by default: not closed) the person may see, read through
    the phase index: the few open cycles, however long the history of closed ones."""
    return select(Cycle.id).where(Cycle.phase.in_(phases), visible_cycles(person))


def open_item_ids(
    person: Person, *, counterpart: bool = True, phases: tuple[Phase, ...] = WORK_PHASES
) -> Select[Any]:
    """Ids of the person's unfinished items in the open cycles they may see (``phases``): as
    owner (and as counterpart), each side read through its own partial index by person and
    cycle. Unfinished items of closed cycles (left behind, or carried over into a follow-up)
    are never read, so the cost does not grow with the years of history."""
    cycles = open_cycle_ids(person, phases)
    owner = select(ActionItem.id).where(
        ActionItem.owner_id == person.id, action_is_open(), ActionItem.cycle_id.in_(cycles)
    )
    if not counterpart:
        return owner
    other = select(ActionItem.id).where(
        ActionItem.counterpart_id == person.id, action_is_open(), ActionItem.cycle_id.in_(cycles)
    )
    return union_all(owner, other)  # type: ignore[return-value]


def open_question_ids(person: Person) -> Select[Any]:
    """Ids of the unanswered questions the person owns in the open cycles they may see: by
    name, or by their role (in any team, or in their own), each read through its own partial
    index by owner and cycle, so questions left unanswered in closed cycles are never read."""
    cycles = open_cycle_ids(person)
    unanswered = ChecklistItem.answer.is_(None)
    by_name = select(ChecklistItem.id).where(
        ChecklistItem.owner_id == person.id, unanswered, ChecklistItem.cycle_id.in_(cycles)
    )
    teams = [ChecklistItem.owner_team_id.is_(None)]
    if person.team_id is not None:
        teams.append(ChecklistItem.owner_team_id == person.team_id)
    by_role = [
        select(ChecklistItem.id).where(
            unanswered,
            ChecklistItem.owner_id.is_(None),
            ChecklistItem.owner_role == person.role,
            team,
            ChecklistItem.cycle_id.in_(cycles),
        )
        for team in teams
    ]
    return union_all(by_name, *by_role)  # type: ignore[return-value]


def _open_phase() -> Any:
    """A question's phase is open: the cycle is in it, or past it (a late answer counts)."""
    order = list(WORK_PHASES)
    return or_(
        *[
            and_(Cycle.phase == p, ChecklistItem.phase.in_(order[: order.index(p) + 1]))
            for p in WORK_PHASES
        ]
    )


def questions_stmt(person: Person) -> Select[Any]:
    return (
        select(ChecklistItem, Cycle)
        .join(Cycle, ChecklistItem.cycle_id == Cycle.id)
        .where(
            ChecklistItem.id.in_(open_question_ids(person)),
            ChecklistItem.answer.is_(None),
            _open_phase(),
            visible_cycles(person),
        )
    )


def _point_person_of(person: Person) -> Any:
    return Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.point_person_id == person.id))


def gaps_stmt(person: Person) -> Select[Any] | None:
    """Undecided gaps the person may decide (leads and managers; point persons in their own
    cycles), where gaps are decided."""
    if person.role in ASSIGNERS:
        deciders = []
    elif person.role is Role.POINT_PERSON:
        deciders = [_point_person_of(person)]
    else:
        return None
    return (
        select(Gap, Cycle)
        .join(Cycle, Gap.cycle_id == Cycle.id)
        .where(
            gap_is_undecided(),
            Cycle.phase.in_(_phases("decide_gap")),
            visible_cycles(person),
            *deciders,
        )
    )


def to_assign_stmt(person: Person) -> Select[Any] | None:
    """Unfinished items nobody owns yet, for the leads and managers who assign them."""
    if person.role not in ASSIGNERS:
        return None
    return (
        select(ActionItem, Cycle)
        .join(Cycle, ActionItem.cycle_id == Cycle.id)
        .where(
            ActionItem.owner_id.is_(None),
            action_is_open(),
            # driven by the open cycles (few), not by every unassigned item of the history
            ActionItem.cycle_id.in_(open_cycle_ids(person, tuple(_phases("assign_action")))),
        )
    )


def owned_where(person: Person) -> list[Any]:
    """The person's unfinished items (owner or counterpart) in cycles not closed."""
    return [ActionItem.id.in_(open_item_ids(person)), action_is_open()]


def team_cycles_stmt(person: Person) -> Select[Any] | None:
    """Cycles of the person's team where own answers are given or gaps voted on (Identify and
    Plan): where :func:`alignment_todo.todo` may find work. None: the person has no team."""
    if person.team_id is None:
        return None
    return select(Cycle.id).where(
        Cycle.phase.in_(alignment_todo.PHASES),
        Cycle.id.in_(select(CycleTeam.cycle_id).where(CycleTeam.team_id == person.team_id)),
    )


def surveys_stmt(person: Person) -> Select[Any]:
    """Recap surveys of the person's cycles they have not answered yet."""
    answered = exists().where(
        SurveyParticipation.cycle_id == Cycle.id, SurveyParticipation.person_id == person.id
    )
    return select(Cycle).where(Cycle.phase == Phase.RECAP, visible_cycles(person), ~answered)


def recaps_stmt(person: Person) -> Select[Any] | None:
    """Recaps waiting for this person: a manager signs off a saved retrospective; a point
    person of the cycle records (or reviews the draft of) its retrospective."""
    retro = Retrospective
    if person.role is Role.MANAGER:
        waiting = and_(retro.recorded_by_id.is_not(None), retro.signed_off_at.is_(None))
    elif person.role is Role.POINT_PERSON:
        waiting = and_(_point_person_of(person), retro.recorded_by_id.is_(None))
    else:
        return None
    return (
        select(Cycle, retro)
        .outerjoin(retro, retro.cycle_id == Cycle.id)
        .where(Cycle.phase == Phase.RECAP, visible_cycles(person), waiting)
    )


# --- the read model --------------------------------------------------------------------------


@dataclass
class Inbox:
    """What waits for one person. Each list holds at most ``SECTION_LIMIT`` entries (``owned``:
    one page); ``totals`` counts each in full."""

    questions: list[tuple[ChecklistItem, Cycle]] = field(default_factory=list)
    gaps: list[tuple[Gap, Cycle]] = field(default_factory=list)
    to_assign: list[tuple[ActionItem, Cycle]] = field(default_factory=list)
    owned: list[ActionItem] = field(default_factory=list)
    overdue: int = 0
    checkins_due: list[tuple[ActionItem, Cycle, date | None]] = field(default_factory=list)
    #: their team's own answers still to give, and votes still to cast
    own_answers: list[Todo] = field(default_factory=list)
    votes: list[Todo] = field(default_factory=list)
    surveys: list[Cycle] = field(default_factory=list)
    #: (cycle, its retrospective or None): to sign off (managers) or to record (point persons)
    recaps: list[tuple[Cycle, Retrospective | None]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return waiting_total(self.totals)


def waiting_total(totals: dict[str, int]) -> int:
    """Everything waiting, each thing once (a check-in due is on an item already counted)."""
    return sum(n for k, n in totals.items() if k != "checkins")


def due_group(item: ActionItem, today: date) -> str:
    """Where an item goes in the list: "overdue", "week" (due within a week) or "later"."""
    if item.overdue_on(today):
        return "overdue"
    if item.due_date is not None and item.due_date <= today + timedelta(days=WEEK_DAYS):
        return "week"
    return "later"


def _windowed_stmt(stmt: Select[Any], *order: Any) -> Select[Any]:
    """The first ``SECTION_LIMIT`` rows and the full count, in one statement."""
    return stmt.add_columns(func.count().over()).order_by(*order).limit(SECTION_LIMIT)


def _windowed(session: Session, stmt: Select[Any], params: dict[str, Any]) -> tuple[list[Any], int]:
    """Run a :func:`_windowed_stmt`: (its rows, the full count)."""
    rows = session.execute(stmt, params).all()
    return [tuple(r[:-1]) for r in rows], (rows[0][-1] if rows else 0)


@dataclass(frozen=True)
class _Who:
    """What the statements read of a person: its id, role and team (nothing else)."""

    id: Any  # int, or the parameter ``me``
    role: Role
    team_id: Any  # int, the parameter ``team``, or None


#: A cached statement names the person through parameters: one statement per role and whether
#: the person has a team (not one per person), run with :func:`_params`.
_ME = bindparam("me", type_=Integer)
_TEAM = bindparam("team", type_=Integer)
_TODAY = bindparam("today", type_=Date)


def _who(person: Person) -> tuple[Role, bool]:
    """The key of a person's cached statements: their role and whether they have a team."""
    return person.role, person.team_id is not None


def _as_params(key: tuple[Role, bool]) -> _Who:
    role, has_team = key
    return _Who(_ME, role, _TEAM if has_team else None)


def _params(person: Person, today: date | None = None) -> dict[str, Any]:
    return {"me": person.id, "team": person.team_id, "today": today}


def counts(session: Session, person: Person) -> dict[str, int]:
    """Each section's total, in one statement (the menu's count on every page)."""
    stmt, present = _counts_stmt(_who(person))
    row = session.execute(stmt, _params(person)).one()
    out = {k: int(row._mapping[k] or 0) for k in present if k != "team_cycles"}
    # Own answers and votes depend on each cycle's playbook: read only where the statement
    # found a cycle of the person's team in Identify or Plan (none: no query more).
    todo = alignment_todo.todo(session, person) if row._mapping.get("team_cycles") else []
    out.update(_todo_totals(todo))
    return out


def _todo_totals(todo: list[Todo]) -> dict[str, int]:
    return {
        "own_answers": sum(1 for t in todo if t.kind == "own_answers"),
        "votes": sum(1 for t in todo if t.kind == "vote"),
    }


@lru_cache(maxsize=16)
def _counts_stmt(key: tuple[Role, bool]) -> tuple[Select[Any], tuple[str, ...]]:
    """The counts' statement, built once per role (and whether the person has a team; the
    person and team are its parameters): building it (seven subqueries) cost more than
    running it on every page; its rows are read each time."""
    person = _as_params(key)
    parts: dict[str, Any] = {
        "questions": questions_stmt(person),
        "gaps": gaps_stmt(person),
        "assign": to_assign_stmt(person),
        "owned": select(ActionItem.id).where(*owned_where(person)),
        "surveys": surveys_stmt(person),
        "recaps": recaps_stmt(person),
        "team_cycles": team_cycles_stmt(person),
    }
    present = {k: s for k, s in parts.items() if s is not None}
    stmt = select(
        *[
            select(func.count()).select_from(s.subquery()).scalar_subquery().label(k)
            for k, s in present.items()
        ]
    )
    return stmt, tuple(present)


def inbox(
    session: Session,
    person: Person,
    *,
    today: date | None = None,
    limit: int = 25,
    offset: int = 0,
) -> Inbox:
    """Everything waiting for ``person``; ``limit``/``offset`` page their own items."""
    today = today or date.today()
    out = Inbox()
    st = _inbox_stmts(_who(person))
    on = _params(person, today)

    rows, out.totals["questions"] = _windowed(session, st["questions"], on)
    order = {p: i for i, p in enumerate(Phase)}
    out.questions = sorted(
        rows, key=lambda r: (r[1].period_end, r[1].id, order[r[0].phase], r[0].position)
    )
    if "gaps" in st:
        out.gaps, out.totals["gaps"] = _windowed(session, st["gaps"], on)
    if "assign" in st:
        out.to_assign, out.totals["assign"] = _windowed(session, st["assign"], on)

    total, late = session.execute(st["owned_count"], on).one()
    out.totals["owned"], out.overdue = int(total or 0), int(late or 0)
    out.owned = list(session.scalars(st["owned"].limit(limit).offset(offset), on).unique())

    out.checkins_due = checkins_due(session, person, today)
    out.totals["checkins"] = len(out.checkins_due)

    todo = alignment_todo.todo(session, person)
    out.own_answers = [t for t in todo if t.kind == "own_answers"]
    out.votes = [t for t in todo if t.kind == "vote"]
    out.totals.update(_todo_totals(todo))

    surveys, out.totals["surveys"] = _windowed(session, st["surveys"], on)
    out.surveys = [c for (c,) in surveys]
    if "recaps" in st:
        out.recaps, out.totals["recaps"] = _windowed(session, st["recaps"], on)
    return out


@lru_cache(maxsize=16)
def _inbox_stmts(key: tuple[Role, bool]) -> dict[str, Select[Any]]:
    """The inbox's statements, built once per role and whether the person has a team (like
    :func:`_counts_stmt`): building them cost more than running them. The person, their team
    and the day are parameters (:func:`_params`). Statements are immutable: shared safely."""
    person = _as_params(key)
    no_body = lazyload(Cycle.playbook)  # the playbook's JSON is not needed here
    out: dict[str, Select[Any]] = {
        "questions": _windowed_stmt(
            questions_stmt(person).options(no_body),
            Cycle.period_end,
            Cycle.id,
            ChecklistItem.position,
        )
    }
    stmt = gaps_stmt(person)
    if stmt is not None:
        out["gaps"] = _windowed_stmt(
            stmt.options(no_body, joinedload(Gap.reported_by)), Cycle.period_end, Gap.id
        )
    stmt = to_assign_stmt(person)
    if stmt is not None:
        out["assign"] = _windowed_stmt(stmt.options(no_body), Cycle.period_end, ActionItem.id)

    where = owned_where(person)
    overdue = ActionItem.overdue_on(_TODAY)
    out["owned_count"] = select(func.count(), func.sum(case((overdue, 1), else_=0))).where(*where)
    out["owned"] = (
        select(ActionItem)
        .where(*where)
        .options(
            joinedload(ActionItem.counterpart),
            joinedload(ActionItem.signed_off_by),
            selectinload(ActionItem.gaps),
        )
        .order_by(
            case((overdue, 0), else_=1),
            ActionItem.due_date.is_(None),
            ActionItem.due_date,
            ActionItem.id,
        )
    )
    out["surveys"] = _windowed_stmt(
        surveys_stmt(person).options(no_body), Cycle.period_end, Cycle.id
    )
    stmt = recaps_stmt(person)
    if stmt is not None:
        out["recaps"] = _windowed_stmt(stmt.options(no_body), Cycle.period_end, Cycle.id)
    return out


def checkins_due(
    session: Session, person: Person, today: date
) -> list[tuple[ActionItem, Cycle, date | None]]:
    """The person's own unfinished items in Execute whose check-in is due: their follow-up
    date has come, or nobody has checked in on them for ``CHECKIN_EVERY_DAYS`` since the cycle
    moved into Execute. Automatic check-ins (no author) do not count as checking in.
    (item, cycle, the last check-in by a person or None)."""
    rows = session.execute(_checkins_stmt(_who(person)), _params(person)).all()
    cutoff = today - timedelta(days=CHECKIN_EVERY_DAYS)
    due = []
    for item, cycle, on in rows:
        since = on or cycle.phase_changed_at.date()
        follow_up = item.follow_up_date is not None and item.follow_up_date <= today
        if follow_up or since <= cutoff:
            due.append((item, cycle, on))
    return due[:SECTION_LIMIT]


@lru_cache(maxsize=16)
def _checkins_stmt(key: tuple[Role, bool]) -> Select[Any]:
    """:func:`checkins_due`'s statement, built once per role and whether the person has a
    team (the person and team are parameters)."""
    person = _as_params(key)
    last = (
        select(func.max(CheckIn.on_date))
        .where(CheckIn.action_item_id == ActionItem.id, CheckIn.author_id.is_not(None))
        .correlate(ActionItem)
        .scalar_subquery()
    )
    return (
        select(ActionItem, Cycle, last)
        .join(Cycle, ActionItem.cycle_id == Cycle.id)
        .where(
            ActionItem.id.in_(open_item_ids(person, counterpart=False, phases=(Phase.EXECUTE,))),
            action_is_open(),
            Cycle.phase == Phase.EXECUTE,
        )
        .options(lazyload(Cycle.playbook))
        .order_by(ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id)
    )
