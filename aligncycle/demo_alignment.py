"""The demo's last part: a third cycle of the same two teams, on ``lead-definition-and-scoring``,
where each team answers on its own first (hidden from the other until both are in) and the
reveal shows the divergence map beside the numbers; a gap of the first cycle, carried into the
second, comes up a third time and is flagged as recurring, with its history.

Runs in the demo's store through the domain (no flow needed: nothing here is scheduled).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

PLAYBOOK = "lead-definition-and-scoring"
#: Each team's own ratings of the hand-off (1 poor .. 5 very good).
RATINGS = {
    "sales": {"lead_quality": 2, "handoff_speed": 4, "feedback_on_leads": 3},
    "marketing": {"lead_quality": 4, "handoff_speed": 2, "feedback_on_leads": 2},
}
#: The questions the two teams answer differently (the rest: both "no").
SALES_YES = {"sla_missed", "rejected_leads_lost"}
MARKETING_YES = {"written_criteria", "scoring_model_trusted"}
RECURRING_TITLE = "Avoidable interruptions in the MQL-to-SQL hand-off"


def each_team_first(
    store: Any, email: Callable[[str], str], start: date, clip: Callable[[str, int], str]
) -> list[str]:
    """Start the cycle, let both teams answer and submit, and tell what the reveal shows."""
    from models import phases
    from models.enums import GapCategory, RootCause, Severity
    from models.phases import own_answers
    from models.schemas import CycleCreate, GapCreate
    from models.services import divergence, gaps, recurring, team_input
    from models.services.common import person_by_email

    lines = []
    with store.unit_of_work() as s:
        sam = person_by_email(s, email("sam"))
        cycle = phases.start_cycle(
            s,
            CycleCreate(
                playbook=PLAYBOOK,
                title="Lead quality, each team first",
                point_persons=[email("mia")],
                period_start=start,
            ),
            sam,
            today=start,
        )
        s.flush()
        for team, who, yes in (("sales", "sid", SALES_YES), ("marketing", "meg", MARKETING_YES)):
            answers = team_input.OwnAnswers(
                answers={
                    q.key: "yes" if q.key in yes else "no" for q in team_input.questions(cycle)
                },
                ratings=dict(RATINGS[team]),
            )
            person = person_by_email(s, email(who))
            team_input.save(s, cycle, answers, person)
            done = own_answers.submit(s, cycle, person)
            lines.append(
                f"          {team} answered on its own and submitted"
                + ("; both are in: revealed" if done.revealed else " (hidden from the other team)")
            )
        m = divergence.divergence_map(s, cycle, sam)
        lines.append(f"          the teams agree on {m.agree} and differ on {m.differ}:")
        for r in m.ratings:
            sides = ", ".join(f"{x.team} {x.words}" for x in r.sides)
            beside = f" ({r.kpi.title} before the cycle: {r.kpi.value})" if r.kpi else ""
            verdict = divergence.VERDICT_WORDS[r.verdict].lower()
            lines.append(f"          - {clip(r.text, 60)}")
            lines.append(f"            {sides}: {verdict}{beside}")
        # The hand-off interruptions, deferred in the first cycle and carried into the second,
        # are seen again.
        gaps.add_gap(
            s,
            cycle,
            GapCreate(
                title=RECURRING_TITLE,
                category=GapCategory.HAND_OFF,
                root_cause=RootCause.PROCESS,
                severity=Severity.HIGH,
            ),
            person_by_email(s, email("lee")),
        )
        for r in recurring.recurring_gaps(s, cycle, sam):
            who = (
                "needs a manager or a decision across the teams"
                if r.needs == "manager"
                else "either team can fix it"
            )
            history = "; ".join(f"{h.cycle_title}: {h.decision}" for h in r.history)
            lines.append(f"recurring {clip(r.title, 60)}: came up in {r.cycles} cycles")
            lines.append(f"          ({history}); {who}")
        cycle_id = cycle.id
    return [f'each team cycle {cycle_id} "Lead quality, each team first" ({PLAYBOOK})', *lines]
