"""The phase rules and permissions of ``models/rules.py``, as pure functions (no database)."""

from __future__ import annotations

from datetime import date

import pytest

from models.enums import Phase, Role
from models.errors import Forbidden, TransitionRefused
from models.rules import (
    Actor,
    CycleFacts,
    can_answer_checklist,
    can_decide_gap,
    can_update_action,
    check_transition,
    gate_blockers,
    overridable,
    require_assigner,
    require_manager,
)
from models.words import phase_name

TODAY = date(2025, 3, 10)
END = date(2025, 3, 31)  # the period is not over on TODAY
AFTER_END = date(2025, 4, 1)

SALES, MARKETING = 1, 2
PP = Actor(id=1, role=Role.POINT_PERSON, team_id=SALES, name="Sam")
OTHER_PP = Actor(id=2, role=Role.POINT_PERSON, team_id=MARKETING, name="Pia")  # not on this cycle
LEAD = Actor(id=3, role=Role.LEAD, team_id=SALES, name="Lee")
MANAGER = Actor(id=4, role=Role.MANAGER, team_id=SALES, name="Max")
MEMBER = Actor(id=5, role=Role.MEMBER, team_id=MARKETING, name="Meg")


def facts(phase: Phase, **kw: object) -> CycleFacts:
    """Facts of a cycle whose gate is open, changed by ``kw``."""
    return CycleFacts(phase=phase, period_end=END, point_person_ids=frozenset({PP.id}), **kw)


CLEAR_RECAP = {"has_retrospective": True, "signed_off": True}


# --- gates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [Phase.IDENTIFY, Phase.PLAN, Phase.EXECUTE])
def test_a_phase_with_nothing_missing_has_no_blockers(phase: Phase) -> None:
    assert gate_blockers(facts(phase), TODAY) == []


def test_recap_with_retrospective_and_signoff_has_no_blockers() -> None:
    assert gate_blockers(facts(Phase.RECAP, **CLEAR_RECAP), TODAY) == []


@pytest.mark.parametrize("phase", [Phase.IDENTIFY, Phase.PLAN, Phase.EXECUTE, Phase.RECAP])
def test_required_unanswered_items_block_every_phase(phase: Phase) -> None:
    f = facts(phase, required_unanswered=("owner_named", "sla_agreed"), **CLEAR_RECAP)
    assert gate_blockers(f, TODAY) == ["2 required questions unanswered: owner_named, sla_agreed"]


def test_identify_waits_for_every_gap_decision() -> None:
    blockers = gate_blockers(facts(Phase.IDENTIFY, undecided_gaps=("No SLA",)), TODAY)
    assert blockers == ["1 gap not decided: No SLA"]


def test_plan_also_waits_for_gaps_added_during_plan() -> None:
    # Gaps can only be decided in identify and plan: one left open now would stay open forever.
    blockers = gate_blockers(facts(Phase.PLAN, undecided_gaps=("Late gap",)), TODAY)
    assert blockers == ["1 gap not decided: Late gap"]


def test_undecided_gaps_do_not_block_execute_or_recap() -> None:
    assert gate_blockers(facts(Phase.EXECUTE, undecided_gaps=("x",)), TODAY) == []
    recap = facts(Phase.RECAP, undecided_gaps=("x",), **CLEAR_RECAP)
    assert gate_blockers(recap, TODAY) == []


def test_plan_needs_a_planned_action_for_each_accepted_gap() -> None:
    f = facts(Phase.PLAN, accepted_gaps_without_plan=("No SLA", "No dashboard"))
    assert gate_blockers(f, TODAY) == [
        "2 accepted gaps without an action item that has an owner and a due date: "
        "No SLA, No dashboard"
    ]


def test_plan_needs_a_point_person_on_each_team() -> None:
    f = facts(Phase.PLAN, teams_without_point_person=("Marketing",))
    assert gate_blockers(f, TODAY) == ["1 team without a point person: Marketing"]


def test_plan_gate_lists_every_missing_thing() -> None:
    f = facts(
        Phase.PLAN,
        required_unanswered=("gaps_to_address",),
        accepted_gaps_without_plan=("No SLA",),
        teams_without_point_person=("Marketing",),
    )
    assert len(gate_blockers(f, TODAY)) == 3


def test_accepted_gaps_and_point_persons_only_gate_plan() -> None:
    f = facts(
        Phase.IDENTIFY,
        accepted_gaps_without_plan=("No SLA",),
        teams_without_point_person=("Marketing",),
    )
    assert gate_blockers(f, TODAY) == []


