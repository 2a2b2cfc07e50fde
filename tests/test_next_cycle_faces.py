"""The SLA breach ledger and scheduled starts on the API and the CLI: a person of the cycle's
teams reads the ledger, anyone else gets the answer a missing cycle gets; only managers start
the scheduled cycles; refusals are one line and change nothing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from models.funnel.tables import Lead
from models.phases.execute import execute_pass
from tests.test_next_cycle import MARCH, PLAYBOOK, lead, lead_rows, load, start, to_execute
from tests.test_web_support import Rig, rig


def march_with_breaches(s: Any) -> int:
    rows = [lead(i, date(2024, 3, 5), 30, channel="paid_search", owner=None) for i in range(3)]
    s.execute(Lead.__table__.insert(), lead_rows(rows))
    load(s, PLAYBOOK)
    c = start(s, "March", MARCH)
    to_execute(s, c, MARCH)
    execute_pass(s, c, date(2024, 3, 10))  # the pass of 10 March records the late leads
    s.flush()
    return c.id


@pytest.fixture(scope="module")
def web(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with rig(database_url, tmp_path_factory.mktemp("next")) as r:
        yield r


def test_the_api_shows_the_ledger_to_the_cycles_teams_only(web: Rig) -> None:
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            cid = march_with_breaches(s)
        got = r.client().get(f"/api/v1/cycles/{cid}/sla-breaches", headers=r.bearer("sid"))
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["total"] == 3 and body["without_owner"] == 3
        # 6 h late each: under the 5 days (the overdue rule's) after which managers hear
        assert (body["managers_after_hours"], body["for_managers"]) == (120, 0)
        assert body["by_channel"][0]["sentence"].startswith(
            "3 leads from paid search waited over 24 h; 3 of them had no owner."
        )
        # another team's cycle answers exactly like a missing one
        other = r.client().get(f"/api/v1/cycles/{cid}/sla-breaches", headers=r.bearer("ola"))
        missing = r.client().get("/api/v1/cycles/987654/sla-breaches", headers=r.bearer("ola"))
        assert other.status_code == missing.status_code == 404
        assert other.json()["error"]["message"].replace(str(cid), "N") == missing.json()["error"][
            "message"
        ].replace("987654", "N")


def test_only_managers_start_the_scheduled_cycles_through_the_api(web: Rig) -> None:
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            march_with_breaches(s)
        before = r.snapshot()
        refused = r.client().post("/api/v1/scheduled-starts", headers=r.bearer("lee"))
        assert refused.status_code == 403
        assert "only managers can start the scheduled cycles" in refused.text
        assert r.snapshot() == before
        ok = r.client().post("/api/v1/scheduled-starts", headers=r.bearer("max"))
        assert ok.status_code == 200, ok.text
        waiting = [st["waiting"] for st in ok.json()["starts"]]
        assert "“March” is still in Execute; the next cycle starts once it has reached Recap" in (
            waiting
        )


def test_the_late_leads_page_in_plain_words_for_the_cycles_teams_only(web: Rig) -> None:
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            cid = march_with_breaches(s)
        got = r.client("meg").get(f"/cycles/{cid}/late-leads")
        assert got.status_code == 200, got.text
        text = got.text
        assert "3 leads from paid search waited over 24 h; 3 of them had no owner." in text
        assert "Late leads" in text and "nobody" in text
        assert "A lead 120 hours past the hand-off time goes to the managers" in text
        assert "<td>paid search</td>" in text  # a channel in words
        for key in ("sla_hours", "late_hours", "None", "(s)", "paid_search"):
            assert key not in text
        assert r.client("ola").get(f"/cycles/{cid}/late-leads").status_code == 404
