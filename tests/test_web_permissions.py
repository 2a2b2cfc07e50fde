"""The permission matrix: every route of the web app and the API, for every role.

For each route, every persona (see ``PERSONAS``) and an anonymous visitor make the same request
on the same world. The ones the domain allows get the success status; everyone else is refused
(401 or the sign-in page when anonymous, 403 when not allowed, 404 for a cycle of another team)
and a refused write changes nothing in the database. A route added without a line here fails
``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Route

from models.accounts import ApiToken
from models.enums import Phase
from models.tables import ChecklistItem, Cycle
from tests.test_web_support import PERSONAS, Rig, rig

ALL = set(PERSONAS)
SEEING = ALL - {"ola"}  # ola's team takes part in no cycle
ANON = "anonymous"


@dataclass
class Case:
    method: str
    route: str  # the route's path template, as the app declares it
    url: Callable[[Rig], str]
    allowed: set[str]
    ok: int
    body: Callable[[Rig], dict[str, Any]] | None = None
    cycle_bound: bool = True  # ola gets 404 (the object is not visible to her)
    refused: int = 403
    public: bool = False
    anon: int | None = None  # default: 401 (API) or the sign-in page (pages)
    files: Callable[[Rig], list[tuple[str, tuple[str, bytes, str]]]] | None = None  # uploads
    content: bytes | None = None  # a raw request body (text/csv)

    @property
    def api(self) -> bool:
        return self.route.startswith("/api/")

    @property
    def write(self) -> bool:
        return self.method != "GET"

    def expected(self, who: str) -> int:
        if who == ANON:
            if self.public:
                return self.ok
            return self.anon or (401 if self.api else 303)
        if who in self.allowed:
            return self.ok
        if self.cycle_bound and who == "ola":
            return 404
        return self.refused

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


W = Callable[[Rig], str]


def cyc(name: str, suffix: str = "") -> W:
    def url(r: Rig) -> str:
        cid = r.world.cycles.get(name) or r.extra[name]
        return f"/cycles/{cid}{suffix}"

    return url


def api(fn: W) -> W:
    return lambda r: "/api/v1" + fn(r)


def const(path: str) -> W:
    return lambda r: path


def gap(name: str, suffix: str) -> W:
    return lambda r: f"/gaps/{r.world.gaps[name]}{suffix}"


def action(name: str, suffix: str = "") -> W:
    return lambda r: f"/actions/{r.world.actions[name]}{suffix}"


def item(suffix: str) -> W:
    return lambda r: f"/checklist/{r.extra['lee_item']}{suffix}"


def token(suffix: str = "") -> W:
    return lambda r: f"/tokens/{r.extra['sid_token']}{suffix}"


def imported(name: str, suffix: str = "", prefix: str = "/numbers/import") -> W:
    """The URL of one of the world's imports, its uploaded files put back first: a confirm or
    a discard removes them, and only the store is rolled back after each request."""

    def url(r: Rig) -> str:
        job_id, folder, kept = r.imports[name]  # type: ignore[attr-defined]
        if kept is not None:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(kept, folder)
        return f"{prefix}/{job_id}{suffix}"

    return url


def agr(suffix: str) -> W:
    return lambda r: f"/agreements/{r.agree['agreement']}{suffix}"  # type: ignore[attr-defined]


def agr_obj(name: str, prefix: str, suffix: str = "") -> W:
    return lambda r: f"{prefix}/{r.agree[name]}{suffix}"  # type: ignore[attr-defined]


def upload(**files: bytes) -> Callable[[Rig], list[tuple[str, tuple[str, bytes, str]]]]:
    return lambda r: [("files", (name, body, "text/csv")) for name, body in files.items()]


def form(**values: str) -> Callable[[Rig], dict[str, Any]]:
    return lambda r: dict(values)


def body(**values: Any) -> Callable[[Rig], dict[str, Any]]:
    return lambda r: dict(values)


def extra(prefix: str, name: str, suffix: str = "") -> W:
    """The URL of one of the admin lines' objects (see :func:`admin_objects`)."""
    return lambda r: f"{prefix}/{r.admin[name]}{suffix}"  # type: ignore[attr-defined]


def persona(who: str, suffix: str = "", prefix: str = "/admin/people") -> W:
    return lambda r: f"{prefix}/{r.personas[who].id}{suffix}"


def one_file(field: str, name: str, body: bytes) -> Callable[[Rig], list]:
    return lambda r: [(field, (name, body, "text/plain"))]


GAP = {"title": "Found by the matrix", "category": "other", "root_cause": "process"}
DECIDE = {"decision": "accepted"}
ASSIGN = {"owner": "sid@acme.test"}
UPDATE = {"status": "in_progress"}
ASSIGNERS = {"lee", "max"}
POINT = {"sam"}  # sam is a point person of every cycle; pia is one of none
SAM_LEE_MAX = {"sam", "lee", "max"}
IMPORTERS = {"lee", "max", "ola"}  # leads and managers; a job is seen by its team's and managers
IMPORT_TEAM = {"lee", "max"}  # lee's imports (ola, a lead of another team: as if none)
CONTACTS = (
    b"Record ID,Create Date,Original Source,Contact owner,Became a Marketing Qualified Lead Date,"
    b"Became a Sales Qualified Lead Date\r\n"
    b"101,2024-02-01 09:00,Paid Search,Sam Rep,2024-02-10 10:00,2024-02-11 08:00\r\n"
    b"102,2024-02-01 09:00,Paid Search,Sam Rep,yesterday,\r\n"
)
UPDATERS = {"sid", "meg", "lee", "max", "sam"}  # sid owns the item, meg is its counterpart
MANAGERS = {"max"}  # the admin pages and the organisation's writes
PEOPLE_CSV = b"name,email,team,role\nNed Newcomer,ned@acme.test,Sales,member\n"
PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "sales-marketing-handoff.yaml"
PROPOSERS = {"lee", "sam", "pia"}  # leads and point persons of sales and marketing
CAMPAIGNERS = PROPOSERS | {"max"}  # and managers
RATERS = {"sid", "lee", "sam", "pia", "max"}  # sales: the material is marketing's

