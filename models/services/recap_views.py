"""What the recap page reads: the survey as the viewer may see it, the retrospective, the
trend across a team pair's cycles, and the KPIs measured before and at the end of a cycle."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, select, true
from sqlalchemy.orm import Session, joinedload

from models.enums import (
    ActionStatus,
    Role,
)
from models.funnel.kpis import KPIS
from models.funnel.tables import CycleKpiSnapshot
from models.services import recap as recap_service
from models.services.access import visible_cycles
from models.tables import (
    ActionItem,
    Cycle,
    CycleTeam,
    Gap,
    Person,
    Retrospective,
    SurveyResponse,
    Team,
)

#: Survey results of a group (all answers, or one team's) are shown only from this many answers
#: up: with fewer, an anonymous answer could be told apart by who took part.
SURVEY_MIN_GROUP = recap_service.SURVEY_MIN_GROUP


SURVEY_MIN_GROUP = recap_service.SURVEY_MIN_GROUP


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


# --- KPI before/after --------------------------------------------------------------------------


@dataclass
class KpiMeasure:
    """One KPI measured before the cycle and at its end (``unit`` e.g. "%", "h", "")."""

    kpi: str
    label: str
    before: float | None
    after: float | None
    unit: str = ""
    higher_is_better: bool = True


def kpis(session: Session, cycle: Cycle) -> list[KpiMeasure]:
    """The KPIs measured for the cycle (see :func:`funnel_snapshots`) that have a value before
    or after; none (no funnel data): the recap shows no KPI section."""
    return [
        m for m in funnel_snapshots(session, cycle) if m.before is not None or m.after is not None
    ]


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
