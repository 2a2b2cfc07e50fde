"""Phase rules and permissions as pure functions over plain facts (no database).

Services gather the facts (:class:`CycleFacts`), these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from models.enums import ActionStatus, Phase, Role
from models.errors import Forbidden, InvalidInput, TransitionRefused
from models.words import counted, day, phase_name, value_word


@dataclass(frozen=True)
class Actor:
    id: int
    role: Role
    team_id: int
    name: str = ""


@dataclass(frozen=True)
class CycleFacts:
    """What the gates need to know about a cycle, gathered by the service layer."""

    phase: Phase
    period_end: date
    point_person_ids: frozenset[int]
    required_unanswered: tuple[str, ...] = ()
    undecided_gaps: tuple[str, ...] = ()
    accepted_gaps_without_plan: tuple[str, ...] = ()
    teams_without_point_person: tuple[str, ...] = ()
    unfinished_actions: tuple[str, ...] = ()
    #: A retrospective a point person saved (a draft made from the facts does not count).
    has_retrospective: bool = False
    #: A draft made from the facts waits for a point person to review and save it.
    retrospective_drafted: bool = False
    signed_off: bool = False
    signoff_required: bool = True
    #: Where the playbook asks each team for its own answers: the teams whose answers are not
    #: in while they are still hidden (empty once revealed).
    teams_without_own_answers: tuple[str, ...] = ()
    #: Where the playbook asks the top-voted gaps to have action items: the vote is still open.
    vote_open: bool = False
    #: ... and the top-voted gaps without an action item.
    top_voted_without_actions: tuple[str, ...] = ()
    #: At Recap: each change to the agreement proposed in this cycle and neither adopted nor
    #: rejected, named with who still has to sign it.
    amendments_waiting: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def _names(singular: str, plural: str, what: str, items: Iterable[str], limit: int = 5) -> str:
    """ "2 gaps not decided: A, B" — the count with the right word, then the first few."""
    items = list(items)
    shown = ", ".join(items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{counted(len(items), singular, plural)} {what}: {shown}{more}"


def is_point_person(actor: Actor, facts: CycleFacts) -> bool:
    return actor.id in facts.point_person_ids


def gate_blockers(facts: CycleFacts, today: date) -> list[str]:
    """What stops the cycle leaving its current phase (empty: it may advance)."""
    blockers: list[str] = []
    if facts.phase is Phase.CLOSED:
        return ["the cycle is closed"]
    if facts.required_unanswered:
        blockers.append(
            _names(
                "required question", "required questions", "unanswered", facts.required_unanswered
            )
        )
    # Gaps are decided in identify and plan only: one still open when plan ends (e.g. added
    # during plan) could never be decided afterwards, so both phases wait for the decisions.
    if facts.phase is Phase.IDENTIFY and facts.teams_without_own_answers:
        blockers.append(
            "each team's own answers are not revealed yet (waiting for "
            + " and ".join(facts.teams_without_own_answers)
            + "; a point person may reveal them now)"
        )
    if phase_allows(facts.phase, "decide_gap") and facts.undecided_gaps:
        blockers.append(_names("gap", "gaps", "not decided", facts.undecided_gaps))
    if facts.phase is Phase.PLAN:
        if facts.accepted_gaps_without_plan:
            blockers.append(
                _names(
                    "accepted gap",
                    "accepted gaps",
                    "without an action item that has an owner and a due date",
                    facts.accepted_gaps_without_plan,
                )
            )
        if facts.vote_open:
            blockers.append("the vote on the gaps is not closed yet")
        elif facts.top_voted_without_actions:
            blockers.append(
                _names(
                    "top-voted gap",
                    "top-voted gaps",
                    "without an action item",
                    facts.top_voted_without_actions,
                )
            )
        if facts.teams_without_point_person:
            blockers.append(
                _names("team", "teams", "without a point person", facts.teams_without_point_person)
            )
    if facts.phase is Phase.EXECUTE and facts.unfinished_actions and today <= facts.period_end:
        blockers.append(
            _names(
                "action item", "action items", "neither done nor dropped", facts.unfinished_actions
            )
            + f" (the period runs to {day(facts.period_end)})"
        )
    if facts.phase is Phase.RECAP:
        if not facts.has_retrospective:
            blockers.append(
                "the draft retrospective is not saved by a point person yet"
                if facts.retrospective_drafted
                else "no retrospective recorded"
            )
        elif facts.signoff_required and not facts.signed_off:
            blockers.append("the recap is not signed off by a manager")
        if facts.amendments_waiting:  # a change is adopted or rejected in its own cycle
            blockers.append(
                _names(
                    "change to the agreement",
                    "changes to the agreement",
                    "waiting to be signed or rejected",
                    facts.amendments_waiting,
                )
            )
    return blockers


def overridable(facts: CycleFacts, today: date) -> bool:
    """Only Execute's "unfinished work" gate may be overridden (by a point person, with reason)."""
    if facts.phase is not Phase.EXECUTE:
        return False
    rest = gate_blockers(CycleFacts(**{**facts.__dict__, "unfinished_actions": ()}), today)
    return bool(facts.unfinished_actions) and not rest and today <= facts.period_end


