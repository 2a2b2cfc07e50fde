"""What the viewer may do on a cycle: the pages show only the actions that would be allowed.

Derived from the domain's rules (``models.rules``: the phase table and the permission
predicates), not copied; the services still enforce them on every write. This only decides
which buttons and forms to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.enums import ActionStatus, Phase, Role
from models.rules import (
    ASSIGNERS,
    Actor,
    CycleFacts,
    can_answer_checklist,
    can_decide_gap,
    can_update_action,
    may_answer_in,
    phase_allows,
)
from models.services.common import as_actor
from models.tables import ActionItem, ChecklistItem, Cycle, Person


@dataclass
class CyclePerms:
    me: Person
    actor: Actor
    cycle: Cycle
    point_person_ids: frozenset[int]

    @classmethod
    def of(cls, me: Person, cycle: Cycle) -> CyclePerms:
        pp = frozenset(ct.point_person_id for ct in cycle.teams if ct.point_person_id)
        return cls(me=me, actor=as_actor(me), cycle=cycle, point_person_ids=pp)

    _facts: CycleFacts | None = field(default=None, repr=False, compare=False)

    @property
    def facts(self) -> CycleFacts:
        # made once and kept while the cycle's phase and end stay (a list asks for each item)
        phase, end = self.cycle.phase, self.cycle.period_end
        made = self._facts
        if made is None or made.phase is not phase or made.period_end != end:
            made = self._facts = CycleFacts(
                phase=phase, period_end=end, point_person_ids=self.point_person_ids
            )
        return made

    @property
    def phase(self) -> Phase:
        return self.cycle.phase

    @property
    def is_point_person(self) -> bool:
        return self.me.id in self.point_person_ids

    @property
    def is_assigner(self) -> bool:
        return self.me.role in ASSIGNERS

    @property
    def is_manager(self) -> bool:
        return self.me.role is Role.MANAGER

    @property
    def on_team(self) -> bool:
        return any(ct.team_id == self.me.team_id for ct in self.cycle.teams)

    # --- the cycle
    @property
    def can_advance(self) -> bool:
        return self.is_point_person and self.phase is not Phase.CLOSED

    @property
    def can_name_point_person(self) -> bool:
        return self.phase is not Phase.CLOSED and (self.is_point_person or self.is_assigner)

    # --- checklist
    def can_answer(self, item: ChecklistItem) -> bool:
        if not may_answer_in(self.phase, item.phase):
            return False
        return can_answer_checklist(
            self.actor, item.owner_id, item.owner_role, item.owner_team_id, self.facts
        )

    # --- gaps
    @property
    def can_add_gap(self) -> bool:
        return phase_allows(self.phase, "add_gap")

    @property
    def can_decide_gaps(self) -> bool:
        return phase_allows(self.phase, "decide_gap") and can_decide_gap(self.actor, self.facts)

    # --- action items
    @property
    def can_add_action(self) -> bool:
        return phase_allows(self.phase, "plan_action") and self.is_assigner

    @property
    def can_assign(self) -> bool:
        return phase_allows(self.phase, "assign_action") and self.is_assigner

    @property
    def can_move_due_dates(self) -> bool:
        return self.is_assigner

    @property
    def can_link_gaps(self) -> bool:
        return phase_allows(self.phase, "plan_action") and self.is_assigner

    def can_update(self, item: ActionItem) -> bool:
        """Not a carried-over item: its copy in the follow-up cycle is updated instead."""
        return (
            phase_allows(self.phase, "update_action")
            and item.status is not ActionStatus.CARRIED_OVER
            and can_update_action(self.actor, item.owner_id, self.facts, item.counterpart_id)
        )

    def can_sign_off_action(self, item: ActionItem) -> bool:
        """The counterpart's sign-off button: on an item waiting for it."""
        return (
            phase_allows(self.phase, "sign_off_action")
            and item.status is ActionStatus.AWAITING_SIGNOFF
            and item.counterpart_id == self.me.id
        )

    def can_set_target(self, item: ActionItem) -> bool:
        return phase_allows(self.phase, "set_target") and self.can_update(item)

    def can_check_in(self, item: ActionItem) -> bool:
        return phase_allows(self.phase, "check_in") and self.can_update(item)

    # --- recap
    @property
    def can_record_retro(self) -> bool:
        return self.phase is Phase.RECAP and self.is_point_person

    def can_sign_off(self, retro: object | None) -> bool:
        """A manager, on a retrospective a point person saved (not the draft)."""
        return (
            self.phase is Phase.RECAP
            and self.is_manager
            and retro is not None
            and getattr(retro, "recorded_by_id", None) is not None
            and getattr(retro, "signed_off_at", None) is None
        )

    def can_answer_survey(self, answered: bool) -> bool:
        return self.phase is Phase.RECAP and not answered and (self.on_team or self.is_manager)


STATUS_LABELS = {
    ActionStatus.OPEN: "Open",
    ActionStatus.IN_PROGRESS: "In progress",
    ActionStatus.BLOCKED: "Blocked",
    ActionStatus.AWAITING_SIGNOFF: "Waiting for sign-off",
    ActionStatus.DONE: "Done",
    ActionStatus.DROPPED: "Dropped",
    ActionStatus.CARRIED_OVER: "Carried over",
}
