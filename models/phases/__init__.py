"""The cycle's side effects: the one layer that combines single-record services.

What people do in a cycle reaches across records: answering an Identify question raises a
gap, accepting a gap in Plan proposes action items, an owner's update in Execute is a dated
check-in, advancing a cycle refreshes what its phase derives, checks the gate and writes what
the next phase starts with, starting a follow-up carries the open items over and freezes the
KPI baseline. Those rules live here, once, and every face (web pages, REST API, CLI, Prefect
flows) calls these verbs; the single-record services in :mod:`models.services` never import
this package.

One module per phase (:mod:`.identify`, :mod:`.plan`, :mod:`.execute`, :mod:`.recap`), the
cycle's life and the decision between phases (:mod:`.lifecycle`), and carry-over
(:mod:`.carry_over`). Like every service: a Session first, never commits.
"""

from models.phases.execute import update_action
from models.phases.identify import Answered, answer
from models.phases.lifecycle import (
    Advanced,
    PhaseDecision,
    advance,
    apply_decision,
    start_cycle,
    start_follow_up,
)
from models.phases.plan import decide_gap

__all__ = [
    "Advanced",
    "Answered",
    "PhaseDecision",
    "advance",
    "answer",
    "apply_decision",
    "decide_gap",
    "start_cycle",
    "start_follow_up",
    "update_action",
]
