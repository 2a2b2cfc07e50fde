"""Paired ownership: an action item's counterpart (the owner's partner on the other team) may
check in on it and, where the playbook asks, signs it off before it counts as done. Owners and
counterparts belong to the cycle's teams."""

from __future__ import annotations

from urllib.parse import unquote

from sqlalchemy import select

from models import phases
from models.db import Store
from models.enums import ActionStatus, Phase
from models.errors import Forbidden, InvalidInput
from models.schemas import (
    ActionItemAssign,
    ActionItemCreate,
    ActionItemUpdate,
    ActionProgress,
    CheckInCreate,
    PersonCreate,
    PersonUpdate,
    TeamCreate,
)
from models.services import actions, checklist, cycles, gaps, people, views
from models.tables import Event
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
from tests.test_services import (
    DUE,
    LEE,
    MAX,
    MEG,
    MIA,
    SID,
    TODAY,
    C,
    P,
    add_action,
    advance,
    answer_all,
    logged,
    refused,
    register_yaml,
    start,
    to_execute,
    to_plan,
)

PAT = "pat@acme.test"

PAIRED = """
name: paired
version: 1
title: Paired work
settings: {counterpart_signoff: true, manager_signoff_required: false}
phases:
  identify: {}
  plan: {}
  execute: {}
  recap: {}
"""


def with_support_team(store: Store, role: str = "lead") -> None:
    with store.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        people.create_person(
            s, PersonCreate(name="Pat Support", email=PAT, team="support", role=role)
        )


# --- who may own an item -------------------------------------------------------------------


def test_owners_and_counterparts_come_from_the_cycles_teams(org: Store) -> None:
    """Pat (support) would see the item in My work and could never update it; the Execute
    gate would wait on it for good."""
    with_support_team(org)
    cycle_id = start(org)
    gap_id, item_id = to_execute(org, cycle_id)
    outsider = r"^Pat Support is not on a team of this cycle and cannot be its {}: choose "
    outsider += r"someone from Sales or Marketing$"
    refused(
        org,
        InvalidInput,
        outsider.format("owner"),
        lambda s: add_action(s, cycle_id, None, owner=PAT),
    )
    refused(
        org,
        InvalidInput,
        outsider.format("counterpart"),
        lambda s: add_action(s, cycle_id, None, counterpart=PAT),
    )
    refused(
        org,
        InvalidInput,
        outsider.format("owner"),
        lambda s: actions.assign_action(
            s, actions.get_action(s, item_id), ActionItemAssign(owner=PAT), P(s, LEE)
        ),
    )


def test_a_default_owner_outside_the_cycles_teams_is_not_chosen(org: Store) -> None:
    """A question owned by "the manager" went to the only active manager anywhere, even one of
    a team outside the cycle: it stays with the role instead."""
    with_support_team(org, role="manager")
    with org.unit_of_work() as s:
        people.update_person(s, P(s, MAX), PersonUpdate(active=False))
    cycle_id = start(org)
    with org.unit_of_work() as s:
        item = checklist.find_item(s, C(s, cycle_id), "identify.regular_cadence")
        assert item.owner is None and item.owner_role.value == "manager"


# --- counterparts check in -----------------------------------------------------------------


def test_the_counterpart_checks_in_and_others_may_not(org: Store) -> None:
    cycle_id = start(org)
    _, item_id = to_execute(org, cycle_id)  # Sid's item; Meg (a member) becomes its counterpart
    with org.unit_of_work() as s:
        people.create_person(
            s, PersonCreate(name="Mo Member", email="mo@acme.test", team="marketing")
        )
        item = actions.get_action(s, item_id)
        actions.assign_action(s, item, ActionItemAssign(owner=SID, counterpart=MEG), P(s, LEE))
    with logged(org, "checkin.added"), org.unit_of_work() as s:
        phases.update_action(
            s,
            actions.get_action(s, item_id),
            ActionProgress(confidence="at_risk", note="Sales has not seen the draft yet"),
            P(s, MEG),
            TODAY,
        )
    with org.unit_of_work() as s:
        assert actions.get_action(s, item_id).confidence.value == "at_risk"
        mine = views.my_actions(s, P(s, MEG))[0]
        assert [a.id for a in mine] == [item_id]  # the counterpart sees it in My work
    refused(
        org,
        Forbidden,
        rf"^action item {item_id} is not yours to check in on$",
        lambda s: actions.add_checkin(
            s, actions.get_action(s, item_id), CheckInCreate(note="hi"), P(s, "mo@acme.test")
        ),
    )


# --- counterparts sign off, where the playbook asks ----------------------------------------


def paired_execute(store: Store, counterpart: str | None = MEG) -> tuple[int, int]:
    register_yaml(store, PAIRED)
    cycle_id = start(store, "paired")
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        advance(s, cycle_id)
        item = actions.add_action(
            s,
            C(s, cycle_id),
            ActionItemCreate(
                title="Publish the SLA", owner=SID, counterpart=counterpart, due_date=DUE
            ),
            P(s, LEE),
        )[0]
        advance(s, cycle_id)
        return cycle_id, item.id


