"""My work as everyone's inbox, "Next step" that links each blocker to its fix, pages that
stay true after an in-place save, automatic check-ins kept apart (conflicts resolved in place:
``tests/test_web_conflicts.py``).

The browser journeys of the same are in ``tests/test_inbox_browser.py``."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import select, text, update

from aligncycle.web import seed
from models.enums import ActionStatus, Phase
from models.phases.execute import execute_pass
from models.rules import CycleFacts, gate_blockers, gate_blockers_by_kind
from models.services import cycles, inbox
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, ChecklistItem, Cycle, Gap, Person
from tests.conftest import PG_URL
from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("inbox")) as r:
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


def words(page: str) -> str:
    """What a person reads on the page (no tags, scripts or hidden inputs)."""
    body = page[page.index("<main") :] if "<main" in page else page
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", html.unescape(body))


def section(page: str, key: str) -> str:
    m = re.search(rf'<section class="card inbox-section" id="inbox-{key}".*?</section>', page, re.S)
    return words(m.group(0)) if m else ""


def menu_count(page: str) -> int:
    m = re.search(r'id="nav-my-count"[^>]*><span aria-hidden="true">(\d+)</span>', page)
    assert m, "the menu has no count"
    return int(m.group(1))


RAW = re.compile(r"\b[a-z]+_[a-z_]+\b|\(s\)|execute pass|automatic check-in:")


def assert_plain(page: str) -> None:
    found = RAW.findall(words(page))
    assert not found, f"raw keys on the page: {found}"


def post(r: Rig, who: str, url: str, **data: str):  # noqa: ANN201
    return r.client(who).post(url, data={"csrf": r.personas[who].csrf, **data})


# --- each role's inbox ------------------------------------------------------------------------


def test_each_role_sees_what_waits_for_them(w: Rig) -> None:
    lee = w.client("lee").get("/my").text
    assert "Scores ignore product usage" in section(lee, "gaps")  # a gap to decide
    gap = w.world.gaps["identify"]
    assert f'href="/cycles/{w.world.cycles["identify"]}/gaps#gap-{gap}"' in lee
    assert "“Publish one deck library” has no owner yet" in section(lee, "assign")
    assert f"#action-{w.world.actions['plan_unassigned']}" in lee

    manager = w.client("max").get("/my").text
    recaps = section(manager, "recaps")
    assert "Q2 hand-off alignment" in recaps and "waits for your sign-off" in recaps
    assert f'href="/cycles/{w.world.cycles["recap"]}/recap"' in manager

    member = w.client("meg").get("/my").text
    assert "Survey open" in section(member, "surveys")  # not answered yet
    assert "Q2 hand-off alignment" not in section(member, "surveys")  # she answered that one
    assert section(member, "gaps") == "" and section(member, "assign") == ""  # not hers to do
    owned = words(member)
    assert "Overdue Agree a 24-hour hand-off SLA" in owned  # as the counterpart
    assert "Due this week Write the shared MQL definition" in owned

    point = w.client("sam").get("/my").text
    assert "Is the hand-off process written down" in section(point, "questions")
    assert "No retrospective is recorded yet" in section(point, "recaps")

    nobody = w.client("ola").get("/my").text  # a lead of a team in no cycle
    assert "Nothing is waiting for you" in nobody and menu_count(nobody) == 0
    for page in (lee, manager, member, point, nobody):
        assert_plain(page)


def test_the_menu_count_and_the_api_say_the_same_as_the_page(w: Rig) -> None:
    for who in ("lee", "max", "meg", "sam", "sid"):
        page = w.client(who).get("/cycles").text
        api = w.client(who).get("/api/v1/me/inbox", headers=w.bearer(who)).json()
        with w.store.unit_of_work() as s:
            box = inbox.inbox(s, person_by_email(s, w.personas[who].email))
        assert menu_count(page) == api["waiting"] == box.count > 0
        totals = {sec["key"]: sec["total"] for sec in api["sections"]}
        assert all(totals[k] == box.totals[k] for k in totals)
    lee = w.client("lee").get("/api/v1/me/inbox", headers=w.bearer("lee")).json()
    gaps = next(sec for sec in lee["sections"] if sec["key"] == "gaps")
    assert gaps["entries"][0]["url"].endswith(f"/gaps#gap-{w.world.gaps['identify']}")


def test_nothing_of_another_team_pair(w: Rig) -> None:
    """Lee moves to the support team (in no cycle): the gaps and items of the sales and
    marketing cycles leave his inbox, though as a lead he could decide them there."""
    with w.store.unit_of_work() as s:
        support = s.scalar(text("SELECT id FROM teams WHERE key = 'support'"))
        s.execute(update(Person).where(Person.email == "lee@acme.test").values(team_id=support))
    page = w.client("lee").get("/my").text
    assert "Nothing is waiting for you" in page and menu_count(page) == 0
    api = w.client("lee").get("/api/v1/me/inbox", headers=w.bearer("lee")).json()
    assert api["waiting"] == 0 and all(not sec["entries"] for sec in api["sections"])


@pytest.mark.skipif(bool(PG_URL), reason="EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans differ")
def test_my_work_reads_open_work_through_the_partial_indexes(w: Rig) -> None:
    with w.store.unit_of_work() as s:
        lee = person_by_email(s, "lee@acme.test")
        plans = {}
        for name, stmt in {
            "owned": select(ActionItem.id).where(*inbox.owned_where(lee)),
            "questions": inbox.questions_stmt(lee),
            "gaps": inbox.gaps_stmt(lee),
        }.items():
            sql = str(stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
            plans[name] = " | ".join(r[-1] for r in s.execute(text("EXPLAIN QUERY PLAN " + sql)))
    # per open cycle: the unfinished items left in closed cycles are never read
    assert (
        "USING INDEX ix_action_items_open_owner_cycle (owner_id=? AND cycle_id=?)"
        in (plans["owned"])
    )
    assert (
        "USING INDEX ix_action_items_open_counterpart_cycle (counterpart_id=? AND cycle_id=?)"
        in plans["owned"]
    )
    assert "USING COVERING INDEX ix_cycles_phase (phase=?)" in plans["owned"]
    assert (
        "USING INDEX ix_checklist_items_open_owner_cycle (owner_id=? AND cycle_id=?)"
        in (plans["questions"])
    )
    assert (
        "USING INDEX ix_checklist_items_open_role_cycle (owner_role=? AND owner_team_id=? AND "
        "cycle_id=?)" in plans["questions"]
    )
    assert "ix_gaps_open" in plans["gaps"]


# --- Next step ----------------------------------------------------------------------------


def test_each_blocker_links_to_the_exact_place_to_fix_it(w: Rig) -> None:
    cid, gap = w.world.cycles["identify"], w.world.gaps["identify"]
    page = w.client("sam").get(f"/cycles/{cid}").text
    step = re.search(r'id="next-step".*?</section>', page, re.S).group(0)
    # the gap's name in the blocker's sentence is the link to it
    link = re.search(
        rf'<a href="(/cycles/{cid}/gaps#gap-{gap})" aria-label="Decide “([^”]+)”">', step
    )
    assert link and link.group(2) == "Scores ignore product usage"
    assert "1 gap not decided: <a " in step
    gaps_page = w.client("sam").get(link.group(1).split("#")[0]).text
    target = re.search(rf'<div class="item" id="gap-{gap}">.*?</form>', gaps_page, re.S)
    assert target and f'action="/gaps/{gap}/decide"' in target.group(0)  # the fix is there
    with w.store.unit_of_work() as s:
        first = s.scalars(
            select(ChecklistItem.id)
            .where(
                ChecklistItem.cycle_id == cid,
                ChecklistItem.phase == Phase.IDENTIFY,
                ChecklistItem.required.is_(True),
            )
            .order_by(ChecklistItem.position)
        ).first()
    assert f'href="/cycles/{cid}#item-{first}"' in step and f'id="item-{first}"' in page

    plan, planned_gap = w.world.cycles["plan"], w.world.gaps["plan"]
    page = w.client("lee").get(f"/cycles/{plan}").text
    href = f"/cycles/{plan}/actions?gap={planned_gap}#new-action"
    assert f'<a href="{html.escape(href)}" aria-label="Plan an action item for' in page
    form = w.client("lee").get(href.split("#")[0]).text
    assert re.search(rf'<option value="{planned_gap}" selected>', form)  # the gap is chosen
    assert_plain(page)


def _raising_question(s, cycle: Cycle) -> tuple[ChecklistItem, str]:  # noqa: ANN001
    spec = cycles.spec(cycle)
    for item in s.scalars(
        select(ChecklistItem)
        .where(ChecklistItem.cycle_id == cycle.id, ChecklistItem.answer.is_(None))
        .order_by(ChecklistItem.position)
    ).unique():
        q = spec.question(item.phase, item.key)
        if item.phase is Phase.IDENTIFY and q is not None and q.gap is not None:
            return item, q.gap.when.value
    raise AssertionError("no question of the playbook raises a gap")


def test_an_in_place_answer_updates_next_step_the_gaps_count_and_says_what_it_caused(
    w: Rig,
) -> None:
    cid = w.world.cycles["identify"]
    with w.store.unit_of_work() as s:
        item, raising = _raising_question(s, s.get(Cycle, cid))
        item_id, version, title = item.id, item.version, item.text
    before = w.client("sam").get(f"/cycles/{cid}").text
    gaps_before = int(re.search(r"Gaps<span class=\"count\">(\d+)", before).group(1))
    answered = re.search(r'id="count-identify">· (\d+) of', before).group(1)
    resp = w.client("sam").post(
        f"/checklist/{item_id}/answer",
        data={
            "csrf": w.personas["sam"].csrf,
            "answer": raising,
            "version": str(version),
            "next": f"/cycles/{cid}",
        },
        headers={"HX-Request": "true"},
        follow_redirects=True,
    )
    page = resp.text
    assert resp.status_code == 200
    assert "This answer raised a gap:" in words(page)
    assert int(re.search(r"Gaps<span class=\"count\">(\d+)", page).group(1)) == gaps_before + 1
    assert re.search(r'id="count-identify">· (\d+) of', page).group(1) == str(int(answered) + 1)
    with w.store.unit_of_work() as s:
        new_gap = s.scalars(select(Gap).where(Gap.cycle_id == cid).order_by(Gap.id.desc())).first()
    step = re.search(r'id="next-step".*?</section>', page, re.S).group(0)
    assert f"/gaps#gap-{new_gap.id}" in step  # Next step names the new gap, with its link
    assert title[:20] not in words(step)  # and no longer the question just answered
    item_html = re.search(
        rf'id="item-{item_id}".*?(?=<div class="item[ "]|</section>)', page, re.S
    ).group(0)
    assert "raises a gap" in item_html and "badge green" not in item_html  # coloured by meaning
    # the page marks what htmx refreshes out of band: Next step, the tabs, the menu's count
    assert 'hx-select-oob="#messages,#next-step,#glance,#cycle-tabs,#nav-my-count' in page


def test_the_last_answer_says_the_next_phase_can_start(w: Rig) -> None:
    cid = w.extra["ready"]  # every Identify question answered, calmly
    with w.store.unit_of_work() as s:
        sam = person_by_email(s, "sam@acme.test")
        item = s.scalars(
            select(ChecklistItem)
            .where(
                ChecklistItem.cycle_id == cid,
                ChecklistItem.phase == Phase.IDENTIFY,
                ChecklistItem.required.is_(True),
            )
            .order_by(ChecklistItem.position)
        ).first()
        answer, version = item.answer, item.version
        assert cycles.readiness(s, s.get(Cycle, cid)).ready
        item.answer = None  # one answer missing: the gate is closed
        s.flush()
        assert not cycles.readiness(s, s.get(Cycle, cid)).ready
        item_id, version = item.id, item.version
        assert sam
    resp = post(
        w,
        "sam",
        f"/checklist/{item_id}/answer",
        answer=answer,
        version=str(version),
        next=f"/cycles/{cid}",
    )
    assert resp.status_code == 303
    flash = w.client("sam")
    flash.cookies.set("aligncycle_flash", resp.cookies.get("aligncycle_flash", ""))
    assert (
        "Everything Identify needs is done: Plan can now start." in flash.get(f"/cycles/{cid}").text
    )


# --- one-click actions --------------------------------------------------------------------


def test_one_click_yes_no_answer_and_mark_done_from_my_work(w: Rig) -> None:
    page = w.client("sam").get("/my").text
    m = re.search(
        r'<form method="post" action="/checklist/(\d+)/answer" class="quick".*?'
        r'name="version" value="(\d+)"',
        page,
        re.S,
    )
    assert m, "no one-click answer on My work"
    item_id, version = m.groups()
    resp = post(w, "sam", f"/checklist/{item_id}/answer", answer="no", version=version, next="/my")
    assert resp.status_code == 303 and resp.headers["location"] == f"/my#item-{item_id}"
    with w.store.unit_of_work() as s:
        assert s.get(ChecklistItem, int(item_id)).answer == "no"
    assert f'id="inbox-questions-{item_id}"' not in w.client("sam").get("/my").text

    sid = w.client("sid").get("/my").text
    target = w.world.actions["execute_sid"]
    m = re.search(
        rf'<form method="post" action="/actions/{target}/update" class="quick".*?'
        r'name="version" value="(\d+)".*?name="confidence" value="(\w+)"',
        sid,
        re.S,
    )
    assert m and "Mark done" in sid
    resp = post(
        w,
        "sid",
        f"/actions/{target}/update",
        version=m.group(1),
        status="done",
        confidence=m.group(2),
        next="/my",
    )
    assert resp.status_code == 303
    with w.store.unit_of_work() as s:
        item = s.get(ActionItem, target)
        # the same call as the form: with a counterpart to sign off, it waits for her
        assert item.status.value in ("awaiting_signoff", "done")
        assert s.scalars(select(CheckIn).where(CheckIn.action_item_id == target)).all()


# --- automatic check-ins ------------------------------------------------------------------


def test_automatic_check_ins_are_kept_apart(w: Rig) -> None:
    cid, item_id = w.world.cycles["execute"], w.world.actions["execute_sid"]
    with w.store.unit_of_work() as s:
        execute_pass(s, s.get(Cycle, cid), date.today())
        auto = s.scalars(
            select(CheckIn).where(CheckIn.action_item_id == item_id, CheckIn.author_id.is_(None))
        ).all()
        assert auto and auto[0].note.startswith("automatic check-in: ")
    page = w.client("lee").get(f"/cycles/{cid}/actions").text
    latest = words(re.search(r'id="latest-checkins".*?</div>', page, re.S).group(0) + "")
    assert "Sid Member" in latest  # people's check-ins
    assert "overdue by" not in latest and "due in" not in latest  # no automatic one
    block = re.search(
        rf'id="action-{item_id}".*?<details class="box automatic"[^>]*>.*?</details>', page, re.S
    ).group(0)
    shown = words(block)
    assert "Last check-in" in shown and "by Sid Member" in shown and "Waiting on CRM" in shown
    assert "1 automatic check-in" in shown  # apart, counted; the list comes when it is opened
    assert_plain(page)
    # opened (htmx), and on the item's own page where the box's link leads without JavaScript
    opened = w.client("lee").get(f"/actions/{item_id}/history/automatic")
    assert opened.status_code == 200 and "overdue by 3 days" in words(opened.text)
    assert "Sid Member" not in words(opened.text)  # the automatic ones only
    assert f'href="/actions/{item_id}?next=' in block and f"#automatic-{item_id}" in block
    alone = w.client("lee").get(f"/actions/{item_id}").text
    alone_box = re.search(
        rf'<details class="box automatic" id="automatic-{item_id}" open>.*?</details>', alone, re.S
    ).group(0)
    assert "overdue by 3 days" in words(alone_box)  # in words, not the pass's note
    assert_plain(opened.text)
    assert_plain(alone)
    mine = words(w.client("sid").get("/my").text)
    assert (
        "Last check-in" in mine and "execute pass" not in mine and "automatic check-in:" not in mine
    )
    api = w.client("sid").get(f"/api/v1/actions/{item_id}/checkins", headers=w.bearer("sid"))
    kinds = {(c["author"] or {}).get("name"): c["automatic"] for c in api.json()["items"]}
    assert kinds == {"Sid Member": False, None: True}  # the API tells them apart too


def test_check_ins_due_count_people_not_the_automatic_pass(w: Rig) -> None:
    """Sid checked in on his item today: nothing due. A week later (as the store sees it: his
    check-in and the move into Execute dated 8 days back) it is due, and an automatic check-in
    written since does not count as checking in. A follow-up date that has come makes it due
    at once."""
    cid, item_id = w.world.cycles["execute"], w.world.actions["execute_sid"]
    today = date.today()
    with w.store.unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test")
        assert inbox.checkins_due(s, sid, today) == []
        back = today - timedelta(days=inbox.CHECKIN_EVERY_DAYS + 1)
        s.execute(update(CheckIn).where(CheckIn.action_item_id == item_id).values(on_date=back))
        s.execute(
            update(Cycle)
            .where(Cycle.id == cid)
            .values(phase_changed_at=datetime.combine(back, datetime.min.time()))
        )
        s.flush()
        s.expire_all()
        execute_pass(s, s.get(Cycle, cid), today)  # automatic check-ins, dated today
        due = inbox.checkins_due(s, person_by_email(s, "sid@acme.test"), today)
        assert [(i.id, last) for i, _, last in due][:1] == [(item_id, back)]
        meg_item = w.world.actions["execute_meg"]
        s.execute(update(ActionItem).where(ActionItem.id == meg_item).values(follow_up_date=today))
    page = w.client("sid").get("/my").text
    checkins = section(page, "checkins")
    assert "Check in on “Agree a 24-hour hand-off SLA”" in checkins
    assert f"the last check-in by a person was on {back.strftime('%-d %b %Y')}" in checkins
    assert f"/cycles/{cid}/actions?owner={w.personas['sid'].id}#action-{item_id}" in page
    meg = section(w.client("meg").get("/my").text, "checkins")
    assert f"its follow-up date was {today.strftime('%-d %b %Y')}" in meg
    assert_plain(page)


@pytest.mark.parametrize("phase", [p for p in Phase])
def test_blockers_by_kind_are_the_gate_s_own_words_in_its_order(phase: Phase) -> None:
    """Next step links each blocker by its kind; the sentences stay the gate's (no drift)."""
    facts = CycleFacts(
        phase=phase,
        period_end=date.today() + timedelta(days=3),
        point_person_ids=frozenset({1}),
        required_unanswered=("“Who owns the hand-off?”",),
        undecided_gaps=("No shared MQL definition", "Slow follow-up"),
        accepted_gaps_without_plan=("Content is missing",),
        teams_without_point_person=("Marketing",),
        unfinished_actions=("Agree the SLA",),
        has_retrospective=phase is Phase.RECAP,
        teams_without_own_answers=("Sales",),
        vote_open=True,
        top_voted_without_actions=("Slow follow-up",),
        amendments_waiting=("“Reps answer within 4 hours” (Mia still has to sign)",),
    )
    by_kind = gate_blockers_by_kind(facts, date.today())
    assert [text for _, text in by_kind] == gate_blockers(facts, date.today())
    kinds = [k for k, _ in by_kind]
    assert len(kinds) == len(set(kinds))  # one sentence per kind
    expected = {
        Phase.IDENTIFY: ["questions", "own_answers", "gaps"],
        Phase.PLAN: ["questions", "gaps", "plan", "vote", "point_persons"],
        Phase.EXECUTE: ["questions", "actions"],
        Phase.RECAP: ["questions", "signoff", "amendments"],
        Phase.CLOSED: ["closed"],
    }
    assert kinds == expected[phase]


