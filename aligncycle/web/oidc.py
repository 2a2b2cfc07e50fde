"""Single sign-on with OpenID Connect (the authorization code flow with PKCE), through Authlib.

``ALIGNCYCLE_OIDC_ISSUER``, ``ALIGNCYCLE_OIDC_CLIENT_ID`` and ``ALIGNCYCLE_OIDC_CLIENT_SECRET``
configure it. The provider's discovery document and keys are fetched on first use and kept
(the keys fetched again once when a token names a key not seen yet). Authlib's OAuth 2 client
builds the authorization URL (state, nonce, S256 code challenge) and exchanges the code; the ID
token's signature and claims (issuer, audience, expiry, nonce) are checked with joserfc, the JOSE
library Authlib itself is built on. Who the claims name is the domain's rule
(:func:`models.services.sso.person_for_claims`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from models.errors import DomainError


class SsoUnavailable(DomainError):
    """The identity provider cannot be reached or answered something unusable (503)."""

    code = "sso_unavailable"


class SsoRefused(DomainError):
    """The provider's answer does not sign anyone in (a bad state, code or token; 401)."""

    code = "unauthenticated"


@dataclass
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str
    timeout: float = 10.0
    _meta: dict[str, Any] | None = None
    _keys: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _get(self, url: str) -> dict[str, Any]:
        try:
            resp = httpx.get(url, timeout=self.timeout)
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SsoUnavailable(
                "the company sign-in service cannot be reached just now; try again in a "
                "moment, or sign in with your password"
            ) from exc

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta is None:
                meta = self._get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
                if meta.get("issuer", "").rstrip("/") != self.issuer.rstrip("/"):
                    raise SsoUnavailable(
                        "the company sign-in service names another issuer than the one "
                        "configured (ALIGNCYCLE_OIDC_ISSUER); check the setting"
                    )
                self._meta = meta
            return self._meta

    def keys(self, refresh: bool = False) -> Any:
        from joserfc.jwk import KeySet

        with self._lock:
            if self._keys is None or refresh:
                self._keys = self._get(self._meta_unlocked()["jwks_uri"])
            return KeySet.import_key_set(self._keys)  # type: ignore[arg-type]

    def _meta_unlocked(self) -> dict[str, Any]:
        if self._meta is None:
            raise SsoUnavailable("the company sign-in service's settings are not loaded")
        return self._meta

    def _client(self, redirect_uri: str) -> Any:
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope="openid email profile",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout,
        )

    def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        endpoint = self.metadata()["authorization_endpoint"]
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, nonce=nonce, code_verifier=code_verifier
            )
        return url

    def claims(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> dict:
        """Exchange the code and return the checked ID token's claims."""
        from authlib.common.errors import AuthlibBaseError
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwt import JWTClaimsRegistry

        meta = self.metadata()
        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=code_verifier
                )
        except httpx.HTTPError as exc:
            raise SsoUnavailable(
                "the company sign-in service cannot be reached just now; try again in a moment"
            ) from exc
        except AuthlibBaseError as exc:
            raise SsoRefused(
                "the company sign-in service refused this sign-in; start again"
            ) from exc
        raw = token.get("id_token")
        if not raw:
            raise SsoRefused("the company sign-in service sent no identity; start again")
        try:
            try:
                decoded = jwt.decode(raw, self.keys())
            except JoseError:
                decoded = jwt.decode(raw, self.keys(refresh=True))  # the provider's new key
            registry = JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SsoRefused(
                "the company sign-in service's answer could not be checked; start again"
            ) from exc
        return dict(decoded.claims)


def client_for(app: Any) -> OidcClient | None:
    """The app's OIDC client, made from its settings on first use (None: not configured)."""
    settings = app.state.settings
    if not settings.oidc_enabled:
        return None
    client = getattr(app.state, "oidc_client", None)
    if client is None:
        client = OidcClient(
            settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret
        )
        app.state.oidc_client = client
    return client
