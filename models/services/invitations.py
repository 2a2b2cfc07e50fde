"""Invitation and password-reset links: a signed, expiring token that lets one person choose a
password once.

The token names the person, what it is for and when it expires, and carries an HMAC (keyed by
the app's secret) over those and the person's current password hash. Nothing is stored: setting
a password changes the hash, so a link works once; a deactivated person's link does not work
at all; a link past its expiry is refused. An invitation lasts 7 days, a reset 1 day.

A link is sent through the person's own notification channels (their email, say), never a
team's (the whole team would read it). A person with none: the link is given to the manager to
pass on. Asking for a reset on the sign-in page sends the link only through those channels and
answers the same whether or not the email is known.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.cadence.tables import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from models.cadence.urls import mask_url
from models.errors import InvalidInput
from models.services import accounts, people
from models.services.common import record_event
from models.tables import Person


class Purpose(StrEnum):
    INVITE = "invite"
    RESET = "reset"


LIFETIME = {Purpose.INVITE: timedelta(days=7), Purpose.RESET: timedelta(days=1)}
#: The page a link opens (under the app's address).
PATH = "/password/"
EXPIRED = (
    "this link has expired or has already been used; ask a manager for a new one, or use "
    "“Forgot your password?” on the sign-in page"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _password_hash(session: Session, person: Person) -> str:
    cred = session.scalar(
        select(accounts.Credential.password_hash).where(accounts.Credential.person_id == person.id)
    )
    return cred or "-"


def _signature(secret: str, body: str, person: Person, password_hash: str) -> str:
    message = f"password-link:{body}:{person.email}:{password_hash}".encode()
    return _b64(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def make_token(
    session: Session, person: Person, purpose: Purpose, *, secret: str, now: datetime
) -> tuple[str, datetime]:
    """A new token for ``person`` and when it expires."""
    expires = now + LIFETIME[purpose]
    body = f"{purpose.value}.{person.id}.{int(expires.timestamp())}.{secrets.token_hex(4)}"
    sig = _signature(secret, body, person, _password_hash(session, person))
    return f"{_b64(body.encode())}.{sig}", expires


@dataclass(frozen=True)
class LinkHolder:
    person: Person
    purpose: Purpose
    expires: datetime


def check_token(session: Session, token: str, *, secret: str, now: datetime) -> LinkHolder:
    """Whose link this is, or ``InvalidInput`` (expired, used, altered, or deactivated)."""
    try:
        body_b64, sig = (token or "").split(".", 1)
        body = _unb64(body_b64).decode()
        purpose_text, person_id, expires_ts, _nonce = body.split(".")
        purpose = Purpose(purpose_text)
        pid = int(person_id)
        expires = datetime.fromtimestamp(int(expires_ts), UTC)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(EXPIRED) from None
    person = session.get(Person, pid) if 0 < pid < 2**31 else None
    if person is None or not person.active:
        raise InvalidInput(EXPIRED)
    expected = _signature(secret, body, person, _password_hash(session, person))
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        raise InvalidInput(EXPIRED)
    if expires <= now:
        raise InvalidInput(EXPIRED)
    return LinkHolder(person, purpose, expires)


def use_token(
    session: Session, token: str, password: str, *, secret: str, now: datetime | None = None
) -> Person:
    """Set the password of the link's person (the link then no longer works)."""
    holder = check_token(session, token, secret=secret, now=now or utcnow())
    accounts.set_password(session, holder.person, password, actor=holder.person)
    record_event(
        session,
        actor=holder.person,
        verb="account.link_used",
        object_type="person",
        object_id=holder.person.id,
        after={"purpose": holder.purpose.value},
    )
    return holder.person


@dataclass
class LinkSent:
    person: Person
    purpose: Purpose
    link: str
    expires: datetime
    #: The person's own channels the link was sent through (masked), empty when none.
    channels: list[str] = field(default_factory=list)

    @property
    def sent(self) -> bool:
        return bool(self.channels)


def _message(person: Person, purpose: Purpose, link: str, expires: datetime) -> tuple[str, str]:
    when = expires.strftime("%-d %b %Y, %H:%M UTC")
    if purpose is Purpose.INVITE:
        subject = "You are invited to aligncycle"
        body = (
            f"Hello {person.name},\n\nyou have been added to aligncycle, where sales and "
            f"marketing run their alignment cycles. Choose your password here:\n\n{link}\n\n"
            f"The link works once, until {when}."
        )
    else:
        subject = "Choose a new aligncycle password"
        body = (
            f"Hello {person.name},\n\nsomeone asked for a new password for your aligncycle "
            f"account. Choose one here:\n\n{link}\n\nThe link works once, until {when}. If you "
            "did not ask, ignore this message: your password stays as it is."
        )
    return subject, body


def _plan(
    session: Session, person: Person, purpose: Purpose, link: str, expires: datetime
) -> list[str]:
    """One pending notification per enabled channel of the person's own (masked URLs)."""
    subject, body = _message(person, purpose, link, expires)
    channels = list(
        session.scalars(
            select(NotificationChannel)
            .where(
                NotificationChannel.person_id == person.id,
                NotificationChannel.enabled.is_(True),
            )
            .order_by(NotificationChannel.id)
        ).unique()
    )
    stamp = secrets.token_hex(6)
    for ch in channels:
        session.add(
            Notification(
                key=f"account:{purpose.value}:{person.id}:{stamp}#c{ch.id}",
                channel_id=ch.id,
                recipient=person.email,
                kind=NotificationKind.ACCOUNT,
                subject=subject,
                body=body,
                status=NotificationStatus.PENDING,
            )
        )
    return [mask_url(ch.url) for ch in channels]


def send_link(
    session: Session,
    person: Person,
    purpose: Purpose,
    actor: Person | None,
    *,
    secret: str,
    base_url: str,
    now: datetime | None = None,
) -> LinkSent:
    """A manager invites ``person`` or resets their password: a new link, sent through the
    person's own channels where they have any (see :attr:`LinkSent.channels`); the caller shows
    the link to the manager otherwise."""
    what = "invite people" if purpose is Purpose.INVITE else "reset passwords"
    if actor is not None:
        people.require_admin(session, actor, what)
    if not person.active:
        raise InvalidInput(f"{person.name} is deactivated; reactivate them first")
    now = now or utcnow()
    token, expires = make_token(session, person, purpose, secret=secret, now=now)
    link = base_url.rstrip("/") + PATH + token
    channels = _plan(session, person, purpose, link, expires)
    record_event(
        session,
        actor=actor,
        verb="account.link_sent",
        object_type="person",
        object_id=person.id,
        after={"purpose": purpose.value, "channels": channels, "expires": expires},
    )
    session.flush()
    return LinkSent(person, purpose, link, expires, channels)


def request_reset(
    session: Session, email: str, *, secret: str, base_url: str, now: datetime | None = None
) -> None:
    """ "Forgot your password?": a reset link to the person's own channels, if the email is an
    active person's and they have any; nothing otherwise. The caller answers the same either
    way, so the page does not tell who has an account."""
    person = session.scalar(select(Person).where(Person.email == accounts.normalize_email(email)))
    if person is None or not person.active:
        return
    now = now or utcnow()
    token, expires = make_token(session, person, Purpose.RESET, secret=secret, now=now)
    link = base_url.rstrip("/") + PATH + token
    channels = _plan(session, person, Purpose.RESET, link, expires)
    if channels:
        record_event(
            session,
            actor=None,
            verb="account.link_sent",
            object_type="person",
            object_id=person.id,
            after={"purpose": "reset", "channels": channels, "asked_by": "the person"},
        )
    session.flush()