def test_execute_waits_for_unfinished_actions_during_the_period() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    assert gate_blockers(f, TODAY) == [
        "1 action item neither done nor dropped: Agree SLA (the period runs to 31 Mar 2025)"
    ]
    assert gate_blockers(f, END) != []  # the last day of the period still counts


def test_execute_may_end_once_the_period_is_over() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    assert gate_blockers(f, AFTER_END) == []


def test_recap_needs_a_retrospective_first() -> None:
    assert gate_blockers(facts(Phase.RECAP), TODAY) == ["no retrospective recorded"]


def test_recap_needs_a_managers_signoff_by_default() -> None:
    f = facts(Phase.RECAP, has_retrospective=True)
    assert gate_blockers(f, TODAY) == ["the recap is not signed off by a manager"]


def test_recap_without_required_signoff_closes_on_the_retrospective() -> None:
    f = facts(Phase.RECAP, has_retrospective=True, signoff_required=False)
    assert gate_blockers(f, TODAY) == []


def test_a_closed_cycle_is_blocked() -> None:
    assert gate_blockers(facts(Phase.CLOSED), TODAY) == ["the cycle is closed"]


def test_long_lists_are_cut_to_five_names() -> None:
    names = tuple(f"item{i}" for i in range(8))
    [blocker] = gate_blockers(facts(Phase.IDENTIFY, required_unanswered=names), TODAY)
    assert blocker == (
        "8 required questions unanswered: item0, item1, item2, item3, item4 and 3 more"
    )


# --- transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "target"),
    [
        (Phase.IDENTIFY, Phase.PLAN),
        (Phase.PLAN, Phase.EXECUTE),
        (Phase.EXECUTE, Phase.RECAP),
        (Phase.RECAP, Phase.CLOSED),
    ],
)
def test_a_point_person_advances_to_the_next_phase(phase: Phase, target: Phase) -> None:
    check_transition(PP, facts(phase, **CLEAR_RECAP), target, TODAY)  # does not raise


@pytest.mark.parametrize(
    ("phase", "target"),
    [
        (Phase.IDENTIFY, Phase.EXECUTE),  # skipping
        (Phase.IDENTIFY, Phase.CLOSED),
        (Phase.PLAN, Phase.IDENTIFY),  # going back
        (Phase.EXECUTE, Phase.EXECUTE),  # staying
        (Phase.RECAP, Phase.PLAN),
    ],
)
def test_phases_only_advance_in_order(phase: Phase, target: Phase) -> None:
    with pytest.raises(TransitionRefused) as err:
        check_transition(PP, facts(phase, **CLEAR_RECAP), target, TODAY)
    assert str(err.value) == (
        f"phases advance in order: the cycle is in {phase_name(phase)}, "
        f"so the next phase is {phase_name(phase.next)}, not {phase_name(target)}"
    )


def test_a_closed_cycle_goes_nowhere() -> None:
    with pytest.raises(TransitionRefused, match="the cycle is closed"):
        check_transition(PP, facts(Phase.CLOSED), Phase.CLOSED, TODAY)


@pytest.mark.parametrize("actor", [LEAD, MANAGER, MEMBER, OTHER_PP])
def test_only_a_point_person_of_the_cycle_advances_it(actor: Actor) -> None:
    with pytest.raises(Forbidden, match="only a point person of this cycle can advance it"):
        check_transition(actor, facts(Phase.IDENTIFY), Phase.PLAN, TODAY)


def test_a_blocked_gate_refuses_with_its_blockers() -> None:
    f = facts(Phase.IDENTIFY, undecided_gaps=("No SLA",))
    with pytest.raises(TransitionRefused) as err:
        check_transition(PP, f, Phase.PLAN, TODAY)
    assert err.value.blockers == ["1 gap not decided: No SLA"]
    assert str(err.value) == "the cycle cannot leave Identify yet: 1 gap not decided: No SLA"
    assert "\n" not in str(err.value)


def test_a_point_person_may_override_unfinished_actions_with_a_reason() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    assert overridable(f, TODAY)
    check_transition(PP, f, Phase.RECAP, TODAY, override_reason="moved to next cycle")


def test_an_override_needs_a_real_reason() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    with pytest.raises(TransitionRefused, match="cannot leave Execute yet: 1 action item"):
        check_transition(PP, f, Phase.RECAP, TODAY, override_reason="   ")


def test_only_a_point_person_may_override() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    with pytest.raises(Forbidden):
        check_transition(MANAGER, f, Phase.RECAP, TODAY, override_reason="because")