def check_transition(
    actor: Actor,
    facts: CycleFacts,
    target: Phase,
    today: date,
    override_reason: str | None = None,
) -> None:
    """Raise unless ``actor`` may move the cycle from its phase to ``target`` now."""
    if facts.phase is Phase.CLOSED:
        raise TransitionRefused("the cycle is closed")
    expected = facts.phase.next
    if target is not expected:
        raise TransitionRefused(
            f"phases advance in order: the cycle is in {phase_name(facts.phase)}, "
            f"so the next phase is {phase_name(expected)}, not {phase_name(target)}"
        )
    if not is_point_person(actor, facts):
        raise Forbidden("only a point person of this cycle can advance it")
    blockers = gate_blockers(facts, today)
    if not blockers:
        return
    if override_reason and override_reason.strip():
        if overridable(facts, today):
            return
        raise TransitionRefused(
            f"the cycle cannot leave {phase_name(facts.phase)} even with an override (only "
            "unfinished action items in Execute can be overridden)",
            blockers,
        )
    raise TransitionRefused(f"the cycle cannot leave {phase_name(facts.phase)} yet", blockers)


# --- what each phase allows ---------------------------------------------------------------

#: What people may do in which phase, once for every service, page and hint: (the phases,
#: the sentence a refusal starts with). Checklist answers are the one exception, by item:
#: any phase up to the current one (:func:`may_answer_in`).
PHASE_WORK: dict[str, tuple[frozenset[Phase], str]] = {
    "add_gap": (frozenset({Phase.IDENTIFY, Phase.PLAN}), "gaps are added in Identify or Plan"),
    "decide_gap": (
        frozenset({Phase.IDENTIFY, Phase.PLAN}),
        "gaps are decided in Identify or Plan",
    ),
    "kpi_gaps": (
        frozenset({Phase.IDENTIFY, Phase.PLAN}),
        "KPI gap rules are evaluated in Identify or Plan",
    ),
    "plan_action": (
        frozenset({Phase.PLAN, Phase.EXECUTE}),
        "action items are planned in Plan or Execute",
    ),
    "assign_action": (
        frozenset({Phase.PLAN, Phase.EXECUTE, Phase.RECAP}),
        "action items are assigned in Plan, Execute or Recap",
    ),
    "update_action": (
        frozenset({Phase.PLAN, Phase.EXECUTE, Phase.RECAP}),
        "action items are updated in Plan, Execute or Recap",
    ),
    "check_in": (frozenset({Phase.PLAN, Phase.EXECUTE}), "check-ins happen in Plan or Execute"),
    "sign_off_action": (
        frozenset({Phase.PLAN, Phase.EXECUTE, Phase.RECAP}),
        "action items are signed off in Plan, Execute or Recap",
    ),
    "set_target": (frozenset({Phase.PLAN, Phase.EXECUTE}), "targets are set in Plan or Execute"),
    "own_answers": (
        frozenset({Phase.IDENTIFY}),
        "each team gives its own answers in Identify",
    ),
    "vote": (frozenset({Phase.IDENTIFY, Phase.PLAN}), "gaps are voted on in Identify or Plan"),
    "amend_agreement": (
        frozenset({Phase.PLAN}),
        "changes to the teams' agreement are proposed in Plan",
    ),
    "decide_amendment": (
        frozenset({Phase.RECAP}),
        "changes to the teams' agreement are adopted or rejected at Recap",
    ),
}


def phase_allows(phase: Phase, work: str) -> bool:
    return phase in PHASE_WORK[work][0]


def require_phase_allows(phase: Phase, work: str, cycle_id: int) -> None:
    """Refuse ``work`` in a phase that does not allow it, in one sentence."""
    phases, sentence = PHASE_WORK[work]
    if phase not in phases:
        raise InvalidInput(f"{sentence}; this cycle is in {phase_name(phase)}")


def may_answer_in(phase: Phase, item_phase: Phase) -> bool:
    """Checklist items are answered in their phase or later (a late answer is still an
    answer), never before their phase and never once the cycle is closed."""
    order = list(Phase)
    return phase is not Phase.CLOSED and order.index(item_phase) <= order.index(phase)


# --- permissions -------------------------------------------------------------------------

ASSIGNERS = frozenset({Role.LEAD, Role.MANAGER})


def require_assigner(actor: Actor, what: str = "create or assign action items") -> None:
    if actor.role not in ASSIGNERS:
        raise Forbidden(f"only leads and managers can {what} (you are a {value_word(actor.role)})")


def require_point_person_role(person: Actor | Any) -> None:
    """Only people who hold the point person role fill a team's point-person slot (a lead or a
    member named there could advance the cycle)."""
    if person.role is not Role.POINT_PERSON:
        who = getattr(person, "name", None) or f"person {person.id}"
        role = value_word(person.role)
        raise InvalidInput(
            f"{who} is a {role}, not a point person: name a point person of the team"
        )


def require_manager(actor: Actor, what: str) -> None:
    if actor.role is not Role.MANAGER:
        raise Forbidden(f"only managers can {what} (you are a {value_word(actor.role)})")


