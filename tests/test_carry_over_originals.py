"""An item carried into the follow-up cycle is finished in its old cycle: "carried over to
<the next cycle>". The old cycle's counts, recap, overdue items and people's lists no longer
count it as unfinished work; its pages say where the work went (with a link); nobody can set
it open again there; its check-ins stay. Migration 0024 does the same for the items carried
before."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, text

from migrations import runner
from models import phases
from models.db import Store, make_engine
from models.enums import ActionStatus, Confidence, Phase
from models.errors import InvalidInput
from models.phases.recap import build_recap
from models.schemas import ActionItemUpdate, CycleCreate
from models.services import actions, cycles, recap, story, views
from models.services.inbox import owned_where
from models.tables import ActionItem, CheckIn, Event
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
from tests.test_carry_over import LATER, close_with_follow_up, first_cycle_in_recap
from tests.test_cli import cli
from tests.test_services import LEE, SAM, SID, START, C, P, refused


def _copies(store: Store, second: int) -> dict[str, int]:
    """The follow-up's copies, by title: their ids."""
    with store.unit_of_work() as s:
        return {a.title: a.id for a in actions.list_actions(s, cycle_id=second)}


def test_the_old_cycle_no_longer_counts_carried_items_as_unfinished(org: Store) -> None:
    first, ids = first_cycle_in_recap(org)
    with org.unit_of_work() as s:  # before: "Overdue" is overdue, two items unfinished
        before = views.counts(s, C(s, first), LATER)
        assert (before.actions_overdue, before.actions_finished) == (2, 1)
        note = CheckIn(
            action_item_id=ids["overdue"],
            on_date=START,
            status=ActionStatus.IN_PROGRESS,
            confidence=Confidence.AT_RISK,
            note="waiting for the CRM fields",
        )
        s.add(note)
        s.flush()
        checkin = note.id
    second = close_with_follow_up(org, first)
    with org.unit_of_work() as s:
        old = C(s, first)
        counts = views.counts(s, old, LATER)
        assert counts.actions_total == 3
        assert (counts.actions_done, counts.actions_carried, counts.actions_finished) == (1, 2, 3)
        assert counts.actions_overdue == 0 and counts.actions_at_risk == 0
        assert counts.actions_by_status == {ActionStatus.DONE: 1, ActionStatus.CARRIED_OVER: 2}
        # the board's and the API's counts say the same
        board = cycles.board_counts(s, [first], LATER)[first]
        assert (board.actions_carried, board.actions_finished, board.actions_overdue) == (2, 3, 0)
        # the recap's facts: nothing left unfinished, nothing late, two carried
        facts = recap.cycle_facts(s, old, LATER)
        assert facts["actions_unfinished"] == 0 and facts["actions_carried"] == 2
        assert facts["actions_late"] == 2  # their dates passed in this cycle: late here
        report = build_recap(s, old, LATER)
        assert sorted(report.actions_carried) == ["Overdue", "Soon"]
        assert report.actions_unfinished == []
        # the actions page's filters: not overdue, not open; "carried over" finds them
        overdue = actions.ActionFilters(cycle_id=first, due="overdue")
        assert actions.list_actions(s, overdue, today=LATER) == []
        assert actions.list_actions(s, cycle_id=first, open_only=True) == []
        carried = actions.ActionFilters(cycle_id=first, status=ActionStatus.CARRIED_OVER)
        listed = actions.list_actions(s, carried, today=LATER)
        assert {a.id for a in listed} == {ids["soon"], ids["overdue"]}
        # each knows its copy; the copy holds the work (unfinished, in the follow-up)
        for item in listed:
            assert item.carried_to.cycle_id == second and item.carried_to_cycle_id == second
            assert not item.carried_to.status.finished
        # its history stays with it
        assert s.get(CheckIn, checkin).action_item_id == ids["overdue"]
        # logged as a status change, from the status it had
        logged = s.scalar(
            select(Event).where(Event.verb == "action.updated", Event.object_id == ids["overdue"])
        )
        assert logged.before == {"status": "open"}
        assert logged.after == {"status": "carried_over", "reason": "carried over to “Q2”"}
        [told] = story.tell(s, [logged])  # the cycle's history, in words
        assert told.text.endswith("marked “Overdue” carried over to “Q2”.")
    # the command line says it in words
    table = cli("action", "list", "--cycle", first).stdout
    assert table.count("carried over") == 2 and "carried_over" not in table


