"""Advancing a cycle does what its phases need wherever a point person does it: on the web,
through the API, or with ``cycle advance --no-flows`` (no Prefect anywhere). The current phase is
brought up to date before the gate decides, and the new phase starts with what its flow would
write: Plan, the playbook's proposed action items (owners and due dates set); Execute, a
check-in on every open item; Recap, a drafted retrospective a manager can sign off. A refused
advance (the gate, who asks, an outdated page) writes nothing at all, not even the refresh."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from aligncycle import cli_common
from aligncycle.cli import app as cli_app
from aligncycle.web import create_app
from aligncycle.web.auth import SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from models.accounts import ApiToken
from models.base import utcnow
from models.db import Store
from models.enums import Phase
from models.phases import execute, lifecycle, plan
from models.phases import recap as recap_phase
from models.schemas import CheckInCreate
from models.services import accounts, actions, cycles, recap
from models.tables import ActionItem, CheckIn, Retrospective
from tests.conftest import db_snapshot
from tests.test_cli import cli, runner
from tests.test_cli_refusals import refresh_writes
from tests.test_services import (
    LEE,
    MAX,
    MIA,
    SAM,
    SID,
    TODAY,
    C,
    P,
    accept,
    add_gap,
    answer_all,
    start,
    to_execute,
)

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SURFACES = ["web", "api", "cli"]

#: The shipped playbook's proposals for a hand-off gap, as the cycle of these tests gets them:
#: title -> (owner, due in days, counterpart: the other team's point person).
HANDOFF_PROPOSALS = {
    "Agree on a hand-off SLA and publish it": (LEE, 7, MIA),  # the sales lead
    "Map the hand-off flow and remove avoidable steps": (MIA, 14, SAM),  # marketing's point person
    "Write a one-page hand-off checklist and train both teams": (SAM, 21, MIA),  # sales' one
}


# --- the three surfaces ---------------------------------------------------------------------


@dataclass
class Surfaces:
    """The web app on the ``org`` store (pages and API), and the command line, as people use
    them: signed in on the web (session cookie + CSRF token), or with a personal access token."""

    app: Any
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # email -> (cookie, csrf)
    tokens: dict[str, str] = field(default_factory=dict)

    def browser(self, email: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.cookies.set(SESSION_COOKIE, self.cookies[email][0])
        return client

    def post_form(self, email: str, url: str, **data: Any) -> Any:
        form = {"csrf": self.cookies[email][1], **{k: str(v) for k, v in data.items()}}
        return self.browser(email).post(url, data=form)

    def api(self, email: str, method: str, url: str, body: Any = None) -> Any:
        client = TestClient(self.app, follow_redirects=False)
        headers = {"Authorization": f"Bearer {self.tokens[email]}"}
        return client.request(method, f"/api/v1{url}", headers=headers, json=body)

    def version_on_page(self, email: str, cycle_id: int) -> int:
        """The cycle's version as the advance form on its page carries it."""
        page = self.browser(email).get(f"/cycles/{cycle_id}").text
        found = re.search(
            rf'action="/cycles/{cycle_id}/advance".*?name="version" value="(\d+)"', page, re.S
        )
        assert found, "the point person sees no advance form"
        return int(found.group(1))

    def advance(
        self, surface: str, email: str, cycle_id: int, version: int | None = None
    ) -> tuple[bool, str]:
        """Advance as ``email`` on ``surface`` (the web form with the version the page shows, or
        ``version``). Returns (advanced, what the person is told)."""
        if surface == "web":
            if version is None:
                version = self.version_on_page(email, cycle_id)
            resp = self.post_form(email, f"/cycles/{cycle_id}/advance", version=version)
            if resp.status_code == 303:
                return True, _flash(resp)
            alert = re.search(r'<div class="alert" role="alert"[^>]*>([^<]*)</div>', resp.text)
            return False, f"{resp.status_code} {alert.group(1) if alert else resp.text[:200]}"
        if surface == "api":
            body = {} if version is None else {"expected_version": version}
            resp = self.api(email, "POST", f"/cycles/{cycle_id}/advance", body)
            if resp.status_code == 200:
                return True, resp.json()["phase"]
            error = resp.json()["error"]
            return False, f"{resp.status_code} {error['code']}: {error['message']}"
        args: list[Any] = ["cycle", "advance", "--no-flows", cycle_id, "--as", email]
        if version is not None:
            args += ["--expected-version", version]
        cli_common.reset_store()
        result = runner.invoke(cli_app, [str(a) for a in args], env={"ALIGNCYCLE_ACTOR": None})
        if result.exit_code == 0:
            return True, result.stdout
        assert result.stdout == "" and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return False, f"exit {result.exit_code} {result.stderr.strip()}"


