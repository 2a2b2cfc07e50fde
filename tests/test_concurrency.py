"""Concurrent edits never silently overwrite each other.

Two sessions stand for two people (two browser tabs, a CLI and a flow run): both read the
same row, both change it; the first to commit wins, the second gets ``Conflict`` with a
one-line message, and nothing of the loser's change (nor its audit event) is stored. The
same holds for an outdated ``expected_version`` sent by a form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import phases
from models.db import Store
from models.enums import ActionStatus, GapDecision, Phase
from models.errors import Conflict, DomainError, InvalidInput
from models.schemas import (
    ActionItemAssign,
    ActionItemUpdate,
    ActionProgress,
    CheckInCreate,
    ChecklistAnswer,
    GapCreate,
    GapDecide,
    RetrospectiveRecord,
    SurveyRespond,
)
from models.services import actions, checklist, gaps, recap
from models.tables import CheckIn, Event, Gap, SurveyParticipation, SurveyResponse
from tests.conftest import db_snapshot
from tests.test_services import (
    LEE,
    LOU,
    MAX,
    MIA,
    SAM,
    SID,
    TODAY,
    C,
    P,
    add_gap,
    advance,
    answer_all,
    start,
    to_execute,
    to_recap,
)

STALE = "someone else changed this since you read it; reload and try again"


def events(store: Store, verb: str) -> int:
    with store.unit_of_work() as s:
        return s.scalar(select(func.count()).select_from(Event).where(Event.verb == verb)) or 0


def race(
    store: Store,
    read: Callable[[Session], Any],
    first: Callable[[Session], Any],
    second: Callable[[Session, Any], Any],
    error: type[DomainError] = Conflict,
) -> str:
    """``read`` in the loser's session; ``first`` runs and commits in another session; then
    the loser applies ``second`` to what it read. Returns the loser's error message."""
    with pytest.raises(error) as err, store.unit_of_work() as loser:
        loaded = read(loser)
        with store.unit_of_work() as winner:
            first(winner)
        second(loser, loaded)
    message = str(err.value)
    assert "\n" not in message
    return message


