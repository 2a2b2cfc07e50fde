"""Who sees what: the one object-level check for every id a request names.

A person sees the cycles their team takes part in (a manager sees every cycle), and the gaps,
checklist items, action items, check-ins and retrospectives of those cycles. An object the
person may not see answers exactly like an object that does not exist ("no gap with id 10"),
so ids of other teams' objects reveal nothing.

Faces load what a request names through :func:`visible_cycle` / :func:`visible_object`, and
every service that writes on a person's behalf checks the cycle again with
:func:`require_visible`, so a face that forgot cannot leak or change another team's object.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select, true
from sqlalchemy.orm import Session, selectinload

from models.enums import Role
from models.errors import NotFound
from models.tables import Cycle, CycleTeam, Person


def visible_cycles(viewer: Person):  # noqa: ANN201 - a SQL expression
    """A WHERE clause on ``Cycle``: the cycles ``viewer`` may see. Said per cycle (does the
    viewer's team take part in it?), one lookup in the (cycle, team) key each: a query that
    reads a few cycles (the open ones) checks only those, instead of listing every cycle the
    team ever took part in."""
    if viewer.role is Role.MANAGER:
        return true()
    return exists().where(CycleTeam.cycle_id == Cycle.id, CycleTeam.team_id == viewer.team_id)


def can_view_cycle(viewer: Person, cycle: Cycle) -> bool:
    return viewer.role is Role.MANAGER or any(ct.team_id == viewer.team_id for ct in cycle.teams)


def require_visible(viewer: Person | None, cycle: Cycle, label: str, ident: int) -> None:
    """Refuse, as "no LABEL with id IDENT", when ``viewer`` may not see ``cycle`` (the cycle
    the object belongs to). ``None`` is the system itself (a flow, a playbook rule)."""
    if viewer is not None and not can_view_cycle(viewer, cycle):
        raise NotFound(f"no {label} with id {ident}")


def visible_cycle(session: Session, viewer: Person, cycle_id: int) -> Cycle:
    """The cycle with its teams loaded, if ``viewer`` may see it; else ``NotFound``."""
    cycle = session.scalar(
        select(Cycle).where(Cycle.id == cycle_id).options(selectinload(Cycle.teams))
    )
    if cycle is None:
        raise NotFound(f"no cycle with id {cycle_id}")
    require_visible(viewer, cycle, "cycle", cycle_id)
    return cycle


def visible_object(session: Session, viewer: Person, model: type, ident: int, label: str) -> Any:
    """A row that belongs to a cycle (gap, action item, checklist item), with the same rule."""
    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"no {label} with id {ident}")
    require_visible(viewer, session.get(Cycle, row.cycle_id), label, ident)
    return row
