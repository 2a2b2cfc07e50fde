"""Each team's answers and the vote, in a real browser (Debian's Chromium through Playwright)
against the app served by uvicorn on 127.0.0.1 (issue 18):

- marketing answers on its own and submits; sales sees that it did, not what; sales answers
  and submits, and the divergence map shows where the teams agree and differ;
- two people vote on the gaps, nobody sees the totals; the point person closes the vote and
  the gaps show in order of votes.

Every page of both journeys is checked with axe-core at 1280 and 390 px: no violation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from aligncycle.web import create_app, seed
from aligncycle.web.deps import WebSettings
from models import phases
from models.enums import GapCategory, RootCause, Severity
from models.schemas import CycleCreate, GapCreate
from models.services import gaps
from models.services.common import person_by_email
from models.tables import Cycle
from tests.a11y import VIEWPORTS, each_width, violations
from tests.browser_support import PASSWORD, serve, served_store

REMARK = "Half of the leads from webinars have no budget"


def _cycle(s, playbook: str, title: str) -> int:  # noqa: ANN001
    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook=playbook,
            title=title,
            period_start=date.today() - timedelta(days=2),
            point_persons=["sam@acme.test", "mia@acme.test"],
        ),
        person_by_email(s, "sam@acme.test"),
    )
    s.flush()
    return c.id


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with served_store(database_url) as store:
        with store.unit_of_work() as s:
            seed.seed_org(s)
            seed.set_passwords(s, PASSWORD)
            own = _cycle(s, "lead-definition-and-scoring", "Lead quality, each team first")
            vote = _cycle(s, "sales-marketing-handoff", "Which gaps first")
            c = s.get(Cycle, vote)
            gap_ids = []
            for title, severity in [
                ("Leads wait in a shared inbox", Severity.MEDIUM),
                ("No written MQL definition", Severity.HIGH),
                ("Campaigns start without a briefing", Severity.LOW),
            ]:
                g, _ = gaps.add_gap(
                    s,
                    c,
                    GapCreate(
                        title=title,
                        category=GapCategory.HAND_OFF,
                        root_cause=RootCause.PROCESS,
                        severity=severity,
                    ),
                    person_by_email(s, "lee@acme.test"),
                )
                gap_ids.append(g.id)
        app = create_app(
            store, WebSettings(data_dir=tmp_path_factory.mktemp("al"), secret_key="al")
        )
        with serve(app) as base:
            yield {"base": base, "own": own, "vote": vote, "gaps": gap_ids}


#: Every page signed in here may have axe-core injected.
SIGN_IN_OPTIONS = {"viewport": VIEWPORTS["1280 px"], "bypass_csp": True}


def accessible(page: Page, shot: str | None = None) -> list[str]:
    """axe-core's findings on the page at both widths (the page is left at 1280 px); with
    ``shot``, a screenshot at each width in ``$ALIGNCYCLE_SCREENSHOTS`` for people to look at."""
    found = []
    folder = os.environ.get("ALIGNCYCLE_SCREENSHOTS")
    for name in each_width(page):
        found += [f"{page.url} at {name}: {v}" for v in violations(page)]
        if shot and folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{folder}/{shot}-{name[:-3]}.png", full_page=True)
    return found


def answer_all(page: Page, answer: str, rating: str) -> None:
    """Every question and rating of the team's form, as a person clicks them."""
    for box in page.locator("form fieldset").all():
        choice = box.get_by_label(answer, exact=True)
        if choice.count():
            choice.check()
        else:
            box.locator(f"input[type=radio][value='{rating}']").check()


