"""What the viewer may do on a cycle: the pages show only the actions that would be allowed.

These mirror the domain rules (``models.rules`` and the services, which still enforce them on
every write); they only decide which buttons and forms to show.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.enums import ActionStatus, Phase, Role
from models.rules import ASSIGNERS, Actor, CycleFacts, can_answer_checklist
from models.services.common import as_actor
from models.tables import ActionItem, ChecklistItem, Cycle, Person

GAP_PHASES = (Phase.IDENTIFY, Phase.PLAN)
PLAN_PHASES = (Phase.PLAN, Phase.EXECUTE)
UPDATE_PHASES = (Phase.PLAN, Phase.EXECUTE, Phase.RECAP)
_ORDER = list(Phase)


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
        if self.phase is Phase.CLOSED or _ORDER.index(item.phase) > _ORDER.index(self.phase):
            return False
        facts = CycleFacts(
            phase=self.phase,
            period_end=self.cycle.period_end,
            point_person_ids=self.point_person_ids,
        )
        return can_answer_checklist(
            self.actor, item.owner_id, item.owner_role, item.owner_team_id, facts
        )

    # --- gaps
    @property
    def can_add_gap(self) -> bool:
        return self.phase in GAP_PHASES

    @property
    def can_decide_gaps(self) -> bool:
        return self.phase in GAP_PHASES and (self.is_assigner or self.is_point_person)

    # --- action items
    @property
    def can_add_action(self) -> bool:
        return self.phase in PLAN_PHASES and self.is_assigner

    @property
    def can_assign(self) -> bool:
        return self.phase in UPDATE_PHASES and self.is_assigner

    @property
    def can_move_due_dates(self) -> bool:
        return self.is_assigner

    def can_update(self, item: ActionItem) -> bool:
        return self.phase in UPDATE_PHASES and (
            item.owner_id == self.me.id or self.is_assigner or self.is_point_person
        )

    def can_check_in(self, item: ActionItem) -> bool:
        return self.phase in PLAN_PHASES and self.can_update(item)

    # --- recap
    @property
    def can_record_retro(self) -> bool:
        return self.phase is Phase.RECAP and self.is_point_person

    def can_sign_off(self, retro: object | None) -> bool:
        return (
            self.phase is Phase.RECAP
            and self.is_manager
            and retro is not None
            and getattr(retro, "signed_off_at", None) is None
        )

    def can_answer_survey(self, answered: bool) -> bool:
        return self.phase is Phase.RECAP and not answered and (self.on_team or self.is_manager)


STATUS_LABELS = {
    ActionStatus.OPEN: "Open",
    ActionStatus.IN_PROGRESS: "In progress",
    ActionStatus.BLOCKED: "Blocked",
    ActionStatus.DONE: "Done",
    ActionStatus.DROPPED: "Dropped",
}
