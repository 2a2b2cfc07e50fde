"""What people see and do on the pages: validation next to the field, nothing typed is lost,
My work, the survey's anonymity, the recap's charts and exports, empty states."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import or_, select

from models.funnel.tables import CycleKpiSnapshot
from models.schemas import ActionItemUpdate, SurveyRespond
from models.services import actions, recap, recap_views
from models.services.common import person_by_email
from models.tables import ActionItem, CheckIn, Cycle, Event, SurveyResponse
from tests.test_web_support import Rig, rig


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("pages")) as r:
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    """The shared world; whatever a test changes is rolled back after it."""
    with world.isolated():
        yield world


def post(r: Rig, who: str, url: str, **data: str):  # noqa: ANN201
    return r.client(who).post(url, data={"csrf": r.personas[who].csrf, **data})


def test_invalid_form_shows_the_message_next_to_the_field_and_keeps_the_input(w: Rig) -> None:
    cycle = w.world.cycles["execute"]
    before = w.snapshot()
    resp = post(
        w,
        "lee",
        f"/cycles/{cycle}/actions",
        title="Line one\nline two",
        description="Everything I typed about it",
        due_date="2031-02-30",
        next=f"/cycles/{cycle}/actions",
    )
    assert resp.status_code == 422
    html = resp.text
    title_input = re.search(r'<input type="text" id="na-title"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in title_input
    assert 'aria-describedby="na-title-err"' in title_input
    assert re.search(r'id="na-title-err">[^<]*single line', html)
    assert "Everything I typed about it" in html  # kept
    assert w.snapshot() == before


def test_a_version_conflict_keeps_what_the_user_typed(w: Rig) -> None:
    item_id = w.world.actions["execute_sid"]
    page = w.client("sid").get(f"/actions/{item_id}/form/update?next=/my").text  # box opened
    version = re.search(
        rf'action="/actions/{item_id}/update".*?name="version" value="(\d+)"', page, re.S
    ).group(1)
    with w.store.unit_of_work() as s:  # meanwhile, the lead changes the item
        item = s.get(ActionItem, item_id)
        actions.update_action(
            s, item, ActionItemUpdate(priority="high"), person_by_email(s, "lee@acme.test")
        )
    before = w.snapshot()
    resp = post(
        w,
        "sid",
        f"/actions/{item_id}/update",
        version=version,
        status="blocked",
        note="Waiting for the CRM admin since Monday",
        next="/my",
    )
    assert resp.status_code == 409
    assert "changed by someone else" in resp.text
    assert 'value="Waiting for the CRM admin since Monday"' in resp.text
    assert re.search(r'<option value="blocked" selected>', resp.text)
    assert w.snapshot() == before


def test_my_work_lists_overdue_first_and_updates_in_place(w: Rig) -> None:
    sid = w.personas["sid"]
    page = w.client("sid").get("/my")
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'<div class="item [^"]*" id="action-(\d+)"', page.text)]
    with w.store.unit_of_work() as s:
        mine = or_(ActionItem.owner_id == sid.id, ActionItem.counterpart_id == sid.id)
        rows = {a.id: a for a in s.scalars(select(ActionItem).where(mine))}
        dues = [rows[i].due_date for i in ids]
    assert ids and "overdue-item" in page.text.split(f'id="action-{ids[0]}"')[0][-80:]
    assert dues == sorted(dues, key=lambda d: (d is None, d))
    target = w.world.actions["execute_sid"]
    resp = w.client("sid").post(
        f"/actions/{target}/update",
        data={
            "csrf": sid.csrf,
            "version": str(rows[target].version),
            "status": "in_progress",
            "confidence": "on_track",
            "progress": "60",
            "note": "CRM field added",
            "next": "/my",
        },
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == f"/my#action-{target}"
    reader = w.client("sid")
    reader.cookies.set("aligncycle_flash", resp.cookies.get("aligncycle_flash", ""))
    after = reader.get("/my").text
    assert "saved: In progress" in after
    with w.store.unit_of_work() as s:
        notes = s.scalars(select(CheckIn.note).where(CheckIn.action_item_id == target)).all()
    assert "CRM field added" in notes


def test_members_cannot_move_due_dates_from_the_form(w: Rig) -> None:
    target = w.world.actions["execute_sid"]
    before = w.snapshot()
    resp = post(w, "sid", f"/actions/{target}/update", due_date="2020-01-01", next="/my")
    assert resp.status_code in (403, 422)
    assert w.snapshot() == before


def test_anonymous_survey_answers_cannot_be_tied_to_anyone(w: Rig) -> None:
    cycle = w.extra["survey"]
    resp = post(
        w,
        "meg",
        f"/cycles/{cycle}/survey",
        score="2",
        anonymous="1",
        comment="Sales never reads the digest",
        next=f"/cycles/{cycle}/recap",
    )
    assert resp.status_code == 303
    with w.store.unit_of_work() as s:
        row = s.scalar(select(SurveyResponse).where(SurveyResponse.cycle_id == cycle))
        assert row.respondent_id is None and row.anonymous
        assert (
            s.scalar(select(Event).where(Event.cycle_id == cycle, Event.verb.like("survey.%")))
            is None
        )
    # one answer: nothing is shown, not even to a manager (it would be Meg's)
    page = w.client("max").get(f"/cycles/{cycle}/recap").text
    assert "Sales never reads the digest" not in page
    assert "the results appear once 3 have" in page
    api = w.client("max").get(f"/api/v1/cycles/{cycle}/recap", headers=w.bearer("max")).json()
    assert api["survey"]["mean"] is None and api["survey"]["comments"] == []
    assert api["facts"]["survey_mean"] is None
    timeline = w.client("max").get(f"/api/v1/cycles/{cycle}/events", headers=w.bearer("max"))
    assert not [e for e in timeline.json()["items"] if e["verb"].startswith("survey.")]
    # two more marketing answers: the batch of three is out; marketing's comments show to
    # marketing and to managers only
    with w.store.unit_of_work() as s:
        c = s.get(Cycle, cycle)
        for email, score, comment in (
            ("lou@acme.test", 4, "Better than last time"),
            ("mia@acme.test", 3, None),
        ):
            recap.respond(
                s,
                c,
                SurveyRespond(score=score, comment=comment, anonymous=True),
                person_by_email(s, email),
            )
    page = w.client("max").get(f"/cycles/{cycle}/recap").text
    assert "Sales never reads the digest" in page and "Better than last time" in page
    assert page.index("Better than last time") < page.index("Sales never reads the digest")
    assert (
        "Sales never reads the digest"
        in w.login("lou@acme.test").get(f"/cycles/{cycle}/recap").text
    )
    sales_view = w.client("sid").get(f"/api/v1/cycles/{cycle}/survey", headers=w.bearer("sid"))
    assert sales_view.json()["comments"] == []  # another team's comments stay private
    assert sales_view.json()["mean"] == 3.0
    assert "Sales never reads the digest" not in w.client("sid").get(f"/cycles/{cycle}/recap").text


def test_recap_shows_charts_and_exports(w: Rig) -> None:
    cycle = w.world.cycles["recap"]
    page = w.client("max").get(f"/cycles/{cycle}/recap")
    assert page.status_code == 200
    charts = re.findall(r'<svg class="chart"[^>]*role="img"', page.text)
    assert len(charts) >= 4  # completion, survey, gaps, causes, trend
    assert "Action completion" in page.text and "100%" in page.text
    assert "KPIs before and after" not in page.text  # no measurement data: no section
    report = w.client("max").get(f"/cycles/{cycle}/report")
    assert report.status_code == 200 and "Print or save as PDF" in report.text
    assert "@media print" in w.client().get("/static/app.css").text
    exported = w.client("max").get(f"/cycles/{cycle}/recap.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    kinds = [r["Kind"] for r in rows]
    # one row per gap and per action item, in the recap's words
    assert kinds.count("Gap") == 2 and kinds.count("Action item") == 2
    gaps = {r["Title"]: r for r in rows if r["Kind"] == "Gap"}
    assert gaps["Sales rejects MQLs without a reason"]["Decision or status"] == "Accepted"
    done = [r for r in rows if r["Kind"] == "Action item"]
    assert {r["Decision or status"] for r in done} == {"Done"}
    assert all(r["Owner"] and r["Gaps it addresses"] for r in done)
    assert "Improvement" in kinds


def test_csv_export_defuses_spreadsheet_formulas(w: Rig) -> None:
    cycle = w.world.cycles["recap"]
    resp = w.client("sam").put(
        f"/api/v1/cycles/{cycle}/retrospective",
        headers=w.bearer("sam"),
        json={"improvements": ['=HYPERLINK("http://x")', "plain"]},
    )
    assert resp.status_code == 200, resp.text
    rows = list(csv.reader(io.StringIO(w.client("sam").get(f"/cycles/{cycle}/recap.csv").text)))
    assert ["Improvement", '\'=HYPERLINK("http://x")'] in [r[:2] for r in rows]


def test_kpi_section_appears_when_measurements_exist(w: Rig, monkeypatch) -> None:  # noqa: ANN001
    def fake(session, cycle):  # noqa: ANN001, ANN202
        return [
            recap_views.KpiMeasure(
                "mql_to_sql_rate", "MQL→SQL rate", 18.0, 24.5, "%", True, "18.0%", "24.5%"
            )
        ]

    monkeypatch.setattr(recap_views, "funnel_snapshots", fake)
    page = w.client("max").get(f"/cycles/{w.world.cycles['recap']}/recap").text
    assert "KPIs before and after" in page and "MQL→SQL rate" in page
    section = page[page.index('id="kpis"') :]
    assert "before 18.0%" in section and "after 24.5%" in section
    assert "#16a34a" in section  # the improvement is drawn green


def test_kpis_before_and_after_read_as_the_numbers_page_says_them(w: Rig) -> None:
    """The recap's KPIs say their values as the Numbers page does (an amount with its
    thousands, a count without decimals), and a cycle that has not reached Recap says its own
    numbers are measured then, not that there are none."""
    cid = w.world.cycles["execute"]
    with w.store.unit_of_work() as s:
        for kpi, value in (("revenue_won", 1244410.0), ("untouched_leads", 1505.0)):
            s.add(
                CycleKpiSnapshot(
                    cycle_id=cid,
                    kind="baseline",
                    kpi=kpi,
                    value=value,
                    window_start=date(2026, 1, 1),
                    window_end=date(2026, 1, 31),
                    sla_hours=24,
                )
            )
    page = w.client("max").get(f"/cycles/{cid}/recap").text
    section = page[page.index('id="kpis"') :]
    assert "before 1,244,410.00" in section and "before 1,505" in section
    assert "after: measured at the recap" in section and "no data" not in section
    report = w.client("max").get(f"/cycles/{cid}/recap.csv").text
    assert "before the cycle 1,244,410.00, after it measured at the recap" in report


def test_board_progress_and_risk(w: Rig) -> None:
    page = w.client("max").get("/cycles").text
    assert page.count("<tr>") >= 5
    execute_row = page[page.index("Q3 hand-off alignment") :].split("</tr>")[0]
    assert "1 overdue" in execute_row and "At risk" in execute_row
    recap_row = page[page.index("Q2 hand-off alignment") :].split("</tr>")[0]
    assert "2 of 2 done" in recap_row and "On track" in recap_row
    filtered = w.client("max").get("/cycles?phase=recap").text
    assert "Q2 hand-off alignment" in filtered and "Q3 hand-off alignment" not in filtered


def items(html: str) -> int:
    return len(re.findall(r'<div class="item[ "]', html))


def test_actions_can_be_filtered(w: Rig) -> None:
    cycle = w.world.cycles["execute"]
    sid = w.personas["sid"].id
    base = f"/cycles/{cycle}/actions"
    every = w.client("max").get(base).text
    mine = w.client("max").get(f"{base}?owner={sid}").text
    overdue = w.client("max").get(f"{base}?due=overdue").text
    marketing = w.client("max").get(f"{base}?team=marketing").text
    assert items(every) == 3
    assert items(mine) == 2 and "Owner: Sid Member" in mine
    assert items(overdue) == 1
    assert items(marketing) == 1 and "Owner: Meg Member" in marketing
    none = w.client("max").get(f"{base}?status=dropped").text
    assert "No action items match these filters" in none


def test_empty_states_say_what_to_do(w: Rig) -> None:
    ola = w.client("ola")
    assert "No cycles yet" in ola.get("/cycles").text
    work = ola.get("/my").text
    assert "No open action items" in work and "Nothing to answer" in work
    identify = w.world.cycles["identify"]
    actions_tab = w.client("lee").get(f"/cycles/{identify}/actions").text
    assert "They are planned once the cycle is in Plan" in actions_tab
    recap_page = w.client("max").get(f"/cycles/{w.world.cycles['recap']}/recap").text
    # the one earlier cycle of these teams is finished: the trend needs a second
    assert (
        "The trend shows the finished cycles of this playbook run by these teams, from the "
        "second one on: 1 finished so far." in recap_page
    )


def test_unknown_or_hidden_cycle_is_a_friendly_404(w: Rig) -> None:
    for who, url in (("sid", "/cycles/999999"), ("ola", f"/cycles/{w.world.cycles['execute']}")):
        resp = w.client(who).get(url)
        assert resp.status_code == 404 and "Not found" in resp.text and "Traceback" not in resp.text


def test_answering_a_question_from_the_cycle_page(w: Rig) -> None:
    cycle = w.world.cycles["identify"]
    page = w.client("sam").get(f"/cycles/{cycle}").text
    item = int(re.search(r'action="/checklist/(\d+)/answer"', page).group(1))
    bad = post(w, "sam", f"/checklist/{item}/answer", answer="maybe", next=f"/cycles/{cycle}")
    assert bad.status_code == 422 and "Answer yes, no or unsure" in bad.text
    ok = post(
        w,
        "sam",
        f"/checklist/{item}/answer",
        answer="yes",
        note="Seen twice",
        next=f"/cycles/{cycle}",
    )
    assert ok.status_code == 303 and ok.headers["location"] == f"/cycles/{cycle}#item-{item}"
    again = w.client("sam").get(f"/cycles/{cycle}").text
    assert "Note: Seen twice" in again


def test_without_javascript_an_items_box_leads_to_its_own_page_with_the_forms(w: Rig) -> None:
    """The list carries each item's summary; a box opened without JavaScript shows a link to
    the item's own page, where its forms are, and saving there returns to the list."""
    item_id, execute = w.world.actions["execute_sid"], w.world.cycles["execute"]
    listing = w.client("lee").get(f"/cycles/{execute}/actions").text
    assert f'action="/actions/{item_id}/update"' not in listing  # fetched when opened
    link = f"/actions/{item_id}?next=/cycles/{execute}/actions#update-{item_id}"
    assert f'href="{link}"' in listing
    alone = w.client("lee").get(link.split("#")[0])
    assert alone.status_code == 200
    for form in ("update", "assign", "target"):
        assert f'action="/actions/{item_id}/{form}"' in alone.text
    version = re.search(
        rf'action="/actions/{item_id}/update".*?name="next" value="([^"]+)".*?'
        r'name="version" value="(\d+)"',
        alone.text,
        re.S,
    )
    assert version.group(1) == f"/cycles/{execute}/actions"
    saved = post(
        w, "lee", f"/actions/{item_id}/update", next=version.group(1), version=version.group(2),
        status="in_progress", confidence="on_track",
    )  # fmt: skip
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/cycles/{execute}/actions#action-{item_id}"
    assert w.client("ola").get(f"/actions/{item_id}").status_code == 404  # not her team's
