"""The main journeys, in a real browser (Debian's Chromium through Playwright) against the app
served by uvicorn on 127.0.0.1: one server and one browser for the whole module.

- a point person starts a cycle and moves it on,
- a lead assigns an action item, and its owner updates it from My work (in place),
- a member answers the survey anonymously,
- a manager opens the board and the recap and sees its charts.

Screenshots of the board and the recap go to ``$ALIGNCYCLE_SCREENSHOTS`` (default: a temporary
folder) for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import func, select

from aligncycle.web import create_app, seed
from aligncycle.web.deps import WebSettings
from models.schemas import ActionItemCreate, CheckInCreate
from models.services import actions, cycles
from models.services.common import person_by_email
from models.tables import CheckIn, Cycle, SurveyResponse
from tests.a11y import LAPTOP, VIEWPORTS, pages_at_each_width, violations
from tests.browser_support import (
    PASSWORD,
    screenshots,
    serve,
    served_store,
    signed_context,
)
from tests.test_web_support import recap_cycle


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with served_store(database_url) as store:
        with store.unit_of_work() as s:
            seed.seed_org(s)
            world = seed.build_world(s)
            survey = recap_cycle(s, "Survey open")
            seed.set_passwords(s, PASSWORD)
            survey_id = survey.id
            failed = _failed_reminder(s, world.cycles["execute"])
        app = create_app(
            store, WebSettings(data_dir=tmp_path_factory.mktemp("site"), secret_key="browser")
        )
        with serve(app) as base:
            yield {
                "base": base,
                "store": store,
                "world": world,
                "survey": survey_id,
                "failed": failed,
                "shots": screenshots(tmp_path_factory),
            }


def _failed_reminder(s, cycle_id: int) -> int:  # noqa: ANN001
    """Two reminders to sam that failed for good (the channel answered 503 three times): one
    is sent again below, the other keeps its button for the pages' axe check."""
    from models.cadence import channels
    from models.cadence.tables import Notification, NotificationKind, NotificationStatus

    channel = channels.add_channel(
        s, person_by_email(s, "max@acme.test"), kind="webhook", person="sam@acme.test",
        url="json://127.0.0.1:9/sam",
    )  # fmt: skip
    rows = [
        Notification(
            key=f"browser:failed-{i}",
            channel_id=channel.id,
            recipient="sam@acme.test",
            kind=NotificationKind.REMINDER,
            cycle_id=cycle_id,
            subject=f"Overdue: “{title}”",
            body="It was due yesterday.",
            status=NotificationStatus.FAILED,
            attempts=3,
            error="the channel answered 503",
        )  # fmt: skip
        for i, title in enumerate(("Call back the webinar leads", "Send the case study"))
    ]
    s.add_all(rows)
    s.flush()
    return rows[0].id


def test_a_point_person_sends_a_failed_message_again(as_, site: dict) -> None:  # noqa: ANN001
    page = as_("sam@acme.test")
    page.get_by_role("link", name="Messages").click()
    row = page.locator("tr").filter(has_text="Call back the webinar leads")
    expect(row).to_contain_text("the channel answered 503")
    row.get_by_role("button", name="Send again").click()
    expect(page.locator(".flash")).to_contain_text(
        "The reminder to sam@acme.test will be sent again with the next delivery"
    )
    expect(row).to_contain_text("To be tried again")
    expect(row.get_by_role("button", name="Send again")).to_have_count(0)
    page.screenshot(path=str(site["shots"] / "messages.png"), full_page=True)


def test_point_person_starts_a_cycle_and_moves_it_on(as_, site: dict) -> None:  # noqa: ANN001
    page = as_("sam@acme.test")
    page.get_by_role("link", name="Cycles").click()
    page.get_by_role("link", name="Start a cycle").first.click()
    page.get_by_label("Playbook", exact=True).select_option("sales-marketing-handoff")
    page.get_by_label("Title", exact=True).fill("Q4 hand-off alignment")
    page.get_by_label("Point person of the other team").select_option("mia@acme.test")
    page.get_by_role("button", name="Start the cycle").click()
    expect(page.locator(".flash")).to_contain_text("started")
    expect(page.locator("h1")).to_have_text("Q4 hand-off alignment")
    expect(page.locator(".stepper li.current")).to_contain_text("Identify")
    cycle_id = int(page.url.rstrip("/").split("/")[-1])
    # the first question, answered on the page (sent in the background, answer shown in place)
    first = page.locator(".item").filter(has=page.locator("form")).first
    first.get_by_label("No", exact=True).check()
    first.get_by_role("button", name="Save answer").click()
    expect(page.locator(".flash")).to_contain_text("Answer saved")
    # the rest as their owners would
    with site["store"].unit_of_work() as s:
        cycle = s.get(Cycle, cycle_id)
        seed.answer_phase(s, cycle, person_by_email(s, "sam@acme.test"))
    page.reload()
    move = page.get_by_role("button", name="Move to Plan")
    expect(move).to_be_enabled()
    move.click()
    expect(page.locator(".flash")).to_contain_text("now in Plan")
    expect(page.locator(".stepper li.current")).to_contain_text("Plan")


