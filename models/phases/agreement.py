"""The agreement's side effects across records: the first version as a team pair's first
cycle starts, and a change adopted the moment the second point person signs it at Recap (the
agreement's next version, which the next KPI computation of the pair reads its SLA from)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.agreement_tables import Amendment
from models.services import agreements
from models.tables import Cycle, Person


def on_cycle_start(session: Session, cycle: Cycle, actor: Person | None) -> None:
    """The pair's agreement, its first version from the playbook, if the pair has none (the
    audit log names who started the cycle)."""
    agreements.write_first_version(session, cycle, actor, as_cycle_starts=True)


def sign(session: Session, amendment: Amendment, actor: Person) -> bool:
    """A point person signs the change for their team; the second signature adopts it.
    True when adopted."""
    if agreements.sign(session, amendment, actor):
        agreements.adopt(session, amendment)
        return True
    return False