def can_update_action(
    actor: Actor, owner_id: int | None, facts: CycleFacts, counterpart_id: int | None = None
) -> bool:
    """Owners and their counterparts (the owner's partner on the other team) update and check
    in on their items; leads, managers and the cycle's point persons on any."""
    return (
        actor.id == owner_id
        or (counterpart_id is not None and actor.id == counterpart_id)
        or actor.role in ASSIGNERS
        or is_point_person(actor, facts)
    )


def status_when_done(
    actor: Actor | None, counterpart_id: int | None, signoff_required: bool
) -> ActionStatus:
    """What marking an item done makes it: done; or, where the playbook asks counterparts to
    sign off (``counterpart_signoff``) and someone other than the counterpart says so, waiting
    for the counterpart's sign-off (it does not count as done until then)."""
    by_someone_else = actor is None or actor.id != counterpart_id
    if signoff_required and counterpart_id is not None and by_someone_else:
        return ActionStatus.AWAITING_SIGNOFF
    return ActionStatus.DONE


def require_counterpart(actor: Actor, counterpart_id: int | None, item_id: int) -> None:
    """Only the item's counterpart signs it off (their word that it is done for both teams)."""
    if counterpart_id is None:
        raise InvalidInput("this action item has no counterpart to sign it off")
    if actor.id != counterpart_id:
        raise Forbidden("only the counterpart of this action item signs it off")


def require_on_cycle_teams(
    person: Actor | Any, team_ids: Iterable[int], team_names: Iterable[str], what: str
) -> None:
    """An action item's owner and counterpart belong to one of the cycle's teams: someone
    outside them could see the item in their work but never update it, and the cycle would
    wait on it for good."""
    if person.team_id not in set(team_ids):
        who = getattr(person, "name", None) or f"person {person.id}"
        teams = " or ".join(team_names)
        raise InvalidInput(
            f"{who} is not on a team of this cycle and cannot be its {what}: choose someone "
            f"from {teams}"
        )


def can_answer_checklist(
    actor: Actor,
    owner_id: int | None,
    owner_role: Role | None,
    owner_team_id: int | None,
    facts: CycleFacts,
) -> bool:
    """The owner answers (:func:`owns_question`); the cycle's point persons may answer any."""
    return is_point_person(actor, facts) or owns_question(
        actor, owner_id, owner_role, owner_team_id
    )


def owns_question(
    who: Actor | Any, owner_id: int | None, owner_role: Role | None, owner_team_id: int | None
) -> bool:
    """Who owes a checklist item's answer: its owner by name, or (an item owned by a role)
    anyone holding the role, in the named team if there is one. ``who``: anything with ``id``,
    ``role`` and ``team_id`` (an :class:`Actor` or a person). Its SQL form is
    ``ChecklistItem.owned_by``."""
    if owner_id is not None:
        return who.id == owner_id
    if owner_role is not None:
        return who.role is owner_role and owner_team_id in (None, who.team_id)
    return False


def can_decide_gap(actor: Actor, facts: CycleFacts) -> bool:
    return actor.role in ASSIGNERS or is_point_person(actor, facts)


# --- the gate's blockers, each with what it is about ---------------------------------------

#: Each kind of blocker and the facts it reads (the recap's own: "retro", "signoff").
BLOCKER_FACTS: dict[str, tuple[str, ...]] = {
    "questions": ("required_unanswered",),
    "own_answers": ("teams_without_own_answers",),
    "gaps": ("undecided_gaps",),
    "plan": ("accepted_gaps_without_plan",),
    "vote": ("vote_open", "top_voted_without_actions"),
    "point_persons": ("teams_without_point_person",),
    "actions": ("unfinished_actions",),
    "amendments": ("amendments_waiting",),
}


def gate_blockers_by_kind(facts: CycleFacts, today: date) -> list[tuple[str, str]]:
    """:func:`gate_blockers`, each sentence with its kind (``BLOCKER_FACTS``, "retro",
    "signoff", "closed"), each sentence once: a page links each to where it is fixed. Each
    kind is asked of :func:`gate_blockers` alone, so the words live there once."""
    if facts.phase is Phase.CLOSED:
        return [("closed", b) for b in gate_blockers(facts, today)]
    defaults = {f.name: f.default for f in fields(CycleFacts)}
    cleared: dict[str, Any] = {
        name: defaults[name] for names in BLOCKER_FACTS.values() for name in names
    }
    calm = {"has_retrospective": True, "signed_off": True}
    out: list[tuple[str, str]] = []
    for kind, names in BLOCKER_FACTS.items():
        own = {name: getattr(facts, name) for name in names}
        only = CycleFacts(**{**facts.__dict__, **cleared, **calm, **own})
        out += [(kind, b) for b in gate_blockers(only, today)]
    recap = CycleFacts(**{**facts.__dict__, **cleared})
    kind = "signoff" if facts.has_retrospective else "retro"
    out += [(kind, b) for b in gate_blockers(recap, today)]
    order = gate_blockers(facts, today)  # the gate's own order
    return sorted(out, key=lambda pair: order.index(pair[1]))
