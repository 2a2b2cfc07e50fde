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
    Phase,
    Role,
)
from models.funnel.baseline import stored_currency
from models.funnel.currency import numbers_currency
from models.funnel.kpis import KPIS, MONEY_KPIS, format_value
from models.funnel.tables import CycleKpiSnapshot
from models.services import recap as recap_service
from models.services.access import visible_cycles
from models.tables import (
    ActionItem,
    Cycle,
    CycleTeam,
    Gap,
    Person,
    Playbook,
    Retrospective,
    SurveyResponse,
    Team,
)


@dataclass
class SurveyView:
    answered: int
    shown: bool  # False until the first batch of answers is published
    mean: float | None
    distribution: dict[int, int]
    by_team: list[dict[str, Any]]
    comments: list[str]
    published: int = 0
    teams_shown: bool = False
    min_answers: int = 3
    rule: str = ""

    @property
    def waiting(self) -> int:
        """Answers not in the results yet (they wait for their batch)."""
        return self.answered - self.published


def survey(session: Session, cycle: Cycle, viewer: Person) -> SurveyView:
    """Survey results as ``viewer`` may see them: exactly what
    :func:`models.services.recap.summarize_survey` shows (its rule decides what can be shown
    without giving an answer away), with the teams' names."""
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
                "published": t.published,
                "mean": t.mean,
            }
            for t in summary.by_team
        ],
        comments=summary.comments,
        published=summary.published,
        teams_shown=summary.teams_shown,
        min_answers=summary.min_answers,
        rule=summary.note or "",
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
    """The finished (closed) cycles of the same playbook run by exactly the same teams, up to
    this one (oldest first), with action completion, survey mean and gap count: a running
    cycle's half-done numbers or another playbook's would make the line fall for nothing.
    Set-based, four queries."""
    team_ids = [ct.team_id for ct in cycle.teams]
    same_teams = (
        select(CycleTeam.cycle_id)
        .group_by(CycleTeam.cycle_id)
        .having(
            func.count() == len(team_ids),
            func.sum(case((CycleTeam.team_id.in_(team_ids), 1), else_=0)) == len(team_ids),
        )
    )
    past = session.execute(
        select(Cycle.id, Cycle.title, Cycle.period_start)
        .join(Playbook, Cycle.playbook_id == Playbook.id)
        .where(
            Cycle.id.in_(same_teams),
            Cycle.phase == Phase.CLOSED,
            Playbook.name == cycle.playbook.name,
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
    # The survey's mean as its results show it: over the published answers only.
    surveys = dict(
        session.execute(
            select(SurveyResponse.cycle_id, func.avg(SurveyResponse.score))
            .where(SurveyResponse.cycle_id.in_(ids), SurveyResponse.batch.is_not(None))
            .group_by(SurveyResponse.cycle_id)
        ).all()
    )
    gap_counts = dict(
        session.execute(
            select(Gap.cycle_id, func.count()).where(Gap.cycle_id.in_(ids)).group_by(Gap.cycle_id)
        ).all()
    )
    out = []
    for r in reversed(past):
        total, done = acts.get(r.id, (0, 0))
        m = float(surveys[r.id]) if surveys.get(r.id) is not None else None
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
    """One KPI measured before the cycle and at its end (``unit`` e.g. "%", "h", ""), and each
    as people read it ("1,427,400.00 USD", "81.4%"; where it is missing, why)."""

    kpi: str
    label: str
    before: float | None
    after: float | None
    unit: str = ""
    higher_is_better: bool = True
    before_shown: str = "no data"
    after_shown: str = "no data"


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
    carried = int(facts.get("actions_carried", 0))
    unfinished = int(facts.get("actions_unfinished", 0))
    return {"done": done, "dropped": dropped, "carried": carried, "unfinished": unfinished}


def gap_decisions(facts: dict[str, Any]) -> Counter:
    return Counter(facts.get("gaps_by_decision", {}))


def funnel_snapshots(session: Session, cycle: Cycle) -> list[KpiMeasure]:
    """KPIs the funnel module measured for the cycle: the baseline (the weeks before it) and
    the recap measurement (its own period). Read only: measuring is the Recap flow's job."""
    rows = session.execute(
        select(
            CycleKpiSnapshot.kpi,
            CycleKpiSnapshot.kind,
            CycleKpiSnapshot.value,
            CycleKpiSnapshot.detail,
        ).where(
            CycleKpiSnapshot.cycle_id == cycle.id,
            CycleKpiSnapshot.kind.in_(("baseline", "recap")),
        )
    ).all()
    values: dict[str, dict[str, float | None]] = {}
    currencies: dict[tuple[str, str], str | None] = {}  # an amount's, as it was measured
    for kpi, kind, value, detail in rows:
        values.setdefault(kpi, {})[kind] = value
        if kpi in MONEY_KPIS:
            currencies[kpi, kind] = stored_currency(detail)
    # an amount measured before its snapshot kept its currency: the shared numbers' (asked
    # only then: one query less for most recaps)
    unknown = any(
        v is not None and currencies.get((n, k)) is None
        for n in MONEY_KPIS
        for k, v in values.get(n, {}).items()
    )
    money = numbers_currency(session) if unknown else None

    def currency(name: str, kind: str) -> str | None:
        return currencies.get((name, kind)) or money

    # measured by the Recap flow: a cycle that has not reached it has no "after" yet
    later = "measured at the recap" if cycle.phase in BEFORE_RECAP else "no data"
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
                before_shown=_shown(
                    name, values[name].get("baseline"), currency(name, "baseline"), "no data"
                ),
                after_shown=_shown(name, values[name].get("recap"), currency(name, "recap"), later),
            )
        )
    return out


#: The phases before Recap: the cycle's own numbers are measured when it reaches Recap.
BEFORE_RECAP = (Phase.IDENTIFY, Phase.PLAN, Phase.EXECUTE)


def _shown(name: str, value: float | None, money: str | None, missing: str) -> str:
    if value is None:
        return missing
    return format_value(name, value, money) if name in KPIS else f"{value:g}"
