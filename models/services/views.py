"""Read models of the web app and the API: the board, a cycle, My work, the timeline, the recap.

Each view runs a fixed number of set-based queries, whatever the number of rows it shows (no
N+1: ``tests/test_web_queries.py`` counts the statements). Who may see what is decided here too:
managers see every cycle; everyone else sees the cycles their team takes part in. A cycle that
a person may not see is "not found" for them, exactly like one that does not exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from models.enums import (
    FINISHED_STATUSES,
    WORK_PHASES,
    ActionStatus,
    GapDecision,
    Phase,
    Role,
)
from models.schemas import BoardRow, ChecklistCounts, CycleCounts, TeamSlot
from models.services import cycles as cycle_service
from models.services import recap as recap_service
from models.services.access import visible_cycles
from models.services.actions import ActionFilters, action_query
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
    Retrospective,
    SurveyResponse,
    Team,
)

#: Survey results of a group (all answers, or one team's) are shown only from this many answers
#: up: with fewer, an anonymous answer could be told apart by who took part.
SURVEY_MIN_GROUP = recap_service.SURVEY_MIN_GROUP


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
    out = CycleCounts(
        **cycle_service.board_counts(session, [cycle.id], today)[cycle.id].model_dump(
            exclude={"progress", "risk"}
        )
    )
    n = func.sum
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
    out.gaps_by_decision = dict(
        session.execute(
            select(Gap.decision, func.count())
            .where(Gap.cycle_id == cycle.id)
            .group_by(Gap.decision)
        ).all()
    )
    out.actions_by_status = dict(
        session.execute(
            select(ActionItem.status, func.count())
            .where(ActionItem.cycle_id == cycle.id)
            .group_by(ActionItem.status)
        ).all()
    )
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


def _action_options() -> list:
    return [
        joinedload(ActionItem.counterpart),
        joinedload(ActionItem.assigned_by),
        joinedload(ActionItem.gap),
    ]


def actions(
    session: Session,
    cycle: Cycle,
    filters: ActionFilters | None = None,
    *,
    today: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ActionItem], int]:
    """A cycle's action items, filtered, due first: (page, total)."""
    today = today or date.today()
    filters = replace(filters or ActionFilters(), cycle_id=cycle.id)
    stmt = action_query(filters, today)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = (
        session.scalars(
            stmt.options(*_action_options())
            .limit(limit)
            .offset(offset)
        )
        .unique()
        .all()
    )
    return list(rows), total


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


def recent_checkins(session: Session, cycle: Cycle, limit: int = 20) -> list[CheckIn]:
    return list(
        session.scalars(
            select(CheckIn)
            .join(ActionItem, CheckIn.action_item_id == ActionItem.id)
            .where(ActionItem.cycle_id == cycle.id)
            .options(joinedload(CheckIn.author))
            .order_by(CheckIn.on_date.desc(), CheckIn.id.desc())
            .limit(limit)
        )
    )


def cycle_people(session: Session, cycle: Cycle) -> list[Person]:
    """The active people of the cycle's teams (who can own its items), by team and name."""
    team_ids = [ct.team_id for ct in cycle.teams]
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


def _earlier_or_same(phase: Phase) -> list[Phase]:
    order = list(WORK_PHASES)
    return order[: order.index(phase) + 1]


