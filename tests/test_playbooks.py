"""Playbook files: the shipped ones are valid and complete; bad ones are refused with a message
that names the file and the field. No database needed."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import yaml

from models.enums import WORK_PHASES, AnswerKind, GapCategory, Phase, YesNo
from models.errors import PlaybookError
from models.playbook import (
    PlaybookSpec,
    Question,
    load_playbook_file,
    parse_playbook,
    playbook_files,
)

PLAYBOOK_DIR = Path(__file__).resolve().parents[1] / "playbooks"
SHIPPED = playbook_files(PLAYBOOK_DIR)
EXPECTED = {"sales-marketing-handoff", "lead-definition-and-scoring", "campaign-content-alignment"}


def _load(path: Path) -> PlaybookSpec:
    return load_playbook_file(path)[0]


# --- the shipped playbooks ---------------------------------------------------------------------


def test_the_expected_playbooks_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= EXPECTED


def test_name_and_version_pairs_are_unique() -> None:
    pairs = [(s.name, s.version) for s in map(_load, SHIPPED)]
    assert len(pairs) == len(set(pairs))


@pytest.fixture(params=SHIPPED, ids=lambda p: p.name)
def shipped(request: pytest.FixtureRequest) -> tuple[Path, PlaybookSpec]:
    return request.param, _load(request.param)


def test_shipped_playbook_validates(shipped: tuple[Path, PlaybookSpec]) -> None:
    path, spec = shipped
    _, digest = load_playbook_file(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.name == path.stem
    assert spec.version >= 1
    assert spec.title


def test_every_phase_has_questions(shipped: tuple[Path, PlaybookSpec]) -> None:
    _, spec = shipped
    assert Phase.CLOSED not in spec.phases
    for phase in WORK_PHASES:
        assert spec.phase(phase).questions, f"{spec.name}: no questions in {phase}"


def test_owner_teams_are_declared(shipped: tuple[Path, PlaybookSpec]) -> None:
    _, spec = shipped
    owners = [(f"{p}.{q.key}", q.owner) for p, _, q in spec.questions()]
    owners += [
        (f"action_templates.{cat}.{t.key}", t.owner)
        for cat, templates in spec.action_templates.items()
        for t in templates
    ]
    for where, owner in owners:
        if owner is not None and owner.team is not None:
            assert owner.team in spec.teams, f"{spec.name}: {where}: unknown team {owner.team!r}"


def test_every_gap_category_has_an_action_template(shipped: tuple[Path, PlaybookSpec]) -> None:
    _, spec = shipped
    categories = {q.gap.category for _, _, q in spec.questions() if q.gap is not None}
    assert categories, f"{spec.name}: no gap rules"
    missing = {c for c in categories if not spec.action_templates.get(c)}
    assert not missing, f"{spec.name}: gap categories without action templates: {missing}"


def test_gap_rules_are_on_yes_no_questions(shipped: tuple[Path, PlaybookSpec]) -> None:
    _, spec = shipped
    for _, _, q in spec.questions():
        if q.gap is not None:
            assert q.answer is AnswerKind.YES_NO


def test_templates_are_unique_and_due_within_the_cycle(shipped: tuple[Path, PlaybookSpec]) -> None:
    _, spec = shipped
    keys = [t.key for templates in spec.action_templates.values() for t in templates]
    assert len(keys) == len(set(keys)), f"{spec.name}: duplicate action template keys"
    for templates in spec.action_templates.values():
        for t in templates:
            assert t.due_in_days <= spec.settings.cycle_length_days, t.key
            assert t.success_measure, f"{spec.name}: {t.key} has no success_measure"


def test_gap_when_values_are_quoted(shipped: tuple[Path, PlaybookSpec]) -> None:
    """Read with plain YAML 1.1 PyYAML: a bare yes/no would come back as a bool."""
    path, _ = shipped
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for phase, body in raw["phases"].items():
        for q in body.get("questions", []):
            if "gap" in q and "when" in q["gap"]:
                assert isinstance(q["gap"]["when"], str), f"{phase}.{q['key']}: quote gap.when"


def test_handoff_playbook_encodes_the_good_practice() -> None:
    spec = _load(PLAYBOOK_DIR / "sales-marketing-handoff.yaml")
    assert (spec.name, spec.version) == ("sales-marketing-handoff", 4)
    s = spec.settings
    assert (s.handoff_sla_hours, s.cadence, s.manager_signoff_required, s.cycle_length_days) == (
        24,
        "weekly",
        True,
        42,
    )
    # what feeds the next cycle: rejections past 30% propose a lead definition drift gap, a
    # lead two days past the SLA goes to the managers, and the next cycle starts each quarter
    assert (s.rejection_drift_above, s.escalate_late_leads_after_hours, s.starts_every) == (
        0.3,
        48,
        "quarter",
    )
    assert {"mql", "sql", "sales_accepted_lead", "handoff_sla"} <= set(spec.definitions)
    # The shared KPIs of the good practice, as KPIs aligncycle computes: lead quality (sales
    # acceptance), conversion (MQL→SQL, MQL→won), closed bookings (win rate, revenue), the SLA.
    assert set(spec.kpis) >= {
        "sales_acceptance_rate",
        "mql_to_sql_rate",
        "mql_to_won_rate",
        "win_rate",
        "revenue_won",
        "sla_attainment",
        "handoff_latency_median_hours",
    }
    # Identify's hand-off questions are checked against the numbers too.
    checked = {q.key for q in spec.phase(Phase.IDENTIFY).questions if q.kpi is not None}
    assert checked >= {"handoff_interruptions", "missed_conversions", "handoff_sla_agreed"}
    assert set(spec.action_templates) >= {
        GapCategory.HAND_OFF,
        GapCategory.LEAD_DEFINITION,
        GapCategory.DATA_AND_TOOLS,
        GapCategory.CADENCE,
        GapCategory.CONTENT,
        GapCategory.CAMPAIGN,
    }
    identify = spec.phase(Phase.IDENTIFY).questions
    assert {q.gap.root_cause for q in identify if q.gap} == {
        "communication",
        "process",
        "adoption",
    }
    positive = spec.question(Phase.IDENTIFY, "shared_lead_definitions")
    assert positive is not None and positive.gap is not None and positive.gap.when is YesNo.NO
    recap = spec.phase(Phase.RECAP).questions
    assert all(q.gap is None for q in recap)


# --- refused playbooks -------------------------------------------------------------------------

VALID = """\
name: example
version: 1
title: Example
teams: [sales, marketing]
phases:
  identify:
    questions:
      - key: q1
        text: Do both teams use the same lead definitions?
        owner: {role: lead, team: marketing}
        gap:
          when: "no"
          title: No shared lead definitions
          category: lead_definition
          root_cause: communication
  plan:
    questions:
      - key: gaps
        text: What are the gaps?
        answer: text
