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
    DECISION_LABELS,
    label,
)
from models.enums import (
    GapDecision,
)
from models.funnel import baseline, measure
from models.funnel.kpis import KPIS, format_value
from models.services import (
    recap,
    recap_views,
)
from models.tables import Cycle, Person


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
                    charts.Bar(t["name"], t["mean"], "teal", f"({t['published']} answers)")
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
            [(k.label, k.before, k.after, k.unit, k.higher_is_better) for k in kpis],
            title="KPIs before and after the cycle",
        )
    return out


def csv_rows(cycle: Cycle, model: dict[str, Any]) -> list[list[Any]]:
    facts, retro, survey = model["facts"], model["retro"], model["survey"]
    rows: list[list[Any]] = [["section", "item", "value"]]
    rows += [
        ["cycle", "title", cycle.title],
        ["cycle", "phase", cycle.phase.value],
        ["cycle", "period", f"{cycle.period_start.isoformat()}..{cycle.period_end.isoformat()}"],
    ]
    for key in (
        "actions_total",
        "actions_done",
        "actions_dropped",
        "actions_unfinished",
        "actions_late",
        "gaps_total",
    ):
        rows.append(["actions" if key.startswith("actions") else "gaps", key, facts[key]])
    for k, n in sorted((facts.get("gaps_by_decision") or {}).items()):
        rows.append(["gaps", f"decision:{k}", n])
    for k, n in sorted((facts.get("gaps_by_root_cause") or {}).items()):
        rows.append(["gaps", f"root_cause:{k}", n])
    if retro is not None:
        rows += [["improvement", str(i + 1), t] for i, t in enumerate(retro.improvements)]
        rows += [["growth_area", str(i + 1), t] for i, t in enumerate(retro.growth_areas)]
        rows += [["next_time", str(i + 1), t] for i, t in enumerate(retro.next_time)]
        if retro.summary:
            rows.append(["retrospective", "summary", retro.summary])
        rows.append(
            [
                "retrospective",
                "signed_off",
                retro.signed_off_at.isoformat() if retro.signed_off_at else "",
            ]
        )
    rows.append(["survey", "responses", survey.answered])
    rows.append(["survey", "published", survey.published])
    if survey.shown:
        rows.append(["survey", "mean", survey.mean])
        rows += [["survey", f"score:{k}", n] for k, n in sorted(survey.distribution.items())]
        rows += [
            ["survey", f"team:{t['team']}", t["mean"] if t["mean"] is not None else ""]
            for t in survey.by_team
        ]
        rows += [["survey_comment", str(i + 1), c] for i, c in enumerate(survey.comments)]
    for t in model["trend"]:
        rows.append(
            [
                "trend",
                f"cycle:{t.cycle_id}:completion_pct",
                "" if t.completion is None else t.completion,
            ]
        )
        rows.append(
            [
                "trend",
                f"cycle:{t.cycle_id}:survey_mean",
                "" if t.survey_mean is None else t.survey_mean,
            ]
        )
    for k in model["kpis"]:
        rows.append(["kpi", f"{k.kpi}:before", "" if k.before is None else k.before])
        rows.append(["kpi", f"{k.kpi}:after", "" if k.after is None else k.after])
    measured = model.get("measured")
    for t in measured.targets if measured else []:
        result = {True: "reached", False: "not reached", None: "no data yet"}[t.achieved]
        rows.append(
            [
                "target",
                t.action_title,
                f"{KPIS[t.kpi].title}: baseline {format_value(t.kpi, t.baseline)}, target "
                f"{format_value(t.kpi, t.target)}, now {format_value(t.kpi, t.current)}; {result}",
            ]
        )
    for i, d in enumerate(measured.disagreements if measured else []):
        rows.append(["feelings_and_numbers_disagree", str(i + 1), d])
    return rows


def _csv_safe(value: Any) -> Any:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(cycle: Cycle, model: dict[str, Any]) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in csv_rows(cycle, model):
        writer.writerow([_csv_safe(c) for c in row])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="recap-cycle-{cycle.id}.csv"'},
    )
