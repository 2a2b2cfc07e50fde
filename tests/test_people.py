"""People at company scale, in the domain and on the command line: managers' verbs (checked in
the domain), importing people from CSV (all or nothing, problems by line and column),
invitation and reset links (signed, expiring, used once), deactivation, matching single
sign-on claims, and checking a playbook file in words."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from models.base import utcnow
from models.cadence.tables import ChannelKind, Notification, NotificationChannel
from models.db import Store
from models.errors import Forbidden, InvalidInput
from models.playbook_check import check_text
from models.schemas import PersonUpdate, TeamCreate
from models.services import accounts, invitations, people, people_import, sso
from models.services.common import person_by_email
from tests.conftest import db_snapshot
from tests.test_cli import cli

pytestmark = pytest.mark.usefixtures("cheap_hashing")
SECRET = "s" * 32
PASSWORD = "violet-harbour-lantern"


def _who(s, email: str):  # noqa: ANN001, ANN202
    return person_by_email(s, email)


# --- who may --------------------------------------------------------------------------------


def test_only_managers_run_the_organisation_and_the_last_one_stays(org: Store) -> None:
    with org.unit_of_work() as s:
        lee, max_ = _who(s, "lee@acme.test"), _who(s, "max@acme.test")
        with pytest.raises(Forbidden, match=r"^only managers can add teams \(you are a lead\)$"):
            people.create_team(s, TeamCreate(key="ops", name="Ops"), lee)
        with pytest.raises(Forbidden, match="only managers can deactivate people"):
            people.deactivate_person(s, _who(s, "sid@acme.test"), lee)
        with pytest.raises(InvalidInput, match="the only active manager"):
            people.update_person(s, max_, PersonUpdate(role="lead"), max_)
        with pytest.raises(InvalidInput, match="cannot deactivate yourself"):
            people.deactivate_person(s, max_, max_)
        # a second manager: now the first may step down
        mia = _who(s, "mia@acme.test")
        people.update_person(s, mia, PersonUpdate(role="manager"), max_)
        people.update_person(s, max_, PersonUpdate(role="lead"), mia)
        assert max_.role.value == "lead"


def test_a_deactivated_person_cannot_sign_in_and_keeps_their_history(org: Store) -> None:
    with org.unit_of_work() as s:
        sid = _who(s, "sid@acme.test")
        accounts.set_password(s, sid, PASSWORD)
        raw, _ = accounts.create_session(s, sid)
        token, _ = accounts.create_token(s, sid, "script")
        people.deactivate_person(s, sid, _who(s, "max@acme.test"))
    with org.unit_of_work() as s:
        with pytest.raises(accounts.AuthenticationFailed):
            accounts.authenticate(s, "sid@acme.test", PASSWORD)
        assert accounts.session_for(s, raw) is None
        assert accounts.person_for_token(s, token) is None
        with pytest.raises(Exception, match="deactivated"):
            person_by_email(s, "sid@acme.test")  # not taken as an owner
        sid = people.person_with_email(s, "sid@acme.test")
        assert sid.id and not sid.active  # kept
        with pytest.raises(accounts.AuthenticationFailed, match="no aligncycle account"):
            sso.person_for_claims(s, {"email": "sid@acme.test", "sub": "x"}, "https://idp")


# --- importing people ------------------------------------------------------------------------


def test_a_people_file_with_bad_rows_changes_nothing_and_names_each_problem(org: Store) -> None:
    text = (
        "\ufeffName;E-mail;Team;Role\n"
        "Ana Able;ana@acme.test;Sales;\n"
        "Ben Bad;;Sales;lead\n"
        "Cai Cross;cai@acme.test;Finance;\n"
        "Sid Member;sid@acme.test;Marketing;member\n"
    )
    before = db_snapshot(org)
    with org.unit_of_work() as s, pytest.raises(people_import.ImportRefused) as err:
        people_import.import_people(s, text, _who(s, "max@acme.test"), source="staff.csv")
    assert err.value.problems == [
        "line 3, column “email”: empty",
        "line 4, column “team”: no team “Finance” (the teams: Marketing, Sales)",
        "line 5, column “email”: sid@acme.test already belongs to Sid Member (member, Sales); "
        "change them on the People page, or remove the row",
    ]
    assert str(err.value).startswith("3 rows cannot be imported, so nobody was added: ")
    assert db_snapshot(org) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,email\nA,a@acme.test\n", "the column “team” is missing"),
        ("name,email,team,phone\n", "the column “phone” is not one this import knows"),
        ("", "is empty"),
        ("name,email,team\n", "has a header but no people"),
    ],
)
def test_a_people_file_without_the_right_columns_is_refused(
    org: Store, text: str, message: str
) -> None:
    with org.unit_of_work() as s, pytest.raises(InvalidInput, match=message):
        people_import.import_people(s, text, None)


def test_three_hundred_people_are_imported_at_once_and_again_changes_nothing(org: Store) -> None:
    rows = [
        f"Person {i},p{i}@acme.test,{'Sales' if i % 2 else 'marketing'},member" for i in range(300)
    ]
    text = "name,email,team,role\n" + "\n".join(rows) + "\n"
    with org.unit_of_work() as s:
        out = people_import.import_people(s, text, _who(s, "max@acme.test"))
        assert out.summary() == "300 people added"
    with org.unit_of_work() as s:
        again = people_import.import_people(s, text, _who(s, "max@acme.test"))
        assert again.summary() == "0 people added; 300 were already there"
        assert len(people.list_people(s, active=True)) == 307


def test_a_non_utf8_file_is_refused_in_words() -> None:
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        people_import.decode("name,email,team\nJosé,j@x.test,sales\n".encode("latin-1"))


# --- links ----------------------------------------------------------------------------------


def test_a_link_works_once_until_it_expires(org: Store) -> None:
    now = utcnow()
    with org.unit_of_work() as s:
        sent = invitations.send_link(
            s,
            _who(s, "sid@acme.test"),
            invitations.Purpose.INVITE,
            _who(s, "max@acme.test"),
            secret=SECRET,
            base_url="https://align.example.com/",
            now=now,
        )
        assert not sent.sent and sent.link.startswith("https://align.example.com/password/")
    token = sent.link.rsplit("/", 1)[1]
    with org.unit_of_work() as s:
        late = now + timedelta(days=7, seconds=1)
        with pytest.raises(InvalidInput, match="expired"):
            invitations.check_token(s, token, secret=SECRET, now=late)
        with pytest.raises(InvalidInput, match="expired"):
            invitations.check_token(s, token, secret="another key", now=now)
        with pytest.raises(InvalidInput, match="expired"):
            invitations.check_token(s, token[:-2] + "xx", secret=SECRET, now=now)
        invitations.use_token(s, token, PASSWORD, secret=SECRET, now=now)
    with org.unit_of_work() as s:
        assert accounts.authenticate(s, "sid@acme.test", PASSWORD).email == "sid@acme.test"
        with pytest.raises(InvalidInput, match="already been used"):
            invitations.use_token(s, token, PASSWORD + "x", secret=SECRET, now=now)


def test_a_reset_link_goes_only_to_the_persons_own_channels(org: Store) -> None:
    with org.unit_of_work() as s:
        sid = _who(s, "sid@acme.test")
        sales = sid.team_id
        s.add(
            NotificationChannel(
                person_id=sid.id, kind=ChannelKind.EMAIL, url="mailto://sid@mail.test"
            )
        )
        s.add(NotificationChannel(team_id=sales, kind=ChannelKind.SLACK, url="slack://a/b/c"))
        s.flush()
        invitations.request_reset(s, "SID@acme.test", secret=SECRET, base_url="http://x")
        invitations.request_reset(s, "nobody@acme.test", secret=SECRET, base_url="http://x")
    with org.unit_of_work() as s:
        sent = s.scalars(select(Notification)).all()
        assert [(n.recipient, n.kind.value, n.channel.person_id is not None) for n in sent] == [
            ("sid@acme.test", "account", True)
        ]
        assert "asked for a new password" in sent[0].body


def test_a_lead_cannot_send_links_nor_a_deactivated_person_get_one(org: Store) -> None:
    with org.unit_of_work() as s:
        sid, lee, max_ = (_who(s, f"{n}@acme.test") for n in ("sid", "lee", "max"))
        with pytest.raises(Forbidden, match="only managers can reset passwords"):
            invitations.send_link(
                s, sid, invitations.Purpose.RESET, lee, secret=SECRET, base_url="http://x"
            )
        people.deactivate_person(s, sid, max_)
        with pytest.raises(InvalidInput, match="reactivate them first"):
            invitations.send_link(
                s, sid, invitations.Purpose.INVITE, max_, secret=SECRET, base_url="http://x"
            )


# --- single sign-on claims ------------------------------------------------------------------


def test_sso_claims_match_an_active_person_by_a_verified_email(org: Store) -> None:
    with org.unit_of_work() as s:
        who = sso.person_for_claims(s, {"email": " Sid@ACME.test", "sub": "1"}, "https://idp")
        assert who.email == "sid@acme.test"
        with pytest.raises(accounts.AuthenticationFailed, match="has not verified"):
            sso.person_for_claims(
                s, {"email": "sid@acme.test", "email_verified": False}, "https://idp"
            )
        with pytest.raises(accounts.AuthenticationFailed, match="did not tell us your email"):
            sso.person_for_claims(s, {"sub": "1"}, "https://idp")
        with pytest.raises(accounts.AuthenticationFailed, match="ask a manager to add you"):
            sso.person_for_claims(s, {"email": "eve@elsewhere.test"}, "https://idp")


# --- playbook files, checked in words -------------------------------------------------------


def test_a_playbook_files_problems_name_the_line_and_the_field_in_words() -> None:
    text = (
        "name: t\nversion: 1\ntitle: T\nphases:\n  identify:\n    questions:\n"
        "      - key: one\n        text: Shared?\n        colour: red\n"
        "action_templates:\n  hand_off:\n    - key: a\n      title: A\n      due_in_days: 999\n"
    )
    check = check_text(text)
    assert check.spec is None
    assert check.problems == [
        "line 9, the Identify phase, question 1, colour: is not something a playbook has "
        "(check its spelling)",
        "line 14, proposed action items for “hand off”, item 1, days until due: Input should be "
        "less than or equal to 365",
    ]
    assert check_text("name: [\n").problems[0].startswith("line 2: invalid YAML")
    shipped = Path(__file__).resolve().parent.parent / "playbooks" / "sales-marketing-handoff.yaml"
    assert check_text(shipped.read_text()).spec is not None


# --- the command line -----------------------------------------------------------------------


def test_the_command_line_uses_the_same_verbs(org: Store, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("ALIGNCYCLE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ALIGNCYCLE_BASE_URL", "https://align.example.com")
    from aligncycle.settings import get_settings

    get_settings.cache_clear()
    bad = tmp_path / "people.csv"
    bad.write_text("name,email,team\nAna,ana@acme.test,Nowhere\n")
    before = db_snapshot(org)
    out = cli("person", "import", bad, "--as", "max@acme.test", code=1)
    assert "line 2, column “team”: no team “Nowhere”" in out.output
    assert db_snapshot(org) == before
    refused = cli("person", "deactivate", "sid@acme.test", "--as", "lee@acme.test", code=1)
    assert "only managers can deactivate people" in refused.output
    bad.write_text("name,email,team,role\nAna Able,ana@acme.test,Sales,lead\n")
    assert "1 person added" in cli("person", "import", bad, "--as", "max@acme.test").output
    cli("team", "rename", "sales", "Field Sales", "--as", "max@acme.test")
    cli("person", "set", "ana@acme.test", "--role", "member", "--as", "max@acme.test")
    cli("person", "deactivate", "ana@acme.test", "--as", "max@acme.test")
    listed = cli("person", "list").output
    assert "inactive" in listed
    cli("person", "reactivate", "ana@acme.test", "--as", "max@acme.test")
    invite = cli("person", "invite", "ana@acme.test", "--as", "max@acme.test").output
    assert "pass this link on: https://align.example.com/password/" in invite
    with org.unit_of_work() as s:
        ana = _who(s, "ana@acme.test")
        assert (ana.role.value, ana.team.name, ana.active) == ("member", "Field Sales", True)
    get_settings.cache_clear()


def test_a_reset_link_is_delivered_through_the_persons_channel_and_works(
    org: Store, tmp_path: Path
) -> None:
    import re
    import warnings

    from aligncycle.web import create_app
    from aligncycle.web.auth import SESSION_COOKIE
    from aligncycle.web.deps import WebSettings
    from tests.test_cadence import Receiver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    receiver = Receiver()
    try:
        with org.unit_of_work() as s:
            sid = _who(s, "sid@acme.test")
            s.add(
                NotificationChannel(
                    person_id=sid.id, kind=ChannelKind.WEBHOOK, url=receiver.url("sid")
                )
            )
            raw, ws = accounts.create_session(s, _who(s, "max@acme.test"))
            sid_id, csrf = sid.id, ws.csrf_token
        settings = WebSettings(
            data_dir=tmp_path, secret_key=SECRET, base_url="https://align.example.com"
        )
        client = TestClient(create_app(org, settings), follow_redirects=False)
        client.cookies.set(SESSION_COOKIE, raw)
        resp = client.post(f"/admin/people/{sid_id}/link", data={"csrf": csrf, "purpose": "reset"})
        assert resp.status_code == 303, resp.text
        # delivered after the response, by the request's background task
        [message] = receiver.messages
        assert message["path"] == "/sid" and message["title"] == "Choose a new aligncycle password"
        link = re.search(r"https://align\.example\.com(/password/\S+)", message["message"])
        page = TestClient(create_app(org, settings)).get(link.group(1))
        assert page.status_code == 200 and "Choose a new password" in page.text
        with org.unit_of_work() as s:
            sent = s.scalars(select(Notification)).one()
            assert sent.status.value == "sent"
    finally:
        receiver.close()
