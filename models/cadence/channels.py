"""Configuring notification channels: who may, adding, listing and removing them (each
audit-logged with the URL masked)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.cadence.tables import (
    ChannelKind,
    Notification,
    NotificationChannel,
    NotificationStatus,
)
from models.cadence.urls import check_channel_url, mask_url
from models.enums import Role
from models.errors import Forbidden, InvalidInput
from models.schemas import EmailStr, parse_input
from models.services.common import get_or_raise, person_by_email, record_event
from models.services.people import team_by_key
from models.tables import Person


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ChannelKind
    url: str = Field(min_length=1, max_length=2000)
    team: str | None = None  # team key
    person: EmailStr | None = None
    label: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one_owner(self) -> ChannelCreate:
        if (self.team is None) == (self.person is None):
            raise ValueError("a channel belongs to a team or to a person: give exactly one")
        return self


class ChannelRead(BaseModel):
    id: int
    kind: ChannelKind
    owner: str  # "team:<key>" or an email
    url: str  # masked
    label: str | None
    enabled: bool


def _channel_read(ch: NotificationChannel) -> ChannelRead:
    owner = (
        f"team:{ch.team.key}" if ch.team is not None else (ch.person.email if ch.person else "?")
    )
    return ChannelRead(
        id=ch.id,
        kind=ch.kind,
        owner=owner,
        url=mask_url(ch.url),
        label=ch.label,
        enabled=ch.enabled,
    )


def _may_configure(
    actor: Person, team_id: int | None, person_id: int | None, person_team_id: int | None
) -> bool:
    """People set up their own channels; leads their team members' and their team's; point
    persons their team's; managers any."""
    if actor.role is Role.MANAGER:
        return True
    if person_id is not None:
        return actor.id == person_id or (
            actor.role is Role.LEAD and actor.team_id == person_team_id
        )
    return actor.role in (Role.LEAD, Role.POINT_PERSON) and actor.team_id == team_id


def add_channel(session: Session, actor: Person, **data: Any) -> ChannelRead:
    """Configure a channel for a team (``team=KEY``) or a person (``person=EMAIL``)."""
    spec = parse_input(ChannelCreate, **data)
    url = check_channel_url(spec.kind, spec.url)
    team = team_by_key(session, spec.team) if spec.team else None
    person = person_by_email(session, spec.person) if spec.person else None
    if not _may_configure(
        actor,
        team.id if team else None,
        person.id if person else None,
        person.team_id if person else None,
    ):
        what = f"the team {team.name}" if team else f"{person.email}"  # type: ignore[union-attr]
        raise Forbidden(f"you cannot configure notification channels for {what}")
    owner_col = NotificationChannel.team_id if team else NotificationChannel.person_id
    owner_id = team.id if team else person.id  # type: ignore[union-attr]
    existing = session.scalars(select(NotificationChannel.url).where(owner_col == owner_id)).all()
    if url in existing:
        raise InvalidInput("this channel is already configured")
    channel = NotificationChannel(
        team_id=team.id if team else None,
        person_id=person.id if person else None,
        kind=spec.kind,
        url=url,
        label=spec.label,
        enabled=True,
        created_by_id=actor.id,
    )
    session.add(channel)
    session.flush()
    session.refresh(channel)
    read = _channel_read(channel)
    record_event(
        session,
        actor=actor,
        verb="channel.added",
        obj=channel,
        object_type="notification_channel",
        after={"kind": read.kind, "owner": read.owner, "url": read.url, "label": read.label},
    )
    return read


def list_channels(
    session: Session, team: str | None = None, person: str | None = None
) -> list[ChannelRead]:
    stmt = select(NotificationChannel).order_by(NotificationChannel.id)
    if team:
        stmt = stmt.where(NotificationChannel.team_id == team_by_key(session, team).id)
    if person:
        stmt = stmt.where(NotificationChannel.person_id == person_by_email(session, person).id)
    return [_channel_read(c) for c in session.scalars(stmt).unique()]


def remove_channel(session: Session, channel_id: int, actor: Person) -> ChannelRead:
    """Remove a channel. The log keeps its messages; any not yet sent are marked failed."""
    channel = get_or_raise(session, NotificationChannel, channel_id, "notification channel")
    person_team = channel.person.team_id if channel.person is not None else None
    if not _may_configure(actor, channel.team_id, channel.person_id, person_team):
        raise Forbidden(f"you cannot remove notification channel {channel_id}")
    read = _channel_read(channel)
    session.execute(
        update(Notification)
        .where(
            Notification.channel_id == channel.id,
            Notification.status.in_((NotificationStatus.PENDING, NotificationStatus.SENDING)),
        )
        .values(status=NotificationStatus.FAILED, error="channel removed before delivery")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Notification)
        .where(Notification.channel_id == channel.id)
        .values(channel_id=None)
        .execution_options(synchronize_session=False)
    )
    session.delete(channel)
    record_event(
        session,
        actor=actor,
        verb="channel.removed",
        object_type="notification_channel",
        object_id=channel_id,
        before={"kind": read.kind, "owner": read.owner, "url": read.url},
    )
    session.flush()
    return read


def secret_names(session: Session) -> list[str]:
    """Names of the ``secret:NAME`` channels (for the deliverer to load)."""
    urls = session.scalars(
        select(NotificationChannel.url).where(NotificationChannel.url.like("secret:%"))
    )
    return sorted({u.split(":", 1)[1] for u in urls})
