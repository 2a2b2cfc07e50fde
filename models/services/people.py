"""Teams and people."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.errors import InvalidInput, NotFound
from models.schemas import PersonCreate, PersonUpdate, TeamCreate
from models.services.common import changes, record_event, snapshot
from models.tables import Person, Team


def team_by_key(session: Session, key: str) -> Team:
    team = session.scalar(select(Team).where(Team.key == key.strip().lower()))
    if team is None:
        raise NotFound(f"unknown team {key!r}")
    return team


def create_team(session: Session, data: TeamCreate, actor: Person | None = None) -> Team:
    if session.scalar(select(Team.id).where(Team.key == data.key)) is not None:
        raise InvalidInput(f"team {data.key!r} already exists")
    team = Team(key=data.key, name=data.name)
    session.add(team)
    record_event(session, actor=actor, verb="team.created", obj=team, after=snapshot(team, ["key", "name"]))
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
        record_event(session, actor=actor, verb="person.updated", obj=person, object_type="person", before=b, after=a)
    return person


def list_people(
    session: Session, team: str | None = None, role: str | None = None
) -> list[Person]:
    stmt = select(Person).join(Person.team).order_by(Team.key, Person.name)
    if team:
        stmt = stmt.where(Team.key == team)
    if role:
        stmt = stmt.where(Person.role == role)
    return list(session.scalars(stmt))
