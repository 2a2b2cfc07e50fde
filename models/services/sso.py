"""Single sign-on: who an identity provider's verified claims are in the store.

The provider (OpenID Connect) vouches for an email address; the person with that email, if
active, is signed in. Nobody is created on the fly (a manager adds people, or imports them),
and an address the provider says is not verified is refused, so an account at the provider
with someone else's unverified address cannot take over their aligncycle account.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.services.accounts import AuthenticationFailed, normalize_email
from models.services.common import record_event
from models.tables import Person


def person_for_claims(session: Session, claims: dict[str, Any], issuer: str) -> Person:
    """The active person the verified ID token's claims name by email, else
    ``AuthenticationFailed`` saying why in a sentence."""
    email = normalize_email(str(claims.get("email") or ""))
    if not email:
        raise AuthenticationFailed(
            "your sign-in service did not tell us your email address, so we cannot tell who "
            "you are here; ask your administrator to share it with aligncycle"
        )
    if claims.get("email_verified") is False:
        raise AuthenticationFailed(
            f"your sign-in service has not verified {email}; verify it there, then try again"
        )
    person = session.scalar(select(Person).where(Person.email == email))
    if person is None or not person.active:
        raise AuthenticationFailed(
            f"{email} has no aligncycle account (or it is deactivated); ask a manager to add you"
        )
    record_event(
        session,
        actor=person,
        verb="auth.signed_in_sso",
        object_type="person",
        object_id=person.id,
        after={"issuer": issuer, "subject": str(claims.get("sub", ""))[:200]},
    )
    return person
