"""Throttling password guessing on the sign-in page: per email (in the store, so every worker
process sees it) and per client address (in memory). Time is a test clock, never a sleep."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from aligncycle.web import create_app
from aligncycle.web.auth import SESSION_COOKIE, client_address, login_throttle
from aligncycle.web.deps import WebSettings
from models.base import utcnow
from models.db import Store
from models.services import accounts
from models.services.common import person_by_email
from models.tables import Event
from tests.conftest import db_snapshot

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
SECRET = "k" * 32
LOCKED = "too many failed sign-ins for this email; try again in"


pytestmark = pytest.mark.usefixtures("cheap_hashing")  # tests/conftest.py


class Clock:
    """What "now" is for the app's throttle; tests move it forward."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def passwords(org: Store) -> Store:
    """The organisation, where Sid and Mia have passwords."""
    with org.unit_of_work() as s:
        for email in ("sid@acme.test", "mia@acme.test"):
            accounts.set_password(s, person_by_email(s, email), PASSWORD)
    return org


def make_app(store: Store, clock: Clock, tmp_path, **settings):  # noqa: ANN001, ANN003, ANN201
    app = create_app(store, WebSettings(data_dir=tmp_path, secret_key=SECRET, **settings))
    login_throttle(app).clock = clock
    return app


@pytest.fixture
def app(passwords: Store, clock: Clock, tmp_path):  # noqa: ANN001, ANN201
    return make_app(passwords, clock, tmp_path)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):  # noqa: ANN201
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login",
        data={"csrf": token, "email": email, "password": password, "next": "/my"},
        follow_redirects=False,
    )


def fail(client: TestClient, email: str, times: int = 1, clock: Clock | None = None) -> None:
    """``times`` wrong passwords for ``email`` (a minute apart when a clock is given)."""
    for _ in range(times):
        resp = sign_in(client, email, "wrong password")
        assert resp.status_code == 401 and "wrong email or password" in resp.text
        if clock is not None:
            clock.advance(minutes=1)


def alert(resp) -> str:  # noqa: ANN001
    """The message where the sign-in page shows why it refused."""
    return re.search(r'<div class="alert" role="alert">([^<]*)</div>', resp.text).group(1)


