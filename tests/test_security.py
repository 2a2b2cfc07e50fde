"""The attacks of issue 11, item 5, re-run; each asserts the refusal (a 4xx or a non-zero exit
with one line, never a 500 or a traceback) and that nothing was stored.

Object-level access (item 1) and atomic advances (item 2) have their own tests.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from aligncycle import cli_common
from aligncycle.web import create_app
from aligncycle.web.auth import HOST_PREFIX, LOGIN_COOKIE, SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from models.db import Store, mask_secrets, shown_url
from models.errors import InvalidInput
from models.schemas import RetrospectiveRecord
from models.services import accounts, recap
from models.services.common import person_by_email
from tests.conftest import db_snapshot
from tests.test_cli import cli
from tests.test_web_support import recap_cycle

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
TOO_BIG = 2**63
pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
def app(org: Store, tmp_path: Path) -> Any:
    with org.unit_of_work() as s:
        for email in ("sid@acme.test", "sam@acme.test"):
            accounts.set_password(s, person_by_email(s, email), PASSWORD)
    return create_app(org, WebSettings(data_dir=tmp_path, secret_key="k" * 32))


def _csrf(page: Any) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _signed_in(app: Any, email: str = "sid@acme.test", https: bool = False) -> TestClient:
    client = TestClient(app, base_url="https://testserver" if https else "http://testserver")
    form = client.get("/login")
    resp = client.post(
        "/login",
        data={"csrf": _csrf(form), "email": email, "password": PASSWORD, "next": "/my"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return client


def _set_password(email: str, password: str, code: int) -> Any:
    """``aligncycle user set-password EMAIL --password-stdin``, the password on stdin."""
    from typer.testing import CliRunner

    from aligncycle.cli import app as cli_app

    cli_common.reset_store()
    result = CliRunner().invoke(
        cli_app, ["user", "set-password", email, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == code, result.output
    return result


def _bearer(org: Store, email: str = "sam@acme.test") -> dict[str, str]:
    with org.unit_of_work() as s:
        token, _ = accounts.create_token(s, person_by_email(s, email), "tests")
    return {"Authorization": f"Bearer {token}"}


# --- CSRF tokens that are not ASCII ---------------------------------------------------------


@pytest.mark.parametrize("token", ["é", "\u2603" * 43, "ünïcødé-tøkén", "\x00"])
def test_a_non_ascii_csrf_token_is_refused_not_a_500(app: Any, org: Store, token: str) -> None:
    before = db_snapshot(org)
    # before sign-in: the sign-in form
    fresh = TestClient(app)
    fresh.get("/login")
    resp = fresh.post(
        "/login", data={"csrf": token, "email": "sid@acme.test", "password": PASSWORD}
    )
    assert resp.status_code == 403 and "reload the page" in resp.text
    # a page's form field, and the header scripts send
    client = _signed_in(app)
    before = db_snapshot(org)
    resp = client.post("/account/tokens", data={"name": "x", "csrf": token})
    assert resp.status_code == 403 and "reload the page" in resp.text
    header = token.encode("utf-8", "surrogatepass")  # raw bytes on the wire
    resp = client.post("/api/v1/tokens", json={"name": "x"}, headers={"x-csrf-token": header})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    resp = client.post("/account/tokens", data={"name": "x"}, headers={"x-csrf-token": header})
    assert resp.status_code == 403
    assert db_snapshot(org) == before


def test_a_non_ascii_sign_in_nonce_cookie_gets_a_new_form(app: Any) -> None:
    client = TestClient(app)
    cookie = {"cookie": f"{LOGIN_COOKIE}=ñoñce".encode()}  # raw bytes, as a browser may send
    form = client.get("/login", headers=cookie)
    assert form.status_code == 200
    resp = client.post(
        "/login",
        data={"csrf": _csrf(form), "email": "sid@acme.test", "password": PASSWORD},
        headers=cookie,
    )
    assert resp.status_code == 403 and "reload the page" in resp.text  # never a 500


# --- cookies over https ---------------------------------------------------------------------


def test_cookies_over_https_carry_the_host_prefix_and_work(app: Any) -> None:
    client = _signed_in(app, https=True)
    names = {c.name for c in client.cookies.jar}
    assert f"{HOST_PREFIX}{SESSION_COOKIE}" in names and SESSION_COOKIE not in names
    for header in client.get("/login").headers.get_list("set-cookie"):
        assert header.startswith(HOST_PREFIX)
        assert "Secure" in header and "Path=/" in header and "Domain" not in header
    assert client.get("/my").status_code == 200  # read back under its prefixed name
    page = client.get("/account")
    out = client.post("/logout", data={"csrf": _csrf(page)}, follow_redirects=False)
    assert out.status_code == 303
    cleared = [h for h in out.headers.get_list("set-cookie") if SESSION_COOKIE in h]
    assert cleared and all(h.startswith(HOST_PREFIX) for h in cleared)
    # over plain http (a laptop): no prefix, which browsers would refuse without Secure
    plain = _signed_in(app)
    assert SESSION_COOKIE in {c.name for c in plain.cookies.jar}


# --- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, why",
    [
        ("12345678", "at least 12 characters"),
        ("password", "at least 12 characters"),
        ("123456789012", "run of neighbouring keys"),
        ("qwertyuiopasdf", "run of neighbouring keys"),
        ("zyxwvutsrqpo", "run of neighbouring keys"),
        ("password1234", "most commonly used"),
        ("Password2024!", "most commonly used"),
        ("!!iloveyou!!", "most commonly used"),
        ("monkeymonkeymonkey", "most commonly used"),
        ("aaaaaaaaaaaaaaaa", "too few different characters"),
        ("abababababab1", "too few different characters"),
        ("meg.member-secret", "your name or email address"),
        ("my name is Member", "your name or email address"),
    ],
)
def test_weak_passwords_are_refused_with_a_sentence(org: Store, password: str, why: str) -> None:
    before = db_snapshot(org)
    result = _set_password("meg@acme.test", password, code=1)
    assert result.stdout == ""
    line = result.stderr.removeprefix("error: ").rstrip("\n")
    assert why in line and "\n" not in line
    assert db_snapshot(org) == before
    with org.unit_of_work() as s, pytest.raises(InvalidInput, match=why):
        accounts.set_password(s, person_by_email(s, "meg@acme.test"), password)


def test_a_good_password_is_accepted(org: Store) -> None:
    result = _set_password("meg@acme.test", "plum orchard by the lake", code=0)
    assert "password set for Meg Member" in result.stdout


def test_the_web_refuses_a_weak_new_password_in_a_sentence(app: Any, org: Store) -> None:
    client = _signed_in(app)
    page = client.get("/account")
    before = db_snapshot(org)
    resp = client.post(
        "/account/password",
        data={
            "csrf": _csrf(page),
            "current": PASSWORD,
            "new_password": "password1234",
            "repeat": "password1234",
        },
    )
    assert resp.status_code == 422
    assert "one of the most commonly used ones" in resp.text
    after = db_snapshot(org)
    assert after == before


def _change(client: TestClient, current: str, new: str = "plum orchard by the lake") -> Any:
    page = client.get("/account")
    return client.post(
        "/account/password",
        data={"csrf": _csrf(page), "current": current, "new_password": new, "repeat": new},
        follow_redirects=False,
    )


def test_changing_a_password_is_throttled_like_signing_in(app: Any, org: Store) -> None:
    """A borrowed session cannot guess the current password: five wrong ones and the sixth
    attempt is refused even with the right one (429, Retry-After); the wrong guesses count
    for signing in with that email too, and are in the audit log."""
    client = _signed_in(app)
    for _ in range(5):
        resp = _change(client, "not my password at all")
        assert resp.status_code == 422 and "current password is not right" in resp.text
    before = db_snapshot(org)
    locked = _change(client, PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "Too many wrong passwords for this account" in locked.text
    assert db_snapshot(org) == before  # refused before the password was looked at
    # the same email cannot sign in either
    fresh = TestClient(app)
    form = fresh.get("/login")
    resp = fresh.post(
        "/login", data={"csrf": _csrf(form), "email": "sid@acme.test", "password": PASSWORD}
    )
    assert resp.status_code == 429
    verbs = [e for e in before["events"] if "auth.password_check_failed" in "".join(e)]
    assert len(verbs) == 5


def test_a_right_current_password_changes_it(app: Any) -> None:
    client = _signed_in(app)
    resp = _change(client, PASSWORD)
    assert resp.status_code == 303


# --- control characters printed by the CLI --------------------------------------------------

ESCAPES = (
    "\x1b]0;owned\x07"  # window title
    "\x1b[2J\x1b[H"  # clear the screen
    "\x1b[31mred\x1b[0m"  # colour
    "\x9b31m"  # C1 CSI
    "\u202egnp.exe\u202c"  # right-to-left override
    "\rover\x08written"
)


def test_text_typed_on_the_web_reaches_the_terminal_without_escapes(org: Store) -> None:
    with org.unit_of_work() as s:
        cycle = recap_cycle(s, "Escapes")
        cycle_id = cycle.id
        recap.record_retrospective(
            s,
            cycle,
            RetrospectiveRecord(summary="all good " + ESCAPES, improvements=[ESCAPES]),
            person_by_email(s, "sam@acme.test"),
        )
    out = cli("retro", "show", cycle_id).stdout
    assert "all good" in out and "red" in out and "gnp.exe" in out
    for char in out:
        assert char in "\n\t" or (char.isprintable() and char not in "\u202e\u202c"), repr(char)
    # JSON keeps the text whole, escaped
    data = json.loads(cli("retro", "show", cycle_id, "--json").stdout)
    assert data["summary"] == "all good " + ESCAPES
    raw = cli("retro", "show", cycle_id, "--json").stdout
    assert "\x1b" not in raw and "\x9b" not in raw and "\u202e" not in raw


def test_printable_keeps_text_and_newlines() -> None:
    assert cli_common.printable("a\r\nb\tc\x1b[1mbold\x1b[0m\x07") == "a\nb\tcbold"
    assert cli_common.printable("naïve café — 日本") == "naïve café — 日本"


# --- bounds on every input ------------------------------------------------------------------


def test_ids_too_big_for_the_store_are_refused_in_one_line(app: Any, org: Store) -> None:
    api = TestClient(app)
    h = _bearer(org)
    page = _signed_in(app, "sam@acme.test")
    before = db_snapshot(org)
    for method, path, body in [
        ("get", f"/api/v1/cycles/{TOO_BIG}", None),
        ("get", f"/api/v1/cycles/{2**31}/gaps", None),
        ("get", f"/api/v1/actions/{-TOO_BIG}", None),
        ("post", f"/api/v1/gaps/{TOO_BIG}/decision", {"decision": "accepted"}),
        ("delete", f"/api/v1/tokens/{TOO_BIG}", None),
        ("get", f"/api/v1/cycles/1/actions?owner={TOO_BIG}", None),
    ]:
        resp = api.request(method, path, headers=h, json=body)
        assert resp.status_code == 422, (path, resp.text)
        message = resp.json()["error"]["message"]
        assert "out of range" in message or "less than or equal" in message, message
    for path in (f"/cycles/{TOO_BIG}", f"/cycles/{TOO_BIG}/actions", f"/actions/{TOO_BIG}"):
        resp = page.get(path)
        assert resp.status_code in (404, 422), (path, resp.status_code)
        assert resp.status_code != 500
    resp = page.get(f"/cycles/{TOO_BIG}")
    assert resp.status_code == 422 and "out of range" in resp.text
    # in a body
    resp = api.post(
        "/api/v1/cycles",
        headers=h,
        json={"playbook": "sales-marketing-handoff", "title": "Big", "previous_cycle_id": TOO_BIG},
    )
    error = resp.json()["error"]
    assert resp.status_code == 422 and error["message"].startswith("cycle it follows:")
    assert error["fields"][0]["field"] == "previous_cycle_id"  # the JSON path, for scripts
    # on the command line
    result = cli("retro", "show", TOO_BIG, code=2)
    assert result.stderr.startswith("error: Invalid value for 'CYCLE_ID': ")
    assert "out of range" in result.stderr and result.stderr.count("\n") == 1
    result = cli("cycle", "start", "--playbook", "sales-marketing-handoff", "--title", "Big",
                 "--from", TOO_BIG, "--as", "sam@acme.test", code=2)  # fmt: skip
    assert "out of range" in result.stderr
    assert db_snapshot(org) == before


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31", "2101-01-01"])
def test_cycle_periods_outside_2000_to_2100_are_refused_everywhere(
    app: Any, org: Store, day: str
) -> None:
    """A cycle starting 0001-01-01 was accepted, then 'kpi baseline' crashed on it."""
    bearer = _bearer(org)
    page = _signed_in(app, "sam@acme.test")
    before = db_snapshot(org)
    resp = TestClient(app).post(
        "/api/v1/cycles",
        headers=bearer,
        json={"playbook": "sales-marketing-handoff", "title": "Odd", "period_start": day},
    )
    assert resp.status_code == 422
    assert f"{day} is not a date between 2000 and 2100" in resp.json()["error"]["message"]
    form = page.get("/cycles/new")
    resp = page.post(
        "/cycles/new",
        data={
            "csrf": _csrf(form),
            "playbook": "sales-marketing-handoff",
            "title": "Odd",
            "period_start": day,
        },
    )
    assert resp.status_code == 422 and "is not a date between 2000 and 2100" in resp.text
    result = cli("cycle", "start", "--playbook", "sales-marketing-handoff", "--title", "Odd",
                 "--start", day, "--as", "sam@acme.test", code=2)  # fmt: skip
    assert "is not a date between" in result.stderr and result.stderr.count("\n") == 1
    assert db_snapshot(org) == before


def test_due_dates_and_check_in_days_are_bounded_too(app: Any, org: Store) -> None:
    from models.schemas import ActionItemCreate, CheckInCreate

    for model, field in ((ActionItemCreate, "due_date"), (CheckInCreate, "on_date")):
        extra = {"title": "x"} if model is ActionItemCreate else {}
        with pytest.raises(ValueError, match="is not a date between 2000 and 2100"):
            model(**extra, **{field: date(9999, 12, 31)})
        model(**extra, **{field: date.today() + timedelta(days=30)})


def test_deeply_nested_playbook_yaml_is_refused_in_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: deep\nphases: " + "[" * 10_000 + "]" * 10_000 + "\n")
    laughs = tmp_path / "laughs.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n, prev in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{n}: &{n} [" + ", ".join([f"*{prev}"] * 10) + "]")
    laughs.write_text("\n".join(lines) + "\n")
    result = cli("playbook", "validate", deep, laughs, code=1)
    first, second = result.stderr.splitlines()
    assert first == f"error: {deep}: line 2: invalid YAML: nested more than 50 levels deep"
    assert re.fullmatch(
        rf"error: {re.escape(str(laughs))}: line \d: invalid YAML: more than 200,000 values "
        "once its aliases are expanded",
        second,
    )


# --- the store's password never shows -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ops:hunter2-secret@db.internal:5432/aligncycle",
        "postgresql://ops@db.internal/aligncycle?password=hunter2-secret",
        "postgresql+psycopg://ops@db.internal/aligncycle?sslmode=require&PASSWORD=hunter2-secret",
        "postgresql://ops:hunter2%2Dsecret@db.internal/aligncycle",
    ],
)
def test_a_store_password_never_appears_in_what_is_shown(url: str) -> None:
    shown = shown_url(url)
    assert "hunter2" not in shown and "db.internal" in shown
    message = f"connection to {url} failed: password hunter2-secret is wrong"
    assert "hunter2" not in mask_secrets(message, url)
