"""The domain's rules on gaps and follow-up cycles, as the REST API answers them: a refused
decision is a 4xx with the one-line message, and the store is left exactly as it was."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from aligncycle.web import create_app
from aligncycle.web.deps import WebSettings
from models.accounts import ApiToken
from models.base import utcnow
from models.db import Store
from models.enums import Phase
from models.services import accounts, actions, gaps
from models.services.common import person_by_email
from tests.conftest import db_snapshot
from tests.test_services import (
    HANDOFF,
    LEE,
    SAM,
    add_action,
    answer_all,
    in_recap_with_open_work,
    start,
    to_plan,
)

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def api(org: Store, tmp_path: Path) -> Iterator[Any]:
    """A client of the app on the ``org`` store, and a bearer token per email."""
    tokens: dict[str, str] = {}
    with org.unit_of_work() as s:
        for email in (LEE, SAM):
            tokens[email], _ = accounts.create_token(s, person_by_email(s, email), "tests")
        # Marked as used just now, so no request writes ``last_used_at`` (snapshots stay equal).
        s.execute(update(ApiToken).values(last_used_at=utcnow()))
    app = create_app(org, WebSettings(data_dir=tmp_path, secret_key="test-secret"))
    client = TestClient(app, follow_redirects=False)
    client.bearer = lambda email: {"Authorization": f"Bearer {tokens[email]}"}  # type: ignore[attr-defined]
    yield client


def refused(resp: Any, status: int, code: str) -> str:
    """The error's one-line message, after checking its status and code."""
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and "\n" not in error["message"]
    return error["message"]


def test_a_gap_with_unfinished_work_is_not_deferred_through_the_api(org: Store, api: Any) -> None:
    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
        add_action(s, cycle_id, gaps.get_gap(s, gap_id), title="Agree the SLA")
    before = db_snapshot(org)
    resp = api.post(
        f"/api/v1/gaps/{gap_id}/decision",
        headers=api.bearer(LEE),
        json={"decision": "rejected", "reason": "not ours"},
    )
    message = refused(resp, 422, "invalid_input")
    assert message == (
        f"gap {gap_id} has 1 unfinished action item: drop or finish it (or unlink the gap) "
        "first, then reject the gap"
    )
    assert db_snapshot(org) == before

    with org.unit_of_work() as s:  # dropped: the gap may be deferred now
        [item] = actions.list_actions(s, cycle_id=cycle_id)
        item_id = item.id
    dropped = api.patch(
        f"/api/v1/actions/{item_id}", headers=api.bearer(LEE), json={"status": "dropped"}
    )
    assert dropped.status_code == 200, dropped.text
    resp = api.post(
        f"/api/v1/gaps/{gap_id}/decision", headers=api.bearer(LEE), json={"decision": "deferred"}
    )
    assert resp.status_code == 200 and resp.json()["decision"] == "deferred"


def test_a_second_follow_up_is_a_conflict_through_the_api(org: Store, api: Any) -> None:
    first = in_recap_with_open_work(org)
    body = {"playbook": HANDOFF, "title": "Q2", "previous_cycle_id": first}
    made = api.post("/api/v1/cycles", headers=api.bearer(SAM), json=body)
    assert made.status_code == 201, made.text
    before = db_snapshot(org)
    again = api.post("/api/v1/cycles", headers=api.bearer(SAM), json=body | {"title": "Q2 again"})
    message = refused(again, 409, "conflict")
    assert message.startswith(f"cycle {first} already has a follow-up: cycle {made.json()['id']}")
    assert db_snapshot(org) == before
