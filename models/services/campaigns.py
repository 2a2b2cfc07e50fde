"""Campaigns and materials of a team pair, and how useful the other team finds each material.

A campaign belongs to the agreement of two teams (its owners: one on each team); its
materials (a deck, a case study, a battle card, an email template) are rated by the people of
the team that did not make them: usefulness from 1 to 5 and the objections it fails to answer.
Who sees them: as the agreement (its two teams and managers); leads, point persons and managers
add campaigns and materials. Like every service: a Session first, never commits.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.agreement_tables import Agreement, Campaign, Material, MaterialRating
from models.enums import Role
from models.errors import Forbidden, InvalidInput, NotFound
from models.services.agreements import can_view, pair_of
from models.services.common import changes, person_by_email, record_event, snapshot
from models.tables import ActionItem, Cycle, Person

KIND_WORDS = {
    "deck": "Deck",
    "case_study": "Case study",
    "battle_card": "Battle card",
    "email_template": "Email template",
}
USEFULNESS_WORDS = {
    1: "1 · not useful",
    2: "2",
    3: "3 · somewhat useful",
    4: "4",
    5: "5 · very useful",
}


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=2, max_length=200)
    starts_on: date | None = None
    ends_on: date | None = None
    channels: str | None = Field(default=None, max_length=1000)
    funnel_key: str | None = Field(default=None, max_length=200)
    #: The owners' emails: one of each team, in either order.
    owners: list[str] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _dates(self) -> CampaignCreate:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("the campaign ends before it starts")
        return self


class MaterialCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=2, max_length=200)
    kind: str
    link: str | None = Field(default=None, max_length=2000)
    owner: str | None = Field(default=None, max_length=320)
    shipped_on: date | None = None
    #: The action item that produced it (of a cycle of the same two teams).
    action_item_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KIND_WORDS:
            raise ValueError("choose a deck, a case study, a battle card or an email template")
        return v

    @field_validator("link")
    @classmethod
    def _link(cls, v: str | None) -> str | None:
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("a link starts with https:// or http://")
        return v or None


class RatingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    usefulness: int = Field(ge=1, le=5)
    objections: str | None = Field(default=None, max_length=4000)


# --- who sees, who may ---------------------------------------------------------------------


def visible_campaign(session: Session, viewer: Person, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    agreement = session.get(Agreement, campaign.agreement_id) if campaign else None
    if campaign is None or agreement is None or not can_view(viewer, agreement):
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


def visible_material(session: Session, viewer: Person, material_id: int) -> Material:
    material = session.get(Material, material_id)
    if material is None:
        raise NotFound(f"no material with id {material_id}")
    try:
        visible_campaign(session, viewer, material.campaign_id)
    except NotFound:
        raise NotFound(f"no material with id {material_id}") from None
    return material


def may_add(person: Person, agreement: Agreement) -> bool:
    """Leads and point persons of the two teams, and managers, add campaigns and materials."""
    if person.role is Role.MANAGER:
        return True
    return person.role in (Role.LEAD, Role.POINT_PERSON) and person.team_id in agreement.team_ids


def may_rate(person: Person, agreement: Agreement, material: Material) -> bool:
    """People of the two teams rate a material, except those of the team that made it."""
    if person.team_id not in agreement.team_ids:
        return False
    return material.owner is None or material.owner.team_id != person.team_id


def _require_add(person: Person, agreement: Agreement) -> None:
    if not may_add(person, agreement):
        raise Forbidden("only leads, point persons and managers add campaigns and materials")


def _on_pair(session: Session, agreement: Agreement, email: str, what: str) -> Person:
    try:
        person = person_by_email(session, email)
    except NotFound:
        raise InvalidInput(f"nobody has the email {email}", field=what) from None
    if person.team_id not in agreement.team_ids:
        raise InvalidInput(f"{person.name} is on neither of the two teams", field=what)
    return person


# --- verbs ---------------------------------------------------------------------------------


def add_campaign(
    session: Session, agreement: Agreement, data: CampaignCreate, actor: Person
) -> Campaign:
    _require_add(actor, agreement)
    a, b = _owners(session, agreement, data)
    campaign = Campaign(
        agreement_id=agreement.id,
        name=data.name,
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        channels=data.channels or None,
        funnel_key=data.funnel_key or None,
        owner_a_id=a.id if a else None,
        owner_b_id=b.id if b else None,
        created_by_id=actor.id,
    )
    session.add(campaign)
    record_event(
        session, actor=actor, verb="campaign.added", obj=campaign, after={"name": data.name}
    )
    return campaign


def update_campaign(
    session: Session, campaign: Campaign, data: CampaignCreate, actor: Person
) -> Campaign:
    """Change a campaign's name, dates, channels, key in the data and owners (all as given)."""
    agreement = session.get(Agreement, campaign.agreement_id)
    _require_add(actor, agreement)  # type: ignore[arg-type]
    a, b = _owners(session, agreement, data)  # type: ignore[arg-type]
    fields = ("name", "starts_on", "ends_on", "channels", "funnel_key", "owner_a_id", "owner_b_id")
    before = snapshot(campaign, list(fields))
    campaign.name = data.name
    campaign.starts_on, campaign.ends_on = data.starts_on, data.ends_on
    campaign.channels = data.channels or None
    campaign.funnel_key = data.funnel_key or None
    campaign.owner_a, campaign.owner_b = a, b
    session.flush()
    was, now = changes(before, snapshot(campaign, list(fields)))
    if now:
        record_event(
            session, actor=actor, verb="campaign.changed", obj=campaign, before=was, after=now
        )
    return campaign


