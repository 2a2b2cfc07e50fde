"""Import in the browser, in a real browser (Debian's Chromium through Playwright) against the
app served by uvicorn: a lead uploads a HubSpot contacts export with a bad row, sees the preview
with the rejected row and its reason, imports it and reads the summary; a refused file is
fixed by choosing the date order, with nothing uploaded again. Previews and imports run in the
background here, so the page follows them by polling (htmx) and reloads itself when they end.
axe-core finds nothing on the import pages at a laptop's and a phone's width."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from aligncycle.web import create_app, seed
from aligncycle.web import import_jobs as ij
from aligncycle.web.deps import WebSettings
from models.funnel import jobs
from models.funnel.tables import ImportJob, Lead
from models.services.common import person_by_email
from tests.a11y import LAPTOP, each_width, violations
from tests.browser_support import PASSWORD, screenshots, serve, served_store
from tests.test_import_columns import PEOPLE_CSV, TEAMS_CSV
from tests.test_web_import import AMBIGUOUS, CONTACTS

LEAD = "lee@acme.test"


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with served_store(database_url) as store:
        with store.unit_of_work() as s:
            seed.seed_org(s)
            seed.set_passwords(s, PASSWORD)
        app = create_app(
            store, WebSettings(data_dir=tmp_path_factory.mktemp("site"), secret_key="imports")
        )
        # every preview and import in the background: the page follows them
        app.state.import_settings = ij.ImportSettings(background_mb=0)
        files = tmp_path_factory.mktemp("exports")
        (files / "hubspot-contacts.csv").write_bytes(CONTACTS)
        (files / "contacts-march.csv").write_bytes(AMBIGUOUS)
        (files / "people.csv").write_text(PEOPLE_CSV)
        (files / "teams.csv").write_text(TEAMS_CSV)
        with serve(app) as base:
            yield {
                "base": base,
                "store": store,
                "app": app,
                "files": files,
                "shots": screenshots(tmp_path_factory),
            }


def test_a_lead_previews_an_export_with_a_bad_row_imports_it_and_reads_the_summary(
    as_,
    site: dict,  # noqa: ANN001
) -> None:
    page = as_(LEAD)
    try:
        page.get_by_role("link", name="Import data").click()
        expect(page.get_by_role("heading", name="Import funnel data")).to_be_visible()
        page.get_by_label("CSV files").set_input_files(site["files"] / "hubspot-contacts.csv")
        page.get_by_label("The export comes from").select_option("hubspot")
        page.get_by_role("button", name="Preview the import").click()
        # the preview runs in the background; the page reloads itself when it is ready
        expect(page.get_by_text("Ready to import")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Nothing has been written yet")).to_be_visible()
        rejected = page.locator("#rejected")
        expect(rejected).to_contain_text("hubspot-contacts.csv: 2 unreadable rows")
        row = rejected.locator("tr", has_text="yesterday")
        expect(row.locator("td").first).to_have_text("4")
        expect(row).to_contain_text(
            "column 'Became a Marketing Qualified Lead Date': cannot read 'yesterday' as a date"
        )
        expect(page.locator("table", has_text="First touch").first).to_contain_text("Sam Rep")
        with site["store"].unit_of_work() as s:
            assert s.scalar(select(func.count()).select_from(Lead)) == 0  # nothing written
            job = s.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
            assert job.settings == {}  # every setting left "as the profile says"
        page.screenshot(path=str(site["shots"] / "import-preview.png"), full_page=True)
        page.get_by_role("button", name="Import these files").click()
        expect(page.get_by_text("What was imported")).to_be_visible(timeout=30_000)
        expect(page.locator("#summary")).to_contain_text(
            "4 rows read into the source “hubspot”: 2 new, 0 changed, 0 unchanged, 2 unreadable"
        )
        page.screenshot(path=str(site["shots"] / "import-summary.png"), full_page=True)
        with page.expect_download() as download:
            page.get_by_role(
                "link", name="Download the unreadable rows of hubspot-contacts.csv"
            ).click()
        saved = Path(download.value.path()).read_text()
        assert saved.splitlines()[1].startswith("4,mql_at: cannot read 'yesterday' as a date,103")
        assert download.value.suggested_filename == "hubspot-contacts.rejects.csv"
        with site["store"].unit_of_work() as s:
            assert s.scalar(select(func.count()).select_from(Lead)) == 2
    finally:
        page.context.close()


def test_a_refused_file_is_read_again_with_the_date_order_chosen_without_uploading_it_again(
    as_,
    site: dict,  # noqa: ANN001
) -> None:
    page = as_("max@acme.test")
    try:
        page.goto(site["base"] + "/numbers/import")
        page.get_by_label("CSV files").set_input_files(site["files"] / "contacts-march.csv")
        page.get_by_label("The export comes from").select_option("hubspot")
        page.get_by_role("button", name="Preview the import").click()
        message = page.locator("#import-message")
        expect(message).to_contain_text(
            "contacts-march.csv: line 2, column 'Became a Marketing Qualified Lead Date': "
            "'04/03/2024 10:00' reads both day first and month first",
            timeout=30_000,
        )
        expect(message).to_contain_text("choose Day first or Month first under How dates are")
        settings = page.locator("#settings")
        expect(settings).to_contain_text("The uploaded files are kept")
        settings.get_by_label("How dates are written").select_option("day-first")
        settings.get_by_role("button", name="Preview again").click()
        expect(page.get_by_text("Ready to import")).to_be_visible(timeout=30_000)
        expect(page.locator("#summary")).to_contain_text("2 rows read")
        expect(page.get_by_text("How dates are written: Day first")).to_be_visible()
    finally:
        page.context.close()


def test_an_export_no_profile_knows_is_read_by_matching_its_columns(
    as_,
    site: dict,  # noqa: ANN001
) -> None:
    page = as_(LEAD, bypass_csp=True)  # (axe is injected)
    try:
        page.goto(site["base"] + "/numbers/import")
        exports = [site["files"] / "people.csv", site["files"] / "teams.csv"]
        page.get_by_label("CSV files").set_input_files(exports)
        page.get_by_label("The export comes from").select_option("columns")
        page.get_by_role("button", name="Preview the import").click()
        expect(page.get_by_role("heading", name="Match the columns")).to_be_visible()
        page.get_by_label("The system these exports come from").fill("mycrm")
        people = page.get_by_role("group", name="people.csv (6 columns)")
        people.get_by_label("leads (one row per lead or contact)").check()
        people.get_by_label("The lead's ID (needed)").select_option("Person No.")
        people.get_by_label("When it became a marketing-qualified lead").select_option("Signed up")
        people.get_by_label("Where it came from (its channel)", exact=True).select_option(
            "Lead source"
        )
        people.get_by_label("Its team", exact=True).first.select_option("Rep")
        people.get_by_text("Read a value through another of the files").first.click()
        people.get_by_label("Its team: looked up as").first.select_option(
            label="its Region, in teams.csv"
        )
        teams = page.get_by_role("group", name="teams.csv (2 columns)")
        teams.get_by_label("neither: leave it out of the import").check()
        assert violations(page) == []
        page.screenshot(path=str(site["shots"] / "import-columns.png"), full_page=True)
        page.get_by_role("button", name="Preview the import").click()
        expect(page.get_by_text("Ready to import")).to_be_visible(timeout=30_000)
        expect(page.locator("#summary")).to_contain_text("3 rows read into the source “mycrm”")
        expect(page.get_by_text("Read as: the columns you matched")).to_be_visible()
        expect(page.get_by_text("left out of the import")).to_be_visible()
    finally:
        page.context.close()


def _job(
    site: dict, email: str, name: str, state: str, body: bytes, step: dict | None = None
) -> int:
    """A job of ``email``'s in ``state``: previewed, refused or imported through the real
    preview and import (run here); a running one with a fresh heartbeat, as a worker reading
    its files writes (``step``: past them, in that step of the work after the files)."""
    app = site["app"]
    upload = SimpleNamespace(filename=name, file=io.BytesIO(body))
    app.state.import_settings = ij.ImportSettings(background_mb=100)
    try:
        with site["store"].unit_of_work() as s:
            me = person_by_email(s, email)
            job_id, _ = ij.create(app, s, me, [upload], None, "hubspot", {})
            if state == jobs.IMPORTED:
                ij.confirm(app, s, me, s.get(ImportJob, job_id))
    finally:
        app.state.import_settings = ij.ImportSettings(background_mb=0)
    if state == jobs.IMPORTING:
        with site["store"].unit_of_work() as s:
            job = s.get(ImportJob, job_id)
            jobs.move(s, job_id, (jobs.PREVIEWED,), jobs.IMPORTING)
            folder = ij.uploads_root(app) / job.folder
        beat = {"phase": "importing", "done": 1, "total": 3, "rows": 20_000, "at": time.time()}
        if step:
            beat.update(done=3, **step)
        (folder / "progress.json").write_text(json.dumps(beat))
    return job_id


def test_the_import_pages_pass_axe_at_a_laptop_and_a_phone_width(as_, site: dict) -> None:  # noqa: ANN001
    previewed = _job(site, LEAD, "preview.csv", jobs.PREVIEWED, CONTACTS)
    refused = _job(site, LEAD, "refused.csv", jobs.REFUSED, AMBIGUOUS)
    running = _job(site, LEAD, "running.csv", jobs.IMPORTING, CONTACTS)
    step = {"step": "summing up the numbers", "step_done": 4, "step_of": 10}
    summing = _job(site, LEAD, "summing.csv", jobs.IMPORTING, CONTACTS, step)
    imported = _job(site, LEAD, "imported.csv", jobs.IMPORTED, CONTACTS)
    page = as_(LEAD, viewport=LAPTOP, bypass_csp=True)
    found: list[str] = []
    try:
        for path in (
            "/numbers/import",
            f"/numbers/import/{previewed}",
            f"/numbers/import/{refused}",
            f"/numbers/import/{running}",
            f"/numbers/import/{summing}",
            f"/numbers/import/{imported}",
            f"/numbers/import/{previewed}/columns",
        ):
            page.goto(site["base"] + path)
            name = path.strip("/").replace("/", "-")
            for at in each_width(page):
                found += [f"{path} at {at}: {v}" for v in violations(page)]
                page.screenshot(path=str(site["shots"] / f"{name}-{at[:-3]}.png"), full_page=True)
    finally:
        page.context.close()
        with site["store"].unit_of_work() as s:  # the running ones: as if they stopped
            for job_id in (running, summing):
                jobs.move(s, job_id, (jobs.IMPORTING,), jobs.FAILED, message="stopped")
    assert found == [], "\n".join(found)