def after_check(session: Session, first: Callable[[], None]) -> None:
    """Make ``session``'s next ``scalar`` call (a service's "does it exist yet?" check) return
    its answer, and only then let ``first`` commit: the race between check and insert."""
    real = session.scalar

    def check_then_other_commits(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        session.scalar = real  # type: ignore[method-assign]
        first()
        return result

    session.scalar = check_then_other_commits  # type: ignore[method-assign]


# --- two writers on one row ----------------------------------------------------------------


def test_concurrent_action_item_updates(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version

    message = race(
        org,
        read=lambda s: (actions.get_action(s, item_id), P(s, SID)),
        first=lambda s: actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(status="done"), P(s, LEE)
        ),
        second=lambda s, loaded: actions.update_action(
            s, loaded[0], ActionItemUpdate(status="blocked"), loaded[1]
        ),
    )
    assert message == STALE
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        assert item.status is ActionStatus.DONE  # the first writer's change
        assert item.version == version + 1
    assert events(org, "action.updated") == 1  # the loser's event was rolled back too


def test_concurrent_reassignment_and_update(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    race(
        org,
        read=lambda s: (actions.get_action(s, item_id), P(s, LEE)),
        first=lambda s: actions.assign_action(
            s, actions.get_action(s, item_id), ActionItemAssign(owner=LOU), P(s, MAX)
        ),
        second=lambda s, loaded: actions.update_action(
            s, loaded[0], ActionItemUpdate(title="Renamed"), loaded[1]
        ),
    )
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        assert item.owner.email == LOU and item.title == "Agree the hand-off SLA"


def test_concurrent_gap_decisions(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        gap_id = add_gap(s, cycle_id).id
    race(
        org,
        read=lambda s: (gaps.get_gap(s, gap_id), P(s, LOU)),
        first=lambda s: phases.decide_gap(
            s, gaps.get_gap(s, gap_id), GapDecide(decision="accepted"), P(s, LEE)
        ),
        second=lambda s, loaded: phases.decide_gap(
            s, loaded[0], GapDecide(decision="rejected", reason="not ours"), loaded[1]
        ),
    )
    with org.unit_of_work() as s:
        gap = gaps.get_gap(s, gap_id)
        assert gap.decision is GapDecision.ACCEPTED and gap.decided_by.email == LEE
    assert events(org, "gap.decided") == 1


def test_concurrent_advances_move_the_cycle_once(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
    race(
        org,
        read=lambda s: C(s, cycle_id),
        first=lambda s: advance(s, cycle_id, by=SAM),
        second=lambda s, cycle: advance(s, cycle.id, by=MIA),
    )
    with org.unit_of_work() as s:
        assert C(s, cycle_id).phase is Phase.PLAN
    assert events(org, "cycle.advanced") == 1


def test_concurrent_checklist_answers(org: Store) -> None:
    cycle_id = start(org)
    with org.unit_of_work() as s:
        item_id = checklist.find_item(s, C(s, cycle_id), "identify.handoff_sla_agreed").id
    race(
        org,
        read=lambda s: (checklist.get_item(s, item_id), P(s, SAM)),
        first=lambda s: phases.answer(
            s, checklist.get_item(s, item_id), ChecklistAnswer(answer="no"), P(s, LEE)
        ),
        second=lambda s, loaded: phases.answer(
            s, loaded[0], ChecklistAnswer(answer="yes"), loaded[1]
        ),
    )
    with org.unit_of_work() as s:
        item = checklist.get_item(s, item_id)
        assert item.answer == "no" and item.answered_by.email == LEE


def test_a_revision_racing_the_signoff(org: Store) -> None:
    """A manager signs off while a point person revises: the revision must not be stored
    under a sign-off given to the earlier text (or clear a sign-off it never saw)."""
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(summary="v1"), P(s, SAM))
    race(
        org,
        read=lambda s: (recap.get_retrospective(s, C(s, cycle_id)), P(s, SAM)),
        first=lambda s: recap.sign_off(s, C(s, cycle_id), P(s, MAX)),
        second=lambda s, loaded: recap.record_retrospective(
            s, C(s, cycle_id), RetrospectiveRecord(summary="v2"), loaded[1]
        ),
    )
    with org.unit_of_work() as s:
        retro = recap.get_retrospective(s, C(s, cycle_id))
        assert retro.summary == "v1" and retro.signed_off_by.email == MAX


# --- outdated expected_version -------------------------------------------------------------


def refused_stale(store: Store, call: Callable[[Session], Any], label: str) -> None:
    before = db_snapshot(store)
    with pytest.raises(Conflict) as err, store.unit_of_work() as s:
        call(s)
    assert re.fullmatch(
        rf"{label} was changed by someone else since you read it; reload it to see their "
        r"change, then make yours again",
        str(err.value),
    ), str(err.value)
    assert db_snapshot(store) == before


def test_outdated_expected_versions_are_refused(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)  # the cycle has been advanced twice
    other = start(org, title="Second")  # still in identify, where gaps are decided
    with org.unit_of_work() as s:
        actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(priority="high"), P(s, LEE)
        )
        answered = checklist.find_item(s, C(s, cycle_id), "execute.how_we_know")
        phases.answer(s, answered, ChecklistAnswer(answer="SLA report"), P(s, LEE))
        gap = add_gap(s, other)
        phases.decide_gap(s, gap, GapDecide(decision="deferred"), P(s, LEE))
        item_ref, gap_id = answered.id, gap.id  # every row here is past version 1 now

    refused_stale(
        org,
        lambda s: actions.update_action(
            s,
            actions.get_action(s, item_id),
            ActionItemUpdate(status="done", expected_version=1),
            P(s, SID),
        ),
        f"action item {item_id}",
    )
    refused_stale(
        org,
        lambda s: actions.assign_action(
            s,
            actions.get_action(s, item_id),
            ActionItemAssign(owner=LEE, expected_version=1),
            P(s, MAX),
        ),
        f"action item {item_id}",
    )
    refused_stale(
        org,
        lambda s: phases.answer(
            s,
            checklist.get_item(s, item_ref),
            ChecklistAnswer(answer="dashboard", expected_version=1),
            P(s, LEE),
        ),
        f"checklist item {item_ref}",
    )
    refused_stale(org, lambda s: advance(s, cycle_id, expected_version=1), f"cycle {cycle_id}")
    refused_stale(
        org,
        lambda s: phases.decide_gap(
            s,
            gaps.get_gap(s, gap_id),
            GapDecide(decision="accepted", expected_version=1),
            P(s, LEE),
        ),
        f"gap {gap_id}",
    )


def test_the_current_expected_version_is_accepted(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        actions.update_action(
            s, item, ActionItemUpdate(status="done", expected_version=item.version), P(s, SID)
        )
        assert item.status is ActionStatus.DONE


def test_an_outdated_signoff_is_refused(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)
    with org.unit_of_work() as s:
        retro = recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        recap.record_retrospective(
            s,
            C(s, cycle_id),
            RetrospectiveRecord(summary="revised", expected_version=retro.version),
            P(s, MIA),
        )
    refused_stale(
        org,
        lambda s: recap.sign_off(s, C(s, cycle_id), P(s, MAX), expected_version=1),
        f"the retrospective of cycle {cycle_id}",
    )


# --- two writers inserting the same natural key --------------------------------------------


def test_the_same_gap_reported_twice_at_once(org: Store) -> None:
    cycle_id = start(org)
    data = GapCreate(title="MQLs wait days", category="hand_off", root_cause="process", key="wait")

    def other_reports() -> None:
        with org.unit_of_work() as s:
            gaps.add_gap(s, C(s, cycle_id), data, P(s, LEE))

    with pytest.raises(Conflict) as err, org.unit_of_work() as s:
        cycle, lou = C(s, cycle_id), P(s, LOU)
        after_check(s, other_reports)
        gaps.add_gap(s, cycle, data, lou)
    assert str(err.value) == "gap 'wait' was just added by someone else; reload"
    with org.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Gap)) == 1
        assert gaps.list_gaps(s, C(s, cycle_id))[0].reported_by.email == LEE
    assert events(org, "gap.added") == 1


def test_a_double_submitted_survey_answer(org: Store) -> None:
    cycle_id = start(org)
    to_recap(org, cycle_id)

    def other_tab() -> None:
        with org.unit_of_work() as s:
            recap.respond(s, C(s, cycle_id), SurveyRespond(score=4), P(s, SID))

    with pytest.raises(InvalidInput) as err, org.unit_of_work() as s:
        cycle, sid = C(s, cycle_id), P(s, SID)
        after_check(s, other_tab)
        recap.respond(s, cycle, SurveyRespond(score=2, anonymous=True), sid)
    assert str(err.value) == f"you already answered the survey of cycle {cycle_id}"
    with org.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(SurveyParticipation)) == 1
        [answer] = s.scalars(select(SurveyResponse)).all()
        assert answer.score == 4
    assert events(org, "survey.published") == 0  # one answer waits for its batch


