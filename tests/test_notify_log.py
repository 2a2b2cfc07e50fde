"""The notification log (``aligncycle notify log``, ``GET /api/v1/notifications``): what waits,
what went out, what failed and why, each person seeing only their teams' cycles."""

# ruff: noqa: F811 - the cadence tests' fixtures, used here by name

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app as cli_app
from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from models.cadence import reminders
from models.cadence.tables import Notification
from models.db import Store
from models.schemas import PersonCreate, TeamCreate
from models.services import accounts, people
from models.services.common import person_by_email
from tests.test_cadence import (  # noqa: F401 - fixtures
    MIA,
    OPEN,
    SAM,
    WIP,
    make_cycle,
    plan,
    receiver,
    rows,
    world,
)

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OLA = "ola@acme.test"  # a lead of a team in no cycle


@pytest.fixture
def logged(world: Store) -> dict[str, int]:
    """Three reminders: one sent, one failed (with the reason), one waiting; and a person of
    a team that takes part in no cycle."""
    make_cycle(world, [("soon", SAM, 1, OPEN), ("today", MIA, 0, WIP), ("late", SAM, -1, WIP)])
    plan(world, reminders.plan_reminders)
    planned = sorted(n.id for n in rows(world))  # in the order of the items
    by_title = dict(zip(("soon", "today", "late"), planned, strict=True))
    with world.unit_of_work() as s:
        t = Notification.__table__
        s.execute(update(t).where(t.c.id == by_title["soon"]).values(status="sent", attempts=1))
        s.execute(
            update(t)
            .where(t.c.id == by_title["late"])
            .values(status="failed", attempts=3, error="the receiver answered 503")
        )
        people.create_team(s, TeamCreate(key="support", name="Support"))
        s.flush()
        people.create_person(
            s, PersonCreate(name="Ola Outside", email=OLA, team="support", role="lead")
        )
    return by_title


def cli(*args: str, code: int = 0) -> str:
    cli_common.reset_store()
    result = CliRunner().invoke(cli_app, list(args), env={"ALIGNCYCLE_ACTOR": None})
    assert result.exit_code == code, result.output
    return result.output


def test_notify_log_lists_pending_sent_and_failed_with_the_reason(logged: dict[str, int]) -> None:
    everything = json.loads(cli("notify", "log", "--json"))
    assert [r["id"] for r in everything] == sorted(logged.values(), reverse=True)  # newest first
    assert {r["status"] for r in everything} == {"pending", "sent", "failed"}
    failed = cli("notify", "log", "--status", "failed")
    assert "the receiver answered 503" in failed and "failed" in failed
    assert "reminder" in failed
    assert len(json.loads(cli("notify", "log", "--status", "FAILED", "--json"))) == 1
    # A person of a team in no cycle sees nothing of it; a point person sees all three.
    assert cli("notify", "log", "--as", OLA).strip() == "no notifications"
    assert len(json.loads(cli("notify", "log", "--as", SAM, "--json"))) == 3


def test_notify_log_refuses_an_unknown_status_in_one_line(logged: dict[str, int]) -> None:
    out = cli("notify", "log", "--status", "lost", code=2)
    assert out.strip().splitlines() == [
        "error: --status 'lost' is not one of: pending, sending, sent, failed"
    ]


def test_the_api_lists_the_log_with_the_same_visibility(
    logged: dict[str, int], world: Store, tmp_path: Path
) -> None:
    app = create_app(world, WebSettings(data_dir=tmp_path, secret_key="k" * 40))
    client = TestClient(app)
    tokens = {}
    with world.unit_of_work() as s:
        for email in (SAM, OLA, "max@acme.test"):
            tokens[email], _ = accounts.create_token(s, person_by_email(s, email), "t")

    def get(email: str, query: str = "") -> object:
        resp = client.get(
            f"/api/v1/notifications{query}", headers={"Authorization": f"Bearer {tokens[email]}"}
        )
        return resp

    mine = get(SAM).json()
    assert mine["total"] == 3
    assert [i["status_words"] for i in mine["items"]] == ["failed", "waiting to be sent", "sent"]
    failed = get("max@acme.test", "?status=failed").json()["items"]
    assert [(i["id"], i["error"], i["attempts"]) for i in failed] == [
        (logged["late"], "the receiver answered 503", 3)
    ]
    assert get(OLA).json()["total"] == 0
    cycle_id = mine["items"][0]["cycle_id"]
    hidden = get(OLA, f"?cycle_id={cycle_id}")
    assert hidden.status_code == 404  # another team's cycle: like a missing one
    assert get(SAM, "?status=lost").status_code == 422
    assert get(SAM, "?limit=1").json()["next_offset"] == 1


def test_the_messages_page_shows_failures_in_words_to_the_cycles_teams(
    logged: dict[str, int], world: Store, tmp_path: Path
) -> None:
    from aligncycle.web.auth import SESSION_COOKIE

    app = create_app(world, WebSettings(data_dir=tmp_path, secret_key="k" * 40))

    def browser(email: str) -> TestClient:
        with world.unit_of_work() as s:
            raw, _ = accounts.create_session(s, person_by_email(s, email))
        client = TestClient(app, follow_redirects=False)
        client.cookies.set(SESSION_COOKIE, raw)
        return client

    sam = browser(SAM)
    page = sam.get("/notifications?status=failed")
    assert page.status_code == 200
    assert "the receiver answered 503" in page.text and "Failed" in page.text
    assert "Reminder" in page.text and "3 attempts" in page.text
    assert "Waiting to be sent" not in page.text.split("<table>")[1]  # only the failed one
    everything = sam.get("/notifications").text
    assert everything.count("<tr>") == 4  # the header and three messages
    shown = everything.split("<table>")[1]
    assert "pending" not in shown and "reminder " not in shown  # words, not stored keys
    assert "No messages" in browser(OLA).get("/notifications").text
    assert sam.get("/notifications?status=nonsense").status_code == 200  # every message


