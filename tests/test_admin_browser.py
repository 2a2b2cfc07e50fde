"""The admin pages in a real browser (Debian's Chromium through Playwright; the server and the
browser of tests/test_browser.py): a manager adds a person, who chooses a password from the
invitation link and signs in; the manager previews a playbook and checks a playbook file; a
point person starts a cycle from a preview. axe-core finds nothing on these pages at 1280 px
and 390 px."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from models.base import utcnow
from models.cadence.tables import ChannelKind, NotificationChannel
from models.services import invitations
from models.services.common import person_by_email
from models.tables import Playbook, Team
from tests.a11y import LAPTOP, VIEWPORTS, each_width, violations
from tests.browser_support import signed_context
from tests.test_browser import site  # noqa: F401 - fixture

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def test_a_manager_adds_a_person_and_previews_a_playbook(as_, site: dict, tmp_path: Path) -> None:  # noqa: ANN001, F811
    page = as_("max@acme.test")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="People", exact=True)).to_be_visible()
    page.get_by_label("Full name").fill("Nora Newhire")
    page.get_by_label("Email address").fill("nora@acme.test")
    page.locator("#ap-team").select_option(label="Marketing")
    page.locator("#ap-role").select_option(label="Lead")
    page.get_by_role("button", name="Add the person").click()
    expect(page.get_by_role("heading", name="Nora Newhire")).to_be_visible()
    expect(page.locator(".note")).to_contain_text("pass this link on yourself")
    link = page.locator("#link").inner_text().strip()
    assert link.startswith(site["base"] + "/password/")
    page.screenshot(path=str(site["shots"] / "admin-person.png"), full_page=True)

    # the new person follows the link, chooses a password and is signed in
    newcomer = page.context.browser.new_context(viewport={"width": 390, "height": 844})
    try:
        p2 = newcomer.new_page()
        p2.goto(link)
        expect(p2.get_by_role("heading", name="Welcome, Nora Newhire")).to_be_visible()
        p2.locator("#pw-new").fill("tangerine-orbit-meadow")
        p2.locator("#pw-repeat").fill("tangerine-orbit-meadow")
        p2.get_by_role("button", name="Save my password").click()
        expect(p2.locator(".flash")).to_contain_text("your password is set")
        expect(p2.get_by_role("button", name="Sign out")).to_be_visible()
    finally:
        newcomer.close()

    # the manager previews a playbook
    page.get_by_role("link", name="Playbooks", exact=True).click()
    page.get_by_role("link", name="Sales–marketing hand-off alignment").click()
    for phase in ("1. Identify", "2. Plan", "3. Execute", "4. Recap"):
        expect(page.get_by_role("heading", name=phase)).to_be_visible()
    expect(page.locator(".item").first).to_contain_text("Answered by")
    page.screenshot(path=str(site["shots"] / "playbook-preview.png"), full_page=True)

    # and checks a playbook file with a mistake in it
    bad = tmp_path / "draft.yaml"
    bad.write_text(
        "name: draft\nversion: 1\ntitle: Draft\nphases:\n  identify:\n    questions:\n"
        "      - key: one\n        answer: yes_no\n"
    )
    page.get_by_role("link", name="Playbooks", exact=True).click()
    page.locator("#chk-file").set_input_files(str(bad))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#checked .alert")).to_contain_text(
        "line 7, the Identify phase, question 1, text: is missing"
    )


def test_a_point_person_starts_a_cycle_from_a_preview(as_, site: dict) -> None:  # noqa: ANN001, F811
    page = as_("sam@acme.test")
    page.goto(site["base"] + "/playbooks")
    page.get_by_role("link", name="Sales–marketing hand-off alignment").click()
    page.get_by_role("link", name="Start a cycle with this playbook").click()
    expect(page.get_by_label("Playbook", exact=True)).to_have_value("sales-marketing-handoff")


def test_the_admin_pages_pass_axe_at_a_laptop_and_a_phone_width(
    browser: Browser,  # noqa: F811
    site: dict,  # noqa: F811
) -> None:
    with site["store"].unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test")
        sales = s.query(Team).filter(Team.key == "sales").one()
        if not s.query(NotificationChannel).count():
            s.add(
                NotificationChannel(team_id=sales.id, kind=ChannelKind.SLACK, url="slack://a/b/c")
            )
        book = s.query(Playbook).order_by(Playbook.id).first()
        token, _ = invitations.make_token(
            s, sid, invitations.Purpose.RESET, secret="browser", now=utcnow()
        )
        ids = {"sid": sid.id, "sales": sales.id, "book": book.id, "token": token}
    pages = [
        ("/password/forgot", None),
        (f"/password/{ids['token']}", None),
        ("/admin/people", "max@acme.test"),
        (f"/admin/people/{ids['sid']}", "max@acme.test"),
        ("/admin/teams", "max@acme.test"),
        (f"/admin/teams/{ids['sales']}", "max@acme.test"),
        ("/admin/channels", "max@acme.test"),
        ("/playbooks", "max@acme.test"),
        (f"/playbooks/{ids['book']}", "sam@acme.test"),
    ]
    found: list[str] = []
    contexts = {}
    try:
        for path, email in pages:
            if email not in contexts:
                contexts[email] = signed_context(
                    browser, site["base"], email, viewport=LAPTOP, bypass_csp=True
                )
            page = contexts[email].new_page()
            page.goto(site["base"] + path)
            assert not re.search(r"Not found|Not allowed", page.title()), path
            who = email or "signed out"
            for at in each_width(page):
                found += [f"{path} ({who}) at {at}: {v}" for v in violations(page)]
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > VIEWPORTS[at]["width"]:
                    found.append(
                        f"{path} at {at}: the page is {width} px wide (it scrolls sideways)"
                    )
                if path in ("/admin/people", "/admin/channels"):
                    name = f"{path.strip('/').replace('/', '-')}-{at.split()[0]}.png"
                    page.screenshot(path=str(site["shots"] / name), full_page=True)
            if path == "/playbooks":  # the result of checking a file, too
                page.locator("#chk-file").set_input_files(
                    str(PLAYBOOKS / "sales-marketing-handoff.yaml")
                )
                page.get_by_role("button", name="Check the file").click()
                expect(page.locator("#checked .note")).to_contain_text("is a valid playbook")
                for at in each_width(page):
                    found += [f"{path} (checked) at {at}: {v}" for v in violations(page)]
            page.close()
    finally:
        for ctx in contexts.values():
            ctx.close()
    assert found == [], "\n".join(found)