def _flash(resp: Any) -> str:
    from urllib.parse import unquote

    return unquote(resp.cookies.get("aligncycle_flash", ""))


@pytest.fixture
def surfaces(org: Store, tmp_path: Path) -> Iterator[Surfaces]:
    out = Surfaces(create_app(org, WebSettings(data_dir=tmp_path, secret_key="test-secret")))
    with org.unit_of_work() as s:
        for email in (SAM, MIA, LEE, MAX, SID):
            raw, ws = accounts.create_session(s, P(s, email))
            out.cookies[email] = (raw, ws.csrf_token)
            out.tokens[email], _ = accounts.create_token(s, P(s, email), "tests")
        # Marked as used just now, so no request writes ``last_used_at`` (snapshots stay equal).
        s.execute(update(ApiToken).values(last_used_at=utcnow()))
    yield out


# --- cycles to advance ----------------------------------------------------------------------


def identify_ready(store: Store, *, point_persons: tuple[str, ...] = (MIA,)) -> tuple[int, int]:
    """A cycle in Identify that may advance: every question answered (raising no gap), and one
    hand-off gap the sales lead accepted. Returns (cycle id, gap id)."""
    cycle_id = start(store, point_persons=point_persons)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.IDENTIFY)
        gap = accept(s, add_gap(s, cycle_id))
        return cycle_id, gap.id


def execute_done(store: Store) -> tuple[int, int]:
    """A cycle in Execute (taken there through the services, so nothing drafted yet) whose one
    action item is done and whose questions are answered. Returns (cycle id, action id)."""
    cycle_id = start(store)
    _, action_id = to_execute(store, cycle_id)
    with store.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.EXECUTE)
        item = actions.get_action(s, action_id)
        actions.add_checkin(s, item, CheckInCreate(status="done"), P(s, SID))
    return cycle_id, action_id


def phase_of(store: Store, cycle_id: int) -> Phase:
    with store.unit_of_work() as s:
        return C(s, cycle_id).phase


# --- advancing does what the phases need ---------------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_a_point_person_advancing_to_plan_gets_the_playbooks_proposals(
    org: Store, surfaces: Surfaces, surface: str
) -> None:
    cycle_id, gap_id = identify_ready(org)
    with org.unit_of_work() as s:
        assert actions.list_actions(s, cycle_id=cycle_id) == []

    advanced, told = surfaces.advance(surface, SAM, cycle_id)

    assert advanced, told
    assert phase_of(org, cycle_id) is Phase.PLAN
    with org.unit_of_work() as s:
        items = actions.list_actions(s, cycle_id=cycle_id)
        got = {
            i.title: (i.owner.email, (i.due_date - TODAY).days, i.counterpart.email) for i in items
        }
        assert all(i.gap_ids == [gap_id] for i in items)
        assert {i.key for i in items} == {
            f"template:{k}" for k in ("agree_handoff_sla", "map_handoff_flow", "handoff_checklist")
        }
    assert got == HANDOFF_PROPOSALS
    note = "3 action items proposed from the playbook for the accepted gaps"
    if surface == "web":
        assert told.startswith("The cycle is now in Plan. 3 action items proposed")
        listed = surfaces.browser(SAM).get(f"/cycles/{cycle_id}/actions").text
        assert all(title in listed for title in HANDOFF_PROPOSALS)
        assert all(owner in listed for owner in ("Lee Saleslead", "Mia Marketing", "Sam Sales"))
    elif surface == "api":
        assert told == "plan"
        listed = surfaces.api(SAM, "GET", f"/cycles/{cycle_id}/actions").json()["items"]
        assert {(a["title"], a["owner"]["email"]) for a in listed} == {
            (t, o) for t, (o, _, _) in HANDOFF_PROPOSALS.items()
        }
        assert all(a["due_date"] for a in listed)
    else:
        assert told.splitlines() == [
            f"cycle {cycle_id}: Identify -> Plan",
            f"Plan: {note}: check their owners and due dates",
        ]
    # With owned, dated items for the accepted gap, the plan's gate wants only the answers.
    with org.unit_of_work() as s:
        blockers = cycles.readiness(s, C(s, cycle_id), TODAY).blockers
    assert blockers and all("required questions unanswered" in b for b in blockers), blockers