def test_a_closed_cycle_offers_to_start_the_next_one(w: Rig) -> None:
    closed = w.world.cycles["closed"]
    page = w.client("sam").get(f"/cycles/{closed}").text
    assert f'<a class="btn" href="/cycles/new?previous={closed}">Start the next cycle</a>' in page
    form = w.client("sam").get(f"/cycles/new?previous={closed}").text
    assert re.search(rf'<option value="{closed}" selected>', form)  # the follow-up of this one
    assert "Start the next cycle" not in w.client("lee").get(f"/cycles/{closed}").text
    with w.store.unit_of_work() as s:  # once started, the page leads to the follow-up instead
        s.execute(
            update(Cycle)
            .where(Cycle.id == w.world.cycles["identify"])
            .values(previous_cycle_id=closed)
        )
    page = w.client("sam").get(f"/cycles/{closed}").text
    assert "Start the next cycle" not in page
    assert (
        f'Its follow-up: <a href="/cycles/{w.world.cycles["identify"]}">Lead scoring review</a>'
        in page
    )


def test_a_closed_cycle_says_what_it_left_unfinished_not_what_is_overdue(w: Rig) -> None:
    """Nothing is due in a closed cycle: its page counts the items it left unfinished, as the
    board says it has none overdue."""
    closed = w.world.cycles["closed"]
    with w.store.unit_of_work() as s:
        items = s.scalars(select(ActionItem).where(ActionItem.cycle_id == closed)).all()
        left = [a for a in items if not a.status.finished]
        assert left  # (the world leaves some)
        for a in left:  # due long ago
            a.due_date = date.today() - timedelta(days=30)
    page = w.client("sam").get(f"/cycles/{closed}").text
    assert (
        f'<div class="stat">{len(left)}</div><div class="muted small">left unfinished</div>' in page
    )
    assert '<div class="muted small">overdue</div>' not in page
    # its items say no "Overdue", the "Overdue" filter finds none of them (page and API), while
    # an open cycle's overdue item is still found
    items_page = w.client("sam").get(f"/cycles/{closed}/actions").text
    assert all(f'id="action-{a.id}"' in items_page for a in left)
    assert "Overdue ·" not in items_page and "overdue-item" not in items_page
    assert "Overdue ·" not in w.client("sam").get(f"/actions/{left[0].id}").text
    filtered = w.client("sam").get(f"/cycles/{closed}/actions?due=overdue").text
    assert not any(f'id="action-{a.id}"' in filtered for a in left)
    api, h = w.client(), w.bearer("max")
    found = api.get(f"/api/v1/cycles/{closed}/actions?due=overdue", headers=h).json()["items"]
    assert found == []
    live = w.world.cycles["execute"]
    found = api.get(f"/api/v1/cycles/{live}/actions?due=overdue", headers=h).json()["items"]
    assert [a["title"] for a in found] == ["Agree a 24-hour hand-off SLA"]


