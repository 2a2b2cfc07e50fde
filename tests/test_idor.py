"""No one sees or changes an object of a team they do not belong to, through any id anywhere.

A cycle of two other teams (support and product) with a gap, a checklist item, an action item,
a retrospective and a token of its own person stands beside the web tests' world. Every route
of the web app and the API that takes an id (the permission matrix's lines) is called by Sam,
a sales point person, once with the ids of that other cycle's objects and once with ids that
do not exist: the two answers must be the same (status and text, up to the id itself), and a
refused write changes nothing. Then the ids a request carries in its body: a follow-up's
previous cycle and an action item's gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from models.accounts import ApiToken
from models.enums import AnswerKind, GapCategory, GapSource, Phase, Role, RootCause, Severity
from models.services import accounts
from models.tables import (
    ActionItem,
    ChecklistItem,
    Cycle,
    CycleTeam,
    Gap,
    Person,
    Playbook,
    Retrospective,
    Team,
)
from tests.test_web_permissions import CASES, Case
from tests.test_web_support import Rig, rig

MISSING = 999_999
ATTACKER = "sam"


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("idor")) as r:
        yield r


@dataclass
class Foreign:
    ids: dict[str, int]  # path parameter -> an id of the other teams' cycle's objects


def other_teams_cycle(r: Rig) -> Foreign:
    """A cycle of support and product, in Recap, with one of each object (inside the test's
    savepoint: rolled back afterwards)."""
    with r.store.unit_of_work() as s:
        return _build(s)


def _build(s: Any) -> Foreign:
    support = s.scalar(select(Team).where(Team.key == "support"))
    # Ids far from the world's own, so they can be told apart in a page's text.
    product = Team(id=700_100, key="product", name="Product")
    s.add(product)
    s.flush()
    pat = Person(
        id=700_101, name="Pat Support", email="pat@acme.test", team=support, role=Role.POINT_PERSON
    )
    pru = Person(
        id=700_102, name="Pru Product", email="pru@acme.test", team=product, role=Role.POINT_PERSON
    )
    s.add_all([pat, pru])
    s.flush()
    today = date.today()
    cycle = Cycle(
        id=700_001,
        playbook=s.scalars(select(Playbook)).first(),
        title="Support and product",
        period_start=today - timedelta(days=40),
        period_end=today - timedelta(days=1),
        phase=Phase.RECAP,
        created_by_id=pat.id,
    )
    cycle.teams = [
        CycleTeam(team=support, point_person_id=pat.id),
        CycleTeam(team=product, point_person_id=pru.id),
    ]
    s.add(cycle)
    s.flush()
    gap = Gap(
        id=700_002,
        cycle_id=cycle.id,
        key="person:1",
        title="Tickets reach product late",
        category=GapCategory.HAND_OFF,
        root_cause=RootCause.PROCESS,
        severity=Severity.HIGH,
        source=GapSource.PERSON,
    )
    item = ChecklistItem(
        id=700_003,
        cycle_id=cycle.id,
        phase=Phase.RECAP,
        key="secret_question",
        position=1,
        text="What do support and product keep to themselves?",
        answer_kind=AnswerKind.TEXT,
        owner_role=Role.POINT_PERSON,
    )
    s.add_all([gap, item])
    s.flush()
    action = ActionItem(
        id=700_004, cycle_id=cycle.id, gaps=[gap], title="Private follow-up", owner_id=pat.id
    )
    s.add_all([action, Retrospective(cycle_id=cycle.id, summary="Only for support")])
    _, token = accounts.create_token(s, pat, "pat's")
    s.flush()
    s.execute(update(ApiToken).where(ApiToken.id == token.id).values(id=700_005))
    s.expire_all()
    return Foreign(
        {
            "cycle_id": cycle.id,
            "gap_id": gap.id,
            "item_id": item.id,
            "action_id": action.id,
            "token_id": 700_005,
            "team": "support",
            "kind": "update",  # an item's form fetched on opening (/actions/{id}/form/{kind})
            "which": "people",  # an item's check-ins fetched on opening (…/history/{which})
        }
    )


def _fill(route: str, ids: dict[str, Any]) -> str:
    return re.sub(r"{(\w+)}", lambda m: str(ids[m.group(1)]), route)


def _call(r: Rig, case: Case, url: str) -> Any:
    client = r.client(ATTACKER)
    data = case.body(r) if case.body else None
    if case.api:
        return client.request(case.method, url, headers=r.bearer(ATTACKER), json=data)
    if case.method == "GET":
        return client.get(url)
    return client.post(url, data={**(data or {}), "csrf": r.personas[ATTACKER].csrf})


def _same(a: Any, b: Any, foreign: dict[str, Any]) -> str | None:
    """None when two answers are the same up to the ids in them, else what differs."""
    text = a.text
    for value in foreign.values():
        if isinstance(value, int):
            text = re.sub(rf"\b{value}\b", str(MISSING), text)
    if a.status_code != b.status_code:
        return f"status {a.status_code} for another team's ids, {b.status_code} for missing ones"
    if text != b.text:
        return f"another team's: {text[:200]!r}; missing: {b.text[:200]!r}"
    return None


ID_CASES = [
    c for c in CASES if re.search(r"{(cycle_id|gap_id|item_id|action_id|token_id)}", c.route)
]


def test_the_matrix_has_every_kind_of_id() -> None:
    kinds = {k for c in ID_CASES for k in re.findall(r"{(\w+)}", c.route)}
    assert {"cycle_id", "gap_id", "item_id", "action_id", "token_id"} <= kinds
    assert len(ID_CASES) >= 30


@pytest.mark.parametrize("case", ID_CASES, ids=str)
def test_another_teams_ids_answer_like_missing_ones(world: Rig, case: Case) -> None:
    with world.isolated():
        foreign = other_teams_cycle(world).ids
        missing = {k: (MISSING if isinstance(v, int) else v) for k, v in foreign.items()}
        before = world.snapshot()
        theirs = _call(world, case, _fill(case.route, foreign))
        after_theirs = world.snapshot()
        absent = _call(world, case, _fill(case.route, missing))
    assert theirs.status_code in (404, 422), theirs.text[:300]
    assert (problem := _same(theirs, absent, foreign)) is None, problem
    assert after_theirs == before, "a refused request changed the store"


def test_a_follow_up_of_another_teams_cycle_is_refused_like_a_missing_one(world: Rig) -> None:
    """The blocker: starting a cycle "from" another team pair's cycle copied its open items."""
    with world.isolated():
        foreign = other_teams_cycle(world).ids
        before = world.snapshot()
        answers = []
        for previous in (foreign["cycle_id"], MISSING):
            body = {
                "playbook": "sales-marketing-handoff",
                "title": "Copy",
                "previous_cycle_id": previous,
            }
            api = world.client(ATTACKER).post(
                "/api/v1/cycles", json=body, headers=world.bearer(ATTACKER)
            )
            page = world.client(ATTACKER).post(
                "/cycles/new",
                data={**body, "csrf": world.personas[ATTACKER].csrf},
            )
            answers.append((api, page))
        assert world.snapshot() == before
    (api_theirs, page_theirs), (api_missing, page_missing) = answers
    assert api_theirs.status_code == 404
    assert api_theirs.json()["error"]["message"] == f"no cycle with id {foreign['cycle_id']}"
    assert _same(api_theirs, api_missing, foreign) is None
    assert page_theirs.status_code == 404
    assert _same(page_theirs, page_missing, foreign) is None