@pytest.mark.parametrize("surface", SURFACES)
def test_advancing_into_recap_drafts_the_retrospective_a_point_person_saves_and_a_manager_signs_off(
    org: Store, surfaces: Surfaces, surface: str
) -> None:
    cycle_id, _ = execute_done(org)
    with org.unit_of_work() as s:
        assert recap.get_retrospective(s, C(s, cycle_id)) is None

    advanced, told = surfaces.advance(surface, MIA, cycle_id)

    assert advanced, told
    with org.unit_of_work() as s:
        cycle = C(s, cycle_id)
        assert cycle.phase is Phase.RECAP
        retro = recap.get_retrospective(s, cycle)
        assert retro is not None and retro.recorded_by is None  # the draft, as the flow's
        assert retro.improvements == ["done: Agree the hand-off SLA"]
        assert retro.facts["actions_done"] == 1 and retro.signed_off_at is None
        version = retro.version
    if surface == "cli":
        assert told.splitlines()[1] == (
            "Recap: a draft retrospective is ready: a point person reviews and saves it"
        )
    elif surface == "web":
        assert "A draft retrospective is ready: a point person reviews and saves it" in told

    # A draft nobody reviewed cannot be signed off, on any surface.
    draft = f"the retrospective of cycle {cycle_id} is still the draft made from the cycle's facts"
    if surface == "web":
        page = surfaces.browser(MAX).get(f"/cycles/{cycle_id}/recap").text
        assert "A draft retrospective is ready" in page and "Sign off the recap" not in page
        refused = surfaces.post_form(MAX, f"/cycles/{cycle_id}/signoff", version=version)
        shown = html.unescape(refused.text)  # a page starts the sentence with a capital
        assert refused.status_code == 422 and draft[:1].upper() + draft[1:] in shown
        saved = surfaces.post_form(
            SAM, f"/cycles/{cycle_id}/retrospective", version=version, summary="Reviewed"
        )
        assert saved.status_code == 303, saved.text
        page = surfaces.browser(MAX).get(f"/cycles/{cycle_id}/recap").text
        assert "waiting for a manager" in page
        form = rf'action="/cycles/{cycle_id}/signoff">.*?name="version" value="(\d+)"'
        shown = int(re.search(form, page, re.S).group(1))
        signed = surfaces.post_form(MAX, f"/cycles/{cycle_id}/signoff", version=shown)
        assert signed.status_code == 303, signed.text
    elif surface == "api":
        body = {"expected_version": version}
        refused = surfaces.api(MAX, "POST", f"/cycles/{cycle_id}/signoff", body)
        assert refused.status_code == 422 and draft in refused.json()["error"]["message"]
        saved = surfaces.api(
            SAM, "PUT", f"/cycles/{cycle_id}/retrospective", {"summary": "Reviewed", **body}
        )
        assert saved.status_code == 200, saved.text
        body = {"expected_version": saved.json()["version"]}
        signed = surfaces.api(MAX, "POST", f"/cycles/{cycle_id}/signoff", body)
        assert signed.status_code == 200, signed.text
    else:
        assert draft in cli("retro", "signoff", cycle_id, "--as", MAX, code=1).stderr
        cli("retro", "record", cycle_id, "--summary", "Reviewed", "--as", SAM)
        cli("retro", "signoff", cycle_id, "--as", MAX)
    with org.unit_of_work() as s:
        retro = recap.get_retrospective(s, C(s, cycle_id))
        assert retro.signed_off_by.email == MAX and retro.recorded_by.email == SAM
        answer_all(s, cycle_id, Phase.RECAP)

    # Closing keeps the signed-off retrospective as it is.
    advanced, told = surfaces.advance(surface, SAM, cycle_id)
    assert advanced, told
    with org.unit_of_work() as s:
        assert C(s, cycle_id).phase is Phase.CLOSED
        retro = recap.get_retrospective(s, C(s, cycle_id))
        assert retro.signed_off_by.email == MAX and retro.summary == "Reviewed"


def test_advancing_into_execute_checks_in_on_every_open_item_once(
    org: Store, surfaces: Surfaces
) -> None:
    """Execute starts with the flow's check-in pass (one per open item and day); the pass run
    again, as the scheduled Execute flow runs it, adds nothing."""
    cycle_id, _ = identify_ready(org)
    assert surfaces.advance("api", SAM, cycle_id)[0]
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.PLAN)
    advanced, told = surfaces.advance("api", MIA, cycle_id)
    assert (advanced, told) == (True, "execute")
    with org.unit_of_work() as s:
        checkins = s.scalars(
            select(CheckIn)
            .join(ActionItem)
            .where(ActionItem.cycle_id == cycle_id)
            .order_by(CheckIn.action_item_id)
        ).all()
        assert len(checkins) == 3
        assert {c.key for c in checkins} == {f"execute:{TODAY.isoformat()}"}
        assert all(
            c.author_id is None and c.note.startswith("automatic check-in: ") for c in checkins
        )
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        assert execute.execute_pass(s, C(s, cycle_id), TODAY).checkins_written == 0
    assert db_snapshot(org) == before


