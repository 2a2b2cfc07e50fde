"""People read sentences, not keys: every page of a walked-through world (a cycle in each phase,
every tab, the recap and its exports, numbers, import, account, sign-in, error pages, refused
forms and gates) is searched for raw keys, enum values, field names, ISO dates, "(s)" plurals
and emails in code font. A new one anywhere fails here, naming the page and the words around it.
The admin pages (people, teams, channels), the playbooks and their previews, each team's own
answers, the vote, the Messages page and every cadence message (reminder, escalation, check-in
request, digest) as planned are read the same way.

The timeline's sentences are checked for every verb the domain records on a cycle, so a new
kind of event needs its sentence before it can ship.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from aligncycle.web import seed
from models.schemas import PersonCreate
from models.services import people, story
from models.tables import ActionItem, Cycle, Event
from tests.test_web_support import Rig, rig

ROOT = Path(__file__).resolve().parent.parent

#: What must never reach a person, each with what it is.
OFFENCES = [
    (re.compile(r"\(s\)"), 'a "(s)" plural'),
    (re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"), "a key, enum value or field name"),
    (
        re.compile(
            r"\b(?:identify|plan|execute|recap|kpi|cycle|gap|action|checklist|checkin|retro|"
            r"survey|metric|person|template)[.:][a-z_]+\b"
        ),
        "a dotted key or verb",
    ),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "an ISO date (one date style: 27 Dec 2026)"),
    (re.compile(r"(?::|=|→)\s*(?:None|True|False)\b|\bNone\s*→"), "a Python value"),
    (re.compile(r"\b(?:Phase|ActionStatus|GapDecision|Confidence|Role)\.[A-Z_]+"), "an enum"),
]


#: Examples of what a person's own files hold (a date format to choose), not words of ours.
FILE_EXAMPLES = ("Year first only: 2025-03-25",)


def visible_text(page: str) -> str:
    """What a person reads: the text, and the attributes a browser shows or reads out (not
    script, style, or the literal commands and column names set in ``<code>``)."""
    page = re.sub(r"<(script|style|code|datalist|svg)\b[^>]*>.*?</\1>", " ", page, flags=re.S)
    shown = re.findall(r'\b(?:title|aria-label|placeholder|alt)="([^"]*)"', page)
    text = html.unescape(" ".join([re.sub(r"<[^>]+>", " ", page), *shown]))
    for example in FILE_EXAMPLES:
        text = text.replace(example, " ")
    return text


def offences(text: str) -> list[str]:
    found = []
    for pattern, what in OFFENCES:
        for m in pattern.finditer(text):
            around = " ".join(text[max(0, m.start() - 50) : m.end() + 30].split())
            found.append(f"{what}: {m.group(0)!r} in …{around}…")
    return found


def page_offences(where: str, body: str, content_type: str = "text/html") -> list[str]:
    if content_type.startswith("text/csv"):
        text = " | ".join(" ; ".join(row) for row in csv.reader(io.StringIO(body)))
        found = offences(text)
    else:
        found = offences(visible_text(body))
        found += [
            f"an email in code font: {m.group(0)!r}"
            for m in re.finditer(r"<code>[^<]*@[^<]*</code>", body)
            if "://" not in m.group(0)  # a channel address's example, not a person's email
        ]
    return [f"{where}: {f}" for f in found]


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The web tests' world, with shared numbers imported (the Numbers page, the recap's
    measurement and the import's pages have something to say)."""
    folder = tmp_path_factory.mktemp("words")
    with rig(database_url, folder) as r:
        with r.store.unit_of_work() as s:
            seed.import_funnel(s, folder / "exports")
        yield r


@pytest.fixture
def w(world: Rig) -> Iterator[Rig]:
    with world.isolated():
        yield world


#: The Numbers page's views: grouped once and twice, a comparison, a KPI's pivot.
NUMBERS_VIEWS = [
    "/numbers?by=channel",
    "/numbers?by=owner&then_by=month&kpi=mql_to_sql_rate",
    "/numbers?by=team&compare_from=2026-01-01&compare_to=2026-03-31",
    "/numbers?from=2099-01-01&to=2099-02-01",
]


