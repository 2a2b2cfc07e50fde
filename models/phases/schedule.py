"""Cycles that start on a schedule: a playbook declares ``settings.starts_every`` (a month, a
quarter, a half-year or a year), and when the latest cycle of a team pair on that playbook has
run its course (the next start date has come), the next cycle starts: same playbook (newest
version), same teams, its point persons filled in by role (the previous point person while
still a point person of the team, else the team's first active point person), the previous
cycle's open action items and deferred gaps carried over and its SLA breaches raised as gaps
(:func:`models.phases.lifecycle.start_cycle`), and the point persons told through the cadence's
outbox (one message per person and channel, natural key ``scheduled:<cycle>:p<person>``).

Idempotent: a cycle with a follow-up is never followed again, so a re-run starts nothing twice.
The previous cycle must have reached Recap (its results are what carries over); until then it
is reported as waiting. Run by the ``scheduled-starts`` job (:mod:`flows.cadence`), the CLI
(``aligncycle cycle start-scheduled``) and the API.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.cadence.directory import Directory
from models.cadence.planning import PlanResult, message_to, store_plan
from models.cadence.tables import NotificationKind
from models.enums import Phase, Role
from models.phases.lifecycle import start_cycle
from models.schemas import CycleCreate
from models.services.cycles import spec
from models.services.people import require_admin
from models.tables import ActionItem, Cycle, Gap, Person, Playbook
from models.words import counted, day, phase_name

MONTHS = {"month": 1, "quarter": 3, "half-year": 6, "year": 12}
EVERY_WORDS = {
    "month": "monthly",
    "quarter": "quarterly",
    "half-year": "half-yearly",
    "year": "yearly",
}


class ScheduledStart(BaseModel):
    """What the schedule did for one team pair's latest cycle."""

    from_cycle_id: int
    from_title: str
    starts_on: date
    cycle_id: int | None = None
    title: str | None = None
    point_persons: list[str] = []
    carried_over: int = 0
    gaps: int = 0
    #: Why nothing started, in a sentence (None: it started).
    waiting: str | None = None


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def next_start(cycle: Cycle) -> date | None:
    """When the cycle after ``cycle`` starts on its playbook's schedule (None: no schedule)."""
    every = spec(cycle).settings.starts_every
    return None if every is None else add_months(cycle.period_start, MONTHS[every])


def _latest_scheduled(session: Session) -> list[Cycle]:
    """The latest cycle of each (playbook, team pair) whose playbook starts on a schedule and
    that has no follow-up yet."""
    cycles = session.scalars(
        select(Cycle)
        .options(selectinload(Cycle.teams), selectinload(Cycle.playbook))
        .join(Playbook, Playbook.id == Cycle.playbook_id)
        .order_by(Cycle.period_start, Cycle.id)
    ).all()
    latest: dict[tuple[str, frozenset[int]], Cycle] = {}
    for c in cycles:
        latest[(c.playbook.name, frozenset(ct.team_id for ct in c.teams))] = c
    followed = set(
        session.scalars(select(Cycle.previous_cycle_id).where(Cycle.previous_cycle_id.is_not(None)))
    )
    return [c for c in latest.values() if c.id not in followed and spec(c).settings.starts_every]


def _point_person(session: Session, cycle: Cycle, team_id: int) -> Person | None:
    """The team's point person for the next cycle, by role: the previous one while still an
    active point person of the team, else the team's first active point person."""
    before = next((ct.point_person for ct in cycle.teams if ct.team_id == team_id), None)
    if (
        before is not None
        and before.active
        and before.role is Role.POINT_PERSON
        and before.team_id == team_id
    ):
        return before
    return session.scalar(
        select(Person)
        .where(Person.team_id == team_id, Person.role == Role.POINT_PERSON, Person.active)
        .order_by(Person.id)
        .limit(1)
    )


