"""CLI of the web app: serve it, set passwords, manage personal API tokens.

    aligncycle serve [--host 127.0.0.1] [--port 8000] [--workers N] [--reload] [--demo]
    aligncycle user set-password EMAIL [--password-stdin]
    aligncycle token create --name NAME [--days N] --as EMAIL
    aligncycle token list --as EMAIL [--json]
    aligncycle token revoke ID --as EMAIL

FastAPI and uvicorn are imported only by ``serve``. Errors are one line on stderr (the main
app's error mapping): exit 1 for a refused operation, 2 for bad usage.
"""

from __future__ import annotations

import ipaddress
import logging.config
import os
import sys
from pathlib import Path

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, emit_json, table

DEMO_PASSWORD = "demo-password"


def demo_data_dir() -> Path:
    """Where ``serve --demo`` keeps its store: beside the real data dir, never inside it."""
    from aligncycle.settings import get_settings

    data_dir = Path(get_settings().data_dir)
    return data_dir.parent / f"{data_dir.name}-demo"


def prepare_demo() -> Path:
    """Point this process at the demo store and fill it once (organisation, cycles, passwords).
    Returns the demo data dir."""
    from aligncycle.web import seed
    from migrations import runner

    directory = demo_data_dir()
    os.environ["ALIGNCYCLE_DATA_DIR"] = str(directory)
    os.environ["ALIGNCYCLE_DEMO"] = "1"  # the sign-in page lists the demo accounts
    os.environ.pop("ALIGNCYCLE_DATABASE_URL", None)
    cc.reset_store()
    st = cc.store()
    runner.upgrade(st.engine)
    from sqlalchemy import func, select

    from models.tables import Cycle

    with st.unit_of_work() as s:
        if not s.scalar(select(func.count()).select_from(Cycle)):
            seed.seed_org(s)
            seed.import_funnel(s, directory / "exports")
            seed.build_world(s)
            seed.set_passwords(s, DEMO_PASSWORD)
    return directory


KEY_HINT = (
    "set the same ALIGNCYCLE_SECRET_KEY (at least 32 characters, e.g. the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`) in the environment of "
    "every instance"
)


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def shared_key_problem(host: str, workers: int | None, key: str | None) -> str | None:
    """Why ``serve`` must not start with this key, or None. Forms are signed with the key:
    several worker processes, or an address other machines reach (where a second instance
    behind the same proxy is one deployment away), need one configured key, or a form served
    by one answers "form has expired" on another."""
    if key:
        if len(key.strip()) < 32:
            return f"ALIGNCYCLE_SECRET_KEY is too short ({len(key.strip())} characters); {KEY_HINT}"
        return None
    if workers is not None and workers > 1:
        return f"{workers} worker processes need a shared signing key: {KEY_HINT}"
    if not is_loopback(host):
        return f"serving on {host}, not this machine only, needs a shared signing key: {KEY_HINT}"
    return None


