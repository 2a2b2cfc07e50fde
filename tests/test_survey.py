"""The recap survey: small teams can use it, and no answer can be unmasked.

Results show once the whole cycle has k answers (the playbook's ``survey_min_answers``, 3 by
default) and are published in batches of at least k, never one answer at a time. The
difference attack (read the results, let one person answer anonymously, read again) tells
nothing: not through the results, not through the timeline, not through the API.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from models import phases
from models.db import Store
from models.enums import Phase
from models.schemas import PersonCreate, RetrospectiveRecord, SurveyRespond
from models.services import people, recap, recap_views, views
from models.tables import Event, SurveyParticipation, SurveyResponse
from tests.test_advance_everywhere import Surfaces, surfaces  # noqa: F401 - a fixture
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
    advance,
    answer_all,
    register_yaml,
    start,
    to_recap,
)

RULE = (
    "Results appear once 3 people have answered, and then in batches: each time 3 more "
    "answers are in, they join the results together, never one at a time. Answers still "
    "waiting for their batch when the cycle closes are counted but never shown. Team averages "
    "show only when every batch held none or at least 3 answers from each team. Comments are "
    "shown without names, in alphabetical order."
)


def answer(store: Store, cycle_id: int, who: str, score: int, comment: str | None = None,
           anonymous: bool = True) -> None:  # fmt: skip
    with store.unit_of_work() as s:
        data = SurveyRespond(score=score, comment=comment, anonymous=anonymous)
        recap.respond(s, C(s, cycle_id), data, P(s, who))


def in_recap(store: Store, **kw: Any) -> int:
    cycle_id = start(store, **kw)
    to_recap(store, cycle_id)
    return cycle_id


def survey_events(store: Store, cycle_id: int) -> list[Event]:
    with store.unit_of_work() as s:
        return list(
            s.scalars(
                select(Event)
                .where(Event.cycle_id == cycle_id, Event.verb.like("survey.%"))
                .order_by(Event.id)
            ).unique()
        )


def test_answers_are_published_in_batches_and_participation_in_name_order(org: Store) -> None:
    cycle_id = in_recap(org)
    answer(org, cycle_id, SID, 4, "Better", anonymous=False)
    answer(org, cycle_id, MEG, 2, "Meh")
    with org.unit_of_work() as s:
        summary = recap.summarize_survey(s, C(s, cycle_id), P(s, MAX))
        assert (summary.responses, summary.published, summary.shown) == (2, 0, False)
        assert (summary.mean, summary.distribution, summary.comments) == (None, {}, [])
        assert summary.note == RULE
        # the answers are stored: the named one with its author, the anonymous one without
        # one and with no time at all; who took part is kept apart
        rows = s.scalars(select(SurveyResponse)).all()
        assert {(r.score, r.respondent_id is None) for r in rows} == {(4, False), (2, True)}
        assert not {"created_at", "at", "answered_at"} & set(SurveyResponse.__table__.c.keys())
        assert s.scalar(select(func.count()).select_from(SurveyParticipation)) == 2
    assert survey_events(org, cycle_id) == []  # nothing tells who answered when
    answer(org, cycle_id, LEE, 3)
    [published] = survey_events(org, cycle_id)
    assert published.verb == "survey.published" and published.actor is None
    assert published.after == {
        "batch": 1,
        "answers": 3,
        "people": ["Lee Saleslead", "Meg Member", "Sid Member"],  # in name order, no scores
    }
    with org.unit_of_work() as s:
        summary = recap.summarize_survey(s, C(s, cycle_id), P(s, MAX))
    assert (summary.published, summary.mean, summary.comments) == (3, 3.0, ["Better", "Meh"])


def test_the_difference_attack_attributes_nothing(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    """Read everything a person can read; let Sam answer anonymously; read it all again. The
    only difference is that one more person answered, which was no secret. (Before: the
    results showed as soon as every team had three answers, and the newest timeline entry
    named Sam.)"""
    cycle_id = in_recap(org)
    with org.unit_of_work() as s:
        for name, email in (("Mo Member", "mo@acme.test"), ("Ann Member", "ann@acme.test")):
            people.create_person(s, PersonCreate(name=name, email=email, team="sales"))
    sales = ((SID, 4, "Hand-offs are faster"), (LEE, 3, "ok"), (MAX, 4, None))
    marketing = ((MEG, 2, None), (MIA, 3, "The digest helps"), (LOU, 2, None))
    for who, score, comment in (*sales, *marketing):
        answer(org, cycle_id, who, score, comment)

    def read() -> dict[str, Any]:
        with org.unit_of_work() as s:
            out: dict[str, Any] = {
                "summary": recap.summarize_survey(s, C(s, cycle_id), P(s, MAX)).model_dump(),
                "page_view": vars(recap_views.survey(s, C(s, cycle_id), P(s, MAX))),
                "facts": recap.cycle_facts(s, C(s, cycle_id), TODAY),
                "timeline": [
                    (e.id, e.verb, e.actor_id, e.after)
                    for e in views.timeline(s, C(s, cycle_id), limit=500)[0]
                ],
            }
        out["api_survey"] = surfaces.api(MAX, "GET", f"/cycles/{cycle_id}/survey").json()
        api_recap = surfaces.api(MAX, "GET", f"/cycles/{cycle_id}/recap").json()
        out["api_recap"] = {k: v for k, v in api_recap.items() if k != "kpis"}
        out["api_events"] = surfaces.api(MAX, "GET", f"/cycles/{cycle_id}/events?limit=200").json()
        page = surfaces.browser(MAX).get(f"/cycles/{cycle_id}/recap").text
        out["page"] = re.sub(r'name="csrf" value="[^"]*"', "", page)
        out["timeline_page"] = surfaces.browser(MAX).get(f"/cycles/{cycle_id}/timeline").text
        return out

    before = read()
    assert before["summary"]["mean"] == 3.0 and before["summary"]["teams_shown"]
    answer(org, cycle_id, SAM, 5, "Sam's secret comment")
    after = read()

    def without_counts(d: Any) -> Any:
        """What may change: how many answered (taking part is no secret)."""
        text = repr(d)
        return re.sub(r"'(answered|responses|survey_responses)': \d+", "", text)

    for key in (
        "summary",
        "page_view",
        "facts",
        "api_survey",
        "api_recap",
        "timeline",
        "api_events",
    ):
        assert without_counts(after[key]) == without_counts(before[key]), key
    assert after["timeline_page"] == before["timeline_page"]
    assert "Sam's secret comment" not in after["page"]

    def results(page: str) -> str:
        section = page.split('id="survey-results"')[1].split("</section>")[0]
        return re.sub(r"chart-[a-z]+\d+", "chart", section)  # the page's running chart ids

    assert results(after["page"]) == results(before["page"])  # the charts did not move
    assert after["summary"]["responses"] == 7 and after["summary"]["published"] == 6

    # two more answers: the three join the results together, and the timeline names the
    # three who took part in name order: Sam's answer is one of three, no more
    answer(org, cycle_id, "mo@acme.test", 1)
    assert read()["summary"]["published"] == 6
    answer(org, cycle_id, "ann@acme.test", 3)
    final = read()
    assert final["summary"]["published"] == 9 and final["summary"]["teams_shown"]
    assert final["timeline"][0][3] == {
        "batch": 3,
        "answers": 3,
        "people": ["Ann Member", "Mo Member", "Sam Sales"],
    }


def test_a_small_team_sees_its_results_and_team_averages_only_when_no_team_is_singled_out(
    org: Store,
) -> None:
    """Two sales answers and one marketing answer: the cycle has three, so the results show;
    the teams' averages do not (marketing's would be one person's score)."""
    cycle_id = in_recap(org)
    answer(org, cycle_id, SID, 5, "zebra: sales likes it")
    answer(org, cycle_id, LEE, 3, "Alpha: sales meh")
    answer(org, cycle_id, MEG, 1, "marketing unhappy")
    with org.unit_of_work() as s:
        c = C(s, cycle_id)
        for_manager = recap.summarize_survey(s, c, P(s, MAX))
        for_sales = recap.summarize_survey(s, c, P(s, SAM))
    assert for_manager.shown and for_manager.mean == 3.0 and not for_manager.teams_shown
    assert [(t.team, t.responses, t.mean) for t in for_manager.by_team] == [
        ("marketing", 1, None),
        ("sales", 2, None),
    ]
    assert for_manager.comments == [
        "Alpha: sales meh",
        "marketing unhappy",
        "zebra: sales likes it",
    ]
    # a non-manager's own team's comments would single out marketing's one answer as well
    assert for_sales.mean == 3.0 and for_sales.comments == []