CASES: list[Case] = [
    # --- API: the signed-in person and the organisation
    Case("GET", "/api/v1/me", const("/api/v1/me"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/teams", const("/api/v1/teams"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/people", const("/api/v1/people"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/playbooks", const("/api/v1/playbooks"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/me/work", const("/api/v1/me/work"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/me/inbox", const("/api/v1/me/inbox"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/openapi.json", const("/api/v1/openapi.json"), ALL, 200, public=True),
    # --- API: cycles
    Case("GET", "/api/v1/cycles", const("/api/v1/cycles"), ALL, 200, cycle_bound=False),
    Case(
        "POST",
        "/api/v1/cycles",
        const("/api/v1/cycles"),
        {"sam", "pia"},
        201,
        body(playbook="sales-marketing-handoff", title="Started by the matrix"),
        cycle_bound=False,
    ),
    Case("GET", "/api/v1/cycles/{cycle_id}", api(cyc("execute")), SEEING, 200),
    Case(
        "GET", "/api/v1/cycles/{cycle_id}/readiness", api(cyc("execute", "/readiness")), SEEING, 200
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/advance",
        api(cyc("ready", "/advance")),
        POINT,
        200,
        body(),
    ),
    Case(
        "PUT",
        "/api/v1/cycles/{cycle_id}/point-persons/{team}",
        api(cyc("identify", "/point-persons/marketing")),
        SAM_LEE_MAX,
        200,
        body(email="mia@acme.test"),
    ),
    Case("GET", "/api/v1/cycles/{cycle_id}/events", api(cyc("execute", "/events")), SEEING, 200),
    Case(
        "GET", "/api/v1/cycles/{cycle_id}/checklist", api(cyc("execute", "/checklist")), SEEING, 200
    ),
    Case(
        "POST",
        "/api/v1/checklist/{item_id}/answer",
        api(item("/answer")),
        {"lee", "sam"},
        200,
        body(answer="yes"),
    ),
    # --- API: gaps
    Case("GET", "/api/v1/cycles/{cycle_id}/gaps", api(cyc("identify", "/gaps")), SEEING, 200),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/gaps",
        api(cyc("identify", "/gaps")),
        SEEING,
        201,
        body(**GAP),
    ),
    Case(
        "POST",
        "/api/v1/gaps/{gap_id}/decision",
        api(gap("identify", "/decision")),
        SAM_LEE_MAX,
        200,
        body(**DECIDE),
    ),
    # --- API: action items
    Case("GET", "/api/v1/cycles/{cycle_id}/actions", api(cyc("execute", "/actions")), SEEING, 200),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/actions",
        api(cyc("execute", "/actions")),
        ASSIGNERS,
        201,
        body(title="Planned by the matrix"),
    ),
    Case("GET", "/api/v1/actions/{action_id}", api(action("execute_sid")), SEEING, 200),
    Case(
        "PATCH",
        "/api/v1/actions/{action_id}",
        api(action("execute_sid")),
        UPDATERS,
        200,
        body(**UPDATE),
    ),
    Case(
        "POST",
        "/api/v1/actions/{action_id}/assign",
        api(action("plan_unassigned", "/assign")),
        ASSIGNERS,
        200,
        body(**ASSIGN),
    ),
    Case(
        "GET",
        "/api/v1/actions/{action_id}/checkins",
        api(action("execute_sid", "/checkins")),
        SEEING,
        200,
    ),
    Case(
        "POST",
        "/api/v1/actions/{action_id}/checkins",
        api(action("execute_sid", "/checkins")),
        UPDATERS,
        201,
        body(note="Checked"),
    ),
    Case(
        "POST",
        "/api/v1/actions/{action_id}/progress",
        api(action("execute_sid", "/progress")),
        UPDATERS,
        200,
        body(status="in_progress", progress=40, note="Halfway"),
    ),
    # --- API: the shared numbers
    Case("GET", "/api/v1/kpis", const("/api/v1/kpis"), ALL, 200, cycle_bound=False),
    Case(
        "GET", "/api/v1/kpis/breaches", const("/api/v1/kpis/breaches"), ALL, 200, cycle_bound=False
    ),
    Case("GET", "/api/v1/kpis/flags", const("/api/v1/kpis/flags"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/kpis/sources", const("/api/v1/kpis/sources"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/cycles/{cycle_id}/targets", api(cyc("execute", "/targets")), SEEING, 200),
    Case(
        "PUT",
        "/api/v1/actions/{action_id}/target",
        api(action("execute_sid", "/target")),
        UPDATERS,
        200,
        body(kpi="sla_attainment", target="80%"),
    ),
    Case(
        "POST",
        "/api/v1/actions/{action_id}/gaps",
        api(action("execute_sid", "/gaps")),
        ASSIGNERS,
        200,
        lambda r: {"gap_id": r.world.gaps["execute_second"]},
    ),
    Case(
        "DELETE",
        "/api/v1/actions/{action_id}/gaps/{gap_id}",
        lambda r: (
            f"/api/v1/actions/{r.world.actions['execute_sid']}/gaps/{r.world.gaps['execute']}"
        ),
        ASSIGNERS,
        200,
    ),
    Case(
        "POST",
        "/api/v1/actions/{action_id}/signoff",
        api(action("awaiting_signoff", "/signoff")),
        {"meg"},  # its counterpart
        200,
        body(),
    ),
    # --- API: recap
    Case("GET", "/api/v1/cycles/{cycle_id}/recap", api(cyc("recap", "/recap")), SEEING, 200),
    Case(
        "GET", "/api/v1/cycles/{cycle_id}/recap.csv", api(cyc("recap", "/recap.csv")), SEEING, 200
    ),
    Case(
        "PUT",
        "/api/v1/cycles/{cycle_id}/retrospective",
        api(cyc("recap", "/retrospective")),
        POINT,
        200,
        body(improvements=["Faster hand-offs"]),
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/signoff",
        api(cyc("recap", "/signoff")),
        {"max"},
        200,
        body(),
    ),
    Case("GET", "/api/v1/cycles/{cycle_id}/survey", api(cyc("recap", "/survey")), SEEING, 200),
    Case(
        "GET",
        "/api/v1/cycles/{cycle_id}/recap/report",
        api(cyc("recap", "/recap/report")),
        SEEING,
        200,
    ),
    # --- API: the notification log (each person: their teams' cycles and what is theirs)
    Case(
        "GET", "/api/v1/notifications", const("/api/v1/notifications"), ALL, 200, cycle_bound=False
    ),
    Case(
        "POST",
        "/api/v1/notifications/{notification_id}/send-again",
        lambda r: f"/api/v1/notifications/{r.failed_message}/send-again",
        SEEING,
        200,
    ),
    # --- operations: health and metrics, for load balancers and Prometheus
    Case("GET", "/healthz", const("/healthz"), ALL, 200, public=True, cycle_bound=False),
    Case("GET", "/metrics", const("/metrics"), ALL, 200, public=True, cycle_bound=False),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/survey",
        api(cyc("survey", "/survey")),
        SEEING,
        201,
        body(score=4, anonymous=True),
    ),
    # --- API: tokens (one's own only; someone else's is "not found")
    Case("GET", "/api/v1/tokens", const("/api/v1/tokens"), ALL, 200, cycle_bound=False),
    Case(
        "POST",
        "/api/v1/tokens",
        const("/api/v1/tokens"),
        ALL,
        201,
        body(name="script"),
        cycle_bound=False,
    ),
    Case("DELETE", "/api/v1/tokens/{token_id}", api(token()), {"sid"}, 200, refused=404),
    # --- API: imports of funnel data
    Case("GET", "/api/v1/imports", const("/api/v1/imports"), IMPORTERS, 200, cycle_bound=False),
    Case(
        "GET",
        "/api/v1/imports/history",
        const("/api/v1/imports/history"),
        IMPORTERS,
        200,
        cycle_bound=False,
    ),
    Case(
        "GET",
        "/api/v1/sources/currencies",
        const("/api/v1/sources/currencies"),
        IMPORTERS,
        200,
        cycle_bound=False,
    ),
    # (the world's sources hold no amount: refused as such, 422, after the access check)
    Case(
        "PUT",
        "/api/v1/sources/{source}/currency",
        const("/api/v1/sources/hubspot/currency"),
        IMPORTERS,
        422,
        body(currency="EUR"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/api/v1/imports",
        const("/api/v1/imports"),
        IMPORTERS,
        201,
        body(profile="hubspot"),
        cycle_bound=False,
        files=upload(**{"contacts.csv": CONTACTS}),
    ),
    Case(
        "GET",
        "/api/v1/imports/{import_id}",
        imported("previewed", prefix="/api/v1/imports"),
        IMPORT_TEAM,
        200,
    ),
    Case(
        "POST",
        "/api/v1/imports/{import_id}/preview",
        imported("previewed", "/preview", prefix="/api/v1/imports"),
        IMPORT_TEAM,
        200,
        body(dates="iso"),
    ),
    Case(
        "POST",
        "/api/v1/imports/{import_id}/confirm",
        imported("previewed", "/confirm", prefix="/api/v1/imports"),
        IMPORT_TEAM,
        200,
        body(),
    ),
    Case(
        "DELETE",
        "/api/v1/imports/{import_id}",
        imported("previewed", prefix="/api/v1/imports"),
        IMPORT_TEAM,
        200,
    ),
    Case(
        "GET",
        "/api/v1/imports/{import_id}/rejects/{file_number}",
        imported("done", "/rejects/1", prefix="/api/v1/imports"),
        IMPORT_TEAM,
        200,
    ),
    # --- pages: signing in and out
    Case("GET", "/login", const("/login"), ALL, 200, public=True),
    # without the sign-in form's CSRF token, nobody signs in
    Case(
        "POST",
        "/login",
        const("/login"),
        set(),
        403,
        form(email="sid@acme.test", password="x"),
        cycle_bound=False,
        public=True,
    ),
    Case("POST", "/logout", const("/logout"), ALL, 303, form(), cycle_bound=False),
    Case("GET", "/", const("/"), ALL, 303, cycle_bound=False),
    # --- pages: the board and starting a cycle
    Case("GET", "/cycles", const("/cycles"), ALL, 200, cycle_bound=False),
    Case("GET", "/cycles/new", const("/cycles/new"), {"sam", "pia"}, 200, cycle_bound=False),
    Case(
        "POST",
        "/cycles/new",
        const("/cycles/new"),
        {"sam", "pia"},
        303,
        form(playbook="sales-marketing-handoff", title="Started on the page"),
        cycle_bound=False,
    ),
    # --- pages: a cycle
    Case("GET", "/cycles/{cycle_id}", cyc("execute"), SEEING, 200),
    Case("POST", "/cycles/{cycle_id}/advance", cyc("ready", "/advance"), POINT, 303, form()),
    Case(
        "POST",
        "/cycles/{cycle_id}/point-person",
        cyc("identify", "/point-person"),
        SAM_LEE_MAX,
        303,
        form(team="marketing", email="mia@acme.test"),
    ),
    Case(
        "POST",
        "/checklist/{item_id}/answer",
        item("/answer"),
        {"lee", "sam"},
        303,
        form(answer="yes"),
    ),
    Case("GET", "/cycles/{cycle_id}/gaps", cyc("identify", "/gaps"), SEEING, 200),
    Case("POST", "/cycles/{cycle_id}/gaps", cyc("identify", "/gaps"), SEEING, 303, form(**GAP)),
    Case(
        "POST",
        "/gaps/{gap_id}/decide",
        gap("identify", "/decide"),
        SAM_LEE_MAX,
        303,
        form(**DECIDE),
    ),
    Case("GET", "/cycles/{cycle_id}/actions", cyc("execute", "/actions"), SEEING, 200),
    Case(
        "POST",
        "/cycles/{cycle_id}/actions",
        cyc("execute", "/actions"),
        ASSIGNERS,
        303,
        form(title="Planned on the page"),
    ),
    Case(
        "POST",
        "/actions/{action_id}/assign",
        action("plan_unassigned", "/assign"),
        ASSIGNERS,
        303,
        form(**ASSIGN),
    ),
    Case(
        "POST",
        "/actions/{action_id}/update",
        action("execute_sid", "/update"),
        UPDATERS,
        303,
        form(**UPDATE),
    ),
    Case(
        "POST",
        "/actions/{action_id}/target",
        action("execute_sid", "/target"),
        UPDATERS,
        303,
        form(kpi="sla_attainment", target="80%"),
    ),
    Case("GET", "/actions/{action_id}", action("execute_sid"), SEEING, 200),
    # an item's form as its box shows it when opened: only to whoever may use it
    Case(
        "GET",
        "/actions/{action_id}/form/{kind}",
        action("execute_sid", "/form/update"),
        UPDATERS,
        200,
    ),
    # an item's check-ins as their box shows them when opened: to whoever sees the item
    Case(
        "GET",
        "/actions/{action_id}/history/{which}",
        action("execute_sid", "/history/people"),
        SEEING,
        200,
    ),
    Case("GET", "/cycles/{cycle_id}/timeline", cyc("execute", "/timeline"), SEEING, 200),
    # --- pages: the recap
    Case("GET", "/cycles/{cycle_id}/recap", cyc("recap", "/recap"), SEEING, 200),
    Case("GET", "/cycles/{cycle_id}/report", cyc("recap", "/report"), SEEING, 200),
    Case("GET", "/cycles/{cycle_id}/report.md", cyc("recap", "/report.md"), SEEING, 200),
    # --- pages: messages (each person: their teams' cycles and what is theirs)
    Case("GET", "/notifications", const("/notifications"), ALL, 200, cycle_bound=False),
    # a failed message, sent again by whoever sees it (its cycle's teams, managers)
    Case(
        "POST",
        "/notifications/{notification_id}/send-again",
        lambda r: f"/notifications/{r.failed_message}/send-again",
        SEEING,
        303,
    ),
    Case("GET", "/cycles/{cycle_id}/recap.csv", cyc("recap", "/recap.csv"), SEEING, 200),
    Case(
        "POST",
        "/cycles/{cycle_id}/retrospective",
        cyc("recap", "/retrospective"),
        POINT,
        303,
        form(improvements="Faster hand-offs"),
    ),
    Case("POST", "/cycles/{cycle_id}/signoff", cyc("recap", "/signoff"), {"max"}, 303, form()),
    Case(
        "POST",
        "/cycles/{cycle_id}/survey",
        cyc("survey", "/survey"),
        SEEING,
        303,
        form(score="4", anonymous="1"),
    ),
    # --- pages: importing funnel data
    Case("GET", "/numbers/import", const("/numbers/import"), IMPORTERS, 200, cycle_bound=False),
    Case(
        "POST",
        "/numbers/import",
        const("/numbers/import"),
        IMPORTERS,
        303,
        form(profile="hubspot"),
        cycle_bound=False,
        files=upload(**{"contacts.csv": CONTACTS}),
    ),
    # (the world's sources hold no amount: an importer's choice is refused as such, 422, after
    # the access check that refuses everyone else)
    Case(
        "POST",
        "/numbers/import/currency",
        const("/numbers/import/currency"),
        IMPORTERS,
        422,
        form(source="hubspot", currency="EUR"),
        cycle_bound=False,
    ),
    Case("GET", "/numbers/import/{import_id}", imported("previewed"), IMPORT_TEAM, 200),
    # the progress block is for the page's script; a plain visit goes to the page
    Case(
        "GET",
        "/numbers/import/{import_id}/progress",
        imported("previewed", "/progress"),
        IMPORT_TEAM,
        303,
    ),
    Case(
        "POST",
        "/numbers/import/{import_id}/preview",
        imported("previewed", "/preview"),
        IMPORT_TEAM,
        303,
        form(profile="hubspot", dates="iso"),
    ),
    Case(
        "GET",
        "/numbers/import/{import_id}/columns",
        imported("previewed", "/columns"),
        IMPORT_TEAM,
        200,
    ),
    Case(
        "POST",
        "/numbers/import/{import_id}/columns",
        imported("previewed", "/columns"),
        IMPORT_TEAM,
        303,
        form(
            source="contacts",
            **{"holds-0": "leads", "0-leads-external_id": "Record ID"},
            **{"0-leads-mql_at": "Became a Marketing Qualified Lead Date"},
        ),
    ),
    Case(
        "GET",
        "/numbers/import/{import_id}/matched-columns.yaml",
        imported("matched", "/matched-columns.yaml"),
        IMPORT_TEAM,
        200,
    ),
    Case(
        "POST",
        "/numbers/import/{import_id}/confirm",
        imported("previewed", "/confirm"),
        IMPORT_TEAM,
        303,
        form(),
    ),
    Case(
        "POST",
        "/numbers/import/{import_id}/discard",
        imported("previewed", "/discard"),
        IMPORT_TEAM,
        303,
        form(),
    ),
    Case(
        "GET",
        "/numbers/import/{import_id}/rejects/{file_number}",
        imported("done", "/rejects/1"),
        IMPORT_TEAM,
        200,
    ),
    # --- pages: My work and the account
    Case("GET", "/my", const("/my"), ALL, 200, cycle_bound=False),
    Case("GET", "/numbers", const("/numbers"), ALL, 200, cycle_bound=False),
    Case("GET", "/account", const("/account"), ALL, 200, cycle_bound=False),
    # everyone may try; a wrong current password is refused next to the field
    Case(
        "POST",
        "/account/password",
        const("/account/password"),
        ALL,
        422,
        form(current="wrong-password", new_password="new-password-1", repeat="new-password-1"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/account/tokens",
        const("/account/tokens"),
        ALL,
        201,
        form(name="script"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/actions/{action_id}/gaps",
        action("execute_sid", "/gaps"),
        ASSIGNERS,
        303,
        lambda r: {"gap_id": str(r.world.gaps["execute_second"])},
    ),
    Case(
        "POST",
        "/actions/{action_id}/gaps/{gap_id}/unlink",
        lambda r: (
            f"/actions/{r.world.actions['execute_sid']}/gaps/{r.world.gaps['execute']}/unlink"
        ),
        ASSIGNERS,
        303,
        form(),
    ),
    Case(
        "POST",
        "/actions/{action_id}/signoff",
        action("awaiting_signoff", "/signoff"),
        {"meg"},  # its counterpart
        303,
        form(),
    ),
    # --- each team's own answers (a cycle whose both teams have full drafts) and the vote
    Case(
        "GET", "/api/v1/cycles/{cycle_id}/own-answers", api(cyc("own", "/own-answers")), SEEING, 200
    ),
    Case(
        "PUT",
        "/api/v1/cycles/{cycle_id}/own-answers",
        api(cyc("own", "/own-answers")),
        SEEING,  # everyone on sales or marketing
        200,
        body(answers={"written_criteria": "unsure"}),
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/own-answers/submit",
        api(cyc("own", "/own-answers/submit")),
        SEEING,
        200,
        body(),
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/own-answers/reveal",
        api(cyc("own", "/own-answers/reveal")),
        POINT,
        200,
        body(),
    ),
    Case(
        "GET",
        "/api/v1/cycles/{cycle_id}/divergence.csv",
        api(cyc("own", "/divergence.csv")),
        SEEING,
        200,
    ),
    Case(
        "GET",
        "/api/v1/cycles/{cycle_id}/recurring-gaps",
        api(cyc("identify", "/recurring-gaps")),
        SEEING,
        200,
    ),
    Case("GET", "/api/v1/cycles/{cycle_id}/votes", api(cyc("identify", "/votes")), SEEING, 200),
    # --- the SLA breach ledger (late leads) and the scheduled starts
    Case(
        "GET",
        "/api/v1/cycles/{cycle_id}/sla-breaches",
        api(cyc("execute", "/sla-breaches")),
        SEEING,
        200,
    ),
    Case("GET", "/cycles/{cycle_id}/late-leads", cyc("execute", "/late-leads"), SEEING, 200),
    Case(
        "POST",
        "/api/v1/scheduled-starts",
        const("/api/v1/scheduled-starts"),
        MANAGERS,
        200,
        body(),
        cycle_bound=False,
    ),
    Case(
        "PUT",
        "/api/v1/cycles/{cycle_id}/votes",
        api(cyc("identify", "/votes")),
        SEEING,
        200,
        lambda r: {"votes": {str(r.world.gaps["identify"]): 2}},
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/votes/close",
        api(cyc("identify", "/votes/close")),
        POINT,
        200,
        body(),
    ),
    Case("GET", "/cycles/{cycle_id}/own-answers", cyc("own", "/own-answers"), SEEING, 200),
    Case(
        "POST",
        "/cycles/{cycle_id}/own-answers",
        cyc("own", "/own-answers"),
        SEEING,
        303,
        form(**{"answer-written_criteria": "no"}),
    ),
    Case(
        "POST",
        "/cycles/{cycle_id}/own-answers/reveal",
        cyc("own", "/own-answers/reveal"),
        POINT,
        303,
        form(),
    ),
    Case("GET", "/cycles/{cycle_id}/divergence.csv", cyc("own", "/divergence.csv"), SEEING, 200),
    Case("GET", "/cycles/{cycle_id}/vote", cyc("identify", "/vote"), SEEING, 200),
    Case(
        "POST",
        "/cycles/{cycle_id}/vote",
        cyc("identify", "/vote"),
        SEEING,
        303,
        lambda r: {f"votes-{r.world.gaps['identify']}": "1"},
    ),
    Case(
        "POST", "/cycles/{cycle_id}/vote/close", cyc("identify", "/vote/close"), POINT, 303, form()
    ),
    # --- the teams' agreement, its changes, campaigns and materials (issue 20)
    Case("GET", "/agreements", const("/agreements"), ALL, 200, cycle_bound=False),
    Case("GET", "/numbers/campaigns", const("/numbers/campaigns"), ALL, 200, cycle_bound=False),
    Case("GET", "/numbers/flags", const("/numbers/flags"), ALL, 200, cycle_bound=False),
    Case("GET", "/numbers/flags.csv", const("/numbers/flags.csv"), ALL, 200, cycle_bound=False),
    Case("GET", "/numbers.csv", const("/numbers.csv"), ALL, 200, cycle_bound=False),
    Case(
        "GET",
        "/numbers/late-leads.csv",
        const("/numbers/late-leads.csv"),
        ALL,
        200,
        cycle_bound=False,
    ),
    Case("GET", "/agreements/{agreement_id}", agr(""), SEEING, 200),
    Case("GET", "/agreements/{agreement_id}/agreement.md", agr("/agreement.md"), SEEING, 200),
    Case("GET", "/agreements/{agreement_id}/campaigns", agr("/campaigns"), SEEING, 200),
    Case("GET", "/campaigns/{campaign_id}", agr_obj("campaign", "/campaigns"), SEEING, 200),
    Case(
        "POST",
        "/cycles/{cycle_id}/agreement",
        cyc("plan", "/agreement"),
        PROPOSERS - {"lee"},
        303,
        form(),
    ),
    Case(
        "POST",
        "/agreements/{agreement_id}/amendments",
        agr("/amendments"),
        PROPOSERS,
        303,
        lambda r: {
            "cycle_id": str(r.world.cycles["plan"]),
            "sla": "48",
            "reason": "Two time zones",
        },
    ),
    Case("GET", "/amendments/{amendment_id}", agr_obj("amendment", "/amendments"), SEEING, 303),
    Case(
        "POST",
        "/amendments/{amendment_id}/sign",
        agr_obj("amendment", "/amendments", "/sign"),
        POINT,
        303,
        form(),
    ),
    Case(
        "POST",
        "/amendments/{amendment_id}/reject",
        agr_obj("amendment", "/amendments", "/reject"),
        POINT,
        303,
        form(note="Not now"),
    ),
    Case(
        "POST",
        "/agreements/{agreement_id}/campaigns",
        agr("/campaigns"),
        CAMPAIGNERS,
        303,
        form(name="Spring webinars", owner_a="sid@acme.test"),
    ),
    Case(
        "POST",
        "/campaigns/{campaign_id}",
        agr_obj("campaign", "/campaigns"),
        CAMPAIGNERS,
        303,
        form(name="Autumn launch", funnel_key="autumn launch", owner_b="meg@acme.test"),
    ),
    Case(
        "PUT",
        "/api/v1/campaigns/{campaign_id}",
        api(agr_obj("campaign", "/campaigns")),
        CAMPAIGNERS,
        200,
        body(name="Autumn launch", funnel_key="autumn launch"),
    ),
    Case(
        "POST",
        "/campaigns/{campaign_id}/materials",
        agr_obj("campaign", "/campaigns", "/materials"),
        CAMPAIGNERS,
        303,
        form(title="Pricing battle card", kind="battle_card"),
    ),
    Case(
        "POST",
        "/materials/{material_id}/rating",
        agr_obj("material", "/materials", "/rating"),
        RATERS,
        303,
        form(usefulness="4", objections="Nothing on pricing in euros"),
    ),
    Case("GET", "/api/v1/agreements", const("/api/v1/agreements"), ALL, 200, cycle_bound=False),
    Case("GET", "/api/v1/agreements/{agreement_id}", api(agr("")), SEEING, 200),
    Case(
        "GET",
        "/api/v1/agreements/{agreement_id}/agreement.md",
        api(agr("/agreement.md")),
        SEEING,
        200,
    ),
    Case(
        "POST",
        "/api/v1/cycles/{cycle_id}/agreement",
        api(cyc("plan", "/agreement")),
        PROPOSERS - {"lee"},
        200,
        body(),
    ),
    Case(
        "POST",
        "/api/v1/agreements/{agreement_id}/amendments",
        api(agr("/amendments")),
        PROPOSERS,
        201,
        lambda r: {
            "cycle_id": r.world.cycles["plan"],
            "changes": {"handoff_sla_hours": 48},
            "reason": "Two time zones",
        },
    ),
    Case(
        "POST",
        "/api/v1/amendments/{amendment_id}/sign",
        api(agr_obj("amendment", "/amendments", "/sign")),
        POINT,
        200,
        body(),
    ),
    Case(
        "POST",
        "/api/v1/amendments/{amendment_id}/reject",
        api(agr_obj("amendment", "/amendments", "/reject")),
        POINT,
        200,
        body(note="Not now"),
    ),
    Case("GET", "/api/v1/agreements/{agreement_id}/campaigns", api(agr("/campaigns")), SEEING, 200),
    Case(
        "POST",
        "/api/v1/agreements/{agreement_id}/campaigns",
        api(agr("/campaigns")),
        CAMPAIGNERS,
        201,
        body(name="Spring webinars", owners=["sid@acme.test", "meg@acme.test"]),
    ),
    Case(
        "GET",
        "/api/v1/campaigns/{campaign_id}",
        api(agr_obj("campaign", "/campaigns")),
        SEEING,
        200,
    ),
    Case(
        "POST",
        "/api/v1/campaigns/{campaign_id}/materials",
        api(agr_obj("campaign", "/campaigns", "/materials")),
        CAMPAIGNERS,
        201,
        body(title="Pricing battle card", kind="battle_card"),
    ),
    Case(
        "PUT",
        "/api/v1/materials/{material_id}/rating",
        api(agr_obj("material", "/materials", "/rating")),
        RATERS,
        200,
        body(usefulness=2, objections="Nothing on pricing in euros"),
    ),
    Case(
        "POST",
        "/account/tokens/{token_id}/revoke",
        lambda r: f"/account{token('/revoke')(r)}",
        {"sid"},
        303,
        form(),
        refused=404,
    ),
    # --- API: the organisation, managed by managers (the admin pages' verbs)
    Case(
        "GET",
        "/api/v1/teams/{team_id}",
        extra("/api/v1/teams", "sales"),
        ALL,
        200,
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/api/v1/teams",
        const("/api/v1/teams"),
        MANAGERS,
        201,
        body(key="finance", name="Finance"),
        cycle_bound=False,
    ),
    Case(
        "PATCH",
        "/api/v1/teams/{team_id}",
        extra("/api/v1/teams", "sales"),
        MANAGERS,
        200,
        body(name="Sales team"),
        cycle_bound=False,
    ),
    Case(
        "GET",
        "/api/v1/people/{person_id}",
        persona("sid", prefix="/api/v1/people"),
        ALL,
        200,
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/api/v1/people",
        const("/api/v1/people"),
        MANAGERS,
        201,
        body(name="Ned Newcomer", email="ned@acme.test", team="sales"),
        cycle_bound=False,
    ),
    Case(
        "PATCH",
        "/api/v1/people/{person_id}",
        persona("sid", prefix="/api/v1/people"),
        MANAGERS,
        200,
        body(role="lead"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/api/v1/people/import",
        const("/api/v1/people/import"),
        MANAGERS,
        201,
        cycle_bound=False,
        content=PEOPLE_CSV,
    ),
    Case(
        "POST",
        "/api/v1/people/{person_id}/link",
        persona("sid", "/link", prefix="/api/v1/people"),
        MANAGERS,
        201,
        body(purpose="reset"),
        cycle_bound=False,
    ),
    # --- pages: admin, for managers
    Case("GET", "/admin", const("/admin"), MANAGERS, 303, cycle_bound=False),
    Case("GET", "/admin/people", const("/admin/people"), MANAGERS, 200, cycle_bound=False),
    Case(
        "POST",
        "/admin/people",
        const("/admin/people"),
        MANAGERS,
        303,
        form(name="Ned Newcomer", email="ned@acme.test", team="sales", role="member"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/people/import",
        const("/admin/people/import"),
        MANAGERS,
        303,
        cycle_bound=False,
        files=one_file("file", "people.csv", PEOPLE_CSV),
    ),
    Case("GET", "/admin/people/{person_id}", persona("sid"), MANAGERS, 200, cycle_bound=False),
    Case(
        "POST",
        "/admin/people/{person_id}",
        persona("sid"),
        MANAGERS,
        303,
        form(name="Sid Member", team="sales", role="lead"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/people/{person_id}/deactivate",
        persona("sid", "/deactivate"),
        MANAGERS,
        303,
        form(),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/people/{person_id}/reactivate",
        extra("/admin/people", "inactive", "/reactivate"),
        MANAGERS,
        303,
        form(),
        cycle_bound=False,
    ),
    # sid has no channel of his own: the manager is shown the link (201)
    Case(
        "POST",
        "/admin/people/{person_id}/link",
        persona("sid", "/link"),
        MANAGERS,
        201,
        form(purpose="reset"),
        cycle_bound=False,
    ),
    Case("GET", "/admin/teams", const("/admin/teams"), MANAGERS, 200, cycle_bound=False),
    Case(
        "POST",
        "/admin/teams",
        const("/admin/teams"),
        MANAGERS,
        303,
        form(name="Finance"),
        cycle_bound=False,
    ),
    Case(
        "GET",
        "/admin/teams/{team_id}",
        extra("/admin/teams", "sales"),
        MANAGERS,
        200,
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/teams/{team_id}",
        extra("/admin/teams", "sales"),
        MANAGERS,
        303,
        form(name="Sales team"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/teams/{team_id}/members",
        extra("/admin/teams", "sales", "/members"),
        MANAGERS,
        303,
        form(email="meg@acme.test"),
        cycle_bound=False,
    ),
    Case("GET", "/admin/channels", const("/admin/channels"), MANAGERS, 200, cycle_bound=False),
    Case(
        "POST",
        "/admin/channels",
        const("/admin/channels"),
        MANAGERS,
        303,
        form(kind="slack", owner="team:sales", url="slack://T1/B2/C3"),
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/admin/channels/{channel_id}/remove",
        extra("/admin/channels", "channel", "/remove"),
        MANAGERS,
        303,
        form(),
        cycle_bound=False,
    ),
    # --- pages: playbooks (everyone reads them; managers check a file)
    Case("GET", "/playbooks", const("/playbooks"), ALL, 200, cycle_bound=False),
    Case(
        "GET",
        "/playbooks/{playbook_id}",
        extra("/playbooks", "playbook"),
        ALL,
        200,
        cycle_bound=False,
    ),
    Case(
        "POST",
        "/playbooks/check",
        const("/playbooks/check"),
        MANAGERS,
        200,
        cycle_bound=False,
        files=lambda r: [("file", ("book.yaml", PLAYBOOK.read_bytes(), "application/yaml"))],
    ),
    # --- pages: password links and single sign-on (public; forms need the sign-in CSRF token)
    Case(
        "GET",
        "/password/forgot",
        const("/password/forgot"),
        ALL,
        200,
        cycle_bound=False,
        public=True,
    ),
    Case(
        "POST",
        "/password/forgot",
        const("/password/forgot"),
        set(),
        403,
        form(email="sid@acme.test"),
        cycle_bound=False,
        public=True,
    ),
    Case(
        "GET",
        "/password/{token}",
        const("/password/not-a-token"),
        set(),
        410,
        cycle_bound=False,
        public=True,
        refused=410,
    ),
    Case(
        "POST",
        "/password/{token}",
        const("/password/not-a-token"),
        set(),
        403,
        form(new_password="x"),
        cycle_bound=False,
        public=True,
    ),
    # single sign-on is not configured in this world: not found for everyone
    Case(
        "POST",
        "/login/sso",
        const("/login/sso"),
        set(),
        404,
        form(),
        cycle_bound=False,
        public=True,
        refused=404,
    ),
    Case(
        "GET",
        "/login/sso/callback",
        const("/login/sso/callback?state=x&code=y"),
        set(),
        404,
        cycle_bound=False,
        public=True,
        refused=404,
    ),
]


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(database_url, tmp_path_factory.mktemp("web")) as r:
        with r.store.unit_of_work() as s:
            r.extra["lee_item"] = s.scalar(
                select(ChecklistItem.id).where(
                    ChecklistItem.cycle_id == r.world.cycles["identify"],
                    ChecklistItem.phase == Phase.IDENTIFY,
                    ChecklistItem.key == "missed_conversions",
                )
            )
            r.extra["sid_token"] = s.scalar(
                select(ApiToken.id).where(ApiToken.person_id == r.personas["sid"].id)
            )
            # Sid says his third item is done; Meg, its counterpart, signs it off.
            r.world.actions["awaiting_signoff"] = awaiting_signoff(s, r.world.cycles["execute"])
            r.extra["own"] = own_answers_cycle(s)
            r.failed_message = failed_message(s, r.world.cycles["execute"])  # type: ignore[attr-defined]
            r.admin = admin_objects(s)  # type: ignore[attr-defined]
        r.imports = imports_of(r)  # type: ignore[attr-defined]
        with r.store.unit_of_work() as s:
            r.agree = agreement_objects(s, r)  # type: ignore[attr-defined]
        yield r


def failed_message(s: Any, cycle_id: int) -> int:
    """A reminder to meg, about a cycle, that failed for good (her team's channel answered
    503; sid must keep no channel of his own: see the reset link's line)."""
    from models.cadence import channels
    from models.cadence.tables import Notification, NotificationKind, NotificationStatus
    from models.services.common import person_by_email

    channel = channels.add_channel(
        s, person_by_email(s, "max@acme.test"), kind="webhook", team="marketing",
        url="json://127.0.0.1:9/marketing",
    )  # fmt: skip
    n = Notification(
        key="matrix:failed", channel_id=channel.id, recipient="meg@acme.test",
        kind=NotificationKind.REMINDER, cycle_id=cycle_id, subject="Overdue: an item",
        body="It was due.", status=NotificationStatus.FAILED, attempts=3,
        error="the channel answered 503",
    )  # fmt: skip
    s.add(n)
    s.flush()
    return n.id


def agreement_objects(s: Any, r: Rig) -> dict[str, int]:
    """The world's agreement (sales and marketing), a change proposed during the recap cycle's
    plan and waiting for signatures, a campaign and a material of marketing's."""
    from models.agreement_tables import Amendment
    from models.services import agreements, campaigns
    from models.services.campaigns import CampaignCreate, MaterialCreate
    from models.services.common import person_by_email

    recap = s.get(Cycle, r.world.cycles["recap"])
    agreement = agreements.agreement_of(s, recap)
    lee = person_by_email(s, "lee@acme.test")
    amendment = Amendment(
        agreement_id=agreement.id,
        cycle_id=recap.id,
        base_number=1,
        changes={"handoff_sla_hours": 36},
        reason="Proposed in the plan of the recap cycle",
        proposed_by_id=lee.id,
        gap_ids=[],
    )
    s.add(amendment)
    campaign = campaigns.add_campaign(s, agreement, CampaignCreate(name="Autumn launch"), lee)
    s.flush()
    material = campaigns.add_material(
        s,
        campaign,
        MaterialCreate(title="Launch deck", kind="deck", owner="meg@acme.test"),
        lee,
    )
    s.flush()
    return {
        "agreement": agreement.id,
        "amendment": amendment.id,
        "campaign": campaign.id,
        "material": material.id,
    }


def own_answers_cycle(s: Any) -> int:
    """A cycle of a playbook that asks each team for its own answers, in Identify, both teams'
    answers drafted in full (so a submission goes through), nothing submitted yet."""
    from models import phases
    from models.schemas import CycleCreate
    from models.services import team_input
    from models.services.common import person_by_email

    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook="lead-definition-and-scoring",
            title="Each team on its own",
            point_persons=["mia@acme.test"],
        ),
        person_by_email(s, "sam@acme.test"),
    )
    full = team_input.OwnAnswers(
        answers={q.key: "yes" for q in team_input.questions(c)},
        ratings={r.key: 3 for r in team_input.ratings(c)},
    )
    for email in ("sid@acme.test", "meg@acme.test"):
        team_input.save(s, c, full, person_by_email(s, email))
    s.flush()
    return c.id


def admin_objects(s: Any) -> dict[str, int]:
    """What the admin lines need: the sales team, a channel, a playbook, a deactivated person."""
    from models.cadence.tables import ChannelKind, NotificationChannel
    from models.schemas import PersonCreate
    from models.services import people
    from models.tables import Playbook, Team

    out = {"sales": s.scalar(select(Team.id).where(Team.key == "sales"))}
    channel = NotificationChannel(team_id=out["sales"], kind=ChannelKind.SLACK, url="slack://a/b/c")
    s.add(channel)
    ivy = people.create_person(
        s, PersonCreate(name="Ivy Inactive", email="ivy@acme.test", team="sales")
    )
    ivy.active = False
    s.flush()
    out["channel"], out["inactive"] = channel.id, ivy.id
    out["playbook"] = s.scalar(select(Playbook.id).order_by(Playbook.id).limit(1))
    return out


def awaiting_signoff(s: Any, cycle_id: int) -> int:
    """An item of the cycle owned by Sid, with Meg as counterpart, waiting for her sign-off
    (as under a playbook that asks counterparts to sign off)."""
    from sqlalchemy import update

    from models.enums import ActionStatus
    from models.tables import ActionItem, Person

    sid, meg = (
        s.scalar(select(Person.id).where(Person.email == f"{n}@acme.test")) for n in ("sid", "meg")
    )
    item_id = s.scalar(
        select(ActionItem.id)
        .where(ActionItem.cycle_id == cycle_id, ActionItem.owner_id == sid)
        .order_by(ActionItem.id.desc())
        .limit(1)
    )
    s.execute(
        update(ActionItem)
        .where(ActionItem.id == item_id)
        .values(status=ActionStatus.AWAITING_SIGNOFF, counterpart_id=meg)
    )
    return item_id


def imports_of(r: Rig) -> dict[str, tuple[int, Path, Path | None]]:
    """Two imports by Lee: one previewed (its files kept aside, to be put back), one imported
    with a rejected row. {name: (id, folder of its files, the copy kept aside)}."""

    out = {}
    for name in ("previewed", "done"):
        resp = r.client().post(
            "/api/v1/imports",
            data={"profile": "hubspot"},
            files=upload(**{f"{name}.csv": CONTACTS})(r),
            headers=r.bearer("lee"),
        )
        assert resp.status_code == 201, resp.text
        job_id = resp.json()["id"]
        if name == "done":
            done = r.client().post(f"/api/v1/imports/{job_id}/confirm", headers=r.bearer("lee"))
            assert done.status_code == 200 and done.json()["summary"]["rejected"] == 1, done.text
            out[name] = (job_id, Path("/nonexistent"), None)
            continue
        out[name] = _kept(r, job_id)
    # one whose columns Lee matched on the page (its mapping kept with its files)
    csrf = r.personas["lee"].csrf
    resp = r.client("lee").post(
        "/numbers/import",
        data={"csrf": csrf, "profile": "columns"},
        files=upload(**{"matched.csv": CONTACTS})(r),
    )
    assert resp.status_code == 303, resp.text
    job_id = int(resp.headers["location"].split("/")[-2])
    choices = {"source": "contacts", "holds-0": "leads", "0-leads-external_id": "Record ID"}
    resp = r.client("lee").post(f"/numbers/import/{job_id}/columns", data={"csrf": csrf, **choices})
    assert resp.status_code == 303, resp.text
    out["matched"] = _kept(r, job_id)
    return out


def _kept(r: Rig, job_id: int) -> tuple[int, Path, Path]:
    """The import's id, the folder of its files, and a copy of that folder kept aside."""
    from aligncycle.web.import_jobs import uploads_root
    from models.funnel.tables import ImportJob

    with r.store.unit_of_work() as s:
        folder = uploads_root(r.app) / s.get(ImportJob, job_id).folder
    kept = folder.parent.parent / f"kept-{job_id}"
    shutil.copytree(folder, kept)
    return job_id, folder, kept


def _request(r: Rig, case: Case, who: str) -> Any:
    client = r.client(None if who == ANON else who)
    url = case.url(r)
    data = case.body(r) if case.body else None
    files = case.files(r) if case.files else None
    if case.api:
        headers = r.bearer(who) if who != ANON else {}
        if files is not None:
            return client.request(case.method, url, headers=headers, data=data, files=files)
        if case.content is not None:
            headers = {**headers, "content-type": "text/csv"}
            return client.request(case.method, url, headers=headers, content=case.content)
        return client.request(case.method, url, headers=headers, json=data)
    if case.method == "GET":
        return client.get(url)
    payload = dict(data or {})
    if who != ANON:
        payload["csrf"] = r.personas[who].csrf
    return client.post(url, data=payload, files=files)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_route_for_every_role(world: Rig, case: Case) -> None:
    problems = []
    for who in [*PERSONAS, ANON]:
        with world.isolated():
            before = world.snapshot() if case.write and who not in case.allowed else None
            resp = _request(world, case, who)
            want = case.expected(who)
            if resp.status_code != want:
                problems.append(f"{who}: {resp.status_code} (want {want}) {resp.text[:160]!r}")
                continue
            if want == 303 and who == ANON and not case.public:
                assert resp.headers["location"].startswith("/login"), resp.headers
            if resp.status_code >= 400 and case.api:
                err = resp.json()["error"]
                assert err["code"] and err["message"], resp.text
            if before is not None and resp.status_code >= 300 and world.snapshot() != before:
                problems.append(f"{who}: refused, but the database changed")
    assert not problems, f"{case}:\n" + "\n".join(problems)


def _routes(routes: list, prefix: str = "") -> Iterator[str]:
    """``METHOD /path`` of every route, included routers too (FastAPI keeps those apart)."""
    for route in routes:
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                if method != "HEAD":
                    yield f"{method} {prefix}{route.path}"
        elif hasattr(route, "original_router"):
            inner = prefix + getattr(route.include_context, "prefix", "")
            yield from _routes(route.original_router.routes, inner)


def test_every_route_is_in_the_matrix(world: Rig) -> None:
    declared = set(_routes(world.app.routes))
    assert len(declared) > 50
    covered = {str(c) for c in CASES}
    assert declared - covered == set(), "routes without a line in the matrix"
    assert covered - declared == set(), "matrix lines for routes that do not exist"


def test_another_teams_person_sees_no_cycles(world: Rig) -> None:
    c = world.client("ola")
    board = c.get("/api/v1/cycles", headers=world.bearer("ola")).json()
    assert board["total"] == 0 and board["items"] == []
    assert "No cycles yet" in c.get("/cycles").text
    seen = world.client("sid").get("/api/v1/cycles", headers=world.bearer("sid")).json()
    assert seen["total"] == len(world.world.cycles) + len(world.extra) - 2  # lee_item, token


def test_pages_offer_only_the_actions_the_viewer_may_take(world: Rig) -> None:
    """Forms a person could not use are not shown (hidden, or the button is disabled)."""
    execute = world.world.cycles["execute"]
    recap = world.world.cycles["recap"]
    for who, can in (("lee", True), ("sid", False), ("sam", False)):
        page = world.client(who).get(f"/cycles/{execute}/actions").text
        assert ("New action item" in page) is can, who
    sid_page = world.client("sid").get(f"/cycles/{execute}/actions").text
    sid_item = world.world.actions["execute_sid"]
    meg_item = world.world.actions["execute_meg"]
    assert f'hx-get="/actions/{sid_item}/form/update?' in sid_page  # his own item
    assert f'hx-get="/actions/{meg_item}/form/update?' in sid_page  # Meg's, his the counterpart
    assert world.client("sid").get(f"/actions/{meg_item}/form/update").status_code == 200
    pia_page = world.client("pia").get(f"/cycles/{execute}/actions").text
    assert f"/actions/{meg_item}/form/update" not in pia_page  # neither hers nor paired
    refused = world.client("pia").get(f"/actions/{meg_item}/form/update")
    assert refused.status_code == 403 and 'action="/actions/' not in refused.text
    for who, can in (("max", True), ("lee", False), ("sam", False)):
        page = world.client(who).get(f"/cycles/{recap}/recap").text
        assert ("Sign off the recap" in page) is can, who
        assert ("Record the retrospective" in page or "Revise the retrospective" in page) is (
            who == "sam"
        ), who
    for who, can in (("sam", True), ("pia", False), ("max", False)):
        page = world.client(who).get(f"/cycles/{world.extra['ready']}").text
        assert (f'action="/cycles/{world.extra["ready"]}/advance"' in page) is can, who
    assert "Start a cycle" in world.client("pia").get("/cycles").text
    assert "Start a cycle" not in world.client("lee").get("/cycles").text