def prepare_metrics_dir(data_dir: Path, port: int) -> Path:
    """An empty folder where every worker process writes its metrics (``/metrics`` adds them
    up), unless ``PROMETHEUS_MULTIPROC_DIR`` names one already. Emptied at each start: the
    counters of a previous run are not this run's."""
    import shutil

    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(named) if named else data_dir / "metrics" / str(port)
    if not named:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``user`` and ``token`` to the main app."""
    user_app = typer.Typer(help="People's sign-in to the web app.", no_args_is_help=True)
    token_app = typer.Typer(help="Personal access tokens for the REST API.", no_args_is_help=True)
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")

    @app.command("serve")
    def serve(
        host: str | None = typer.Option(
            None, "--host", help="Default: ALIGNCYCLE_HOST or 127.0.0.1."
        ),
        port: int | None = typer.Option(
            None, "--port", min=1, max=65535, help="Default: ALIGNCYCLE_PORT or 8000."
        ),
        workers: int | None = typer.Option(
            None,
            "--workers",
            min=1,
            max=64,
            help="Worker processes. Default: ALIGNCYCLE_WORKERS, else one per CPU core (max 4).",
        ),
        reload: bool = typer.Option(
            False, "--reload", help="Restart when the code changes (one worker)."
        ),
        demo: bool = typer.Option(
            False,
            "--demo",
            help=f"Serve a demo organisation from a separate data dir (sign in as "
            f"sam@acme.test, max@acme.test, ... with the password {DEMO_PASSWORD!r}).",
        ),
    ) -> None:
        """Start the web app and the API (/api/v1) on the configured store."""
        from aligncycle.settings import get_settings

        settings = get_settings()
        host = host or settings.host
        port = port or settings.port
        asked = 1 if reload else (workers or settings.workers)
        problem = shared_key_problem(host, asked, settings.secret_key)
        if problem:
            cc.fail(problem, 2)
        # Without a configured key, one worker: its key is made once into the data dir.
        workers = asked or (settings.effective_workers if settings.secret_key else 1)
        if demo:
            directory = prepare_demo()
            typer.echo(
                f"demo store in {directory}; sign in as sam@acme.test (point person), "
                f"lee@acme.test (lead), sid@acme.test (member) or max@acme.test "
                f"(manager), password {DEMO_PASSWORD!r}",
                err=True,
            )
            settings = get_settings()
        else:
            cc.require_current_schema()  # one line if not set up or behind, before any worker
        import uvicorn

        from aligncycle.logs import uvicorn_log_config
        from aligncycle.web.deps import secret_key

        # Made (or read) once here, before the workers start: they all sign with the same key.
        secret_key(settings)
        if workers > 1:
            prepare_metrics_dir(Path(settings.data_dir), port)
        plural = "s" if workers > 1 else ""
        log_config = uvicorn_log_config(settings.log_level, settings.log_format)
        logging.config.dictConfig(log_config)  # the line below in the log's format too
        logging.getLogger("aligncycle.serve").info(
            "aligncycle on http://%s:%s/ (%s worker%s; store: %s; logs: %s, %s)",
            host,
            port,
            workers,
            plural,
            cc.display_url(),
            settings.log_level,
            settings.log_format,
        )
        uvicorn.run(
            "aligncycle.web:serve_app",
            factory=True,
            host=host,
            port=port,
            reload=reload,
            workers=workers,
            log_config=log_config,
            log_level=settings.log_level,
            access_log=False,
            proxy_headers=True,
        )

    @user_app.command("set-password")
    def set_password(
        email: str = typer.Argument(..., help="The person's email."),
        password_stdin: bool = typer.Option(
            False, "--password-stdin", help="Read the password from the first line of stdin."
        ),
    ) -> None:
        """Set (or replace) a person's password; replacing it signs out their browsers."""
        from models.services import accounts
        from models.services.common import person_by_email

        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("New password", hide_input=True)
            again = typer.prompt("Repeat it", hide_input=True)
            if password != again:
                cc.fail("the two passwords differ; nothing changed", 2)
        accounts.check_password_rules(password)
        with cc.unit_of_work() as s:
            person = person_by_email(s, email)
            accounts.set_password(s, person, password)
            name = person.name
        typer.echo(f"password set for {name} <{email.strip().lower()}>")

    @token_app.command("create")
    def token_create(
        name: str = typer.Option(..., "--name", help="What the token is for."),
        days: int | None = typer.Option(None, "--days", min=1, max=3650, help="Expiry (days)."),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """Create a token for the acting person. It is printed once: keep it safe."""
        from models.services import accounts

        with cc.unit_of_work() as s:
            me = cc.actor(s, as_)
            raw, row = accounts.create_token(s, me, name, days)
            info = {
                "id": row.id,
                "name": row.name,
                "prefix": row.prefix,
                "token": raw,
                "expires_at": row.expires_at,
            }
        if json_:
            emit_json(info)
            return
        typer.echo(raw)
        typer.echo(f"token {info['id']} ({name}) created; it is shown only this once", err=True)

    @token_app.command("list")
    def token_list(as_: str | None = ACTOR_OPTION, json_: bool = JSON_OPTION) -> None:
        """The acting person's tokens (never the tokens themselves, only their start)."""
        from models.services import accounts

        with cc.unit_of_work() as s:
            me = cc.actor(s, as_)
            rows = [
                {
                    "id": t.id,
                    "name": t.name,
                    "prefix": t.prefix,
                    "created_at": t.created_at,
                    "expires_at": t.expires_at,
                    "last_used_at": t.last_used_at,
                    "revoked_at": t.revoked_at,
                }
                for t in accounts.list_tokens(s, me)
            ]
        if json_:
            emit_json(rows)
            return
        if not rows:
            typer.echo("no tokens")
            return

        def when(v: object) -> str:
            return v.strftime("%Y-%m-%d %H:%M") if v else ""  # type: ignore[attr-defined]

        table(
            [
                [
                    r["id"],
                    r["name"],
                    r["prefix"] + "…",
                    when(r["created_at"]),
                    when(r["last_used_at"]),
                    "revoked" if r["revoked_at"] else "active",
                ]
                for r in rows
            ],
            ["id", "name", "starts", "created", "last used", "status"],
        )

    @token_app.command("revoke")
    def token_revoke(
        token_id: int = typer.Argument(..., min=1, help="The token's id (token list)."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Revoke one of the acting person's tokens: it stops working at once."""
        from models.services import accounts

        with cc.unit_of_work() as s:
            me = cc.actor(s, as_)
            row = accounts.revoke_token(s, me, token_id)
            name = row.name
        typer.echo(f"token {token_id} ({name}) revoked")
