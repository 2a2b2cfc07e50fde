"""Journeys of the inbox in a real browser (Debian's Chromium through Playwright), on the demo
world served by uvicorn (the fixtures of ``tests/test_browser.py``):

- each role opens My work and finds what waits for them, and a link leads to the place;
- a blocker in "Next step" leads to the exact place to fix it;
- an answer saved in place updates Next step, the Gaps tab's count and says what it caused;
- a version conflict shows the other person's change beside the typed text, which is kept,
  and "Apply mine on the new version" saves it in one step;
- axe-core finds nothing on these pages, in these states, at 1280 px and 390 px.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from models.schemas import ActionItemUpdate
from models.services import actions, cycles, inbox
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, ChecklistItem, Cycle, Gap
from tests.a11y import LAPTOP, VIEWPORTS, pages_at_each_width, violations
from tests.browser_support import signed_context
from tests.test_browser import site  # noqa: F401  (shared fixture)

#: Every page signed in here may have axe-core injected.
SIGN_IN_OPTIONS = {"viewport": VIEWPORTS["1280 px"], "bypass_csp": True}


def _count(page: Page, tab: str) -> int:
    return int(page.locator("#cycle-tabs a", has_text=tab).locator(".count").inner_text())


def _clean(page: Page, where: str) -> list[str]:
    return [f"{where}: {v}" for v in violations(page)]


def test_each_role_finds_what_waits_for_them_in_my_work(as_, site: dict) -> None:  # noqa: ANN001, F811
    world = site["world"]
    lead = as_("lee@acme.test")
    lead.get_by_role("link", name=re.compile(r"^My work")).click()
    gaps = lead.locator("#inbox-gaps")
    expect(gaps).to_contain_text("Scores ignore product usage")
    expect(lead.locator("#inbox-assign")).to_contain_text("Publish one deck library")
    lead.screenshot(path=str(site["shots"] / "my-work-lead.png"), full_page=True)
    count = int(lead.locator("#nav-my-count [aria-hidden]").inner_text())
    assert count >= 2
    gaps.get_by_role("link", name="Decide it").first.click()
    expect(lead).to_have_url(
        re.compile(rf"/cycles/{world.cycles['identify']}/gaps#gap-{world.gaps['identify']}$")
    )
    expect(lead.locator(f"#gap-{world.gaps['identify']} form")).to_be_visible()

    manager = as_("max@acme.test")
    manager.goto(site["base"] + "/my")
    recaps = manager.locator("#inbox-recaps")
    expect(recaps).to_contain_text("Q2 hand-off alignment")
    recaps.get_by_role("link", name="Sign off").click()
    expect(manager.get_by_role("button", name="Sign off the recap")).to_be_visible()

    member = as_("meg@acme.test")
    member.goto(site["base"] + "/my")
    expect(member.locator("#inbox-surveys")).to_contain_text("Survey open")
    # her votes on the gaps of the cycle in Identify, with the link to the vote
    votes = member.locator(f"#inbox-votes-{world.cycles['identify']}")
    expect(votes).to_contain_text("3 votes left")
    votes.get_by_role("link", name="Vote").click()
    expect(member).to_have_url(re.compile(rf"/cycles/{world.cycles['identify']}/vote$"))
    expect(member.get_by_label(re.compile("^Your votes for")).first).to_be_visible()
    member.goto(site["base"] + "/my")
    expect(member.locator("#group-overdue")).to_contain_text("Overdue")
    member.locator("#inbox-surveys").get_by_role("link", name="Answer the survey").click()
    expect(member.locator("#survey")).to_be_visible()

    # a point person answers a yes/no question from My work in one click: the entry goes, and
    # the counts (the page's and the menu's) follow at once, without leaving the page
    sam = as_("sam@acme.test")
    sam.goto(site["base"] + "/my")
    waiting = int(sam.locator("#nav-my-count [aria-hidden]").inner_text())
    entry = sam.locator("#inbox-questions .inbox-entry").filter(has=sam.locator("form")).first
    entry_id = entry.get_attribute("id")
    entry.get_by_role("button", name="No", exact=True).click()
    expect(sam.locator(f"#{entry_id}")).to_have_count(0)
    expect(sam.locator(".flash")).to_contain_text("Answer saved")
    with site["store"].unit_of_work() as s:
        now = inbox.inbox(s, person_by_email(s, "sam@acme.test")).count
    assert now == waiting - 1  # "No" raises no gap here: one thing less waiting
    expect(sam.locator("#nav-my-count [aria-hidden]")).to_have_text(str(now))
    expect(sam.locator("#my-stats .stat").first).to_have_text(str(now))
    assert sam.url == site["base"] + "/my"


def test_a_blocker_link_leads_to_the_fix(as_, site: dict) -> None:  # noqa: ANN001, F811
    world = site["world"]
    sam = as_("sam@acme.test")
    sam.goto(f"{site['base']}/cycles/{world.cycles['identify']}")
    step = sam.locator("#next-step")
    step.get_by_role("link", name="Decide “Scores ignore product usage”").click()
    gap = sam.locator(f"#gap-{world.gaps['identify']}")
    expect(gap.get_by_role("button", name="Save decision")).to_be_visible()
    gap.get_by_label("Reject (say why)").check()
    gap.get_by_label("Reason").fill("Scores come from the vendor; out of our hands")
    gap.get_by_role("button", name="Save decision").click()
    expect(sam.locator(".flash")).to_contain_text("Gap rejected")
    expect(gap).to_contain_text("Rejected")
    sam.goto(f"{site['base']}/cycles/{world.cycles['identify']}")
    expect(sam.locator("#next-step")).not_to_contain_text("Scores ignore product usage")
    first = sam.locator("#next-step .blockers a[href*='#item-']").first
    href = first.get_attribute("href") or ""
    first.click()
    item = sam.locator("#" + href.split("#")[1])
    expect(item).to_be_in_viewport()
    expect(item.get_by_role("button", name="Save answer")).to_be_visible()


def test_an_answer_in_place_updates_next_step_and_the_gaps_count(as_, site: dict) -> None:  # noqa: ANN001, F811
    cid = site["world"].cycles["identify"]
    with site["store"].unit_of_work() as s:
        cycle = s.get(Cycle, cid)
        spec = cycles.spec(cycle)
        found = None
        for item in s.scalars(
            select(ChecklistItem)
            .where(ChecklistItem.cycle_id == cid, ChecklistItem.answer.is_(None))
            .order_by(ChecklistItem.position)
        ).unique():
            q = spec.question(item.phase, item.key)
            if q is not None and q.gap is not None and item.answer_kind.value == "yes_no":
                found = (item.id, q.gap.when.value, q.gap.title)
                break
    assert found, "the playbook has a yes/no question that raises a gap"
    item_id, raising, title = found
    sam = as_("sam@acme.test")
    sam.goto(f"{site['base']}/cycles/{cid}")
    before = _count(sam, "Gaps")
    url = sam.url
    box = sam.locator(f"#item-{item_id}")
    box.get_by_label({"yes": "Yes", "no": "No", "unsure": "Not sure"}[raising], exact=True).check()
    box.get_by_role("button", name="Save answer").click()
    expect(sam.locator(".flash")).to_contain_text(f"This answer raised a gap: “{title}”")
    expect(sam.locator("#cycle-tabs a", has_text="Gaps").locator(".count")).to_have_text(
        str(before + 1)
    )
    expect(sam.locator("#next-step").get_by_role("link", name=f"Decide “{title}”")).to_be_visible()
    expect(sam.locator(f"#item-{item_id} .badge.answer")).to_contain_text("raises a gap")
    assert sam.url == url  # saved in place: no new page
    found_axe = _clean(sam, "cycle page after an answer")
    sam.screenshot(path=str(site["shots"] / "cycle-after-answer.png"), full_page=True)
    sam.locator("#next-step").screenshot(path=str(site["shots"] / "next-step.png"))
    sam.get_by_role("link", name=f"Decide “{title}”").click()
    with site["store"].unit_of_work() as s:
        gap_id = s.scalar(select(Gap.id).where(Gap.cycle_id == cid, Gap.title == title))
    expect(sam).to_have_url(re.compile(rf"/gaps#gap-{gap_id}$"))
    assert found_axe == [], "\n".join(found_axe)


def test_a_conflict_is_resolved_without_losing_text(as_, site: dict) -> None:  # noqa: ANN001, F811
    item_id = site["world"].actions["execute_sid"]
    sid = as_("sid@acme.test")
    sid.goto(site["base"] + "/my")
    row = sid.locator(f"#action-{item_id}")
    row.locator("summary", has_text="Update").click()
    typed = "Asked the CRM admin twice; meeting on Thursday"
    row.get_by_label("Status").select_option("blocked")
    row.get_by_label("What happened?").fill(typed)
    with site["store"].unit_of_work() as s:  # meanwhile, the lead raises its priority
        actions.update_action(
            s,
            s.get(ActionItem, item_id),
            ActionItemUpdate(priority="high"),
            person_by_email(s, "lee@acme.test"),
        )
    row.get_by_role("button", name="Save").click()
    row = sid.locator(f"#action-{item_id}")
    expect(row.locator(".alert")).to_contain_text("changed by someone else (Lee Saleslead)")
    expect(row.locator(".conflict-box")).to_contain_text("Priority: Medium → High")
    expect(row.get_by_label("What happened?")).to_have_value(typed)  # kept
    expect(row.get_by_label("Status")).to_have_value("blocked")
    found_axe = _clean(sid, "My work with a conflict")
    row.screenshot(path=str(site["shots"] / "conflict.png"))
    sid.set_viewport_size(VIEWPORTS["390 px"])
    found_axe += _clean(sid, "My work with a conflict, on a phone")
    row.screenshot(path=str(site["shots"] / "conflict-phone.png"))
    row.get_by_role("button", name="Apply mine on the new version").click()
    expect(sid.locator(".flash")).to_contain_text("saved: Blocked")
    expect(sid.locator(f"#action-{item_id} .badge.blocked")).to_have_text("Blocked")
    with site["store"].unit_of_work() as s:
        item = s.get(ActionItem, item_id)
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id)).all()
        assert item.priority.value == "high" and item.status.value == "blocked"
    assert typed in notes
    assert found_axe == [], "\n".join(found_axe)


def test_signed_out_meanwhile_the_typed_text_stays(as_, site: dict) -> None:  # noqa: ANN001, F811
    item_id = site["world"].actions["execute_sid"]
    sid = as_("sid@acme.test")
    sid.goto(site["base"] + "/my")
    row = sid.locator(f"#action-{item_id}")
    row.locator("summary", has_text="Update").click()
    typed = "Spoke to the CRM admin, field goes live Monday"
    row.get_by_label("What happened?").fill(typed)
    # The same person signs out elsewhere (another tab): the sign-out form's own request, sent
    # with the browser's cookies. (A second page in this context stalled Playwright for good,
    # twice, under a load average of 8-11: a hang is worse than a failure in CI.)
    token = sid.locator("form[action='/logout'] input[name=csrf]").input_value()
    out = sid.context.request.post(
        site["base"] + "/logout", form={"csrf": token}, max_redirects=0, timeout=30_000
    )
    assert out.status in (302, 303), out.status
    row.get_by_role("button", name="Save").click()
    expect(sid.locator("#messages .alert")).to_contain_text("You were signed out")
    expect(row.get_by_label("What happened?")).to_have_value(typed)  # nothing lost
    with site["store"].unit_of_work() as s:
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == item_id)).all()
    assert typed not in notes


PAGES = [
    ("/my", "lee@acme.test"),
    ("/my", "max@acme.test"),
    ("/my", "meg@acme.test"),
    ("/my", "sam@acme.test"),
    ("/cycles/{identify}", "sam@acme.test"),
    ("/cycles/{plan}", "lee@acme.test"),
    ("/cycles/{identify}/gaps", "lee@acme.test"),
    ("/cycles/{execute}/actions", "lee@acme.test"),
]


@pytest.mark.parametrize("email", sorted({email for _, email in PAGES}))
def test_the_inbox_pages_pass_axe_at_a_laptop_and_a_phone_width(
    browser: Browser,  # noqa: F811
    site: dict,  # noqa: F811
    email: str,
) -> None:
    urls = [p.format(**site["world"].cycles) for p, e in PAGES if e == email]
    ctx = signed_context(browser, site["base"], email, viewport=LAPTOP, bypass_csp=True)
    try:
        found = pages_at_each_width(ctx, site["base"], urls)
    finally:
        ctx.close()
    assert found == [], f"signed in as {email}:\n" + "\n".join(found)
