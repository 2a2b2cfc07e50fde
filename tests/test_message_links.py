"""Every notification links to the web app's page to act on (``ALIGNCYCLE_BASE_URL``), and
none tells its reader to run a command or shows a stored key instead of words."""

# ruff: noqa: F811 - the cadence tests' fixtures, used here by name

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from models.cadence import checkins, digest, escalations, recap_due, reminders
from models.cadence.links import Links
from models.db import Store
from tests.test_cadence import (  # noqa: F401 - fixtures
    DONE,
    OPEN,
    SAM,
    SID,
    TODAY,
    WIP,
    make_cycle,
    plan,
    receiver,
    rows,
    world,
)

BASE = "https://aligncycle.acme.example/"
COMMAND = r"\baligncycle (checkin|funnel|cycle|gap|action|retro|survey|notify|user|token|db)\b"


def plan_everything(store: Store) -> dict[str, str]:
    """A cycle with a late item, a cycle whose period ended, every planner run once; the body
    of each kind's first message."""
    cid, _ = make_cycle(store, [("late one", SID, -5, WIP), ("soon", SAM, 1, OPEN)])
    ended, _ = make_cycle(
        store, [("finished", SAM, -10, DONE)], title="Ended", end=TODAY - timedelta(days=1)
    )
    plan(store, reminders.plan_reminders)
    plan(store, escalations.plan_escalations)
    plan(store, checkins.plan_checkins)
    plan(store, digest.plan_digests)
    with store.unit_of_work() as s:
        recap_due.plan_recap_due(s, TODAY, recap_due.open_recaps_due(s, TODAY, [ended]))
    bodies: dict[str, str] = {}
    for n in rows(store):
        bodies.setdefault(str(n.kind), n.body)
    assert set(bodies) == {"reminder", "escalation", "checkin", "digest", "recap_due"}
    return {"cycle": str(cid), "ended": str(ended), **bodies}


def test_each_message_links_to_the_page_to_act_on(
    world: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIGNCYCLE_BASE_URL", BASE)
    got = plan_everything(world)
    cid, ended = got["cycle"], got["ended"]
    site = BASE.rstrip("/")
    assert f"Update it: {site}/my\n" in got["reminder"]
    assert f"Update them: {site}/my\n" in got["checkin"]
    assert f"The cycle's action items: {site}/cycles/{cid}/actions\n" in got["escalation"]
    assert f"The cycle: {site}/cycles/" in got["digest"]
    assert f"The recap: {site}/cycles/{ended}/recap\n" in got["recap_due"]


def test_without_a_base_url_messages_name_the_page(world: Store, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("ALIGNCYCLE_BASE_URL", raising=False)
    got = plan_everything(world)
    assert "Update it: the My work page of the web app." in got["reminder"]
    assert "The recap: the cycle's Recap page of the web app." in got["recap_due"]
    for kind in ("reminder", "escalation", "checkin", "digest", "recap_due"):
        body = got[kind]
        assert "http" not in body
        # No command to run, no stored key ("on_track"), no "(s)".
        assert not re.search(COMMAND, body), body
        assert not re.search(r"\b(on|at|off)_track\b|in_progress|\(s\)", body), body


def test_links_join_the_base_url_and_the_path_once() -> None:
    assert Links("https://x.example/").url("/my") == "https://x.example/my"
    assert Links("https://x.example/ac").url("/cycles/3") == "https://x.example/ac/cycles/3"
    assert Links(None).url("/my") is None


def test_a_base_url_that_is_no_web_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.config import StoreSettings

    monkeypatch.setenv("ALIGNCYCLE_BASE_URL", "aligncycle.acme.example")
    with pytest.raises(ValueError, match="base_url"):
        StoreSettings()
    monkeypatch.setenv("ALIGNCYCLE_BASE_URL", "https://aligncycle.acme.example/")
    assert StoreSettings().base_url == "https://aligncycle.acme.example"
