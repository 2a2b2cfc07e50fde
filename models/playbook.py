"""Playbooks: versioned YAML files that carry a cycle's questions, owners and templates.

The schema is the Pydantic model :class:`PlaybookSpec`; ``aligncycle playbook schema`` exports it
as JSON Schema for editors. Every validation error names the file and the field.

Why one file of this size: the schema is one tree (a playbook, its phases, questions, rules,
own answers and vote) that ``aligncycle playbook schema`` exports whole, and the YAML reading
beside it is the one way a playbook file becomes that tree.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.enums import (
    WORK_PHASES,
    AnswerKind,
    GapCategory,
    Phase,
    Priority,
    Role,
    RootCause,
    Severity,
    YesNo,
)
from models.errors import PlaybookError
from models.funnel.names import KPI_NAMES, KPI_UNITS

KEY_PATTERN = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    #: ``defer_build``: the schemas are built when a playbook is first validated, not at import
    #: (read commands that never parse a playbook do not pay for them).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class OwnerSpec(_Strict):
    """Who owes an answer or an action: a role, optionally within a team (team key)."""

    role: Role
    team: str | None = None


class GapRule(_Strict):
    """Turns an answer into a gap: when the answer is ``when``, record this gap."""

    when: YesNo = YesNo.YES
    title: str = Field(min_length=1)
    category: GapCategory
    root_cause: RootCause
    severity: Severity = Severity.MEDIUM


def _share(v: Any) -> Any:
    """ "30%" as 0.3 (a playbook may write a share either way); anything else as it is."""
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            return float(v.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a percentage: {v!r}") from None
    return v


class KpiCheck(_Strict):
    """A KPI and a threshold: the check fails when the KPI, measured over the cycle's baseline
    window, is ``below`` (or ``above``) the threshold on at least ``min_sample`` records.

    Rates are fractions (``0.8``) or percentages (``"80%"``); hours, days, counts and money are
    plain numbers. The KPIs are those of :mod:`models.funnel.kpis` (``aligncycle kpi list``)."""

    kpi: str
    below: float | None = None
    above: float | None = None
    min_sample: int = Field(default=20, ge=1)

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, v: str) -> str:
        if v not in KPI_UNITS:
            raise ValueError(f"unknown KPI {v!r}; known: {', '.join(KPI_NAMES)}")
        return v

    @field_validator("below", "above", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        return _share(v)

    @model_validator(mode="after")
    def _one_threshold(self) -> KpiCheck:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one threshold: 'below' or 'above'")
        value = self.threshold
        if KPI_UNITS[self.kpi] == "rate" and not 0 <= value <= 1:
            raise ValueError(
                f"{self.kpi} is a rate: write the threshold as a fraction (0.8) or a "
                f'percentage ("80%"), not {value}'
            )
        if value < 0:
            raise ValueError("a threshold cannot be negative")
        return self

    @property
    def threshold(self) -> float:
        return self.below if self.below is not None else self.above  # type: ignore[return-value]

    @property
    def direction(self) -> Literal["below", "above"]:
        return "below" if self.below is not None else "above"

    def breached(self, value: float | None, sample_size: int) -> bool:
        """Whether a measured value fails the check (no data or too small a sample: no)."""
        if value is None or sample_size < self.min_sample:
            return False
        return value < self.threshold if self.below is not None else value > self.threshold


class KpiRule(KpiCheck):
    """A gap found from the numbers alone: when the check fails, Identify records this gap."""

    key: str = Field(pattern=KEY_PATTERN, max_length=100)
    title: str = Field(min_length=1)
    description: str | None = None
    category: GapCategory
    root_cause: RootCause
    severity: Severity = Severity.MEDIUM


class MaterialCheck(_Strict):
    """A content question answered from the other team's ratings of the team pair's materials
    (campaigns and materials of their agreement): when more than ``unused_above`` of the rated
    team's materials are unused (nobody rated them) or found not useful (an average of 2 or
    less out of 5), the ratings point to the answer that records the question's gap.
    Judged only once at least ``min_materials`` materials exist and one of them is rated."""

    unused_above: float = Field(default=0.5, ge=0, lt=1)
    min_materials: int = Field(default=3, ge=1, le=1000)

    @field_validator("unused_above", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        return _share(v)


class Question(_Strict):
    key: str = Field(pattern=KEY_PATTERN, max_length=100)
    text: str = Field(min_length=1)
    help: str | None = None
    answer: AnswerKind = AnswerKind.YES_NO
    required: bool = True
    owner: OwnerSpec | None = None
    gap: GapRule | None = None
    #: Evidence for the question from the numbers: when the KPI check fails, Identify records
    #: the question's gap (source "metric") with the KPI, value, threshold, window and sample.
    kpi: KpiCheck | None = None
    #: Evidence for a content question from the materials' ratings: Identify proposes the
    #: answer the ratings point to, and records the question's gap when they point to it.
    materials: MaterialCheck | None = None

    @property
    def calm_answer(self) -> str | None:
        """The yes/no answer that raises no gap ("yes" when no rule); None for text answers."""
        if self.answer is not AnswerKind.YES_NO:
            return None
        return "no" if self.gap is not None and self.gap.when is YesNo.YES else "yes"

    @model_validator(mode="after")
    def _gap_needs_yes_no(self) -> Question:
        if self.gap is not None and self.answer is not AnswerKind.YES_NO:
            raise ValueError("a question with a 'gap' rule must have answer: yes_no")
        if self.kpi is not None and self.gap is None:
            raise ValueError("a question with a 'kpi' check needs the 'gap' it records")
        if self.materials is not None and self.gap is None:
            raise ValueError("a question with a 'materials' check needs the 'gap' it records")
        return self


class PhaseSpec(_Strict):
    description: str | None = None
    questions: list[Question] = Field(default_factory=list)

    @field_validator("questions")
    @classmethod
    def _unique_keys(cls, questions: list[Question]) -> list[Question]:
        seen: set[str] = set()
        for q in questions:
            if q.key in seen:
                raise ValueError(f"duplicate question key {q.key!r}")
            seen.add(q.key)
        return questions


class ActionTemplate(_Strict):
    key: str = Field(pattern=KEY_PATTERN, max_length=100)
    title: str = Field(min_length=1)
    description: str | None = None
    owner: OwnerSpec | None = None
    priority: Priority = Priority.MEDIUM
    due_in_days: int = Field(default=14, ge=0, le=365)
    success_measure: str | None = None


class Settings(_Strict):
    handoff_sla_hours: int = Field(default=24, ge=1)
    cadence: Literal["daily", "weekly", "biweekly", "monthly"] = "weekly"
    manager_signoff_required: bool = True
    #: An action item with a counterpart (the owner's partner on the other team) counts as done
    #: only once the counterpart has signed it off.
    counterpart_signoff: bool = False
    #: The survey's results show once the cycle has this many answers, and are published this
    #: many at a time (never one answer on its own); a team's own average needs as many from it.
    survey_min_answers: int = Field(default=3, ge=2, le=50)
    cycle_length_days: int = Field(default=42, ge=1, le=366)
    #: Days before the cycle's start whose funnel data is its KPI baseline (default: as many as
    #: the cycle is long, so baseline and cycle compare like with like).
    baseline_days: int | None = Field(default=None, ge=1, le=366)
    #: An open lead with no new stage for this many days counts as stalled.
    stall_days: int = Field(default=30, ge=1, le=365)
    #: Cadence: remind owners this many days before an item is due (default: the flow's, 2).
    remind_days_before: int | None = Field(default=None, ge=0, le=365)
    #: Escalate an overdue item to the owner's lead after this many days (default 2) ...
    escalate_after_days: int | None = Field(default=None, ge=1, le=365)
    #: ... and to a manager after this many more days (default 3).
    escalate_to_manager_after_days: int | None = Field(default=None, ge=0, le=365)
    #: A lead this many hours past the hand-off time in the cycle's SLA breach ledger goes to
    #: the managers of the cycle's teams, once (default: as late as an overdue item is when a
    #: manager hears of it).
    escalate_late_leads_after_hours: int | None = Field(default=None, ge=1, le=8760)
    #: A gap that comes back in this many cycles of the same two teams (this one included) is
    #: flagged as recurring, with its history.
    recurring_after_cycles: int = Field(default=3, ge=2, le=20)
    #: Opt-in: a sales rejection rate over this share (0 to 1) of the baseline's reviewed MQLs
    #: raises a "lead definition drift" gap in Identify, with the top rejection reasons by
    #: channel and campaign as evidence and this share as the target.
    rejection_drift_above: float | None = Field(default=None, gt=0, lt=1)
    #: Opt-in: the next cycle of the same teams starts on this schedule (the ``scheduled-starts``
    #: deployment), its point persons filled in by role and open work carried over.
    starts_every: Literal["month", "quarter", "half-year", "year"] | None = None

    @property
    def effective_baseline_days(self) -> int:
        return self.baseline_days or self.cycle_length_days


class RatingSpec(_Strict):
    """A hand-off rating each team gives on its own, from 1 (poor) to 5 (very good)."""

    key: str = Field(pattern=KEY_PATTERN, max_length=100)
    text: str = Field(min_length=1)
    help: str | None = None
    #: The shared number shown beside the two ratings (a KPI of :mod:`models.funnel.kpis`).
    kpi: str | None = None

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, v: str | None) -> str | None:
        if v is not None and v not in KPI_UNITS:
            raise ValueError(f"unknown KPI {v!r}; known: {', '.join(KPI_NAMES)}")
        return v


class PrivateInput(_Strict):
    """Each team of the cycle answers the Identify questions and rates the hand-off on its
    own, hidden from the other team until both have submitted (or the point persons reveal
    them); the reveal shows where the two teams agree and where they differ."""

    ratings: list[RatingSpec] = Field(default_factory=list)
    #: Two ratings this many points apart, or more, count as a difference.
    differ_by: int = Field(default=2, ge=1, le=4)

    @field_validator("ratings")
    @classmethod
    def _unique_rating_keys(cls, ratings: list[RatingSpec]) -> list[RatingSpec]:
        keys = [r.key for r in ratings]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate rating key {dupes[0]!r}")
        return ratings


class Voting(_Strict):
    """Voting to prioritise the gaps: each participant's budget, hidden until the vote closes."""

    votes_per_person: int = Field(default=3, ge=1, le=20)
    max_per_gap: int = Field(default=2, ge=1, le=20)
    #: The Plan gate asks that the top this-many gaps by votes have an action item (0: no).
    top_gaps_need_actions: int = Field(default=0, ge=0, le=20)

    @model_validator(mode="after")
    def _cap_within_budget(self) -> Voting:
        if self.max_per_gap > self.votes_per_person:
            raise ValueError("max_per_gap cannot be more than votes_per_person")
        return self