def cycle_pages(cycle_id: int) -> list[str]:
    base = f"/cycles/{cycle_id}"
    tabs = ["", "/gaps", "/actions", "/timeline", "/recap", "/report", "/recap.csv"]
    return [base + t for t in tabs] + [f"{base}/actions?status=open&due=overdue"]


def test_every_page_speaks_in_words(w: Rig) -> None:
    cycles = {**w.world.cycles, **w.extra}
    common = [
        "/my",
        "/cycles",
        "/cycles/new",
        "/numbers",
        "/account",
        "/notifications",
        "/notifications?status=failed",
        *NUMBERS_VIEWS,
    ]
    found: list[str] = []
    seen = 0
    for who in ("sam", "lee", "max", "sid"):
        client = w.client(who)
        pages = common + [p for c in cycles.values() for p in cycle_pages(c)]
        if who in ("lee", "max"):
            pages.append("/numbers/import")
        for path in pages:
            resp = client.get(path)
            allowed = (200, 403) if path == "/cycles/new" else (200,)  # point persons start
            assert resp.status_code in allowed, f"{who} {path}: {resp.status_code}"
            found += page_offences(f"{who} {path}", resp.text, resp.headers["content-type"])
            seen += 1
    anonymous = w.client()
    for path in ("/login", "/login?next=/cycles"):
        resp = anonymous.get(path)
        found += page_offences(f"anonymous {path}", resp.text)
    assert seen > 150
    assert not found, "\n".join(found)


def post(w: Rig, who: str, url: str, **data: str):  # noqa: ANN201
    return w.client(who).post(url, data={"csrf": w.personas[who].csrf, **data})


def refusals(w: Rig) -> list[tuple[str, object]]:
    """Forms and moves refused for every kind of reason, and the error pages."""
    c = w.world.cycles
    plan_item = w.world.actions["plan_unassigned"]
    sid_item = w.world.actions["execute_sid"]
    return [
        # gates: unanswered questions, undecided gaps, unplanned gaps, unfinished work
        ("gate identify", post(w, "sam", f"/cycles/{c['identify']}/advance")),
        ("gate plan", post(w, "sam", f"/cycles/{c['plan']}/advance")),
        ("gate execute", post(w, "sam", f"/cycles/{c['execute']}/advance")),
        ("gate recap", post(w, "sam", f"/cycles/{c['recap']}/advance")),
        ("not a point person", post(w, "lee", f"/cycles/{c['plan']}/advance")),
        (
            "period backwards",
            post(
                w,
                "sam",
                "/cycles/new",
                playbook="sales-marketing-handoff",
                title="Backwards",
                period_start="2031-03-01",
                period_end="2031-02-01",
                next="/cycles/new",
            ),
        ),
        (
            "follow-up after due",
            post(
                w,
                "lee",
                f"/cycles/{c['execute']}/actions",
                title="Dates the wrong way round",
                due_date=execute_day(w, 0),
                follow_up_date=execute_day(w, 3),
                next=f"/cycles/{c['execute']}/actions",
            ),
        ),
        (
            "due outside the period",
            post(
                w,
                "lee",
                f"/actions/{sid_item}/update",
                due_date="2040-01-01",
                next=f"/cycles/{c['execute']}/actions",
            ),
        ),
        (
            "owner nobody",
            post(
                w,
                "lee",
                f"/actions/{plan_item}/assign",
                owner="Nobody Byname",
                next=f"/cycles/{c['plan']}/actions",
            ),
        ),
        (
            "owner not an email",
            post(
                w,
                "lee",
                f"/actions/{plan_item}/assign",
                owner="sid@",
                next=f"/cycles/{c['plan']}/actions",
            ),
        ),
        (
            "reject without reason",
            post(
                w,
                "lee",
                f"/gaps/{w.world.gaps['identify']}/decide",
                decision="rejected",
                next=f"/cycles/{c['identify']}/gaps",
            ),
        ),
        (
            "gap in the wrong phase",
            post(
                w,
                "lee",
                f"/cycles/{c['execute']}/gaps",
                title="Too late for gaps",
                category="other",
                root_cause="process",
                next=f"/cycles/{c['execute']}/gaps",
            ),
        ),
        ("member moves a due date", post(w, "sid", f"/actions/{sid_item}/update", due_date="x")),
        ("404 cycle", w.client("sid").get("/cycles/999999")),
        ("404 page", w.client("sid").get("/no/such/page")),
        ("403 import", w.client("sid").get("/numbers/import")),
        ("another team", w.client("ola").get(f"/cycles/{c['execute']}")),
    ]


