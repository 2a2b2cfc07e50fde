"""CLI of each team's own answers (the divergence map) and of the vote on the gaps.

    aligncycle team-answers show CYCLE_ID [--as EMAIL] [--json]
    aligncycle team-answers save CYCLE_ID [--answer KEY=yes|no|unsure ...] [--rating KEY=1..5 ...]
                                        [--comment KEY=TEXT ...] --as EMAIL
    aligncycle team-answers submit CYCLE_ID --as EMAIL
    aligncycle team-answers reveal CYCLE_ID --as EMAIL
    aligncycle team-answers export CYCLE_ID [--as EMAIL]          (CSV on stdout)
    aligncycle vote show CYCLE_ID [--as EMAIL] [--json]
    aligncycle vote cast CYCLE_ID [--gap GAP_ID=VOTES ...] --as EMAIL
    aligncycle vote close CYCLE_ID --as EMAIL
    aligncycle gap recurring CYCLE_ID [--as EMAIL] [--json]

Reads show what the person named by ``--as`` may see (without it: what everyone may see, so
another team's answers only once revealed, the vote's totals only once closed): the domain's
read models hold the rest back, as on every face.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, JSON_OPTION, clip, emit_json, table


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            cc.fail(f"{what} takes KEY=VALUE (got {v!r})", 2)
        out[key.strip()] = value
    return out


def _viewer(s: Any, email: str | None) -> Any:
    return cc.actor(s, email) if email else None


def register(app: typer.Typer) -> None:
    """Add ``team-answers`` and ``vote`` to the main app, and ``gap recurring``."""
    from aligncycle.commands import gap_app

    answers_app = typer.Typer(
        help="Each team's own Identify answers, hidden until both submit; the divergence map.",
        no_args_is_help=True,
    )
    vote_app = typer.Typer(
        help="The vote on the gaps: a budget a person, totals hidden until it closes.",
        no_args_is_help=True,
    )
    app.add_typer(answers_app, name="team-answers")
    app.add_typer(vote_app, name="vote")

    @answers_app.command("show")
    def answers_show(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """The teams' answers as this person may see them; once revealed, the divergence map."""
        from models.services import cycles, divergence

        with cc.unit_of_work() as s:
            m = divergence.divergence_map(s, cycles.get_cycle(s, cycle_id), _viewer(s, as_))
        if json_:
            emit_json(m)
            return
        for t in m.teams:
            state = "submitted" if t.submitted else "not submitted yet"
            hidden = "" if t.visible else ", answers hidden until both teams have submitted"
            typer.echo(f"{t.team}: {state}{hidden}")
        if m.revealed:
            typer.echo(f"revealed; the teams agree on {m.agree} and differ on {m.differ}")
        rows = []
        for r in m.ratings + m.questions:
            cells = [clip(r.text, 50)]
            cells += [(x.words or "-") if x.visible else "hidden" for x in r.sides]
            cells.append(divergence.VERDICT_WORDS[r.verdict])
            cells.append(f"{r.kpi.title}: {r.kpi.value}" if r.kpi else "")
            rows.append(cells)
        table(rows, ["question or rating", *[t.team for t in m.teams], "verdict", "number"])

    @answers_app.command("save")
    def answers_save(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        answer: list[str] = typer.Option([], "--answer", help="QUESTION_KEY=yes|no|unsure."),
        rating: list[str] = typer.Option([], "--rating", help="RATING_KEY=1..5."),
        comment: list[str] = typer.Option([], "--comment", help="KEY=TEXT."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Save some of your team's answers (a draft until your team submits)."""
        from models.errors import InvalidInput
        from models.services import cycles, team_input

        ratings: dict[str, int | None] = {}
        for key, value in _pairs(rating, "--rating").items():
            try:
                ratings[key] = int(value) if value.strip() else None
            except ValueError:
                raise InvalidInput(
                    f"a rating is a whole number from 1 to 5 (got {value!r})"
                ) from None
        data = team_input.OwnAnswers(
            answers=_pairs(answer, "--answer"),
            ratings=ratings,
            comments=_pairs(comment, "--comment"),
        )
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            n = team_input.save(s, cycles.get_cycle(s, cycle_id), data, actor)
            team = actor.team.name
        typer.echo(f"saved: {team} has {n} answers; only {team} sees them until the reveal")

    @answers_app.command("submit")
    def answers_submit(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """Submit your team's answers; the last team in reveals both teams' answers."""
        from models.phases import own_answers
        from models.services import cycles

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            done = own_answers.submit(s, cycles.get_cycle(s, cycle_id), actor)
            team = actor.team.name
        if done.revealed:
            typer.echo(f"{team} submitted; both teams are in: the answers are revealed")
        else:
            typer.echo(f"{team} submitted; hidden from the other team until it submits too")

    @answers_app.command("reveal")
    def answers_reveal(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """A point person of the cycle reveals the teams' answers now."""
        from models.phases import own_answers
        from models.services import cycles

        with cc.unit_of_work() as s:
            own_answers.reveal(s, cycles.get_cycle(s, cycle_id), cc.actor(s, as_))
        typer.echo("the teams' answers are revealed")

    @answers_app.command("export")
    def answers_export(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """The divergence map as CSV on stdout (what this person may see)."""
        from models.services import cycles, divergence

        with cc.unit_of_work() as s:
            m = divergence.divergence_map(s, cycles.get_cycle(s, cycle_id), _viewer(s, as_))
        sys.stdout.write(divergence.to_csv(m))

    @vote_app.command("show")
    def vote_show(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """Your votes while the vote is open; the gaps in vote order once it is closed."""
        from models.services import cycles, votes

        with cc.unit_of_work() as s:
            view = votes.view(s, cycles.get_cycle(s, cycle_id), _viewer(s, as_))
        if json_:
            emit_json(view)
            return
        if view.closed:
            typer.echo(f"the vote is closed; {view.voters} voted")
            rows = [[g.rank, g.id, clip(g.title), g.severity, g.total, g.mine] for g in view.gaps]
            table(rows, ["rank", "gap", "title", "severity", "votes", "yours"])
        else:
            typer.echo(
                f"the vote is open; {view.voters} voted so far; totals show once it is closed; "
                f"{view.votes_left} of your {view.votes_per_person} votes left"
            )
            rows = [[g.id, clip(g.title), g.severity, g.mine] for g in view.gaps]
            table(rows, ["gap", "title", "severity", "yours"])

    @vote_app.command("cast")
    def vote_cast(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        gap: list[str] = typer.Option([], "--gap", help="GAP_ID=VOTES; gaps left out get none."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Replace your votes on the cycle's gaps."""
        from models.errors import InvalidInput
        from models.services import cycles, votes

        ballot = votes.Ballot()
        for key, value in _pairs(gap, "--gap").items():
            if not key.isdigit() or not value.strip().isdigit():
                raise InvalidInput(f"--gap takes GAP_ID=VOTES, whole numbers (got {key}={value})")
            ballot.votes[int(key)] = int(value)
        with cc.unit_of_work() as s:
            left = votes.cast(s, cycles.get_cycle(s, cycle_id), ballot, cc.actor(s, as_))
        typer.echo(f"votes saved; {left} left; hidden until the vote closes")

    @gap_app.command("recurring")
    def gap_recurring(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """The cycle's gaps that keep coming back in cycles of the same two teams."""
        from models.services import cycles, recurring

        with cc.unit_of_work() as s:
            rows = recurring.recurring_gaps(s, cycles.get_cycle(s, cycle_id), _viewer(s, as_))
        if json_:
            emit_json(rows)
            return
        if not rows:
            typer.echo("no gap of this cycle keeps coming back")
            return
        for r in rows:
            who = "a manager or a cross-team decision" if r.needs == "manager" else "either team"
            typer.echo(f"gap {r.gap_id}: {r.title} — came up in {r.cycles} cycles; needs {who}")
            for h in r.history:
                done = f", {h.actions_done} of {h.actions} action items done" if h.actions else ""
                typer.echo(f"  {h.period_start.isoformat()} {h.cycle_title}: {h.decision}{done}")

    @vote_app.command("close")
    def vote_close(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """A point person of the cycle closes the vote: the totals show."""
        from models.services import cycles, votes

        with cc.unit_of_work() as s:
            votes.close(s, cycles.get_cycle(s, cycle_id), cc.actor(s, as_))
        typer.echo("the vote is closed")
