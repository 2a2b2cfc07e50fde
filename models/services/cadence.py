"""The cadence: check-in requests, reminders, escalations, digests and recap-due, planned as
notifications with idempotency keys, and the delivery bookkeeping around them.

Everything here is set-based: a planning function runs a constant number of queries whatever
the number of cycles and action items (one to find the candidates, a few to load the people
and channels, then batched ``INSERT ... ON CONFLICT (key) DO NOTHING``). Planning the same day
twice inserts nothing the second time, because every message has a deterministic key:

=============================================================  ================================
key (each delivery adds ``#c<channel id>``)                    planned
=============================================================  ================================
``checkin:<cycle>:p<owner>:n<period>``                         once per cadence period
``reminder:<action>:<due date>:soon:p<owner>``                 once when due within N days
``reminder:<action>:<due date>:overdue:p<owner>``              once when overdue
``escalation:<action>:<due date>:lead:p<lead>``                overdue past the grace period
``escalation:<action>:<due date>:manager:p<manager>``          after the second grace period
``digest:<cycle>:<ISO week>``                                  once a week per cycle
``recap-due:<cycle>:<period end>:opened|blocked:p<person>``    once per outcome
=============================================================  ================================

Keys carry the due date and the person, not the run date: moving a due date or reassigning an
item re-arms its reminders, and a day without a run loses nothing (the next run still finds
the item in the same state).

Delivery (see ``flows/notify.py``) claims a batch of rows (``pending`` → ``sending``), sends
each, and marks each ``sent`` at once; see :func:`claim_batch` for the at-least-once window.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence import (
    ChannelKind,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from models.enums import FINISHED_STATUSES, ActionStatus, Confidence, Phase, Role
from models.errors import Forbidden, InvalidInput, NotFound, TransitionRefused
from models.rules import CycleFacts, gate_blockers
from models.schemas import EmailStr, parse_input
from models.services.common import get_or_raise, person_by_email, record_event
from models.services.people import team_by_key
from models.tables import (
    ActionItem,
    ChecklistItem,
    Cycle,
    CycleTeam,
    Event,
    Person,
    Playbook,
    Team,
)

INSERT_BATCH = 500
IN_CHUNK = 900  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits

CADENCE_DAYS = {"daily": 1, "weekly": 7, "biweekly": 14, "monthly": 30}


# --- policy -------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        for name in ("remind_days_before", "escalate_after_days", "escalate_to_manager_after_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or value > 365:
                raise InvalidInput(f"{name} must be a whole number of days from 0 to 365")
        if self.escalate_after_days < 1:
            raise InvalidInput("escalate_after_days must be at least 1 (an item is late first)")
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
            )
            if settings.get(k) is not None
        }
        if not known:
            return self
        return CadencePolicy(**{**self.__dict__, **known})

    @property
    def cadence_days(self) -> int:
        return CADENCE_DAYS[self.cadence]


def _policies(
    session: Session, playbook_ids: Iterable[int], base: CadencePolicy
) -> dict[int, CadencePolicy]:
    ids = sorted(set(playbook_ids))
    out: dict[int, CadencePolicy] = {}
    for chunk in _chunks(ids):
        for pid, body in session.execute(
            select(Playbook.id, Playbook.body).where(Playbook.id.in_(chunk))
        ):
            out[pid] = base.for_playbook(body)
    return out


# --- channels -----------------------------------------------------------------------------

_SCHEMES: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.EMAIL: (
        "mailto",
        "mailtos",
        "sendgrid",
        "mailgun",
        "ses",
        "postmark",
        "resend",
        "sparkpost",
        "brevo",
        "smtp2go",
        "mailersend",
        "o365",
        "azure",
    ),
    ChannelKind.SLACK: ("slack",),
    ChannelKind.TEAMS: ("workflow", "workflows"),
    ChannelKind.WEBHOOK: ("json", "jsons", "form", "forms", "xml", "xmls"),
}
_NATIVE_HOSTS: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.SLACK: ("hooks.slack.com",),
    ChannelKind.TEAMS: (".logic.azure.com", ".api.powerplatform.com"),
}
_INDIRECT = re.compile(r"^(env|secret):([A-Za-z_][A-Za-z0-9_.-]{0,199})$")


def check_channel_url(kind: ChannelKind, url: str) -> str:
    """The URL, stripped, if it is an apprise URL of this kind (or an ``env:``/``secret:``
    indirection, checked when delivering); else :class:`InvalidInput` saying what fits."""
    url = url.strip()
    if not url:
        raise InvalidInput("the channel URL is empty")
    if _INDIRECT.match(url):
        return url
    if any(c.isspace() for c in url):
        raise InvalidInput("a channel URL has no spaces")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _SCHEMES[kind]:
        return url
    if scheme == "https":
        host = (urlsplit(url).hostname or "").lower()
        if any(host == h.lstrip(".") or host.endswith(h) for h in _NATIVE_HOSTS.get(kind, ())):
            return url
    allowed = ", ".join(f"{s}://" for s in _SCHEMES[kind][:4])
    raise InvalidInput(
        f"not a {kind} apprise URL (expected {allowed}..., or env:NAME / secret:NAME)"
    )


def mask_url(url: str) -> str:
    """A channel URL safe to show: passwords and tokens replaced by ``***``."""
    if _INDIRECT.match(url):
        return url
    parts = urlsplit(url)
    if not parts.scheme:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    if parts.scheme in ("json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"):
        path = parts.path
    else:  # slack/teams/... carry their tokens in the host and path
        netloc = (netloc[:4] + "***") if netloc else ""
        path = "/***" if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{netloc}{path}" + ("?***" if parts.query else "")


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
        what = f"team {team.key!r}" if team else f"{person.email}"  # type: ignore[union-attr]
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


# --- who gets what, where -----------------------------------------------------------------


@dataclass(frozen=True)
class _P:
    id: int
    name: str
    email: str
    team_id: int
    role: Role


@dataclass
class Directory:
    """People and enabled channels, loaded once per planning run (a few queries)."""

    people: dict[int, _P]
    team_keys: dict[int, str]
    person_channels: dict[int, list[int]]
    team_channels: dict[int, list[int]]
    _by_role: dict[tuple[Role, int | None], list[_P]] | None = None

    @classmethod
    def load(cls, session: Session) -> Directory:
        people = {
            r.id: _P(r.id, r.name, r.email, r.team_id, r.role)
            for r in session.execute(
                select(Person.id, Person.name, Person.email, Person.team_id, Person.role).where(
                    Person.active.is_(True)
                )
            )
        }
        team_keys = dict(session.execute(select(Team.id, Team.key)).tuples().all())
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
        return cls(people, team_keys, person_channels, team_channels)

    def channels_for_person(self, person_id: int) -> list[int]:
        """The person's own channels, else their team's (a message names who it is for)."""
        p = self.people.get(person_id)
        if p is None:
            return []
        return self.person_channels.get(person_id) or self.team_channels.get(p.team_id, [])

    def with_role(
        self, role: Role, team_id: int | None = None, exclude: int | None = None
    ) -> list[_P]:
        if self._by_role is None:
            index: dict[tuple[Role, int | None], list[_P]] = defaultdict(list)
            for p in sorted(self.people.values(), key=lambda p: p.id):
                index[(p.role, p.team_id)].append(p)
                index[(p.role, None)].append(p)
            self._by_role = index
        return [p for p in self._by_role.get((role, team_id), []) if p.id != exclude]

    def leads_for(self, owner: _P, assigned_by_id: int | None = None) -> list[_P]:
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

    def managers_for(self, owner: _P) -> list[_P]:
        return self.with_role(Role.MANAGER, owner.team_id, exclude=owner.id) or self.with_role(
            Role.MANAGER, exclude=owner.id
        )


@dataclass
class Planned:
    """A message to plan: delivered to each of ``channels`` under ``key#c<channel>``."""

    key: str
    kind: NotificationKind
    recipient: str
    channels: list[int]
    subject: str
    body: str
    cycle_id: int | None = None
    action_item_id: int | None = None


