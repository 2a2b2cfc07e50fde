"""Teams and people."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import Role
from models.errors import Forbidden, InvalidInput, NotFound
from models.rules import require_manager
from models.schemas import PersonCreate, PersonUpdate, TeamCreate
from models.services.common import as_actor, changes, record_event, snapshot
from models.tables import Person, Team


def team_by_key(session: Session, key: str) -> Team:
    team = session.scalar(select(Team).where(Team.key == key.strip().lower()))
    if team is None:
        raise NotFound(f"unknown team {key!r}")
    return team


def has_manager(session: Session) -> bool:
    """Whether the store has an active manager yet (a fresh install has none)."""
    stmt = select(Person.id).where(Person.role == Role.MANAGER, Person.active.is_(True))
    return session.scalar(stmt.limit(1)) is not None


def require_admin(
    session: Session, actor: Person | None, what: str = "add teams and people"
) -> None:
    """Managers add teams and people. Until the store has an active manager (a fresh install)
    anyone may, so the first teams and the first manager can be set up without locking out."""
    if not has_manager(session):
        return
    if actor is None:
        raise Forbidden(f"only managers can {what}; say who is acting")
    require_manager(as_actor(actor), what)


def create_team(session: Session, data: TeamCreate, actor: Person | None = None) -> Team:
    if session.scalar(select(Team.id).where(Team.key == data.key)) is not None:
        raise InvalidInput(f"team {data.key!r} already exists")
    team = Team(key=data.key, name=data.name)
    session.add(team)
    record_event(
        session, actor=actor, verb="team.created", obj=team, after=snapshot(team, ["key", "name"])
    )
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.key)))


def create_person(session: Session, data: PersonCreate, actor: Person | None = None) -> Person:
    team = team_by_key(session, data.team)
    if session.scalar(select(Person.id).where(Person.email == data.email)) is not None:
        raise InvalidInput(f"a person with email {data.email!r} already exists")
    person = Person(name=data.name, email=data.email, team=team, role=data.role)
    session.add(person)
    record_event(
        session,
        actor=actor,
        verb="person.created",
        obj=person,
        object_type="person",
        after={"name": person.name, "email": person.email, "team": team.key, "role": person.role},
    )
    return person


def update_person(
    session: Session, person: Person, data: PersonUpdate, actor: Person | None = None
) -> Person:
    before = snapshot(person, ["name", "role", "active"]) | {"team": person.team.key}
    if data.team is not None:
        person.team = team_by_key(session, data.team)
    for field in ("name", "role", "active"):
        value = getattr(data, field)
        if value is not None:
            setattr(person, field, value)
    after = snapshot(person, ["name", "role", "active"]) | {"team": person.team.key}
    b, a = changes(before, after)
    if a:
        record_event(
            session,
            actor=actor,
            verb="person.updated",
            obj=person,
            object_type="person",
            before=b,
            after=a,
        )
    return person


def list_people(session: Session, team: str | None = None, role: str | None = None) -> list[Person]:
    stmt = select(Person).join(Person.team).order_by(Team.key, Person.name)
    if team:
        stmt = stmt.where(Team.key == team)
    if role:
        if role not in {r.value for r in Role}:
            raise InvalidInput(f"unknown role {role!r} (use {', '.join(r.value for r in Role)})")
        stmt = stmt.where(Person.role == Role(role))
    return list(session.scalars(stmt))