def test_the_web_and_the_api_name_no_command_to_run(w: Rig) -> None:
    """A refusal says what to do in the app's words; only the CLI adds a command."""
    api = w.client("sam").post(
        "/api/v1/cycles",
        json={"playbook": "nope", "title": "X"},
        headers=w.bearer("sam"),
    )
    assert api.status_code == 404, api.text
    assert "the Playbooks page lists the ones there are" in api.text
    assert "aligncycle playbook" not in api.text and "run:" not in api.text


def test_refusals_and_error_pages_speak_in_words(w: Rig) -> None:
    found: list[str] = []
    for what, resp in refusals(w):
        assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code}"
        found += page_offences(what, resp.text)
    assert not found, "\n".join(found)


def execute_day(w: Rig, offset: int) -> str:
    """A day inside the Execute cycle's period, ``offset`` days after its start."""
    with w.store.unit_of_work() as s:
        cycle = s.get(Cycle, w.world.cycles["execute"])
        return (cycle.period_start + timedelta(days=offset)).isoformat()


def test_a_refused_form_says_it_once_in_words(w: Rig) -> None:
    resp = post(
        w,
        "sam",
        "/cycles/new",
        playbook="sales-marketing-handoff",
        title="Backwards",
        period_start="2031-03-01",
        period_end="2031-02-01",
        next="/cycles/new",
    )
    assert resp.status_code == 422
    text = visible_text(resp.text)
    assert (
        text.count("The end date is before the start date")
        + text.count("the end date is before the start date")
        == 1
    ), text
    assert "period_end" not in text


def test_the_gate_names_questions_by_their_text(w: Rig) -> None:
    resp = post(w, "sam", f"/cycles/{w.world.cycles['identify']}/advance")
    assert resp.status_code == 409
    text = visible_text(resp.text)
    assert "required questions unanswered: “" in text
    assert "cannot leave Identify" in text


# --- error pages keep the menu ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cycles/999999", "/no/such/page", "/numbers/import"])
def test_error_pages_keep_the_menu_for_a_signed_in_person(w: Rig, path: str) -> None:
    resp = w.client("sid").get(path)
    assert resp.status_code in (403, 404)
    assert 'aria-label="Main"' in resp.text and "Sid Member" in resp.text
    assert ">Sign in<" not in resp.text and 'href="/login"' not in resp.text
    assert "Go to My work" in resp.text


def test_error_pages_offer_sign_in_to_nobody_else(w: Rig) -> None:
    resp = w.client().get("/api-free/no/such/page")
    assert resp.status_code == 404
    assert 'href="/login"' in resp.text and 'aria-label="Main"' not in resp.text


# --- the timeline, as sentences ----------------------------------------------------------------


def test_the_timeline_tells_sentences_with_names_and_sets_the_system_apart(w: Rig) -> None:
    page = w.client("sam").get(f"/cycles/{w.world.cycles['execute']}/timeline").text
    text = " ".join(visible_text(page).split())
    assert "Lee Saleslead accepted the gap “Different lead definitions”." in text
    assert "Sid Member checked in on “Agree a 24-hour hand-off SLA”: in progress, at risk" in text
    assert "Sam Sales moved the cycle from Plan to Execute." in text
    assert re.search(r"Sam Sales answered “[^”]+”: (Yes|No)\.", text)
    closed = w.client("sam").get(f"/cycles/{w.world.cycles['closed']}/timeline").text
    system = re.findall(r'<li class="system">.*?</li>', closed, re.S)
    assert system and all("aligncycle" in li for li in system)
    assert "published 3 survey answers" in visible_text(system[0])
    # a sentence read aloud or copied: who, then how, then what
    said = " ".join(visible_text(system[0]).split())
    assert "aligncycle automatically published 3 survey answers" in said