# --- every move asks for its phase flow, once ---------------------------------------------


@pytest.mark.parametrize("surface", SURFACES)
def test_every_face_asks_for_the_new_phases_flow_with_the_move(
    org: Store, surfaces: Surfaces, surface: str
) -> None:
    """The move and the outbox row that asks for the Plan flow commit together, whoever moved
    the cycle; without a Prefect server configured, the row waits for a dispatch."""
    from models.phases import dispatch

    cycle_id, _ = identify_ready(org)
    assert surfaces.advance(surface, SAM, cycle_id)[0]
    with org.unit_of_work() as s:
        rows = [(r.key, r.phase, r.status, r.today) for r in dispatch.for_cycle(s, cycle_id)]
    assert rows == [(f"cycle:{cycle_id}:plan", Phase.PLAN, "pending", date.today())]


def test_a_flow_asked_for_by_a_move_the_cycle_has_moved_on_from_is_skipped(
    org: Store, surfaces: Surfaces
) -> None:
    """The web app moved the cycle to Plan (on the embedded default its flow waits); the cycle
    moved on before anyone dispatched: the Plan flow is not started, the row says why."""
    from flows.dispatch import dispatch as start
    from models.phases import dispatch
    from models.tables import Cycle

    cycle_id, _ = identify_ready(org)
    assert surfaces.advance("web", SAM, cycle_id)[0]
    with org.unit_of_work() as s:
        s.get(Cycle, cycle_id).phase = Phase.EXECUTE  # as if moved on (its own row aside)
    (done,) = start("in-process", db=org, cycle_id=cycle_id)
    assert done.moved_on is Phase.EXECUTE and done.flow_run_id is None
    with org.unit_of_work() as s:
        (row,) = dispatch.for_cycle(s, cycle_id)
        assert row.status == "skipped"
        assert row.error == "the cycle had moved on to execute before the flow started"
        assert dispatch.waiting(s) == []


@pytest.mark.prefect
def test_flows_pending_lists_what_waits_and_flows_dispatch_starts_it_once(
    org: Store, surfaces: Surfaces, prefect_server: str, data_dir: Path
) -> None:
    cycle_id, _ = identify_ready(org)
    assert surfaces.advance("web", SAM, cycle_id)[0]
    waiting = cli("flows", "pending").stdout.splitlines()
    assert waiting[0].split() == ["cycle", "phase", "since", "attempts", "last", "error"]
    assert waiting[2].split()[:2] == [str(cycle_id), "Plan"]
    started = cli("flows", "dispatch", "--cycle", cycle_id).stdout
    assert started.startswith("plan: 3 action items for 1 accepted gap")
    assert cli("flows", "pending").stdout == "every phase flow asked for has started\n"
    assert cli("flows", "dispatch").stdout == "nothing waits to start\n"


# --- a refused advance writes nothing --------------------------------------------------------


def _plan_without_marketing_point_person(store: Store) -> tuple[int, str, int | None]:
    """In Plan with an accepted gap but no marketing point person: the refresh would propose the
    playbook's items; the gate refuses (a team without a point person)."""
    cycle_id, _ = identify_ready(store, point_persons=())
    with store.unit_of_work() as s:
        cycles.advance_cycle(s, C(s, cycle_id), P(s, SAM), today=TODAY)
        answer_all(s, cycle_id, Phase.PLAN)
    assert "action.created" in refresh_writes(store, cycle_id)
    return cycle_id, SAM, None


def _recap_not_signed_off(store: Store) -> tuple[int, str, int | None]:
    """In Recap (through the services: no draft yet): the refresh would draft the retrospective;
    the gate wants a point person to save it (and then a manager's sign-off)."""
    cycle_id, _ = execute_done(store)
    with store.unit_of_work() as s:
        cycles.advance_cycle(s, C(s, cycle_id), P(s, SAM), today=TODAY)
        answer_all(s, cycle_id, Phase.RECAP)
    assert "retro.drafted" in refresh_writes(store, cycle_id)
    return cycle_id, SAM, None


def _a_lead_asks(store: Store) -> tuple[int, str, int | None]:
    """Identify is done, but the sales lead is not a point person of the cycle."""
    return identify_ready(store)[0], LEE, None


def _an_outdated_page(store: Store) -> tuple[int, str, int | None]:
    """Identify is done; the point person's page is older than mia's change to the cycle."""
    cycle_id, _ = identify_ready(store)
    with store.unit_of_work() as s:
        cycle = C(s, cycle_id)
        seen = cycle.version
        cycles.assign_point_person(s, cycle, "marketing", MIA, P(s, MIA))
    return cycle_id, SAM, seen


