"""The REST API: its OpenAPI document, the error shape, pagination, filters, concurrency, and a
cycle walked from start to Plan through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("api")) as r:
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


def test_openapi_document_describes_every_operation_and_its_errors(w: Rig) -> None:
    resp = w.client().get("/api/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "aligncycle"
    paths = doc["paths"]
    assert all(p.startswith("/api/v1/") for p in paths)  # pages are not part of the API
    assert {"/api/v1/cycles", "/api/v1/me/work", "/api/v1/cycles/{cycle_id}/recap"} <= set(paths)
    operations = [(p, m, op) for p, ops in paths.items() for m, op in ops.items()]
    assert len(operations) >= 30
    for path, method, op in operations:
        for status in ("401", "403", "404", "409", "422"):
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOut"), (path, method, status)
    lists = [
        p
        for p, ops in paths.items()
        if "get" in ops and any(prm["name"] == "limit" for prm in ops["get"].get("parameters", []))
    ]
    assert len(lists) >= 10  # every list is paginated
    assert w.client().get("/api/v1/docs").status_code == 404  # no UI that would need a CDN


def test_errors_have_a_stable_shape(w: Rig) -> None:
    c, h = w.client(), w.bearer("sid")
    cases = [
        (c.get("/api/v1/cycles/424242", headers=h), 404, "not_found"),
        (c.get("/api/v1/cycles/x", headers=h), 422, "invalid_input"),
        (c.get("/api/v1/cycles?limit=1000", headers=h), 422, "invalid_input"),
        (
            c.post(
                f"/api/v1/cycles/{w.world.cycles['execute']}/actions",
                headers=h,
                json={"title": "x"},
            ),
            403,
            "forbidden",
        ),
        (
            c.post("/api/v1/cycles", headers=w.bearer("sam"), json={"title": "no playbook"}),
            422,
            "invalid_input",
        ),
        (c.get("/api/v1/nowhere", headers=h), 404, "not_found"),
        (c.get("/api/v1/me"), 401, "unauthenticated"),
        (c.get("/api/v1/me", headers={"Authorization": "Basic abc"}), 401, "unauthenticated"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == {"error"} and body["error"]["code"] == code
        assert body["error"]["message"] and "\n" not in body["error"]["message"]
    refused = c.post(
        f"/api/v1/cycles/{w.world.cycles['execute']}/advance", headers=w.bearer("sam"), json={}
    )
    assert refused.status_code == 409
    err = refused.json()["error"]
    assert err["code"] == "transition_refused" and err["blockers"]
    assert any("neither done nor dropped" in b for b in err["blockers"])


def test_lists_are_paginated(w: Rig) -> None:
    c, h = w.client(), w.bearer("max")
    first = c.get("/api/v1/cycles?limit=2", headers=h).json()
    assert first["limit"] == 2 and first["offset"] == 0 and len(first["items"]) == 2
    assert first["total"] == 7 and first["next_offset"] == 2
    rest = c.get("/api/v1/cycles?limit=5&offset=2", headers=h).json()
    assert len(rest["items"]) == 5 and rest["next_offset"] is None
    ids = [x["id"] for x in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    events = c.get(f"/api/v1/cycles/{w.world.cycles['execute']}/events?limit=3", headers=h).json()
    assert len(events["items"]) == 3 and events["total"] > 3


def test_action_filters(w: Rig) -> None:
    c, h = w.client(), w.bearer("max")
    base = f"/api/v1/cycles/{w.world.cycles['execute']}/actions"
    sid = w.personas["sid"].id

    def titles(query: str) -> set[str]:
        resp = c.get(base + query, headers=h)
        assert resp.status_code == 200, resp.text
        return {a["title"] for a in resp.json()["items"]}

    every = titles("")
    assert len(every) == 3
    assert titles("?team=marketing") == {"Write the shared MQL definition"}
    assert len(titles(f"?owner={sid}")) == 2
    assert titles("?due=overdue") == {"Agree a 24-hour hand-off SLA"}
    assert titles("?status=in_progress") == {"Agree a 24-hour hand-off SLA"}
    assert c.get(base + "?due=tomorrow", headers=h).status_code == 422


def test_stale_version_is_a_conflict_and_changes_nothing(w: Rig) -> None:
    c = w.client()
    item = w.world.actions["execute_sid"]
    current = c.get(f"/api/v1/actions/{item}", headers=w.bearer("sid")).json()
    ok = c.patch(
        f"/api/v1/actions/{item}",
        headers=w.bearer("lee"),
        json={"priority": "high", "expected_version": current["version"]},
    )
    assert ok.status_code == 200 and ok.json()["version"] == current["version"] + 1
    before = w.snapshot()
    late = c.patch(
        f"/api/v1/actions/{item}",
        headers=w.bearer("sid"),
        json={"status": "done", "expected_version": current["version"]},
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "conflict"
    assert w.snapshot() == before


def test_a_cycle_from_start_to_plan_through_the_api(w: Rig) -> None:
    c = w.client()
    sam, lee = w.bearer("sam"), w.bearer("lee")
    started = c.post(
        "/api/v1/cycles",
        headers=sam,
        json={
            "playbook": "sales-marketing-handoff",
            "title": "Through the API",
            "point_persons": ["mia@acme.test"],
        },
    )
    assert started.status_code == 201, started.text
    cid = started.json()["id"]
    items = c.get(f"/api/v1/cycles/{cid}/checklist?phase=identify&limit=200", headers=sam)
    for it in items.json()["items"]:
        answer = "no" if it["answer_kind"] == "yes_no" else "Agreed"
        r = c.post(f"/api/v1/checklist/{it['id']}/answer", headers=sam, json={"answer": answer})
        assert r.status_code == 200, r.text
    # The "no" answers raised their gaps, recorded with the answers: defer them.
    implied = c.get(f"/api/v1/cycles/{cid}/gaps?limit=200", headers=sam).json()["items"]
    assert implied and {g["source"] for g in implied} == {"checklist"}
    for g in implied:
        r = c.post(f"/api/v1/gaps/{g['id']}/decision", headers=lee, json={"decision": "deferred"})
        assert r.status_code == 200, r.text
    gap = c.post(
        f"/api/v1/cycles/{cid}/gaps",
        headers=lee,
        json={"title": "No SLA", "category": "hand_off", "root_cause": "process"},
    ).json()
    assert c.get(f"/api/v1/cycles/{cid}/readiness", headers=sam).json()["ready"] is False
    decided = c.post(
        f"/api/v1/gaps/{gap['id']}/decision", headers=lee, json={"decision": "accepted"}
    )
    assert decided.status_code == 200 and decided.json()["decided_by"]["email"] == "lee@acme.test"
    moved = c.post(f"/api/v1/cycles/{cid}/advance", headers=sam, json={})
    assert moved.status_code == 200 and moved.json()["phase"] == "plan"
    made = c.post(
        f"/api/v1/cycles/{cid}/actions",
        headers=lee,
        json={"title": "Agree the SLA", "gap_id": gap["id"], "owner": "sid@acme.test"},
    )
    assert made.status_code == 201 and made.json()["owner"]["email"] == "sid@acme.test"
    work = c.get("/api/v1/me/work", headers=w.bearer("sid")).json()
    assert "Agree the SLA" in {a["item"]["title"] for a in work["actions"]["items"]}
    timeline = c.get(f"/api/v1/cycles/{cid}/events?limit=200", headers=sam).json()["items"]
    verbs = {e["verb"] for e in timeline}
    assert {"cycle.started", "gap.decided", "cycle.advanced", "action.created"} <= verbs