def test_lead_assigns_and_owner_updates_from_my_work(as_, site: dict) -> None:  # noqa: ANN001
    plan = site["world"].cycles["plan"]
    item_id = site["world"].actions["plan_unassigned"]
    with site["store"].unit_of_work() as s:
        due = (s.get(Cycle, plan).period_end - timedelta(days=3)).isoformat()
    lead = as_("lee@acme.test")
    lead.goto(f"{site['base']}/cycles/{plan}/actions")
    item = lead.locator(f"#action-{item_id}")
    item.locator("summary", has_text="Assign").click()
    item.locator(f"#as{item_id}-owner").fill("Sid Member")  # picked by name
    item.locator(f"#as{item_id}-due").fill(due)
    item.get_by_role("button", name="Assign").click()
    expect(lead.locator(".flash")).to_contain_text("now Sid Member's")
    expect(lead.locator(f"#action-{item_id}")).to_contain_text("Owner: Sid Member")

    owner = as_("sid@acme.test")
    expect(owner).to_have_url(site["base"] + "/my")
    row = owner.locator(f"#action-{item_id}")
    expect(row).to_contain_text("Publish one deck library")
    row.locator("summary", has_text="Update").click()
    row.get_by_label("Status").select_option("in_progress")
    row.get_by_label("What happened?").fill("Drafted the library index")
    row.get_by_role("button", name="Save").click()
    fresh = owner.locator(f"#action-{item_id}")
    expect(fresh.locator(".badge.in_progress")).to_have_text("In progress")
    expect(owner.locator(".flash")).to_contain_text("saved: In progress")
    expect(owner).to_have_url(site["base"] + "/my")  # updated in place
    with site["store"].unit_of_work() as s:
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id)).all()
    assert "Drafted the library index" in notes


def test_member_answers_the_survey_anonymously(as_, site: dict) -> None:  # noqa: ANN001
    cycle = site["survey"]
    page = as_("meg@acme.test")
    page.goto(f"{site['base']}/cycles/{cycle}/recap")
    form = page.locator("#survey")
    form.get_by_text("4 · Well").click()
    form.get_by_label("Anything to add?").fill("The digest is useful")
    expect(form.get_by_label("Answer anonymously", exact=False)).to_be_checked()
    form.get_by_role("button", name="Send my answer").click()
    expect(page.locator(".flash")).to_contain_text("anonymously")
    expect(page.locator("#survey")).to_contain_text("You have answered")
    with site["store"].unit_of_work() as s:
        rows = s.scalars(select(SurveyResponse).where(SurveyResponse.cycle_id == cycle)).all()
    assert [(r.score, r.respondent_id, r.anonymous) for r in rows] == [(4, None, True)]


