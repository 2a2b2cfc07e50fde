"""One action item may address several gaps: Plan proposes each template once per cycle and
links it to every accepted gap it applies to; the Plan gate reads the links."""

from __future__ import annotations

import json

from sqlalchemy import select

from models import phases
from models.db import Store
from models.enums import ActionStatus, Phase
from models.errors import Forbidden, InvalidInput
from models.phases import plan
from models.schemas import ActionItemUpdate, GapDecide
from models.services import actions, cycles, gaps
from models.tables import ActionItem
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
from tests.test_cli import cli
from tests.test_services import (
    LEE,
    LOU,
    SAM,
    SID,
    TODAY,
    C,
    P,
    accept,
    add_action,
    add_gap,
    answer_all,
    logged,
    refused,
    start,
)

HANDOFF_GAPS = [
    "Leads wait days in a queue",
    "Leads bounce between two reps",
    "Reps work leads outside the CRM",
    "Qualified leads are never followed up",
]
SLA = "Agree on a hand-off SLA and publish it"


def four_hand_off_gaps_in_plan(store: Store) -> tuple[int, list[int]]:
    """A cycle whose Identify accepted four hand-off gaps, advanced into Plan the way every
    face advances (the proposals are written on entering Plan)."""
    cycle_id = start(store)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        ids = [accept(s, add_gap(s, cycle_id, t)).id for t in HANDOFF_GAPS]
        phases.advance(s, C(s, cycle_id), P(s, SAM), today=TODAY)
        answer_all(s, cycle_id, Phase.PLAN)  # so the gate speaks of the plan alone
    return cycle_id, ids


def items_of(s, cycle_id: int) -> list[ActionItem]:  # noqa: ANN001
    return actions.list_actions(s, cycle_id=cycle_id)


def test_four_hand_off_gaps_get_each_proposal_once_linked_to_all_four(org: Store) -> None:
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        items = items_of(s, cycle_id)
        titles = [i.title for i in items]
        # the hand-off category has three templates: three items, not twelve
        assert len(items) == 3 and len(set(titles)) == 3 and titles.count(SLA) == 1
        assert all(i.gap_ids == gap_ids for i in items)
        assert {i.key for i in items} == {
            "template:agree_handoff_sla",
            "template:map_handoff_flow",
            "template:handoff_checklist",
        }
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == []
        # re-proposing (a retried flow, the refresh before advancing) writes nothing
        assert plan.propose_actions(s, C(s, cycle_id), TODAY) == []
        assert len(items_of(s, cycle_id)) == 3


def test_a_gap_accepted_later_links_to_the_proposals_instead_of_copying_them(org: Store) -> None:
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        late = add_gap(s, cycle_id, "Marketing never hears back on rejected leads")
    linked = ["action.gap_linked"] * 3
    with logged(org, "gap.decided", *linked) as log, org.unit_of_work() as s:
        accept(s, gaps.get_gap(s, late.id))
    assert all(e.actor is None for e in log[1:]) and {e.after["gap_id"] for e in log[1:]} == {
        late.id
    }
    with org.unit_of_work() as s:
        items = items_of(s, cycle_id)
        assert len(items) == 3 and all(i.gap_ids == [*gap_ids, late.id] for i in items)
        # accepting it again (or the flow running again) links nothing twice
        assert (
            plan.propose_actions_for_gap(s, C(s, cycle_id), gaps.get_gap(s, late.id), TODAY) == []
        )


def test_the_plan_gate_reads_the_links(org: Store) -> None:
    """Dropping what one template proposed is fine while another item addresses the gaps;
    a gap nothing (undropped, owned, dated) addresses any more is named by the gate."""
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        lee = P(s, LEE)
        by_key = {i.key: i for i in items_of(s, cycle_id)}
        for key in ("template:map_handoff_flow", "template:handoff_checklist"):
            actions.update_action(s, by_key[key], ActionItemUpdate(status="dropped"), lee)
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == []
        sla = by_key["template:agree_handoff_sla"]
        assert actions.unlink_gap(s, sla, gap_ids[0], lee)
        assert not actions.unlink_gap(s, sla, gap_ids[0], lee)  # not twice
        [blocker] = cycles.readiness(s, C(s, cycle_id), TODAY).blockers
        assert blocker == (
            "1 accepted gap without an action item that has an owner and a due date: "
            f"{HANDOFF_GAPS[0]}"
        )
        assert actions.link_gap(s, sla, gap_ids[0], lee)
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers == []


def test_a_dropped_proposal_is_not_linked_again_nor_copied(org: Store) -> None:
    cycle_id, _ = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        sla = next(i for i in items_of(s, cycle_id) if i.title == SLA)
        actions.update_action(s, sla, ActionItemUpdate(status="dropped"), P(s, LEE))
        late = accept(s, add_gap(s, cycle_id, "Hand-offs happen in chat"))
        sla_again = s.scalars(
            select(ActionItem).where(ActionItem.cycle_id == cycle_id, ActionItem.title == SLA)
        ).all()
        assert [i.id for i in sla_again] == [sla.id] and late.id not in sla.gap_ids
        assert sla.status is ActionStatus.DROPPED


def test_linking_is_for_leads_and_managers_and_the_cycles_accepted_gaps(org: Store) -> None:
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    other_cycle = start(org, title="Other")
    with org.unit_of_work() as s:
        item_id = items_of(s, cycle_id)[0].id
        foreign = add_gap(s, other_cycle, "Elsewhere").id
        deferred = phases.decide_gap(
            s, add_gap(s, cycle_id, "Later"), GapDecide(decision="deferred"), P(s, LOU)
        ).id

    def link(gap_id: int, who: str = LEE):  # noqa: ANN202
        return lambda s: actions.link_gap(s, actions.get_action(s, item_id), gap_id, P(s, who))

    refused(
        org,
        Forbidden,
        r"^only leads and managers can link action items to gaps",
        link(gap_ids[0], SID),
    )
    refused(org, InvalidInput, r"^that gap is not one of this cycle's$", link(foreign))
    refused(
        org,
        InvalidInput,
        r"^the gap “Later” is deferred: action items address accepted gaps$",
        link(deferred),
    )


def test_an_item_made_by_hand_may_address_several_gaps_at_once(org: Store) -> None:
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        item = add_action(s, cycle_id, None, title="Weekly hand-off review", gap_ids=gap_ids[:2])
        assert item.gap_ids == gap_ids[:2]
        same = add_action(
            s, cycle_id, gaps.get_gap(s, gap_ids[2]), title="One more", gap_ids=[gap_ids[2]]
        )
        assert same.gap_ids == [gap_ids[2]]  # given twice, linked once


def test_every_face_shows_and_changes_the_links(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    cycle_id, gap_ids = four_hand_off_gaps_in_plan(org)
    with org.unit_of_work() as s:
        extra = add_action(s, cycle_id, None, title="Weekly hand-off review")
        item_id = extra.id
    # API: gap_ids, link, unlink
    read = surfaces.api(LEE, "GET", f"/actions/{item_id}").json()
    assert read["gap_ids"] == []
    linked = surfaces.api(LEE, "POST", f"/actions/{item_id}/gaps", {"gap_id": gap_ids[0]})
    assert linked.status_code == 200 and linked.json()["gap_ids"] == [gap_ids[0]]
    unlinked = surfaces.api(LEE, "DELETE", f"/actions/{item_id}/gaps/{gap_ids[0]}")
    assert unlinked.status_code == 200 and unlinked.json()["gap_ids"] == []
    # CLI
    out = cli("action", "link", item_id, "--gap", gap_ids[1], "--as", LEE).stdout
    assert out.strip() == f"action {item_id} addresses gap {gap_ids[1]}; its gaps: {gap_ids[1]}"
    again = cli("action", "link", item_id, "--gap", gap_ids[1], "--as", LEE).stdout
    assert "(it already did)" in again
    created = cli(
        "action", "add", cycle_id, "--title", "Both", "--gap", gap_ids[2], "--gap", gap_ids[3],
        "--as", LEE, "--json",
    )  # fmt: skip
    assert json.loads(created.stdout)["gap_ids"] == gap_ids[2:]
    # the page: the gaps an item addresses, and the lead's form to link one more
    page = surfaces.browser(LEE).get(f"/cycles/{cycle_id}/actions").text
    assert f"For the gaps: {'; '.join(HANDOFF_GAPS)}" in page
    assert f'hx-get="/actions/{item_id}/form/gaps?' in page  # the box, its form when opened
    box = surfaces.browser(LEE).get(f"/actions/{item_id}/form/gaps").text
    assert f'action="/actions/{item_id}/gaps"' in box
    posted = surfaces.post_form(LEE, f"/actions/{item_id}/gaps", gap_id=gap_ids[3])
    assert posted.status_code == 303
    with org.unit_of_work() as s:
        assert actions.get_action(s, item_id).gap_ids == [gap_ids[1], gap_ids[3]]
