"""The retrospective, the manager's sign-off and the survey."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table
from aligncycle.commands import retro_app, survey_app
from aligncycle.commands.common import (
    EXPECTED_VERSION,
    load_cycle,
    ok,
    ref,
    when,
)

if TYPE_CHECKING:
    pass


@retro_app.command("show")
def retro_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    json_: bool = JSON_OPTION,
) -> None:
    """A cycle's retrospective, with the facts counted from the cycle."""
    from models.schemas import RetrospectiveRead
    from models.services import recap

    with cc.unit_of_work() as s:
        cycle = load_cycle(s, cycle_id)
        retro = recap.get_retrospective(s, cycle)
        out = RetrospectiveRead.model_validate(retro) if retro is not None else None
        if out is not None:  # while it can change, the numbers as they are now
            out = out.model_copy(update={"facts": recap.current_facts(s, cycle, retro)})
    if json_:
        emit_json(out)
        return
    if out is None:
        ok(f"cycle {cycle_id} has no retrospective yet")
        return
    ok(f"retrospective of cycle {cycle_id} (version {out.version})")
    if out.recorded_by is None:
        ok(
            f"a draft made from the cycle's facts at {when(out.recorded_at)} UTC: a point "
            f"person reviews and saves it (aligncycle retro record {cycle_id})"
        )
    else:
        ok(f"saved by {ref(out.recorded_by)} at {when(out.recorded_at)} UTC")
    if out.signed_off_by is not None:
        ok(f"signed off by {out.signed_off_by.email} at {when(out.signed_off_at)} UTC")
    else:
        ok("not signed off yet")
    if out.summary:
        ok(f"summary: {out.summary}")
    for label, values in (
        ("improvements", out.improvements),
        ("growth areas", out.growth_areas),
        ("next time", out.next_time),
    ):
        ok(f"{label}:")
        for value in values or ["(none)"]:
            ok(f"  - {value}")
    f = out.facts
    if f:
        from models.rules import counted

        ok(
            f"facts: {f.get('actions_done', 0)} of "
            f"{counted(f.get('actions_total', 0), 'action item')} done, "
            f"{f.get('actions_late', 0)} late, {counted(f.get('gaps_total', 0), 'gap')}, "
            f"{counted(f.get('survey_responses', 0), 'survey answer')}"
            + (
                f" (mean {f['survey_mean']} of the {f.get('survey_published')} published)"
                if f.get("survey_mean") is not None
                else ""
            )
        )


@retro_app.command("report")
def retro_report(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write it to this file instead of printing it."
    ),
) -> None:
    """The recap report the last recap run kept in the store (Markdown)."""
    from models.services import reports

    with cc.unit_of_work() as s:
        load_cycle(s, cycle_id)
        markdown = reports.recap_report(s, None, cycle_id).markdown
    if output is None:
        typer.echo(markdown, nl=not markdown.endswith("\n"))
        return
    output.write_text(markdown, encoding="utf-8")
    ok(f"recap report of cycle {cycle_id} written to {output}")


@retro_app.command("record")
def retro_record(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    improvements: list[str] | None = typer.Option(None, "--improvement", help="Repeat."),
    growth_areas: list[str] | None = typer.Option(
        None, "--growth-area", help="Repeat (default: from the cycle's facts)."
    ),
    next_time: list[str] | None = typer.Option(None, "--next-time", help="Repeat."),
    summary: str | None = typer.Option(None, "--summary"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Record or revise the retrospective (the cycle's point persons, in recap)."""
    from models.schemas import RetrospectiveRead, RetrospectiveRecord
    from models.services import recap

    data = RetrospectiveRecord(
        improvements=improvements or [],
        growth_areas=growth_areas or [],
        next_time=next_time or [],
        summary=summary,
        expected_version=expected_version,
    )
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        cycle = load_cycle(s, cycle_id)
        revised = recap.get_retrospective(s, cycle) is not None
        out = RetrospectiveRead.model_validate(recap.record_retrospective(s, cycle, data, actor))
    if json_:
        emit_json(out)
    else:
        ok(f"{'revised' if revised else 'recorded'} the retrospective of cycle {cycle_id}")


@retro_app.command("signoff")
def retro_signoff(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    expected_version: int | None = EXPECTED_VERSION,
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Sign off the recap (managers)."""
    from models.schemas import RetrospectiveRead
    from models.services import recap

    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        retro = recap.sign_off(s, load_cycle(s, cycle_id), actor, expected_version=expected_version)
        out = RetrospectiveRead.model_validate(retro)
    if json_:
        emit_json(out)
    else:
        ok(f"signed off the recap of cycle {cycle_id}")


@survey_app.command("respond")
def survey_respond(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    score: int = typer.Option(..., "--score", min=1, max=5, help="1 (poor) to 5 (great)."),
    comment: str | None = typer.Option(None, "--comment"),
    anonymous: bool = typer.Option(
        False, "--anonymous", help="Keep your name off the answer (your taking part is kept)."
    ),
    as_: str | None = ACTOR_OPTION,
) -> None:
    """Answer the recap survey, once per cycle (members of the cycle's teams)."""
    from models.schemas import SurveyRespond
    from models.services import recap

    data = SurveyRespond(score=score, comment=comment, anonymous=anonymous)
    with cc.unit_of_work() as s:
        actor = cc.actor(s, as_)
        recap.respond(s, load_cycle(s, cycle_id), data, actor)
    ok(f"thank you: your {'anonymous ' if anonymous else ''}answer to cycle {cycle_id} is in")


@survey_app.command("show")
def survey_show(
    cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
    as_: str | None = ACTOR_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Survey scores; comments for managers (all) and for each team's own members."""
    from models.services import recap

    with cc.unit_of_work() as s:
        viewer = cc.actor(s, as_)
        out = recap.summarize_survey(s, load_cycle(s, cycle_id), viewer)
    if json_:
        emit_json(out)
        return
    from models.rules import counted

    mean = f", mean {out.mean}" if out.mean is not None else ""
    ok(
        f"cycle {out.cycle_id}: {counted(out.responses, 'answer')}, {out.published} of them in "
        f"the results{mean}"
    )
    if out.note:
        ok(out.note)
    if out.distribution:
        ok("scores: " + ", ".join(f"{k}: {v}" for k, v in sorted(out.distribution.items())))
    if out.by_team:
        table([[t.team, t.responses, t.mean] for t in out.by_team], ["team", "responses", "mean"])
    for comment in out.comments:
        ok(f"  \u201c{clip(comment, 200)}\u201d")
