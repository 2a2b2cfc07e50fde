"""Each team's own answers and the vote on every face (issue 18): before the reveal another
team's answers appear on no page, in no API answer, CSV export, timeline, audit-log event,
digest or CLI output; after it the divergence map shows them. The vote's totals show on no
face before it closes. The pages work with plain forms."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from models.cadence.digest import digest_content
from models.enums import GapDecision
from models.schemas import CycleCreate, GapCreate
from models.services import cycles, gaps, team_input
from models.services.common import person_by_email
from models.tables import Gap
from tests.test_web_support import Rig, rig

SECRET = "marketing-only-remark-7391"
PLAYBOOK = "lead-definition-and-scoring"


def start(s: Any) -> Any:
    from models import phases

    c = phases.start_cycle(
        s,
        CycleCreate(playbook=PLAYBOOK, title="Each team first", point_persons=["mia@acme.test"]),
        person_by_email(s, "sam@acme.test"),
    )
    s.flush()
    return c


def marketing_answers(c: Any) -> dict[str, Any]:
    qs = team_input.questions(c)
    return {
        "answers": {q.key: "yes" for q in qs},
        "ratings": {r.key: 4 for r in team_input.ratings(c)},
        "comments": {qs[0].key: SECRET},
    }


@pytest.fixture(scope="module")
def web(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with rig(database_url, tmp_path_factory.mktemp("align")) as r:
        yield r


def test_another_teams_answers_show_on_no_face_until_the_reveal(web: Rig) -> None:
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            c = start(s)
            cid = c.id
            body = marketing_answers(c)
            qs, rs = team_input.questions(c), team_input.ratings(c)
        meg = r.client("meg")
        saved = meg.put(f"/api/v1/cycles/{cid}/own-answers", json=body, headers=r.bearer("meg"))
        assert saved.status_code == 200 and SECRET in saved.text, saved.text
        done = meg.post(f"/api/v1/cycles/{cid}/own-answers/submit", headers=r.bearer("meg"))
        assert done.status_code == 200 and not done.json()["revealed"], done.text
        # Sales (a member, its lead, its point person, the manager on sales) sees none of it.
        for name in ("sid", "lee", "sam", "max"):
            c_ = r.client(name)
            api = c_.get(f"/api/v1/cycles/{cid}/own-answers", headers=r.bearer(name)).json()
            mkt = next(t for t in api["teams"] if t["team"] == "Marketing")
            assert mkt["submitted"] and not mkt["visible"] and not api["revealed"]
            pages = {
                "page": f"/cycles/{cid}/own-answers",
                "cycle page": f"/cycles/{cid}",
                "gaps page": f"/cycles/{cid}/gaps",
                "CSV": f"/cycles/{cid}/divergence.csv",
                "timeline": f"/cycles/{cid}/timeline",
                "report": f"/cycles/{cid}/report",
                "recap CSV": f"/cycles/{cid}/recap.csv",
                "My work": "/my",
            }
            calls = {
                "API CSV": f"/api/v1/cycles/{cid}/divergence.csv",
                "readiness": f"/api/v1/cycles/{cid}/readiness",
                "events": f"/api/v1/cycles/{cid}/events",
                "gaps API": f"/api/v1/cycles/{cid}/gaps",
            }
            faces = {"API": json.dumps(api)}
            for face, url in [*pages.items(), *calls.items()]:
                got = c_.get(url, headers=r.bearer(name) if face in calls else None)
                assert got.status_code == 200, (face, got.status_code)
                faces[face] = got.text
            for face, text in faces.items():
                assert SECRET not in text, f"{name} sees Marketing's answers on the {face}"
            assert "hidden until both teams have submitted" in faces["CSV"]
            assert "team_answers" not in faces["timeline"]  # sentences, not keys
            assert "submitted their team&#39;s own answers" in faces["timeline"]
        with r.store.unit_of_work() as s:
            digest = digest_content(s, date.today(), [cid])[cid]
        assert SECRET not in digest.text(date.today())
        # Marketing's own lead sees them.
        assert SECRET in r.login("lou@acme.test").get(f"/cycles/{cid}/own-answers").text
        # Sales answers on the page (plain form) and submits: both are in, the map shows.
        sid = r.client("sid")
        form = {"csrf": r.personas["sid"].csrf, "submit": "1"}
        form |= {f"answer-{q.key}": "no" for q in qs} | {f"rating-{x.key}": "2" for x in rs}
        resp = sid.post(f"/cycles/{cid}/own-answers", data=form)
        assert resp.status_code == 303, resp.text[:300]
        page = sid.get(f"/cycles/{cid}/own-answers").text
        assert SECRET in page and "The teams differ" in page and "4 of 5" in page
        csv_text = sid.get(f"/cycles/{cid}/divergence.csv").text
        assert SECRET in csv_text and "The teams differ" in csv_text


def test_a_refused_form_keeps_what_was_typed(web: Rig) -> None:
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            cid = start(s).id
        sid = r.client("sid")
        form = {"csrf": r.personas["sid"].csrf, "submit": "1", "comment-lead_quality": "Typed"}
        resp = sid.post(f"/cycles/{cid}/own-answers", data=form)
        assert resp.status_code == 422
        assert "before submitting" in resp.text and 'value="Typed"' in resp.text


def test_the_vote_shows_its_totals_on_no_face_until_it_closes(web: Rig) -> None:
    r = web
    cid = r.world.cycles["identify"]
    gid = r.world.gaps["identify"]
    with r.isolated():
        sid = r.client("sid")
        resp = sid.post(
            f"/cycles/{cid}/vote", data={"csrf": r.personas["sid"].csrf, f"votes-{gid}": "2"}
        )
        assert resp.status_code == 303
        over = sid.post(
            f"/cycles/{cid}/vote", data={"csrf": r.personas["sid"].csrf, f"votes-{gid}": "3"}
        )
        assert over.status_code == 422 and "At most 2 votes on one gap" in over.text
        api = r.client("lee").get(f"/api/v1/cycles/{cid}/votes", headers=r.bearer("lee")).json()
        assert api["voters"] == 1 and not api["closed"]
        assert all(g["total"] is None and g["mine"] == 0 for g in api["gaps"])
        page = r.client("lee").get(f"/cycles/{cid}/vote").text
        assert "1 person has voted so far" in page and "The gaps in order of votes" not in page
        events = r.client("lee").get(f"/api/v1/cycles/{cid}/events", headers=r.bearer("lee")).json()
        cast = [e for e in events["items"] if e["verb"] == "vote.cast"]
        assert cast and str(gid) not in json.dumps(cast[0]["after"])
        closed = r.client("sam").post(f"/api/v1/cycles/{cid}/votes/close", headers=r.bearer("sam"))
        assert closed.status_code == 200
        top = closed.json()["gaps"][0]
        assert top["id"] == gid and top["total"] == 2 and top["rank"] == 1
        page = r.client("lee").get(f"/cycles/{cid}/vote").text
        assert "The gaps in order of votes" in page and "2 votes" in page


def test_a_gap_that_keeps_coming_back_shows_with_its_history(web: Rig) -> None:
    """The world's identify cycle has a gap that came up in two older cycles of the same two
    teams: the vote page and the API show it with its history; another team sees nothing."""
    r = web
    cid = r.world.cycles["identify"]
    with r.isolated():
        with r.store.unit_of_work() as s:
            g = s.get(Gap, r.world.gaps["identify"])
            for older in ("closed", "recap"):
                s.add(
                    Gap(
                        cycle_id=r.world.cycles[older],
                        key=g.key,
                        title=g.title,
                        category=g.category,
                        root_cause=g.root_cause,
                        severity=g.severity,
                        source=g.source,
                        decision=GapDecision.DEFERRED,
                    )
                )
            title = g.title
        api = r.client("sid").get(f"/api/v1/cycles/{cid}/recurring-gaps", headers=r.bearer("sid"))
        found = [x for x in api.json() if x["gap_id"] == r.world.gaps["identify"]]
        assert found and found[0]["cycles"] == 3 and found[0]["needs"] == "manager"
        page = r.client("meg").get(f"/cycles/{cid}/vote").text
        assert "Gaps that keep coming back" in page and "Came up in 3 cycles" in page
        # on the page, not in its title
        assert "Came up in 3 cycles" not in page.split("</title>")[0]
        assert "Needs a manager or a decision across the teams" in page and title in page
        other = r.client("ola").get(f"/api/v1/cycles/{cid}/recurring-gaps", headers=r.bearer("ola"))
        assert other.status_code == 404


def test_a_teammates_answers_saved_meanwhile_are_kept(web: Rig) -> None:
    """Two people of one team fill in the form from pages opened at the same time: the second
    save writes only what its person changed."""
    r = web
    with r.isolated():
        with r.store.unit_of_work() as s:
            c = start(s)
            cid, first, second = c.id, *[q.key for q in team_input.questions(c)[:2]]
        stale = {f"was-answer-{first}": "", f"was-answer-{second}": "", f"was-comment-{first}": ""}
        lee = r.client("lee")
        lee.post(
            f"/cycles/{cid}/own-answers",
            data={"csrf": r.personas["lee"].csrf, **stale, f"answer-{first}": "yes"}
            | {f"comment-{first}": "From the pipeline review"},
        )
        sid = r.client("sid")
        resp = sid.post(
            f"/cycles/{cid}/own-answers",
            data={"csrf": r.personas["sid"].csrf, **stale, f"answer-{second}": "no"},
        )
        assert resp.status_code == 303
        m = sid.get(f"/api/v1/cycles/{cid}/own-answers", headers=r.bearer("sid")).json()
        sales = {q["key"]: q["sides"][0] for q in m["questions"]}
        assert sales[first]["answer"] == "yes" and sales[second]["answer"] == "no"
        assert sales[first]["comment"] == "From the pipeline review"


def test_refused_api_writes_are_one_line_4xx_and_change_nothing(web: Rig) -> None:
    r = web
    cid = r.world.cycles["identify"]
    gid = r.world.gaps["identify"]
    with r.isolated():
        with r.store.unit_of_work() as s:
            own = start(s).id
        before = r.snapshot()
        sid = r.client("sid")
        refused = [
            ("put", f"/api/v1/cycles/{own}/own-answers", {"ratings": {"lead_quality": 7}}, 422),
            ("put", f"/api/v1/cycles/{own}/own-answers", {"answers": {"nope": "yes"}}, 422),
            ("put", f"/api/v1/cycles/{own}/own-answers", {"answers": "yes"}, 422),
            ("post", f"/api/v1/cycles/{own}/own-answers/submit", None, 422),
            ("post", f"/api/v1/cycles/{own}/own-answers/reveal", None, 403),
            ("put", f"/api/v1/cycles/{cid}/own-answers", {"answers": {}}, 422),  # not asked
            ("put", f"/api/v1/cycles/{cid}/votes", {"votes": {str(gid): 3}}, 422),
            ("put", f"/api/v1/cycles/{cid}/votes", {"votes": {"x": 1}}, 422),
            ("post", f"/api/v1/cycles/{cid}/votes/close", None, 403),
        ]
        for method, url, body, status in refused:
            resp = sid.request(method.upper(), url, json=body, headers=r.bearer("sid"))
            assert resp.status_code == status, (url, body, resp.text)
            message = resp.json()["error"]["message"]
            assert message and "\n" not in message and "Traceback" not in message
        assert r.snapshot() == before


def test_my_work_lists_own_answers_and_votes_until_they_are_done(web: Rig) -> None:
    """Sid (sales) finds his team's own answers to give and his votes to cast in My work and
    the API's inbox, each with the link to its page; each entry goes once done (the answers
    for everyone of his team, the votes for him alone)."""
    from tests.test_web_inbox import menu_count, section

    r = web
    identify = r.world.cycles["identify"]
    with r.isolated():
        with r.store.unit_of_work() as s:
            c = start(s)
            cid, title = c.id, c.title
            qs, rs = team_input.questions(c), team_input.ratings(c)
            lee = person_by_email(s, "lee@acme.test")
            gap, _ = gaps.add_gap(
                s,
                cycles.get_cycle(s, identify),
                GapCreate(title="Leads wait a day", category="hand_off", root_cause="process"),
                lee,
            )
            ids = [g.id for g in s.query(Gap).filter(Gap.cycle_id == identify).order_by(Gap.id)]
        sid = r.client("sid")
        page = sid.get("/my").text
        own = section(page, "own_answers")
        assert f"{title} · Give Sales's own answers to the Identify questions" in own
        assert f'href="/cycles/{cid}/own-answers"' in page
        assert "Vote on the gaps: 3 votes left; nobody sees the totals" in section(page, "votes")
        assert f'href="/cycles/{identify}/vote"' in page
        api = sid.get("/api/v1/me/inbox", headers=r.bearer("sid")).json()
        by_key = {sec["key"]: sec for sec in api["sections"]}
        assert by_key["own_answers"]["total"] == 1
        assert by_key["own_answers"]["entries"][0]["url"] == f"/cycles/{cid}/own-answers"
        votes_urls = [e["url"] for e in by_key["votes"]["entries"]]
        assert f"/cycles/{identify}/vote" in votes_urls
        assert api["waiting"] == menu_count(page) == menu_count(sid.get("/cycles").text)

        # Sid submits his team's answers: gone for Sales, still there for Marketing.
        form = {"csrf": r.personas["sid"].csrf, "submit": "1"}
        form |= {f"answer-{q.key}": "no" for q in qs} | {f"rating-{x.key}": "2" for x in rs}
        assert sid.post(f"/cycles/{cid}/own-answers", data=form).status_code == 303
        for name in ("sid", "lee"):
            assert f"/cycles/{cid}/own-answers" not in r.client(name).get("/my").text
        assert f'href="/cycles/{cid}/own-answers"' in r.client("meg").get("/my").text

        # Sid spends his votes (at most 2 on one gap): the entry counts down, then goes.
        ballot = {f"votes-{ids[0]}": "2"}
        sid.post(f"/cycles/{identify}/vote", data={"csrf": r.personas["sid"].csrf, **ballot})
        assert "1 vote left" in section(sid.get("/my").text, "votes")
        ballot[f"votes-{ids[1]}"] = "1"
        sid.post(f"/cycles/{identify}/vote", data={"csrf": r.personas["sid"].csrf, **ballot})
        page = sid.get("/my").text
        assert f'href="/cycles/{identify}/vote"' not in page
        api = sid.get("/api/v1/me/inbox", headers=r.bearer("sid")).json()
        assert api["waiting"] == menu_count(page) == menu_count(sid.get("/cycles").text)
        assert "3 votes left" in section(r.client("lee").get("/my").text, "votes")