def start_due(session: Session, today: date) -> list[ScheduledStart]:
    """Start every cycle whose scheduled start date has come (see the module's docstring)."""
    out = []
    for previous in _latest_scheduled(session):
        starts_on = next_start(previous)
        if starts_on is None or starts_on > today:
            continue
        done = ScheduledStart(
            from_cycle_id=previous.id, from_title=previous.title, starts_on=starts_on
        )
        out.append(done)
        if previous.phase not in (Phase.RECAP, Phase.CLOSED):
            done.waiting = (
                f"“{previous.title}” is still in {phase_name(previous.phase)}; the next cycle "
                "starts once it has reached Recap"
            )
            continue
        chosen = [(ct.team, _point_person(session, previous, ct.team_id)) for ct in previous.teams]
        missing = [team.name for team, p in chosen if p is None]
        if missing:
            done.waiting = (
                f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no active point "
                "person: a manager gives the team one, then the next cycle starts"
            )
            continue
        people = [p for _, p in chosen if p is not None]
        pb = spec(previous)
        every = pb.settings.starts_every
        assert every is not None
        ends_on = add_months(starts_on, MONTHS[every]) - timedelta(days=1)
        title = f"{pb.title}, {day(starts_on)} to {day(ends_on)}"
        cycle = start_cycle(
            session,
            CycleCreate(
                playbook=previous.playbook.name,
                title=title[:200],
                teams=[ct.team.key for ct in previous.teams],
                point_persons=[p.email for p in people],
                previous_cycle_id=previous.id,
                period_start=starts_on,
                period_end=ends_on,
            ),
            people[0],
            today,
        )
        session.flush()
        done.cycle_id, done.title = cycle.id, cycle.title
        done.point_persons = [p.name for p in people]
        done.carried_over = len(
            session.scalars(
                select(ActionItem.id).where(
                    ActionItem.cycle_id == cycle.id, ActionItem.carried_from_id.is_not(None)
                )
            ).all()
        )
        done.gaps = len(session.scalars(select(Gap.id).where(Gap.cycle_id == cycle.id)).all())
    return out


def plan_scheduled_starts(session: Session, today: date, policy: object = None) -> PlanResult:
    """The ``scheduled-starts`` job: start the cycles that are due and tell their point persons
    (what started, what came over, where to begin); a pair still waiting is reported."""
    return start_and_tell(session, today)[1]


def start_scheduled_now(
    session: Session, actor: Person | None, today: date
) -> list[ScheduledStart]:
    """A manager starts the cycles that are due now, as the daily job would (the API and the
    CLI): the same starts and the same messages, planned once."""
    require_admin(session, actor, "start the scheduled cycles")
    return start_and_tell(session, today)[0]


def start_and_tell(session: Session, today: date) -> tuple[list[ScheduledStart], PlanResult]:
    result = PlanResult(kind="cycle_started")
    starts = start_due(session, today)
    result.candidates = len(starts)
    result.changed = sum(1 for s in starts if s.cycle_id is not None)
    result.details["waiting"] = [s.waiting for s in starts if s.waiting]
    if not result.changed:
        return starts, result
    directory = Directory.load(session)
    messages = []
    for s in starts:
        if s.cycle_id is None:
            continue
        cycle = session.get(Cycle, s.cycle_id)
        assert cycle is not None
        every = EVERY_WORDS[spec(cycle).settings.starts_every or "quarter"]
        for ct in cycle.teams:
            p = ct.point_person
            if p is None:
                continue
            key = f"scheduled:{cycle.id}:p{p.id}"
            messages.append(
                message_to(
                    directory,
                    p,
                    key=key,
                    kind=NotificationKind.CYCLE_STARTED,
                    subject=f"A new cycle started: {cycle.title}",
                    body=(
                        f"Hi {p.name},\n\nThe {every} cycle “{cycle.title}” started today, "
                        f"following “{s.from_title}”. You are its point person for {ct.team.name}."
                        f"\n\n{counted(s.carried_over, 'open action item')} came over from the "
                        f"previous cycle, and it starts with {counted(s.gaps, 'gap')} to decide "
                        "or keep working on. Begin with Identify: the questions and the gaps are "
                        "waiting on the cycle's page."
                    ),
                    cycle_id=cycle.id,
                )
            )
    return starts, store_plan(session, messages, result)
