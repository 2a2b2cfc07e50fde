"""Tables of the cadence: where notifications go, and the log of every notification.

* :class:`NotificationChannel` — an apprise URL configured for a team (e.g. the team's Slack
  channel) or for one person (their email). ``url`` may also be an indirection resolved only
  when a message is delivered, so no secret needs to sit in the store: ``env:NAME`` (an
  environment variable of the worker) or ``secret:NAME`` (a Prefect Secret block).
* :class:`Notification` — one message to one channel. ``key`` is its idempotency key, made from
  what the message is about (e.g. ``reminder:42:2026-05-01:soon#c3``), and it is UNIQUE: planning
  the same message twice (a retried or duplicated run) inserts nothing the second time.

Delivery states: ``pending`` (planned) → ``sending`` (claimed by one deliverer, just before the
send) → ``sent``; or ``failed`` after the last attempt. A ``pending`` row with an ``error`` was
tried and will be tried again, not before its ``retry_at`` (the backoff).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.tables import Person, Team, _enum


class ChannelKind(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class NotificationKind(StrEnum):
    CHECKIN = "checkin"  # execute-checkins: "how are your action items going?"
    REMINDER = "reminder"  # due soon, or just overdue (to the owner)
    ESCALATION = "escalation"  # overdue past a grace period (to the owner's lead, then a manager)
    DIGEST = "digest"  # weekly, per cycle, to both teams
    RECAP_DUE = "recap_due"  # the period ended: Recap opened (or what blocks it)
    CYCLE_STARTED = "cycle_started"  # a cycle started on its playbook's schedule (point persons)
    ACCOUNT = "account"  # an invitation or a password-reset link, to the person's own channels


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class NotificationChannel(Base):
    """An apprise URL for a team or for a person (exactly one of ``team_id``/``person_id``)."""

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    kind: Mapped[ChannelKind] = mapped_column(_enum(ChannelKind))
    url: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team | None] = relationship(lazy="joined")
    person: Mapped[Person | None] = relationship(foreign_keys=[person_id], lazy="joined")


class Notification(Base):
    """One message to one channel, planned once (``key`` is UNIQUE) and delivered once."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_kind", "status", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_channels.id", ondelete="SET NULL"), index=True
    )
    #: Who it is for, as shown in the log: an email, or ``team:<key>``.
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[NotificationKind] = mapped_column(_enum(NotificationKind))
    cycle_id: Mapped[int | None] = mapped_column(
        ForeignKey("cycles.id", ondelete="CASCADE"), index=True
    )
    action_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("action_items.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[NotificationStatus] = mapped_column(
        _enum(NotificationStatus), default=NotificationStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Set when a deliverer claims the row (status ``sending``): who and when.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    #: A failed send waiting to be tried again is not taken before this time (the backoff:
    #: :data:`models.cadence.outbox.BACKOFF`); None: at once.
    retry_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    channel: Mapped[NotificationChannel | None] = relationship()
