"""The recap's trend: finished cycles of the same playbook run by exactly the same teams, with
labels that never overlap."""

from __future__ import annotations

import re

from models.db import Store
from models.enums import Phase
from models.schemas import PersonCreate, RetrospectiveRecord, SurveyRespond, TeamCreate
from models.services import people, recap, recap_views
from tests.test_services import (
    HANDOFF,
    MAX,
    MEG,
    SAM,
    SID,
    TINY,
    C,
    P,
    advance,
    answer_all,
    register_yaml,
    start,
)


def close(store: Store, cycle_id: int, answers: tuple[str, ...] = ()) -> None:
    """Walk a cycle to closed (a saved retrospective; no sign-off needed for ``tiny``)."""
    with store.unit_of_work() as s:
        for _ in range(3):
            answer_all(s, cycle_id, C(s, cycle_id).phase)
            advance(s, cycle_id, override_reason="moving on")
        for who in answers:
            recap.respond(s, C(s, cycle_id), SurveyRespond(score=4), P(s, who))
        answer_all(s, cycle_id, Phase.RECAP)
        recap.record_retrospective(s, C(s, cycle_id), RetrospectiveRecord(), P(s, SAM))
        if C(s, cycle_id).playbook.name == HANDOFF:
            recap.sign_off(s, C(s, cycle_id), P(s, MAX))
        advance(s, cycle_id)


def test_trends_are_finished_cycles_of_the_same_playbook_and_the_same_teams(org: Store) -> None:
    register_yaml(org, TINY)
    with org.unit_of_work() as s:
        people.create_team(s, TeamCreate(key="support", name="Support"))
        people.create_person(
            s,
            PersonCreate(
                name="Pia Support", email="pia@acme.test", team="support", role="point_person"
            ),
        )
    first = start(org, "tiny", title="First")
    close(org, first, answers=(SID, MEG, MAX))
    other_playbook = start(org, HANDOFF, title="Other playbook")
    close(org, other_playbook)
    three_teams = start(
        org,
        "tiny",
        title="Three teams",
        teams=["sales", "marketing", "support"],
        point_persons=("mia@acme.test", "pia@acme.test"),
    )
    close(org, three_teams)
    second = start(org, "tiny", title="Second")
    close(org, second)
    running = start(org, "tiny", title="Running")
    with org.unit_of_work() as s:
        shown = recap_views.trends(s, C(s, running), P(s, MAX))
        of_second = recap_views.trends(s, C(s, second), P(s, MAX))
    assert [t.title for t in shown] == ["First", "Second"]  # not itself: it is still running
    assert [t.title for t in of_second] == ["First", "Second"]
    assert shown[0].survey_mean == 4.0 and shown[1].survey_mean is None


def svg_labels(svg: str) -> list[tuple[float, float, str, str]]:
    """(x, y, anchor, text) of the axis labels of a line chart."""
    out = []
    axis = r'<text x="([\d.]+)" y="(\d+)" text-anchor="(\w+)" font-size="11" fill="#334155">'
    for x, y, anchor, inner in re.findall(axis + r"(.*?)</text>", svg):
        text = re.sub(r"<title>.*?</title>", "", inner)
        out.append((float(x), float(y), anchor, text))
    return out


def extent(x: float, anchor: str, text: str) -> tuple[float, float]:
    from aligncycle.web.charts import LABEL_CHAR_PX

    w = len(text) * LABEL_CHAR_PX
    return {"start": (x, x + w), "end": (x - w, x), "middle": (x - w / 2, x + w / 2)}[anchor]


def test_trend_labels_never_overlap(org: Store) -> None:
    from aligncycle.web import charts

    for n in (2, 3, 5, 8):
        titles = [f"Q{i} sales and marketing hand-off alignment" for i in range(n)]
        svg = str(
            charts.lines(
                titles, [charts.Series("Completion", [50.0] * n, "blue")], title="t", max_value=100
            )
        )
        labels = svg_labels(svg)
        assert len(labels) == n
        rows: dict[float, list[tuple[float, float]]] = {}
        for x, y, anchor, text in labels:
            rows.setdefault(y, []).append(extent(x, anchor, text))
        for spans in rows.values():
            spans.sort()
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), (n, spans)
        assert all(f"<title>{t}</title>" in svg for t in titles if t not in svg.split("<desc")[0])
    short = str(
        charts.lines(["Q1", "Q2"], [charts.Series("c", [1.0, 2.0])], title="t", max_value=5)
    )
    assert [t for *_, t in svg_labels(short)] == ["Q1", "Q2"]
