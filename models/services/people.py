"""Teams and people: the verbs a manager uses to run the organisation (add, rename, move,
change a role, deactivate and reactivate), each checking who may, writing, and recording the
audit event. Every face (the admin pages, the CLI, the API) calls these.

``actor`` is the person acting; ``None`` is the system itself (set-up scripts, the demo), as in
``access.require_visible``. Until the store has an active manager (a fresh install) anyone may
act, so the first teams and the first manager can be set up without locking anyone out; for
the same reason the last active manager can be neither demoted nor deactivated.

A person is never deleted: deactivating keeps their history (answers, items, the audit log)
and stops them signing in (passwords, sessions, tokens and single sign-on all check
``active``) and being offered or taken as an owner.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import Role
from models.errors import Forbidden, InvalidInput, NotFound
from models.schemas import PersonCreate, PersonUpdate, TeamCreate
from models.services.common import changes, record_event, snapshot
from models.tables import Event, Person, Team
from models.words import value_word

#: A role as people read it (in messages): the words of models/words.py, the one place.
ROLE_WORDS = {role: value_word(role) for role in Role}


def team_by_key(session: Session, key: str) -> Team:
    team = session.scalar(select(Team).where(Team.key == key.strip().lower()))
    if team is None:
        raise NotFound(f"unknown team {key!r}")
    return team


def get_team(session: Session, team_id: int) -> Team:
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team with id {team_id}")
    return team


def get_person(session: Session, person_id: int) -> Person:
    """A person by id, active or not (the admin pages show the deactivated too)."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"no person with id {person_id}")
    return person


def person_with_email(session: Session, email: str) -> Person:
    """A person by email, active or not (``common.person_by_email`` refuses the deactivated:
    nobody gives them work; a manager still reactivates them)."""
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    if person is None:
        raise NotFound(f"unknown person {email!r}")
    return person


def has_manager(session: Session) -> bool:
    """Whether the store has an active manager yet (a fresh install has none)."""
    stmt = select(Person.id).where(Person.role == Role.MANAGER, Person.active.is_(True))
    return session.scalar(stmt.limit(1)) is not None


def is_admin(session: Session, actor: Person | None) -> bool:
    """Whether ``actor`` may run the organisation: a manager, or anyone on a fresh install."""
    if not has_manager(session):
        return True
    return actor is not None and actor.active and actor.role is Role.MANAGER


def require_admin(
    session: Session, actor: Person | None, what: str = "add teams and people"
) -> None:
    """Managers add teams and people. Until the store has an active manager (a fresh install)
    anyone may, so the first teams and the first manager can be set up without locking out."""
    if not has_manager(session):
        return
    if actor is None:
        raise Forbidden(f"only managers can {what}; say who is acting")
    if actor.role is not Role.MANAGER or not actor.active:
        raise Forbidden(f"only managers can {what} (you are a {ROLE_WORDS[actor.role]})")


def _check(session: Session, actor: Person | None, what: str) -> None:
    """The permission check of every verb here: ``None`` is the system itself."""
    if actor is not None:
        require_admin(session, actor, what)


# --- teams ----------------------------------------------------------------------------------


def create_team(session: Session, data: TeamCreate, actor: Person | None = None) -> Team:
    _check(session, actor, "add teams")
    if _team_named(session, data.name) is not None:
        raise InvalidInput(f"a team is already called “{data.name}”", field="name")
    if session.scalar(select(Team.id).where(Team.key == data.key)) is not None:
        raise InvalidInput(f"team {data.key!r} already exists", field="key")
    team = Team(key=data.key, name=data.name)
    session.add(team)
    record_event(
        session, actor=actor, verb="team.created", obj=team, after=snapshot(team, ["key", "name"])
    )
    return team


def _team_named(session: Session, name: str) -> Team | None:
    return session.scalar(select(Team).where(func.lower(Team.name) == name.strip().lower()))


def rename_team(session: Session, team: Team, name: str, actor: Person | None = None) -> Team:
    """Give a team a new display name (its key, used by scripts and playbooks, stays)."""
    _check(session, actor, "rename teams")
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("give the team a name", field="name")
    if len(name) > 200:
        raise InvalidInput("a team's name has at most 200 characters", field="name")
    other = _team_named(session, name)
    if other is not None and other.id != team.id:
        raise InvalidInput(f"a team is already called “{name}”", field="name")
    if name == team.name:
        return team
    before = team.name
    team.name = name
    record_event(
        session,
        actor=actor,
        verb="team.renamed",
        obj=team,
        before={"name": before},
        after={"name": name},
    )
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.key)))


