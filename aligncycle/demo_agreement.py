"""The demo's agreement of sales and marketing: its first version (written from the playbook as
the first cycle started), a change lee proposes in Plan for the gap on lead definitions, and
both point persons signing it at Recap, which adopts it as version 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MQL = (
    "A contact that fits the ideal customer profile and asked for a demo or for pricing, or "
    "scored 60 or more; a webinar sign-up alone is not an MQL."
)
REASON = "Half of the webinar leads had no buying intent: the MQL definition says so now"


def first_version(store: Any, cycle_id: int) -> str:
    from models.services import agreements, cycles

    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cycle_id)
        agreement = agreements.agreement_of(s, cycle)
        v = agreements.in_force(s, agreement)
        terms = agreements.terms_of(v)
        return (
            f"agreement of {agreement.title}: version {v.number} from the playbook "
            f"(hand-off within {terms.handoff_sla_hours} hours, {len(terms.definitions)} "
            "definitions)"
        )


def propose(store: Any, cycle_id: int, email: Callable[[str], str]) -> str:
    """Lee proposes, in Plan, a sharper MQL definition and a target for SLA attainment."""
    from models.services import agreements, cycles, gaps
    from models.services.common import person_by_email

    with store.unit_of_work() as s:
        cycle = cycles.get_cycle(s, cycle_id)
        answered = [g.id for g in gaps.list_gaps(s, cycle) if g.category == "lead_definition"]
        data = agreements.parse_amendment(
            {
                "changes": {
                    "definitions": {"mql": MQL},
                    "kpi_targets": {"sla_attainment": "80%"},
                },
                "reason": REASON,
                "gap_ids": answered[:1],
            }
        )
        a = agreements.propose(s, cycle, data, person_by_email(s, email("lee")))
        s.flush()
        return f"lee proposed change {a.id} to the agreement: the MQL definition, an 80% SLA target"


def adopt(store: Any, cycle_id: int, email: Callable[[str], str]) -> str:
    """Both point persons sign lee's change at Recap: version 2 is in force."""
    from sqlalchemy import select

    from models.agreement_tables import Agreement, Amendment
    from models.phases import agreement as agreement_phase
    from models.services import agreements
    from models.services.common import person_by_email

    with store.unit_of_work() as s:
        a = s.scalar(select(Amendment).where(Amendment.cycle_id == cycle_id))
        agreement_phase.sign(s, a, person_by_email(s, email("sam")))
        agreement_phase.sign(s, a, person_by_email(s, email("mia")))
        v = agreements.in_force(s, s.get(Agreement, a.agreement_id))
        return f"sam and mia signed lee's change: agreement version {v.number} in force"