def _owners(
    session: Session, agreement: Agreement, data: CampaignCreate
) -> tuple[Person | None, Person | None]:
    """The campaign's owners: at most one on each of the two teams."""
    owners = [_on_pair(session, agreement, e, "owners") for e in data.owners if e]
    if len({o.team_id for o in owners}) < len(owners):
        raise InvalidInput("name one owner on each team", field="owners")
    by_team = {o.team_id: o for o in owners}
    return by_team.get(agreement.team_a_id), by_team.get(agreement.team_b_id)


def add_material(
    session: Session, campaign: Campaign, data: MaterialCreate, actor: Person
) -> Material:
    agreement = session.get(Agreement, campaign.agreement_id)
    _require_add(actor, agreement)  # type: ignore[arg-type]
    owner = _on_pair(session, agreement, data.owner, "owner") if data.owner else None  # type: ignore[arg-type]
    if data.action_item_id is not None:
        item = session.get(ActionItem, data.action_item_id)
        cycle = session.get(Cycle, item.cycle_id) if item else None
        if cycle is None or pair_of(cycle) != agreement.team_ids:  # type: ignore[union-attr]
            raise InvalidInput(
                "that action item is not one of these two teams' cycles", field="action_item_id"
            )
    material = Material(
        campaign_id=campaign.id,
        action_item_id=data.action_item_id,
        title=data.title,
        kind=data.kind,
        link=data.link,
        owner_id=owner.id if owner else None,
        shipped_on=data.shipped_on,
        created_by_id=actor.id,
    )
    session.add(material)
    record_event(
        session, actor=actor, verb="material.added", obj=material, after={"title": data.title}
    )
    return material


def rate(session: Session, material: Material, data: RatingCreate, actor: Person) -> MaterialRating:
    """The person's rating of the material (a later one replaces theirs)."""
    campaign = session.get(Campaign, material.campaign_id)
    agreement = session.get(Agreement, campaign.agreement_id)  # type: ignore[union-attr]
    if not may_rate(actor, agreement, material):  # type: ignore[arg-type]
        raise Forbidden("the team that made a material does not rate it; the other team does")
    row = session.scalar(
        select(MaterialRating).where(
            MaterialRating.material_id == material.id, MaterialRating.person_id == actor.id
        )
    )
    if row is None:
        row = MaterialRating(material_id=material.id, person_id=actor.id)
        session.add(row)
    row.usefulness = data.usefulness
    row.objections = data.objections or None
    record_event(
        session,
        actor=actor,
        verb="material.rated",
        obj=material,
        after={"usefulness": data.usefulness},
    )
    return row


# --- what people read ----------------------------------------------------------------------


class RatingView(BaseModel):
    by: str
    usefulness: int
    objections: str | None
    at: datetime


class MaterialView(BaseModel):
    id: int
    title: str
    kind: str
    kind_words: str
    link: str | None
    owner: str | None
    shipped_on: date | None
    #: The action item that produced it (its title).
    made_for: str | None = None
    ratings: list[RatingView]
    average: float | None
    #: What the viewer rated it (None: not yet), and whether they may rate it.
    mine: int | None = None
    mine_objections: str | None = None
    may_rate: bool = False


class CampaignView(BaseModel):
    id: int
    agreement_id: int
    name: str
    starts_on: date | None
    ends_on: date | None
    channels: str | None
    funnel_key: str | None
    owners: list[str]
    materials: list[MaterialView]


def campaign_view(session: Session, campaign: Campaign, viewer: Person | None) -> CampaignView:
    """The campaign and its materials; ``viewer`` None: the operator (rates nothing)."""
    agreement = session.get(Agreement, campaign.agreement_id)
    materials = []
    rows = session.scalars(
        select(Material).where(Material.campaign_id == campaign.id).order_by(Material.id)
    )
    rows = list(rows)
    ids = [m.action_item_id for m in rows if m.action_item_id]
    item_titles = dict(
        session.execute(select(ActionItem.id, ActionItem.title).where(ActionItem.id.in_(ids)))
        .tuples()
        .all()
    )
    for m in rows:
        ratings = list(
            session.scalars(
                select(MaterialRating)
                .where(MaterialRating.material_id == m.id)
                .order_by(MaterialRating.id)
            )
        )
        mine = next((r for r in ratings if viewer and r.person_id == viewer.id), None)
        materials.append(
            MaterialView(
                id=m.id,
                title=m.title,
                kind=m.kind,
                kind_words=KIND_WORDS.get(m.kind, m.kind),
                link=m.link,
                owner=m.owner.name if m.owner else None,
                shipped_on=m.shipped_on,
                made_for=item_titles.get(m.action_item_id),
                ratings=[
                    RatingView(
                        by=r.person.name,
                        usefulness=r.usefulness,
                        objections=r.objections,
                        at=r.rated_at,
                    )
                    for r in ratings
                ],
                average=round(sum(r.usefulness for r in ratings) / len(ratings), 1)
                if ratings
                else None,
                mine=mine.usefulness if mine else None,
                mine_objections=mine.objections if mine else None,
                may_rate=bool(viewer and may_rate(viewer, agreement, m)),  # type: ignore[arg-type]
            )
        )
    return CampaignView(
        id=campaign.id,
        agreement_id=campaign.agreement_id,
        name=campaign.name,
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
        channels=campaign.channels,
        funnel_key=campaign.funnel_key,
        owners=[o.name for o in (campaign.owner_a, campaign.owner_b) if o],
        materials=materials,
    )


def campaigns_of(session: Session, agreement: Agreement) -> list[Campaign]:
    return list(
        session.scalars(
            select(Campaign).where(Campaign.agreement_id == agreement.id).order_by(Campaign.id)
        )
    )
