"""The recap as the web shows it: one model for the recap page, the printable report, the CSV
export and the API; its charts; and the CSV rows."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.responses import Response
from sqlalchemy.orm import Session

from aligncycle.web import charts
from aligncycle.web.pages import (
    CONFIDENCE_LABELS,
    DECISION_LABELS,
    STATUS_LABELS,
    MoneyFormat,
    label,
)
from models.enums import (
    GapDecision,
)
from models.funnel import baseline, measure
from models.funnel.kpis import KPIS
from models.services import (
    recap,
    recap_views,
)
from models.services import views as v
from models.tables import ActionItem, Cycle, Person
from models.words import counted, day, value_word


def recap_model(s: Session, cycle: Cycle, me: Person) -> dict[str, Any]:
    """Everything the recap shows (page, printable report, CSV), charts included."""
    facts = recap.cycle_facts(s, cycle)
    retro = recap_views.retrospective(s, cycle)
    survey = recap_views.survey(s, cycle, me)
    trend = recap_views.trends(s, cycle, me)
    kpis = recap_views.kpis(s, cycle)
    measured = None
    if baseline.has_funnel_data(s):  # targets and where feelings and numbers disagree
        measured = measure.measure_recap(s, cycle, read_only=True)
    return {
        "measured": measured,
        "facts": facts,
        "retro": retro,
        "survey": survey,
        "trend": trend,
        "kpis": kpis,
        "charts": recap_charts(facts, survey, trend, kpis),
    }


def recap_charts(
    facts: dict, survey: recap_views.SurveyView, trend: list, kpis: list
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total = facts["actions_total"]
    if total:
        done = facts["actions_done"]
        pct = round(100 * done / max(1, total - facts["actions_dropped"]))
        out["completion"] = charts.donut(
            [
                charts.Bar("Done", done, "green"),
                charts.Bar("Not finished", facts["actions_unfinished"], "amber"),
                charts.Bar("Dropped", facts["actions_dropped"], "grey"),
                *(
                    [charts.Bar("Carried over", facts["actions_carried"], "blue")]
                    if facts.get("actions_carried")
                    else []
                ),
            ],
            title="Action completion",
            center=f"{pct}%",
            caption="done",
        )
        out["late"] = facts["actions_late"]
    decisions = facts.get("gaps_by_decision") or {}
    if decisions:
        colors = {"accepted": "green", "deferred": "amber", "rejected": "grey", "open": "red"}
        out["gaps"] = charts.hbars(
            [
                charts.Bar(DECISION_LABELS[GapDecision(k)], n, colors.get(k, "blue"))
                for k, n in sorted(decisions.items())
            ],
            title="Gaps by decision",
        )
    causes = facts.get("gaps_by_root_cause") or {}
    if causes:
        out["causes"] = charts.hbars(
            [charts.Bar(label(k), n, "violet") for k, n in sorted(causes.items())],
            title="Gaps by root cause",
        )
    if survey.shown:
        shades = {1: "red", 2: "amber", 3: "grey", 4: "teal", 5: "green"}
        out["survey"] = charts.columns(
            [charts.Bar(str(k), survey.distribution.get(k, 0), shades[k]) for k in range(1, 6)],
            title="How people feel about the process (1 = poor, 5 = great)",
        )
        teams = [t for t in survey.by_team if t["mean"] is not None]
        if teams:
            out["survey_teams"] = charts.hbars(
                [
                    charts.Bar(
                        t["name"], t["mean"], "teal", f"({counted(t['published'], 'answer')})"
                    )
                    for t in teams
                ],
                title="Average score by team",
                max_value=5,
            )
    if len(trend) >= 2:
        out["trend"] = charts.lines(
            [t.title for t in trend],
            [charts.Series("Action completion %", [t.completion for t in trend], "blue")],
            title="Action completion across cycles",
            max_value=100,
            unit="%",
        )
        if any(t.survey_mean is not None for t in trend):
            out["trend_survey"] = charts.lines(
                [t.title for t in trend],
                [charts.Series("Survey average (1–5)", [t.survey_mean for t in trend], "teal")],
                title="Survey average across cycles",
                max_value=5,
            )
    if kpis:
        out["kpis"] = charts.before_after(
            [
                (k.label, k.before, k.after, k.before_shown, k.after_shown, k.higher_is_better)
                for k in kpis
            ],
            title="KPIs before and after the cycle",
        )
    return out


#: The export's columns: one row per gap and per action item (then the retrospective's lines,
#: the survey's comments and the targets), each in the words of the recap page.
CSV_HEADER = [
    "Kind",
    "Title",
    "Decision or status",
    "Owner",
    "Counterpart",
    "Due date",
    "Confidence",
    "Priority",
    "Area",
    "Root cause",
    "Severity",
    "Gaps it addresses",
    "Reason or latest note",
]


def _all_actions(s: Session, cycle: Cycle) -> list[ActionItem]:
    out: list[ActionItem] = []
    while True:
        rows, total = v.actions(s, cycle, limit=500, offset=len(out))
        out += rows
        if not rows or len(out) >= total:
            return out


def csv_rows(s: Session, cycle: Cycle, model: dict[str, Any]) -> list[list[Any]]:
    """The cycle as a table: a header, a row per gap and per action item, then the
    retrospective, the survey's comments and the targets, one row each."""
    rows: list[list[Any]] = [CSV_HEADER]
    blank = [""] * (len(CSV_HEADER) - 2)

    def line(kind: str, title: str, note: str = "") -> list[Any]:
        return [kind, title, *blank[:-1], note]

    for g in v.gaps(s, cycle):
        rows.append(
            [
                "Gap",
                g.title,
                DECISION_LABELS[g.decision],
                "",
                "",
                "",
                "",
                "",
                value_word(g.category).capitalize(),
                value_word(g.root_cause).capitalize(),
                value_word(g.severity).capitalize(),
                "",
                g.decision_reason or "",
            ]
        )
    actions = _all_actions(s, cycle)
    latest = v.checkins_by_action(s, [a.id for a in actions])
    for a in actions:
        notes = [c.note for c in latest.get(a.id, []) if c.note]
        rows.append(
            [
                "Action item",
                a.title,
                STATUS_LABELS[a.status],
                a.owner.name if a.owner else "",
                a.counterpart.name if a.counterpart else "",
                day(a.due_date) if a.due_date else "",
                CONFIDENCE_LABELS[a.confidence],
                value_word(a.priority).capitalize(),
                "",
                "",
                "",
                "; ".join(g.title for g in a.gaps),
                notes[0] if notes else "",
            ]
        )
    retro = model["retro"]
    if retro is not None:
        rows += [line("Improvement", t) for t in retro.improvements]
        rows += [line("Growth area", t) for t in retro.growth_areas]
        rows += [line("Next time", t) for t in retro.next_time]
        if retro.summary:
            rows.append(line("Summary", retro.summary))
    survey = model["survey"]
    if survey.shown:
        rows += [line("Survey comment", c) for c in survey.comments]
    for k in model["kpis"]:
        said = f"before the cycle {k.before_shown}, after it {k.after_shown}"
        rows.append(line("KPI", k.label, said))
    measured = model.get("measured")
    fmt = MoneyFormat(s)
    for t in measured.targets if measured else []:
        result = {True: "reached", False: "not reached", None: "no data yet"}[t.achieved]
        rows.append(
            line(
                "Target",
                t.action_title,
                f"{KPIS[t.kpi].title}: baseline {fmt(t.kpi, t.baseline)}, target "
                f"{fmt(t.kpi, t.target)}, now {fmt(t.kpi, t.current)}; {result}",
            )
        )
    for d in measured.disagreements if measured else []:
        rows.append(line("Feelings and numbers disagree", d))
    return rows


def _csv_safe(value: Any) -> Any:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(s: Session, cycle: Cycle, model: dict[str, Any]) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in csv_rows(s, cycle, model):
        writer.writerow([_csv_safe(c) for c in row])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="recap-cycle-{cycle.id}.csv"'},
    )
