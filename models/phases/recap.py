"""Recap: did we see improvements? The retrospective, the survey and the numbers.

:func:`build_recap` drafts the retrospective (a draft a person has not touched), carries open
items into follow-up cycles, and measures the KPIs and targets against the baseline.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from models.enums import (
    FINISHED_STATUSES,
    ActionStatus,
    GapDecision,
    Phase,
)
from models.funnel import baseline, measure
from models.phases.carry_over import carry_over, follow_up_cycles
from models.phases.common import md, require_phase
from models.rules import counted
from models.schemas import (
    RetrospectiveRecord,
)
from models.services import actions as action_service
from models.services import gaps as gap_service
from models.services import recap as recap_service
from models.tables import ActionItem, Cycle
from models.words import phase_name


class RecapSection(BaseModel):
    """A section another part of the domain adds to the recap (e.g. KPI deltas)."""

    title: str
    lines: list[str]


def numbers_section(session: Session, cycle: Cycle, today: date) -> RecapSection | None:
    """Did we see improvements? Every KPI and action target measured against the baseline,
    and where the survey's sentiment and the numbers disagree (None: no funnel data)."""
    if not baseline.has_funnel_data(session):  # nothing measured: no empty baseline frozen
        return None
    measurement = measure.measure_recap(session, cycle, today=today)
    if measurement.measured == "no data" and not measurement.targets:
        return None
    return RecapSection(title="The numbers: KPIs against the baseline", lines=measurement.summary)


class DecidedGap(BaseModel):
    title: str
    decision: str
    reason: str | None = None


class RecapReport(BaseModel):
    cycle_id: int
    title: str
    phase: Phase
    period_start: date
    period_end: date
    playbook: str
    on_date: date
    gaps_found: int
    gaps_by_decision: dict[str, int]
    decided_gaps: list[DecidedGap]
    actions_total: int
    actions_done: list[str]
    actions_dropped: list[str]
    actions_late: list[str]
    actions_unfinished: list[str]
    #: Carried into the follow-up cycle (finished here, the work goes on there).
    actions_carried: list[str] = Field(default_factory=list)
    survey_responses: int
    survey_published: int = 0
    survey_mean: float | None
    survey_by_team: dict[str, float | None]
    survey_comments: list[str]
    improvements: list[str]
    growth_areas: list[str]
    next_time: list[str]
    summary: str | None
    drafted_by_flow: bool
    signed_off_by: str | None
    follow_up_cycles: list[int] = Field(default_factory=list)
    carried_over: int = 0
    sections: list[RecapSection] = Field(default_factory=list)

    @property
    def headline(self) -> str:
        return (
            f"{counted(self.gaps_found, 'gap')} found, "
            f"{self.gaps_by_decision.get('accepted', 0)} accepted; "
            f"actions: {len(self.actions_done)} done, {len(self.actions_late)} late, "
            f"{len(self.actions_dropped)} dropped of {self.actions_total}; "
            f"{survey_words(self.survey_responses, self.survey_published, self.survey_mean)}; "
            f"{counted(len(self.growth_areas), 'growth area')}"
        )


def survey_words(answered: int, published: int, mean: float | None) -> str:
    """The survey in one clause: how many answered, and the mean of those published."""
    if mean is None:
        return f"survey: {counted(answered, 'answer')}, no results yet"
    return f"survey mean {mean:g} of 5 from {counted(published, 'answer')}" + (
        f" ({answered - published} more waiting)" if answered > published else ""
    )


def _draft(facts: dict[str, Any], done: list[str]) -> RetrospectiveRecord:
    """The retrospective as the facts tell it: a draft for a point person to review."""
    unfinished = facts["actions_unfinished"]
    survey = survey_words(
        facts["survey_responses"], facts.get("survey_published", 0), facts["survey_mean"]
    )
    return RetrospectiveRecord(
        improvements=[f"done: {t}" for t in done],
        next_time=(
            [f"carry the {counted(unfinished, 'open action item')} into the next cycle"]
            if unfinished
            else []
        ),
        summary=(
            f"{facts['actions_done']} of {counted(facts['actions_total'], 'action item')} done, "
            f"{facts['actions_late']} late; "
            f"{counted(len(facts['unresolved_gaps']), 'gap')} unresolved; {survey}."
        ),
    )


def _labels(items: list[ActionItem]) -> dict[int, str]:
    """Item titles, with the gaps they address added where two items share a title."""
    count = Counter(i.title for i in items)
    return {
        i.id: f"{i.title} (for {'; '.join(g.title for g in i.gaps)})"
        if count[i.title] > 1 and i.gaps
        else i.title
        for i in items
    }


