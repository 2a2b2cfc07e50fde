"""CLI of the cadence: notification channels, and running one cadence job by hand.

    aligncycle notify channel add KIND URL (--team KEY | --person EMAIL) --as EMAIL
    aligncycle notify channel list [--team KEY] [--person EMAIL] [--json]
    aligncycle notify channel remove ID --as EMAIL
    aligncycle notify log [--status S] [--kind K] [--cycle ID] [--limit N] [--as EMAIL] [--json]
    aligncycle notify send [--json]       invitation links and due retries, now (the sweep)
    aligncycle cadence run NAME [--today YYYY-MM-DD] [--without-prefect] [--json]

Only ``cadence run`` imports Prefect (the flow module). Errors are one line on stderr (the main
app's error mapping): exit 1 for a refused operation, 2 for bad usage.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, DATE_FORMATS, JSON_OPTION, emit_json, table
from models.words import counted

JOB_NAMES = (
    "execute-checkins",
    "overdue-reminders",
    "escalations",
    "weekly-digest",
    "recap-due",
    "scheduled-starts",
)


def register(app: typer.Typer) -> None:
    """Add ``notify`` and ``cadence`` to the main app."""
    notify_app = typer.Typer(
        help="Where reminders, escalations and digests go.", no_args_is_help=True
    )
    channel_app = typer.Typer(
        help="Notification channels (apprise URLs) of teams and people.", no_args_is_help=True
    )
    cadence_app = typer.Typer(
        help="The cadence: check-ins, reminders, escalations, digests, recap-due.",
        no_args_is_help=True,
    )
    notify_app.add_typer(channel_app, name="channel")
    app.add_typer(notify_app, name="notify")
    app.add_typer(cadence_app, name="cadence")

    @channel_app.command("add")
    def channel_add(
        kind: str = typer.Argument(..., help="email, slack, teams or webhook."),
        url: str = typer.Argument(
            ...,
            help="An apprise URL (mailtos://..., slack://..., workflows://..., json://...), or "
            "env:NAME / secret:NAME to read it from the worker's environment or a Prefect "
            "Secret block when sending.",
        ),
        team: str | None = typer.Option(None, "--team", help="For a team (team key)."),
        person: str | None = typer.Option(None, "--person", help="For a person (email)."),
        label: str | None = typer.Option(None, "--label", help="A name to recognise it by."),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """Add a channel. People add their own; leads and point persons their team's."""
        from flows.notify import check_url
        from models.cadence import channels, urls
        from models.cadence.tables import ChannelKind
        from models.schemas import parse_input

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            data: dict[str, Any] = {"kind": kind, "url": url, "team": team, "person": person}
            if label is not None:
                data["label"] = label
            parse_input(channels.ChannelCreate, **data)  # the usual one-line errors first
            check_url(urls.check_channel_url(ChannelKind(kind), url))
            out = channels.add_channel(s, actor, **data)
        if json_:
            emit_json(out)
        else:
            typer.echo(f"added channel {out.id}: {out.kind} for {out.owner} ({out.url})")

    @channel_app.command("list")
    def channel_list(
        team: str | None = typer.Option(None, "--team", help="Only this team's."),
        person: str | None = typer.Option(None, "--person", help="Only this person's."),
        json_: bool = JSON_OPTION,
    ) -> None:
        """Channels, with passwords and tokens masked."""
        from models.cadence import channels

        with cc.unit_of_work() as s:
            out = channels.list_channels(s, team=team, person=person)
        if json_:
            emit_json(out)
            return
        table(
            [[c.id, c.kind, c.owner, c.url, c.label, "yes" if c.enabled else "no"] for c in out],
            ["id", "kind", "for", "url", "label", "enabled"],
        )

    @channel_app.command("remove")
    def channel_remove(
        channel_id: int = typer.Argument(..., help="The channel's id (see 'notify channel list')."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Remove a channel. Its sent messages stay in the log; unsent ones are marked failed."""
        from models.cadence import channels

        with cc.unit_of_work() as s:
            out = channels.remove_channel(s, channel_id, cc.actor(s, as_))
        typer.echo(f"removed channel {out.id}: {out.kind} for {out.owner}")

    @notify_app.command("log")
    def notify_log(
        status: str | None = typer.Option(
            None, "--status", help="pending, sending, sent or failed."
        ),
        kind: str | None = typer.Option(
            None,
            "--kind",
            help="checkin, reminder, escalation, digest, recap_due, cycle_started or account "
            "(invitations and password-reset links).",
        ),
        cycle: int | None = typer.Option(None, "--cycle", min=1, metavar="CYCLE_ID"),
        limit: int = typer.Option(50, "--limit", min=1, max=1000, help="The newest this many."),
        as_: str | None = typer.Option(
            None,
            "--as",
            envvar="ALIGNCYCLE_ACTOR",
            help="Show only what this person may see (default: the whole log).",
        ),
        json_: bool = JSON_OPTION,
    ) -> None:
        """Messages waiting to be sent, sent and failed, newest first (why a failure failed)."""
        from models.cadence import log
        from models.cadence.tables import NotificationKind, NotificationStatus

        def choice(value: str | None, enum: Any, option: str) -> Any:
            if value is None:
                return None
            try:
                return enum(value.strip().lower())
            except ValueError:
                names = ", ".join(e.value for e in enum)
                cc.fail(f"{option} {value!r} is not one of: {names}", 2)

        wanted_status = choice(status, NotificationStatus, "--status")
        wanted_kind = choice(kind, NotificationKind, "--kind")
        with cc.unit_of_work() as s:
            viewer = cc.actor(s, as_) if as_ else None
            rows, total = log.notification_log(
                s, viewer, wanted_status, wanted_kind, cycle, limit=limit
            )
        if json_:
            emit_json(rows)
            return
        if not rows:
            typer.echo("no notifications")
            return
        table(
            [
                [
                    r.id,
                    r.created_at.strftime("%Y-%m-%d %H:%M"),
                    r.kind_words,
                    r.recipient,
                    r.cycle_id or "",
                    r.status_words
                    + (f" after {r.retry_at.strftime('%H:%M')}" if r.retry_at else ""),
                    r.attempts,
                    (r.error or "")[:60],
                ]
                for r in rows
            ],
            ["id", "planned (UTC)", "kind", "to", "cycle", "status", "attempts", "last error"],
        )
        if total > len(rows):
            typer.echo(f"the newest {len(rows)} of {total}; --limit shows more")

    @notify_app.command("send-again")
    def notify_send_again(
        notification_id: int = typer.Argument(
            ..., min=1, metavar="ID", help="The failed message's id (see 'notify log')."
        ),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """Queue a failed message again once its channel is fixed: the next delivery run (or
        'notify send') sends it."""
        from models.cadence import log

        with cc.unit_of_work() as s:
            viewer = cc.actor(s, as_) if as_ else None
            sent = log.send_again(s, viewer, notification_id)
        if json_:
            emit_json(sent)
            return
        typer.echo(
            f"the {sent.kind_words} to {sent.recipient} is queued again; "
            "the next delivery run sends it ('notify send' sends it now)"
        )

    @notify_app.command("send")
    def notify_send(json_: bool = JSON_OPTION) -> None:
        """Send now what the scheduled sweep sends: invitation and password-reset links, and
        messages whose send failed once the wait before their next try is over.

        The dispatch deployment (or, on the embedded default, the web app) does it every few
        minutes; messages a cadence run planned and has not tried yet are left to it."""
        from flows import notify

        with cc.unit_of_work():
            pass  # a store that is not set up is reported first
        result = notify.deliver(cc.store(), sweep=True, workers=2)
        if json_:
            emit_json(result.as_dict())
        else:
            typer.echo(
                f"sent {counted(result.sent, 'message')}; {result.retrying} to be tried again, "
                f"{result.failed} failed"
            )
            for err in result.errors[:5]:
                typer.echo(f"  {err}")
        if result.failed:
            raise typer.Exit(1)

    @cadence_app.command("run")
    def cadence_run(
        name: str = typer.Argument(..., help=f"One of: {', '.join(JOB_NAMES)}."),
        today: datetime | None = typer.Option(
            None, "--today", formats=DATE_FORMATS, help="Run as of this day (YYYY-MM-DD)."
        ),
        without_prefect: bool = typer.Option(
            False,
            "--without-prefect",
            help="Run the job directly, without a Prefect flow run (no server, nothing in the "
            "Prefect UI).",
        ),
        plan_only: bool = typer.Option(
            False, "--plan-only", help="Plan the notifications but send nothing (no Prefect)."
        ),
        json_: bool = JSON_OPTION,
    ) -> None:
        """Run one cadence flow now, in this process (the same flow the deployments run)."""
        if name not in JOB_NAMES:
            cc.fail(f"unknown cadence job {name!r}; use one of: {', '.join(JOB_NAMES)}", 2)
        day: date | None = today.date() if today else None
        with cc.unit_of_work():
            pass  # a store that is not set up is reported before Prefect is imported
        from flows import cadence as flows_cadence

        if without_prefect or plan_only:
            out = flows_cadence.run_job(name, cc.store(), day, deliver=not plan_only)
        else:
            state = flows_cadence.FLOWS[name](today=day, return_state=True)
            out = state.result(raise_on_failure=False)
            if isinstance(out, BaseException):  # the flow itself failed: its one-line reason
                cc.fail(f"{name}: {str(out).splitlines()[0] if str(out) else type(out).__name__}")
        undelivered = flows_cadence.undelivered_message(out.get("delivery") or {})
        if json_:
            emit_json(out)
            if undelivered:
                raise typer.Exit(1)
            return
        p = out["plan"]
        line = (
            f"{name}: planned {counted(p['planned'], 'notification')} "
            f"({p['already']} already planned, {p['unreachable']} with no channel)"
        )
        if p.get("changed"):
            line += f", {counted(p['changed'], 'change')} to the store"
        typer.echo(line)
        for waiting in p.get("waiting") or []:  # scheduled starts that wait, and why
            typer.echo(f"  {waiting}")
        d = out.get("delivery")
        if d is not None:
            sent, messages = d["sent"], d.get("messages", d["sent"])
            typer.echo(
                f"{name}: sent {counted(sent, 'notification')} in "
                f"{counted(messages, 'message')}, retrying {d['retrying']}, "
                f"failed {d['failed']}"
            )
            for err in d.get("errors", [])[:5]:
                typer.echo(f"  {err}")
        if undelivered:
            cc.fail(f"{name}: {undelivered}")
