"""The gap analysis: add, list and decide gaps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table
from aligncycle.commands import gap_app
from aligncycle.commands.common import (
    EXPECTED_VERSION,
    Decision,
    load_cycle,
    ok,
)
from models.enums import (
    GapCategory,
    GapDecision,
    RootCause,
    Severity,
)

if TYPE_CHECKING:
    pass


@gap_app.command("add")
def gap_add(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    title: str = typer.Option(..., "--title"),
    category: GapCategory = typer.Option(..., "--category"),
    root_cause: RootCause = typer.Option(..., "--root-cause"),
    severity: Severity = typer.Option(Severity.MEDIUM, "--severity"),
    evidence: str | None = typer.Option(None, "--evidence"),
    description: str | None = typer.Option(None, "--description"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Record a gap found in identify or plan (anyone)."""
    from models.schemas import GapCreate, GapRead
    from models.services import gaps

    data = GapCreate(
        title=title,
        category=category,
        root_cause=root_cause,
        severity=severity,
        evidence=evidence,
        description=description,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        gap, created = gaps.add_gap(s, load_cycle(s, cycle_id), data, actor)
        out = GapRead.model_validate(gap)
    if json_:
        emit_json(out)
    elif created:
        ok(f"added gap {out.id}: {out.title} ({out.category}, {out.root_cause}, {out.severity})")
    else:
        ok(f"gap {out.id} is already recorded: {out.title} ({out.decision}); nothing changed")


@gap_app.command("list")
def gap_list(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    decision: GapDecision | None = typer.Option(None, "--decision"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle's gaps and the decisions on them."""
    from models.schemas import GapRead
    from models.services import gaps

    with cc.unit_of_work() as s:
        rows = [
            GapRead.model_validate(g) for g in gaps.list_gaps(s, load_cycle(s, cycle_id), decision)
        ]
    if json_:
        emit_json(rows)
        return
    table(
        [
            [
                g.id,
                clip(g.title, 50),
                g.category,
                g.root_cause,
                g.severity,
                g.decision,
                clip(g.decision_reason, 30),
            ]
            for g in rows
        ],
        ["id", "title", "category", "root cause", "severity", "decision", "reason"],
    )


@gap_app.command("decide")
def gap_decide(
    gap_id: int = typer.Argument(..., metavar="GAP_ID"),
    decision: Decision = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason", help="Needed to reject."),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Accept, defer or reject a gap (leads, managers, the cycle's point persons)."""
    from models import phases
    from models.schemas import GapDecide, GapRead
    from models.services import gaps

    data = GapDecide(
        decision=GapDecision(decision.value), reason=reason, expected_version=expected_version
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        out = GapRead.model_validate(phases.decide_gap(s, gaps.get_gap(s, gap_id), data, actor))
    if json_:
        emit_json(out)
    else:
        ok(f"gap {out.id} {out.decision}: {out.title}")