def test_team_averages_show_when_every_batch_held_enough_of_each_team(org: Store) -> None:
    cycle_id = in_recap(org)
    for who, score, comment in ((SID, 5, "zebra"), (LEE, 3, "Alpha"), (MAX, 4, None)):
        answer(org, cycle_id, who, score, comment)  # batch 1: three sales answers
    for who, score, comment in ((MEG, 2, "marketing unhappy"), (MIA, 4, None), (LOU, 3, "")):
        answer(org, cycle_id, who, score, comment)  # batch 2: three marketing answers
    with org.unit_of_work() as s:
        c = C(s, cycle_id)
        summary = recap.summarize_survey(s, c, P(s, SAM))
        for_marketing = recap.summarize_survey(s, c, P(s, LOU))
    assert summary.teams_shown and summary.mean == 3.5
    assert summary.distribution == {1: 0, 2: 1, 3: 2, 4: 2, 5: 1}
    assert [(t.team, t.responses, t.mean) for t in summary.by_team] == [
        ("marketing", 3, 3.0),
        ("sales", 3, 4.0),
    ]
    assert summary.comments == ["Alpha", "zebra"]  # their own team's, alphabetical
    assert for_marketing.comments == ["marketing unhappy"]


def test_answers_waiting_when_the_cycle_closes_are_never_shown(org: Store) -> None:
    cycle_id = in_recap(org)
    for who, score in ((SID, 4), (MEG, 2), (LEE, 3), (MIA, 1)):
        answer(org, cycle_id, who, score)
    with org.unit_of_work() as s:
        answer_all(s, cycle_id, Phase.RECAP)
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        phases.advance(s, C(s, cycle_id), P(s, SAM), today=TODAY)
        summary = recap.summarize_survey(s, C(s, cycle_id), P(s, MAX))
    assert (summary.responses, summary.published, summary.mean) == (4, 3, 3.0)
    closed = survey_events(org, cycle_id)[-1]
    assert closed.verb == "survey.closed"
    assert closed.after == {"unpublished": 1, "people": ["Mia Marketing"]}


