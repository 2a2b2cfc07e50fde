"""Phase rules and permissions as pure functions over plain facts (no database).

Services gather the facts (:class:`CycleFacts`), these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from models.enums import Phase, Role
from models.errors import Forbidden, TransitionRefused


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
    has_retrospective: bool = False
    signed_off: bool = False
    signoff_required: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def _names(kind: str, items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)} {kind}: {shown}{more}"


def is_point_person(actor: Actor, facts: CycleFacts) -> bool:
    return actor.id in facts.point_person_ids


def gate_blockers(facts: CycleFacts, today: date) -> list[str]:
    """What stops the cycle leaving its current phase (empty: it may advance)."""
    blockers: list[str] = []
    if facts.phase is Phase.CLOSED:
        return ["the cycle is closed"]
    if facts.required_unanswered:
        blockers.append(_names("required checklist item(s) unanswered", facts.required_unanswered))
    # Gaps are decided in identify and plan only: one still open when plan ends (e.g. added
    # during plan) could never be decided afterwards, so both phases wait for the decisions.
    if facts.phase in (Phase.IDENTIFY, Phase.PLAN) and facts.undecided_gaps:
        blockers.append(_names("gap(s) not decided", facts.undecided_gaps))
    if facts.phase is Phase.PLAN:
        if facts.accepted_gaps_without_plan:
            blockers.append(
                _names(
                    "accepted gap(s) without an action item that has an owner and a due date",
                    facts.accepted_gaps_without_plan,
                )
            )
        if facts.teams_without_point_person:
            blockers.append(
                _names("team(s) without a point person", facts.teams_without_point_person)
            )
    if facts.phase is Phase.EXECUTE and facts.unfinished_actions and today <= facts.period_end:
        blockers.append(
            _names("action item(s) neither done nor dropped", facts.unfinished_actions)
            + f" (the period runs to {facts.period_end.isoformat()})"
        )
    if facts.phase is Phase.RECAP:
        if not facts.has_retrospective:
            blockers.append("no retrospective recorded")
        elif facts.signoff_required and not facts.signed_off:
            blockers.append("the recap is not signed off by a manager")
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
            f"phases advance in order: the cycle is in {facts.phase}, "
            f"so the next phase is {expected}, not {target}"
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
            f"cannot leave {facts.phase} even with an override (only unfinished action items "
            "in Execute can be overridden)",
            blockers,
        )
    raise TransitionRefused(f"cannot leave {facts.phase}", blockers)


# --- permissions -------------------------------------------------------------------------

ASSIGNERS = frozenset({Role.LEAD, Role.MANAGER})


def require_assigner(actor: Actor, what: str = "create or assign action items") -> None:
    if actor.role not in ASSIGNERS:
        raise Forbidden(f"only leads and managers can {what} (you are a {actor.role})")


def require_manager(actor: Actor, what: str) -> None:
    if actor.role is not Role.MANAGER:
        raise Forbidden(f"only managers can {what} (you are a {actor.role})")


def can_update_action(actor: Actor, owner_id: int | None, facts: CycleFacts) -> bool:
    """Owners update their own items; leads, managers and the cycle's point persons any."""
    return actor.id == owner_id or actor.role in ASSIGNERS or is_point_person(actor, facts)


def can_answer_checklist(
    actor: Actor,
    owner_id: int | None,
    owner_role: Role | None,
    owner_team_id: int | None,
    facts: CycleFacts,
) -> bool:
    """The owner answers; an item owned by a role is answerable by anyone holding that role
    (in that team, if one is named); the cycle's point persons may answer any item."""
    if is_point_person(actor, facts):
        return True
    if owner_id is not None:
        return actor.id == owner_id
    if owner_role is not None:
        return actor.role is owner_role and owner_team_id in (None, actor.team_id)
    return False


def can_decide_gap(actor: Actor, facts: CycleFacts) -> bool:
    return actor.role in ASSIGNERS or is_point_person(actor, facts)
