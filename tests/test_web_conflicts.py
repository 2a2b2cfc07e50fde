"""Version conflicts resolved in place: the other person's change is shown beside what was
typed (kept in the form), and the form, now on the new version, applies it in one step. For
an action item's update and assignment, a checklist answer and a gap decision.

The browser journey of the same is in ``tests/test_inbox_browser.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from models import phases
from models.enums import Phase
from models.schemas import ActionItemAssign, ActionItemUpdate, ChecklistAnswer, GapDecide
from models.services import actions
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, ChecklistItem, Gap
from tests.test_web_inbox import assert_plain, post, words
from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("conflicts")) as r:
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


def test_a_conflict_shows_their_change_beside_mine_and_applies_mine_in_one_step(w: Rig) -> None:
    item_id = w.world.actions["execute_sid"]
    assert f'hx-get="/actions/{item_id}/form/update?next=/my"' in w.client("sid").get("/my").text
    page = w.client("sid").get(f"/actions/{item_id}/form/update?next=/my").text  # box opened
    version = re.search(
        rf'action="/actions/{item_id}/update" hx-post.*?name="version" value="(\d+)"', page, re.S
    ).group(1)
    with w.store.unit_of_work() as s:  # meanwhile, the lead raises its priority
        actions.update_action(
            s,
            s.get(ActionItem, item_id),
            ActionItemUpdate(priority="high"),
            person_by_email(s, "lee@acme.test"),
        )
        new_version = s.get(ActionItem, item_id).version
    typed = "Waiting for the CRM admin since Monday"
    resp = post(
        w,
        "sid",
        f"/actions/{item_id}/update",
        version=version,
        status="blocked",
        confidence="at_risk",
        note=typed,
        next="/my",
    )
    assert resp.status_code == 409
    block = re.search(
        rf'id="action-{item_id}".*?<summary>Update</summary>.*?</form>', resp.text, re.S
    ).group(0)
    text_ = words(block)
    assert "Lee Saleslead" in text_ and "Priority: Medium → High" in text_  # their change
    assert "Yours, kept" in text_ and typed in text_  # beside mine
    assert f'value="{typed}"' in block  # still in the field
    assert f'name="version" value="{new_version}"' in block  # now saves on the new version
    assert "Apply mine on the new version" in block
    assert_plain(resp.text)
    again = post(
        w,
        "sid",
        f"/actions/{item_id}/update",
        version=str(new_version),
        status="blocked",
        confidence="at_risk",
        note=typed,
        next="/my",
    )
    assert again.status_code == 303
    with w.store.unit_of_work() as s:
        item = s.get(ActionItem, item_id)
        assert item.status.value == "blocked" and item.priority.value == "high"  # both kept
        assert typed in s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id))


def test_a_conflicting_answer_keeps_the_typed_text(w: Rig) -> None:
    cid = w.world.cycles["identify"]
    with w.store.unit_of_work() as s:
        item = s.scalars(
            select(ChecklistItem).where(
                ChecklistItem.cycle_id == cid,
                ChecklistItem.phase == Phase.IDENTIFY,
                ChecklistItem.answer.is_(None),
            )
        ).first()
        item_id, version = item.id, item.version
        phases.answer(
            s,
            item,
            ChecklistAnswer(answer="unsure", note="Mia's note"),
            person_by_email(s, "mia@acme.test"),
        )
    mine = "We meet every Tuesday and write it down"
    resp = post(
        w,
        "sam",
        f"/checklist/{item_id}/answer",
        answer="yes",
        note=mine,
        version=str(version),
        next=f"/cycles/{cid}",
    )
    assert resp.status_code == 409
    block = re.search(rf'id="item-{item_id}".*?</form>', resp.text, re.S).group(0)
    assert "Mia Marketing" in block and "Mia&#39;s note" in block and mine in block
    assert "Apply mine on the new version" in block


def test_a_conflicting_assignment_names_both_owners(w: Rig) -> None:
    item_id, plan = w.world.actions["plan_unassigned"], w.world.cycles["plan"]
    page = w.client("lee").get(f"/actions/{item_id}/form/assign?next=/cycles/{plan}/actions").text
    version = re.search(
        rf'action="/actions/{item_id}/assign">.*?name="version" value="(\d+)"', page, re.S
    ).group(1)
    with w.store.unit_of_work() as s:  # meanwhile, another lead gives it to Meg
        actions.assign_action(
            s,
            s.get(ActionItem, item_id),
            ActionItemAssign(owner="meg@acme.test"),
            person_by_email(s, "lou@acme.test"),
        )
    resp = post(
        w,
        "lee",
        f"/actions/{item_id}/assign",
        version=version,
        owner="sid@acme.test",
        next=f"/cycles/{plan}/actions",
    )
    assert resp.status_code == 409
    block = words(
        re.search(rf'action="/actions/{item_id}/assign">.*?</form>', resp.text, re.S).group(0)
    )
    assert "Lou Marketinglead" in block and "Owner: (empty) → Meg Member" in block  # theirs
    assert "Saved now Owner Meg Member" in block and "Yours, kept Owner Sid Member" in block
    assert "Apply mine on the new version" in block


def test_a_conflicting_decision_keeps_the_reason_typed(w: Rig) -> None:
    cid, gap_id = w.world.cycles["identify"], w.world.gaps["identify"]
    page = w.client("lee").get(f"/cycles/{cid}/gaps").text
    version = re.search(
        rf'action="/gaps/{gap_id}/decide" hx-post.*?name="version" value="(\d+)"', page, re.S
    ).group(1)
    with w.store.unit_of_work() as s:  # meanwhile, the other lead accepts it
        phases.decide_gap(
            s,
            s.get(Gap, gap_id),
            GapDecide(decision="accepted"),
            person_by_email(s, "lou@acme.test"),
        )
    reason = "Product usage is not in the CRM yet; next quarter"
    resp = post(
        w,
        "lee",
        f"/gaps/{gap_id}/decide",
        version=version,
        decision="deferred",
        reason=reason,
        next=f"/cycles/{cid}/gaps",
    )
    assert resp.status_code == 409
    block = re.search(rf'id="gap-{gap_id}".*?</form>', resp.text, re.S).group(0)
    shown = words(block)
    assert "Lou Marketinglead" in shown and "Decision: Not decided → Accepted" in shown
    assert f'value="{reason}"' in block and re.search(r'value="deferred" checked', block)
    assert "Apply mine on the new version" in block
    assert_plain(resp.text)
