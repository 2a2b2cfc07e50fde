"""A small demo organisation with cycles in every phase, built through the services.

Used by ``aligncycle serve --demo``, the web tests and the web benchmark. Everything is made the
way a person would make it (rules checked, audit log written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import phases
from models.enums import AnswerKind, GapDecision, Phase
from models.schemas import (
    ActionItemCreate,
    CheckInCreate,
    ChecklistAnswer,
    CycleCreate,
    GapCreate,
    GapDecide,
    PersonCreate,
    RetrospectiveRecord,
    SurveyRespond,
    TeamCreate,
)
from models.services import accounts, actions, cycles, gaps, people, playbooks, recap
from models.services.common import person_by_email
from models.tables import ChecklistItem, Cycle, Person, Team

PROJECT = Path(__file__).resolve().parents[2]
PLAYBOOK = "sales-marketing-handoff"

#: name, email, team, role — the same small organisation the test suite uses.
ORG = [
    ("Sam Sales", "sam@acme.test", "sales", "point_person"),
    ("Mia Marketing", "mia@acme.test", "marketing", "point_person"),
    ("Lee Saleslead", "lee@acme.test", "sales", "lead"),
    ("Lou Marketinglead", "lou@acme.test", "marketing", "lead"),
    ("Max Manager", "max@acme.test", "sales", "manager"),
    ("Meg Member", "meg@acme.test", "marketing", "member"),
    ("Sid Member", "sid@acme.test", "sales", "member"),
]


def seed_org(session: Session, playbooks_dir: Path | None = None) -> None:
    """Teams sales and marketing, the seven people of ``ORG``, the shipped playbooks."""
    existing = set(session.scalars(select(Team.key)))
    for key, name in (("sales", "Sales"), ("marketing", "Marketing")):
        if key not in existing:
            people.create_team(session, TeamCreate(key=key, name=name))
    session.flush()
    emails = set(session.scalars(select(Person.email)))
    for name, email, team, role in ORG:
        if email not in emails:
            people.create_person(
                session, PersonCreate(name=name, email=email, team=team, role=role)
            )
    playbooks.sync_directory(session, playbooks_dir or PROJECT / "playbooks")
    session.flush()


def set_passwords(session: Session, password: str, emails: list[str] | None = None) -> None:
    for email in emails or [e for _, e, _, _ in ORG]:
        accounts.set_password(session, person_by_email(session, email), password)


@dataclass
class World:
    """Ids of the demo cycles, one per phase, and a few of their objects."""

    cycles: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)


def _p(session: Session, email: str) -> Person:
    return person_by_email(session, email)


def answer_phase(session: Session, cycle: Cycle, by: Person, answer: str | None = None) -> None:
    """Answer every unanswered question of the cycle's phase (as a point person may): with
    ``answer``, or else so that no answer raises a gap (an Identify answer records the gap
    it implies, which would hold the cycle in Identify until someone decides it)."""
    spec = cycles.spec(cycle)
    for item in session.scalars(
        select(ChecklistItem).where(
            ChecklistItem.cycle_id == cycle.id,
            ChecklistItem.phase == cycle.phase,
            ChecklistItem.answer.is_(None),
        )
    ).unique():
        if item.answer_kind is not AnswerKind.YES_NO:
            text = "Agreed in the weekly sync."
        elif answer is not None:
            text = answer
        else:
            q = spec.question(item.phase, item.key)
            text = (q.calm_answer if q is not None else None) or "yes"
        phases.answer(session, item, ChecklistAnswer(answer=text), by)


def start(session: Session, title: str, start_day: date, days: int = 42) -> Cycle:
    cycle = phases.start_cycle(
        session,
        CycleCreate(
            playbook=PLAYBOOK,
            title=title,
            period_start=start_day,
            period_end=start_day + timedelta(days=days),
            point_persons=["mia@acme.test"],
        ),
        _p(session, "sam@acme.test"),
    )
    session.flush()
    return cycle


def to_plan(session: Session, cycle: Cycle, gap_titles: list[str]) -> list[int]:
    sam, lee = _p(session, "sam@acme.test"), _p(session, "lee@acme.test")
    ids = []
    for i, title in enumerate(gap_titles):
        gap, _ = gaps.add_gap(
            session,
            cycle,
            GapCreate(
                title=title,
                category=["hand_off", "lead_definition", "content", "cadence"][i % 4],
                root_cause=["process", "communication", "adoption"][i % 3],
                severity=["high", "medium", "critical", "low"][i % 4],
                evidence="Seen in the last 30 days of MQLs.",
            ),
            lee,
        )
        phases.decide_gap(session, gap, GapDecide(decision="accepted"), lee)
        ids.append(gap.id)
    answer_phase(session, cycle, sam)
    # What the numbers (and the calm answers) left open: the lead defers it to the next cycle.
    for gap in gaps.list_gaps(session, cycle, GapDecision.OPEN):
        reason = "the SLA report first; we take it up next cycle"
        phases.decide_gap(session, gap, GapDecide(decision="deferred", reason=reason), lee)
    cycles.advance_cycle(session, cycle, sam)
    return ids


def plan_actions(
    session: Session, cycle: Cycle, gap_ids: list[int], today: date, done: bool = False
) -> list[int]:
    lee = _p(session, "lee@acme.test")
    owners = [("sid@acme.test", "meg@acme.test"), ("meg@acme.test", "sid@acme.test")]
    out = []
    for i, gap_id in enumerate(gap_ids):
        owner, counterpart = owners[i % 2]
        item, _ = actions.add_action(
            session,
            cycle,
            ActionItemCreate(
                gap_id=gap_id,
                title=[
                    "Agree a 24-hour hand-off SLA",
                    "Write the shared MQL definition",
                    "Build the follow-up email kit",
                    "Start a weekly sales–marketing digest",
                ][i % 4],
                owner=owner,
                counterpart=counterpart,
                due_date=today + timedelta(days=[-3, 5, 12, 20][i % 4]),
                success_measure="Both teams sign it off",
            ),
            lee,
        )
        out.append(item.id)
    return out


def import_funnel(session: Session, folder: Path, today: date | None = None) -> int:
    """Shared numbers for the demo world: a HubSpot export of the last 200 days whose hand-off
    improves from the middle of the Execute cycle (see :mod:`aligncycle.demo_funnel`),
    imported through the hubspot profile before the cycles start (so each freezes its
    baseline). Returns the rows imported."""
    from aligncycle.demo_funnel import hubspot_mapping, write_hubspot_exports
    from models.funnel.importer import import_files

    today = today or date.today()
    paths = write_hubspot_exports(
        folder, today - timedelta(days=20), start=today - timedelta(days=200), end=today
    )
    return import_files(session, list(paths), hubspot_mapping()).rows


def build_world(session: Session, today: date | None = None) -> World:
    """Five cycles of the same two teams, one in each phase (oldest is closed)."""
    today = today or date.today()
    w = World()
    sam, mia, lee, max_ = (
        _p(session, e) for e in ("sam@acme.test", "mia@acme.test", "lee@acme.test", "max@acme.test")
    )
    meg, sid, lou = (_p(session, e) for e in ("meg@acme.test", "sid@acme.test", "lou@acme.test"))

    # closed: a whole cycle, long ago
    c = start(session, "Q1 hand-off alignment", today - timedelta(days=200))
    gap_ids = to_plan(session, c, ["Leads wait days for first contact", "No shared MQL definition"])
    acts = plan_actions(session, c, gap_ids, today - timedelta(days=170))
    answer_phase(session, c, sam)
    cycles.advance_cycle(session, c, sam)  # execute
    for a in acts[:1]:  # done two days before its date
        actions.add_checkin(
            session,
            actions.get_action(session, a),
            CheckInCreate(status="done", on_date=today - timedelta(days=175)),
            sam,
        )
    answer_phase(session, c, sam)
    cycles.advance_cycle(session, c, sam)  # recap (the period is over)
    for person, score in ((meg, 3), (sid, 2), (lou, 3)):
        recap.respond(session, c, SurveyRespond(score=score, anonymous=True), person)
    answer_phase(session, c, sam)
    recap.record_retrospective(
        session, c, RetrospectiveRecord(improvements=["First contact within a day"]), sam
    )
    recap.sign_off(session, c, max_)
    cycles.advance_cycle(session, c, sam)  # closed
    w.cycles["closed"] = c.id

    # recap: finished work, survey answers, a retrospective waiting for sign-off
    c = start(session, "Q2 hand-off alignment", today - timedelta(days=60))
    gap_ids = to_plan(
        session, c, ["Sales rejects MQLs without a reason", "Campaigns surprise sales"]
    )
    acts = plan_actions(session, c, gap_ids, today - timedelta(days=30))
    answer_phase(session, c, sam)
    cycles.advance_cycle(session, c, sam)
    for a, done in zip(acts, (31, 27), strict=True):  # two days late, then two days early
        actions.add_checkin(
            session,
            actions.get_action(session, a),
            CheckInCreate(
                status="done",
                progress=100,
                note="Done and shared",
                on_date=today - timedelta(days=done),
            ),
            sam,
        )
    answer_phase(session, c, sam)
    cycles.advance_cycle(session, c, sam)  # recap
    for person, score, comment in (
        (meg, 4, "The digest helps a lot"),
        (sid, 5, "Hand-offs are faster"),
        (lou, 4, None),
    ):
        recap.respond(
            session, c, SurveyRespond(score=score, comment=comment, anonymous=True), person
        )
    answer_phase(session, c, sam)
    recap.record_retrospective(
        session,
        c,
        RetrospectiveRecord(
            improvements=["MQL rejections now carry a reason", "Weekly digest is read"],
            next_time=["Invite sales to campaign planning"],
            summary="Both teams agree the hand-off is faster.",
        ),
        sam,
    )
    w.cycles["recap"] = c.id

    # execute: work in progress, one item overdue and at risk
    c = start(session, "Q3 hand-off alignment", today - timedelta(days=20))
    gap_ids = to_plan(
        session,
        c,
        ["Leads wait days for first contact", "Different lead definitions", "Content is missing"],
    )
    acts = plan_actions(session, c, gap_ids, today)
    answer_phase(session, c, sam)
    cycles.advance_cycle(session, c, sam)
    actions.add_checkin(
        session,
        actions.get_action(session, acts[0]),
        CheckInCreate(
            status="in_progress", confidence="at_risk", progress=40, note="Waiting on CRM"
        ),
        sid,
    )
    w.cycles["execute"] = c.id
    w.actions["execute_sid"] = acts[0]
    w.actions["execute_meg"] = acts[1]
    w.gaps["execute"] = gap_ids[0]
    w.gaps["execute_second"] = gap_ids[1]

    # plan: an accepted gap and one action item without an owner yet
    c = start(session, "Content alignment sprint", today - timedelta(days=5))
    gap_ids = to_plan(session, c, ["Sales cannot find the latest deck"])
    item, _ = actions.add_action(
        session, c, ActionItemCreate(gap_id=gap_ids[0], title="Publish one deck library"), lee
    )
    w.cycles["plan"] = c.id
    w.actions["plan_unassigned"] = item.id
    w.gaps["plan"] = gap_ids[0]

    # identify: just started, one gap reported and not decided
    c = start(session, "Lead scoring review", today)
    gap, _ = gaps.add_gap(
        session,
        c,
        GapCreate(
            title="Scores ignore product usage",
            category="lead_definition",
            root_cause="process",
            severity="medium",
        ),
        mia,
    )
    w.cycles["identify"] = c.id
    w.gaps["identify"] = gap.id
    first = session.scalars(
        select(ChecklistItem)
        .where(ChecklistItem.cycle_id == c.id, ChecklistItem.phase == Phase.IDENTIFY)
        .order_by(ChecklistItem.position)
    ).first()
    w.items["identify_first"] = first.id
    session.flush()
    return w
