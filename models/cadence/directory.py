"""Who gets what, where: the active people, their leads and managers, and their channels,
loaded once per planning run (a few queries)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cadence.tables import NotificationChannel
from models.enums import Role
from models.tables import Person, Team


@dataclass(frozen=True)
class Contact:
    """An active person, as the planners address them."""

    id: int
    name: str
    email: str
    team_id: int
    role: Role


@dataclass
class Directory:
    """People and enabled channels, loaded once per planning run (a few queries)."""

    people: dict[int, Contact]
    team_keys: dict[int, str]
    person_channels: dict[int, list[int]]
    team_channels: dict[int, list[int]]
    #: Each team's name as people read it ("Sales"), by id.
    team_names: dict[int, str] = field(default_factory=dict)
    _by_role: dict[tuple[Role, int | None], list[Contact]] | None = None

    @classmethod
    def load(cls, session: Session) -> Directory:
        people = {
            r.id: Contact(r.id, r.name, r.email, r.team_id, r.role)
            for r in session.execute(
                select(Person.id, Person.name, Person.email, Person.team_id, Person.role).where(
                    Person.active.is_(True)
                )
            )
        }
        teams = session.execute(select(Team.id, Team.key, Team.name)).all()
        team_keys = {t.id: t.key for t in teams}
        team_names = {t.id: t.name or t.key for t in teams}
        person_channels: dict[int, list[int]] = defaultdict(list)
        team_channels: dict[int, list[int]] = defaultdict(list)
        rows = session.execute(
            select(
                NotificationChannel.id, NotificationChannel.team_id, NotificationChannel.person_id
            )
            .where(NotificationChannel.enabled.is_(True))
            .order_by(NotificationChannel.id)
        )
        for cid, team_id, person_id in rows:
            if person_id is not None:
                person_channels[person_id].append(cid)
            elif team_id is not None:
                team_channels[team_id].append(cid)
        return cls(people, team_keys, person_channels, team_channels, team_names)

    def channels_for_person(self, person_id: int) -> list[int]:
        """The person's own channels, else their team's (a message names who it is for)."""
        p = self.people.get(person_id)
        if p is None:
            return []
        return self.person_channels.get(person_id) or self.team_channels.get(p.team_id, [])

    def with_role(
        self, role: Role, team_id: int | None = None, exclude: int | None = None
    ) -> list[Contact]:
        if self._by_role is None:
            index: dict[tuple[Role, int | None], list[Contact]] = defaultdict(list)
            for p in sorted(self.people.values(), key=lambda p: p.id):
                index[(p.role, p.team_id)].append(p)
                index[(p.role, None)].append(p)
            self._by_role = index
        return [p for p in self._by_role.get((role, team_id), []) if p.id != exclude]

    def managers_of(self, team_ids: list[int]) -> list[Contact]:
        """The managers of these teams, each once, in the teams' order; any manager when the
        teams have none (someone must hear of an escalation)."""
        found = [m for t in team_ids for m in self.with_role(Role.MANAGER, t)]
        return list({m.id: m for m in found}.values()) or self.with_role(Role.MANAGER)

    def leads_for(self, owner: Contact, assigned_by_id: int | None = None) -> list[Contact]:
        """The lead who assigned the item, if they lead the owner's team; else the team's
        leads; a team without a lead escalates to its manager(s)."""
        assigner = self.people.get(assigned_by_id) if assigned_by_id else None
        if (
            assigner is not None
            and assigner.role is Role.LEAD
            and assigner.team_id == owner.team_id
            and assigner.id != owner.id
        ):
            return [assigner]
        return self.with_role(Role.LEAD, owner.team_id, exclude=owner.id) or self.managers_for(
            owner
        )

    def managers_for(self, owner: Contact) -> list[Contact]:
        return self.with_role(Role.MANAGER, owner.team_id, exclude=owner.id) or self.with_role(
            Role.MANAGER, exclude=owner.id
        )