def test_an_action_item_for_another_teams_gap_is_refused_like_a_missing_one(world: Rig) -> None:
    """Was an existence oracle: "gap 10 belongs to cycle 6, not 4"."""
    cycle = world.world.cycles["execute"]
    with world.isolated():
        foreign = other_teams_cycle(world).ids
        before = world.snapshot()
        answers = []
        for gap_id in (foreign["gap_id"], MISSING):
            body = {"title": "Borrowed", "gap_id": gap_id}
            answers.append(
                world.client("lee").post(
                    f"/api/v1/cycles/{cycle}/actions", json=body, headers=world.bearer("lee")
                )
            )
        assert world.snapshot() == before
    theirs, missing = answers
    assert theirs.status_code == 422
    assert theirs.json()["error"]["message"] == "that gap is not one of this cycle's"
    assert _same(theirs, missing, foreign) is None


def test_the_other_teams_objects_are_really_there(world: Rig) -> None:
    """The checks above compare against objects that exist: their own point person sees them."""
    with world.isolated():
        foreign = other_teams_cycle(world).ids
        with world.store.unit_of_work() as s:
            pat = s.scalar(select(Person).where(Person.email == "pat@acme.test"))
            raw, _ = accounts.create_token(s, pat, "check")
        got = world.client().get(
            f"/api/v1/cycles/{foreign['cycle_id']}", headers={"Authorization": f"Bearer {raw}"}
        )
        assert got.status_code == 200 and got.json()["cycle"]["title"] == "Support and product"
        with world.store.unit_of_work() as s:
            assert s.get(ApiToken, foreign["token_id"]) is not None
