"""The teams' agreement and their materials in a real browser (Debian's Chromium through
Playwright) against the app served by uvicorn on 127.0.0.1 (issue 20):

- a point person opens the agreement, proposes a longer hand-off time for the cycle in Plan
  (linked to the gap it answers) and sees the change beside what is agreed now;
- a sales member rates marketing's deck and names an objection it fails to answer, and sees
  the campaign's conversion before and after the deck shipped.

Every page of both journeys is checked with axe-core at 1280 and 390 px: no violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from playwright.sync_api import expect

from aligncycle.web import create_app, seed
from aligncycle.web.deps import WebSettings
from models.funnel.tables import Lead
from models.services import agreements, campaigns
from models.services.campaigns import CampaignCreate, MaterialCreate
from models.services.common import person_by_email
from tests.browser_support import PASSWORD, serve, served_store
from tests.test_alignment_browser import SIGN_IN_OPTIONS, accessible  # noqa: F401

SHIPPED = date.today() - timedelta(days=10)
GAP = "Leads wait in a shared inbox over the weekend"
OBJECTION = "Nothing on what happens to the data we already have"


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with served_store(database_url) as store:
        with store.unit_of_work() as s:
            seed.seed_org(s)
            seed.set_passwords(s, PASSWORD)
            c = seed.start(s, "Weekend hand-off", date.today() - timedelta(days=3))
            seed.to_plan(s, c, [GAP])
            agreement = agreements.agreement_of(s, c)
            lee = person_by_email(s, "lee@acme.test")
            campaign = campaigns.add_campaign(
                s,
                agreement,
                CampaignCreate(
                    name="Migration offer",
                    owners=["sid@acme.test", "meg@acme.test"],
                    funnel_key="migration offer",
                ),
                lee,
            )
            s.flush()
            campaigns.add_material(
                s,
                campaign,
                MaterialCreate(
                    title="Migration deck", kind="deck", owner="meg@acme.test", shipped_on=SHIPPED
                ),
                lee,
            )
            for i in range(6):  # before the deck: one MQL in four an SQL; after: both
                before = i < 4
                mql = datetime.combine(
                    SHIPPED - timedelta(days=3 + i) if before else SHIPPED + timedelta(days=i - 3),
                    time(10),
                    tzinfo=UTC,
                )
                sql = mql + timedelta(days=1) if (i == 0 or not before) else None
                s.add(Lead(source="crm", external_id=f"m{i}", campaign="Migration Offer",
                           created_at=mql, mql_at=mql, sql_at=sql))  # fmt: skip
            s.flush()
            ids = {"agreement": agreement.id, "campaign": campaign.id}
        app = create_app(
            store, WebSettings(data_dir=tmp_path_factory.mktemp("ag"), secret_key="ag")
        )
        with serve(app) as base:
            yield {"base": base, **ids}


def test_a_point_person_proposes_a_change_and_sees_the_diff(as_, site: dict) -> None:  # noqa: ANN001, F811
    found: list[str] = []
    sam = as_("sam@acme.test")
    sam.get_by_role("link", name="Agreement", exact=True).click()
    found += accessible(sam, "agreements")
    sam.get_by_role("link", name="Sales and Marketing", exact=True).click()
    expect(sam.get_by_role("heading", name="The agreement of Sales and Marketing")).to_be_visible()
    found += accessible(sam, "agreement")
    sam.get_by_label("Hand-off time, in hours").fill("48")
    sam.get_by_label(GAP).check()
    sam.get_by_label("Why this change").fill("Weekend leads wait until Monday")
    sam.get_by_role("button", name="Propose this change").click()
    expect(sam.locator(".flash")).to_contain_text("Both point persons adopt or reject it")
    change = sam.locator("#changes .item").first
    row = change.get_by_role("row", name="Hand-off time")
    expect(row.locator("del")).to_have_text("24 hours")
    expect(row.locator("ins")).to_have_text("48 hours")
    expect(change).to_contain_text(f"It answers: {GAP}")
    expect(change).to_contain_text("Waiting for the point person of Sales and Marketing")
    terms = sam.locator("dl.terms")
    expect(terms).to_contain_text("24 hours")  # in force until both sign at the recap
    found += accessible(sam, "agreement-proposed")
    assert found == []


def test_a_sales_member_rates_a_material(as_, site: dict) -> None:  # noqa: ANN001, F811
    found: list[str] = []
    sid = as_("sid@acme.test")
    sid.goto(f"{site['base']}/agreements/{site['agreement']}")
    sid.get_by_role("link", name="Campaigns and materials").click()
    found += accessible(sid, "campaigns")
    sid.get_by_role("link", name="Migration offer").click()
    expect(sid.get_by_role("heading", name="Migration offer")).to_be_visible()
    found += accessible(sid, "campaign")
    deck = sid.locator(".item", has_text="Migration deck")
    expect(deck).to_contain_text("Not rated yet")
    deck.get_by_label("4", exact=True).check()
    deck.get_by_label("Objections it fails to answer").fill(OBJECTION)
    deck.get_by_role("button", name="Save your rating").click()
    expect(sid.locator(".flash")).to_contain_text("your rating is saved")
    deck = sid.locator(".item", has_text="Migration deck")
    expect(deck).to_contain_text("Useful: 4.0 of 5, from 1 rating")
    expect(deck).to_contain_text(OBJECTION)
    expect(deck.get_by_role("button", name="Update your rating")).to_be_visible()
    found += accessible(sid, "campaign-rated")
    effect = sid.get_by_role("table", name="The campaign's numbers before and after")
    rate = effect.get_by_role("row", name="MQL→SQL rate")
    expect(rate.get_by_role("cell")).to_have_text(["25.0%", "100.0%"])
    sid.goto(f"{site['base']}/numbers")
    sid.get_by_role("link", name="Campaigns: conversion before and after their materials").click()
    expect(sid.get_by_role("heading", name="Migration offer")).to_be_visible()
    found += accessible(sid, "campaign-numbers")
    meg = as_("meg@acme.test")  # marketing made the deck: it does not rate it
    meg.goto(f"{site['base']}/campaigns/{site['campaign']}")
    expect(meg.locator(".item", has_text="Migration deck")).to_contain_text(OBJECTION)
    expect(meg.get_by_role("button", name="Save your rating")).to_have_count(0)
    assert found == []