def team_sizes(session: Session) -> dict[int, int]:
    """How many active people each team has (by team id)."""
    rows = session.execute(
        select(Person.team_id, func.count()).where(Person.active.is_(True)).group_by(Person.team_id)
    )
    return {team_id: n for team_id, n in rows}


# --- people ---------------------------------------------------------------------------------


def create_person(session: Session, data: PersonCreate, actor: Person | None = None) -> Person:
    _check(session, actor, "add people")
    team = team_by_key(session, data.team)
    existing = session.scalar(select(Person).where(Person.email == data.email))
    if existing is not None:
        state = "" if existing.active else " (deactivated: reactivate them instead)"
        raise InvalidInput(f"{data.email} already belongs to {existing.name}{state}", field="email")
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


def create_people(
    session: Session, items: list[PersonCreate], actor: Person | None = None
) -> list[Person]:
    """Add many people at once (a checked import: teams exist, emails are new): one insert
    and one audit entry per person, without a flush per row."""
    _check(session, actor, "add people")
    teams = {t.key: t for t in list_teams(session)}
    rows = [Person(name=d.name, email=d.email, team=teams[d.team], role=d.role) for d in items]
    session.add_all(rows)
    session.flush()
    for p in rows:
        record_event(
            session,
            actor=actor,
            verb="person.created",
            object_type="person",
            object_id=p.id,
            after={"name": p.name, "email": p.email, "team": p.team.key, "role": p.role},
        )
    session.flush()
    return rows


def _keeps_a_manager(session: Session, person: Person, role: Role, active: bool) -> None:
    """Refuse to leave the store without an active manager (anyone could then act as one)."""
    if person.role is not Role.MANAGER or not person.active:
        return
    if role is Role.MANAGER and active:
        return
    others = session.scalar(
        select(func.count())
        .select_from(Person)
        .where(Person.role == Role.MANAGER, Person.active.is_(True), Person.id != person.id)
    )
    if not others:
        raise InvalidInput(
            f"{person.name} is the only active manager; make someone else a manager first"
        )


def update_person(
    session: Session, person: Person, data: PersonUpdate, actor: Person | None = None
) -> Person:
    """Change a person's name, team, role or whether they are active."""
    _check(session, actor, "change people's roles and teams")
    if data.active is False and person.active and actor is not None and actor.id == person.id:
        raise InvalidInput("you cannot deactivate yourself; ask another manager")
    role = data.role if data.role is not None else person.role
    active = data.active if data.active is not None else person.active
    _keeps_a_manager(session, person, role, active)
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
        verb = "person.updated"
        if set(a) == {"active"}:
            verb = "person.reactivated" if a["active"] else "person.deactivated"
        record_event(
            session,
            actor=actor,
            verb=verb,
            obj=person,
            object_type="person",
            before=b,
            after=a,
        )
    session.flush()
    return person


def deactivate_person(session: Session, person: Person, actor: Person | None = None) -> Person:
    """Stop a person signing in and being given work; everything they did is kept."""
    if not person.active:
        raise InvalidInput(f"{person.name} is already deactivated")
    if actor is not None and actor.id == person.id:
        raise InvalidInput("you cannot deactivate yourself; ask another manager")
    _check(session, actor, "deactivate people")
    return update_person(session, person, PersonUpdate(active=False), actor)


def reactivate_person(session: Session, person: Person, actor: Person | None = None) -> Person:
    if person.active:
        raise InvalidInput(f"{person.name} is already active")
    return update_person(session, person, PersonUpdate(active=True), actor)


def list_people(
    session: Session,
    team: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    search: str | None = None,
) -> list[Person]:
    stmt = select(Person).join(Person.team).order_by(Team.key, Person.name)
    if team:
        stmt = stmt.where(Team.key == team)
    if role:
        if role not in {r.value for r in Role}:
            raise InvalidInput(f"unknown role {role!r} (use {', '.join(r.value for r in Role)})")
        stmt = stmt.where(Person.role == Role(role))
    if active is not None:
        stmt = stmt.where(Person.active.is_(active))
    if search and search.strip():
        like = f"%{search.strip().lower()}%"
        stmt = stmt.where(func.lower(Person.name).like(like) | Person.email.like(like))
    return list(session.scalars(stmt))


def history(session: Session, person: Person, limit: int = 30) -> list[Event]:
    """The audit entries about a person (added, changed, deactivated, links sent), newest
    first; never the sign-in throttle's entries."""
    return list(
        session.scalars(
            select(Event)
            .where(
                Event.object_type == "person",
                Event.object_id == person.id,
                Event.verb.not_like("auth.%"),
            )
            .order_by(Event.id.desc())
            .limit(limit)
        ).unique()
    )