"""


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _refused(path: Path) -> str:
    with pytest.raises(PlaybookError) as info:
        load_playbook_file(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_the_base_example_is_valid(tmp_path: Path) -> None:
    spec = _load(_write(tmp_path, VALID, "ok.yaml"))
    assert spec.question(Phase.IDENTIFY, "q1").gap.when is YesNo.NO


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("title: Example", "title: [Example"))
    message = _refused(path)
    assert "bad.yaml" in message
    assert "line" in message


def test_unknown_phase_is_refused(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, VALID.replace("  plan:", "  discover:")))
    assert "phases.discover" in message
    assert "[key]" not in message


def test_closed_is_not_a_phase_with_questions(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, VALID.replace("  plan:", "  closed:")))
    assert "phases" in message and "closed" in message


def test_missing_question_text_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("        text: Do both teams use the same lead definitions?\n", "")
    message = _refused(_write(tmp_path, text))
    assert "phases.identify.questions[0].text" in message


def test_duplicate_top_level_key_is_refused(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, VALID.replace("version: 1", "name: other\nversion: 1")))
    assert "duplicate key 'name'" in message
    assert "line 2" in message


def test_duplicate_key_inside_a_question_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("        answer: text\n", "        answer: text\n        text: Again?\n")
    message = _refused(_write(tmp_path, text))
    assert "duplicate key 'text'" in message


def test_duplicate_question_keys_in_a_phase_are_refused(tmp_path: Path) -> None:
    text = VALID + "      - key: gaps\n        text: Same key again\n        answer: text\n"
    message = _refused(_write(tmp_path, text))
    assert "phases.plan.questions" in message
    assert "duplicate question key 'gaps'" in message


def test_gap_rule_on_a_text_question_is_refused(tmp_path: Path) -> None:
    text = VALID.replace(
        "        owner: {role: lead, team: marketing}\n",
        "        owner: {role: lead, team: marketing}\n        answer: text\n",
    )
    message = _refused(_write(tmp_path, text))
    assert "phases.identify.questions[0]" in message
    assert "gap" in message and "yes_no" in message


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    text = VALID.replace(
        "        answer: text\n", "        answer: text\n        requried: false\n"
    )
    message = _refused(_write(tmp_path, text))
    assert "phases.plan.questions[0].requried" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_gap_category_is_refused(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, VALID.replace("lead_definition", "leads")))
    assert "phases.identify.questions[0].gap.category" in message


def test_unknown_action_template_category_is_refused(tmp_path: Path) -> None:
    text = VALID + "action_templates:\n  handoff:\n    - {key: a, title: A}\n"
    message = _refused(_write(tmp_path, text))
    assert "action_templates.handoff" in message
    assert "[key]" not in message


def test_top_level_list_is_refused(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, "- name: example\n- version: 1\n"))
    assert "mapping" in message


def test_empty_file_is_refused(tmp_path: Path) -> None:
    assert "mapping" in _refused(_write(tmp_path, ""))


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(VALID.replace("Example", "Caf\xe9").encode("latin-1"))
    assert "not UTF-8" in _refused(path)


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    assert "cannot read" in _refused(tmp_path / "missing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert "cannot read" in _refused(folder)


def test_unhashable_yaml_key_is_a_playbook_error(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, "? [a, b]\n: c\n" + VALID))
    assert "unhashable key" in message and "line 1" in message


# --- YAML details the loader gets right --------------------------------------------------------


@pytest.mark.parametrize(("literal", "expected"), [("yes", YesNo.YES), ("no", YesNo.NO)])
def test_bare_yes_no_in_gap_when_are_answers_not_booleans(literal: str, expected: YesNo) -> None:
    spec = parse_playbook(VALID.replace('when: "no"', f"when: {literal}"))
    assert spec.question(Phase.IDENTIFY, "q1").gap.when is expected


def test_yes_no_still_work_for_boolean_fields() -> None:
    text = VALID.replace("        answer: text\n", "        answer: text\n        required: no\n")
    text += "settings: {manager_signoff_required: no}\n"
    spec = parse_playbook(text)
    assert spec.question(Phase.PLAN, "gaps").required is False
    assert spec.settings.manager_signoff_required is False


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = VALID + textwrap.dedent("""\
        action_templates:
          lead_definition:
            - &base {key: write_definitions, title: Write definitions, priority: high}
            - <<: *base
              key: sign_off_definitions
              title: Sign off the definitions
    """)
    templates = parse_playbook(text).action_templates[GapCategory.LEAD_DEFINITION]
    assert [t.key for t in templates] == ["write_definitions", "sign_off_definitions"]
    assert templates[1].priority == "high"


def test_duplicate_keys_next_to_a_merge_are_still_refused() -> None:
    text = VALID + textwrap.dedent("""\
        action_templates:
          lead_definition:
            - &base {key: write_definitions, title: Write definitions}
            - <<: *base
              key: one
              key: two
    """)
    with pytest.raises(PlaybookError, match="duplicate key 'key'"):
        parse_playbook(text, "x.yaml")


def test_owner_team_must_be_one_of_the_playbooks_teams(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(
        "name: typo\nversion: 1\ntitle: T\nteams: [sales, marketing]\n"
        "phases:\n  identify:\n    questions:\n"
        "      - {key: q, text: Q, owner: {role: lead, team: markting}}\n"
    )
    with pytest.raises(PlaybookError) as err:
        load_playbook_file(bad)
    assert "typo.yaml" in str(err.value)
    assert "phases.identify.questions[0].owner.team" in str(err.value)
    assert "markting" in str(err.value)


def test_the_calm_answer_is_the_one_that_raises_no_gap() -> None:
    """What the demo seed answers so that a walk-through is not held up by gaps it did not
    mean to raise: the opposite of the question's gap rule, "yes" without one."""
    gap = {"title": "t", "category": "hand_off", "root_cause": "communication"}
    raised_by_yes = Question(key="a", text="?", gap=gap)
    raised_by_no = Question(key="b", text="?", gap={**gap, "when": YesNo.NO})
    assert raised_by_yes.calm_answer == "no"
    assert raised_by_no.calm_answer == "yes"
    assert Question(key="c", text="?").calm_answer == "yes"
    assert Question(key="d", text="?", answer=AnswerKind.TEXT).calm_answer is None


def test_every_shipped_playbook_speaks_only_computable_kpis_and_has_kpi_rules() -> None:
    from models.funnel.kpis import KPIS

    for path in playbook_files(PLAYBOOK_DIR):
        spec = _load(path)
        assert spec.kpis and set(spec.kpis) <= set(KPIS), path.name
        assert spec.kpi_rules, f"{path.name} has no KPI rules"
        for rule in spec.kpi_rules:
            assert rule.kpi in KPIS


def test_a_playbook_naming_a_kpi_aligncycle_cannot_compute_is_refused(tmp_path: Path) -> None:
    text = (PLAYBOOK_DIR / "sales-marketing-handoff.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  - win_rate\n", "  - retention\n", 1))
    with pytest.raises(PlaybookError) as err:
        _load(bad)
    assert str(err.value).startswith(
        f"{bad}: kpis: 'retention' is not a KPI aligncycle can compute; the KPIs are: "
        "mql_volume, mql_to_sql_rate"
    )