def test_each_team_answers_on_its_own_then_the_divergence_map(as_, site: dict) -> None:  # noqa: ANN001
    found: list[str] = []
    marketing = as_("meg@acme.test")
    marketing.goto(f"{site['base']}/cycles/{site['own']}")
    marketing.get_by_role("link", name="Each team's answers").click()
    expect(marketing.get_by_role("heading", name="Marketing's answers")).to_be_visible()
    found += accessible(marketing, "own-answers-form")
    answer_all(marketing, "Yes", "4")
    marketing.get_by_label("Comment").first.fill(REMARK)
    marketing.get_by_role("button", name="Save", exact=True).click()
    expect(marketing.locator(".flash")).to_contain_text("Only people of Marketing see")
    marketing.get_by_role("button", name="Submit Marketing's answers").click()
    expect(marketing.locator(".flash")).to_contain_text("stay hidden from the other team")

    sales = as_("sid@acme.test")
    sales.goto(f"{site['base']}/cycles/{site['own']}/own-answers")
    status = sales.locator("#status-h").locator("..")
    expect(status).to_contain_text("Marketing: submitted")
    expect(status).to_contain_text("hidden until both teams have submitted")
    expect(sales.locator("body")).not_to_contain_text(REMARK)
    answer_all(sales, "No", "2")
    sales.get_by_role("button", name="Submit Sales's answers").click()
    expect(sales.locator(".flash")).to_contain_text("Both teams have submitted")
    expect(sales.get_by_role("heading", name="Where the teams agree and differ")).to_be_visible()
    quality = sales.locator("#rating-lead_quality")
    expect(quality).to_contain_text("The teams differ")
    expect(quality.locator("dl")).to_contain_text("Sales2 of 5")
    expect(quality.locator("dl")).to_contain_text("Marketing4 of 5")
    expect(quality).to_contain_text("MQL→SQL rate before the cycle")
    expect(sales.locator("body")).to_contain_text(REMARK)
    found += accessible(sales, "divergence-map")
    assert found == []


def test_people_vote_on_the_gaps_and_the_point_person_closes_the_vote(as_, site: dict) -> None:  # noqa: ANN001
    inbox, mql, brief = site["gaps"]
    url = f"{site['base']}/cycles/{site['vote']}/vote"
    found: list[str] = []
    sid = as_("sid@acme.test")
    sid.goto(f"{site['base']}/cycles/{site['vote']}")
    sid.get_by_role("link", name="Vote", exact=True).click()
    expect(sid.get_by_role("heading", name="Which gaps matter most?")).to_be_visible()
    found += accessible(sid, "vote-open")
    sid.get_by_label("Your votes for “Leads wait in a shared inbox”").fill("2")
    sid.locator(f"#v-{mql}").fill("2")  # 4 votes: over the budget, refused, nothing lost
    sid.get_by_role("button", name="Save my votes").click()
    expect(sid.locator(".alert")).to_contain_text("You have 3 votes in all; this ballot uses 4")
    expect(sid.locator(f"#v-{mql}")).to_have_value("2")
    sid.locator(f"#v-{mql}").fill("0")
    sid.locator(f"#v-{brief}").fill("1")
    sid.get_by_role("button", name="Save my votes").click()
    expect(sid.locator(".flash")).to_contain_text("0 votes left")

    meg = as_("meg@acme.test")
    meg.goto(url)
    expect(meg.locator("body")).to_contain_text("1 person has voted so far")
    expect(meg.locator(f"#v-{inbox}")).to_have_value("0")  # nobody else's votes
    meg.locator(f"#v-{mql}").fill("2")
    meg.get_by_role("button", name="Save my votes").click()
    expect(meg.locator(".flash")).to_contain_text("1 vote left")

    sam = as_("sam@acme.test")
    sam.goto(url)
    expect(sam.locator("body")).to_contain_text("2 people have voted so far")
    sam.get_by_role("button", name="Close the vote and show the totals").click()
    expect(sam.locator(".flash")).to_contain_text("The vote is closed")
    ranking = sam.locator("ol.ranking > li")
    expect(ranking.nth(0)).to_contain_text("No written MQL definition")  # 2 votes, high
    expect(ranking.nth(1)).to_contain_text("Leads wait in a shared inbox")  # 2 votes, medium
    expect(ranking.nth(2)).to_contain_text("1 vote")
    found += accessible(sam, "vote-closed")
    assert found == []