def test_unanswered_items_in_execute_cannot_be_overridden() -> None:
    f = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",), required_unanswered=("how",))
    assert not overridable(f, TODAY)
    with pytest.raises(TransitionRefused, match="even with an override"):
        check_transition(PP, f, Phase.RECAP, TODAY, override_reason="because")


@pytest.mark.parametrize(
    "f",
    [
        facts(Phase.IDENTIFY, undecided_gaps=("No SLA",)),
        facts(Phase.IDENTIFY, required_unanswered=("q",)),
        facts(Phase.PLAN, accepted_gaps_without_plan=("No SLA",)),
        facts(Phase.PLAN, teams_without_point_person=("Marketing",)),
        facts(Phase.RECAP),
        facts(Phase.RECAP, has_retrospective=True),
    ],
    ids=["undecided", "unanswered", "unplanned", "no-point-person", "no-retro", "no-signoff"],
)
def test_no_other_gate_can_be_overridden(f: CycleFacts) -> None:
    assert not overridable(f, TODAY)
    with pytest.raises(TransitionRefused, match="only unfinished action items in Execute"):
        check_transition(PP, f, f.phase.next, TODAY, override_reason="trust me")


def test_nothing_to_override_when_execute_is_clear_or_the_period_is_over() -> None:
    assert not overridable(facts(Phase.EXECUTE), TODAY)
    late = facts(Phase.EXECUTE, unfinished_actions=("Agree SLA",))
    assert not overridable(late, AFTER_END)
    check_transition(PP, late, Phase.RECAP, AFTER_END)  # no override needed


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("actor", [LEAD, MANAGER])
def test_leads_and_managers_assign_action_items(actor: Actor) -> None:
    require_assigner(actor)  # does not raise


@pytest.mark.parametrize("actor", [PP, MEMBER])
def test_point_persons_and_members_do_not_assign(actor: Actor) -> None:
    with pytest.raises(Forbidden) as err:
        require_assigner(actor)
    assert str(err.value) == (
        "only leads and managers can create or assign action items "
        f"(you are a {actor.role.value.replace('_', ' ')})"
    )


def test_only_managers_pass_require_manager() -> None:
    require_manager(MANAGER, "sign off a recap")
    for actor in (PP, LEAD, MEMBER):
        with pytest.raises(Forbidden, match="only managers can sign off a recap"):
            require_manager(actor, "sign off a recap")


def test_who_updates_an_action_item() -> None:
    f = facts(Phase.EXECUTE)
    assert can_update_action(MEMBER, MEMBER.id, f)  # the owner
    assert not can_update_action(MEMBER, LEAD.id, f)  # somebody else's
    assert not can_update_action(MEMBER, None, f)  # unowned
    assert can_update_action(LEAD, MEMBER.id, f)
    assert can_update_action(MANAGER, MEMBER.id, f)
    assert can_update_action(PP, MEMBER.id, f)  # a point person of the cycle
    assert not can_update_action(OTHER_PP, MEMBER.id, f)  # a point person elsewhere


def test_who_answers_a_checklist_item_owned_by_a_person() -> None:
    f = facts(Phase.IDENTIFY)
    assert can_answer_checklist(MEMBER, MEMBER.id, Role.MEMBER, MARKETING, f)
    assert not can_answer_checklist(LEAD, MEMBER.id, Role.MEMBER, MARKETING, f)
    assert not can_answer_checklist(MANAGER, MEMBER.id, Role.MEMBER, MARKETING, f)
    assert can_answer_checklist(PP, MEMBER.id, Role.MEMBER, MARKETING, f)


def test_who_answers_a_checklist_item_owned_by_a_role() -> None:
    f = facts(Phase.IDENTIFY)
    marketing_lead = Actor(id=9, role=Role.LEAD, team_id=MARKETING)
    assert can_answer_checklist(marketing_lead, None, Role.LEAD, MARKETING, f)
    assert not can_answer_checklist(LEAD, None, Role.LEAD, MARKETING, f)  # other team
    assert can_answer_checklist(LEAD, None, Role.LEAD, None, f)  # any team
    assert not can_answer_checklist(MEMBER, None, Role.LEAD, None, f)
    assert can_answer_checklist(PP, None, Role.MANAGER, None, f)
    assert not can_answer_checklist(MEMBER, None, None, None, f)


def test_who_decides_gaps() -> None:
    f = facts(Phase.IDENTIFY)
    assert can_decide_gap(LEAD, f)
    assert can_decide_gap(MANAGER, f)
    assert can_decide_gap(PP, f)
    assert not can_decide_gap(MEMBER, f)
    assert not can_decide_gap(OTHER_PP, f)