def build_recap(
    session: Session,
    cycle: Cycle,
    today: date,
) -> RecapReport:
    """The recap from what happened. In recap, drafts the retrospective when nobody has
    recorded one yet (and refreshes a still unsigned draft of its own); a retrospective a
    person recorded is never touched. Carries open items into follow-up cycles started from
    this one. In closed, only reads."""
    require_phase(cycle, Phase.RECAP, Phase.CLOSED)
    items = action_service.list_actions(session, cycle_id=cycle.id)
    label = _labels(items)
    done = [label[i.id] for i in items if i.status is ActionStatus.DONE]
    carried = 0
    if cycle.phase is Phase.RECAP:  # first: the facts count what is carried as carried
        for follow_up in follow_up_cycles(session, cycle):
            if follow_up.phase is not Phase.CLOSED:
                carried += carry_over(session, cycle, follow_up, None)
    facts = recap_service.cycle_facts(session, cycle, today)
    if cycle.phase is Phase.RECAP:
        retro = recap_service.get_retrospective(session, cycle)
        own_draft = retro is not None and retro.recorded_by_id is None
        if retro is None or (own_draft and retro.signed_off_at is None and retro.facts != facts):
            draft = _draft(facts, done)
            if retro is not None:
                draft = draft.model_copy(update={"expected_version": retro.version})
            recap_service.record_retrospective(session, cycle, draft, None, today)
    retro = recap_service.get_retrospective(session, cycle)
    gaps = gap_service.list_gaps(session, cycle)
    survey = recap_service.summarize_survey(session, cycle)
    return RecapReport(
        cycle_id=cycle.id,
        title=cycle.title,
        phase=cycle.phase,
        period_start=cycle.period_start,
        period_end=cycle.period_end,
        playbook=f"{cycle.playbook.name}@{cycle.playbook.version}",
        on_date=today,
        gaps_found=len(gaps),
        gaps_by_decision=dict(Counter(g.decision.value for g in gaps)),
        decided_gaps=[
            DecidedGap(title=g.title, decision=g.decision.value, reason=g.decision_reason)
            for g in gaps
            if g.decision is not GapDecision.OPEN
        ],
        actions_total=len(items),
        actions_done=done,
        actions_dropped=[label[i.id] for i in items if i.status is ActionStatus.DROPPED],
        actions_late=[label[i.id] for i in items if i.was_late(today)],
        actions_unfinished=[label[i.id] for i in items if i.status not in FINISHED_STATUSES],
        actions_carried=[label[i.id] for i in items if i.status is ActionStatus.CARRIED_OVER],
        survey_responses=survey.responses,
        survey_published=survey.published,
        survey_mean=survey.mean,
        survey_by_team={t.team: t.mean for t in survey.by_team},
        survey_comments=survey.comments,
        improvements=list(retro.improvements) if retro else [],
        growth_areas=list(retro.growth_areas) if retro else list(facts["growth_areas"]),
        next_time=list(retro.next_time) if retro else [],
        summary=retro.summary if retro else None,
        drafted_by_flow=retro is not None and retro.recorded_by_id is None,
        signed_off_by=retro.signed_off_by.email if retro and retro.signed_off_by else None,
        follow_up_cycles=[c.id for c in follow_up_cycles(session, cycle)],
        carried_over=carried,
        sections=[s for s in [numbers_section(session, cycle, today)] if s is not None],
    )


def render_recap_markdown(report: RecapReport) -> str:
    def section(title: str, entries: list[str]) -> list[str]:
        if not entries:
            return [f"## {title}", "", "None.", ""]
        return [f"## {title}", ""] + [f"- {md(e)}" for e in entries] + [""]

    lines = [
        f"# Recap — cycle {report.cycle_id}: {report.title}",
        "",
        f"Playbook {report.playbook}, {report.period_start.isoformat()} to "
        f"{report.period_end.isoformat()}; report of {report.on_date.isoformat()} "
        f"(cycle in {phase_name(report.phase)}).",
        "",
        f"**{report.headline}.**",
        "",
    ]
    if report.summary:
        lines += [md(report.summary), ""]
    lines += ["## Gaps", ""]
    if report.decided_gaps:
        lines += ["| Gap | Decision | Reason |", "|---|---|---|"]
        lines += [
            f"| {md(g.title)} | {g.decision} | {md(g.reason or '')} |" for g in report.decided_gaps
        ]
    else:
        lines.append("No gaps were decided.")
    lines.append("")
    lines += section("Done", report.actions_done)
    lines += section("Late", report.actions_late)
    lines += section("Dropped", report.actions_dropped)
    lines += section("Still open", report.actions_unfinished)
    lines += section("Carried over to the next cycle", report.actions_carried)
    survey = survey_words(report.survey_responses, report.survey_published, report.survey_mean)
    lines += ["## Team survey", "", survey[0].upper() + survey[1:] + "."]
    if any(m is not None for m in report.survey_by_team.values()):
        lines += [""] + [f"- {team}: {m:g}" for team, m in report.survey_by_team.items() if m]
    if report.survey_comments:
        lines += ["", "Comments:", ""] + [f"- “{md(c)}”" for c in report.survey_comments]
    lines.append("")
    for extra in report.sections:
        lines += [f"## {extra.title}", ""] + [md(x) for x in extra.lines] + [""]
    lines += section("Improvements", report.improvements)
    lines += section("Growth areas", report.growth_areas)
    lines += section("Next time", report.next_time)
    retro_by = (
        "a draft made from the cycle's facts, not yet saved by a point person"
        if report.drafted_by_flow
        else "saved by a point person"
    )
    signed = (
        f"signed off by {report.signed_off_by}" if report.signed_off_by else "not signed off yet"
    )
    lines += [f"Retrospective: {retro_by}; {signed}."]
    if report.follow_up_cycles:
        ids = ", ".join(str(i) for i in report.follow_up_cycles)
        lines += ["", f"Followed up by cycle {ids}: its open action items are carried over."]
    return "\n".join(lines) + "\n"


def recap_filename(cycle_id: int) -> str:
    """The name a downloaded report gets."""
    return f"cycle-{cycle_id}-recap.md"
