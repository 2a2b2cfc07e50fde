"""Accounts: passwords, browser sessions and personal API tokens.

Secrets given to people (session ids, tokens) are random and high-entropy, so the store keeps
their SHA-256 digest; passwords are low-entropy and get argon2id. Nothing here commits.

Password guessing on the sign-in page is throttled per email: every failed sign-in appends an
``auth.sign_in_failed`` event (the audit log is append-only, so the limit only inserts and
counts), and an email with too many recent failures is refused until they age out of the
window. The event keeps an HMAC of the typed email, never the text (people type passwords into
the email box); an unknown email is counted exactly like a known one. Changing a password
checks the current one under the same limit: a wrong current password counts against the
account's email like a failed sign-in, so a borrowed browser session cannot be used to guess
it either.

A new password has at least 12 characters and is not a commonly used one: the list is the
30,000 most common passwords that the ``zxcvbn`` package ships (MIT, no network), also when a
few digits or symbols are added to one, or one is repeated; nor a run of neighbouring keys
(zxcvbn's keyboard graphs) or letters, nor the person's name or email.

Why one file of this size: passwords, sessions and tokens share the throttle and the digest
rules; apart, the same secret rules would be written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.accounts import ApiToken, Credential, WebSession
from models.base import utcnow
from models.errors import DomainError, InvalidInput, NotFound
from models.services.common import record_event
from models.tables import Event, Person

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SESSION_DAYS = 14
TOKEN_PREFIX = "ac_"
#: How stale ``last_used_at`` may get before a request writes it again (no write per request).
LAST_USED_GRANULARITY = timedelta(hours=1)
#: The audit-log verb of a failed sign-in (what the per-email limit counts).
SIGN_IN_FAILED = "auth.sign_in_failed"
#: The audit-log verb of a wrong current password when changing it (counted with the above).
PASSWORD_CHECK_FAILED = "auth.password_check_failed"
WRONG_PASSWORD_VERBS = (SIGN_IN_FAILED, PASSWORD_CHECK_FAILED)
WRONG_CREDENTIALS = "wrong email or password"

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
# Made on first use (an argon2 hash costs ~0.3 s: not in every process that imports this); the
# web app makes it when it starts (:func:`prepare`), so even its first refusal takes no longer.
_DUMMY_HASH: str | None = None


def prepare() -> None:
    """Make the hash an unknown email is checked against, ahead of the first sign-in."""
    _dummy_hash()


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("not a real password, only for constant-time refusals")
    return _DUMMY_HASH


class AuthenticationFailed(DomainError):
    """Wrong or missing credentials (a 401 on the API, a message on the sign-in page)."""

    code = "unauthenticated"


class TooManyAttempts(DomainError):
    """Too many failed sign-ins recently: refused, whatever the password, until ``retry_at``."""

    code = "too_many_attempts"

    def __init__(self, message: str, retry_at: datetime, now: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        #: Whole seconds until a new attempt is considered (the ``Retry-After`` header).
        self.retry_after = max(1, math.ceil((retry_at - now).total_seconds()))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str | None) -> str:
    return (email or "").strip().lower()


# --- passwords ------------------------------------------------------------------------------


@cache
def common_passwords() -> frozenset[str]:
    """The most commonly used passwords (lower case), from the ``zxcvbn`` package's list."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


_ADDED = "0123456789!@#$%^&*()-_=+.,;:?~ "


