"""CLI of what one cycle hands the next.

    aligncycle cycle breaches CYCLE_ID [--as EMAIL] [--json]
    aligncycle cycle start-scheduled --as EMAIL [--today YYYY-MM-DD] [--json]

The daily ``scheduled-starts`` job (``aligncycle cadence run scheduled-starts``) starts the
scheduled cycles on its own; ``start-scheduled`` is a manager doing it now.
"""

from __future__ import annotations

from datetime import date, datetime

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, emit_json
from aligncycle.commands import cycle_app
from aligncycle.commands.common import date_option


def register(app: typer.Typer) -> None:  # noqa: ARG001 - commands go on the cycle group
    """Add ``cycle breaches`` and ``cycle start-scheduled``."""

    @cycle_app.command("breaches")
    def cycle_breaches(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """The leads that waited past the hand-off time during the cycle, by channel."""
        from models.phases import breaches
        from models.services import cycles

        with cc.unit_of_work() as s:
            viewer = cc.actor(s, as_) if as_ else None
            book = breaches.ledger(s, cycles.get_cycle(s, cycle_id), viewer)
        if json_:
            emit_json(book)
            return
        if not book.total:
            typer.echo("no lead waited past the hand-off time in this cycle")
            return
        for group in book.by_channel:
            typer.echo(group.sentence)
        typer.echo(
            f"{book.for_managers} of them {'was' if book.for_managers == 1 else 'were'} "
            f"{book.managers_after_hours} h or more late: the managers hear of each once"
        )
        for r in book.rows[:20]:
            typer.echo(
                f"  {r.lead} ({r.channel or 'no channel'}, {r.owner or 'no owner'}): "
                f"waited {r.waited_hours:g} h, {r.late_hours:g} h late"
            )

    @cycle_app.command("start-scheduled")
    def cycle_start_scheduled(
        as_: str | None = ACTOR_OPTION,
        today: datetime | None = date_option("--today", "Start as of this day (default: today)"),
        json_: bool = JSON_OPTION,
    ) -> None:
        """Managers: start the cycles that are due on their playbook's schedule, now."""
        from models.phases import schedule

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_) if as_ else None
            starts = schedule.start_scheduled_now(s, actor, today.date() if today else date.today())
        if json_:
            emit_json(starts)
            return
        if not starts:
            typer.echo("no cycle is due to start on a schedule")
        for st in starts:
            if st.waiting:
                typer.echo(f"waiting: {st.waiting}")
            else:
                typer.echo(
                    f"started cycle {st.cycle_id}: {st.title}, point persons "
                    f"{' and '.join(st.point_persons)}; {st.carried_over} open action items "
                    "carried over"
                )
