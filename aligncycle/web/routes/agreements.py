"""The agreement of two teams (its terms in force, printable, as Markdown; every version; the
changes proposed in Plan and signed at Recap), and its campaigns and materials: the pages.

Thin: the forms are parsed into the domain's inputs, the domain decides
(:mod:`models.services.agreements`, :mod:`models.services.campaigns`,
:mod:`models.phases.agreement`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import act, opt, page, parse_form, render, to_int
from models.agreement_tables import Agreement
from models.enums import Phase
from models.errors import InvalidInput
from models.funnel.campaign_effect import campaign_effect
from models.funnel.kpis import KPIS
from models.phases import agreement as agreement_phase
from models.phases import content
from models.rules import phase_allows
from models.services import access, agreement_views, agreements, campaigns, views
from models.services.agreements import CADENCE_WORDS, AmendmentCreate, Terms
from models.services.campaigns import (
    KIND_WORDS,
    USEFULNESS_WORDS,
    CampaignCreate,
    MaterialCreate,
    RatingCreate,
)
from models.tables import Cycle, Person

router = APIRouter(include_in_schema=False)
#: Campaigns on the Numbers page's campaign view (each is two KPI computations).
CAMPAIGN_NUMBERS = 10


# --- the list ------------------------------------------------------------------------------


@page(router, "/agreements")
def agreements_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    mine = agreements.visible_agreements(s, ctx.me)
    covered = {a.team_ids for a in mine}
    cycles = s.scalars(
        select(Cycle).where(access.visible_cycles(ctx.me)).order_by(Cycle.id.desc()).limit(50)
    )
    without = []
    for c in cycles:
        pair = agreements.pair_of(c)
        if pair and pair not in covered:
            covered.add(pair)
            without.append(c)
    return render(
        request,
        ctx,
        "agreements.html",
        status=status,
        agreements=mine,
        without=without,
        may_write=ctx.me.role.value == "point_person",
        forms=forms or {},
    )


@router.post("/cycles/{cycle_id}/agreement")
def first_version_post(request: Request, cycle_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        cycle = access.visible_cycle(ctx.session, ctx.me, cycle_id)
        agreements.write_first_version(ctx.session, cycle, ctx.me)
        return "The first version of the agreement is written from the playbook."

    return act(request, ctx, form_id=f"first-{cycle_id}", default_next="/agreements", run=run)


# --- one agreement -------------------------------------------------------------------------


def _team_names(a: Agreement) -> dict[str, str]:
    return {a.team_a.key: a.team_a.name, a.team_b.key: a.team_b.name}


@page(router, "/agreements/{agreement_id}")
def agreement_page(
    request: Request, ctx: Ctx, agreement_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    agreement = agreements.visible_agreement(s, ctx.me, agreement_id)
    v = agreement_views.view(s, agreement)
    cycles = agreement_views.cycles_of(s, agreement)
    planning = [c for c in cycles if phase_allows(c.phase, "amend_agreement")]
    may_propose = agreements.may_propose(ctx.me, agreement) and bool(planning)
    gaps = agreement_views.gaps_of(s, planning) if may_propose else []
    by_id = {c.id: c for c in cycles}
    signing = {
        a.id: _signs_for(ctx.me, by_id.get(a.cycle_id), a.signed_by)
        for a in v.amendments
        if a.status == "proposed"
    }
    return render(
        request,
        ctx,
        "agreement.html",
        status=status,
        agreement=agreement,
        v=v,
        team_names=_team_names(agreement),
        planning=planning,
        may_propose=may_propose,
        gaps=gaps,
        signing=signing,
        cycles=by_id,
        CADENCE_WORDS=CADENCE_WORDS,
        definition_words=agreements.definition_words,
        forms=forms or {},
    )


def _signs_for(me: Person, cycle: Cycle | None, signed_by: list[str]) -> str | None:
    """The team ``me`` signs a change for, when they may now (the cycle's point person, at
    Recap, their team not signed yet)."""
    if cycle is None or cycle.phase is not Phase.RECAP:
        return None
    team = agreements.signing_team(cycle, me)
    if team is None or any(x.endswith(f" for {team.team.name}") for x in signed_by):
        return None
    return team.team.name


@router.get("/agreements/{agreement_id}/agreement.md")
def agreement_markdown(request: Request, agreement_id: int, ctx: PageCtx) -> Response:
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    text = agreement_views.to_markdown(agreement_views.view(ctx.session, agreement))
    name = f"agreement-{agreement.team_a.key}-{agreement.team_b.key}.md"
    return Response(
        text,
        media_type="text/markdown; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def amendment_input(data: dict[str, str], terms: Terms) -> AmendmentCreate:
    """The form's fields as the domain's input: every term the form shows (the domain keeps
    only the ones that differ from the terms in force) and the gaps ticked."""
    changes: dict[str, Any] = {
        "definitions": {
            k: data.get(f"def-{k}", "") for k in terms.definitions if f"def-{k}" in data
        },
        "kpi_targets": {
            k: data[f"target-{k}"] for k in KPIS if data.get(f"target-{k}", "").strip()
        },
        "commitments": {
            k: data.get(f"commit-{k}", "") for k in terms.commitments if f"commit-{k}" in data
        },
    }
    if data.get("sla", "").strip():
        changes["handoff_sla_hours"] = to_int(data["sla"])
    for name in ("cadence", "tools", "data_sources"):
        if name in data:
            changes[name] = data[name]
    gap_ids = [to_int(k.removeprefix("gap-")) for k in data if k.startswith("gap-")]
    return agreements.parse_amendment(
        {"changes": changes, "reason": data.get("reason", ""), "gap_ids": gap_ids}
    )


@router.post("/agreements/{agreement_id}/amendments")
def propose_post(request: Request, agreement_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        s = ctx.session
        agreement = agreements.visible_agreement(s, ctx.me, agreement_id)
        version = agreements.in_force(s, agreement)
        terms = agreements.terms_of(version) if version else Terms()
        cycle_id = to_int(data.get("cycle_id"))
        if cycle_id is None:
            raise InvalidInput("choose the cycle in Plan this change belongs to")
        cycle = access.visible_cycle(s, ctx.me, cycle_id)
        if agreements.pair_of(cycle) != agreement.team_ids:
            raise InvalidInput("that cycle is not one of these two teams'")
        agreements.propose(s, cycle, amendment_input(data, terms), ctx.me)
        return "Your change is proposed. Both point persons adopt or reject it at the recap."

    here = f"/agreements/{agreement_id}"
    return act(request, ctx, form_id="propose", default_next=here, run=run, anchor="changes")


@router.get("/amendments/{amendment_id}")
def amendment_page(request: Request, amendment_id: int, ctx: PageCtx) -> Response:
    """A proposed change: where it is read, signed and rejected (its agreement's page)."""
    amendment = agreements.visible_amendment(ctx.session, ctx.me, amendment_id)
    return RedirectResponse(
        f"/agreements/{amendment.agreement_id}#change-{amendment.id}", status_code=303
    )


@router.post("/amendments/{amendment_id}/sign")
def sign_post(request: Request, amendment_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        amendment = agreements.visible_amendment(ctx.session, ctx.me, amendment_id)
        if agreement_phase.sign(ctx.session, amendment, ctx.me):
            return "Both point persons signed: the change is adopted and in force now."
        return "Signed for your team. The change is adopted once the other point person signs."

    return act(request, ctx, form_id=f"sign-{amendment_id}", default_next="/agreements", run=run)


@router.post("/amendments/{amendment_id}/reject")
def reject_post(request: Request, amendment_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        amendment = agreements.visible_amendment(ctx.session, ctx.me, amendment_id)
        agreements.reject(ctx.session, amendment, ctx.me, data.get("note"))
        return "The change is rejected; the agreement stays as it is."

    return act(request, ctx, form_id=f"sign-{amendment_id}", default_next="/agreements", run=run)


# --- campaigns and materials ---------------------------------------------------------------


@page(router, "/agreements/{agreement_id}/campaigns")
def campaigns_page(
    request: Request, ctx: Ctx, agreement_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    agreement = agreements.visible_agreement(s, ctx.me, agreement_id)
    people = views.team_people(s, agreement.team_ids)
    return render(
        request,
        ctx,
        "campaigns.html",
        status=status,
        agreement=agreement,
        campaigns=[
            campaigns.campaign_view(s, c, ctx.me) for c in campaigns.campaigns_of(s, agreement)
        ],
        may_add=campaigns.may_add(ctx.me, agreement),
        people=people,
        forms=forms or {},
    )


@router.post("/agreements/{agreement_id}/campaigns")
def campaign_post(request: Request, agreement_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
        c = campaigns.add_campaign(ctx.session, agreement, _campaign_input(data), ctx.me)
        return f"Campaign “{c.name}” added."

    here = f"/agreements/{agreement_id}/campaigns"
    return act(request, ctx, form_id="campaign", default_next=here, run=run)


@page(router, "/campaigns/{campaign_id}")
def campaign_page(
    request: Request, ctx: Ctx, campaign_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    s = ctx.session
    campaign = campaigns.visible_campaign(s, ctx.me, campaign_id)
    agreement = s.get(Agreement, campaign.agreement_id)
    people = views.team_people(s, agreement.team_ids)
    return render(
        request,
        ctx,
        "campaign.html",
        status=status,
        agreement=agreement,
        c=campaigns.campaign_view(s, campaign, ctx.me),
        campaign=campaign,
        items=agreement_views.material_sources(s, agreement),
        effect=campaign_effect(s, campaign, sla_hours=_sla(s, agreement)),
        may_add=campaigns.may_add(ctx.me, agreement),
        people=people,
        KIND_WORDS=KIND_WORDS,
        USEFULNESS_WORDS=USEFULNESS_WORDS,
        forms=forms or {},
    )


def _sla(s: Any, agreement: Agreement) -> int:
    version = agreements.in_force(s, agreement)
    return agreements.terms_of(version).handoff_sla_hours if version else Terms().handoff_sla_hours


@page(router, "/numbers/campaigns")
def campaign_numbers_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    """Each campaign the viewer sees, linked to the data and with a shipped material: its
    conversion before and after (the newest first, at most ``CAMPAIGN_NUMBERS``)."""
    s = ctx.session
    rows = []
    for agreement in agreements.visible_agreements(s, ctx.me):
        sla = _sla(s, agreement)
        for campaign in campaigns.campaigns_of(s, agreement):
            if campaign.funnel_key:
                rows.append((agreement, campaign, sla))
    rows = sorted(rows, key=lambda r: r[1].id, reverse=True)[:CAMPAIGN_NUMBERS]
    return render(
        request,
        ctx,
        "campaign_numbers.html",
        status=status,
        rows=[(a, c, campaign_effect(s, c, sla_hours=sla)) for a, c, sla in rows],
        forms=forms or {},
    )


def _campaign_input(data: dict[str, str]) -> CampaignCreate:
    fields: dict[str, Any] = opt(data, "name", "starts_on", "ends_on", "channels", "funnel_key")
    fields["owners"] = [data[k] for k in ("owner_a", "owner_b") if data.get(k)]
    return parse_form(CampaignCreate, fields)


@router.post("/campaigns/{campaign_id}")
def campaign_change_post(request: Request, campaign_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        campaign = campaigns.visible_campaign(ctx.session, ctx.me, campaign_id)
        campaigns.update_campaign(ctx.session, campaign, _campaign_input(data), ctx.me)
        return "The campaign is saved."

    here = f"/campaigns/{campaign_id}"
    return act(request, ctx, form_id="change", default_next=here, run=run)


@router.post("/campaigns/{campaign_id}/materials")
def material_post(request: Request, campaign_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        campaign = campaigns.visible_campaign(ctx.session, ctx.me, campaign_id)
        fields: dict[str, Any] = opt(data, "title", "kind", "link", "owner", "shipped_on")
        fields["action_item_id"] = to_int(data.get("action_item_id"))
        m = campaigns.add_material(
            ctx.session, campaign, parse_form(MaterialCreate, fields), ctx.me
        )
        return f"“{m.title}” added."

    here = f"/campaigns/{campaign_id}"
    return act(request, ctx, form_id="material", default_next=here, run=run)


@router.post("/materials/{material_id}/rating")
def rating_post(request: Request, material_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        material = campaigns.visible_material(ctx.session, ctx.me, material_id)
        fields = opt(data, "usefulness", "objections")
        content.rate(ctx.session, material, parse_form(RatingCreate, fields), ctx.me)
        return "Thank you: your rating is saved."

    return act(
        request,
        ctx,
        form_id=f"rate-{material_id}",
        default_next="/agreements",
        run=run,
        anchor=f"material-{material_id}",
    )