def test_the_old_cycle_page_says_where_the_work_went(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    first, ids = first_cycle_in_recap(org)
    second = close_with_follow_up(org, first)
    copies = _copies(org, second)
    web = surfaces.browser(LEE)
    page = web.get(f"/cycles/{first}/actions").text
    for title in ("Soon", "Overdue"):
        link = f'<a href="/cycles/{second}/actions#action-{copies[title]}">Q2</a>'
        assert f"Carried over to {link}" in page
    assert page.count('<span class="badge carried_over">Carried over</span>') == 2
    assert "Overdue ·" not in page and "carried_over<" not in page
    # the overview's counts: one of three done, two carried over to the follow-up
    overview = web.get(f"/cycles/{first}").text
    assert f'2 carried over to <a href="/cycles/{second}">Q2</a>' in overview
    # the recap: the completion chart has them apart from the unfinished work
    recap_page = web.get(f"/cycles/{first}/recap")
    assert recap_page.status_code == 200 and "carried_over" not in recap_page.text
    assert "Not finished: 0; Dropped: 0; Carried over: 2" in recap_page.text
    # the filter offers the status in words, and finds them
    assert '<option value="carried_over" >Carried over</option>' in page
    only = web.get(f"/cycles/{first}/actions?status=carried_over").text
    assert only.count("Carried over to <a") == 2
    # the API: the status, the copy and its cycle; the cycle's counts
    item = surfaces.api(LEE, "GET", f"/actions/{ids['soon']}").json()
    assert item["status"] == "carried_over"
    assert (item["carried_to_id"], item["carried_to_cycle_id"]) == (copies["Soon"], second)
    counts = surfaces.api(LEE, "GET", f"/cycles/{first}").json()["counts"]
    assert (counts["actions_carried"], counts["actions_overdue"]) == (2, 0)


def _follow_up_while_in_recap(store: Store) -> tuple[int, int, dict[str, int]]:
    """The first cycle still in Recap (a working phase: its items are read for My work and
    may be updated), its follow-up started from it."""
    first, ids = first_cycle_in_recap(store)
    with store.unit_of_work() as s:
        data = CycleCreate(
            playbook=C(s, first).playbook.name,
            title="Q2",
            previous_cycle_id=first,
            period_start=LATER,
            point_persons=["mia@acme.test"],
        )
        second = phases.start_cycle(s, data, P(s, SAM), today=LATER).id
        assert C(s, first).phase is Phase.RECAP
    return first, second, ids


def test_my_work_and_the_inbox_list_only_the_copies(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    first, second, ids = _follow_up_while_in_recap(org)
    copies = _copies(org, second)
    with org.unit_of_work() as s:
        mine, total, overdue = views.my_actions(s, P(s, SID), today=LATER)
        assert {a.id for a in mine} == set(copies.values()) and total == 2
        assert overdue == 0  # the copies are due in the new period; the originals are not work
        owned = s.scalars(select(ActionItem.id).where(*owned_where(P(s, SID)))).all()
        assert ids["soon"] not in owned and ids["overdue"] not in owned
    inbox = surfaces.api(SID, "GET", "/me/inbox").json()
    assert inbox["own_items"] == 2
    page = surfaces.browser(SID).get("/my").text
    assert f'id="action-{ids["soon"]}"' not in page and f'id="action-{copies["Soon"]}"' in page


def test_a_carried_item_cannot_be_set_open_again(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    first, second, ids = _follow_up_while_in_recap(org)
    copies = _copies(org, second)
    item_id = ids["overdue"]
    said = f"“Overdue” was carried over to “Q2”: update it there (action item {copies['Overdue']})"
    refused(
        org,
        InvalidInput,
        re.escape(said),
        lambda s: actions.update_action(
            s, actions.get_action(s, item_id), ActionItemUpdate(status="open"), P(s, LEE)
        ),
    )
    # the web form: no update form on its box; a posted one is refused in one sentence
    page = surfaces.browser(SID).get(f"/cycles/{first}/actions").text
    assert f'action="/actions/{item_id}/update"' not in page
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version
    resp = surfaces.post_form(SID, f"/actions/{item_id}/update", status="open", version=version)
    assert 400 <= resp.status_code < 500 and said in resp.text
    # the API and the command line refuse it the same way
    resp = surfaces.api(LEE, "PATCH", f"/actions/{item_id}", {"status": "in_progress"})
    assert 400 <= resp.status_code < 500 and said in resp.json()["error"]["message"]
    out = cli("action", "update", item_id, "--status", "open", "--as", LEE, code=1)
    assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1
    # and nobody chooses "carried over" for another item (the first cycle's done one)
    with org.unit_of_work() as s:
        done = s.scalar(
            select(ActionItem.id).where(ActionItem.cycle_id == first, ActionItem.title == "Done")
        )
    refused(
        org,
        InvalidInput,
        "an item is carried over when its cycle is followed up: choose another status",
        lambda s: actions.update_action(
            s, actions.get_action(s, done), ActionItemUpdate(status="carried_over"), P(s, LEE)
        ),
    )
    with org.unit_of_work() as s:
        assert actions.get_action(s, item_id).status is ActionStatus.CARRIED_OVER


def test_0024_backfills_the_items_carried_before(database_url: str, org: Store) -> None:
    """A store carried over by the old code (originals left unfinished): upgrading from 0023
    makes them carried over, logged; downgrading gives each its status back."""
    first, ids = first_cycle_in_recap(org)
    second = close_with_follow_up(org, first)
    engine = make_engine(database_url)
    try:
        runner.downgrade(engine, "0023")
        with engine.begin() as conn:
            statuses = dict(
                conn.execute(
                    text("SELECT id, status FROM action_items WHERE cycle_id = :c"), {"c": first}
                ).all()
            )
            # the downgrade gave them their statuses back, as the audit log has them
            assert statuses[ids["soon"]] == statuses[ids["overdue"]] == "open"
            # as the old code left them: one in progress, one open
            conn.execute(
                text("UPDATE action_items SET status = 'in_progress' WHERE id = :id"),
                {"id": ids["soon"]},
            )
        runner.upgrade(engine)
        runner.check(engine)
        with engine.connect() as conn:
            rows = dict(
                conn.execute(
                    text("SELECT id, status FROM action_items WHERE cycle_id = :c"), {"c": first}
                ).all()
            )
            assert rows[ids["soon"]] == rows[ids["overdue"]] == "carried_over"
            assert sorted(rows.values()).count("done") == 1  # finished work is left alone
            copies = (
                conn.execute(
                    text("SELECT status FROM action_items WHERE cycle_id = :c"), {"c": second}
                )
                .scalars()
                .all()
            )
            assert sorted(copies) == ["open", "open"]  # the work goes on in the follow-up
            logged = conn.execute(
                text(
                    "SELECT before, after FROM events WHERE verb = 'action.updated' "
                    "AND object_id = :id ORDER BY id DESC"
                ),
                {"id": ids["soon"]},
            ).first()
        before, after = (json.loads(x) if isinstance(x, str) else x for x in logged)
        assert before == {"status": "in_progress"}
        assert after == {"status": "carried_over", "reason": "carried over to “Q2”"}
        with org.unit_of_work() as s:
            assert views.counts(s, C(s, first), LATER).actions_carried == 2
        # down again: each gets the status it had
        runner.downgrade(engine, "0023")
        with engine.connect() as conn:
            rows = dict(
                conn.execute(
                    text("SELECT id, status FROM action_items WHERE cycle_id = :c"), {"c": first}
                ).all()
            )
        assert (rows[ids["soon"]], rows[ids["overdue"]]) == ("in_progress", "open")
    finally:
        runner.upgrade(engine)
        engine.dispose()


@pytest.mark.parametrize("status", ["done", "dropped"])
def test_0024_leaves_finished_originals_alone(database_url: str, org: Store, status: str) -> None:
    """An original finished after it was copied (the old code allowed it) keeps its status."""
    first, ids = first_cycle_in_recap(org)
    close_with_follow_up(org, first)
    engine = make_engine(database_url)
    try:
        runner.downgrade(engine, "0023")
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE action_items SET status = :s WHERE id = :id"),
                {"s": status, "id": ids["soon"]},
            )
        runner.upgrade(engine)
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT status FROM action_items WHERE id = :id"), {"id": ids["soon"]}
            ).scalar_one()
        assert got == status
    finally:
        runner.upgrade(engine)
        engine.dispose()
