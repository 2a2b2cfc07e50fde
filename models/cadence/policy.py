"""When to remind and escalate, and how often to ask for check-ins: built-in defaults,
overridden by a flow's parameters, then per cycle by its playbook's ``settings``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cadence.planning import chunks
from models.enums import Phase
from models.errors import InvalidInput
from models.tables import Cycle, Playbook

CADENCE_DAYS = {"daily": 1, "weekly": 7, "biweekly": 14, "monthly": 30}


@dataclass(frozen=True)
class CadencePolicy:
    """When to remind and escalate. Built-in defaults, overridden by a flow's parameters, then
    per cycle by its playbook's ``settings`` when the playbook has these keys."""

    #: A reminder goes out when an unfinished item is due within this many days.
    remind_days_before: int = 2
    #: An item overdue for this many days is escalated to the owner's team lead.
    escalate_after_days: int = 2
    #: ... and after this many more days, to a manager.
    escalate_to_manager_after_days: int = 3
    #: Check-in cadence when the playbook does not say (daily, weekly, biweekly, monthly).
    cadence: str = "weekly"
    #: A lead this many hours past the hand-off time goes to a manager (None: as late as an
    #: overdue item is when a manager hears of it, see :attr:`late_lead_hours`).
    escalate_late_leads_after_hours: int | None = None

    def __post_init__(self) -> None:
        for name in ("remind_days_before", "escalate_after_days", "escalate_to_manager_after_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or value > 365:
                raise InvalidInput(f"{name} must be a whole number of days from 0 to 365")
        if self.escalate_after_days < 1:
            raise InvalidInput("escalate_after_days must be at least 1 (an item is late first)")
        hours = self.escalate_late_leads_after_hours
        if hours is not None and (not isinstance(hours, int) or not 1 <= hours <= 8760):
            raise InvalidInput(
                "escalate_late_leads_after_hours must be a whole number of hours from 1 to 8760"
            )
        if self.cadence not in CADENCE_DAYS:
            raise InvalidInput(f"cadence must be one of {', '.join(CADENCE_DAYS)}")

    def for_playbook(self, body: dict[str, Any] | None) -> CadencePolicy:
        settings = (body or {}).get("settings") or {}
        known = {
            k: settings[k]
            for k in (
                "remind_days_before",
                "escalate_after_days",
                "escalate_to_manager_after_days",
                "cadence",
                "escalate_late_leads_after_hours",
            )
            if settings.get(k) is not None
        }
        if not known:
            return self
        return CadencePolicy(**{**self.__dict__, **known})

    @property
    def cadence_days(self) -> int:
        return CADENCE_DAYS[self.cadence]

    @property
    def late_lead_hours(self) -> int:
        """How late past the hand-off time a lead goes to a manager: the setting, else the
        days an overdue item waits for a manager, in hours."""
        if self.escalate_late_leads_after_hours is not None:
            return self.escalate_late_leads_after_hours
        return 24 * (self.escalate_after_days + self.escalate_to_manager_after_days)


def playbook_policies(
    session: Session, playbook_ids: Iterable[int], base: CadencePolicy
) -> dict[int, CadencePolicy]:
    """The policy of each playbook: ``base`` with the playbook's settings over it."""
    ids = sorted(set(playbook_ids))
    out: dict[int, CadencePolicy] = {}
    for chunk in chunks(ids):
        for pid, body in session.execute(
            select(Playbook.id, Playbook.body).where(Playbook.id.in_(chunk))
        ):
            out[pid] = base.for_playbook(body)
    return out


def execute_policies(session: Session, policy: CadencePolicy) -> list[CadencePolicy]:
    """The policies of the playbooks of cycles in Execute (few rows: one per playbook)."""
    ids = session.scalars(
        select(Cycle.playbook_id).where(Cycle.phase == Phase.EXECUTE).distinct()
    ).all()
    return list(playbook_policies(session, ids, policy).values())