def test_an_items_due_date_says_how_it_was_met_not_that_done_work_is_late(w: Rig) -> None:
    """Beside its due date, done work says whether it was done on time or how late; a dropped
    item says nothing of it, a closed cycle's unfinished item that it was left unfinished, and
    only unfinished work counts the days to or past its date."""
    today = date.today()
    live, closed = w.world.cycles["execute"], w.world.cycles["closed"]

    def due_words(cycle: int, aid: int) -> str:
        """What the item's line says, up to its owner's name."""
        page = w.client("sam").get(f"/cycles/{cycle}/actions").text
        block = page[page.index(f'id="action-{aid}"') :]
        return words(block[: block.index("</div>")])

    def make(item: ActionItem, status: ActionStatus, due: int, done: int | None = None) -> int:
        item.status, item.due_date = status, today + timedelta(days=due)
        at = None if done is None else datetime.combine(today + timedelta(days=done), time(12))
        item.completed_at = at
        return item.id

    with w.store.unit_of_work() as s:
        items = s.scalars(
            select(ActionItem).where(ActionItem.cycle_id == live).order_by(ActionItem.id)
        ).all()
        late = make(items[0], ActionStatus.DONE, -20, done=-17)
        on_time = make(items[1], ActionStatus.DONE, -20, done=-25)
        dropped = make(items[2], ActionStatus.DROPPED, -20)
        left = next(
            a
            for a in s.scalars(select(ActionItem).where(ActionItem.cycle_id == closed))
            if not a.status.finished
        )
        left_id = make(left, left.status, -30)
    assert "(done 3 days late)" in due_words(live, late)
    assert "(done on time)" in due_words(live, on_time)
    assert "late" not in due_words(live, dropped) and "(done" not in due_words(live, dropped)
    assert "(left unfinished)" in due_words(closed, left_id)
    assert "late" not in due_words(closed, left_id)
    with w.store.unit_of_work() as s:
        make(s.get(ActionItem, late), ActionStatus.OPEN, 3)
    assert "(due in 3 days)" in due_words(live, late)


