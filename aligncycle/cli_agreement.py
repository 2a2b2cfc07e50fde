"""CLI of the teams' agreement, its changes, and its campaigns and materials.

    aligncycle agreement show CYCLE_ID [--as EMAIL] [--json]     (the cycle's two teams')
    aligncycle agreement export CYCLE_ID [--as EMAIL]            (Markdown on stdout)
    aligncycle agreement write CYCLE_ID --as EMAIL               (the first version)
    aligncycle agreement propose CYCLE_ID [--sla-hours N] [--definition KEY=TEXT ...]
        [--target KPI=VALUE ...] [--cadence daily|weekly|biweekly|monthly] [--tools TEXT]
        [--data-sources TEXT] [--commitment TEAM=TEXT ...] [--gap GAP_ID ...] --reason TEXT
        --as EMAIL
    aligncycle agreement sign CHANGE_ID --as EMAIL
    aligncycle agreement reject CHANGE_ID [--note TEXT] --as EMAIL
    aligncycle campaign list AGREEMENT_ID [--as EMAIL] [--json]
    aligncycle campaign add AGREEMENT_ID --name NAME [--starts DATE] [--ends DATE]
        [--channels TEXT] [--funnel-key KEY] [--owner EMAIL ...] --as EMAIL
    aligncycle campaign material CAMPAIGN_ID --title TITLE --kind KIND [--link URL]
        [--owner EMAIL] [--shipped-on DATE] --as EMAIL
    aligncycle campaign rate MATERIAL_ID --usefulness 1..5 [--objections TEXT] --as EMAIL

With ``--as`` a read shows only what that person may see (another team pair's agreement is
"not found"); the domain decides every write, as on every face.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from aligncycle import cli_common as cc
from aligncycle.cli_common import ACTOR_OPTION, DATE_FORMATS, JSON_OPTION, clip, emit_json, table


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            cc.fail(f"{what} takes KEY=VALUE (got {v!r})", 2)
        out[key.strip()] = value
    return out


def _parsed(model: Any, data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from models.errors import InvalidInput
    from models.schemas import validation_message

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from None


def _agreement_of_cycle(s: Any, cycle_id: int, email: str | None) -> Any:
    from models.errors import NotFound
    from models.services import access, agreements, cycles

    if email:
        cycle = access.visible_cycle(s, cc.actor(s, email), cycle_id)
    else:
        cycle = cycles.get_cycle(s, cycle_id)
    agreement = agreements.agreement_of(s, cycle)
    if agreement is None:
        raise NotFound(f"cycle {cycle_id}'s teams have no agreement yet")
    return agreement


def register(app: typer.Typer) -> None:
    """Add ``agreement`` and ``campaign`` to the main app."""
    agreement_app = typer.Typer(
        help="The teams' agreement: its terms, versions and proposed changes.",
        no_args_is_help=True,
    )
    campaign_app = typer.Typer(
        help="Campaigns of two teams, their materials and how useful sales finds them.",
        no_args_is_help=True,
    )
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(campaign_app, name="campaign")

    @agreement_app.command("show")
    def show(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """The agreement of the cycle's two teams: the terms in force, changes, versions."""
        from models.services import agreement_views

        with cc.unit_of_work() as s:
            v = agreement_views.view(s, _agreement_of_cycle(s, cycle_id, as_))
        if json_:
            emit_json(v)
            return
        typer.echo(f"The agreement of {v.title}, version {v.version} (agreement {v.id})")
        table([[what, clip(words, 70)] for what, words in v.lines], ["term", "agreed"])
        for a in v.amendments:
            typer.echo(f"\nchange {a.id} by {a.proposed_by} ({a.status_words}): {a.reason}")
            for ch in a.changes:
                typer.echo(f"  {ch.what}: {clip(ch.before, 40)} -> {clip(ch.after, 40)}")
            if a.waiting_for:
                typer.echo(
                    f"  waiting for the point person of {' and '.join(a.waiting_for)}: the "
                    f"recap of “{a.cycle_title}” does not close until both point persons sign "
                    "it or one of them rejects it"
                )
        typer.echo("")
        for h in v.versions:
            typer.echo(f"version {h.number}, {h.at:%Y-%m-%d}, {h.changed_by}: {h.reason}")

    @agreement_app.command("export")
    def export(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """The agreement in force and its history as Markdown, on stdout."""
        from models.services import agreement_views

        with cc.unit_of_work() as s:
            text = agreement_views.to_markdown(
                agreement_views.view(s, _agreement_of_cycle(s, cycle_id, as_))
            )
        typer.echo(text, nl=False)

    @agreement_app.command("write")
    def write(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """A point person writes the first version from the cycle's playbook."""
        from models.services import access, agreements

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            agreement = agreements.write_first_version(
                s, access.visible_cycle(s, actor, cycle_id), actor
            )
            v = agreements.in_force(s, agreement)
            typer.echo(f"agreement {agreement.id}: version {v.number} in force")

    @agreement_app.command("propose")
    def propose(
        cycle_id: int = typer.Argument(..., metavar="CYCLE_ID"),
        reason: str = typer.Option(..., "--reason", help="Why this change."),
        sla_hours: int | None = typer.Option(None, "--sla-hours", help="Hand-off SLA, hours."),
        definition: list[str] = typer.Option([], "--definition", help="KEY=TEXT (e.g. mql)."),
        target: list[str] = typer.Option([], "--target", help="KPI=VALUE (e.g. 80%)."),
        cadence: str | None = typer.Option(None, "--cadence"),
        tools: str | None = typer.Option(None, "--tools"),
        data_sources: str | None = typer.Option(None, "--data-sources"),
        commitment: list[str] = typer.Option([], "--commitment", help="TEAM=TEXT."),
        gap: list[int] = typer.Option([], "--gap", help="A gap of the cycle it answers."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Propose a change to the agreement during the cycle's Plan."""
        from models.services import access, agreements

        changes: dict[str, Any] = {
            "definitions": _pairs(definition, "--definition"),
            "kpi_targets": _pairs(target, "--target"),
            "commitments": _pairs(commitment, "--commitment"),
        }
        for name, value in (
            ("handoff_sla_hours", sla_hours),
            ("cadence", cadence),
            ("tools", tools),
            ("data_sources", data_sources),
        ):
            if value is not None:
                changes[name] = value
        data = agreements.parse_amendment({"changes": changes, "reason": reason, "gap_ids": gap})
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            a = agreements.propose(s, access.visible_cycle(s, actor, cycle_id), data, actor)
            s.flush()
            typer.echo(f"change {a.id} proposed; both point persons adopt or reject it at recap")

    @agreement_app.command("sign")
    def sign(
        change_id: int = typer.Argument(..., metavar="CHANGE_ID"), as_: str | None = ACTOR_OPTION
    ) -> None:
        """A point person signs a change for their team at Recap (the second adopts it)."""
        from models.phases import agreement as agreement_phase
        from models.services import agreements

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            adopted = agreement_phase.sign(
                s, agreements.visible_amendment(s, actor, change_id), actor
            )
        typer.echo(
            "adopted: the change is in force" if adopted else "signed; waiting for the other team"
        )

    @agreement_app.command("reject")
    def reject(
        change_id: int = typer.Argument(..., metavar="CHANGE_ID"),
        note: str | None = typer.Option(None, "--note", help="Why."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """A point person rejects a change at Recap."""
        from models.services import agreements

        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            agreements.reject(s, agreements.visible_amendment(s, actor, change_id), actor, note)
        typer.echo("rejected: the agreement stays as it is")

    @campaign_app.command("list")
    def campaign_list(
        agreement_id: int = typer.Argument(..., metavar="AGREEMENT_ID"),
        as_: str | None = ACTOR_OPTION,
        json_: bool = JSON_OPTION,
    ) -> None:
        """The campaigns of an agreement's two teams, their materials and ratings."""
        from models.agreement_tables import Agreement
        from models.errors import NotFound
        from models.services import agreements, campaigns

        with cc.unit_of_work() as s:
            viewer = cc.actor(s, as_) if as_ else None
            if viewer is not None:
                agreement = agreements.visible_agreement(s, viewer, agreement_id)
            else:
                agreement = s.get(Agreement, agreement_id)
                if agreement is None:
                    raise NotFound(f"no agreement with id {agreement_id}")
            views = [
                campaigns.campaign_view(s, c, viewer) for c in campaigns.campaigns_of(s, agreement)
            ]
        if json_:
            emit_json(views)
            return
        rows = []
        for c in views:
            for m in c.materials or [None]:
                rows.append(
                    [
                        c.id,
                        clip(c.name, 30),
                        m.id if m else "",
                        clip(m.title, 30) if m else "(no material)",
                        m.kind_words if m else "",
                        f"{m.average} of 5 ({len(m.ratings)})" if m and m.ratings else "",
                    ]
                )
        table(rows, ["campaign", "name", "material", "title", "kind", "useful"])

    @campaign_app.command("add")
    def campaign_add(
        agreement_id: int = typer.Argument(..., metavar="AGREEMENT_ID"),
        name: str = typer.Option(..., "--name"),
        starts: datetime | None = typer.Option(None, "--starts", formats=DATE_FORMATS),
        ends: datetime | None = typer.Option(None, "--ends", formats=DATE_FORMATS),
        channels: str | None = typer.Option(None, "--channels"),
        funnel_key: str | None = typer.Option(None, "--funnel-key", help="Campaign in the data."),
        owner: list[str] = typer.Option([], "--owner", help="Email; one on each team."),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Add a campaign of the agreement's two teams."""
        from models.services import agreements, campaigns

        data = _parsed(
            campaigns.CampaignCreate,
            {
                "name": name,
                "starts_on": starts.date() if starts else None,
                "ends_on": ends.date() if ends else None,
                "channels": channels,
                "funnel_key": funnel_key,
                "owners": owner,
            },
        )
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            c = campaigns.add_campaign(
                s, agreements.visible_agreement(s, actor, agreement_id), data, actor
            )
            s.flush()
            typer.echo(f"campaign {c.id} added")

    @campaign_app.command("material")
    def material_add(
        campaign_id: int = typer.Argument(..., metavar="CAMPAIGN_ID"),
        title: str = typer.Option(..., "--title"),
        kind: str = typer.Option(..., "--kind", help="deck, case_study, battle_card, ..."),
        link: str | None = typer.Option(None, "--link"),
        owner: str | None = typer.Option(None, "--owner", help="Email of who made it."),
        shipped_on: datetime | None = typer.Option(None, "--shipped-on", formats=DATE_FORMATS),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Add a material to a campaign."""
        from models.services import campaigns

        data = _parsed(
            campaigns.MaterialCreate,
            {
                "title": title,
                "kind": kind,
                "link": link,
                "owner": owner,
                "shipped_on": shipped_on.date() if shipped_on else None,
            },
        )
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            m = campaigns.add_material(
                s, campaigns.visible_campaign(s, actor, campaign_id), data, actor
            )
            s.flush()
            typer.echo(f"material {m.id} added")

    @campaign_app.command("rate")
    def rate(
        material_id: int = typer.Argument(..., metavar="MATERIAL_ID"),
        usefulness: int = typer.Option(..., "--usefulness", help="1 (not useful) to 5."),
        objections: str | None = typer.Option(None, "--objections"),
        as_: str | None = ACTOR_OPTION,
    ) -> None:
        """Rate how useful a material is, and the objections it fails to answer."""
        from models.phases import content
        from models.services import campaigns

        data = _parsed(campaigns.RatingCreate, {"usefulness": usefulness, "objections": objections})
        with cc.unit_of_work() as s:
            actor = cc.actor(s, as_)
            content.rate(s, campaigns.visible_material(s, actor, material_id), data, actor)
        typer.echo("rating saved")
