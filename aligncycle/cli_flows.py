"""CLI of the phase flows on a Prefect server: what waits to start, starting it, and setting
the server up.

    aligncycle flows pending [--json]          phase flows asked for and not started yet
    aligncycle flows dispatch [--cycle ID]     start them now (deployment runs, or here)
    aligncycle flows setup [--within SECONDS]  the zombie-run automation on the server
    aligncycle outbox prune [--older-than DAYS] done outbox rows past the retention

Only ``dispatch`` and ``setup`` import Prefect.
"""

from __future__ import annotations

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import JSON_OPTION, emit_json, table


def register(app: typer.Typer) -> None:
    """Add ``flows`` to the main app."""
    flows_app = typer.Typer(
        help="The phase flows: what waits to start, starting it, the Prefect server's set-up.",
        no_args_is_help=True,
    )
    app.add_typer(flows_app, name="flows")
    outbox_app = typer.Typer(
        help="The outboxes of phase flows and messages: pruning what is done.",
        no_args_is_help=True,
    )
    app.add_typer(outbox_app, name="outbox")

    @outbox_app.command("prune")
    def outbox_prune(
        older_than: int | None = typer.Option(
            None,
            "--older-than",
            min=1,
            max=36500,
            metavar="DAYS",
            help="Keep what is younger (default: ALIGNCYCLE_OUTBOX_RETENTION_DAYS, 90).",
        ),
        json_: bool = JSON_OPTION,
    ) -> None:
        """Delete started phase flow requests and sent messages older than the retention.

        Waiting and failed ones are kept, and so are reminders, escalations and recap notices
        of cycles still open. The daily cadence run does the same every day."""
        from aligncycle.settings import get_settings
        from models.retention import prune_outboxes
        from models.words import counted

        days = older_than or get_settings().outbox_retention_days
        with cc.unit_of_work() as s:
            pruned = prune_outboxes(s, days)
        if json_:
            emit_json(pruned.as_dict())
            return
        typer.echo(
            f"pruned {counted(pruned.phase_requests, 'started phase flow request')} and "
            f"{counted(pruned.messages, 'sent message')} older than "
            f"{counted(days, 'day')}; waiting and failed ones are kept"
        )

    @flows_app.command("pending")
    def flows_pending(json_: bool = JSON_OPTION) -> None:
        """Phase flows that cycles' moves asked for and that have not started yet."""
        from models.phases import dispatch as outbox
        from models.words import phase_name

        with cc.unit_of_work() as s:
            rows = [
                {
                    "cycle": r.cycle_id,
                    "phase": phase_name(r.phase) if not json_ else str(r.phase),
                    "since": r.created_at.isoformat(timespec="seconds"),
                    "attempts": r.attempts,
                    "last error": r.error or "",
                }
                for r in outbox.waiting(s)
            ]
        if json_:
            emit_json(rows)
            return
        if not rows:
            typer.echo("every phase flow asked for has started")
            return
        table([list(r.values()) for r in rows], list(rows[0]))

    @flows_app.command("dispatch")
    def flows_dispatch(
        cycle: int | None = typer.Option(None, "--cycle", help="Only this cycle's."),
        here: bool = typer.Option(
            False, "--here", help="Run the flows in this process, not as deployment runs."
        ),
    ) -> None:
        """Start the phase flows waiting to start.

        As runs of their deployments when a Prefect server answers (one run per move, however
        often this runs), else in this process."""
        from aligncycle import orchestration

        with cc.unit_of_work():
            pass  # a store that is not set up is reported before Prefect is imported
        done, lines = orchestration.dispatch(cycle, use_server=not here)
        for line in lines:
            typer.echo(line)
        if not done and not lines:
            typer.echo("nothing waits to start")
        if any(d.error for d in done) or (lines and not done):  # some could not start
            raise typer.Exit(1)

    @flows_app.command("setup")
    def flows_setup(
        within: int | None = typer.Option(
            None,
            "--within",
            min=60,
            help="Seconds without a heartbeat before a run counts as crashed (default: three "
            "heartbeats, from PREFECT_FLOWS_HEARTBEAT_FREQUENCY).",
        ),
    ) -> None:
        """Mark runs whose process died as Crashed (a Prefect automation).

        Created, or updated, on the configured Prefect server (PREFECT_API_URL)."""
        from aligncycle import orchestration

        url = orchestration.configured_api_url()
        if not url or not orchestration.server_url(url):
            cc.fail(f"no Prefect server answers at {url or 'PREFECT_API_URL (not set)'}")
        from prefect.settings import get_current_settings

        from flows.zombies import ensure_zombie_automation

        every = get_current_settings().flows.heartbeat_frequency
        if within is None:
            within = 3 * (every or 30)
        automation_id, created = ensure_zombie_automation(within)
        verb = "created" if created else "updated"
        typer.echo(
            f"{verb} the automation that marks a flow run Crashed after {within} s without a "
            f"heartbeat ({automation_id})"
        )
        if every is None or every * 2 > within:
            typer.echo(
                f"workers need PREFECT_FLOWS_HEARTBEAT_FREQUENCY of at most {within // 2} s "
                "(30 recommended), or live runs are marked Crashed"
            )
