"""Setting up: the store (db), playbooks, teams and people."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table
from aligncycle.commands import db_app, person_app, playbook_app, team_app
from aligncycle.commands.common import (
    ok,
    when,
)
from models.enums import (
    Role,
)
from models.words import counted, value_word

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.tables import Person


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables, then load the playbooks folder."""
    from aligncycle.settings import get_settings
    from migrations import runner
    from models.services import playbooks

    store = cc.store()
    for line in runner.upgrade(store.engine):  # what it repaired of an interrupted upgrade
        ok(line)
    ok(f"store {cc.display_url()} is at revision {', '.join(sorted(runner.heads()))}")
    directory = get_settings().playbooks_dir
    with store.unit_of_work() as s:
        loaded = playbooks.sync_directory(s, directory) if directory.is_dir() else []
        lines = [
            f"{'loaded' if created else 'unchanged'} playbook {row.name}@{row.version}"
            f" ({row.source})"
            for row, created in loaded
        ]
    for line in lines:
        ok(line)
    if not lines:
        ok(f"no playbooks found in {directory}")


@db_app.command("current")
def db_current(json_: bool = JSON_OPTION) -> None:
    """Show the store's schema revision and whether it is up to date."""
    from migrations import runner

    url = cc.database_url()
    path = cc._sqlite_file(url)
    current = set() if path is not None and not path.exists() else runner.current(cc.store().engine)
    heads = runner.heads()
    info = {
        "url": cc.display_url(url),
        "current": sorted(current),
        "head": sorted(heads),
        "up_to_date": current == heads,
    }
    if json_:
        emit_json(info)
        return
    ok(f"store:    {info['url']}")
    ok(f"revision: {', '.join(info['current']) or '(not set up)'}")
    ok(f"head:     {', '.join(info['head'])}")
    if not current:
        ok("the store is not set up; run 'aligncycle db upgrade'")
    elif current != heads:
        ok("the store is behind; run 'aligncycle db upgrade'")
    else:
        ok("up to date")


@playbook_app.command("list")
def playbook_list(json_: bool = JSON_OPTION) -> None:
    """Every loaded playbook version."""
    from models.schemas import PlaybookRead
    from models.services import playbooks

    with cc.unit_of_work() as s:
        rows = [PlaybookRead.model_validate(p) for p in playbooks.list_playbooks(s)]
    if json_:
        emit_json(rows)
        return
    table(
        [[p.name, p.version, p.title, p.source, when(p.loaded_at)] for p in rows],
        ["name", "version", "title", "source", "loaded"],
    )


@playbook_app.command("show")
def playbook_show(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="Newest version by default."),
    json_: bool = JSON_OPTION,
) -> None:
    """A playbook's teams, settings and questions."""
    from models.schemas import PlaybookRead
    from models.services import playbooks

    with cc.unit_of_work() as s:
        row = playbooks.get_playbook(s, ref)
        read = PlaybookRead.model_validate(row)
        spec = playbooks.spec_of(row)
    if json_:
        emit_json(read.model_dump(mode="json") | {"spec": spec.model_dump(mode="json")})
        return
    ok(f"{spec.name}@{spec.version}: {spec.title}")
    if spec.description:
        ok(clip(spec.description, 200))
    st = spec.settings
    ok(
        f"teams: {', '.join(spec.teams)}; cycle length {st.cycle_length_days} days; "
        f"cadence {st.cadence}; hand-off SLA {st.handoff_sla_hours} h; "
        f"manager sign-off {'required' if st.manager_signoff_required else 'optional'}"
    )
    if spec.kpis:
        ok(f"kpis: {', '.join(spec.kpis)}")
    rows = []
    for phase, _pos, q in spec.questions():
        owner = ""
        if q.owner is not None:
            owner = f"{q.owner.role}" + (f"@{q.owner.team}" if q.owner.team else "")
        rows.append(
            [f"{phase}.{q.key}", "yes" if q.required else "", q.answer, owner, clip(q.text, 60)]
        )
    table(rows, ["question", "required", "answer", "owner", "text"])