@dataclass
class PlanResult:
    """What a planning run did: ``planned`` new notifications, ``already`` planned before (a
    re-run), ``unreachable`` messages with nobody or no channel to send them to."""

    kind: str
    candidates: int = 0
    planned: int = 0
    already: int = 0
    unreachable: list[str] = field(default_factory=list)
    changed: int = 0  # rows changed by the run besides notifications (confidence, phases)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "candidates": self.candidates,
            "planned": self.planned,
            "already": self.already,
            "unreachable": len(self.unreachable),
            "changed": self.changed,
            **self.details,
        }


def _chunks(seq: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose key is new: the keys already stored are looked up first (one
    query per 900 keys), the rest go in with ``INSERT ... ON CONFLICT (key) DO NOTHING`` (so a
    concurrent run planning the same messages inserts each key once). Returns how many were
    new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL
        raise RuntimeError(f"unsupported database {dialect!r}")
    existing: set[str] = set()
    for chunk in _chunks([r["key"] for r in rows]):
        existing.update(
            session.scalars(select(Notification.key).where(Notification.key.in_(chunk)))
        )
    new = [r for r in rows if r["key"] not in existing]
    if not new:
        return 0
    table = Notification.__table__
    stmt = (
        dialect_insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    )
    now = utcnow()
    defaults = {
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "cycle_id": None,
        "action_item_id": None,
    }
    inserted = 0
    for batch in _chunks(new, INSERT_BATCH):
        inserted += len(session.execute(stmt, [defaults | r for r in batch]).all())
    return inserted


def _store_plan(session: Session, messages: list[Planned], result: PlanResult) -> PlanResult:
    rows: list[dict[str, Any]] = []
    for m in messages:
        if not m.channels:
            result.unreachable.append(m.key)
            continue
        for cid in dict.fromkeys(m.channels):
            rows.append(
                {
                    "key": f"{m.key}#c{cid}",
                    "channel_id": cid,
                    "recipient": m.recipient[:320],
                    "kind": m.kind,
                    "cycle_id": m.cycle_id,
                    "action_item_id": m.action_item_id,
                    "subject": m.subject[:300],
                    "body": m.body,
                }
            )
    new = _insert_ignore(session, rows)
    result.planned += new
    result.already += len(rows) - new
    return result


def _footer(key: str) -> str:
    return f"\n\n(ref {key})"


def _due_text(due: date, today: date) -> str:
    days = (due - today).days
    if days == 0:
        return f"due today ({due.isoformat()})"
    if days == 1:
        return f"due tomorrow ({due.isoformat()})"
    if days > 1:
        return f"due in {days} days ({due.isoformat()})"
    late = -days
    return f"{late} day{'s' if late != 1 else ''} overdue (was due {due.isoformat()})"


# --- reminders and escalations ------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    id: int
    cycle_id: int
    cycle_title: str
    playbook_id: int
    title: str
    due: date | None
    owner_id: int | None
    status: ActionStatus
    confidence: Confidence
    assigned_by_id: int | None


_ITEM_COLS = (
    ActionItem.id,
    ActionItem.cycle_id,
    Cycle.title,
    Cycle.playbook_id,
    ActionItem.title,
    ActionItem.due_date,
    ActionItem.owner_id,
    ActionItem.status,
    ActionItem.confidence,
    ActionItem.assigned_by_id,
)


def _items(session: Session, *conditions: Any) -> list[_Item]:
    stmt = (
        select(*_ITEM_COLS)
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(
            Cycle.phase == Phase.EXECUTE,
            ActionItem.status.not_in(FINISHED_STATUSES),
            *conditions,
        )
        .order_by(ActionItem.cycle_id, ActionItem.id)
    )
    return [_Item(*row) for row in session.execute(stmt)]


def reminder_candidates(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> list[tuple[_Item, str]]:
    """Unfinished, owned items of cycles in Execute that need a reminder today: ``soon`` (due
    within the policy's window) or ``overdue``. One query."""
    max_window = max(p.remind_days_before for p in [policy, *_execute_policies(session, policy)])
    items = _items(
        session,
        ActionItem.owner_id.is_not(None),
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today + timedelta(days=max_window),
    )
    policies = _policies(session, {i.playbook_id for i in items}, policy)
    out = []
    for item in items:
        assert item.due is not None
        days = (item.due - today).days
        if days < 0:
            out.append((item, "overdue"))
        elif days <= policies[item.playbook_id].remind_days_before:
            out.append((item, "soon"))
    return out


def _execute_policies(session: Session, policy: CadencePolicy) -> list[CadencePolicy]:
    """The policies of the playbooks of cycles in Execute (few rows: one per playbook)."""
    ids = session.scalars(
        select(Cycle.playbook_id).where(Cycle.phase == Phase.EXECUTE).distinct()
    ).all()
    return list(_policies(session, ids, policy).values())


def plan_reminders(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> PlanResult:
    """Plan the day's reminders to action-item owners (due soon, or overdue)."""
    directory = Directory.load(session)
    candidates = reminder_candidates(session, today, policy)
    result = PlanResult(kind="reminder", candidates=len(candidates))
    messages = []
    for item, stage in candidates:
        assert item.due is not None and item.owner_id is not None
        owner = directory.people.get(item.owner_id)
        key = f"reminder:{item.id}:{item.due.isoformat()}:{stage}:p{item.owner_id}"
        if owner is None:  # deactivated owner
            result.unreachable.append(key)
            continue
        when = _due_text(item.due, today)
        if stage == "soon":
            subject = f"Reminder: {item.title!r} is {when.split(' (')[0]}"
            ask = "If it will slip, say so now (status and confidence) so the other team can plan."
        else:
            subject = f"Overdue: {item.title!r}"
            ask = "Finish it, or update its status and confidence and talk to your lead."
        body = (
            f"Hi {owner.name},\n\nYour action item {item.title!r} in cycle {item.cycle_title!r} "
            f"is {when}. Status: {item.status}, confidence: {item.confidence}.\n{ask}"
            + _footer(key)
        )
        messages.append(
            Planned(
                key=key,
                kind=NotificationKind.REMINDER,
                recipient=owner.email,
                channels=directory.channels_for_person(owner.id),
                subject=subject,
                body=body,
                cycle_id=item.cycle_id,
                action_item_id=item.id,
            )
        )
    return _store_plan(session, messages, result)


def escalation_candidates(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> list[tuple[_Item, str]]:
    """Owned items overdue past the grace period: ``lead`` level, then ``manager`` level after
    the second grace period (both when a run finds an item already past both). One query."""
    min_grace = min(p.escalate_after_days for p in [policy, *_execute_policies(session, policy)])
    items = _items(
        session,
        ActionItem.owner_id.is_not(None),
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today - timedelta(days=min_grace),
    )
    policies = _policies(session, {i.playbook_id for i in items}, policy)
    out = []
    for item in items:
        assert item.due is not None
        p = policies[item.playbook_id]
        late = (today - item.due).days
        if late >= p.escalate_after_days:
            out.append((item, "lead"))
        if late >= p.escalate_after_days + p.escalate_to_manager_after_days:
            out.append((item, "manager"))
    return out


def plan_escalations(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> PlanResult:
    """Plan escalations of overdue items: to the owner's team lead (the lead who assigned the
    item, else every lead of the team; a manager when the team has none), then to the team's
    manager(s) (any manager when it has none)."""
    directory = Directory.load(session)
    candidates = escalation_candidates(session, today, policy)
    result = PlanResult(kind="escalation", candidates=len(candidates))
    messages = []
    for item, level in candidates:
        assert item.due is not None and item.owner_id is not None
        base = f"escalation:{item.id}:{item.due.isoformat()}:{level}"
        owner = directory.people.get(item.owner_id)
        if owner is None:
            result.unreachable.append(base)
            continue
        recipients = (
            directory.leads_for(owner, item.assigned_by_id)
            if level == "lead"
            else directory.managers_for(owner)
        )
        if not recipients:
            result.unreachable.append(base)
            continue
        team = directory.team_keys.get(owner.team_id, "?")
        for r in recipients:
            key = f"{base}:p{r.id}"
            body = (
                f"Hi {r.name},\n\n{owner.name} ({owner.email}, {team}) has an overdue action "
                f"item in cycle {item.cycle_title!r}: {item.title!r}, "
                f"{_due_text(item.due, today)}. Status: {item.status}, confidence: "
                f"{item.confidence}.\nPlease help unblock it, re-plan it, or drop it with a reason."
                + _footer(key)
            )
            messages.append(
                Planned(
                    key=key,
                    kind=NotificationKind.ESCALATION,
                    recipient=r.email,
                    channels=directory.channels_for_person(r.id),
                    subject=f"Escalation ({level}): {item.title!r} is overdue ({owner.name})",
                    body=body,
                    cycle_id=item.cycle_id,
                    action_item_id=item.id,
                )
            )
    return _store_plan(session, messages, result)


# --- execute check-ins: confidence and check-in requests ----------------------------------


def update_confidence(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> int:
    """Raise the confidence flag of unfinished items in Execute from the facts: overdue →
    off_track; due within the reminder window and not started → at_risk. Never lowers a flag
    (people do). Bulk UPDATE + bulk audit events; returns how many items changed."""
    window = max(p.remind_days_before for p in [policy, *_execute_policies(session, policy)])
    items = _items(
        session,
        ActionItem.due_date.is_not(None),
        ActionItem.due_date <= today + timedelta(days=window),
    )
    policies = _policies(session, {i.playbook_id for i in items}, policy)
    moves: dict[tuple[Confidence, Confidence], list[_Item]] = defaultdict(list)
    for item in items:
        assert item.due is not None
        if item.due < today and item.confidence is not Confidence.OFF_TRACK:
            moves[(item.confidence, Confidence.OFF_TRACK)].append(item)
        elif (
            item.due >= today
            and (item.due - today).days <= policies[item.playbook_id].remind_days_before
            and item.status is ActionStatus.OPEN
            and item.confidence is Confidence.ON_TRACK
        ):
            moves[(item.confidence, Confidence.AT_RISK)].append(item)
    changed = 0
    now = utcnow()
    by_id = {i.id: i for group in moves.values() for i in group}
    for (old, new), group in moves.items():
        for chunk in _chunks([i.id for i in group]):
            ids = (
                session.execute(
                    update(ActionItem.__table__)
                    .where(
                        ActionItem.__table__.c.id.in_(chunk),
                        ActionItem.__table__.c.confidence == old,
                        ActionItem.__table__.c.status.not_in(FINISHED_STATUSES),
                    )
                    .values(
                        confidence=new, updated_at=now, version=ActionItem.__table__.c.version + 1
                    )
                    .returning(ActionItem.__table__.c.id)
                )
                .scalars()
                .all()
            )
            changed += len(ids)
            events = []
            for aid in ids:
                item = by_id[aid]
                assert item.due is not None
                reason = (
                    f"overdue since {item.due.isoformat()}"
                    if new is Confidence.OFF_TRACK
                    else f"due {item.due.isoformat()} and not started"
                )
                events.append(
                    {
                        "at": now,
                        "actor_id": None,
                        "verb": "action.updated",
                        "object_type": "action_item",
                        "object_id": aid,
                        "cycle_id": item.cycle_id,
                        "before": {"confidence": old.value},
                        "after": {"confidence": new.value, "reason": reason, "by": "system"},
                    }
                )
            if events:
                session.execute(insert(Event.__table__), events)
    if changed:
        session.expire_all()
    return changed


def plan_checkins(
    session: Session, today: date, policy: CadencePolicy = CadencePolicy()
) -> PlanResult:
    """Ask each owner of unfinished items in Execute for progress, once per cadence period of
    the cycle (the playbook's ``settings.cadence``: daily, weekly, biweekly or monthly)."""
    directory = Directory.load(session)
    cycles = session.execute(
        select(Cycle.id, Cycle.title, Cycle.period_start, Cycle.playbook_id).where(
            Cycle.phase == Phase.EXECUTE
        )
    ).all()
    policies = _policies(session, {c.playbook_id for c in cycles}, policy)
    period = {
        c.id: max(0, (today - c.period_start).days) // policies[c.playbook_id].cadence_days
        for c in cycles
    }
    titles = {c.id: c.title for c in cycles}
    items = _items(session, ActionItem.owner_id.is_not(None))
    by_owner: dict[tuple[int, int], list[_Item]] = defaultdict(list)
    for item in items:
        assert item.owner_id is not None
        by_owner[(item.cycle_id, item.owner_id)].append(item)
    result = PlanResult(kind="checkin", candidates=len(by_owner))
    messages = []
    for (cycle_id, owner_id), owned in sorted(by_owner.items()):
        key = f"checkin:{cycle_id}:p{owner_id}:n{period[cycle_id]}"
        owner = directory.people.get(owner_id)
        if owner is None:
            result.unreachable.append(key)
            continue
        lines = [
            f"- #{i.id} {i.title} ({_due_text(i.due, today) if i.due else 'no due date'}; "
            f"{i.status}, {i.confidence})"
            for i in owned
        ]
        body = (
            f"Hi {owner.name},\n\nCheck-in time for cycle {titles[cycle_id]!r}. How are these "
            "going? Record progress, status and confidence for each:\n"
            + "\n".join(lines)
            + "\n\nIn the web app, or: aligncycle checkin add ID --progress PERCENT "
            "--confidence on_track|at_risk|off_track --note TEXT" + _footer(key)
        )
        messages.append(
            Planned(
                key=key,
                kind=NotificationKind.CHECKIN,
                recipient=owner.email,
                channels=directory.channels_for_person(owner.id),
                subject=f"Check-in: {len(owned)} action item(s) in {titles[cycle_id]!r}",
                body=body,
                cycle_id=cycle_id,
            )
        )
    return _store_plan(session, messages, result)


# --- weekly digest ------------------------------------------------------------------------


@dataclass
class Digest:
    """What a cycle's weekly digest says."""

    cycle_id: int
    title: str
    period_start: date
    period_end: date
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    kpis: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    due_next_week: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.by_status.get("done", 0)

    @property
    def dropped(self) -> int:
        return self.by_status.get("dropped", 0)

    @property
    def percent_done(self) -> int:
        live = self.total - self.dropped
        return round(100 * self.done / live) if live else 0

    def text(self, today: date, limit: int = 10) -> str:
        def block(title: str, lines: list[str], empty: str) -> str:
            shown = lines[:limit] + (
                [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
            )
            return f"{title}\n" + ("\n".join(f"- {x}" for x in shown) if shown else f"- {empty}")

        status = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "no items"
        days_left = (self.period_end - today).days
        return "\n\n".join(
            [
                f"Cycle {self.title!r} ({self.period_start.isoformat()} to "
                f"{self.period_end.isoformat()}, {max(days_left, 0)} day(s) left)",
                f"Progress: {self.done} of {self.total - self.dropped} action items done "
                f"({self.percent_done}%); {status}",
                block("KPIs:", self.kpis, "none defined"),
                block("Risks:", self.risks, "none"),
                block("Due next week:", self.due_next_week, "nothing"),
            ]
        )


#: Funnel KPIs every digest shows (besides the playbook's own ones the funnel computes).
DIGEST_KPIS = ("mql_volume", "mql_to_sql_rate", "sla_attainment", "win_rate")


def _kpi_lines(
    session: Session, cycles: dict[int, Any], bodies: dict[int, dict[str, Any]], today: date
) -> dict[int, list[str]]:
    """KPI lines per cycle. ``models.funnel`` may provide its own
    ``digest_kpis(session, cycle_ids, today) -> {cycle_id: [line, ...]}``; otherwise the
    digest shows the funnel's figures for the last 7 days next to the cycle's baseline (see
    :func:`_funnel_kpi_lines`); without the funnel module, the KPI names of the playbook."""
    try:
        from models import funnel  # type: ignore[attr-defined]
    except ImportError as exc:
        if exc.name not in ("models.funnel", None):
            raise
        funnel = None
    provider = getattr(funnel, "digest_kpis", None)
    if provider is not None:
        return provider(session, sorted(cycles), today)
    if funnel is not None:
        guard = session.begin_nested() if _is_postgres(session) else nullcontext()
        try:
            with guard:  # a failing KPI query must not abort the plan's transaction
                return _funnel_kpi_lines(session, cycles, bodies, today)
        except Exception as exc:  # noqa: BLE001 - the digest goes out without figures
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return {cid: [f"figures unavailable ({reason})"] for cid in cycles}
    out = {}
    for cid, c in cycles.items():
        names = (bodies.get(c.playbook_id) or {}).get("kpis") or []
        out[cid] = [f"{name}: no figures yet" for name in names]
    return out


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _funnel_kpi_lines(
    session: Session, cycles: dict[int, Any], bodies: dict[int, dict[str, Any]], today: date
) -> dict[int, list[str]]:
    """The funnel's KPIs of the last 7 days (company-wide: one computation per distinct SLA
    setting, not per cycle) next to each cycle's frozen baseline snapshot (one query)."""
    from models.funnel import kpis as funnel_kpis
    from models.funnel.tables import CycleKpiSnapshot, FunnelRecord

    if session.scalar(select(FunnelRecord.id).limit(1)) is None:
        return {cid: ["no funnel data imported yet (aligncycle funnel import)"] for cid in cycles}
    baselines: dict[int, dict[str, float | None]] = defaultdict(dict)
    for chunk in _chunks(sorted(cycles)):
        for cid, kpi, value in session.execute(
            select(CycleKpiSnapshot.cycle_id, CycleKpiSnapshot.kpi, CycleKpiSnapshot.value).where(
                CycleKpiSnapshot.cycle_id.in_(chunk), CycleKpiSnapshot.kind == "baseline"
            )
        ):
            baselines[cid][kpi] = value
    start, end = today - timedelta(days=7), today - timedelta(days=1)
    current: dict[tuple[int, int], dict[str, Any]] = {}
    out: dict[int, list[str]] = {}
    for cid, c in cycles.items():
        body = bodies.get(c.playbook_id) or {}
        settings = body.get("settings") or {}
        key = (int(settings.get("handoff_sla_hours") or 24), int(settings.get("stall_days") or 30))
        if key not in current:
            current[key] = funnel_kpis.compute_kpis(
                session, start=start, end=end, sla_hours=key[0], stall_days=key[1]
            ).overall()
        values = current[key]
        wanted = [k for k in (body.get("kpis") or []) if k in funnel_kpis.KPIS]
        names = list(dict.fromkeys([*wanted, *DIGEST_KPIS]))
        lines = []
        for name in names:
            if name not in funnel_kpis.KPIS:
                continue
            now = values.get(name)
            line = (
                f"{funnel_kpis.KPIS[name].title}: "
                f"{funnel_kpis.format_value(name, now.value if now else None)} in the last 7 days"
            )
            if name in baselines.get(cid, {}):
                line += f" (baseline {funnel_kpis.format_value(name, baselines[cid][name])})"
            lines.append(line)
        out[cid] = lines
    return out


def digest_content(
    session: Session, today: date, cycle_ids: Sequence[int] | None = None
) -> dict[int, Digest]:
    """The digest of every cycle in Execute (or of ``cycle_ids``): four set-based queries."""
    stmt = select(Cycle.id, Cycle.title, Cycle.period_start, Cycle.period_end, Cycle.playbook_id)
    stmt = (
        stmt.where(Cycle.phase == Phase.EXECUTE)
        if cycle_ids is None
        else stmt.where(Cycle.id.in_(list(cycle_ids)))
    )
    cycles = {c.id: c for c in session.execute(stmt.order_by(Cycle.id))}
    if not cycles:
        return {}
    scope = Cycle.phase == Phase.EXECUTE if cycle_ids is None else Cycle.id.in_(list(cycle_ids))
    digests = {cid: Digest(cid, c.title, c.period_start, c.period_end) for cid, c in cycles.items()}
    counts = session.execute(
        select(ActionItem.cycle_id, ActionItem.status, func.count())
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .where(scope)
        .group_by(ActionItem.cycle_id, ActionItem.status)
    )
    for cid, status, n in counts:
        d = digests[cid]
        d.by_status[str(status)] = n
        d.total += n
    next_week = today + timedelta(days=7)
    risky = or_(
        ActionItem.due_date < today,
        ActionItem.confidence.in_((Confidence.AT_RISK, Confidence.OFF_TRACK)),
        ActionItem.status == ActionStatus.BLOCKED,
        ActionItem.owner_id.is_(None),
        and_(ActionItem.due_date >= today, ActionItem.due_date <= next_week),
    )
    owner = Person.__table__.alias("owner")
    rows = session.execute(
        select(
            ActionItem.cycle_id,
            ActionItem.title,
            ActionItem.due_date,
            ActionItem.status,
            ActionItem.confidence,
            owner.c.name,
        )
        .join(Cycle, Cycle.id == ActionItem.cycle_id)
        .outerjoin(owner, owner.c.id == ActionItem.owner_id)
        .where(scope, ActionItem.status.not_in(FINISHED_STATUSES), risky)
        .order_by(
            ActionItem.cycle_id, ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id
        )
    )
    for cid, title, due, status, confidence, owner_name in rows:
        d = digests[cid]
        who = owner_name or "no owner"
        reasons = []
        if due is not None and due < today:
            reasons.append(_due_text(due, today))
        if status is ActionStatus.BLOCKED:
            reasons.append("blocked")
        if confidence is not Confidence.ON_TRACK:
            reasons.append(str(confidence).replace("_", " "))
        if owner_name is None:
            reasons.append("no owner")
        if reasons:
            d.risks.append(f"{title} ({who}): " + ", ".join(dict.fromkeys(reasons)))
        if due is not None and today <= due <= next_week:
            d.due_next_week.append(f"{title} ({who}), {_due_text(due, today)}")
    bodies = dict(
        session.execute(
            select(Playbook.id, Playbook.body).where(
                Playbook.id.in_({c.playbook_id for c in cycles.values()})
            )
        ).all()
    )
    for cid, lines in _kpi_lines(session, cycles, bodies, today).items():
        if cid in digests:
            digests[cid].kpis = list(lines)
    return digests


def plan_digests(session: Session, today: date) -> PlanResult:
    """Plan this ISO week's digest of every cycle in Execute, to each of its teams' channels (a
    team without one gets it on its point person's channels)."""
    directory = Directory.load(session)
    digests = digest_content(session, today)
    result = PlanResult(kind="digest", candidates=len(digests))
    if not digests:
        return result
    teams: dict[int, list[tuple[int, int | None]]] = defaultdict(list)
    for cid, team_id, pp in session.execute(
        select(CycleTeam.cycle_id, CycleTeam.team_id, CycleTeam.point_person_id)
        .join(Cycle, Cycle.id == CycleTeam.cycle_id)
        .where(Cycle.phase == Phase.EXECUTE)
        .order_by(CycleTeam.id)
    ):
        teams[cid].append((team_id, pp))
    year, week, _ = today.isocalendar()
    messages = []
    for cid, digest in digests.items():
        channels: list[int] = []
        names = []
        for team_id, pp in teams.get(cid, []):
            names.append(directory.team_keys.get(team_id, "?"))
            found = directory.team_channels.get(team_id) or (
                directory.person_channels.get(pp, []) if pp else []
            )
            channels.extend(found)
        key = f"digest:{cid}:{year}-W{week:02d}"
        messages.append(
            Planned(
                key=key,
                kind=NotificationKind.DIGEST,
                recipient="teams:" + ",".join(names),
                channels=channels,
                subject=f"Weekly digest: {digest.title} ({digest.percent_done}% done, "
                f"{len(digest.risks)} risk(s))",
                body=digest.text(today) + _footer(key),
                cycle_id=cid,
            )
        )
    return _store_plan(session, messages, result)


# --- recap due: the system opens Recap when a cycle's period is over ----------------------


def _execute_facts(session: Session, cycle_ids: Sequence[int]) -> dict[int, CycleFacts]:
    """The gate facts of cycles in Execute, gathered for many cycles in three queries."""
    out: dict[int, CycleFacts] = {}
    for chunk in _chunks(list(cycle_ids)):
        cycles = session.execute(
            select(Cycle.id, Cycle.phase, Cycle.period_end).where(Cycle.id.in_(chunk))
        ).all()
        pps: dict[int, set[int]] = defaultdict(set)
        for cid, pp in session.execute(
            select(CycleTeam.cycle_id, CycleTeam.point_person_id).where(
                CycleTeam.cycle_id.in_(chunk), CycleTeam.point_person_id.is_not(None)
            )
        ):
            pps[cid].add(pp)
        unanswered: dict[int, list[str]] = defaultdict(list)
        for cid, key in session.execute(
            select(ChecklistItem.cycle_id, ChecklistItem.key)
            .where(
                ChecklistItem.cycle_id.in_(chunk),
                ChecklistItem.phase == Phase.EXECUTE,
                ChecklistItem.required.is_(True),
                ChecklistItem.answer.is_(None),
            )
            .order_by(ChecklistItem.cycle_id, ChecklistItem.position)
        ):
            unanswered[cid].append(key)
        unfinished: dict[int, list[str]] = defaultdict(list)
        for cid, title in session.execute(
            select(ActionItem.cycle_id, ActionItem.title)
            .where(ActionItem.cycle_id.in_(chunk), ActionItem.status.not_in(FINISHED_STATUSES))
            .order_by(ActionItem.cycle_id, ActionItem.id)
        ):
            unfinished[cid].append(title)
        for cid, phase, period_end in cycles:
            out[cid] = CycleFacts(
                phase=phase,
                period_end=period_end,
                point_person_ids=frozenset(pps[cid]),
                required_unanswered=tuple(unanswered[cid]),
                unfinished_actions=tuple(unfinished[cid]),
            )
    return out


@dataclass
class RecapDue:
    opened: list[int] = field(default_factory=list)
    blocked: dict[int, list[str]] = field(default_factory=dict)


def open_recaps_due(
    session: Session, today: date, cycle_ids: Sequence[int] | None = None
) -> RecapDue:
    """Open Recap for every cycle in Execute whose period ended before ``today``, when the
    Execute gate allows it (the period is over, so unfinished items no longer block; required
    execute checklist items still do). Done by the system: the audit log records no actor and
    the reason "period ended". Set-based: a few queries and one UPDATE per 900 cycles."""
    stmt = select(Cycle.id).where(Cycle.phase == Phase.EXECUTE, Cycle.period_end < today)
    if cycle_ids is not None:
        stmt = stmt.where(Cycle.id.in_(list(cycle_ids)))
    ids = session.scalars(stmt.order_by(Cycle.id)).all()
    result = RecapDue()
    ready = []
    for cid, f in _execute_facts(session, ids).items():
        if f.phase is not Phase.EXECUTE:
            continue
        blockers = gate_blockers(f, today)
        if blockers:
            result.blocked[cid] = blockers
        else:
            ready.append(cid)
    now = utcnow()
    table = Cycle.__table__
    for chunk in _chunks(sorted(ready)):
        moved = (
            session.execute(
                update(table)
                .where(table.c.id.in_(chunk), table.c.phase == Phase.EXECUTE)
                .values(
                    phase=Phase.RECAP,
                    phase_changed_at=now,
                    updated_at=now,
                    version=table.c.version + 1,
                )
                .returning(table.c.id)
            )
            .scalars()
            .all()
        )
        result.opened.extend(sorted(moved))
        if moved:
            session.execute(
                insert(Event.__table__),
                [
                    {
                        "at": now,
                        "actor_id": None,
                        "verb": "cycle.advanced",
                        "object_type": "cycle",
                        "object_id": cid,
                        "cycle_id": cid,
                        "before": {"phase": Phase.EXECUTE.value},
                        "after": {
                            "phase": Phase.RECAP.value,
                            "reason": "period ended",
                            "by": "system",
                        },
                    }
                    for cid in sorted(moved)
                ],
            )
    if result.opened:
        session.expire_all()
    return result


def open_recap_when_period_over(session: Session, cycle: Cycle, today: date) -> Cycle:
    """The system's own transition Execute → Recap for one cycle, once its period is over.
    Refused (nothing changes) when the cycle is not in Execute, its period has not ended, or
    the Execute gate still has blockers."""
    if cycle.phase is not Phase.EXECUTE:
        raise TransitionRefused(f"cycle {cycle.id} is in {cycle.phase}, not execute")
    if today <= cycle.period_end:
        raise TransitionRefused(
            f"the period of cycle {cycle.id} runs to {cycle.period_end.isoformat()}"
        )
    session.flush()
    due = open_recaps_due(session, today, [cycle.id])
    if cycle.id in due.blocked:
        raise TransitionRefused(f"cannot leave {Phase.EXECUTE}", due.blocked[cycle.id])
    session.refresh(cycle)
    return cycle


def plan_recap_due(session: Session, today: date, due: RecapDue) -> PlanResult:
    """Tell each point person of the cycles concerned: Recap opened, or what still blocks it."""
    result = PlanResult(
        kind="recap_due",
        candidates=len(due.opened) + len(due.blocked),
        changed=len(due.opened),
        details={"opened": len(due.opened), "blocked": len(due.blocked)},
    )
    ids = sorted([*due.opened, *due.blocked])
    if not ids:
        return result
    directory = Directory.load(session)
    cycles: dict[int, Any] = {}
    pps: dict[int, list[int]] = defaultdict(list)
    for chunk in _chunks(ids):
        for c in session.execute(
            select(Cycle.id, Cycle.title, Cycle.period_end).where(Cycle.id.in_(chunk))
        ):
            cycles[c.id] = c
        for cid, pp in session.execute(
            select(CycleTeam.cycle_id, CycleTeam.point_person_id)
            .where(CycleTeam.cycle_id.in_(chunk), CycleTeam.point_person_id.is_not(None))
            .order_by(CycleTeam.id)
        ):
            pps[cid].append(pp)
    messages = []
    for cid in ids:
        c = cycles[cid]
        opened = cid in due.opened
        base = f"recap-due:{cid}:{c.period_end.isoformat()}:{'opened' if opened else 'blocked'}"
        if opened:
            subject = f"Recap is open: {c.title}"
            text = (
                f"The period of cycle {c.title!r} ended on {c.period_end.isoformat()}, so "
                "aligncycle moved it to Recap. Record the retrospective, run the team survey, "
                "and ask a manager to sign off."
            )
        else:
            subject = f"Recap is due but blocked: {c.title}"
            text = (
                f"The period of cycle {c.title!r} ended on {c.period_end.isoformat()}, but it "
                "cannot move to Recap yet: " + "; ".join(due.blocked[cid])
            )
        targets = [p for p in pps.get(cid, []) if p in directory.people]
        if not targets:
            result.unreachable.append(base)
        for pp in targets:
            person = directory.people[pp]
            key = f"{base}:p{pp}"
            messages.append(
                Planned(
                    key=key,
                    kind=NotificationKind.RECAP_DUE,
                    recipient=person.email,
                    channels=directory.channels_for_person(pp),
                    subject=subject,
                    body=f"Hi {person.name},\n\n{text}" + _footer(key),
                    cycle_id=cid,
                )
            )
    return _store_plan(session, messages, result)


# --- delivery bookkeeping -----------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A claimed notification, with what the deliverer needs to send it."""

    id: int
    key: str
    kind: NotificationKind
    url: str | None  # None: the channel was removed or disabled
    subject: str
    body: str
    attempts: int


def _deliverable(stale_before: datetime) -> Any:
    return or_(
        Notification.status == NotificationStatus.PENDING,
        and_(
            Notification.status == NotificationStatus.SENDING,
            Notification.claimed_at < stale_before,
        ),
    )


def deliverable_ids(
    session: Session,
    kinds: Sequence[NotificationKind] | None,
    stale_before: datetime,
    after_id: int = 0,
    limit: int = 200,
) -> list[int]:
    """Ids of notifications to deliver, in order: pending ones, and ones left ``sending`` by a
    deliverer that stopped before ``stale_before`` (a crash: see :func:`claim_batch`)."""
    stmt = select(Notification.id).where(Notification.id > after_id, _deliverable(stale_before))
    if kinds:
        stmt = stmt.where(Notification.kind.in_(list(kinds)))
    return list(session.scalars(stmt.order_by(Notification.id).limit(limit)))


def claim_batch(
    session: Session,
    claimer: str,
    stale_before: datetime,
    kinds: Sequence[NotificationKind] | None = None,
    after_id: int = 0,
    limit: int = 50,
    ids: Sequence[int] | None = None,
) -> list[Outgoing]:
    """Take up to ``limit`` deliverable notifications (``pending``, or ``sending`` with a claim
    older than ``stale_before``) for sending: one UPDATE, so two deliverers never take the same
    row. The caller commits the claim before sending, and marks each row as soon as it is sent.

    The at-least-once window: a deliverer that dies after a send reached the channel and
    before :func:`mark_sent` committed leaves that row ``sending``; once the claim is stale a
    later run takes it again and that one message goes out twice. A death at any other moment
    sends nothing twice and loses nothing: claimed rows that were not sent yet are taken again
    once stale, sent rows never are.
    """
    table = Notification.__table__
    pick = select(Notification.id).where(Notification.id > after_id, _deliverable(stale_before))
    if kinds:
        pick = pick.where(Notification.kind.in_(list(kinds)))
    if ids is not None:
        pick = pick.where(Notification.id.in_(list(ids)))
    pick = pick.order_by(Notification.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = (
        session.execute(
            update(table)
            .where(
                table.c.id.in_(pick.scalar_subquery()),
                or_(
                    table.c.status == NotificationStatus.PENDING,
                    and_(
                        table.c.status == NotificationStatus.SENDING,
                        table.c.claimed_at < stale_before,
                    ),
                ),
            )
            .values(
                status=NotificationStatus.SENDING,
                claimed_by=claimer,
                claimed_at=utcnow(),
                attempts=table.c.attempts + 1,
            )
            .returning(table.c.id)
        )
        .scalars()
        .all()
    )
    if not claimed:
        return []
    rows = session.execute(
        select(
            Notification.id,
            Notification.key,
            Notification.kind,
            NotificationChannel.url,
            NotificationChannel.enabled,
            Notification.subject,
            Notification.body,
            Notification.attempts,
        )
        .outerjoin(NotificationChannel, NotificationChannel.id == Notification.channel_id)
        .where(Notification.id.in_(claimed))
        .order_by(Notification.id)
    ).all()
    return [
        Outgoing(
            id=n.id,
            key=n.key,
            kind=n.kind,
            url=n.url if n.enabled else None,
            subject=n.subject,
            body=n.body,
            attempts=n.attempts,
        )
        for n in rows
    ]


def claim(
    session: Session, notification_id: int, claimer: str, stale_before: datetime
) -> Outgoing | None:
    """Take one notification for sending, or None if it is sent or another deliverer has it
    (see :func:`claim_batch`)."""
    got = claim_batch(session, claimer, stale_before, ids=[notification_id], limit=1)
    return got[0] if got else None


def mark_sent(session: Session, notification_id: int, claimer: str) -> bool:
    table = Notification.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == notification_id,
            table.c.claimed_by == claimer,
            table.c.status == NotificationStatus.SENDING,
        )
        .values(status=NotificationStatus.SENT, sent_at=utcnow(), error=None)
    )
    return done.rowcount == 1


def mark_failed(
    session: Session, notification_id: int, claimer: str, error: str, final: bool
) -> bool:
    """Record a failed attempt: back to ``pending`` (the next run tries again) or ``failed``."""
    table = Notification.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == notification_id,
            table.c.claimed_by == claimer,
            table.c.status == NotificationStatus.SENDING,
        )
        .values(
            status=NotificationStatus.FAILED if final else NotificationStatus.PENDING,
            error=error[:2000],
        )
    )
    return done.rowcount == 1


def notification_counts(
    session: Session, kinds: Sequence[NotificationKind] | None = None
) -> dict[str, int]:
    stmt = select(Notification.status, func.count()).group_by(Notification.status)
    if kinds:
        stmt = stmt.where(Notification.kind.in_(list(kinds)))
    return {str(s): n for s, n in session.execute(stmt)}


def list_notifications(
    session: Session,
    kind: NotificationKind | None = None,
    status: NotificationStatus | None = None,
    cycle_id: int | None = None,
    limit: int = 100,
) -> list[Notification]:
    stmt = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    if status is not None:
        stmt = stmt.where(Notification.status == status)
    if cycle_id is not None:
        stmt = stmt.where(Notification.cycle_id == cycle_id)
    return list(session.scalars(stmt))


def resolve_url(url: str, secrets: dict[str, str] | None = None) -> str:
    """The apprise URL behind ``env:NAME`` (the deliverer's environment) or ``secret:NAME``
    (``secrets``, loaded by the caller, e.g. from Prefect Secret blocks). Plain URLs as is."""
    m = _INDIRECT.match(url)
    if not m:
        return url
    source, name = m.groups()
    value = os.environ.get(name) if source == "env" else (secrets or {}).get(name)
    if not value:
        where = "environment variable" if source == "env" else "secret"
        raise NotFound(f"channel URL {url}: the {where} {name} is not set")
    return value


def secret_names(session: Session) -> list[str]:
    """Names of the ``secret:NAME`` channels (for the deliverer to load)."""
    urls = session.scalars(
        select(NotificationChannel.url).where(NotificationChannel.url.like("secret:%"))
    )
    return sorted({u.split(":", 1)[1] for u in urls})


__all__ = [
    "CADENCE_DAYS",
    "CadencePolicy",
    "ChannelCreate",
    "ChannelRead",
    "Digest",
    "Directory",
    "Outgoing",
    "PlanResult",
    "RecapDue",
    "add_channel",
    "check_channel_url",
    "claim",
    "claim_batch",
    "deliverable_ids",
    "digest_content",
    "escalation_candidates",
    "list_channels",
    "list_notifications",
    "mark_failed",
    "mark_sent",
    "mask_url",
    "notification_counts",
    "open_recap_when_period_over",
    "open_recaps_due",
    "plan_checkins",
    "plan_digests",
    "plan_escalations",
    "plan_recap_due",
    "plan_reminders",
    "reminder_candidates",
    "remove_channel",
    "resolve_url",
    "secret_names",
    "update_confidence",
]