def cycle_verbs() -> set[str]:
    """Every verb the domain records (read from the source, so a new one is seen here)."""
    verbs: set[str] = set()
    for path in (ROOT / "models").rglob("*.py"):
        verbs |= set(re.findall(r'verb=(?:\s*)"([a-z_]+\.[a-z_]+)"', path.read_text()))
        verbs |= set(re.findall(r'"((?:retro|action|cycle)\.[a-z_]+)"', path.read_text()))
    return verbs


#: Events with no cycle (they are on no timeline).
NOT_ON_A_CYCLE = {"account", "person", "team", "playbook", "token", "channel", "auth", "funnel"}


def test_every_verb_on_a_cycle_has_its_own_sentence() -> None:
    verbs = {v for v in cycle_verbs() if v.split(".")[0] not in NOT_ON_A_CYCLE}
    assert {"gap.decided", "checkin.added", "kpi.baseline_recorded"} <= verbs
    names = story.Names(
        gaps={1: "No shared lead definitions"},
        actions={1: "Agree a hand-off SLA"},
        questions={1: "Do both teams use the same lead definitions?"},
        people={"lee@acme.test": "Lee Saleslead"},
    )
    generic = []
    for verb in sorted(verbs):
        event = Event(
            verb=verb,
            object_type="gap",
            object_id=1,
            before={"phase": "plan", "owner": "lee@acme.test", "status": "open"},
            after={
                "phase": "execute",
                "decision": "accepted",
                "status": "in_progress",
                "owner": "lee@acme.test",
                "answer": "yes",
                "action_item_id": 1,
                "window": "2026-01-01..2026-03-31",
            },
        )
        text = story.sentence(event, names)
        if text == "made a change":
            generic.append(verb)
        assert not offences(text), (verb, text)
    assert not generic, f"verbs without a sentence: {generic}"


def test_gap_decisions_read_as_sentences() -> None:
    names = story.Names(gaps={7: "No shared lead definitions"})
    event = Event(
        verb="gap.decided",
        object_type="gap",
        object_id=7,
        after={"decision": "accepted", "decision_reason": None},
    )
    assert story.sentence(event, names) == "accepted the gap “No shared lead definitions”"
    event.after = {"decision": "rejected", "decision_reason": "We measure this already"}
    assert story.sentence(event, names) == (
        "rejected the gap “No shared lead definitions”: “We measure this already”"
    )


# --- the owner picker: a name or an email -------------------------------------------------------


def test_an_owner_is_picked_by_name(w: Rig) -> None:
    item = w.world.actions["plan_unassigned"]
    plan = w.world.cycles["plan"]
    page = w.client("lee").get(f"/cycles/{plan}/actions").text
    assert '<option value="Sid Member">' in page  # the picker offers names
    resp = post(
        w, "lee", f"/actions/{item}/assign", owner="sid member", next=f"/cycles/{plan}/actions"
    )
    assert resp.status_code == 303, resp.text
    with w.store.unit_of_work() as s:
        assert s.get(ActionItem, item).owner.email == "sid@acme.test"


def test_an_ambiguous_name_is_refused_with_a_sentence(w: Rig) -> None:
    with w.store.unit_of_work() as s:
        people.create_person(
            s, PersonCreate(name="Sid Member", email="sid2@acme.test", team="marketing")
        )
    item = w.world.actions["plan_unassigned"]
    plan = w.world.cycles["plan"]
    page = w.client("lee").get(f"/cycles/{plan}/actions").text
    assert '<option value="sid2@acme.test">' in page  # two of that name: offered by email
    before = w.snapshot()
    resp = post(
        w, "lee", f"/actions/{item}/assign", owner="Sid Member", next=f"/cycles/{plan}/actions"
    )
    assert resp.status_code == 422
    text = " ".join(visible_text(resp.text).split())
    assert (
        "2 people called Sid Member are on this cycle's teams (sid2@acme.test and "
        "sid@acme.test): type the email of the one you mean"
    ) in text
    assert text.count("2 people called Sid Member") == 1  # beside the field, not twice
    assert w.snapshot() == before
    resp = post(
        w, "lee", f"/actions/{item}/assign", owner="Nobody Here", next=f"/cycles/{plan}/actions"
    )
    assert "Nobody called Nobody Here is on Sales or Marketing" in visible_text(resp.text)


