"""Admin pages for managers: people (add, import from a file, change role and team, deactivate,
invite and reset a password) and teams (add, rename, members).

Every write is a domain verb of :mod:`models.services.people`, :mod:`.people_import` or
:mod:`.invitations`, which checks that the person acting is a manager; the pages check it too,
to refuse before showing a form. A link for someone without a channel of their own is shown to
the manager once (the page answers 201, nothing is redirected through a cookie).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx, status_of
from aligncycle.web.links import MAX_PEOPLE_FILE, base_url, deliver_later
from aligncycle.web.pages import (
    PAGE_SIZE,
    FormState,
    act,
    form_values,
    opt,
    page,
    page_number,
    pager,
    parse_form,
    redirect,
    render,
)
from models.enums import Role
from models.errors import DomainError, InvalidInput
from models.schemas import PersonCreate, PersonUpdate, TeamCreate
from models.services import accounts, invitations, people, people_import

router = APIRouter(include_in_schema=False)


def require_admin(ctx: Ctx, what: str = "use the admin pages") -> None:
    people.require_admin(ctx.session, ctx.me, what)


def _link_words(sent: invitations.LinkSent) -> str:
    what = "An invitation" if sent.purpose is invitations.Purpose.INVITE else "A reset link"
    if sent.sent:
        where = " and ".join(sent.channels)
        return f"{what} is on its way to {sent.person.name} ({where})."
    return (
        f"{sent.person.name} has no notification channel of their own, so pass this link on "
        "yourself (it is shown only now)."
    )


# --- people ---------------------------------------------------------------------------------


@page(router, "/admin")
def admin_home(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    require_admin(ctx)
    return RedirectResponse("/admin/people", status_code=303)


@page(router, "/admin/people")
def people_page(
    request: Request,
    ctx: Ctx,
    *,
    query=None,
    forms=None,
    status: int = 200,
    sent: invitations.LinkSent | None = None,
    imported: people_import.PeopleImport | None = None,
) -> Response:
    require_admin(ctx)
    query = query or {}
    team = query.get("team") or None
    show = query.get("show", "active")
    active = None if show == "all" else (show != "deactivated")
    teams = people.list_teams(ctx.session)
    if team not in {t.key for t in teams}:
        team = None
    everyone = people.list_people(ctx.session, team=team, active=active, search=query.get("q"))
    number = page_number(query)
    rows = everyone[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    here = {"q": query.get("q") or "", "team": team or "", "show": show}
    base = "/admin/people?" + urlencode({k: v for k, v in here.items() if v})
    return render(
        request,
        ctx,
        "admin_people.html",
        status=status,
        rows=rows,
        pager=pager(len(everyone), number),
        base=base,
        teams=teams,
        team=team,
        show=show,
        q=query.get("q", ""),
        sent=sent,
        imported=imported,
        forms=forms or {},
        link_words=_link_words,
        section="people",
    )


@router.post("/admin/people")
def person_add_post(request: Request, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    try:
        require_admin(ctx, "add people")
        payload = opt(data, "name", "email", "team", "role")
        person = people.create_person(ctx.session, parse_form(PersonCreate, payload), ctx.me)
        sent = None
        if data.get("invite"):
            sent = invitations.send_link(
                ctx.session,
                person,
                invitations.Purpose.INVITE,
                ctx.me,
                secret=request.app.state.secret_key,
                base_url=base_url(request),
            )
        ctx.session.flush()
    except DomainError as exc:
        ctx.session.rollback()
        return _again(request, ctx, "add", data, exc)
    if sent is not None and not sent.sent:
        return person_page(request, ctx, person.id, sent=sent, status=201)
    message = f"{person.name} added to {person.team.name}."
    if sent is not None:
        message += " " + _link_words(sent)
    resp = redirect(request, f"/admin/people/{person.id}", message)
    if sent is not None:
        deliver_later(request, resp)
    return resp


def _again(request: Request, ctx: Ctx, form_id: str, data: dict, exc: DomainError) -> Response:
    fields = getattr(exc, "fields", None) or (
        {exc.field: exc.message} if getattr(exc, "field", None) else {}
    )
    state = FormState(values=data, error=exc.message, fields=fields)
    return people_page(request, ctx, forms={form_id: state}, status=status_of(exc))


@router.post("/admin/people/import")
async def people_import_post(request: Request, ctx: PageCtx) -> Response:
    upload = ctx.form.get("file") if ctx.form is not None else None
    data = form_values(ctx.form)
    try:
        require_admin(ctx, "add people")
        if upload is None or isinstance(upload, str) or not getattr(upload, "filename", ""):
            raise InvalidInput("choose a CSV file of people", field="file")
        raw = await upload.read(MAX_PEOPLE_FILE + 1)
        if len(raw) > MAX_PEOPLE_FILE:
            raise InvalidInput(
                f"the file is larger than {MAX_PEOPLE_FILE // (1024 * 1024)} MB; import it in "
                "parts",
                field="file",
            )
        text = people_import.decode(raw)

        def run() -> people_import.PeopleImport:  # off the event loop: thousands of rows
            result = people_import.import_people(ctx.session, text, ctx.me, upload.filename)
            ctx.session.flush()
            return result

        result = await run_in_threadpool(run)
    except DomainError as exc:
        ctx.session.rollback()
        state = FormState(values=data, error=exc.message, fields={})
        if getattr(exc, "problems", None):
            state.fields = {"file": "see the rows listed above"}
        state.problems = getattr(exc, "problems", [])  # type: ignore[attr-defined]
        return people_page(request, ctx, forms={"import": state}, status=status_of(exc))
    return redirect(request, "/admin/people", result.summary().capitalize() + ".")


@page(router, "/admin/people/{person_id}")
def person_page(
    request: Request,
    ctx: Ctx,
    person_id: int,
    *,
    query=None,
    forms=None,
    status: int = 200,
    sent: invitations.LinkSent | None = None,
) -> Response:
    require_admin(ctx)
    person = people.get_person(ctx.session, person_id)
    return render(
        request,
        ctx,
        "admin_person.html",
        status=status,
        person=person,
        teams=people.list_teams(ctx.session),
        has_password=accounts.has_password(ctx.session, person),
        history=history_lines(
            people.history(ctx.session, person),
            person,
            {t.key: t.name for t in people.list_teams(ctx.session)},
        ),
        sent=sent,
        link_words=_link_words,
        forms=forms or {},
        section="people",
    )


@router.post("/admin/people/{person_id}")
def person_edit_post(request: Request, person_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        require_admin(ctx, "change people's roles and teams")
        person = people.get_person(ctx.session, person_id)
        update = parse_form(PersonUpdate, opt(data, "name", "team", "role"))
        people.update_person(ctx.session, person, update, ctx.me)
        return f"Saved: {person.name} is now {_role_words(person)} of {person.team.name}."

    here = f"/admin/people/{person_id}"
    return act(request, ctx, form_id="edit", default_next=here, run=run)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _role(value: Any) -> str:
    try:
        return people.ROLE_WORDS[Role(value)]
    except ValueError:
        return str(value)


def history_lines(events: list[Any], person: Any, team_names: dict[str, str]) -> list[dict]:
    """A person's audit entries as sentences: who did what, when."""
    out = []
    for e in events:
        who = "aligncycle" if e.actor is None else e.actor.name
        if e.actor_id == person.id:
            who = "They"
        before, after = e.before or {}, e.after or {}
        team = team_names.get(str(after.get("team")), str(after.get("team", "")))
        if e.verb == "person.created":
            text = f"added them to {team} as {_a(_role(after.get('role')))}"
        elif e.verb == "person.deactivated":
            text = "deactivated them"
        elif e.verb == "person.reactivated":
            text = "reactivated them"
        elif e.verb == "person.updated":
            parts = []
            if "name" in after:
                parts.append(f"renamed them “{after['name']}”")
            if "team" in after:
                was = team_names.get(str(before.get("team")), str(before.get("team")))
                parts.append(f"moved them from {was} to {team}")
            if "role" in after:
                was = _role(before.get("role"))
                parts.append(f"made them {_a(_role(after['role']))} (was {_a(was)})")
            if "active" in after:
                parts.append("reactivated them" if after["active"] else "deactivated them")
            text = " and ".join(parts) or "changed them"
        elif e.verb == "account.link_sent":
            what = "an invitation" if after.get("purpose") == "invite" else "a password-reset link"
            how = "through their own channel" if after.get("channels") else "to pass on"
            text = f"sent {what} {how}"
        elif e.verb == "account.link_used":
            text = "used a link to choose a password"
        elif e.verb == "account.password_set":
            text = "set a first password"
        elif e.verb == "account.password_changed":
            text = "changed the password"
        else:
            continue
        out.append({"at": e.at, "text": f"{who} {text}."})
    return out