def _variants(password: str) -> set[str]:
    """The password and what it is made of when it is a word with digits or symbols added
    before or after, or a part repeated ("passwordpassword", "abcabcabcabc")."""
    p = password.lower()
    out = {p, p.strip(_ADDED), p.rstrip(_ADDED), p.lstrip(_ADDED)}
    for size in range(1, len(p) // 2 + 1):
        if len(p) % size == 0 and p[:size] * (len(p) // size) == p:
            out.add(p[:size])
            break
    return {v for v in out if v}


@cache
def _neighbours() -> dict[str, frozenset[str]]:
    """Each key's neighbours on a QWERTY keyboard and a keypad (zxcvbn's adjacency graphs)."""
    from zxcvbn.adjacency_graphs import ADJACENCY_GRAPHS

    out: dict[str, set[str]] = {}
    for name in ("qwerty", "keypad"):
        for key, around in ADJACENCY_GRAPHS[name].items():
            near = {c for group in around if group for c in group.lower()}
            for k in key.lower():
                out.setdefault(k, set()).update(near)
    return {k: frozenset(v) for k, v in out.items()}


def _is_run(password: str) -> bool:
    """Whether (nearly) every character follows the previous one on the keyboard or in the
    alphabet or digits, either way ("qwertyuiopasdf", "123456789012", "zyxwvutsrqpo")."""
    p = password.lower()
    near = _neighbours()
    steps = 0
    for a, b in zip(p, p[1:], strict=False):
        if abs(ord(a) - ord(b)) == 1 or {a, b} == {"9", "0"} or b in near.get(a, ()):
            steps += 1
    return steps >= len(p) - 2


def check_password_rules(password: str, person: Person | None = None) -> None:
    """Refuse a password that is too short, too long, or easy to guess, with one sentence
    saying why."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise InvalidInput("a password cannot be only spaces")
    if len(set(password.lower())) < 5:
        raise InvalidInput(
            "this password uses too few different characters; choose one that is harder to guess"
        )
    if _variants(password) & common_passwords():
        raise InvalidInput(
            "this password is one of the most commonly used ones (or one with a few characters "
            "added); choose one that is harder to guess"
        )
    if _is_run(password):
        raise InvalidInput(
            "this password is a run of neighbouring keys, letters or digits; choose one that is "
            "harder to guess"
        )
    if person is not None:
        local = person.email.split("@", 1)[0].lower()
        words = {local, *local.replace("_", ".").replace("-", ".").split(".")}
        words |= set((person.name or "").lower().split())
        if any(len(w) >= 4 and w in password.lower() for w in words):
            raise InvalidInput(
                "a password cannot contain your name or email address; choose another"
            )


def set_password(
    session: Session, person: Person, password: str, actor: Person | None = None
) -> Credential:
    """Set (or replace) a person's password. Replacing it signs out their browsers."""
    check_password_rules(password, person)
    cred = session.scalar(select(Credential).where(Credential.person_id == person.id))
    created = cred is None
    if cred is None:
        cred = Credential(person_id=person.id, password_hash=_hasher.hash(password))
        session.add(cred)
    else:
        cred.password_hash = _hasher.hash(password)
        cred.updated_at = utcnow()
        session.execute(delete(WebSession).where(WebSession.person_id == person.id))
    record_event(
        session,
        actor=actor,
        verb="account.password_set" if created else "account.password_changed",
        object_type="person",
        object_id=person.id,
        after={"email": person.email},
    )
    session.flush()
    return cred


def has_password(session: Session, person: Person) -> bool:
    return (
        session.scalar(select(Credential.id).where(Credential.person_id == person.id)) is not None
    )


def _account(session: Session, email: str) -> tuple[Person, Credential] | None:
    """The person with this (normalized) email and their password, if they have one."""
    row = session.execute(
        select(Person, Credential)
        .join(Credential, Credential.person_id == Person.id)
        .where(Person.email == email)
    ).first()
    return None if row is None else (row[0], row[1])


def _password_matches(account: tuple[Person, Credential] | None, password: str) -> bool:
    """Whether the account is active and the password right. An unknown email costs one argon2
    verification too, so the time taken does not tell whether the email exists."""
    if account is None or not account[0].active:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password or "-")
        return False
    cred = account[1]
    try:
        _hasher.verify(cred.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(cred.password_hash):
        cred.password_hash = _hasher.hash(password)
    return True


def authenticate(session: Session, email: str, password: str) -> Person:
    """The active person with this email and password, else ``AuthenticationFailed`` (the same
    message whichever of the two was wrong)."""
    account = _account(session, normalize_email(email))
    matches = _password_matches(account, password)  # always verifies: same cost either way
    if account is None or not matches:
        raise AuthenticationFailed(WRONG_CREDENTIALS)
    return account[0]


# --- throttling password guessing -----------------------------------------------------------


@dataclass(frozen=True)
class SignInLimit:
    """At most ``max_failures`` failed sign-ins for one email within ``window``."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)


def email_key(email: str | None, secret: str) -> str:
    """What the audit log keeps of an email typed on the sign-in page: an HMAC keyed by the app's
    secret, so equal emails count together while the log holds neither the text nor a plain hash
    that a list of addresses (or passwords typed into the wrong box) could be checked against."""
    message = b"sign-in email:" + normalize_email(email).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def in_minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def check_sign_in_allowed(
    session: Session,
    key: str,
    limit: SignInLimit,
    now: datetime,
    refused: str = "too many failed sign-ins for this email",
) -> None:
    """Raise ``TooManyAttempts`` (``refused``, and when to try again) when the email behind
    ``key`` has ``limit.max_failures`` wrong passwords (failed sign-ins, wrong current
    passwords when changing it) within the window before ``now``. One query (at most
    ``max_failures`` rows of the events of the window, found by the index on ``(verb, at)``);
    it writes nothing."""
    recent = list(
        session.scalars(
            select(Event.at)
            .where(
                Event.at > now - limit.window,
                Event.verb.in_(WRONG_PASSWORD_VERBS),
                Event.after["email_hmac"].as_string() == key,
            )
            .order_by(Event.at.desc())
            .limit(limit.max_failures)
        )
    )
    if len(recent) < limit.max_failures:
        return
    # Sliding window: a new attempt is considered once the oldest of these failures ages out.
    retry_at = recent[-1] + limit.window
    wait = in_minutes((retry_at - now).total_seconds())
    raise TooManyAttempts(f"{refused}; try again in {wait}", retry_at, now)


def record_failed_sign_in(
    session: Session,
    key: str,
    now: datetime,
    client: str | None = None,
    person: Person | None = None,
) -> Event:
    """Append the ``auth.sign_in_failed`` event the per-email limit counts: the email's key
    (never its text), the client address, and the person when the email is theirs."""
    event = record_event(
        session,
        actor=None,
        verb=SIGN_IN_FAILED,
        object_type="person" if person is not None else "sign_in",
        object_id=person.id if person is not None else None,
        after={"email_hmac": key, "client": client},
    )
    event.at = now
    return event


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    secret: str,
    limit: SignInLimit | None = None,
    now: datetime | None = None,
    client: str | None = None,
) -> Person:
    """Sign in from the sign-in page: ``authenticate``, throttled per email.

    - Too many recent failures for this email: ``TooManyAttempts``, before the password is
      looked at, and nothing is written.
    - Wrong email or password: the failure is recorded, then ``AuthenticationFailed``. The
      caller commits its unit of work anyway (catch the error inside it), so that the failure
      counts; the event is the only write of a refused sign-in.
    """
    limit = limit or SignInLimit()
    now = now or utcnow()
    key = email_key(email, secret)
    check_sign_in_allowed(session, key, limit, now)
    account = _account(session, normalize_email(email))
    matches = _password_matches(account, password)  # always verifies: same cost either way
    if account is not None and matches:
        return account[0]
    record_failed_sign_in(
        session, key, now, client, person=account[0] if account is not None else None
    )
    raise AuthenticationFailed(WRONG_CREDENTIALS)


def record_wrong_current_password(
    session: Session, person: Person, *, secret: str, now: datetime, client: str | None = None
) -> Event:
    """Append the event that counts a wrong current password (see :func:`change_password`)."""
    event = record_event(
        session,
        actor=person,
        verb=PASSWORD_CHECK_FAILED,
        object_type="person",
        object_id=person.id,
        after={"email_hmac": email_key(person.email, secret), "client": client},
    )
    event.at = now
    return event


def change_password(
    session: Session,
    person: Person,
    current: str,
    new: str,
    *,
    secret: str,
    limit: SignInLimit | None = None,
    now: datetime | None = None,
    client: str | None = None,
) -> Credential:
    """Change one's own password, throttled like signing in (the same limit, counted per
    email): too many wrong passwords for this account recently raise ``TooManyAttempts``
    before the current password is looked at; a wrong current password is recorded (see
    :func:`record_wrong_current_password`; the caller keeps it, as for :func:`sign_in`), then
    ``AuthenticationFailed``. The new password must pass :func:`check_password_rules`."""
    limit = limit or SignInLimit()
    now = now or utcnow()
    check_sign_in_allowed(
        session,
        email_key(person.email, secret),
        limit,
        now,
        refused="too many wrong passwords for this account",
    )
    account = _account(session, person.email)
    if account is None or not _password_matches(account, current):
        record_wrong_current_password(session, person, secret=secret, now=now, client=client)
        raise AuthenticationFailed("your current password is not right")
    return set_password(session, person, new, actor=person)


# --- browser sessions -----------------------------------------------------------------------


def create_session(
    session: Session, person: Person, days: int = SESSION_DAYS
) -> tuple[str, WebSession]:
    """A new signed-in session: returns (the cookie value, the row)."""
    raw = secrets.token_urlsafe(32)
    row = WebSession(
        person_id=person.id,
        token_hash=digest(raw),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    return raw, row


def session_for(session: Session, raw: str | None) -> WebSession | None:
    """The live session behind a cookie value (its person is loaded, active), else None."""
    if not raw or len(raw) > 200:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == digest(raw)))
    if row is None or row.expires_at <= utcnow() or not row.person.active:
        return None
    return row


def end_session(session: Session, raw: str | None) -> None:
    if raw:
        session.execute(delete(WebSession).where(WebSession.token_hash == digest(raw)))


def purge_expired_sessions(session: Session, now: datetime | None = None) -> int:
    result = session.execute(delete(WebSession).where(WebSession.expires_at <= (now or utcnow())))
    return result.rowcount or 0


# --- API tokens -----------------------------------------------------------------------------


def create_token(
    session: Session, person: Person, name: str, days: int | None = None
) -> tuple[str, ApiToken]:
    """A new personal access token: returns (the token, shown once; the row)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name: give the token a name (what it is for)")
    if len(name) > 100:
        raise InvalidInput("name: at most 100 characters")
    if days is not None and not 1 <= days <= 3650:
        raise InvalidInput("days: a token lasts between 1 and 3650 days")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        person_id=person.id,
        name=name,
        prefix=raw[:10],
        token_hash=digest(raw),
        expires_at=utcnow() + timedelta(days=days) if days else None,
    )
    session.add(row)
    record_event(
        session,
        actor=person,
        verb="token.created",
        obj=row,
        object_type="api_token",
        after={"name": name, "prefix": row.prefix},
    )
    session.flush()
    return raw, row


def list_tokens(session: Session, person: Person) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.person_id == person.id).order_by(ApiToken.id)
        ).unique()
    )


def revoke_token(session: Session, person: Person, token_id: int) -> ApiToken:
    """Revoke one of the person's own tokens (someone else's is "not found", not "forbidden":
    it does not say that the token exists)."""
    row = session.get(ApiToken, token_id)
    if row is None or row.person_id != person.id:
        raise NotFound(f"you have no token with id {token_id}")
    if row.revoked_at is not None:
        raise InvalidInput(f"token {token_id} is already revoked")
    row.revoked_at = utcnow()
    record_event(
        session,
        actor=person,
        verb="token.revoked",
        obj=row,
        object_type="api_token",
        after={"name": row.name, "prefix": row.prefix},
    )
    session.flush()
    return row


def person_for_token(session: Session, raw: str | None) -> Person | None:
    """The active person owning a live token, else None. Notes the last use (hourly at most)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(raw)))
    now = utcnow()
    if row is None or row.revoked_at is not None or not row.person.active:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        row.last_used_at = now
    return row.person
