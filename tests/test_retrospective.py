"""The draft retrospective is a draft until a point person saves it, its numbers are the
cycle's as they are now, and only a saved one can be signed off."""

from __future__ import annotations

from models.db import Store
from models.errors import InvalidInput
from models.phases import recap as recap_phase
from models.schemas import PersonCreate, RetrospectiveRecord, SurveyRespond
from models.services import cycles, people, recap
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
from tests.test_cli import cli
from tests.test_services import (
    LEE,
    LOU,
    MAX,
    MEG,
    MIA,
    SAM,
    SID,
    TODAY,
    C,
    P,
    refused,
    start,
    to_recap,
)


def drafted_then_answered(store: Store) -> int:
    """In Recap with the draft made when it opened (no answers then), then seven answers."""
    cycle_id = start(store)
    to_recap(store, cycle_id)
    with store.unit_of_work() as s:
        recap_phase.build_recap(s, C(s, cycle_id), TODAY)
        assert recap.get_retrospective(s, C(s, cycle_id)).facts["survey_responses"] == 0
        people.create_person(s, PersonCreate(name="Ann", email="ann@acme.test", team="sales"))
        for i, who in enumerate((SID, MEG, LEE, LOU, MIA, MAX, "ann@acme.test")):
            data = SurveyRespond(score=3 + i % 2, anonymous=True)
            recap.respond(s, C(s, cycle_id), data, P(s, who))
    return cycle_id


def test_the_drafts_numbers_are_the_cycles_as_they_are_now(org: Store) -> None:
    cycle_id = drafted_then_answered(org)
    with org.unit_of_work() as s:
        cycle = C(s, cycle_id)
        facts = recap.current_facts(s, cycle, recap.get_retrospective(s, cycle))
    assert (facts["survey_responses"], facts["survey_published"]) == (7, 6)
    shown = cli("retro", "show", cycle_id).stdout
    assert "7 survey answers (mean 3.5 of the 6 published)" in shown
    assert "a draft made from the cycle's facts" in shown
    with org.unit_of_work() as s:  # the recap refreshes its own draft with them
        report = recap_phase.build_recap(s, C(s, cycle_id), TODAY)
        retro = recap.get_retrospective(s, C(s, cycle_id))
    assert retro.summary.endswith("survey mean 3.5 of 5 from 6 answers (1 more waiting).")
    assert "(s)" not in retro.summary
    assert report.headline.endswith(
        "survey mean 3.5 of 5 from 6 answers (1 more waiting); 0 growth areas"
    )


def test_only_a_saved_retrospective_is_signed_off(org: Store) -> None:
    cycle_id = drafted_then_answered(org)
    refused(
        org,
        InvalidInput,
        rf"^the retrospective of cycle {cycle_id} is still the draft made from the cycle's "
        r"facts: a point person reviews and saves it before a manager signs it off$",
        lambda s: recap.sign_off(s, C(s, cycle_id), P(s, MAX)),
    )
    with org.unit_of_work() as s:
        assert cycles.readiness(s, C(s, cycle_id), TODAY).blockers[-1] == (
            "the draft retrospective is not saved by a point person yet"
        )
        recap.record_retrospective(
            s, C(s, cycle_id), RetrospectiveRecord(summary="Ours"), P(s, SAM)
        )
        signed = recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        assert signed.recorded_by.email == SAM and signed.facts["survey_responses"] == 7


def test_the_page_says_it_is_a_draft_and_offers_no_sign_off(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    cycle_id = drafted_then_answered(org)
    page = surfaces.browser(MAX).get(f"/cycles/{cycle_id}/recap").text
    assert "A draft retrospective is ready, made from what happened in the cycle" in page
    assert "Sign off the recap" not in page and "waiting for a manager" not in page
    own = surfaces.browser(SAM).get(f"/cycles/{cycle_id}/recap").text
    assert "Review and save the draft retrospective" in own