@playbook_app.command("validate")
def playbook_validate(
    files: list[Path] = typer.Argument(..., help="Playbook YAML files to check."),
) -> None:
    """Check playbook files without loading them (no database needed)."""
    from models.playbook_check import check_text

    failed = 0
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            problems = [f"cannot read: {exc.strerror}"]
        except UnicodeDecodeError:
            problems = ["not UTF-8 text"]
        else:
            result = check_text(text, str(path))
            problems = result.problems
        if problems:  # each a sentence naming the line and the field in words
            failed += 1
            for problem in problems:
                typer.echo(f"error: {path}: {cc.one_line(problem)}", err=True)
            continue
        spec = result.spec
        ok(f"ok {path}: {spec.name}@{spec.version} ({counted(len(spec.questions()), 'question')})")
    if failed:
        raise typer.Exit(1)


@playbook_app.command("load")
def playbook_load(
    directory: Path | None = typer.Argument(
        None,
        exists=True,
        file_okay=False,
        help="Folder of playbook files (default: ALIGNCYCLE_PLAYBOOKS_DIR).",
    ),
    as_: str | None = typer.Option(
        None, "--as", envvar="ALIGNCYCLE_ACTOR", help="Who loads them (for the audit log)."
    ),
) -> None:
    """Validate every playbook in a folder, then load them all (all or nothing)."""
    from aligncycle.settings import get_settings
    from models.services import playbooks

    directory = directory or get_settings().playbooks_dir
    if not directory.is_dir():
        cc.fail(f"no such folder: {directory}")
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_) if as_ else None
        loaded = playbooks.sync_directory(s, directory, actor=actor)
        lines = [
            f"{'loaded' if created else 'unchanged'} playbook {row.name}@{row.version}"
            f" ({row.source})"
            for row, created in loaded
        ]
    for line in lines:
        ok(line)
    if not lines:
        ok(f"no playbooks found in {directory}")


@playbook_app.command("schema")
def playbook_schema() -> None:
    """Print the playbook file format as JSON Schema (for editors)."""
    from models.playbook import json_schema

    emit_json(json_schema())


def _admin(
    session: Session, email: str | None, what: str = "add teams and people"
) -> Person | None:
    """The acting manager for adding teams and people (anyone while there is no manager yet)."""
    from models.errors import NotFound
    from models.services import people
    from models.services.common import person_by_email

    actor = None
    if email:
        try:
            actor = person_by_email(session, email)
        except NotFound:
            if people.has_manager(session):
                raise
    people.require_admin(session, actor, what)
    return actor