def _role_words(person: Any) -> str:
    word = people.ROLE_WORDS[person.role]
    return f"a {word}" if word[0] not in "aeiou" else f"an {word}"


@router.post("/admin/people/{person_id}/deactivate")
def person_deactivate_post(request: Request, person_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        person = people.get_person(ctx.session, person_id)
        people.deactivate_person(ctx.session, person, ctx.me)
        return (
            f"{person.name} is deactivated: they can no longer sign in or be given work. "
            "Everything they did is kept."
        )

    here = f"/admin/people/{person_id}"
    return act(request, ctx, form_id="active", default_next=here, run=run)


@router.post("/admin/people/{person_id}/reactivate")
def person_reactivate_post(request: Request, person_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        person = people.get_person(ctx.session, person_id)
        people.reactivate_person(ctx.session, person, ctx.me)
        return f"{person.name} is active again."

    here = f"/admin/people/{person_id}"
    return act(request, ctx, form_id="active", default_next=here, run=run)


@router.post("/admin/people/{person_id}/link")
def person_link_post(request: Request, person_id: int, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    try:
        person = people.get_person(ctx.session, person_id)
        purpose_text = data.get("purpose", "")
        if purpose_text not in {p.value for p in invitations.Purpose}:
            raise InvalidInput("choose an invitation or a password reset")
        sent = invitations.send_link(
            ctx.session,
            person,
            invitations.Purpose(purpose_text),
            ctx.me,
            secret=request.app.state.secret_key,
            base_url=base_url(request),
        )
        ctx.session.flush()
    except DomainError as exc:
        ctx.session.rollback()
        state = FormState(values=data, error=exc.message)
        return person_page(request, ctx, person_id, forms={"link": state}, status=status_of(exc))
    if not sent.sent:
        return person_page(request, ctx, person_id, sent=sent, status=201)
    resp = redirect(request, f"/admin/people/{person_id}", _link_words(sent))
    deliver_later(request, resp)
    return resp


# --- teams ----------------------------------------------------------------------------------


@page(router, "/admin/teams")
def teams_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    require_admin(ctx)
    return render(
        request,
        ctx,
        "admin_teams.html",
        status=status,
        teams=people.list_teams(ctx.session),
        sizes=people.team_sizes(ctx.session),
        forms=forms or {},
        section="teams",
    )


@router.post("/admin/teams")
def team_add_post(request: Request, ctx: PageCtx) -> Response:
    created: dict[str, int] = {}

    def run(data: dict[str, str]) -> str:
        require_admin(ctx, "add teams")
        payload = opt(data, "name", "key")
        if "key" not in payload and payload.get("name"):
            payload["key"] = _key_of(payload["name"])
        team = people.create_team(ctx.session, parse_form(TeamCreate, payload), ctx.me)
        ctx.session.flush()
        created["id"] = team.id
        return f"Team {team.name} added. Add people to it below."

    resp = act(request, ctx, form_id="add-team", default_next="/admin/teams", run=run)
    if "id" in created and resp.status_code == 303:
        resp.headers["location"] = f"/admin/teams/{created['id']}"
    return resp


def _key_of(name: str) -> str:
    """A team's short key from its name ("Customer Success" → ``customer-success``)."""
    import re

    key = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64]
    return key if key[:1].isalpha() else f"team-{key}".strip("-")


@page(router, "/admin/teams/{team_id}")
def team_page(
    request: Request, ctx: Ctx, team_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    require_admin(ctx)
    team = people.get_team(ctx.session, team_id)
    everyone = people.list_people(ctx.session, active=True)
    return render(
        request,
        ctx,
        "admin_team.html",
        status=status,
        team=team,
        members=people.list_people(ctx.session, team=team.key),
        others=[p for p in everyone if p.team_id != team.id],
        forms=forms or {},
        section="teams",
    )


@router.post("/admin/teams/{team_id}")
def team_rename_post(request: Request, team_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        team = people.get_team(ctx.session, team_id)
        before = team.name
        people.rename_team(ctx.session, team, data.get("name", ""), ctx.me)
        return f"{before} is now called {team.name}." if before != team.name else "No change."

    here = f"/admin/teams/{team_id}"
    return act(request, ctx, form_id="rename", default_next=here, run=run)


@router.post("/admin/teams/{team_id}/members")
def team_member_post(request: Request, team_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        from models.services.common import person_by_email

        team = people.get_team(ctx.session, team_id)
        require_admin(ctx, "change people's teams")
        if not data.get("email", "").strip():
            raise InvalidInput("choose a person", field="email")
        person = person_by_email(ctx.session, data["email"])
        if person.team_id == team.id:
            raise InvalidInput(f"{person.name} is already in {team.name}", field="email")
        was = person.team.name
        people.update_person(ctx.session, person, PersonUpdate(team=team.key), ctx.me)
        return f"{person.name} moved from {was} to {team.name}."

    here = f"/admin/teams/{team_id}"
    return act(request, ctx, form_id="member", default_next=here, run=run)