def test_the_last_item_done_says_the_recap_can_start(w: Rig) -> None:
    cid = w.world.cycles["execute"]
    with w.store.unit_of_work() as s:
        cycle = s.get(Cycle, cid)
        seed.answer_phase(s, cycle, person_by_email(s, "sam@acme.test"))
        items = s.scalars(select(ActionItem).where(ActionItem.cycle_id == cid)).all()
        # Sid's item first (PostgreSQL returns rows in no set order): he marks it done
        items = sorted(
            items, key=lambda i: (getattr(i.owner, "email", "") != "sid@acme.test", i.id)
        )
        for item in items[1:]:
            item.status = ActionStatus.DROPPED
        s.flush()
        last = items[0]
        last_id, confidence = last.id, last.confidence.value
        # no counterpart to sign it off: done is done
        s.execute(update(ActionItem).where(ActionItem.id == last_id).values(counterpart_id=None))
        version = s.scalar(select(ActionItem.version).where(ActionItem.id == last_id))
    resp = post(
        w,
        "sid",
        f"/actions/{last_id}/update",
        version=str(version),
        status="done",
        confidence=confidence,
        next="/my",
    )
    assert resp.status_code == 303
    reader = w.client("sid")
    reader.cookies.set("aligncycle_flash", resp.cookies.get("aligncycle_flash", ""))
    assert "Everything Execute needs is done: Recap can now start." in reader.get("/my").text