@team_app.command("add")
def team_add(
    key: str = typer.Argument(..., help="Short key, e.g. sales."),
    name: str = typer.Argument(..., help="Display name, e.g. Sales."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add a team (managers; anyone while the store has no manager yet)."""
    from models.schemas import TeamCreate, TeamRead
    from models.services import people

    data = TeamCreate(key=key, name=name)
    with cc.unit_of_work() as s:
        actor = _admin(s, as_)
        out = TeamRead.model_validate(people.create_team(s, data, actor))
    if json_:
        emit_json(out)
    else:
        ok(f"added team {out.key} ({out.name})")


@team_app.command("list")
def team_list(json_: bool = JSON_OPTION) -> None:
    """Every team."""
    from models.schemas import TeamRead
    from models.services import people

    with cc.unit_of_work() as s:
        rows = [TeamRead.model_validate(t) for t in people.list_teams(s)]
    if json_:
        emit_json(rows)
        return
    table([[t.key, t.name] for t in rows], ["key", "name"])


@person_app.command("add")
def person_add(
    name: str = typer.Option(..., "--name", help="Full name."),
    email: str = typer.Option(..., "--email", help="Email address (their login)."),
    team: str = typer.Option(..., "--team", help="Team key."),
    role: Role = typer.Option(Role.MEMBER, "--role", help="Role in the process."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add a person (managers; anyone while the store has no manager yet)."""
    from models.schemas import PersonCreate, PersonRead
    from models.services import people

    data = PersonCreate(name=name, email=email, team=team, role=role)
    with cc.unit_of_work() as s:
        actor = _admin(s, as_)
        out = PersonRead.model_validate(people.create_person(s, data, actor))
        no_manager = not people.has_manager(s)
    if json_:
        emit_json(out)
        return
    ok(f"added {out.name} <{out.email}>: {value_word(out.role)} on {out.team.name}")
    if no_manager:
        ok("note: there is no manager yet, so anyone can add teams and people until one is added")


@person_app.command("list")
def person_list(
    team: str | None = typer.Option(None, "--team", help="Only this team (key)."),
    role: Role | None = typer.Option(None, "--role", help="Only this role."),
    json_: bool = JSON_OPTION,
) -> None:
    """People, by team."""
    from models.schemas import PersonRead
    from models.services import people

    with cc.unit_of_work() as s:
        rows = [PersonRead.model_validate(p) for p in people.list_people(s, team=team, role=role)]
    if json_:
        emit_json(rows)
        return
    table(
        [[p.email, p.name, p.team.key, p.role, "" if p.active else "inactive"] for p in rows],
        ["email", "name", "team", "role", "status"],
    )


@team_app.command("rename")
def team_rename(
    key: str = typer.Argument(..., help="The team's key, e.g. sales."),
    name: str = typer.Argument(..., help="Its new display name."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Give a team a new name (managers). Its key stays."""
    from models.schemas import TeamRead
    from models.services import people

    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "rename teams")
        team = people.rename_team(s, people.team_by_key(s, key), name, actor)
        out = TeamRead.model_validate(team)
    if json_:
        emit_json(out)
    else:
        ok(f"team {out.key} is now called {out.name}")


@person_app.command("set")
def person_set(
    email: str = typer.Argument(..., help="The person's email."),
    name: str | None = typer.Option(None, "--name", help="New full name."),
    team: str | None = typer.Option(None, "--team", help="Move to this team (key)."),
    role: Role | None = typer.Option(None, "--role", help="New role."),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Change a person's name, team or role (managers)."""
    from models.schemas import PersonRead, PersonUpdate
    from models.services import people

    data = PersonUpdate(name=name, team=team, role=role)
    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "change people's roles and teams")
        person = people.update_person(s, people.person_with_email(s, email), data, actor)
        out = PersonRead.model_validate(person)
    if json_:
        emit_json(out)
    else:
        ok(f"{out.name} <{out.email}>: {value_word(out.role)} on {out.team.name}")


@person_app.command("deactivate")
def person_deactivate(
    email: str = typer.Argument(..., help="The person's email."),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Stop a person signing in and being given work (managers). Their history is kept."""
    from models.services import people

    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "deactivate people")
        person = people.deactivate_person(s, people.person_with_email(s, email), actor)
        name = person.name
    ok(f"{name} is deactivated: they can no longer sign in or be given work")


@person_app.command("reactivate")
def person_reactivate(
    email: str = typer.Argument(..., help="The person's email."),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Let a deactivated person sign in and be given work again (managers)."""
    from models.services import people

    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "reactivate people")
        person = people.reactivate_person(s, people.person_with_email(s, email), actor)
        name = person.name
    ok(f"{name} is active again")


@person_app.command("import")
def person_import(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV with name, email, team and (optional) role."
    ),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add every person of a CSV file, or nobody (managers): a bad row refuses the whole file,
    each problem named by line and column."""
    from models.schemas import PersonRead
    from models.services import people_import

    text = people_import.decode(file.read_bytes())
    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "add people")
        result = people_import.import_people(s, text, actor, source=str(file))
        added = [PersonRead.model_validate(p) for p in result.added]
    if json_:
        emit_json({"added": added, "unchanged": result.unchanged})
    else:
        ok(result.summary())


@person_app.command("invite")
def person_invite(
    email: str = typer.Argument(..., help="The person's email."),
    reset: bool = typer.Option(
        False, "--reset", help="A password-reset link rather than an invitation."
    ),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Send a person a link to choose their password (managers): through their own
    notification channels, else printed here to pass on. Links start with
    ALIGNCYCLE_BASE_URL."""
    from aligncycle.settings import get_settings
    from aligncycle.web.deps import secret_key
    from models.services import invitations, people

    settings = get_settings()
    purpose = invitations.Purpose.RESET if reset else invitations.Purpose.INVITE
    with cc.unit_of_work() as s:
        actor = _admin(s, as_, "send invitation and reset links")
        sent = invitations.send_link(
            s,
            people.person_with_email(s, email),
            purpose,
            actor,
            secret=secret_key(settings),
            base_url=settings.effective_base_url,
        )
        name, channels, link = sent.person.name, sent.channels, sent.link
    if channels:
        from flows import notify
        from models.cadence.tables import NotificationKind

        result = notify.deliver(cc.store(), [NotificationKind.ACCOUNT], workers=1)
        where = ", ".join(channels)
        if result.sent:
            ok(f"link for {name} sent to {where}")
        else:
            ok(f"link for {name} planned for {where}; not sent yet (it is retried later)")
    else:
        ok(f"{name} has no notification channel of their own; pass this link on: {link}")
