"""The command groups of the ``aligncycle`` command line (``cycle``, ``action``, ...), one module
per area: :mod:`.setup` (db, playbook, team, person), :mod:`.cycles` (cycle, checklist),
:mod:`.gaps`, :mod:`.actions` (action, checkin), :mod:`.recap` (retro, survey). The root app and
the other areas' groups are in :mod:`aligncycle.cli`.

The groups are declared here, in the order ``aligncycle --help`` lists them; each module adds
its commands to them. They are built into Click commands only when used (see
``aligncycle.cli``): Typer inspects every command's signature when it builds one, and a read
command should not pay for the forty it does not run.
"""

from __future__ import annotations

import typer

GROUPS: dict[str, typer.Typer] = {}


def group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(
        name=name, help=help_text, no_args_is_help=True, pretty_exceptions_enable=False
    )
    GROUPS[name] = sub
    return sub


db_app = group("db", "Set up and migrate the store.")
playbook_app = group("playbook", "List, show, validate and load playbooks.")
team_app = group("team", "Teams taking part in cycles.")
person_app = group("person", "People: point persons, leads, managers, members.")
cycle_app = group("cycle", "Start, inspect and advance alignment cycles.")
checklist_app = group("checklist", "The questions each phase asks, and their answers.")
gap_app = group("gap", "The gap analysis: findings and decisions.")
action_app = group("action", "Action items: the plan, with owners and due dates.")
checkin_app = group("checkin", "Progress notes on action items.")
retro_app = group("retro", "The retrospective and the manager's sign-off.")
survey_app = group("survey", "The recap survey: how the teams feel about the process.")
