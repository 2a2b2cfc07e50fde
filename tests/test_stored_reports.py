"""Recap reports live in the store: whichever worker ran the recap, the web app and the API
serve the report to the people of the cycle's teams, and to nobody else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from models.services import reports
from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("reports")) as r:
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


def test_the_stored_report_is_served_to_the_cycles_teams_only(w: Rig) -> None:
    cycle = w.extra["survey"]
    with w.store.unit_of_work() as s:
        reports.save_recap_report(s, cycle, "2 of 3 done", "# Recap\n\nfirst", date(2031, 3, 1))
        reports.save_recap_report(s, cycle, "3 of 3 done", "# Recap\n\nagain", date(2031, 3, 2))
    page = w.client("sam").get(f"/cycles/{cycle}/recap")
    assert f'href="/cycles/{cycle}/report.md"' in page.text
    assert "Download the report of 2 March 2031" in page.text
    resp = w.client("meg").get(f"/cycles/{cycle}/report.md")
    assert resp.status_code == 200
    assert resp.text == "# Recap\n\nagain"  # replaced whole by the later run
    assert resp.headers["content-type"].startswith("text/markdown")
    assert f'filename="cycle-{cycle}-recap.md"' in resp.headers["content-disposition"]
    api = w.client().get(f"/api/v1/cycles/{cycle}/recap/report", headers=w.bearer("sid"))
    assert api.status_code == 200
    assert api.json()["headline"] == "3 of 3 done"
    assert api.json()["url"] == f"/cycles/{cycle}/report.md"
    # Another team's cycle: exactly like a missing one, on the page and in the API.
    assert w.client("ola").get(f"/cycles/{cycle}/report.md").status_code == 404
    other = w.client().get(f"/api/v1/cycles/{cycle}/recap/report", headers=w.bearer("ola"))
    assert other.status_code == 404
    assert other.json()["error"]["message"] == f"no cycle with id {cycle}"


def test_a_cycle_without_a_report_says_so(w: Rig) -> None:
    cycle = w.world.cycles["execute"]
    resp = w.client().get(f"/api/v1/cycles/{cycle}/recap/report", headers=w.bearer("sam"))
    assert resp.status_code == 404
    assert "has no recap report yet" in resp.json()["error"]["message"]
    assert "report.md" not in w.client("sam").get(f"/cycles/{cycle}/recap").text
