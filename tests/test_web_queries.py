"""No N+1: the number of SQL statements a page or an API read runs does not grow with the number
of rows it shows. Each is counted on the demo world, then again after adding cycles, action
items, check-ins and gaps; the counts must be the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event

from aligncycle.web import seed
from models import phases
from models.base import utcnow
from models.funnel.tables import FunnelImport, ImportJob
from models.schemas import ActionItemCreate, CheckInCreate, GapCreate, GapDecide
from models.services import actions, cycles, gaps
from models.services.common import person_by_email
from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("queries")) as r:
        yield r


def _reads(r: Rig) -> dict[str, Callable[[], object]]:
    ex, rc = r.world.cycles["execute"], r.world.cycles["recap"]
    sid, mx = r.client("sid"), r.client("max")
    return {
        "board": lambda: mx.get("/cycles"),
        "cycle page": lambda: mx.get(f"/cycles/{ex}"),
        "actions page": lambda: mx.get(f"/cycles/{ex}/actions"),
        "gaps page": lambda: mx.get(f"/cycles/{ex}/gaps"),
        "timeline": lambda: mx.get(f"/cycles/{ex}/timeline"),
        "my work": lambda: sid.get("/my"),
        "import page": lambda: r.client("lee").get("/numbers/import"),
        "numbers page": lambda: mx.get("/numbers"),
        "recap": lambda: mx.get(f"/cycles/{rc}/recap"),
        "api board": lambda: mx.get("/api/v1/cycles", headers=r.bearer("max")),
        "api cycle": lambda: mx.get(f"/api/v1/cycles/{ex}", headers=r.bearer("max")),
        "api actions": lambda: mx.get(f"/api/v1/cycles/{ex}/actions", headers=r.bearer("max")),
        "api checklist": lambda: mx.get(f"/api/v1/cycles/{ex}/checklist", headers=r.bearer("max")),
        "api gaps": lambda: mx.get(f"/api/v1/cycles/{ex}/gaps", headers=r.bearer("max")),
        "api events": lambda: mx.get(f"/api/v1/cycles/{ex}/events", headers=r.bearer("max")),
        "api my work": lambda: sid.get("/api/v1/me/work", headers=r.bearer("sid")),
        "api inbox": lambda: mx.get("/api/v1/me/inbox", headers=r.bearer("max")),
        "api recap": lambda: mx.get(f"/api/v1/cycles/{rc}/recap", headers=r.bearer("max")),
    }


def count_statements(r: Rig) -> dict[str, tuple[int, int]]:
    """(statements, size of the answer) of every read."""
    out = {}
    for name, call in _reads(r).items():
        call()  # warm up (templates compile, caches fill)
        seen: list[str] = []

        def listener(conn, cursor, statement, *args, seen=seen) -> None:  # noqa: ANN001
            seen.append(statement)

        event.listen(r.conn, "before_cursor_execute", listener)
        try:
            resp = call()
        finally:
            event.remove(r.conn, "before_cursor_execute", listener)
        assert resp.status_code == 200, (name, resp.text[:300])
        out[name] = (len(seen), len(resp.content))
    return out


def grow(r: Rig, extra_actions: int = 12, extra_cycles: int = 3) -> None:
    """More of everything the reads show: action items (with check-ins) for Sid in the
    execute cycle, gaps, and cycles on the board."""
    today = utcnow().date()
    with r.store.unit_of_work() as s:
        lee, sid = person_by_email(s, "lee@acme.test"), person_by_email(s, "sid@acme.test")
        cycle = cycles.get_cycle(s, r.world.cycles["execute"])
        for i in range(extra_actions):
            item, _ = actions.add_action(
                s,
                cycle,
                ActionItemCreate(
                    title=f"Extra item {i}",
                    owner="sid@acme.test",
                    counterpart="meg@acme.test",
                    due_date=today + timedelta(days=i % 5),
                ),
                lee,
            )
            actions.add_checkin(s, item, CheckInCreate(note=f"note {i}", progress=i), sid)
        plan = cycles.get_cycle(s, r.world.cycles["plan"])
        for i in range(4):
            gap, _ = gaps.add_gap(
                s,
                plan,
                GapCreate(title=f"Extra gap {i}", category="other", root_cause="process"),
                lee,
            )
            phases.decide_gap(s, gap, GapDecide(decision="deferred"), lee)
        for i in range(extra_cycles):
            seed.start(s, f"Extra cycle {i}", today)
        # imports into the numbers, some uploaded (one by the other team), and uploads waiting
        lou = person_by_email(s, "lou@acme.test")
        for i in range(4):
            log = FunnelImport(
                source="hubspot", mapping="hubspot", files=[f"extra-{i}.csv"], rows_read=i
            )
            s.add(log)
            s.flush()
            by = lee if i % 2 else lou
            log.imported_by_id = by.id
            if i < 2:
                s.add(ImportJob(created_by_id=by.id, state="imported", funnel_import_id=log.id))
        for i in range(3):
            files = [{"name": f"waiting-{i}.csv", "size": 10}]
            s.add(ImportJob(created_by_id=lee.id, state="previewed", files=files))


def test_statement_counts_do_not_grow_with_the_rows_shown(world: Rig) -> None:
    with world.isolated():
        small = count_statements(world)
        grow(world)
        large = count_statements(world)
    grew = [name for name in small if large[name][1] > small[name][1]]
    assert {"board", "actions page", "my work", "api actions", "api my work"} <= set(grew)
    assert "import page" in grew
    # The timeline looks up the names its entries mention, one statement per kind of thing
    # named (gaps, items, questions, people, teams): at most five, whatever the rows, and fewer
    # when the newest entries name fewer kinds. So a page may need fewer statements, never more.
    differ = {n: (small[n][0], large[n][0]) for n in small if large[n][0] > small[n][0]}
    assert differ == {}, f"statements per request grew with the data: {differ}"
    # 23, one more on every page for the menu's count of what waits in My work, one more where
    # the person's team has a cycle in Identify or Plan (its own answers and votes still to
    # give: each cycle's playbook says whether it asks), and one on the recap page for the
    # report the recap flow kept in the store
    assert max(n for n, _ in large.values()) <= 26, str(
        sorted((c, n) for n, (c, _) in large.items())[-4:]
    )
    # A cycle's counts read its items and its gaps once each; the actions page reads the
    # people its items name once (not joined to each item), no count of an unfiltered list
    # (the cycle's count is that number) and a summary of each item's check-ins.
    # The import page: the imports into the numbers (a count and a page, each with its
    # importer and upload joined), the uploads waiting (with their uploader joined), and the
    # sources' currencies (one statement, and one seek per source with amounts and one more).
    most = {
        "cycle page": 20,
        "actions page": 19,
        "timeline": 17,
        "gaps page": 12,
        "import page": 10,
    }
    over = {n: large[n][0] for n, limit in most.items() if large[n][0] > limit}
    assert over == {}, f"more statements than {most}: {over}"


def test_a_long_list_of_items_is_paged_and_each_page_keeps_its_place(world: Rig) -> None:
    """Every item of a cycle is reached through the pages, once; an item's forms on page 2
    return to page 2, not to the first page, where the item is not."""
    import re

    ex = world.world.cycles["execute"]
    with world.isolated():
        grow(world, extra_actions=30, extra_cycles=0)
        mx = world.client("max")
        first = mx.get(f"/cycles/{ex}/actions").text
        total = int(re.search(r"Page 1 of \d+ · (\d+) in all", first).group(1))
        seen: list[str] = []
        page, text = 1, first
        while True:
            ids = re.findall(r'<div class="item[^"]*" id="action-(\d+)">', text)
            assert 0 < len(ids) <= 25
            seen += ids
            if page > 1:
                assert f"next=/cycles/{ex}/actions%3Fpage%3D{page}" in text
            if f"page={page + 1}" not in text:
                break
            page += 1
            text = mx.get(f"/cycles/{ex}/actions?page={page}").text
        assert page >= 2 and len(seen) == len(set(seen)) == total