def test_done_waits_for_the_counterparts_sign_off(org: Store) -> None:
    cycle_id, item_id = paired_execute(org)
    with org.unit_of_work() as s:
        phases.update_action(
            s, actions.get_action(s, item_id), ActionProgress(status="done"), P(s, SID), TODAY
        )
        item = actions.get_action(s, item_id)
        assert item.status is ActionStatus.AWAITING_SIGNOFF and item.completed_at is None
        counts = views.counts(s, C(s, cycle_id))
        assert (counts.actions_done, counts.progress) == (0, 0)
        assert "Publish the SLA" in cycles.facts(s, C(s, cycle_id)).unfinished_actions
    refused(
        org,
        Forbidden,
        r"^only the counterpart of this action item signs it off$",
        lambda s: actions.sign_off_action(s, actions.get_action(s, item_id), P(s, LEE)),
    )
    refused(
        org,
        InvalidInput,
        r"^an item waits for sign-off when its owner marks it done: choose done$",
        lambda s: actions.update_action(
            s,
            actions.get_action(s, item_id),
            ActionItemUpdate(status="awaiting_signoff"),
            P(s, SID),
        ),
    )
    with logged(org, "action.signed_off"), org.unit_of_work() as s:
        actions.sign_off_action(s, actions.get_action(s, item_id), P(s, MEG))
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        assert item.status is ActionStatus.DONE and item.completed_at is not None
        assert item.signed_off_by.email == MEG
        assert views.counts(s, C(s, cycle_id)).progress == 100
        assert not cycles.facts(s, C(s, cycle_id)).unfinished_actions
    refused(
        org,
        InvalidInput,
        r"^“Publish the SLA” is not waiting for a sign-off: its owner marks it done first$",
        lambda s: actions.sign_off_action(s, actions.get_action(s, item_id), P(s, MEG)),
    )
    with org.unit_of_work() as s:  # reopened: the sign-off is gone with the "done"
        item = actions.get_action(s, item_id)
        actions.update_action(s, item, ActionItemUpdate(status="in_progress"), P(s, SID))
        assert item.signed_off_by_id is None and item.signed_off_at is None


def test_the_counterpart_saying_done_is_the_sign_off(org: Store) -> None:
    _, item_id = paired_execute(org)
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        actions.add_checkin(s, item, CheckInCreate(status="done"), P(s, MEG))
        assert item.status is ActionStatus.DONE and item.signed_off_by.email == MEG


def test_an_item_without_a_counterpart_is_done_at_once(org: Store) -> None:
    _, item_id = paired_execute(org, counterpart=None)
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        actions.add_checkin(s, item, CheckInCreate(status="done"), P(s, SID))
        assert item.status is ActionStatus.DONE and item.signed_off_by is None


def test_without_the_setting_done_is_done(org: Store) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        item = add_action(s, cycle_id, gaps.get_gap(s, gap_id), counterpart=MEG)
        advance(s, cycle_id)
        actions.add_checkin(s, item, CheckInCreate(status="done"), P(s, SID))
        assert item.status is ActionStatus.DONE and gap_id
        assert s.scalar(select(Event.id).where(Event.verb == "action.signed_off")) is None


def test_the_counterpart_signs_off_from_my_work(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    _, item_id = paired_execute(org, counterpart=MIA)
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version
    done = surfaces.post_form(
        SID, f"/actions/{item_id}/update", version=version, status="done", next="/my"
    )
    assert done.status_code == 303
    assert "Mia Marketing signs it off next." in unquote(done.cookies.get("aligncycle_flash", ""))
    assert "Sign it off as done" not in surfaces.browser(SID).get("/my").text
    page = surfaces.browser(MIA).get("/my").text
    assert "Waiting for Mia Marketing to sign it off" in page and "Sign it off as done" in page
    with org.unit_of_work() as s:
        version = actions.get_action(s, item_id).version
    signed = surfaces.post_form(MIA, f"/actions/{item_id}/signoff", version=version, next="/my")
    assert signed.status_code == 303
    with org.unit_of_work() as s:
        item = actions.get_action(s, item_id)
        assert item.status is ActionStatus.DONE and item.signed_off_by.email == MIA
    api = surfaces.api(MIA, "GET", f"/actions/{item_id}").json()
    assert api["status"] == "done" and api["signed_off_by"]["email"] == MIA


def test_the_cli_signs_off(org: Store) -> None:
    from tests.test_cli import cli

    _, item_id = paired_execute(org)
    cli("checkin", "add", item_id, "--status", "done", "--as", SID)
    refused_out = cli("action", "signoff", item_id, "--as", LEE, code=1)
    assert refused_out.stderr.strip() == (
        "error: only the counterpart of this action item signs it off"
    )
    out = cli("action", "signoff", item_id, "--as", MEG).stdout
    assert out.strip() == f"action {item_id} signed off: it counts as done"
