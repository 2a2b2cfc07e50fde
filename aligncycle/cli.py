"""The ``aligncycle`` command line: run alignment cycles from a terminal.

Every write takes ``--as EMAIL`` (or ``ALIGNCYCLE_ACTOR``) and the domain's permission rules
apply to that person. Read commands print plain tables, or JSON with ``--json``.

Imports are lazy: a command imports only the services it needs, so read commands start fast
and never load Prefect or FastAPI. Errors become one line on stderr (see
:class:`aligncycle.cli_common.ErrorMappingGroup`): exit 1 for a refused operation, 2 for bad usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import JSON_OPTION, clip, emit_json, table
from aligncycle.commands import GROUPS
from aligncycle.commands.common import load_cycle, ref, when

if TYPE_CHECKING:
    from models.tables import Event

#: The other areas' groups (``funnel``, ``kpi``, ``notify``, ...), added by their modules'
#: ``register(app)`` with ``add_typer`` and moved here, to be built on first use as well. Listed
#: after the commands of the root, where Typer would list them.
_AREAS: dict[str, Any] = {}


class _RootGroup(cc.ErrorMappingGroup):
    """The ``aligncycle`` group: errors become one line (see ErrorMappingGroup), and the command
    groups are built on first use."""

    def _build(self, names: Any) -> None:
        from typer.main import get_group, get_group_from_info

        for name in names:
            if name in self.commands:
                continue
            if name in GROUPS:
                self.commands[name] = get_group(GROUPS[name])
            elif name in _AREAS:  # as Typer builds a group added with add_typer
                self.commands[name] = get_group_from_info(
                    _AREAS[name],
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                    suggest_commands=app.suggest_commands,
                )

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        self._build([cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        self._build([*GROUPS, *_AREAS])
        own = [n for n in super().list_commands(ctx) if n not in GROUPS and n not in _AREAS]
        return [*GROUPS, *own, *_AREAS]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in GROUPS | _AREAS:
            self._build([*GROUPS, *_AREAS])  # a typo: suggest among every command
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="aligncycle",
    cls=_RootGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run sales-marketing alignment cycles: identify, plan, execute, recap.

    Writes take --as EMAIL (or ALIGNCYCLE_ACTOR); reads print tables, or JSON with --json.
    """


# --- events -------------------------------------------------------------------------------


@app.command("events")
def events(
    cycle: int | None = typer.Option(None, "--cycle", metavar="CYCLE_ID"),
    limit: int = typer.Option(50, "--limit", min=1, help="The newest this many, oldest first."),
    json_: bool = JSON_OPTION,
) -> None:
    """The audit log: who changed what, when."""
    from sqlalchemy import func, select

    from models.schemas import EventRead
    from models.services import events as event_service
    from models.services import story
    from models.tables import Event

    with cc.unit_of_work() as s:
        if cycle is not None:
            load_cycle(s, cycle)
        count = select(func.count()).select_from(Event)
        if cycle is not None:
            count = count.where(Event.cycle_id == cycle)
        total = s.scalar(count) or 0
        rows = event_service.list_events(
            s, cycle_id=cycle, limit=limit, offset=max(total - limit, 0)
        )
        told = story.tell(s, rows)
        out = [
            EventRead.model_validate(e).model_copy(update={"sentence": t.sentence})
            for e, t in zip(rows, told, strict=True)
        ]
    if json_:
        emit_json(out)
        return
    table(
        [
            [
                e.id,
                when(e.at),
                ref(e.actor) or "(system)",
                e.verb,
                f"{e.object_type} {e.object_id or ''}".strip(),
                e.cycle_id or "",
                clip(e.sentence, 90) if e.sentence else _event_detail(e),
            ]
            for e in out
        ],
        ["id", "at (UTC)", "actor", "verb", "object", "cycle", "what happened"],
    )


def _event_detail(event: Event | Any) -> str:
    after = event.after or {}
    parts = [f"{k}={v}" for k, v in after.items() if v not in (None, [], {})]
    return clip(", ".join(parts), 70)


# --- demo and the other areas -------------------------------------------------------------


@app.command("demo")
def demo(
    stop: bool = typer.Option(
        False, "--stop", help="Stop the Prefect server the demo started (and run nothing)."
    ),
) -> None:
    """Run one whole alignment cycle on the embedded store, with sample teams. The flows run
    against a Prefect server the first demo starts and the next ones reuse (its UI shows the
    runs); --stop stops it."""
    from aligncycle import demo as the_demo

    raise typer.Exit(the_demo.stop_server() if stop else the_demo.main())


def _register_areas() -> None:
    from aligncycle import (
        cli_agreement,
        cli_alignment,
        cli_cadence,
        cli_flows,
        cli_funnel,
        cli_lifecycle,
        cli_next_cycle,
        cli_web,
    )

    # The command groups' modules add their commands to the groups when they load.
    from aligncycle.commands import actions, cycles, gaps, recap, setup  # noqa: F401

    cli_funnel.register(app)
    cli_web.register(app)
    cli_lifecycle.register(app)
    cli_cadence.register(app)
    cli_alignment.register(app)
    cli_next_cycle.register(app)
    cli_flows.register(app)
    cli_agreement.register(app)
    for info in app.registered_groups:  # built on first use, see _RootGroup
        _AREAS[info.name] = info
    app.registered_groups.clear()


_register_areas()


def main() -> None:
    """The ``aligncycle`` console script."""
    _tune_for_a_short_process()
    app()


_TUNED = False


def _tune_for_a_short_process() -> None:
    """Garbage collection for a process that runs one command (the console script; ``app``
    itself, as the tests and the web app's process use it, is not affected).

    A command's start-up allocates a large, long-lived heap (modules, classes, schemas,
    mappers). With the default thresholds the cyclic collector scans it again and again while
    it grows (~25 ms of a read command), and once more as the interpreter exits, when it is
    about to be thrown away anyway (~100 ms). So: collect the young generation less often, and
    at exit close the store's connections, then freeze the heap so the exit skips that scan.
    Nothing is freed early, and ``atexit`` handlers (logging's, Prefect's) still run. What the
    exit skips is collecting reference cycles: objects in a cycle are not finalized (their
    ``__del__`` does not run), which is why the store's connections are closed first.
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    import atexit
    import gc

    gc.set_threshold(10_000, 10, 10)
    atexit.register(_at_exit)


def _at_exit() -> None:
    import gc

    cc.close_store()
    gc.freeze()