REFUSALS: dict[str, tuple[Callable[[Store], tuple[int, str, int | None]], int, str, str]] = {
    # case: (setup, web/API status, API error code, the message's gist)
    "gate-plan": (
        _plan_without_marketing_point_person,
        409,
        "transition_refused",
        "cannot leave Plan yet: 1 team without a point person: Marketing",
    ),
    "gate-recap": (
        _recap_not_signed_off,
        409,
        "transition_refused",
        "cannot leave Recap yet: the draft retrospective is not saved by a point person yet",
    ),
    "permission": (
        _a_lead_asks,
        403,
        "forbidden",
        "only a point person of this cycle can advance it",
    ),
    "stale-version": (_an_outdated_page, 409, "conflict", "was changed by someone else"),
}


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_advance_leaves_every_table_unchanged(
    org: Store, surfaces: Surfaces, surface: str, case: str
) -> None:
    setup, status, code, gist = REFUSALS[case]
    cycle_id, who, version = setup(org)
    if version is None and surface != "cli":
        with org.unit_of_work() as s:
            version = C(s, cycle_id).version  # what the person's page shows
    phase = phase_of(org, cycle_id)
    before = db_snapshot(org)

    advanced, told = surfaces.advance(surface, who, cycle_id, version)

    assert not advanced
    assert gist in told or gist[:1].upper() + gist[1:] in told  # pages start with a capital
    if surface == "web":
        assert told.startswith(f"{status} ")
    elif surface == "api":
        assert told.startswith(f"{status} {code}: ")
    else:
        assert told.startswith("exit 1 error: ")
    assert db_snapshot(org) == before
    assert phase_of(org, cycle_id) is phase


# --- the phase flows after an advance add nothing ------------------------------------------


def test_the_new_phases_domain_step_run_again_adds_nothing(org: Store, surfaces: Surfaces) -> None:
    """What a phase's flow writes is keyed: run after the web already started the phase (the
    Plan flow's proposals, the Recap flow's draft), it finds everything there."""
    cycle_id, _ = identify_ready(org)
    assert surfaces.advance("web", SAM, cycle_id)[0]
    recap_id, _ = execute_done(org)
    assert surfaces.advance("web", SAM, recap_id)[0]
    before = db_snapshot(org)
    with org.unit_of_work() as s:
        assert plan.propose_actions(s, C(s, cycle_id), TODAY) == []
        assert lifecycle.start_phase(s, C(s, cycle_id), TODAY).proposed == []
        later = TODAY + timedelta(days=1)  # another day changes no proposal either
        assert plan.propose_actions(s, C(s, cycle_id), later) == []
        report = recap_phase.build_recap(s, C(s, recap_id), TODAY)
        assert report.drafted_by_flow
        lifecycle.start_phase(s, C(s, recap_id), TODAY)
    assert db_snapshot(org) == before
    with org.unit_of_work() as s:
        retros = s.scalar(
            select(func.count())
            .select_from(Retrospective)
            .where(Retrospective.cycle_id == recap_id)
        )
        assert retros == 1


@pytest.mark.prefect
def test_the_plan_and_recap_flows_after_a_web_advance_duplicate_nothing(
    org: Store, surfaces: Surfaces, prefect_server: str, data_dir: Path
) -> None:
    """The real Prefect flows, run after the web started their phase: the Plan flow proposes
    nothing new, the Recap flow keeps the draft and only stores its report."""
    from flows.plan import plan_flow
    from flows.recap import recap_flow

    cycle_id, _ = identify_ready(org)
    assert surfaces.advance("web", SAM, cycle_id)[0]
    recap_id, _ = execute_done(org)
    assert surfaces.advance("web", SAM, recap_id)[0]
    before = db_snapshot(org)

    report = plan_flow(cycle_id, today=TODAY)
    assert report.proposed == [] and len(report.actions) == len(HANDOFF_PROPOSALS)
    result = recap_flow(recap_id, today=TODAY)
    assert result.report.drafted_by_flow and result.url == f"/cycles/{recap_id}/report.md"

    after = db_snapshot(org)
    assert {name for name, rows in after.items() if rows != before[name]} == {"recap_reports"}


def test_the_web_and_the_domain_do_not_load_prefect() -> None:
    """The web app and the domain advance cycles without Prefect (it is imported only where a
    flow runs); checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys, aligncycle.web.routes, aligncycle.web.api, models.phases; "
        "sys.exit('prefect' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
