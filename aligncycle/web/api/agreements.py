"""The agreement of two teams, its versions and proposed changes, and its campaigns and
materials, as JSON. The same domain calls as the pages (:mod:`models.services.agreements`,
:mod:`models.services.campaigns`, :mod:`models.phases.agreement`); another team pair's
agreement, change, campaign or material answers 404 like a missing one."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from aligncycle.web.api.common import Id, cycle_for
from aligncycle.web.auth import ApiCtx
from models.errors import InvalidInput
from models.phases import agreement as agreement_phase
from models.phases import content
from models.services import agreement_views, agreements, campaigns
from models.services.agreement_views import AgreementView
from models.services.agreements import AmendmentCreate
from models.services.campaigns import CampaignCreate, CampaignView, MaterialCreate, RatingCreate

router = APIRouter()


class AgreementBrief(BaseModel):
    id: int
    title: str
    teams: list[str]


class Proposal(AmendmentCreate):
    """A change to the agreement, proposed for a cycle of the two teams that is in Plan."""

    cycle_id: int = Field(ge=1, le=2**31 - 1)


class Signed(BaseModel):
    adopted: bool
    agreement: AgreementView


class Rejection(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


@router.get("/agreements", response_model=list[AgreementBrief], tags=["agreements"])
def agreement_list(ctx: ApiCtx) -> list[AgreementBrief]:
    """The agreements of your team's pairs (a manager: all)."""
    return [
        AgreementBrief(id=a.id, title=a.title, teams=[a.team_a.key, a.team_b.key])
        for a in agreements.visible_agreements(ctx.session, ctx.me)
    ]


@router.get("/agreements/{agreement_id}", response_model=AgreementView, tags=["agreements"])
def agreement_get(agreement_id: Id, ctx: ApiCtx) -> AgreementView:
    """The terms in force, every version with what it changed, every proposed change."""
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    return agreement_views.view(ctx.session, agreement)


@router.get(
    "/agreements/{agreement_id}/agreement.md",
    tags=["agreements"],
    response_class=Response,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
)
def agreement_markdown(agreement_id: Id, ctx: ApiCtx) -> Response:
    """The agreement in force and its history as Markdown."""
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    text = agreement_views.to_markdown(agreement_views.view(ctx.session, agreement))
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.post("/cycles/{cycle_id}/agreement", response_model=AgreementView, tags=["agreements"])
def first_version(cycle_id: Id, ctx: ApiCtx) -> AgreementView:
    """A point person writes the first version of the cycle's two teams' agreement from the
    cycle's playbook (nothing happens when it has one)."""
    agreement = agreements.write_first_version(ctx.session, cycle_for(ctx, cycle_id), ctx.me)
    return agreement_views.view(ctx.session, agreement)  # type: ignore[arg-type]


@router.post(
    "/agreements/{agreement_id}/amendments",
    response_model=AgreementView,
    status_code=201,
    tags=["agreements"],
)
def propose(agreement_id: Id, body: Proposal, ctx: ApiCtx) -> AgreementView:
    """Propose a change (only the terms given change) for a cycle of the two teams in Plan."""
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    cycle = cycle_for(ctx, body.cycle_id)
    if agreements.pair_of(cycle) != agreement.team_ids:
        raise InvalidInput("that cycle is not one of these two teams'")
    data = AmendmentCreate.model_validate(body.model_dump(exclude={"cycle_id"}))
    agreements.propose(ctx.session, cycle, data, ctx.me)
    return agreement_views.view(ctx.session, agreement)


@router.post("/amendments/{amendment_id}/sign", response_model=Signed, tags=["agreements"])
def sign(amendment_id: Id, ctx: ApiCtx) -> Signed:
    """A point person of the change's cycle signs it for their team at Recap; the second
    signature adopts it."""
    amendment = agreements.visible_amendment(ctx.session, ctx.me, amendment_id)
    adopted = agreement_phase.sign(ctx.session, amendment, ctx.me)
    agreement = agreements.visible_agreement(ctx.session, ctx.me, amendment.agreement_id)
    return Signed(adopted=adopted, agreement=agreement_views.view(ctx.session, agreement))


