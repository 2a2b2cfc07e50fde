"""The vote on the gaps (issue 18): a budget a person (the playbook's, 3 by default, at most 2
on one gap), the totals hidden from everyone until a point person closes the vote, the gaps
then in order of votes and severity, and a Plan gate that can ask the top-voted gaps to have
an action item."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from aligncycle.web import seed
from models import phases
from models.enums import GapCategory, RootCause, Severity
from models.errors import Forbidden, InvalidInput
from models.phases import own_answers
from models.schemas import ActionItemCreate, CycleCreate, GapCreate, GapDecide
from models.services import actions, cycles, gaps, votes
from models.services.common import person_by_email
from tests.conftest import PG_URL, db_snapshot


def who(s: Any, name: str) -> Any:
    return person_by_email(s, f"{name}@acme.test")


def start(s: Any, playbook: str) -> Any:
    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook=playbook,
            title="Which gaps first",
            period_start=date.today() - timedelta(days=3),
            point_persons=["sam@acme.test", "mia@acme.test"],
        ),
        who(s, "sam"),
    )
    s.flush()
    return c


def add(s: Any, c: Any, title: str, severity: Severity) -> int:
    g, _ = gaps.add_gap(
        s,
        c,
        GapCreate(
            title=title,
            category=GapCategory.HAND_OFF,
            root_cause=RootCause.PROCESS,
            severity=severity,
        ),
        who(s, "lee"),
    )
    return g.id


@pytest.fixture
def voting(org: Any) -> tuple[int, list[int]]:
    with org.unit_of_work() as s:
        c = start(s, "sales-marketing-handoff")
        ids = [
            add(s, c, "Leads wait in a shared inbox", Severity.MEDIUM),
            add(s, c, "No written MQL definition", Severity.HIGH),
            add(s, c, "Campaigns start without a briefing", Severity.LOW),
        ]
    return c.id, ids


def test_votes_are_hidden_until_the_vote_closes_then_ordered_by_votes_and_severity(
    org: Any, voting: tuple[int, list[int]]
) -> None:
    cid, (inbox, mql, brief) = voting
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cid)
        votes.cast(s, c, votes.Ballot(votes={inbox: 2, brief: 1}), who(s, "sid"))
        votes.cast(s, c, votes.Ballot(votes={mql: 2}), who(s, "meg"))
        # While open: everyone sees only their own votes and how many people voted.
        for name in ("lee", "sam", "max", "meg"):
            v = votes.view(s, c, who(s, name))
            assert not v.closed and v.voters == 2
            assert all(g.total is None and g.rank is None for g in v.gaps)
        lee = votes.view(s, c, who(s, "lee"))
        assert [g.mine for g in lee.gaps] == [0, 0, 0] and lee.votes_left == 3
        sid = votes.view(s, c, who(s, "sid"))
        assert [g.mine for g in sid.gaps] == [2, 0, 1] and sid.votes_left == 0
        assert all(g.total is None for g in votes.view(s, c, None).gaps)
        with pytest.raises(Forbidden):
            votes.close(s, c, who(s, "lee"))
        votes.close(s, c, who(s, "mia"))
        closed = votes.view(s, c, who(s, "lee"))
    # inbox and mql tie on 2 votes: the more severe (mql, high) comes first
    assert [(g.id, g.total, g.rank) for g in closed.gaps] == [
        (mql, 2, 1),
        (inbox, 2, 2),
        (brief, 1, 3),
    ]
    with pytest.raises(InvalidInput, match="closed"), org.unit_of_work() as s:
        votes.cast(s, cycles.get_cycle(s, cid), votes.Ballot(votes={brief: 1}), who(s, "lee"))


def test_budgets_are_enforced_and_a_refused_ballot_changes_nothing(
    org: Any, voting: tuple[int, list[int]]
) -> None:
    cid, (inbox, mql, brief) = voting
    with org.unit_of_work() as s:
        votes.cast(s, cycles.get_cycle(s, cid), votes.Ballot(votes={inbox: 1}), who(s, "sid"))
    before = db_snapshot(org)
    refused = [
        ({inbox: 3}, "at most 2 votes on one gap"),
        ({inbox: 2, mql: 2}, "3 votes in all"),
        ({inbox: -1}, "negative"),
        ({999999: 1}, "no gap with id 999999"),
    ]
    for ballot, message in refused:
        with pytest.raises(InvalidInput, match=message), org.unit_of_work() as s:
            votes.cast(s, cycles.get_cycle(s, cid), votes.Ballot(votes=ballot), who(s, "sid"))
    assert db_snapshot(org) == before
    # a ballot replaces the person's votes: one left out has none
    with org.unit_of_work() as s:
        c = cycles.get_cycle(s, cid)
        assert votes.cast(s, c, votes.Ballot(votes={mql: 2, brief: 1}), who(s, "sid")) == 0
        assert [g.mine for g in votes.view(s, c, who(s, "sid")).gaps] == [0, 2, 1]


def test_the_plan_gate_asks_the_top_voted_gaps_to_have_an_action_item(org: Any) -> None:
    """lead-definition-and-scoring asks the two gaps with the most votes to have actions."""
    with org.unit_of_work() as s:
        c = start(s, "lead-definition-and-scoring")
        own_answers.reveal(s, c, who(s, "sam"))
        seed.answer_phase(s, c, who(s, "sam"))
        cycles.advance_cycle(s, c, who(s, "sam"))
        ids = [
            add(s, c, "Scores nobody trusts", Severity.MEDIUM),
            add(s, c, "Rejected leads are lost", Severity.HIGH),
            add(s, c, "No feedback on lead quality", Severity.LOW),
        ]
        assert "the vote on the gaps is not closed yet" in cycles.readiness(s, c).blockers
        votes.cast(s, c, votes.Ballot(votes={ids[0]: 2, ids[2]: 1}), who(s, "sid"))
        votes.cast(s, c, votes.Ballot(votes={ids[2]: 2}), who(s, "meg"))
        votes.close(s, c, who(s, "sam"))
        blockers = cycles.readiness(s, c).blockers
        assert (
            "2 top-voted gaps without an action item: No feedback on lead quality, "
            "Scores nobody trusts" in blockers
        )
        for gid in (ids[0], ids[2]):  # accepted (the single-record verb: no proposals)
            gaps.decide_gap(s, gaps.get_gap(s, gid), GapDecide(decision="accepted"), who(s, "lee"))
        actions.add_action(
            s,
            c,
            ActionItemCreate(title="Review the scoring model", gap_ids=[ids[0], ids[2]]),
            who(s, "lee"),
        )
        assert not any("top-voted" in b for b in cycles.readiness(s, c).blockers)


def test_only_people_of_the_cycles_teams_vote(org: Any, voting: tuple[int, list[int]]) -> None:
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people

    cid, (inbox, _, _) = voting
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        s.flush()
        people.create_person(
            s, PersonCreate(name="Mo", email="mo@acme.test", team="support", role="manager")
        )
    with (
        pytest.raises(Forbidden, match="only people of Sales and Marketing"),
        org.unit_of_work() as s,
    ):
        votes.cast(s, cycles.get_cycle(s, cid), votes.Ballot(votes={inbox: 1}), who(s, "mo"))


def test_what_is_left_to_do_lists_own_answers_and_votes(
    org: Any, voting: tuple[int, list[int]]
) -> None:
    from models.services import alignment_todo

    cid, (inbox, _, _) = voting
    with org.unit_of_work() as s:
        own = start(s, "lead-definition-and-scoring")
        todo = {(t.kind, t.cycle_id): t for t in alignment_todo.todo(s, who(s, "sid"))}
        assert ("own_answers", own.id) in todo and ("vote", cid) in todo
        assert todo[("vote", cid)].text == "Vote on the gaps of “Which gaps first”: 3 votes left"
        assert todo[("own_answers", own.id)].href == f"/cycles/{own.id}/own-answers"
        votes.cast(s, cycles.get_cycle(s, cid), votes.Ballot(votes={inbox: 2}), who(s, "sid"))
        left = {t.cycle_id: t.text for t in alignment_todo.todo(s, who(s, "sid"))}
        assert left[cid].endswith("1 vote left")
        own_answers.reveal(s, own, who(s, "sam"))
        votes.close(s, cycles.get_cycle(s, cid), who(s, "sam"))
        assert alignment_todo.todo(s, who(s, "sid")) == []


@pytest.mark.skipif(not PG_URL, reason="row locks are PostgreSQL's; SQLite has one writer")
def test_two_ballots_of_one_person_at_once_never_spend_the_budget_twice(
    org: Any, voting: tuple[int, list[int]]
) -> None:
    """Two tabs of one person save ballots at the same moment: the second waits for the first
    and replaces it, so the person never holds more than their budget."""
    import threading
    import time

    from sqlalchemy import func, select

    from models.alignment_tables import GapVote

    cid, (inbox, mql, _) = voting
    first, second = org.sessions(), org.sessions()
    try:
        votes.cast(
            first, cycles.get_cycle(first, cid), votes.Ballot(votes={inbox: 2}), who(first, "sid")
        )
        done: dict[str, Any] = {}

        def other_tab() -> None:
            try:
                c = cycles.get_cycle(second, cid)
                done["left"] = votes.cast(
                    second, c, votes.Ballot(votes={mql: 2}), who(second, "sid")
                )
                second.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                done["error"] = exc
                second.rollback()

        tab = threading.Thread(target=other_tab)
        tab.start()
        time.sleep(0.5)
        assert tab.is_alive(), done  # waiting for the first ballot's lock
        first.commit()
        tab.join(timeout=10)
        assert done.get("left") == 1, done
    finally:
        first.close()
        second.close()
    with org.unit_of_work() as s:
        held = s.execute(
            select(GapVote.gap_id, func.sum(GapVote.votes)).group_by(GapVote.gap_id)
        ).all()
    assert held == [(mql, 2)]