def test_manager_sees_the_board_and_the_recap_charts(as_, site: dict) -> None:  # noqa: ANN001
    page = as_("max@acme.test")
    expect(page).to_have_url(site["base"] + "/cycles")
    # every cycle, a manager's board: the world's six, and the one a point person starts when
    # that test ran before on this worker (pytest-xdist spreads a module's tests over workers)
    with site["store"].unit_of_work() as s:
        every = s.scalar(select(func.count()).select_from(Cycle))
    expect(page.locator("tbody tr")).to_have_count(every)
    expect(page.locator("tbody")).to_contain_text("overdue")
    page.screenshot(path=str(site["shots"] / "board.png"), full_page=True)
    recap = site["world"].cycles["recap"]
    page.get_by_role("link", name="Q2 hand-off alignment").click()
    page.get_by_role("link", name="Recap").click()
    expect(page).to_have_url(f"{site['base']}/cycles/{recap}/recap")
    charts = page.locator("svg.chart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 4
    for title in (
        "Action completion",
        "How people feel about the process",
        "Gaps by decision",
        "Trend across the teams' finished cycles",
    ):
        expect(page.get_by_role("heading", name=title)).to_be_visible()
    box = charts.first.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100  # drawn, not collapsed
    expect(page.get_by_role("button", name="Sign off the recap")).to_be_visible()
    page.screenshot(path=str(site["shots"] / "recap.png"), full_page=True)
    with site["store"].unit_of_work() as s:
        assert cycles.get_cycle(s, recap).phase.value == "recap"


def test_the_numbers_page_and_a_target_set_on_an_action(as_, site: dict) -> None:  # noqa: ANN001
    """A lead reads the shared numbers (imported from a HubSpot-shaped export), groups them by
    owner and month, then sets a target on an action item, the KPI's value before the cycle in
    view."""
    with site["store"].unit_of_work() as s:
        seed.import_funnel(s, site["shots"] / "exports")
    lead = as_("lee@acme.test")
    lead.get_by_role("link", name="Numbers").click()
    expect(lead.get_by_role("heading", name="The shared numbers")).to_be_visible()
    card = lead.locator(".kpi").filter(has_text="SLA attainment")
    expect(card.locator(".stat")).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(lead.locator("svg.chart").first).to_be_visible()
    expect(
        lead.get_by_role("heading", name="Leads that waited past the hand-off SLA")
    ).to_be_visible()
    lead.get_by_label("Group by").select_option("owner")
    lead.get_by_label("and by").select_option("month")
    lead.get_by_role("button", name="Show", exact=True).first.click()
    expect(lead.get_by_role("heading", name="By owner and month")).to_be_visible()
    lead.screenshot(path=str(site["shots"] / "numbers.png"), full_page=True)

    execute = site["world"].cycles["execute"]
    item = site["world"].actions["execute_sid"]
    lead.goto(f"{site['base']}/cycles/{execute}/actions")
    box = lead.locator(f"#action-{item}")
    box.locator("summary", has_text="Set a target").click()
    box.get_by_label("Which number should move?").select_option("sla_attainment")
    box.get_by_label("To", exact=True).fill("95%")
    box.get_by_role("button", name="Save the target").click()
    expect(lead.locator(".flash")).to_contain_text("Target saved: SLA attainment to 95.0%.")
    expect(lead.locator(f"#action-{item} .target-line")).to_contain_text("to 95.0%")


PAGES = [
    ("/cycles", "max@acme.test"),
    ("/numbers", "sid@acme.test"),
    ("/numbers?by=owner&then_by=month", "lee@acme.test"),
    ("/numbers/flags", "sid@acme.test"),
    ("/my", "sid@acme.test"),
    ("/account", "sid@acme.test"),
    ("/notifications", "sam@acme.test"),
    ("/cycles/new", "sam@acme.test"),
    ("/cycles/{identify}", "sam@acme.test"),
    ("/cycles/{identify}/gaps", "lee@acme.test"),
    ("/cycles/{execute}/actions", "lee@acme.test"),
    ("/cycles/{execute}/timeline", "sam@acme.test"),
    ("/cycles/{recap}/recap", "max@acme.test"),
    ("/cycles/{recap}/report", "max@acme.test"),
    ("/cycles/{plan}/actions", "lee@acme.test"),
    ("/actions/{item}", "lee@acme.test"),  # one item, every form open (lists fetch them)
    ("/cycles/{closed}/timeline", "sam@acme.test"),
    ("/cycles/{closed}/recap", "sam@acme.test"),
    ("/numbers/import", "lee@acme.test"),
    ("/cycles/999999", "sid@acme.test"),  # an error page, signed in: the menu stays
    ("/numbers/import", "sid@acme.test"),  # not allowed: the same
    ("/notifications", "max@acme.test"),
]


#: Who is signed in for the pages of each axe check (the sign-in page: nobody).
AXE_PEOPLE = [None, *sorted({email for _, email in PAGES})]


@pytest.mark.parametrize("email", AXE_PEOPLE, ids=lambda e: e or "signed out")
def test_every_page_passes_axe_at_a_laptop_and_a_phone_width(
    browser: Browser, site: dict, email: str | None
) -> None:
    """axe-core finds no WCAG 2.1 A/AA or best-practice violation on any page, signed in as
    the person who works there, at 1280 px and at 390 px."""
    paths = ["/login"] if email is None else [p for p, e in PAGES if e == email]
    ids = {**site["world"].cycles, "item": site["world"].actions["execute_sid"]}
    ctx = signed_context(browser, site["base"], email, viewport=LAPTOP, bypass_csp=True)
    try:
        found = pages_at_each_width(ctx, site["base"], [p.format(**ids) for p in paths])
    finally:
        ctx.close()
    assert found == [], f"signed in as {email or 'nobody'}:\n" + "\n".join(found)


#: Pages people open on a phone most, and the cycle list's columns that must stay in view.
PHONE_PAGES = [
    ("/cycles", "max@acme.test"),
    ("/cycles/{recap}/recap", "max@acme.test"),
    ("/cycles/{execute}/actions", "lee@acme.test"),
    ("/cycles/{execute}/timeline", "sam@acme.test"),
    ("/my", "sid@acme.test"),
    ("/numbers", "sid@acme.test"),
    ("/numbers/flags", "sid@acme.test"),
]


def test_on_a_phone_nothing_runs_off_the_screen_and_the_cycle_list_keeps_its_columns(
    browser: Browser, site: dict
) -> None:
    """At 390 px no page is wider than the screen (the recap's charts included), and every row
    of the cycle list shows its Overdue and Risk, named, inside the screen."""
    width = VIEWPORTS["390 px"]["width"]
    wide: list[str] = []
    contexts: dict[str, object] = {}
    try:
        for path, email in PHONE_PAGES:
            if email not in contexts:
                contexts[email] = signed_context(
                    browser, site["base"], email, viewport=VIEWPORTS["390 px"]
                )
            page = contexts[email].new_page()
            url = path.format(**site["world"].cycles, item=site["world"].actions["execute_sid"])
            page.goto(site["base"] + url)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                widest = page.evaluate(
                    """(w) => [...document.querySelectorAll('body *')]
                        .filter(e => e.getBoundingClientRect().right > w + 1)
                        .slice(0, 3).map(e => e.tagName + '.' + e.className)""",
                    width,
                )
                wide.append(f"{url}: {scroll} px wide ({widest})")
            if url == "/cycles":
                for label in ("Overdue", "Risk"):
                    cells = page.locator(f'td[data-label="{label}"]')
                    assert cells.count() >= 5
                    for i in range(cells.count()):
                        box = cells.nth(i).bounding_box()
                        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1
                        expect(cells.nth(i)).to_be_visible()
                    shown = cells.first.evaluate("e => getComputedStyle(e, '::before').content")
                    assert label in shown
            if "/recap" in url:
                charts = page.locator("svg.chart")
                assert charts.count() >= 4
                for i in range(charts.count()):
                    box = charts.nth(i).bounding_box()
                    assert box and box["x"] + box["width"] <= width + 1, (url, i, box)
            page.close()
    finally:
        for ctx in contexts.values():
            ctx.close()  # type: ignore[attr-defined]
    assert wide == [], "\n".join(wide)


def test_an_items_check_ins_come_when_their_box_is_opened(browser: Browser, site: dict) -> None:
    """The actions page shows how many check-ins an item has; opening the box brings them
    (htmx), readable and passing axe; its link leads to the item's page, where they are open."""
    with site["store"].unit_of_work() as s:
        lee, sid = person_by_email(s, "lee@acme.test"), person_by_email(s, "sid@acme.test")
        item, _ = actions.add_action(
            s,
            cycles.get_cycle(s, site["world"].cycles["execute"]),
            ActionItemCreate(title="Write the hand-off checklist", owner="sid@acme.test"),
            lee,
        )
        for note in ("Listed the steps", "Agreed the steps with marketing"):
            actions.add_checkin(s, item, CheckInCreate(note=note), sid)
        item_id = item.id
    ctx = signed_context(browser, site["base"], "lee@acme.test", bypass_csp=True)
    try:
        page = ctx.new_page()
        page.goto(f"{site['base']}/cycles/{site['world'].cycles['execute']}/actions")
        box = page.locator(f"#checkins-{item_id}")
        expect(box.locator("summary")).to_have_text("All 2 check-ins")
        box.locator("summary").click()
        expect(box).to_contain_text("Listed the steps")
        expect(box).to_contain_text("Agreed the steps with marketing")
        assert violations(page) == []
        link = page.locator(f"#automatic-{item_id}")
        assert link.count() == 0  # no automatic check-ins: no box for them
        page.goto(f"{site['base']}/actions/{item_id}#checkins-{item_id}")  # without JavaScript
        expect(page.locator(f"#checkins-{item_id}")).to_contain_text("Listed the steps")
    finally:
        ctx.close()