@router.post("/amendments/{amendment_id}/reject", response_model=AgreementView, tags=["agreements"])
def reject(amendment_id: Id, body: Rejection, ctx: ApiCtx) -> AgreementView:
    """A point person of the change's cycle rejects it at Recap."""
    amendment = agreements.visible_amendment(ctx.session, ctx.me, amendment_id)
    agreements.reject(ctx.session, amendment, ctx.me, body.note)
    agreement = agreements.visible_agreement(ctx.session, ctx.me, amendment.agreement_id)
    return agreement_views.view(ctx.session, agreement)


@router.get(
    "/agreements/{agreement_id}/campaigns", response_model=list[CampaignView], tags=["campaigns"]
)
def campaign_list(agreement_id: Id, ctx: ApiCtx) -> list[CampaignView]:
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    return [
        campaigns.campaign_view(ctx.session, c, ctx.me)
        for c in campaigns.campaigns_of(ctx.session, agreement)
    ]


@router.post(
    "/agreements/{agreement_id}/campaigns",
    response_model=CampaignView,
    status_code=201,
    tags=["campaigns"],
)
def campaign_add(agreement_id: Id, body: CampaignCreate, ctx: ApiCtx) -> CampaignView:
    """Add a campaign (owners: the emails of one person on each team)."""
    agreement = agreements.visible_agreement(ctx.session, ctx.me, agreement_id)
    c = campaigns.add_campaign(ctx.session, agreement, body, ctx.me)
    ctx.session.flush()
    return campaigns.campaign_view(ctx.session, c, ctx.me)


@router.get("/campaigns/{campaign_id}", response_model=CampaignView, tags=["campaigns"])
def campaign_get(campaign_id: Id, ctx: ApiCtx) -> CampaignView:
    """A campaign, its materials and how useful the other team found each."""
    c = campaigns.visible_campaign(ctx.session, ctx.me, campaign_id)
    return campaigns.campaign_view(ctx.session, c, ctx.me)


@router.put("/campaigns/{campaign_id}", response_model=CampaignView, tags=["campaigns"])
def campaign_change(campaign_id: Id, body: CampaignCreate, ctx: ApiCtx) -> CampaignView:
    """Change a campaign: every field as given (left out: emptied)."""
    c = campaigns.visible_campaign(ctx.session, ctx.me, campaign_id)
    campaigns.update_campaign(ctx.session, c, body, ctx.me)
    ctx.session.flush()
    return campaigns.campaign_view(ctx.session, c, ctx.me)


@router.post(
    "/campaigns/{campaign_id}/materials",
    response_model=CampaignView,
    status_code=201,
    tags=["campaigns"],
)
def material_add(campaign_id: Id, body: MaterialCreate, ctx: ApiCtx) -> CampaignView:
    """Add a material: kind is deck, case_study, battle_card or email_template."""
    c = campaigns.visible_campaign(ctx.session, ctx.me, campaign_id)
    campaigns.add_material(ctx.session, c, body, ctx.me)
    ctx.session.flush()
    return campaigns.campaign_view(ctx.session, c, ctx.me)


@router.put("/materials/{material_id}/rating", response_model=CampaignView, tags=["campaigns"])
def material_rate(material_id: Id, body: RatingCreate, ctx: ApiCtx) -> CampaignView:
    """Your rating of a material (usefulness 1 to 5, and the objections it fails to answer);
    the team that made it does not rate it."""
    m = campaigns.visible_material(ctx.session, ctx.me, material_id)
    content.rate(ctx.session, m, body, ctx.me)  # and the content questions, afresh
    ctx.session.flush()
    c = campaigns.visible_campaign(ctx.session, ctx.me, m.campaign_id)
    return campaigns.campaign_view(ctx.session, c, ctx.me)
