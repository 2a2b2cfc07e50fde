"""Where the shared numbers come from: each source's leads, deals, flags, currency and newest
import on the Numbers page and in the API; a source not imported for over a week is said to be
behind, at the top of the page (models.funnel.numbers.source_states)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from models.db import Store
from models.funnel.importer import import_files
from models.funnel.mapping import load_profile
from models.funnel.tables import FunnelImport
from tests.test_lead_not_found import contacts_csv, deals_csv
from tests.test_web_import import make_web, text


def test_each_source_says_what_it_holds_and_when_it_was_imported(
    org: Store, tmp_path: Path
) -> None:
    web = make_web(org, tmp_path)
    contacts = contacts_csv(tmp_path, ["L1", "L2", "L3"])
    deals = deals_csv(tmp_path, ["L1", "L9"])
    with org.unit_of_work() as s:
        import_files(s, [contacts, deals], load_profile("hubspot"))
    generic = tmp_path / "web-leads.csv"
    generic.write_text("lead_id,mql_date,channel\na,2024-01-05,web\n")
    with org.unit_of_work() as s:
        import_files(s, [generic], load_profile("generic").with_locale(source="forms"))

    words = text(web.client("sid").get("/numbers"))
    assert "Where these numbers come from" in words
    assert (
        "forms: 1 lead and 0 deals. Last imported" in words
        and "(today) from web-leads.csv." in words
    )
    assert "hubspot: 3 leads and 2 deals. Last imported" in words
    assert "(today) from contacts.csv, deals.csv. 1 data-quality flag." in words
    assert "days ago" not in words and "over a week" not in words

    # hubspot's newest import, ten days ago: behind, said at the top of the page
    with org.unit_of_work() as s:
        s.execute(
            update(FunnelImport)
            .where(FunnelImport.source == "hubspot")
            .values(finished_at=datetime.now(UTC) - timedelta(days=10, hours=1))
        )
    words = text(web.client("sid").get("/numbers"))
    assert "“hubspot” was last imported 10 days ago" in words
    assert (
        "what happened in it since is not in these numbers until its export is imported again"
        in words
    )
    assert "(10 days ago) from contacts.csv, deals.csv. Not imported for over 7 days" in words

    got = web.client().get("/api/v1/kpis/sources", headers=web.bearer("sid"))
    assert got.status_code == 200
    states = {x["source"]: x for x in got.json()}
    assert (states["hubspot"]["leads"], states["hubspot"]["deals"], states["hubspot"]["flags"]) == (
        3,
        2,
        1,
    )
    assert (states["hubspot"]["days_since"], states["hubspot"]["behind"]) == (10, True)
    assert (states["forms"]["days_since"], states["forms"]["behind"]) == (0, False)


def test_a_source_is_behind_after_the_days_of_the_teams_cadence(org: Store, tmp_path: Path) -> None:
    """Behind after the days the viewer's teams' cadence spans (no cycle: a week); a team
    importing fortnightly is not told a source is behind in its second week."""
    from models.funnel.numbers import source_states
    from models.services.agreements import behind_after_days, numbers_pair
    from models.services.common import person_by_email

    with org.unit_of_work() as s:
        import_files(s, [contacts_csv(tmp_path, ["L1"])], load_profile("hubspot"))
        s.flush()
        s.execute(update(FunnelImport).values(finished_at=datetime.now(UTC) - timedelta(days=10)))
    with org.unit_of_work() as s:
        assert behind_after_days(numbers_pair(s, person_by_email(s, "sid@acme.test"))) == 7
        assert [st.behind for st in source_states(s)] == [True]
        assert [st.behind for st in source_states(s, behind_after_days=14)] == [False]
