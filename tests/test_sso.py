"""Signing in with the company's identity provider (OpenID Connect through Authlib), against a
real local provider the tests start (the ``oidc-provider-mock`` package from PyPI: a Flask app
serving discovery, keys, an authorization form and the token endpoint on 127.0.0.1)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from models.db import Store
from models.services.common import person_by_email
from models.tables import Event

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import oidc_provider_mock
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with oidc_provider_mock.run_server_in_thread() as server:
            yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def app(org: Store, provider: str, tmp_path):  # noqa: ANN001, ANN201
    settings = WebSettings(
        data_dir=tmp_path,
        secret_key="k" * 32,
        oidc_issuer=provider,
        oidc_client_id="aligncycle",
        oidc_client_secret="client-secret",
        oidc_label="Sign in with Acme",
    )
    return create_app(org, settings)


def _provider_user(provider: str, sub: str, claims: dict) -> None:
    resp = httpx.put(f"{provider}/users/{sub}", json=claims, timeout=10)
    assert resp.status_code == 204, resp.text


def _start(client: TestClient) -> str:
    """Press the sign-in page's button; return the provider's authorization URL."""
    page = client.get("/login")
    assert "Sign in with Acme" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = client.post("/login/sso", data={"csrf": csrf, "next": "/my"}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def _authorize(url: str, sub: str) -> str:
    """The person signs in at the provider; return where it sends the browser back."""
    resp = httpx.post(url, data={"sub": sub}, timeout=10)
    assert resp.status_code == 302, resp.text
    return resp.headers["location"]


def _back(client: TestClient, location: str):  # noqa: ANN202
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def test_a_person_signs_in_with_the_company_account(app, org: Store, provider: str) -> None:  # noqa: ANN001
    _provider_user(provider, "u-sid", {"email": "Sid@acme.test", "email_verified": True})
    client = TestClient(app)
    url = _start(client)
    assert url.startswith(f"{provider}/oauth2/authorize?")
    assert "code_challenge_method=S256" in url and "nonce=" in url and "state=" in url
    back = _back(client, _authorize(url, "u-sid"))
    assert back.status_code == 303 and back.headers["location"] == "/my", back.text
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["person"]["email"] == "sid@acme.test"
    with org.unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test")
        event = s.query(Event).filter(Event.verb == "auth.signed_in_sso").one()
        assert event.actor_id == sid.id and event.after["issuer"] == provider


def test_an_unknown_or_unverified_email_is_refused_in_a_sentence(app, provider: str) -> None:  # noqa: ANN001
    _provider_user(provider, "u-eve", {"email": "eve@elsewhere.test", "email_verified": True})
    client = TestClient(app)
    back = _back(client, _authorize(_start(client), "u-eve"))
    assert back.status_code == 401
    assert "eve@elsewhere.test has no aligncycle account" in back.text
    assert client.get("/api/v1/me").status_code == 401
    _provider_user(provider, "u-meg", {"email": "meg@acme.test", "email_verified": False})
    back = _back(client, _authorize(_start(client), "u-meg"))
    assert back.status_code == 401 and "has not verified meg@acme.test" in back.text


def test_a_callback_that_did_not_start_here_signs_nobody_in(app, provider: str) -> None:  # noqa: ANN001
    _provider_user(provider, "u-lee", {"email": "lee@acme.test", "email_verified": True})
    started = TestClient(app)
    location = _authorize(_start(started), "u-lee")
    stranger = TestClient(app)  # another browser, without the flow's cookie
    back = _back(stranger, location)
    assert back.status_code == 400 and "did not start here" in back.text
    forged = location.replace("state=", "state=x")
    assert _back(started, forged).status_code == 400
    assert stranger.get("/api/v1/me").status_code == 401


def test_an_unreachable_provider_is_an_outage_not_a_crash(org: Store, tmp_path) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    settings = WebSettings(
        data_dir=tmp_path,
        secret_key="k" * 32,
        oidc_issuer=f"http://127.0.0.1:{port}",
        oidc_client_id="aligncycle",
        oidc_client_secret="client-secret",
    )
    client = TestClient(create_app(org, settings))
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = client.post("/login/sso", data={"csrf": csrf}, follow_redirects=False)
    assert resp.status_code == 503 and "cannot be reached" in resp.text
