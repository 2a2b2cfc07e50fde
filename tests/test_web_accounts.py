"""Signing in and out, session cookies, CSRF, personal access tokens, and their CLI commands."""

from __future__ import annotations

import re
import warnings

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from aligncycle.web import create_app
from aligncycle.web.auth import LOGIN_COOKIE, SESSION_COOKIE
from aligncycle.web.deps import WebSettings, secret_key
from models.accounts import ApiToken, Credential, WebSession
from models.db import Store
from models.services import accounts
from models.services.common import person_by_email
from tests.conftest import db_snapshot

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


pytestmark = pytest.mark.usefixtures("cheap_hashing")  # tests/conftest.py


@pytest.fixture
def app(org: Store, tmp_path):  # noqa: ANN001, ANN201
    with org.unit_of_work() as s:
        accounts.set_password(s, person_by_email(s, "sid@acme.test"), PASSWORD)
    return create_app(org, WebSettings(data_dir=tmp_path, secret_key="k" * 32))


def _login_form(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _sign_in(client: TestClient, email: str = "sid@acme.test", password: str = PASSWORD):  # noqa: ANN202
    token = _login_form(client)
    return client.post(
        "/login",
        data={"csrf": token, "email": email, "password": password, "next": "/my"},
        follow_redirects=False,
    )


def test_sign_in_sets_a_safe_session_cookie_and_signs_out(app, org: Store) -> None:  # noqa: ANN001
    client = TestClient(app)
    resp = _sign_in(client)
    assert resp.status_code == 303 and resp.headers["location"] == "/my"
    cookie = next(c for c in resp.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain http on a laptop; see the next test for https
    raw = client.cookies.get(SESSION_COOKIE)
    with org.unit_of_work() as s:  # only a digest of the session id is stored
        rows = s.scalars(select(WebSession)).all()
        assert len(rows) == 1 and rows[0].token_hash != raw and raw not in rows[0].token_hash
    page = client.get("/my")
    assert page.status_code == 200 and "Sid Member" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    out = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    with org.unit_of_work() as s:
        assert s.scalars(select(WebSession)).all() == []
    # the old cookie no longer works, even if a browser kept it
    stale = TestClient(app)
    stale.cookies.set(SESSION_COOKIE, raw)
    assert stale.get("/my", follow_redirects=False).headers["location"] == "/login?next=/my"


def test_cookie_is_secure_when_configured_or_over_https(org: Store, tmp_path) -> None:  # noqa: ANN001
    with org.unit_of_work() as s:
        accounts.set_password(s, person_by_email(s, "sid@acme.test"), PASSWORD)
    forced = create_app(org, WebSettings(data_dir=tmp_path, cookie_secure=True, secret_key="x"))
    resp = _sign_in(TestClient(forced, base_url="http://testserver"))
    assert "Secure" in resp.headers["set-cookie"]
    auto = create_app(org, WebSettings(data_dir=tmp_path, secret_key="x"))
    resp = _sign_in(TestClient(auto, base_url="https://testserver"))
    assert any("Secure" in c for c in resp.headers.get_list("set-cookie"))


def test_wrong_password_or_unknown_email_get_the_same_message(app, org: Store) -> None:  # noqa: ANN001
    before = db_snapshot(org)
    for email, password in (("sid@acme.test", "wrong password"), ("nobody@acme.test", PASSWORD)):
        resp = _sign_in(TestClient(app), email, password)
        assert resp.status_code == 401
        assert "wrong email or password" in resp.text
        assert f'value="{email}"' in resp.text  # what was typed is kept (not the password)
        assert SESSION_COOKIE not in resp.headers.get("set-cookie", "")
    # Only the audit log's record of each failure (what the sign-in throttle counts).
    after = db_snapshot(org)
    assert {t: r for t, r in after.items() if t != "events"} == {
        t: r for t, r in before.items() if t != "events"
    }
    assert len(after["events"]) == len(before["events"]) + 2


def test_forms_without_the_csrf_token_are_refused(app, org: Store) -> None:  # noqa: ANN001
    client = TestClient(app)
    # sign-in form: a token from another browser (another nonce cookie) does not work
    other = TestClient(app)
    token = _login_form(other)
    client.get("/login")
    resp = client.post(
        "/login", data={"csrf": token, "email": "sid@acme.test", "password": PASSWORD}
    )
    assert resp.status_code == 403 and client.cookies.get(SESSION_COOKIE) is None
    assert _sign_in(client).status_code == 303
    before = db_snapshot(org)
    for data in ({}, {"csrf": "forged"}):
        resp = client.post("/account/tokens", data={"name": "x", **data}, follow_redirects=False)
        assert resp.status_code == 403 and "reload the page" in resp.text
    assert db_snapshot(org) == before
    # the API with a session cookie needs the header; a bearer token does not
    resp = client.post("/api/v1/tokens", json={"name": "x"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"


def test_login_nonce_cookie_is_http_only(app) -> None:  # noqa: ANN001
    resp = TestClient(app).get("/login")
    cookie = next(c for c in resp.headers.get_list("set-cookie") if c.startswith(LOGIN_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_next_never_leaves_the_site(app) -> None:  # noqa: ANN001
    client = TestClient(app)
    token = _login_form(client)
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = client.post(
            "/login",
            data={"csrf": token, "email": "sid@acme.test", "password": PASSWORD, "next": bad},
            follow_redirects=False,
        )
        assert resp.status_code == 303 and resp.headers["location"] == "/", bad


def test_password_change_needs_the_current_one_and_signs_out_other_browsers(app, org) -> None:  # noqa: ANN001
    first, second = TestClient(app), TestClient(app)
    _sign_in(first), _sign_in(second)
    page = first.get("/account")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    wrong = first.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current": "nope",
            "new_password": "a-new-password",
            "repeat": "a-new-password",
        },
    )
    assert wrong.status_code == 422 and "current password is not right" in wrong.text
    assert 'class="field-error"' in wrong.text and "a-new-password" not in wrong.text
    ok = first.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current": PASSWORD,
            "new_password": "a-new-password",
            "repeat": "a-new-password",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert first.get("/my", follow_redirects=False).status_code == 200  # a fresh session
    assert second.get("/my", follow_redirects=False).status_code == 303  # signed out
    with org.unit_of_work() as s:
        cred = s.scalar(select(Credential))
        assert cred.password_hash.startswith("$argon2id$") and PASSWORD not in cred.password_hash


def test_tokens_are_hashed_revocable_and_personal(app, org: Store) -> None:  # noqa: ANN001
    with org.unit_of_work() as s:
        sid, meg = person_by_email(s, "sid@acme.test"), person_by_email(s, "meg@acme.test")
        raw, row = accounts.create_token(s, sid, "script")
        megs, _ = accounts.create_token(s, meg, "hers")
        token_id = row.id
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {raw}"}
    me = client.get("/api/v1/me", headers=auth)
    assert me.status_code == 200 and me.json()["person"]["email"] == "sid@acme.test"
    with org.unit_of_work() as s:
        stored = s.scalar(select(ApiToken).where(ApiToken.id == token_id))
        assert stored.token_hash != raw and raw not in stored.token_hash
        assert stored.prefix == raw[:10] and stored.last_used_at is not None
    listed = client.get("/api/v1/tokens", headers=auth).json()["items"]
    assert [t["name"] for t in listed] == ["script"]  # only one's own
    assert all("token" not in t for t in listed)
    meg_id = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {megs}"}).json()
    meg_token_id = meg_id["items"][0]["id"]
    refused = client.delete(f"/api/v1/tokens/{meg_token_id}", headers=auth)
    assert refused.status_code == 404
    revoked = client.delete(f"/api/v1/tokens/{token_id}", headers=auth)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = client.get("/api/v1/me", headers=auth)
    assert after.status_code == 401
    assert after.json() == {
        "error": {
            "code": "unauthenticated",
            "message": "the access token is invalid, expired or revoked",
        }
    }
    assert after.headers["www-authenticate"] == "Bearer"


def test_token_page_shows_a_new_token_once(app, org: Store) -> None:  # noqa: ANN001
    client = TestClient(app)
    _sign_in(client)
    page = client.get("/account")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    made = client.post("/account/tokens", data={"csrf": csrf, "name": "report script"})
    assert made.status_code == 201
    raw = re.search(r'<div class="token" id="new-token">([^<]+)</div>', made.text).group(1)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    again = client.get("/account").text
    assert raw not in again and "report script" in again
    bad = client.post("/account/tokens", data={"csrf": csrf, "name": "  "})
    assert bad.status_code == 422 and "give the token a name" in bad.text


def test_a_deactivated_person_is_signed_out_everywhere(app, org: Store) -> None:  # noqa: ANN001
    client = TestClient(app)
    _sign_in(client)
    with org.unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test")
        raw, _ = accounts.create_token(s, sid, "script")
        sid.active = False
    assert client.get("/my", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert _sign_in(TestClient(app)).status_code == 401


def test_secret_key_is_generated_once_and_kept(tmp_path) -> None:  # noqa: ANN001
    settings = WebSettings(data_dir=tmp_path, secret_key=None)
    first = secret_key(settings)
    assert len(first) >= 40 and secret_key(settings) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert secret_key(WebSettings(data_dir=tmp_path, secret_key="given")) == "given"


def test_workers_starting_at_once_share_one_secret_key(tmp_path) -> None:  # noqa: ANN001
    """``serve --workers N`` starts processes together: a sign-in form served by one worker
    must verify on another, so they must all end up with the same generated key."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        keys = pool.map(_generate_key, [str(tmp_path)] * 24)
    assert len(set(keys)) == 1
    assert (tmp_path / "secret_key").read_text().strip() == keys[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]  # no temp files left


def _generate_key(directory: str) -> str:
    return secret_key(WebSettings(data_dir=directory, secret_key=None))


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(org: Store, monkeypatch):  # noqa: ANN001, ANN201
    from aligncycle import cli_common

    cli_common.reset_store()
    from aligncycle.cli import app as cli_app

    yield lambda *args, **kw: CliRunner().invoke(cli_app, list(args), **kw)
    cli_common.reset_store()


def test_cli_sets_passwords_and_manages_tokens(cli, org: Store) -> None:  # noqa: ANN001
    result = cli("user", "set-password", "sid@acme.test", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    with org.unit_of_work() as s:
        assert accounts.authenticate(s, "sid@acme.test", PASSWORD).email == "sid@acme.test"
    prompted = cli("user", "set-password", "meg@acme.test", input="one-password\nother-one\n")
    assert prompted.exit_code == 2 and "differ" in prompted.output
    short = cli("user", "set-password", "meg@acme.test", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    unknown = cli("user", "set-password", "no@acme.test", "--password-stdin", input=PASSWORD)
    assert unknown.exit_code == 1 and "unknown person" in unknown.output

    made = cli("token", "create", "--name", "nightly", "--as", "sid@acme.test", "--json")
    assert made.exit_code == 0, made.output
    import json

    info = json.loads(made.stdout)
    assert info["token"].startswith("ac_") and info["name"] == "nightly"
    listed = cli("token", "list", "--as", "sid@acme.test")
    assert "nightly" in listed.output and info["token"] not in listed.output
    before = db_snapshot(org)
    other = cli("token", "revoke", str(info["id"]), "--as", "meg@acme.test")
    assert other.exit_code == 1 and "no token" in other.output
    assert db_snapshot(org) == before
    revoked = cli("token", "revoke", str(info["id"]), "--as", "sid@acme.test")
    assert revoked.exit_code == 0
    with org.unit_of_work() as s:
        assert accounts.person_for_token(s, info["token"]) is None