class PlaybookSpec(_Strict):
    """A playbook file, schema version 1."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=100)
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str | None = None
    teams: list[str] = Field(default_factory=lambda: ["sales", "marketing"], min_length=1)
    #: The defaults (``model_construct``: the same object as ``Settings()``, without building
    #: the validator at import).
    settings: Settings = Settings.model_construct()
    #: Shared definitions both teams sign up to (e.g. mql, sql, hand-off SLA).
    definitions: dict[str, str] = Field(default_factory=dict)
    #: Shared KPIs both teams report on: each a KPI aligncycle computes (``aligncycle kpi list``).
    kpis: list[str] = Field(default_factory=list)
    phases: dict[Phase, PhaseSpec]
    action_templates: dict[GapCategory, list[ActionTemplate]] = Field(default_factory=dict)
    #: Gaps found from the numbers: each rule names a KPI, a threshold and the gap to record.
    kpi_rules: list[KpiRule] = Field(default_factory=list)
    #: Opt-in: each team answers Identify on its own first (the divergence map).
    private_input: PrivateInput | None = None
    #: The vote on the gaps (defaults: 3 votes a person, at most 2 on one gap).
    voting: Voting = Voting.model_construct()

    @field_validator("kpis")
    @classmethod
    def _computable_kpis(cls, kpis: list[str]) -> list[str]:
        for name in kpis:
            if name not in KPI_UNITS:
                raise ValueError(
                    f"{name!r} is not a KPI aligncycle can compute; the KPIs are: "
                    f"{', '.join(KPI_NAMES)}"
                )
        if len(set(kpis)) != len(kpis):
            raise ValueError("a KPI is listed twice")
        return kpis

    @field_validator("kpi_rules")
    @classmethod
    def _unique_rule_keys(cls, rules: list[KpiRule]) -> list[KpiRule]:
        keys = [r.key for r in rules]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate kpi rule key {dupes[0]!r}")
        return rules

    @field_validator("phases")
    @classmethod
    def _work_phases_only(cls, phases: dict[Phase, PhaseSpec]) -> dict[Phase, PhaseSpec]:
        if Phase.CLOSED in phases:
            raise ValueError("'closed' is an end state, not a phase with questions")
        return phases

    @model_validator(mode="after")
    def _owners_on_known_teams(self) -> PlaybookSpec:
        known = set(self.teams)
        for phase, spec in self.phases.items():
            for i, q in enumerate(spec.questions):
                if q.owner and q.owner.team and q.owner.team not in known:
                    raise ValueError(
                        f"phases.{phase}.questions[{i}].owner.team: {q.owner.team!r} is not one "
                        f"of the playbook's teams {sorted(known)}"
                    )
        for category, templates in self.action_templates.items():
            keys = [t.key for t in templates]
            if len(keys) != len(set(keys)):
                raise ValueError(f"action_templates.{category}: duplicate template key")
            for i, t in enumerate(templates):
                if t.owner and t.owner.team and t.owner.team not in known:
                    raise ValueError(
                        f"action_templates.{category}[{i}].owner.team: {t.owner.team!r} is not "
                        f"one of the playbook's teams {sorted(known)}"
                    )
        return self

    @model_validator(mode="after")
    def _rating_keys_apart(self) -> PlaybookSpec:
        if self.private_input is not None:
            asked = {q.key for q in self.phase(Phase.IDENTIFY).questions}
            for i, r in enumerate(self.private_input.ratings):
                if r.key in asked:
                    raise ValueError(
                        f"private_input.ratings[{i}].key: {r.key!r} is also an Identify "
                        "question's key; give the rating a key of its own"
                    )
        return self

    def phase(self, phase: Phase) -> PhaseSpec:
        return self.phases.get(phase, PhaseSpec())

    def questions(self) -> list[tuple[Phase, int, Question]]:
        return [(p, i, q) for p in WORK_PHASES for i, q in enumerate(self.phase(p).questions)]

    def question(self, phase: Phase, key: str) -> Question | None:
        return next((q for q in self.phase(phase).questions if q.key == key), None)


# --- loading -----------------------------------------------------------------------------


def _unique_key_loader() -> type:
    """The YAML loader of our configuration files, built on first use: importing ``yaml`` is
    not free, and only the commands that read files need it (a stored playbook is JSON)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate mapping keys instead of keeping the last one.

        Booleans follow YAML 1.2 (only true/false): bare ``yes``/``no``/``on``/``off`` stay
        strings, so ``when: no`` means the answer "no" (Pydantic still reads "yes"/"no" as
        bools where a field is a bool, e.g. ``required: no``).

        Bounded: nesting deeper than :data:`MAX_YAML_DEPTH` (the composer recurses per level:
        thousands of ``[`` would exhaust the stack), more than :data:`MAX_YAML_VALUES` values
        once aliases are expanded (a "billion laughs" of aliases of aliases) and an alias
        inside its own anchor are refused, with the line.
        """

        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"nested more than {MAX_YAML_DEPTH} levels deep",
                        self.peek_event().start_mark,
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def get_single_node(self) -> Any:
            node = super().get_single_node()
            if node is not None:
                _expanded_size(node, {})
            return node

    bool_tag = "tag:yaml.org,2002:bool"
    _UniqueKeyLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _UniqueKeyLoader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )

    def mapping_key(loader: _UniqueKeyLoader, node: yaml.MappingNode, key_node: yaml.Node) -> Any:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found unhashable key",
                key_node.start_mark,
            ) from None
        return key

    def construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):  # noqa: ANN202
        # Duplicates are looked for among the keys written in this mapping; keys brought in by
        # a YAML merge (``<<: *anchor``) may be overridden, as the merge-key spec intends.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = mapping_key(loader, node, key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (line {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen.add(key)
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            mapping[mapping_key(loader, node, key_node)] = loader.construct_object(
                value_node, deep=deep
            )
        return mapping

    _UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    _LOADER = _UniqueKeyLoader
    return _LOADER


_LOADER: type | None = None

#: How deep a YAML file may nest (a playbook needs about eight levels).
MAX_YAML_DEPTH = 50
#: How many values a YAML file may hold once its aliases are expanded.
MAX_YAML_VALUES = 200_000


def _expanded_size(node: Any, sizes: dict[int, int | None]) -> int:
    """How many values ``node`` stands for with aliases expanded (``sizes``: the nodes already
    counted, None while one is being counted). Raises a ComposerError over the limit."""
    import yaml

    key = id(node)
    if key in sizes:
        known = sizes[key]
        if known is None:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to the value that contains it", node.start_mark
            )
        return known
    sizes[key] = None
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes) + _expanded_size(v, sizes)
    if total > MAX_YAML_VALUES:
        raise yaml.composer.ComposerError(
            None,
            None,
            f"more than {MAX_YAML_VALUES:,} values once its aliases are expanded",
            node.start_mark,
        )
    sizes[key] = total
    return total


def location(loc: tuple[Any, ...]) -> str:
    """A Pydantic error location as a field path: ``phases.identify.questions[0].text``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_loc = location


def load_yaml(text: str, source: str, error: type[Exception] = PlaybookError) -> Any:
    """YAML as our configuration files read it (duplicate keys refused, YAML 1.2 booleans);
    a syntax error raises ``error`` naming the file and the line."""
    import yaml

    loader = _unique_key_loader()
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{source}:{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {exc}") from None


def parse_playbook(text: str, source: str = "<playbook>") -> PlaybookSpec:
    """Parse and validate playbook YAML; raise :class:`PlaybookError` naming file and field."""
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: a playbook must be a YAML mapping at the top level")
    try:
        return PlaybookSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        loc = tuple(err["loc"])
        if loc and loc[-1] == "[key]":  # Pydantic's marker for a refused mapping key
            loc, msg = loc[:-1], f"invalid key: {msg}"
        where = f"{_loc(loc)}: " if loc else ""  # whole-file checks name their field in msg
        raise PlaybookError(f"{source}: {where}{msg}{more}") from None


def load_playbook_file(path: Path) -> tuple[PlaybookSpec, str]:
    """Read, validate and hash a playbook file. Returns (spec, sha256 of the bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PlaybookError(f"{path}: not UTF-8 text") from None
    return parse_playbook(text, str(path)), hashlib.sha256(raw).hexdigest()


def playbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def json_schema() -> dict[str, Any]:
    return PlaybookSpec.model_json_schema()