# --- sending a failed message again -----------------------------------------------------------


def _browser(world: Store, tmp_path: Path, email: str) -> tuple[TestClient, str]:
    from aligncycle.web.auth import SESSION_COOKIE

    app = create_app(world, WebSettings(data_dir=tmp_path, secret_key="k" * 40))
    with world.unit_of_work() as s:
        raw, ws = accounts.create_session(s, person_by_email(s, email))
    client = TestClient(app, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, raw)
    return client, ws.csrf_token


def _state(world: Store, notification_id: int) -> tuple:
    with world.unit_of_work() as s:
        n = s.get(Notification, notification_id)
        return n.status.value, n.attempts, n.retry_at, n.error


def test_a_failed_message_is_sent_again_from_the_messages_page_once_its_channel_works(
    logged: dict[str, int],
    world: Store,
    tmp_path: Path,
    receiver,  # noqa: ANN001, F811
) -> None:
    from flows.notify import deliver
    from models.tables import Event

    sam, csrf = _browser(world, tmp_path, SAM)
    page = sam.get("/notifications").text
    assert page.count(">Send again</button>") == 1  # the failed one only
    late = logged["late"]
    resp = sam.post(
        f"/notifications/{late}/send-again", data={"csrf": csrf, "next": "/notifications"}
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/notifications"
    flash = sam.get("/notifications").text
    assert "will be sent again with the next delivery" in flash
    # waiting again, as a message tried before (the sweep takes those), the last error kept
    assert _state(world, late) == ("pending", 1, None, "the receiver answered 503")
    assert "To be tried again" in flash and ">Send again</button>" not in flash
    with world.unit_of_work() as s:
        event = s.query(Event).filter(Event.verb == "notification.sent_again").one()
        assert event.actor_id == person_by_email(s, SAM).id and event.object_id == late
    # the sweep (the dispatch deployment; the web app on the embedded default) sends it
    result = deliver(world, sweep=True, secrets=None)
    assert result.sent == 1
    assert [path for path, _title in receiver.received()] == ["/sam"]
    assert _state(world, late)[0] == "sent"


def test_sending_again_what_did_not_fail_or_is_not_yours_changes_nothing(
    logged: dict[str, int], world: Store, tmp_path: Path
) -> None:
    from models.cadence import channels

    late, sent = logged["late"], logged["soon"]
    before = {i: _state(world, i) for i in logged.values()}
    ola, ola_csrf = _browser(world, tmp_path, OLA)  # a team in no cycle: like a missing one
    assert ola.post(f"/notifications/{late}/send-again", data={"csrf": ola_csrf}).status_code == (
        404
    )
    sam, csrf = _browser(world, tmp_path, SAM)
    refused = sam.post(f"/notifications/{sent}/send-again", data={"csrf": csrf})
    assert refused.status_code == 409
    assert "is sent: only a message that failed can be sent again" in refused.text
    assert sam.post(f"/notifications/{late}/send-again", data={}).status_code == 403  # no CSRF
    # a channel removed since: nothing to send it through
    with world.unit_of_work() as s:
        channel_id = s.get(Notification, late).channel_id
        channels.remove_channel(s, channel_id, person_by_email(s, "max@acme.test"))
    gone = sam.post(f"/notifications/{late}/send-again", data={"csrf": csrf})
    assert gone.status_code == 409 and "its channel was removed or turned off" in gone.text
    assert {i: _state(world, i) for i in logged.values()} == before


def test_operators_and_integrations_send_a_failed_message_again(
    logged: dict[str, int], world: Store, tmp_path: Path
) -> None:
    late, waiting = logged["late"], logged["today"]
    out = cli("notify", "send-again", str(waiting), code=1)
    assert out.strip().splitlines() == [
        "error: this reminder is waiting to be sent: only a message that failed can be sent again"
    ]
    assert "error: no message with id 999999" in cli("notify", "send-again", "999999", code=1)
    assert "is queued again" in cli("notify", "send-again", str(late))
    assert _state(world, late)[:2] == ("pending", 1)
    # the API: the same call, the same visibility
    with world.unit_of_work() as s:
        s.execute(update(Notification).where(Notification.id == late).values(status="failed"))
        tokens = {e: accounts.create_token(s, person_by_email(s, e), "t")[0] for e in (SAM, OLA)}
    client = TestClient(create_app(world, WebSettings(data_dir=tmp_path, secret_key="k" * 40)))

    def post(email: str, ident: int) -> object:
        return client.post(
            f"/api/v1/notifications/{ident}/send-again",
            headers={"Authorization": f"Bearer {tokens[email]}"},
        )

    assert post(OLA, late).status_code == 404
    again = post(SAM, late)
    assert again.status_code == 200, again.text
    assert again.json()["status_words"] == "to be tried again"
    assert post(SAM, late).status_code == 409  # not failed any more