def my_checklist(session: Session, person: Person) -> list[tuple[ChecklistItem, Cycle]]:
    """Unanswered questions the person owns (by name or by role) in phases already open."""
    owned = ChecklistItem.owned_by(person)
    open_phase = or_(
        *[and_(Cycle.phase == p, ChecklistItem.phase.in_(_earlier_or_same(p))) for p in WORK_PHASES]
    )
    rows = (
        session.execute(
            select(ChecklistItem, Cycle)
            .join(Cycle, ChecklistItem.cycle_id == Cycle.id)
            .options(lazyload(Cycle.playbook))
            .where(ChecklistItem.answer.is_(None), owned, open_phase, visible_cycles(person))
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
    """The person's unfinished action items in cycles that still work on them, overdue first,
    then by due date: (page, total, overdue)."""
    today = today or date.today()
    where = [
        ActionItem.owner_id == person.id,
        ActionItem.status.not_in(FINISHED_STATUSES),
        ActionItem.cycle_id.in_(
            select(Cycle.id).where(Cycle.phase.in_((Phase.PLAN, Phase.EXECUTE, Phase.RECAP)))
        ),
    ]
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
    return list(rows), int(total or 0), int(late or 0)


def cycles_by_id(session: Session, ids: set[int]) -> dict[int, Cycle]:
    if not ids:
        return {}
    return {
        c.id: c
        for c in session.scalars(
            select(Cycle)
            .where(Cycle.id.in_(ids))
            .options(selectinload(Cycle.teams), lazyload(Cycle.playbook))
        ).unique()
    }


# --- the recap ------------------------------------------------------------------------------


@dataclass
class SurveyView:
    answered: int
    shown: bool  # False below SURVEY_MIN_GROUP answers
    mean: float | None
    distribution: dict[int, int]
    by_team: list[dict[str, Any]]
    comments: list[str]
    min_group: int = SURVEY_MIN_GROUP


def survey(session: Session, cycle: Cycle, viewer: Person) -> SurveyView:
    """Survey results as ``viewer`` may see them: exactly what
    :func:`models.services.recap.summarize_survey` shows (its rule decides when scores and
    comments can be shown without giving an anonymous answer away), with the teams' names."""
    summary = recap_service.summarize_survey(session, cycle, viewer)
    names = dict(
        session.execute(
            select(Team.key, Team.name).where(Team.key.in_([t.team for t in summary.by_team]))
        ).all()
    )
    return SurveyView(
        answered=summary.responses,
        shown=summary.shown,
        mean=summary.mean,
        distribution=summary.distribution,
        by_team=[
            {
                "team": t.team,
                "name": names.get(t.team, t.team),
                "responses": t.responses,
                "mean": t.mean,
            }
            for t in summary.by_team
        ],
        comments=summary.comments,
    )


def has_answered(session: Session, cycle: Cycle, person: Person) -> bool:
    from models.tables import SurveyParticipation

    return (
        session.scalar(
            select(SurveyParticipation.id).where(
                SurveyParticipation.cycle_id == cycle.id, SurveyParticipation.person_id == person.id
            )
        )
        is not None
    )


def retrospective(session: Session, cycle: Cycle) -> Retrospective | None:
    return session.scalar(
        select(Retrospective)
        .where(Retrospective.cycle_id == cycle.id)
        .options(joinedload(Retrospective.recorded_by), joinedload(Retrospective.signed_off_by))
    )


@dataclass
class TrendPoint:
    cycle_id: int
    title: str
    period_start: date
    actions_total: int
    actions_done: int
    survey_mean: float | None
    gaps_total: int

    @property
    def completion(self) -> int | None:
        return round(100 * self.actions_done / self.actions_total) if self.actions_total else None


def trends(session: Session, cycle: Cycle, viewer: Person, limit: int = 8) -> list[TrendPoint]:
    """This cycle and the earlier ones run by the same teams (oldest first), with action
    completion, survey mean and gap count: set-based, four queries."""
    team_ids = [ct.team_id for ct in cycle.teams]
    same_teams = (
        select(CycleTeam.cycle_id)
        .where(CycleTeam.team_id.in_(team_ids))
        .group_by(CycleTeam.cycle_id)
        .having(func.count() == len(team_ids))
    )
    past = session.execute(
        select(Cycle.id, Cycle.title, Cycle.period_start)
        .where(
            Cycle.id.in_(same_teams),
            Cycle.period_start <= cycle.period_start,
            visible_cycles(viewer) if viewer.role is not Role.MANAGER else true(),
        )
        .order_by(Cycle.period_start.desc(), Cycle.id.desc())
        .limit(limit)
    ).all()
    ids = [r.id for r in past]
    if not ids:
        return []
    acts = {
        r[0]: r[1:]
        for r in session.execute(
            select(
                ActionItem.cycle_id,
                func.sum(case((ActionItem.status != ActionStatus.DROPPED, 1), else_=0)),
                func.sum(case((ActionItem.status == ActionStatus.DONE, 1), else_=0)),
            )
            .where(ActionItem.cycle_id.in_(ids))
            .group_by(ActionItem.cycle_id)
        )
    }
    # A cycle's mean only when the survey itself would show it (every team's group big
    # enough: recap.survey_group_visible), from per-team sums in one query.
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for cycle_id, answers, anonymous, total in session.execute(
        select(
            SurveyResponse.cycle_id,
            func.count(),
            func.sum(case((SurveyResponse.anonymous.is_(True), 1), else_=0)),
            func.sum(SurveyResponse.score),
        )
        .where(SurveyResponse.cycle_id.in_(ids))
        .group_by(SurveyResponse.cycle_id, SurveyResponse.team_id)
    ):
        groups.setdefault(cycle_id, []).append((answers, int(anonymous or 0), int(total or 0)))
    surveys = {
        cycle_id: (
            sum(g[2] for g in teams) / sum(g[0] for g in teams)
            if all(recap_service.survey_group_visible(g[0], g[1]) for g in teams)
            else None
        )
        for cycle_id, teams in groups.items()
    }
    gap_counts = dict(
        session.execute(
            select(Gap.cycle_id, func.count()).where(Gap.cycle_id.in_(ids)).group_by(Gap.cycle_id)
        ).all()
    )
    out = []
    for r in reversed(past):
        total, done = acts.get(r.id, (0, 0))
        m = surveys.get(r.id)
        out.append(
            TrendPoint(
                cycle_id=r.id,
                title=r.title,
                period_start=r.period_start,
                actions_total=int(total or 0),
                actions_done=int(done or 0),
                survey_mean=round(m, 2) if m is not None else None,
                gaps_total=int(gap_counts.get(r.id, 0)),
            )
        )
    return out


# --- KPI before/after: the seam for the funnel module ---------------------------------------


@dataclass
class KpiMeasure:
    """One KPI measured before the cycle and at its end (``unit`` e.g. "%", "h", "")."""

    kpi: str
    label: str
    before: float | None
    after: float | None
    unit: str = ""
    higher_is_better: bool = True


#: Functions ``(session, cycle) -> list[KpiMeasure]`` that know measurement data (the funnel
#: module registers one with :func:`register_kpi_source`). No source, or no data: the recap
#: shows no KPI section.
KPI_SOURCES: list[Callable[[Session, Cycle], list[KpiMeasure]]] = []


def register_kpi_source(fn: Callable[[Session, Cycle], list[KpiMeasure]]) -> None:
    if fn not in KPI_SOURCES:
        KPI_SOURCES.append(fn)


def kpis(session: Session, cycle: Cycle) -> list[KpiMeasure]:
    out: list[KpiMeasure] = []
    for source in KPI_SOURCES:
        out.extend(m for m in source(session, cycle) if m.before is not None or m.after is not None)
    return out


def completion_breakdown(facts: dict[str, Any]) -> dict[str, int]:
    """Action items by outcome for the completion chart (late unfinished items shown apart)."""
    done = int(facts.get("actions_done", 0))
    dropped = int(facts.get("actions_dropped", 0))
    unfinished = int(facts.get("actions_unfinished", 0))
    return {"done": done, "dropped": dropped, "unfinished": unfinished}


def gap_decisions(facts: dict[str, Any]) -> Counter:
    return Counter(facts.get("gaps_by_decision", {}))


def funnel_snapshots(session: Session, cycle: Cycle) -> list[KpiMeasure]:
    """KPIs the funnel module measured for the cycle: the baseline (the weeks before it) and
    the recap measurement (its own period). Read only: measuring is the Recap flow's job."""
    try:
        from models.funnel.kpis import KPIS
        from models.funnel.tables import CycleKpiSnapshot
    except ImportError:  # the funnel module is optional
        return []
    rows = session.execute(
        select(CycleKpiSnapshot.kpi, CycleKpiSnapshot.kind, CycleKpiSnapshot.value).where(
            CycleKpiSnapshot.cycle_id == cycle.id,
            CycleKpiSnapshot.kind.in_(("baseline", "recap")),
        )
    ).all()
    values: dict[str, dict[str, float | None]] = {}
    for kpi, kind, value in rows:
        values.setdefault(kpi, {})[kind] = value
    out = []
    for name in sorted(values, key=lambda n: list(KPIS).index(n) if n in KPIS else 999):
        d = KPIS.get(name)
        unit = getattr(d, "unit", "")
        scale = 100.0 if unit == "rate" else 1.0

        def scaled(v: float | None, scale: float = scale) -> float | None:
            return None if v is None else round(v * scale, 2)

        out.append(
            KpiMeasure(
                kpi=name,
                label=d.title if d else name,
                before=scaled(values[name].get("baseline")),
                after=scaled(values[name].get("recap")),
                unit={"rate": "%", "hours": " h", "days": " d"}.get(unit, ""),
                higher_is_better=getattr(d, "better", "higher") == "higher",
            )
        )
    return out


register_kpi_source(funnel_snapshots)