def assert_locked(resp, retry_after: int) -> None:  # noqa: ANN001
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == str(retry_after)
    minutes = -(-retry_after // 60)
    unit = "minute" if minutes == 1 else "minutes"
    assert alert(resp) == f"{LOCKED} {minutes} {unit}"
    assert SESSION_COOKIE not in resp.headers.get("set-cookie", "")


def failures(store: Store) -> list[Event]:
    with store.unit_of_work() as s:
        return list(
            s.scalars(
                select(Event).where(Event.verb == accounts.SIGN_IN_FAILED).order_by(Event.id)
            ).unique()
        )


# --- per email ------------------------------------------------------------------------------


def test_five_failures_refuse_the_email_even_with_the_right_password(app) -> None:  # noqa: ANN001
    client = TestClient(app)
    fail(client, "sid@acme.test", 5)
    resp = sign_in(client, "sid@acme.test", PASSWORD)
    assert_locked(resp, 15 * 60)
    assert 'value="sid@acme.test"' in resp.text  # the sign-in form again, with the email kept
    assert 'name="password"' in resp.text
    assert client.get("/my", follow_redirects=False).status_code == 303  # not signed in


def test_four_failures_do_not_refuse_and_a_success_does_not_erase_them(app) -> None:  # noqa: ANN001
    client = TestClient(app)
    fail(client, "sid@acme.test", 4)
    assert sign_in(TestClient(app), "sid@acme.test").status_code == 303
    fail(client, "sid@acme.test")  # the fifth within the window
    assert_locked(sign_in(TestClient(app), "sid@acme.test"), 15 * 60)


def test_an_unknown_email_is_throttled_exactly_like_a_known_one(app) -> None:  # noqa: ANN001
    responses = {}
    for email in ("sid@acme.test", "nobody@acme.test"):
        client = TestClient(app)
        for _ in range(5):
            wrong = sign_in(client, email, "wrong password")
        locked = sign_in(client, email, PASSWORD)
        assert_locked(locked, 15 * 60)
        responses[email] = [
            (r.status_code, sorted(r.headers.keys()), re.sub(r'value="[^"]*"', "", r.text))
            for r in (wrong, locked)
        ]
    assert responses["sid@acme.test"] == responses["nobody@acme.test"]


def test_the_email_is_compared_as_typed_with_case_and_spaces_ignored(app) -> None:  # noqa: ANN001
    client = TestClient(app)
    for email in (
        "SID@acme.test",
        " sid@acme.test",
        "Sid@Acme.Test ",
        "sid@acme.test",
        "sId@acme.test",
    ):
        fail(client, email)
    assert_locked(sign_in(client, "sid@acme.test"), 15 * 60)


def test_sign_in_works_again_once_the_failures_age_out_of_the_window(app, clock: Clock) -> None:  # noqa: ANN001
    client = TestClient(app)
    start = clock.now
    fail(client, "sid@acme.test", 5, clock)  # at start, +1, +2, +3, +4 minutes
    # refused until the oldest of the five is 15 minutes old (sliding window)
    clock.now = start + timedelta(minutes=5)
    assert_locked(sign_in(client, "sid@acme.test"), 10 * 60)
    clock.now = start + timedelta(minutes=15) - timedelta(seconds=1)
    assert_locked(sign_in(client, "sid@acme.test"), 1)
    clock.now = start + timedelta(minutes=15)
    resp = sign_in(client, "sid@acme.test")
    assert resp.status_code == 303 and resp.headers["location"] == "/my"
    assert client.get("/my", follow_redirects=False).status_code == 200


def test_refused_attempts_do_not_extend_the_lock(app, clock: Clock) -> None:  # noqa: ANN001
    client = TestClient(app)
    start = clock.now
    fail(client, "sid@acme.test", 5)
    for _ in range(10):  # an attacker keeps trying: refused, and not counted
        clock.advance(minutes=1)
        assert sign_in(client, "sid@acme.test", "guess").status_code == 429
    clock.now = start + timedelta(minutes=15, seconds=1)
    assert sign_in(client, "sid@acme.test").status_code == 303


def test_failures_for_one_email_do_not_block_another(app) -> None:  # noqa: ANN001
    client = TestClient(app)
    fail(client, "sid@acme.test", 5)
    fail(client, "nobody@acme.test", 5)
    assert sign_in(client, "sid@acme.test").status_code == 429
    resp = sign_in(client, "mia@acme.test")
    assert resp.status_code == 303 and client.cookies.get(SESSION_COOKIE)


def test_the_limit_holds_across_worker_processes(passwords: Store, clock: Clock, tmp_path) -> None:  # noqa: ANN001
    """Two apps on one store stand for two uvicorn workers: the failures add up."""
    one = TestClient(make_app(passwords, clock, tmp_path))
    two = TestClient(make_app(passwords, clock, tmp_path))
    fail(one, "sid@acme.test", 3)
    fail(two, "sid@acme.test", 2)
    assert_locked(sign_in(one, "sid@acme.test"), 15 * 60)
    assert_locked(sign_in(two, "sid@acme.test"), 15 * 60)


def test_the_limits_are_settings(
    passwords: Store, clock: Clock, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("ALIGNCYCLE_LOGIN_MAX_FAILURES", "2")
    monkeypatch.setenv("ALIGNCYCLE_LOGIN_WINDOW_MINUTES", "60")
    client = TestClient(make_app(passwords, clock, tmp_path))
    fail(client, "sid@acme.test", 2)
    assert_locked(sign_in(client, "sid@acme.test"), 60 * 60)
    monkeypatch.setenv("ALIGNCYCLE_LOGIN_MAX_FAILURES", "0")
    with pytest.raises(ValueError, match="login_max_failures"):
        WebSettings(data_dir=tmp_path)


# --- what is written ------------------------------------------------------------------------


def test_a_failure_records_one_event_without_the_typed_email(app, passwords: Store) -> None:  # noqa: ANN001
    before = db_snapshot(passwords)
    client = TestClient(app)
    fail(client, "Sid@acme.test")
    fail(client, "nobody@acme.test")
    after = db_snapshot(passwords)
    # nothing else changed: only two events were added
    assert {t: rows for t, rows in after.items() if t != "events"} == {
        t: rows for t, rows in before.items() if t != "events"
    }
    assert set(before["events"]) <= set(after["events"])
    assert len(after["events"]) == len(before["events"]) + 2
    known, unknown = failures(passwords)
    with passwords.unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test").id
    assert (known.actor_id, known.object_type, known.object_id) == (None, "person", sid)
    assert (unknown.actor_id, unknown.object_type, unknown.object_id) == (None, "sign_in", None)
    assert known.after == {
        "email_hmac": accounts.email_key("sid@acme.test", SECRET),
        "client": "testclient",
    }
    assert unknown.after["email_hmac"] == accounts.email_key("nobody@acme.test", SECRET)
    # the typed email is not in the log, nor a plain digest someone could check a list against
    row = repr([(e.verb, e.object_type, e.before, e.after) for e in (known, unknown)])
    for text in (
        "nobody",
        accounts.digest("nobody@acme.test"),
        "sid@",
        accounts.digest("sid@acme.test"),
    ):
        assert text not in row


def test_a_refused_attempt_writes_nothing(app, passwords: Store, clock: Clock) -> None:  # noqa: ANN001
    client = TestClient(app, client=("198.51.100.7", 4000))
    fail(client, "sid@acme.test", 5)
    for i in range(15):  # 20 failures in all: the per-client limit
        fail(client, f"spray{i}@acme.test")
    before = db_snapshot(passwords)
    assert sign_in(client, "sid@acme.test").status_code == 429  # the email is locked
    assert sign_in(client, "mia@acme.test").status_code == 429  # the address is locked
    assert db_snapshot(passwords) == before


def test_the_page_says_the_password_was_wrong_before_the_limit_and_locked_after(app) -> None:  # noqa: ANN001
    """The fifth failure is still "wrong email or password": the lock is only announced to the
    attempt after it (a sixth guess is never checked)."""
    client = TestClient(app)
    fail(client, "sid@acme.test", 5)
    resp = sign_in(client, "sid@acme.test", "wrong password")
    assert resp.status_code == 429 and alert(resp).startswith(LOCKED)


# --- per client address ---------------------------------------------------------------------


def test_one_address_trying_many_emails_is_refused(app, clock: Clock) -> None:  # noqa: ANN001
    sprayer = TestClient(app, client=("203.0.113.9", 5000))
    for i in range(20):
        fail(sprayer, f"guess{i}@acme.test")
    resp = sign_in(sprayer, "sid@acme.test")  # even the right password, for a fresh email
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == str(5 * 60)
    assert alert(resp) == "too many failed sign-ins from your network; try again in 5 minutes"
    # another address is not affected
    assert (
        sign_in(TestClient(app, client=("203.0.113.10", 5000)), "sid@acme.test").status_code == 303
    )
    # the window slides: five minutes after the failures, the address may try again
    clock.advance(minutes=5)
    assert sign_in(sprayer, "mia@acme.test").status_code == 303


def test_the_client_limit_counts_failures_only(app) -> None:  # noqa: ANN001
    office = TestClient(app, client=("192.0.2.1", 6000))
    for _ in range(25):
        assert sign_in(office, "sid@acme.test").status_code == 303
    fail(office, "mia@acme.test", 4)
    assert sign_in(office, "mia@acme.test").status_code == 303


def test_the_client_limit_is_a_setting(passwords: Store, clock: Clock, tmp_path) -> None:  # noqa: ANN001
    app = make_app(
        passwords, clock, tmp_path, login_max_failures_per_client=3, login_client_window_minutes=1
    )
    client = TestClient(app, client=("203.0.113.9", 5000))
    for i in range(3):
        fail(client, f"guess{i}@acme.test")
    resp = sign_in(client, "sid@acme.test")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "60"


def test_an_ipv6_client_is_counted_by_its_64_network(app) -> None:  # noqa: ANN001
    for i in range(20):
        fail(TestClient(app, client=(f"2001:db8:1:2::{i + 1:x}", 5000)), f"guess{i}@acme.test")
    same_net = TestClient(app, client=("2001:db8:1:2:ffff::1", 5000))
    assert sign_in(same_net, "sid@acme.test").status_code == 429
    other_net = TestClient(app, client=("2001:db8:1:3::1", 5000))
    assert sign_in(other_net, "sid@acme.test").status_code == 303


def test_client_address() -> None:
    from starlette.requests import Request

    def key(host: str | None) -> str:
        scope = {"type": "http", "client": (host, 1) if host is not None else None, "headers": []}
        return client_address(Request(scope))

    assert key("198.51.100.7") == "198.51.100.7"
    assert key("::ffff:198.51.100.7") == "198.51.100.7"
    assert key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert key("testclient") == "testclient"
    assert key(None) == "unknown"


def test_the_client_window_forgets_addresses_beyond_its_size(clock: Clock) -> None:
    from aligncycle.web.auth import ClientFailures

    limiter = ClientFailures(max_failures=2, window=timedelta(minutes=5), max_clients=3)
    for ip in ("a", "a", "b", "c", "d"):
        limiter.record(ip, clock.now)
    # "a" failed least recently: forgotten to keep the memory bounded
    limiter.check("a", clock.now)
    limiter.record("d", clock.now)
    with pytest.raises(accounts.TooManyAttempts):
        limiter.check("d", clock.now)


# --- the API ------------------------------------------------------------------------------


def test_a_wrong_bearer_token_is_a_quick_401_that_writes_nothing(
    app, passwords: Store, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """Tokens are 256 random bits stored as SHA-256: a wrong one is one indexed lookup, never
    a password hash (which would make guessing cost the server), and nothing is recorded."""

    class NoHashing:
        def verify(self, *args: object) -> None:
            raise AssertionError("a token check must not verify passwords")

    monkeypatch.setattr(accounts, "_hasher", NoHashing())
    before = db_snapshot(passwords)
    client = TestClient(app)
    for header in ("Bearer ac_" + "x" * 43, "Bearer not-a-token", "Bearer "):
        resp = client.get("/api/v1/me", headers={"Authorization": header})
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert db_snapshot(passwords) == before
