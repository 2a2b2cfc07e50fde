"""The playbook's sections for each team's own answers and the vote (issue 18): opt-in, with
their defaults, refused with a message naming the file and the field when wrong; a shipped
playbook uses both."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.playbook import load_playbook_file
from tests.test_playbooks import PLAYBOOK_DIR, VALID, _load, _refused, _write

OWN = """
private_input:
  differ_by: 1
  ratings:
    - key: lead_quality
      text: How good are the leads?
      kpi: mql_to_sql_rate
voting:
  votes_per_person: 5
  max_per_gap: 3
  top_gaps_need_actions: 2
"""


def test_without_the_sections_no_own_answers_and_the_default_vote(tmp_path: Path) -> None:
    spec = _load(_write(tmp_path, VALID, "ok.yaml"))
    assert spec.private_input is None
    assert (spec.voting.votes_per_person, spec.voting.max_per_gap) == (3, 2)
    assert spec.voting.top_gaps_need_actions == 0
    assert spec.settings.recurring_after_cycles == 3


def test_the_sections_are_read(tmp_path: Path) -> None:
    spec = _load(_write(tmp_path, VALID + OWN, "ok.yaml"))
    assert spec.private_input is not None and spec.private_input.differ_by == 1
    assert [(r.key, r.kpi) for r in spec.private_input.ratings] == [
        ("lead_quality", "mql_to_sql_rate")
    ]
    assert spec.voting.votes_per_person == 5 and spec.voting.top_gaps_need_actions == 2


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("key: lead_quality", "key: q1"), "private_input.ratings[0].key"),  # a question's key
        (("kpi: mql_to_sql_rate", "kpi: happiness"), "private_input.ratings[0].kpi"),
        (("max_per_gap: 3", "max_per_gap: 6"), "max_per_gap cannot be more than votes_per_person"),
        (("differ_by: 1", "differ_by: 9"), "private_input.differ_by"),
        (("top_gaps_need_actions: 2", "top_gaps_need_actions: -1"), "voting.top_gaps_need_actions"),
    ],
)
def test_wrong_sections_are_refused_naming_the_field(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    message = _refused(_write(tmp_path, VALID + OWN.replace(*change)))
    assert where in message, message


def test_a_shipped_playbook_asks_each_team_first_and_votes() -> None:
    spec, _ = load_playbook_file(PLAYBOOK_DIR / "lead-definition-and-scoring.yaml")
    assert spec.private_input is not None and len(spec.private_input.ratings) >= 2
    assert all(r.kpi for r in spec.private_input.ratings)
    assert spec.voting.top_gaps_need_actions == 2
