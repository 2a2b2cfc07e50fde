"""Each team's own answers and the divergence map (issue 18): a team's answers stay hidden from
everyone outside it until both teams have submitted or a point person reveals them, on every
face (the map, the CSV export, the audit log and the timeline, the digest, the API, the CLI);
the reveal shows question by question, rating by rating and gap by gap where the teams agree
and differ, beside the shared number; the Identify gate waits for it."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models import phases
from models.errors import Forbidden, InvalidInput, NotFound
from models.phases import own_answers
from models.schemas import CycleCreate, PersonCreate, TeamCreate
from models.services import cycles, divergence, people, team_input
from models.services.common import person_by_email
from models.tables import Event
from tests.conftest import db_snapshot

PLAYBOOK = "lead-definition-and-scoring"
SECRET = "marketing-only-remark-7391"


def start(s: Any, playbook: str = PLAYBOOK) -> int:
    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook=playbook,
            title="Lead quality",
            period_start=date.today() - timedelta(days=3),
            point_persons=["sam@acme.test", "mia@acme.test"],
        ),
        person_by_email(s, "sam@acme.test"),
    )
    s.flush()
    return c.id


def full(cycle: Any, answer: str, rating: int, comment: str | None = None) -> Any:
    qs = team_input.questions(cycle)
    return team_input.OwnAnswers(
        answers={q.key: answer for q in qs},
        ratings={r.key: rating for r in team_input.ratings(cycle)},
        comments={qs[0].key: comment} if comment else {},
    )


def who(s: Any, name: str) -> Any:
    return person_by_email(s, f"{name}@acme.test")


@pytest.fixture
def cycle_id(org: Any) -> int:
    with org.unit_of_work() as s:
        cid = start(s)
        c = cycles.get_cycle(s, cid)
        # Marketing answers every question "yes", rates 4 of 5, and writes a remark.
        team_input.save(s, c, full(c, "yes", 4, SECRET), who(s, "meg"))
    return cid


def test_a_teams_answers_are_hidden_from_the_other_team_until_both_submit(
    org: Any, cycle_id: int
) -> None:
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cycle_id)
        assert not own_answers.submit(s, c, who(s, "mia")).revealed
        for name in ("sid", "lee", "sam", "max"):  # sales, its point person, its manager
            m = divergence.divergence_map(s, c, who(s, name))
            mkt = next(t for t in m.teams if t.team == "Marketing")
            assert mkt.submitted and not mkt.visible and not m.revealed
            assert SECRET not in m.model_dump_json() and SECRET not in divergence.to_csv(m)
            assert all(
                not side.visible and side.answer is None
                for r in m.questions
                for side in r.sides
                if side.team == "Marketing"
            )
        # Marketing's own people see their own answers; the operator (nobody) sees none.
        mine = divergence.divergence_map(s, c, who(s, "lou"))
        assert SECRET in mine.model_dump_json()
        assert SECRET not in divergence.divergence_map(s, c, None).model_dump_json()
        # The audit log (the timeline, the events API) says that Marketing submitted, not what.
        events = s.scalars(select(Event).where(Event.cycle_id == cycle_id)).all()
        logged = json.dumps([[e.verb, e.before, e.after] for e in events])
        assert "team_answers.submitted" in logged and SECRET not in logged and "yes" not in logged
        # Sales answers on its own; its submission is the last one: the answers are revealed.
        team_input.save(s, c, full(c, "no", 2), who(s, "sid"))
        done = own_answers.submit(s, c, who(s, "lee"))
        assert done.revealed
        m = divergence.divergence_map(s, c, who(s, "sid"))
        assert m.revealed and not m.early and SECRET in m.model_dump_json()


def test_the_map_shows_where_the_teams_agree_and_differ_beside_the_numbers(
    org: Any, cycle_id: int
) -> None:
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cycle_id)
        qs = team_input.questions(c)
        sales = full(c, "no", 2)
        sales.answers[qs[1].key] = "yes"  # agree on the second question
        sales.ratings["handoff_speed"] = 3  # one point from marketing's 4: not a difference
        own_answers.submit(s, c, who(s, "meg"))
        team_input.save(s, c, sales, who(s, "sid"))
        own_answers.submit(s, c, who(s, "sid"))
        m = divergence.divergence_map(s, c, who(s, "max"))
    rows = {r.key: r for r in m.questions}
    assert rows[qs[0].key].verdict == "differ" and rows[qs[1].key].verdict == "agree"
    quality = next(r for r in m.ratings if r.key == "lead_quality")
    assert [(x.team, x.rating) for x in quality.sides] == [("Sales", 2), ("Marketing", 4)]
    assert quality.verdict == "differ" and quality.spread == 2
    assert quality.kpi is not None and quality.kpi.title and quality.kpi.value == "no data"
    speed = next(r for r in m.ratings if r.key == "handoff_speed")
    assert speed.verdict == "agree" and speed.spread == 1
    # gap by gap: a question whose gap only one team's answer implies
    first = rows[qs[0].key]
    assert first.gap and first.gap_seen_by in ("Sales", "Marketing")
    assert m.differ >= 2 and m.agree >= 2


def test_point_persons_reveal_early_and_nobody_else_does(org: Any, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cycle_id)
        for name in ("lee", "max", "sid", "meg"):
            with pytest.raises(Forbidden):
                own_answers.reveal(s, c, who(s, name))
        r = own_answers.reveal(s, c, who(s, "sam"))
        assert r.early
        m = divergence.divergence_map(s, c, who(s, "sid"))
        assert m.revealed and m.early
        # marketing had not submitted: its draft shows once revealed, and no longer changes
        with pytest.raises(InvalidInput, match="revealed"):
            team_input.save(s, c, full(c, "no", 1), who(s, "meg"))


def test_the_identify_gate_waits_for_both_teams_or_the_reveal(org: Any, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cycle_id)
        blockers = cycles.readiness(s, c).blockers
        assert any(
            "own answers are not revealed" in b and "Sales and Marketing" in b for b in blockers
        )
        own_answers.submit(s, c, who(s, "meg"))
        assert any("waiting for Sales;" in b for b in cycles.readiness(s, c).blockers)
        own_answers.reveal(s, c, who(s, "mia"))
        assert not any("own answers" in b for b in cycles.readiness(s, c).blockers)


def test_refusals_change_nothing(org: Any, cycle_id: int) -> None:
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        s.flush()
        people.create_person(
            s, PersonCreate(name="Ola", email="ola@acme.test", team="support", role="lead")
        )
    before = db_snapshot(org)
    bad = [
        ("ola", team_input.OwnAnswers(answers={"written_criteria": "yes"}), NotFound),
        ("sid", team_input.OwnAnswers(answers={"no_such": "yes"}), InvalidInput),
        ("sid", team_input.OwnAnswers(answers={"written_criteria": "perhaps"}), InvalidInput),
        ("sid", team_input.OwnAnswers(ratings={"lead_quality": 6}), InvalidInput),
        ("sid", team_input.OwnAnswers(answers={"lead_quality": "yes"}), InvalidInput),
        ("sid", team_input.OwnAnswers(ratings={"written_criteria": 3}), InvalidInput),
    ]
    for name, data, error in bad:
        with pytest.raises(error), org.unit_of_work() as s:
            team_input.save(s, cycles.get_cycle(s, cycle_id), data, who(s, name))
    with pytest.raises(InvalidInput, match="before submitting"), org.unit_of_work() as s:
        team_input.submit(s, cycles.get_cycle(s, cycle_id), who(s, "sid"))
    with pytest.raises(NotFound), org.unit_of_work() as s:
        divergence.divergence_map(s, cycles.get_cycle(s, cycle_id), who(s, "ola"))
    assert db_snapshot(org) == before


def test_a_playbook_without_own_answers_asks_for_none(org: Any) -> None:
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, start(s, "sales-marketing-handoff"))
        with pytest.raises(InvalidInput, match="does not ask each team"):
            team_input.save(s, c, team_input.OwnAnswers(), who(s, "sid"))
        assert not any("own answers" in b for b in cycles.readiness(s, c).blockers)


def test_two_last_submissions_at_once_still_reveal(org: Any, cycle_id: int) -> None:
    """Two teams submitting at the same moment each see the other's submission as not yet
    committed, so neither records the reveal: both being in reveals the answers all the same."""
    from models.alignment_tables import AnswerReveal, TeamSubmission

    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cycle_id)
        for ct in c.teams:  # as the two racing transactions leave it: no reveal row
            s.add(TeamSubmission(cycle_id=c.id, team_id=ct.team_id))
        s.flush()
        assert s.scalar(select(AnswerReveal).where(AnswerReveal.cycle_id == c.id)) is None
        m = divergence.divergence_map(s, c, who(s, "sid"))
        assert m.revealed and SECRET in m.model_dump_json()
        assert not any("own answers" in b for b in cycles.readiness(s, c).blockers)
