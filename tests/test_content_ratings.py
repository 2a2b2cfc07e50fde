"""Content questions answered from the materials' ratings (issue 20): "Is much of the content
marketing creates left unused by sales?" gets the ratings of the team pair's materials as its
evidence and the answer they point to; when that answer raises the question's gap, Identify
records it with the ratings as evidence. No ratings: nothing is proposed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models import phases
from models.base import utcnow
from models.enums import GapSource, Phase
from models.phases import content, identify
from models.playbook import MaterialCheck
from models.schemas import ChecklistAnswer, CycleCreate
from models.services import agreements, campaigns
from models.services.campaigns import CampaignCreate, MaterialCreate, RatingCreate
from models.services.common import person_by_email
from models.tables import ChecklistItem, Cycle, Gap

PLAYBOOK = "campaign-content-alignment"
KEY = "checklist:content_unused"


def _p(s, name: str):  # noqa: ANN001, ANN202
    return person_by_email(s, f"{name}@acme.test")


def _start(s) -> Cycle:  # noqa: ANN001
    from aligncycle.web import seed

    seed.seed_org(s)
    today = utcnow().date()
    c = phases.start_cycle(
        s,
        CycleCreate(
            playbook=PLAYBOOK,
            title="Content, spring",
            period_start=today,
            period_end=today + timedelta(days=42),
            point_persons=["mia@acme.test"],
        ),
        _p(s, "sam"),
    )
    s.flush()
    assert c.phase is Phase.IDENTIFY
    return c


def _materials(s, c: Cycle, n: int) -> list:  # noqa: ANN001
    """``n`` materials marketing made for one campaign of the pair."""
    agreement = agreements.agreement_of(s, c)
    camp = campaigns.add_campaign(
        s, agreement, CampaignCreate(name="Spring webinars"), _p(s, "lou")
    )
    s.flush()
    made = []
    for i in range(n):
        made.append(
            campaigns.add_material(
                s,
                camp,
                MaterialCreate(title=f"Deck {i}", kind="deck", owner="meg@acme.test"),
                _p(s, "lou"),
            )
        )
    s.flush()
    return made


def _item(s, c: Cycle) -> ChecklistItem:  # noqa: ANN001
    return s.scalar(
        select(ChecklistItem).where(
            ChecklistItem.cycle_id == c.id, ChecklistItem.key == "content_unused"
        )
    )


def _gap(s, c: Cycle) -> Gap | None:  # noqa: ANN001
    return s.scalar(select(Gap).where(Gap.cycle_id == c.id, Gap.key == KEY))


def test_ratings_answer_the_content_question_and_raise_its_gap(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c = _start(s)
        decks = _materials(s, c, 4)
        assert content.evaluate_material_questions(s, c) == []  # no rating: nothing proposed
        assert _item(s, c).evidence is None and _gap(s, c) is None

        sid = _p(s, "sid")  # sales rates marketing's decks, through the phases' verb
        content.rate(s, decks[0], RatingCreate(usefulness=4), sid)
        item = _item(s, c)
        assert "1 rated not useful" not in item.evidence
        assert "3 of 4 unused or not useful (3 nobody has rated, 0 rated not useful" in (
            item.evidence
        )
        assert _gap(s, c) is None  # a rating brings the evidence up to date, at once ...
        assert [g.key for g in identify.raise_gaps(s, c)] == [KEY]  # ... the analysis the gap

    with store.unit_of_work() as s:
        c = s.scalar(select(Cycle))
        gap = _gap(s, c)
        assert gap.title == "Sales does not use the content marketing creates"
        assert gap.source is GapSource.METRIC and gap.reported_by is None
        assert "the ratings point to the answer “yes”" in gap.evidence


def test_the_evidence_names_the_objections_and_the_calm_answer(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c = _start(s)
        decks = _materials(s, c, 3)
        sid, sam = _p(s, "sid"), _p(s, "sam")
        content.rate(s, decks[0], RatingCreate(usefulness=5), sid)
        content.rate(s, decks[1], RatingCreate(usefulness=4), sid)
        content.rate(
            s,
            decks[2],
            RatingCreate(usefulness=2, objections="No answer to “we already use a competitor”"),
            sid,
        )
        content.rate(s, decks[2], RatingCreate(usefulness=2), sam)  # an average of 2
        evidence = _item(s, c).evidence
        assert "1 of 3 unused or not useful (0 nobody has rated, 1 rated not useful" in evidence
        assert "1 rating names an objection the material does not answer" in evidence
        assert "we already use a competitor" in evidence
        assert "no more than 50% of them, so the ratings point to the answer “no”" in evidence
        identify.raise_gaps(s, c)
        assert _gap(s, c) is None  # the ratings point to the calm answer: no gap


def test_an_answered_question_keeps_its_answer_and_evidence(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c = _start(s)
        decks = _materials(s, c, 3)
        item = _item(s, c)
        phases.answer(
            s,
            item,
            ChecklistAnswer(answer="no", evidence="We asked the reps", expected_version=1),
            _p(s, "sam"),
        )
        content.rate(s, decks[0], RatingCreate(usefulness=1), _p(s, "sid"))
        assert _item(s, c).evidence == "We asked the reps" and _item(s, c).answer == "no"
        # the analysis still records the ratings' gap for people to decide (as the numbers')
        identify.raise_gaps(s, c)
        assert "the ratings point to the answer “yes”" in _gap(s, c).evidence


def test_too_few_materials_are_not_judged(store) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        c = _start(s)
        decks = _materials(s, c, 2)
        content.rate(s, decks[0], RatingCreate(usefulness=1), _p(s, "sid"))
        assert "Too little to go on yet (at least 3 materials" in _item(s, c).evidence
        identify.raise_gaps(s, c)
        assert _gap(s, c) is None


def test_a_materials_check_needs_a_gap_rule_and_reads_percentages() -> None:
    from models.playbook import Question

    assert MaterialCheck(unused_above="40%").unused_above == pytest.approx(0.4)
    with pytest.raises(ValueError, match="needs the 'gap' it records"):
        Question(key="x", text="Is content unused?", materials=MaterialCheck())
