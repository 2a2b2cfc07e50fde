"""Content questions answered from the materials' ratings: an Identify question with a
``materials`` check in the playbook ("Is much of the content marketing creates left unused by
sales?") gets the ratings of the team pair's materials as evidence — how many materials nobody
has rated, how many the raters found not useful, the objections they fail to answer — and the
answer the ratings point to. When they point to the answer that records the question's gap,
Identify records it (key ``checklist:<question>``, as an answer would), with that evidence; the
gap is an ordinary gap people decide. Without materials or ratings nothing is proposed.

The gaps are recorded with the numbers' (when a cycle starts, when Identify's analysis
refreshes: the Identify flow, a move out of Identify); the evidence also as someone rates a
material (:func:`rate`: every cycle of the pair in Identify). Idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.agreement_tables import Agreement, Campaign, Material, MaterialRating
from models.enums import GapSource, Phase
from models.playbook import MaterialCheck, Question
from models.schemas import GapCreate
from models.services import agreements, campaigns
from models.services.cycles import spec
from models.services.gaps import add_gap
from models.tables import ChecklistItem, Cycle, CycleTeam, Gap, Person
from models.words import counted, quoted

#: An average usefulness at or under this (of 5) counts as "not useful".
NOT_USEFUL = 2.0
#: At most this many objections are quoted in the evidence.
QUOTED = 3


@dataclass
class Ratings:
    """What the ratings of a team pair's materials say."""

    materials: int = 0
    rated: int = 0
    unrated: int = 0
    not_useful: int = 0
    ratings: int = 0
    #: The objections the raters say the materials fail to answer, newest first.
    objections: list[str] = field(default_factory=list)

    @property
    def unused_or_not_useful(self) -> int:
        return self.unrated + self.not_useful

    def share(self) -> float:
        return self.unused_or_not_useful / self.materials if self.materials else 0.0


def ratings_of(session: Session, agreement_id: int) -> Ratings:
    """The ratings of every material of the agreement's campaigns (two queries)."""
    ids = list(
        session.scalars(
            select(Material.id)
            .join(Campaign, Campaign.id == Material.campaign_id)
            .where(Campaign.agreement_id == agreement_id)
        )
    )
    out = Ratings(materials=len(ids))
    if not ids:
        return out
    scores: dict[int, list[int]] = {i: [] for i in ids}
    for material_id, usefulness, objections in session.execute(
        select(MaterialRating.material_id, MaterialRating.usefulness, MaterialRating.objections)
        .where(MaterialRating.material_id.in_(ids))
        .order_by(MaterialRating.rated_at.desc(), MaterialRating.id.desc())
    ):
        scores[material_id].append(usefulness)
        out.ratings += 1
        if objections and objections.strip():
            out.objections.append(objections.strip())
    for values in scores.values():
        if not values:
            out.unrated += 1
        else:
            out.rated += 1
            if sum(values) / len(values) <= NOT_USEFUL:
                out.not_useful += 1
    return out


def points_to_gap(check: MaterialCheck, r: Ratings) -> bool | None:
    """Whether the ratings point to the answer that records the gap (None: too little to go
    on — fewer materials than the check asks, or no rating at all)."""
    if r.materials < check.min_materials or r.ratings == 0:
        return None
    return r.share() > check.unused_above


def proposed_answer(q: Question, gap: bool) -> str:
    """The yes/no answer the ratings point to."""
    assert q.gap is not None
    if gap:
        return q.gap.when.value
    return q.calm_answer or "no"


