"""The terms of a team pair's agreement and the changes to them, as plain values: what the
terms are (:class:`Terms`), what a proposed change gives (:class:`Changes`), the first terms
from a playbook, a change applied, and the terms as people read them (:func:`term_lines`,
:func:`diff`). No session, no store: :mod:`models.services.agreements` keeps the records."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import InvalidInput
from models.funnel.kpis import KPIS, format_value, read_number, split_currency
from models.playbook import PlaybookSpec
from models.tables import Team

#: The lead definitions every agreement holds, in this order, as people read them.
DEFINITION_WORDS = {
    "mql": "Marketing-qualified lead (MQL)",
    "sql": "Sales-qualified lead (SQL)",
    "sales_accepted": "Sales-accepted lead",
    "recycled": "Recycled lead",
}
#: Playbook definition keys that name one of the above.
_PLAYBOOK_KEYS = {"sales_accepted_lead": "sales_accepted", "recycled_lead": "recycled"}
CADENCE_WORDS = {
    "daily": "every day",
    "weekly": "every week",
    "biweekly": "every two weeks",
    "monthly": "every month",
}
STATUS_WORDS = {"proposed": "Waiting for both point persons", "adopted": "Adopted",
                "rejected": "Rejected"}  # fmt: skip
Cadence = Literal["daily", "weekly", "biweekly", "monthly"]
MAX_TEXT = 4000


class Terms(BaseModel):
    """What two teams agreed: lead definitions, the hand-off SLA, the shared KPIs with their
    targets, the cadence, the tools and data sources, and each team's commitments."""

    model_config = ConfigDict(extra="forbid")

    definitions: dict[str, str] = Field(default_factory=dict)
    handoff_sla_hours: int = Field(default=24, ge=1, le=24 * 60)
    kpi_targets: dict[str, float | None] = Field(default_factory=dict)
    cadence: Cadence = "weekly"
    tools: str = ""
    data_sources: str = ""
    #: The team's key -> what the team commits to.
    commitments: dict[str, str] = Field(default_factory=dict)


class Changes(BaseModel):
    """What an amendment changes: only the terms given (a definition, a target or a
    commitment given replaces that one; the others stay)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    definitions: dict[str, str] = Field(default_factory=dict)
    handoff_sla_hours: int | None = Field(default=None, ge=1, le=24 * 60)
    kpi_targets: dict[str, float] = Field(default_factory=dict)
    cadence: Cadence | None = None
    tools: str | None = Field(default=None, max_length=MAX_TEXT)
    data_sources: str | None = Field(default=None, max_length=MAX_TEXT)
    commitments: dict[str, str] = Field(default_factory=dict)
    #: the currency the amounts of the targets were said in ("1,234.00 USD", as the page shows
    #: them), which must be the shared numbers' (not stored: the targets are the numbers')
    currency: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _codes(cls, data: Any) -> Any:
        """A target's currency code, said after its amount, taken off into ``currency``."""
        if not isinstance(data, dict) or not isinstance(data.get("kpi_targets"), dict):
            return data
        data, targets = dict(data), dict(data["kpi_targets"])
        for name, value in targets.items():
            if not isinstance(value, str):
                continue
            number, code = split_currency(value)
            if code is None:
                continue
            if name in KPIS and KPIS[name].unit != "money":
                raise ValueError(f"{KPIS[name].title} is not an amount: give it without a currency")
            if data.get("currency") not in (None, code):
                raise ValueError(f"the targets' amounts are in {data['currency']} and {code}")
            targets[name], data["currency"] = number, code
        data["kpi_targets"] = targets
        return data

    @field_validator("definitions", "commitments")
    @classmethod
    def _texts(cls, v: dict[str, str]) -> dict[str, str]:
        for text in v.values():  # an empty text: not written (yet)
            if len(text) > MAX_TEXT:
                raise ValueError(f"keep each text under {MAX_TEXT} characters")
        return {k: t.strip() for k, t in v.items()}

    @field_validator("kpi_targets", mode="before")
    @classmethod
    def _typed(cls, v: Any) -> Any:
        """A target as people type it: ``80%`` (a rate, 0.8), ``12.5``, ``1,200``."""
        if not isinstance(v, dict):
            return v
        out = {}
        for name, value in v.items():
            if name not in KPIS:
                raise ValueError(f"{name.replace('_', ' ')} is not one of the shared numbers")
            # as the page shows it: "80.0%", "5.2 h", "14.0 d", "1,234.00 USD" (its currency
            # taken off by the model, into ``currency``)
            value = read_number(value)
            if KPIS[name].unit == "rate" and not 0 <= value <= 1:
                raise ValueError(f"{KPIS[name].title} is a share: give it as a percentage (80%)")
            out[name] = value
        return out


class AmendmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    changes: Changes
    reason: str = Field(min_length=3, max_length=MAX_TEXT)
    gap_ids: list[int] = Field(default_factory=list, max_length=50)


#: What people call each input of a proposed change (for messages).
INPUT_WORDS = {
    "handoff_sla_hours": "the hand-off time, in hours (a whole number from 1 to 1440)",
    "kpi_targets": "a target",
    "definitions": "a definition",
    "commitments": "a commitment",
    "cadence": "how often the teams meet",
    "tools": "the tools",
    "data_sources": "the data sources",
    "reason": "why this change (a few words at least)",
    "gap_ids": "the gaps it answers",
}


def parse_amendment(data: dict[str, Any]) -> AmendmentCreate:
    """A proposed change from people's input; refused in one sentence naming the input as
    people know it (never a field name)."""
    try:
        return AmendmentCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        names = [str(p) for p in first.get("loc", ()) if p != "changes"]
        what = INPUT_WORDS.get(names[0], "a term") if names else "the change"
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        if first.get("type", "").startswith(("value_error", "assertion")):
            raise InvalidInput(f"check {what}: {msg}") from None
        raise InvalidInput(f"check {what}") from None


class Change(BaseModel):
    """One term an amendment or a version changes: what, before, after (as people read it)."""

    what: str
    before: str
    after: str


def first_terms(pb: PlaybookSpec, teams: list[Team]) -> Terms:
    """The first version's terms, from the playbook: its definitions (the four lead
    definitions always present), SLA, KPIs (no targets yet) and cadence."""
    definitions = {k: "" for k in DEFINITION_WORDS}
    for key, text in pb.definitions.items():
        definitions[_PLAYBOOK_KEYS.get(key, key)] = " ".join(text.split())
    return Terms(
        definitions=definitions,
        handoff_sla_hours=pb.settings.handoff_sla_hours,
        kpi_targets={k: None for k in pb.kpis},
        cadence=pb.settings.cadence,
        commitments={t.key: "" for t in teams},
    )


def merged(terms: Terms, changes: Changes) -> Terms:
    data = terms.model_dump()
    for name, value in changes.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return Terms.model_validate(data)


def only_changed(terms: Terms, changes: Changes) -> Changes:
    """The changes without the terms they give unchanged (a form sends every term)."""
    out: dict[str, Any] = {}
    current = terms.model_dump()
    for name, value in changes.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):
            kept = {k: v for k, v in value.items() if current[name].get(k) != v}
            if kept:
                out[name] = kept
        elif value != current[name]:
            out[name] = value
    return Changes.model_validate(out)


#: Other definitions the shipped playbooks carry, as people read them.
OTHER_WORDS = {"handoff_sla": "The hand-off"}


def definition_words(key: str) -> str:
    return DEFINITION_WORDS.get(key) or OTHER_WORDS.get(key) or key.replace("_", " ").capitalize()


def target_words(kpi: str, value: float | None, currency: str | None = None) -> str:
    return "no target yet" if value is None else format_value(kpi, value, currency)


def term_lines(
    terms: Terms, team_names: dict[str, str], currency: str | None = None
) -> list[tuple[str, str]]:
    """Every term as (what, the words agreed), in reading order; an amount in ``currency``
    (the shared numbers')."""
    out = [(definition_words(k), v or "not written yet") for k, v in terms.definitions.items()]
    out.append(("Hand-off time", f"{terms.handoff_sla_hours} hours"))
    out += [
        (f"Target: {KPIS[k].title if k in KPIS else k}", target_words(k, v, currency))
        for k, v in terms.kpi_targets.items()
    ]
    out.append(("How often the teams meet", CADENCE_WORDS[terms.cadence]))
    out.append(("Tools", terms.tools or "not written yet"))
    out.append(("Data sources", terms.data_sources or "not written yet"))
    out += [
        (f"{team_names.get(k, k)} commits to", v or "not written yet")
        for k, v in terms.commitments.items()
    ]
    return out


def diff(
    before: Terms, after: Terms, team_names: dict[str, str], currency: str | None = None
) -> list[Change]:
    """The terms that differ, as people read them."""
    old = dict(term_lines(before, team_names, currency))
    return [
        Change(what=what, before=old.get(what, "not agreed yet"), after=words)
        for what, words in term_lines(after, team_names, currency)
        if old.get(what) != words
    ]