# --- the demo sign-in page ----------------------------------------------------------------------


def test_the_demo_sign_in_page_lists_the_demo_accounts_only_for_the_demo(
    w: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = w.client().get("/login").text
    assert "Demo accounts" not in plain and "demo-password" not in plain
    monkeypatch.setattr(w.app.state.settings, "demo", True)
    demo = w.client().get("/login").text
    assert "Demo accounts" in demo and "demo-password" in demo
    assert "<td>Sam Sales</td><td>sam@acme.test</td><td>Point person, Sales</td>" in demo
    assert "<td>Max Manager</td>" in demo


@pytest.mark.parametrize(
    "seen",
    [
        "Blockers: point_persons, how_we_know",
        "period_end is before period_start",
        "— identify.tools_adopted: yes",
        "Status: open → in_progress",
        "Progress: None",
        "kpi.baseline_recorded",
        "due in 14 day(s)",
        "due 2026-12-27",
    ],
)
def test_the_search_finds_what_the_walkthrough_saw(seen: str) -> None:
    """The codes of issue 15's walkthrough are each found (the search can fail)."""
    assert offences(seen)


def test_plain_sentences_pass_the_search() -> None:
    assert not offences(
        "Lee Saleslead accepted the gap “No shared lead definitions” on 27 Dec 2026. "
        "The follow-up date is after the due date; 2 action items in progress."
    )


# --- the pages added this round, and the cadence's messages ------------------------------------

#: The playbook whose cycles ask each team first and hold a vote.
ALIGNMENT_PLAYBOOK = "lead-definition-and-scoring"


def _aligned_cycle(w: Rig) -> int:
    """A cycle of the alignment playbook in which both teams gave their own answers (so the
    divergence map shows), Marketing's through the API and Sales' through the page's form."""
    from models import phases
    from models.schemas import CycleCreate
    from models.services import team_input
    from models.services.common import person_by_email

    with w.store.unit_of_work() as s:
        c = phases.start_cycle(
            s,
            CycleCreate(playbook=ALIGNMENT_PLAYBOOK, title="Each team first", point_persons=[MIA]),
            person_by_email(s, "sam@acme.test"),
        )
        s.flush()
        cid = c.id
        qs, rs = team_input.questions(c), team_input.ratings(c)
    body = {
        "answers": {q.key: "yes" for q in qs},
        "ratings": {r.key: 4 for r in rs},
        "comments": {qs[0].key: "Marketing's own remark"},
    }
    meg = w.client("meg")
    assert meg.put(
        f"/api/v1/cycles/{cid}/own-answers", json=body, headers=w.bearer("meg")
    ).is_success
    assert meg.post(f"/api/v1/cycles/{cid}/own-answers/submit", headers=w.bearer("meg")).is_success
    form = {"csrf": w.personas["sid"].csrf, "submit": "1"}
    form |= {f"answer-{q.key}": "no" for q in qs} | {f"rating-{r.key}": "2" for r in rs}
    assert w.client("sid").post(f"/cycles/{cid}/own-answers", data=form).status_code == 303
    return cid


MIA = "mia@acme.test"


def test_the_admin_playbook_alignment_and_message_pages_speak_in_words(w: Rig) -> None:
    """People, teams, channels, playbooks and each playbook's preview, each team's own
    answers (before and after the reveal), the vote (open and closed) and the Messages page
    with every kind of cadence message planned: no key, enum, field name or "(s)"."""
    from datetime import date

    from models.cadence import channels
    from models.services.common import person_by_email
    from models.tables import Person, Playbook, Team

    today = date.today()
    with w.store.unit_of_work() as s:
        manager = person_by_email(s, "max@acme.test")
        for email in ("sam@acme.test", "lee@acme.test", "sid@acme.test", MIA, "max@acme.test"):
            channels.add_channel(
                s, manager, kind="webhook", person=email, url="json://example.test/hook"
            )
        channels.add_channel(
            s, manager, kind="slack", team="marketing", url="https://hooks.slack.com/services/T/B/x"
        )
        people_ids = s.scalars(select(Person.id).order_by(Person.id)).all()
        team_ids = s.scalars(select(Team.id).order_by(Team.id)).all()
        playbook_ids = s.scalars(select(Playbook.id).order_by(Playbook.id)).all()
    planned = plan_every_message(w, today)
    assert {"reminder", "escalation", "digest", "checkin"} <= set(planned), planned
    aligned = _aligned_cycle(w)
    identify = w.world.cycles["identify"]
    gap = w.world.gaps["identify"]
    voted = w.client("sid").post(
        f"/cycles/{identify}/vote", data={"csrf": w.personas["sid"].csrf, f"votes-{gap}": "2"}
    )
    assert voted.status_code == 303
    admin = [
        "/admin/people",
        "/admin/people?team=marketing",
        *(f"/admin/people/{pid}" for pid in people_ids),
        "/admin/teams",
        *(f"/admin/teams/{tid}" for tid in team_ids),
        "/admin/channels",
    ]
    shared = [
        "/playbooks",
        *(f"/playbooks/{pid}" for pid in playbook_ids),
        f"/cycles/{aligned}/own-answers",
        f"/cycles/{aligned}/divergence.csv",
        f"/cycles/{identify}/own-answers",
        f"/cycles/{identify}/vote",
        "/notifications",
        "/notifications?status=pending",
    ]
    found: list[str] = []
    seen = 0

    def read(who: str, paths: list[str]) -> None:
        nonlocal found, seen
        client = w.client(who)
        for path in paths:
            resp = client.get(path)
            assert resp.status_code == 200, f"{who} {path}: {resp.status_code}"
            found += page_offences(f"{who} {path}", resp.text, resp.headers["content-type"])
            seen += 1

    read("max", admin + shared)
    for who in ("sam", "lee", "sid"):
        read(who, shared)
    closed = w.client("sam").post(f"/api/v1/cycles/{identify}/votes/close", headers=w.bearer("sam"))
    assert closed.status_code == 200, closed.text
    read("lee", [f"/cycles/{identify}/vote"])
    assert seen > 40
    assert not found, "\n".join(found)
    notices = w.client("max").get("/notifications").text
    assert "Weekly digest" in notices and "Sales and Marketing" in visible_text(notices)


def plan_every_message(w: Rig, today: object) -> dict[str, int]:
    """Plan the day's reminders, escalations, check-in requests and digests of the world
    (its Execute cycle has overdue items) and read every planned message: how many of each
    kind, after asserting that none says a key, enum, field name or "(s)"."""
    from models.cadence import checkins, digest, escalations, reminders
    from models.cadence.links import Links
    from models.cadence.tables import Notification

    links = Links("https://aligncycle.example.test")
    with w.store.unit_of_work() as s:
        for plan in (
            reminders.plan_reminders,
            escalations.plan_escalations,
            checkins.plan_checkins,
        ):
            plan(s, today, links=links)
        # the digest as the next Monday plans it (weekly: Mondays, about the week before)
        monday = today + timedelta(days=7 - today.weekday())  # type: ignore[attr-defined]
        digest.plan_digests(s, monday, links=links)
        rows = s.scalars(select(Notification).order_by(Notification.id)).all()
        found = []
        counts: dict[str, int] = {}
        for n in rows:
            kind = str(n.kind.value)
            counts[kind] = counts.get(kind, 0) + 1
            # the reference line is for support (its key names the message), not prose
            text = re.sub(r"\(ref [^)]*\)", " ", f"{n.subject}\n{n.recipient}\n{n.body}")
            text = re.sub(r"https?://\S+", " ", text)
            found += [f"{kind} message {n.key}: {f}" for f in offences(text)]
    assert not found, "\n".join(found)
    return counts