def test_the_playbook_sets_how_many_answers_make_a_batch(org: Store) -> None:
    register_yaml(
        org,
        """
name: pairs
version: 1
title: Pairs
settings: {survey_min_answers: 2, manager_signoff_required: false}
phases: {identify: {}, plan: {}, execute: {}, recap: {}}
""",
    )
    cycle_id = start(org, "pairs")
    with org.unit_of_work() as s:
        for _ in range(3):
            advance(s, cycle_id)
    answer(org, cycle_id, SID, 4)
    answer(org, cycle_id, MEG, 2)
    with org.unit_of_work() as s:
        summary = recap.summarize_survey(s, C(s, cycle_id), P(s, MAX))
    assert (summary.published, summary.mean, summary.min_answers) == (2, 3.0, 2)
    assert summary.note.startswith("Results appear once 2 people have answered")


def test_the_recap_page_states_the_rule(org: Store, surfaces: Surfaces) -> None:  # noqa: F811
    cycle_id = in_recap(org)
    answer(org, cycle_id, SID, 4)
    page = surfaces.browser(SAM).get(f"/cycles/{cycle_id}/recap").text
    assert "1 person has answered so far: the results appear once 3 have." in page
    assert RULE in page
    assert "it joins the results together with at least 2 others" in page  # the form says so
    for who, score in ((MEG, 2), (LEE, 3), (MIA, 5)):
        answer(org, cycle_id, who, score)
    page = surfaces.browser(SAM).get(f"/cycles/{cycle_id}/recap").text
    assert "from 3 answers; 1 more waits for the next batch" in page
    assert "(s)" not in re.sub(r"<[^>]+>", "", page)


def test_two_answers_at_once_never_make_a_batch_of_one(org: Store) -> None:
    """Two people answer at the same moment while two answers wait: whatever the order, every
    published batch holds at least three answers."""
    import threading

    from models.db import make_engine

    cycle_id = in_recap(org)
    answer(org, cycle_id, SID, 4)
    answer(org, cycle_id, MEG, 2)
    engine = make_engine(org.engine.url.render_as_string(hide_password=False))
    many = Store(engine)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(who: str) -> None:
        try:
            with many.unit_of_work() as s:
                cycle, person = C(s, cycle_id), P(s, who)
                barrier.wait(timeout=30)
                recap.respond(s, cycle, SurveyRespond(score=3, anonymous=True), person)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(who,)) for who in (LEE, MIA)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        engine.dispose()
    assert errors == []
    with org.unit_of_work() as s:
        sizes = dict(
            s.execute(
                select(SurveyResponse.batch, func.count())
                .where(SurveyResponse.cycle_id == cycle_id)
                .group_by(SurveyResponse.batch)
            ).all()
        )
    assert sum(sizes.values()) == 4
    assert all(n >= 3 for batch, n in sizes.items() if batch is not None), sizes