def describe(q: Question, check: MaterialCheck, r: Ratings) -> str:
    """The ratings as the question's evidence, in one paragraph, with the answer they point
    to."""
    parts = [
        f"From the ratings of the two teams' {counted(r.materials, 'material')}: "
        f"{r.unused_or_not_useful} of {r.materials} unused or not useful "
        f"({r.unrated} nobody has rated, {r.not_useful} rated not useful, 2 or less of 5)"
    ]
    if r.objections:
        shown = "; ".join(quoted(o, 80) for o in r.objections[:QUOTED])
        more = f" and {len(r.objections) - QUOTED} more" if len(r.objections) > QUOTED else ""
        parts.append(
            f"{counted(len(r.objections), 'rating names an objection', 'ratings name objections')}"
            f" the material does not answer: {shown}{more}"
        )
    gap = points_to_gap(check, r)
    if gap is None:
        head = "; ".join(parts)
        return (
            f"{head}. Too little to go on yet (at least {check.min_materials} materials and "
            "one rating are needed)."
        )
    limit = f"{check.unused_above * 100:.0f}%"
    verdict = "more" if gap else "no more"
    return (
        "; ".join(parts)
        + f". That is {verdict} than {limit} of them, so the ratings point to the answer "
        f"“{proposed_answer(q, gap)}”."
    )


def evaluate_material_questions(
    session: Session, cycle: Cycle, *, record_gaps: bool = True
) -> list[Gap]:
    """Give each Identify question with a ``materials`` check the ratings as evidence (while it
    is unanswered) and, with ``record_gaps``, record its gap when they point to it. Returns
    the gaps recorded or already there. Nothing without an agreement, materials or ratings."""
    if cycle.phase is not Phase.IDENTIFY:
        return []
    questions = [q for q in spec(cycle).phase(Phase.IDENTIFY).questions if q.materials]
    if not questions:
        return []
    agreement = agreements.agreement_of(session, cycle)
    if agreement is None:
        return []
    r = ratings_of(session, agreement.id)
    if r.ratings == 0:
        return []
    items = {
        i.key: i
        for i in session.scalars(
            select(ChecklistItem).where(
                ChecklistItem.cycle_id == cycle.id, ChecklistItem.phase == Phase.IDENTIFY
            )
        )
    }
    found: list[Gap] = []
    for q in questions:
        assert q.materials is not None and q.gap is not None
        evidence = describe(q, q.materials, r)
        item = items.get(q.key)
        if item is not None and item.answer is None and item.evidence != evidence:
            item.evidence = evidence  # what the person answering sees, as the ratings change
        if not record_gaps or not points_to_gap(q.materials, r):
            continue
        gap, _ = add_gap(
            session,
            cycle,
            GapCreate(
                key=f"checklist:{q.key}",
                title=q.gap.title,
                description=q.text,
                category=q.gap.category,
                root_cause=q.gap.root_cause,
                severity=q.gap.severity,
                evidence=evidence,
                source=GapSource.METRIC,
                source_ref=f"materials:{agreement.id}",
            ),
            None,
        )
        found.append(gap)
    session.flush()
    return found


def rate(
    session: Session, material: Material, data: campaigns.RatingCreate, actor: Person
) -> MaterialRating:
    """A person rates a material (:func:`models.services.campaigns.rate`); the evidence of the
    content questions of the pair's cycles in Identify is brought up to date at once (the gap
    itself is recorded when Identify's analysis refreshes, as the numbers' are: one early
    rating does not raise a gap the next ones would disprove)."""
    row = campaigns.rate(session, material, data, actor)
    session.flush()
    campaign = session.get(Campaign, material.campaign_id)
    agreement = session.get(Agreement, campaign.agreement_id)  # type: ignore[union-attr]
    a, b = agreement.team_ids  # type: ignore[union-attr]
    in_both = (
        select(CycleTeam.cycle_id)
        .where(CycleTeam.team_id == a)
        .intersect(select(CycleTeam.cycle_id).where(CycleTeam.team_id == b))
    )
    for cycle in session.scalars(
        select(Cycle).where(Cycle.phase == Phase.IDENTIFY, Cycle.id.in_(in_both))
    ):
        if agreements.pair_of(cycle) == agreement.team_ids:  # type: ignore[union-attr]
            evaluate_material_questions(session, cycle, record_gaps=False)
    return row