# --- many people at once on one item --------------------------------------------------------


def _at_once(store: Store, n: int, work: Callable[[Session, int], Any]) -> list[BaseException]:
    """``n`` threads, each running ``work`` in its own unit of work (its own connection, as
    ``n`` web workers would). Returns the errors."""
    import threading

    from models.db import make_engine

    engine = make_engine(store.engine.url.render_as_string(hide_password=False), pool_size=n)
    many = Store(engine)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with many.unit_of_work() as s:
                work(s, i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        engine.dispose()
    assert not any(t.is_alive() for t in threads)
    return errors


def test_twenty_simultaneous_check_ins_on_one_item_all_land(org: Store) -> None:
    """A check-in appends. Twenty people check in on one open item at the same moment, all
    saying it is in progress now: half from the page (with the version it showed), half
    through the API or the CLI (with none). All twenty land; the first moves the status, for
    the others it already is what they say; the item changes once."""
    import threading

    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version
    barrier = threading.Barrier(20)

    def check_in(s: Session, i: int) -> None:
        item, sid = actions.get_action(s, item_id), P(s, SID)
        barrier.wait(timeout=60)  # every one has read the open item before anyone writes
        if i % 2:
            form = ActionProgress(status="in_progress", note=f"note {i}", expected_version=version)
            phases.update_action(s, item, form, sid, TODAY)
        else:
            actions.add_checkin(s, item, CheckInCreate(status="in_progress", note=f"note {i}"), sid)

    errors = _at_once(org, 20, check_in)
    assert errors == []
    with org.unit_of_work() as s:
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id)).all()
        assert sorted(n for n in notes if n) == sorted(f"note {i}" for i in range(20))
        item = actions.get_action(s, item_id)
        assert item.status is ActionStatus.IN_PROGRESS and item.version == version + 1
    assert events(org, "checkin.added") == 20


def test_two_simultaneous_status_changes_do_not_overwrite_each_other(org: Store) -> None:
    """Compare-and-set: both read the item; one status change lands, the other is refused
    with a conflict, and its check-in with it."""
    import threading

    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version
    barrier = threading.Barrier(2)
    wanted = ["blocked", "done"]

    def change(s: Session, i: int) -> None:
        item, who = actions.get_action(s, item_id), P(s, [SID, LEE][i])
        barrier.wait(timeout=60)
        form = ActionProgress(status=wanted[i], note=wanted[i], expected_version=version)
        phases.update_action(s, item, form, who, TODAY)

    errors = _at_once(org, 2, change)
    assert len(errors) == 1 and isinstance(errors[0], Conflict), errors
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        assert item.version == version + 1 and item.status.value in wanted
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id)).all()
        assert notes == [item.status.value]  # the loser's check-in was rolled back with it
