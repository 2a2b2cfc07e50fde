"""The admin pages for managers: people (add, import from a file, role, team, deactivate,
invitation and reset links), teams, notification channels and playbooks; and choosing a
password from a link. Each test runs in a savepoint of one populated world (tests/
test_web_support.py), so nothing one test writes is seen by the next."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.cadence.tables import ChannelKind, Notification, NotificationChannel
from models.services import accounts
from models.services.common import person_by_email
from models.tables import Event, Person, Team
from tests.test_web_support import Rig, rig

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
#: What no page may show: raw keys, enum values, "(s)" plurals.
RAW = re.compile(r"\(s\)|point_person|_\w+_|\bNone\b|team:[a-z]")


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("admin")) as r:
        r.app.state.deliver_account_links = lambda store: None  # no network in these tests
        yield r


@pytest.fixture
def r(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


def _csrf(r: Rig, who: str) -> str:
    return r.personas[who].csrf


def _visible_text(html: str) -> str:
    body = html.split("<main", 1)[-1]
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", body)


def _count(r: Rig, model: type) -> int:
    with r.store.unit_of_work() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


# --- people ----------------------------------------------------------------------------------


def test_a_manager_adds_a_person_and_is_given_the_invitation_link_to_pass_on(r: Rig) -> None:
    c = r.client("max")
    resp = c.post(
        "/admin/people",
        data={
            "csrf": _csrf(r, "max"),
            "name": "Nia New",
            "email": "Nia@Acme.test",
            "team": "marketing",
            "role": "lead",
            "invite": "1",
        },
    )
    assert resp.status_code == 201, resp.text
    assert "has no notification channel of their own" in resp.text
    link = re.search(r'<div class="token" id="link">([^<]+)</div>', resp.text).group(1)
    assert link.startswith("http://testserver/password/")
    with r.store.unit_of_work() as s:
        nia = person_by_email(s, "nia@acme.test")
        assert (nia.name, nia.team.key, nia.role.value) == ("Nia New", "marketing", "lead")
        assert not accounts.has_password(s, nia)
    # the new person opens the link and chooses a password: signed in, the link used up
    path = link.removeprefix("http://testserver")
    anon = r.client()
    page = anon.get(path)
    assert page.status_code == 200 and "Welcome, Nia New" in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    form = {"csrf": token, "new_password": "violet-harbour-lantern", "repeat": "x"}
    refused = anon.post(path, data=form)
    assert refused.status_code == 422 and "the two passwords differ" in refused.text
    form["repeat"] = form["new_password"]
    done = anon.post(path, data=form)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert anon.get("/my").status_code == 200  # signed in
    again = r.client().get(path)
    assert again.status_code == 410 and "already been used" in again.text
    with r.store.unit_of_work() as s:
        assert accounts.authenticate(s, "nia@acme.test", "violet-harbour-lantern").name == "Nia New"


def test_an_invitation_goes_to_the_persons_own_channel_not_to_the_team(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        sid = person_by_email(s, "sid@acme.test")
        sales = s.scalar(select(Team).where(Team.key == "sales"))
        s.add(
            NotificationChannel(
                person_id=sid.id, kind=ChannelKind.EMAIL, url="mailto://sid:pw@mail.acme.test"
            )
        )
        s.add(NotificationChannel(team_id=sales.id, kind=ChannelKind.SLACK, url="slack://T1/B2/C3"))
        sid_id = sid.id
    c = r.client("max")
    resp = c.post(
        f"/admin/people/{sid_id}/link", data={"csrf": _csrf(r, "max"), "purpose": "reset"}
    )
    assert resp.status_code == 303
    assert "is on its way to Sid" in c.get(resp.headers["location"]).text
    with r.store.unit_of_work() as s:
        sent = s.scalars(
            select(Notification).where(Notification.recipient == "sid@acme.test")
        ).all()
        assert len(sent) == 1 and sent[0].channel.person_id == sid_id
        assert "/password/" in sent[0].body and sent[0].status.value == "pending"
        event = s.scalars(select(Event).where(Event.verb == "account.link_sent")).one()
        assert "pw" not in str(event.after) and "/password/" not in str(event.after)


def test_people_are_imported_from_a_file_or_nobody_is(r: Rig) -> None:
    c = r.client("max")
    bad = (
        "name,email,team,role\n"
        "Ana Able,ana@acme.test,Sales,member\n"
        "Ben Bad,not-an-email,Sales,lead\n"
        "Cai Cross,cai@acme.test,Finance,\n"
        "Dee Dup,ana@acme.test,Marketing,\n"
        "Eve Even,eve@acme.test,marketing,boss\n"
    )
    before = _count(r, Person)
    resp = c.post(
        "/admin/people/import",
        data={"csrf": _csrf(r, "max")},
        files={"file": ("people.csv", bad.encode(), "text/csv")},
    )
    assert resp.status_code == 422
    text = _visible_text(resp.text)
    assert "4 problems in the file, so nobody was added" in text
    assert "line 3, column “email”: not-an-email is not an email address" in text
    assert "line 4, column “team”: no team “Finance”" in text
    assert "line 5, column “email”: ana@acme.test is already on line 2" in text
    assert "line 6, column “role”: “boss” is not a role" in text
    assert _count(r, Person) == before  # the store unchanged
    good = (
        "Name,Email,Team,Role\nAna Able,ana@acme.test,Sales,\n"
        "Bo Bright,bo@acme.test,marketing,point person\n"
    )
    done = c.post(
        "/admin/people/import",
        data={"csrf": _csrf(r, "max")},
        files={"file": ("people.csv", good.encode(), "text/csv")},
    )
    assert done.status_code == 303
    assert "2 people added" in c.get("/admin/people").text
    again = c.post(
        "/admin/people/import",
        data={"csrf": _csrf(r, "max")},
        files={"file": ("people.csv", good.encode(), "text/csv")},
    )
    assert again.status_code == 303  # the same file again changes nothing
    assert _count(r, Person) == before + 2


def test_a_deactivated_person_cannot_sign_in_nor_be_given_work_and_keeps_history(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        sid_id = person_by_email(s, "sid@acme.test").id
    sid = r.client("sid")
    assert sid.get("/my").status_code == 200
    c = r.client("max")
    resp = c.post(f"/admin/people/{sid_id}/deactivate", data={"csrf": _csrf(r, "max")})
    assert resp.status_code == 303
    assert "Deactivated" in c.get(f"/admin/people/{sid_id}").text
    assert sid.get("/my").status_code == 303  # the session no longer works
    assert r.client().get("/api/v1/me", headers=r.bearer("sid")).status_code == 401
    # not offered as an owner, and refused as one
    execute = r.world.cycles["execute"]
    page = r.client("lee").get(f"/cycles/{execute}/actions").text
    assert '<option value="sid@acme.test">' not in page  # the owner pickers' list
    item = r.world.actions["plan_unassigned"]
    lee = r.client("lee")
    back_to = f"/cycles/{r.world.cycles['plan']}/actions"
    refused = lee.post(
        f"/actions/{item}/assign",
        data={"csrf": _csrf(r, "lee"), "owner": "sid@acme.test", "next": back_to},
    )
    assert refused.status_code in (404, 422) and "deactivated" in refused.text
    with r.store.unit_of_work() as s:
        assert s.get(Person, sid_id) is not None  # kept, with everything they did
        verbs = s.scalars(select(Event.verb).where(Event.object_id == sid_id)).all()
        assert "person.deactivated" in verbs
    back = c.post(f"/admin/people/{sid_id}/reactivate", data={"csrf": _csrf(r, "max")})
    assert back.status_code == 303


def test_the_only_manager_cannot_be_demoted_or_deactivate_themself(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        max_id = person_by_email(s, "max@acme.test").id
    c = r.client("max")
    resp = c.post(
        f"/admin/people/{max_id}",
        data={"csrf": _csrf(r, "max"), "name": "Max Manager", "team": "sales", "role": "lead"},
    )
    assert resp.status_code == 422 and "the only active manager" in resp.text
    resp = c.post(f"/admin/people/{max_id}/deactivate", data={"csrf": _csrf(r, "max")})
    assert resp.status_code == 422 and "cannot deactivate yourself" in resp.text


def test_role_and_team_changes_are_saved_and_logged(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        meg_id = person_by_email(s, "meg@acme.test").id
    c = r.client("max")
    resp = c.post(
        f"/admin/people/{meg_id}",
        data={"csrf": _csrf(r, "max"), "name": "Meg Member", "team": "sales", "role": "lead"},
    )
    assert resp.status_code == 303
    assert "is now a lead of Sales" in c.get(resp.headers["location"]).text
    history = _visible_text(c.get(f"/admin/people/{meg_id}").text)
    assert (
        "Max Manager moved them from Marketing to Sales and made them a lead (was a member)."
        in history
    )
    assert "aligncycle added them to Marketing as a member." in history
    with r.store.unit_of_work() as s:
        meg = s.get(Person, meg_id)
        assert (meg.team.key, meg.role.value) == ("sales", "lead")
        event = s.scalars(select(Event).where(Event.verb == "person.updated")).one()
        assert event.before == {"team": "marketing", "role": "member"}


# --- teams -----------------------------------------------------------------------------------


def test_a_manager_adds_renames_and_fills_a_team(r: Rig) -> None:
    c = r.client("max")
    resp = c.post("/admin/teams", data={"csrf": _csrf(r, "max"), "name": "Customer Success"})
    assert resp.status_code == 303
    team_url = resp.headers["location"]
    dup = c.post("/admin/teams", data={"csrf": _csrf(r, "max"), "name": "customer success"})
    assert dup.status_code == 422 and "already called" in dup.text
    renamed = c.post(team_url, data={"csrf": _csrf(r, "max"), "name": "Customer Care"})
    assert renamed.status_code == 303
    moved = c.post(team_url + "/members", data={"csrf": _csrf(r, "max"), "email": "meg@acme.test"})
    assert moved.status_code == 303
    page = c.get(team_url).text
    assert "<h1>Customer Care</h1>" in page and "Meg Member" in page
    with r.store.unit_of_work() as s:
        assert person_by_email(s, "meg@acme.test").team.key == "customer-success"


# --- channels --------------------------------------------------------------------------------


def test_channels_are_added_and_removed_with_their_secrets_masked(r: Rig) -> None:
    c = r.client("max")
    secret_url = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    resp = c.post(
        "/admin/channels",
        data={"csrf": _csrf(r, "max"), "kind": "slack", "owner": "team:sales", "url": secret_url},
    )
    assert resp.status_code == 303
    page = c.get("/admin/channels").text
    assert "XXXXSECRETXXXX" not in page and "Team Sales" in page and "Slack" in page
    wrong = c.post(
        "/admin/channels",
        data={"csrf": _csrf(r, "max"), "kind": "email", "owner": "team:sales", "url": "ftp://x"},
    )
    assert wrong.status_code == 422 and "apprise" in _visible_text(wrong.text)
    assert _count(r, NotificationChannel) == 1
    with r.store.unit_of_work() as s:
        ch_id = s.scalar(select(NotificationChannel.id))
    gone = c.post(f"/admin/channels/{ch_id}/remove", data={"csrf": _csrf(r, "max")})
    assert gone.status_code == 303
    assert _count(r, NotificationChannel) == 0


# --- playbooks -------------------------------------------------------------------------------


def test_a_playbook_preview_lists_phases_and_questions_in_words(r: Rig) -> None:
    c = r.client("sam")
    listing = c.get("/playbooks")
    assert listing.status_code == 200
    first = re.search(r'href="(/playbooks/\d+)"', listing.text).group(1)
    page = c.get(first)
    assert page.status_code == 200
    text = _visible_text(page.text)
    for phase in ("1. Identify", "2. Plan", "3. Execute", "4. Recap"):
        assert phase in text
    assert "Answered by" in text and "A cycle lasts" in text
    assert "Start a cycle with this playbook" in text  # sam is a point person
    start = re.search(r'href="(/cycles/new\?playbook=[^"]+)"', page.text).group(1)
    form = c.get(start).text
    name = start.split("=", 1)[1]
    assert re.search(rf'<option value="{re.escape(name)}" selected', form)


def test_an_uploaded_playbook_is_checked_with_lines_and_fields_in_words(r: Rig) -> None:
    c = r.client("max")
    bad = (
        "name: test-book\nversion: 1\ntitle: A test\nphases:\n  identify:\n    questions:\n"
        "      - key: one\n        answer: yes_no\nsettings:\n  cycle_length_days: 0\n"
    )
    resp = c.post(
        "/playbooks/check",
        data={"csrf": _csrf(r, "max")},
        files={"file": ("book.yaml", bad.encode(), "application/yaml")},
    )
    assert resp.status_code == 422
    text = _visible_text(resp.text)
    assert "line 7, the Identify phase, question 1, text: is missing" in text
    assert "line 10, settings, cycle length in days:" in text
    good = (PLAYBOOKS / "sales-marketing-handoff.yaml").read_bytes()
    ok = c.post(
        "/playbooks/check",
        data={"csrf": _csrf(r, "max")},
        files={"file": ("handoff.yaml", good, "application/yaml")},
    )
    assert ok.status_code == 200 and "is a valid playbook" in ok.text and "1. Identify" in ok.text
    refused = r.client("sam").post(
        "/playbooks/check",
        data={"csrf": _csrf(r, "sam")},
        files={"file": ("handoff.yaml", good, "application/yaml")},
    )
    assert refused.status_code == 403


# --- words -----------------------------------------------------------------------------------


def test_admin_pages_show_no_raw_keys_enums_or_plural_s(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        sid_id = person_by_email(s, "sid@acme.test").id
        team_id = s.scalar(select(Team.id).where(Team.key == "sales"))
        s.add(NotificationChannel(team_id=team_id, kind=ChannelKind.TEAMS, url="workflows://h/x"))
    c = r.client("max")
    pages = [
        "/admin/people",
        f"/admin/people/{sid_id}",
        "/admin/teams",
        f"/admin/teams/{team_id}",
        "/admin/channels",
        "/playbooks",
        "/admin/people?show=all",
    ]
    first = re.search(r'href="(/playbooks/\d+)"', c.get("/playbooks").text).group(1)
    for path in [*pages, first]:
        resp = c.get(path)
        assert resp.status_code == 200, path
        found = RAW.findall(_visible_text(resp.text))
        assert found == [], f"{path}: {found}"


def test_a_deactivated_point_person_is_not_offered_for_a_new_cycle(r: Rig) -> None:
    with r.store.unit_of_work() as s:
        mia_id = person_by_email(s, "mia@acme.test").id
    assert 'value="mia@acme.test"' in r.client("sam").get("/cycles/new").text
    c = r.client("max")
    assert (
        c.post(f"/admin/people/{mia_id}/deactivate", data={"csrf": _csrf(r, "max")}).status_code
        == 303
    )
    assert 'value="mia@acme.test"' not in r.client("sam").get("/cycles/new").text


# --- the API ---------------------------------------------------------------------------------


def test_the_api_adds_imports_deactivates_and_invites_people(r: Rig) -> None:
    c = r.client()
    max_ = r.bearer("max")
    before = _count(r, Person)
    bad = c.post(
        "/api/v1/people/import",
        headers={**max_, "content-type": "text/csv"},
        content=b"name,email,team\nAna Able,ana@acme.test,Nowhere\n",
    )
    assert bad.status_code == 422
    assert "line 2, column “team”: no team “Nowhere”" in bad.json()["error"]["message"]
    assert _count(r, Person) == before
    added = c.post(
        "/api/v1/people",
        headers=max_,
        json={"name": "Ana Able", "email": "ana@acme.test", "team": "sales", "invite": True},
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["person"]["role"] == "member"
    assert body["invitation"]["link"].startswith("http://testserver/password/")
    assert body["invitation"]["sent_to"] == []
    ana = body["person"]["id"]
    off = c.patch(f"/api/v1/people/{ana}", headers=max_, json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    listed = c.get("/api/v1/people?active=false", headers=max_).json()
    assert [p["email"] for p in listed["items"]] == ["ana@acme.test"]
    refused = c.post(f"/api/v1/people/{ana}/link", headers=max_, json={"purpose": "reset"})
    assert refused.status_code == 422 and "reactivate them first" in refused.text
    renamed = c.patch(
        f"/api/v1/teams/{body['person']['team']['id']}", headers=max_, json={"name": "Field"}
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Field"
    lead = c.patch(f"/api/v1/people/{ana}", headers=r.bearer("lee"), json={"active": True})
    assert lead.status_code == 403 and "only managers" in lead.json()["error"]["message"]


def test_the_people_list_is_paged_and_filtered(r: Rig) -> None:
    rows = "\n".join(f"Person {i:03},p{i:03}@acme.test,Marketing," for i in range(120))
    with r.store.unit_of_work() as s:
        from models.services import people_import

        people_import.import_people(s, "name,email,team,role\n" + rows + "\n", None)
    c = r.client("max")
    first = c.get("/admin/people?team=marketing").text
    assert "Page 1 of 3" in first and "123 in all" in first  # 120, and Mia, Lou and Meg
    third = c.get("/admin/people?team=marketing&page=3").text
    assert "Person 119" in third and "Person 000" not in third
    found = c.get("/admin/people?q=person%2007").text
    assert "Person 070" in found and "Person 080" not in found
