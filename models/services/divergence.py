"""The divergence map: question by question, rating by rating and gap by gap, where the two
teams' own answers agree and where they differ, beside the shared number where a KPI applies.

Built from :func:`models.services.team_input.team_views` only, so a team's answers appear in
the map exactly when the viewer may see them: before the reveal a viewer sees their own team's
column and the other team's status ("submitted" or not), never its answers. Every face (the
page, the CSV export, the API, the CLI) renders this one read model.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from models.alignment_tables import QUESTION, RATING
from models.enums import AnswerKind
from models.funnel import baseline
from models.funnel.kpis import KPIS, format_value
from models.services import alignment_facts as af
from models.services import team_input
from models.tables import Cycle, Person

Verdict = Literal["agree", "differ", "waiting", "compare"]
ANSWER_WORDS = {"yes": "Yes", "no": "No", "unsure": "Not sure"}
VERDICT_WORDS = {
    "agree": "The teams agree",
    "differ": "The teams differ",
    "waiting": "Waiting for both teams' answers",
    "compare": "Compare the two answers",
}


class Side(BaseModel):
    team: str
    #: False while this team's answer is hidden from the viewer.
    visible: bool
    answer: str | None = None
    #: The answer as people read it ("Yes", "Not sure", a rating "2 of 5").
    words: str | None = None
    rating: int | None = None
    comment: str | None = None
    #: Questions with a gap rule: this team's answer implies the gap.
    sees_gap: bool = False


class KpiBeside(BaseModel):
    kpi: str
    title: str
    #: The cycle's baseline value, formatted ("no data" before any numbers are imported).
    value: str
    sample_size: int = 0
    #: The question's check, in words ("it raises the gap above 24.0 h").
    check: str | None = None


class MapRow(BaseModel):
    kind: Literal["question", "rating"]
    key: str
    text: str
    sides: list[Side]
    verdict: Verdict
    #: Ratings: how far apart the two are.
    spread: int | None = None
    gap: str | None = None
    #: Gap by gap: "both", "none", or the team that alone sees the gap; None: no gap rule or
    #: not both answers visible.
    gap_seen_by: str | None = None
    kpi: KpiBeside | None = None


class TeamStatus(BaseModel):
    team: str
    mine: bool
    submitted: bool
    submitted_at: datetime | None = None
    visible: bool


class DivergenceMap(BaseModel):
    cycle_id: int
    revealed: bool
    revealed_at: datetime | None = None
    #: Revealed by a point person before every team had submitted.
    early: bool = False
    revealed_by: str | None = None
    teams: list[TeamStatus]
    questions: list[MapRow] = Field(default_factory=list)
    ratings: list[MapRow] = Field(default_factory=list)
    agree: int = 0
    differ: int = 0

    @property
    def gaps(self) -> list[MapRow]:
        """The questions with a gap rule, gap by gap."""
        return [r for r in self.questions if r.gap]


def _kpi(name: str | None, values: dict, check: str | None = None) -> KpiBeside | None:
    if name is None:
        return None
    snap = values.get(name)
    return KpiBeside(
        kpi=name,
        title=KPIS[name].title,
        value=format_value(name, snap.value if snap else None),
        sample_size=snap.sample_size if snap else 0,
        check=check,
    )


def _verdict(values: list[object | None], visible: bool) -> Verdict:
    if not visible or any(v is None for v in values):
        return "waiting"
    return "agree" if len(set(values)) == 1 else "differ"


def divergence_map(session: Session, cycle: Cycle, viewer: Person | None) -> DivergenceMap:
    """The map as ``viewer`` may see it (see the module's docstring)."""
    views = team_input.team_views(session, cycle, viewer)
    pi = team_input.settings_of(cycle)
    reveal = af.reveal_of(session, cycle.id)
    all_visible = all(v.visible for v in views)
    values = baseline.snapshots(session, cycle, baseline.BASELINE)
    out = DivergenceMap(
        cycle_id=cycle.id,
        revealed=reveal is not None or all(v.submitted for v in views),
        revealed_at=reveal.revealed_at if reveal else None,
        early=bool(reveal and reveal.early),
        revealed_by=reveal.revealed_by.name if reveal and reveal.revealed_by else None,
        teams=[
            TeamStatus(
                team=v.team,
                mine=v.mine,
                submitted=v.submitted,
                submitted_at=v.submitted_at,
                visible=v.visible,
            )
            for v in views
        ],
    )
    for q in team_input.questions(cycle):
        sides = []
        for v in views:
            row = v.rows.get((QUESTION, q.key))
            answer = row.answer if row else None
            sides.append(
                Side(
                    team=v.team,
                    visible=v.visible,
                    answer=answer,
                    words=ANSWER_WORDS.get(answer or "", answer),
                    comment=row.comment if row else None,
                    sees_gap=bool(q.gap and answer == q.gap.when.value),
                )
            )
        answers = [s.answer for s in sides]
        verdict = _verdict(answers, all_visible)
        if verdict != "waiting" and q.answer is AnswerKind.TEXT:
            verdict = "compare"
        seen_by = None
        if q.gap and verdict in ("agree", "differ"):
            seeing = [s.team for s in sides if s.sees_gap]
            seen_by = "both" if len(seeing) == len(sides) else "none" if not seeing else seeing[0]
        check = None
        if q.kpi is not None:
            check = (
                f"the numbers raise this gap {q.kpi.direction} "
                f"{format_value(q.kpi.kpi, q.kpi.threshold)}"
            )
        out.questions.append(
            MapRow(
                kind="question",
                key=q.key,
                text=q.text,
                sides=sides,
                verdict=verdict,
                gap=q.gap.title if q.gap else None,
                gap_seen_by=seen_by,
                kpi=_kpi(q.kpi.kpi if q.kpi else None, values, check),
            )
        )
    for r in pi.ratings:
        sides = []
        for v in views:
            row = v.rows.get((RATING, r.key))
            rating = row.rating if row else None
            sides.append(
                Side(
                    team=v.team,
                    visible=v.visible,
                    rating=rating,
                    words=f"{rating} of 5" if rating is not None else None,
                    comment=row.comment if row else None,
                )
            )
        ratings_given = [s.rating for s in sides]
        verdict: Verdict = "waiting"
        spread = None
        if all_visible and all(x is not None for x in ratings_given):
            spread = max(ratings_given) - min(ratings_given)  # type: ignore[type-var,operator]
            verdict = "differ" if spread >= pi.differ_by else "agree"
        out.ratings.append(
            MapRow(
                kind="rating",
                key=r.key,
                text=r.text,
                sides=sides,
                verdict=verdict,
                spread=spread,
                kpi=_kpi(r.kpi, values),
            )
        )
    rows = out.questions + out.ratings
    out.agree = sum(r.verdict == "agree" for r in rows)
    out.differ = sum(r.verdict == "differ" for r in rows)
    return out


def to_csv(m: DivergenceMap) -> str:
    """The map as a CSV file: one line a question or rating, one answer and comment column per
    team (a hidden team's columns say so), the verdict and the number beside it."""
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["What", "Question or rating"]
    for t in m.teams:
        head += [f"{t.team}: answer", f"{t.team}: comment"]
    head += ["Verdict", "Gap", "Number", "Value"]
    w.writerow(head)
    for r in m.questions + m.ratings:
        line = ["Question" if r.kind == "question" else "Rating", r.text]
        for s in r.sides:
            if s.visible:
                line += [s.words or "", s.comment or ""]
            else:
                line += ["hidden until both teams have submitted", ""]
        line += [
            VERDICT_WORDS[r.verdict],
            r.gap or "",
            r.kpi.title if r.kpi else "",
            r.kpi.value if r.kpi else "",
        ]
        w.writerow([_csv_safe(x) for x in line])
    return buf.getvalue()


def _csv_safe(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
