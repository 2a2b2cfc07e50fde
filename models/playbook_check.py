"""Checking a playbook file without loading it, every problem a sentence naming the line and
the field in words (the admin page's "Check a playbook file" and ``aligncycle playbook
validate``). Needs no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.errors import PlaybookError
from models.playbook import PlaybookSpec

#: How a playbook's fields read in a sentence.
_FIELD_WORDS = {
    "schema_version": "format version",
    "kpis": "shared numbers",
    "kpi_rules": "rules on the numbers",
    "kpi": "number check",
    "action_templates": "proposed action items",
    "due_in_days": "days until due",
    "cycle_length_days": "cycle length in days",
    "handoff_sla_hours": "hand-off time limit in hours",
    "survey_min_answers": "fewest survey answers shown",
    "manager_signoff_required": "manager sign-off",
    "counterpart_signoff": "counterpart sign-off",
    "root_cause": "root cause",
    "success_measure": "success measure",
}
_MESSAGES = {
    "Field required": "is missing",
    "Extra inputs are not permitted": "is not something a playbook has (check its spelling)",
}


def _words(part: Any) -> str:
    text = str(part)
    return _FIELD_WORDS.get(text, text.replace("_", " "))


def _where(loc: tuple[Any, ...]) -> str:
    """A field's place in words: ``phase “identify”, question 2, text``."""
    out: list[str] = []
    parent: Any = None
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int) and not isinstance(part, bool):
            noun = {"questions": "question", "kpi_rules": "rule", "teams": "team"}.get(
                str(parent), "item"
            )
            if out and out[-1] in ("questions", "rules on the numbers", "teams"):
                out.pop()
            out.append(f"{noun} {part + 1}")
        elif parent == "phases":
            out[-1:] = [f"the {str(part).title()} phase"]
        elif parent == "action_templates":
            out[-1:] = [f"proposed action items for “{_words(part)}”"]
        else:
            out.append(_words(part))
        parent = part
    return ", ".join(out) or "the playbook"


def _line_of(root: Any, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the YAML node at ``loc``, or of its nearest existing parent."""
    import yaml

    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(getattr(k, "value", "")) == str(getattr(part, "value", part)):
                    nxt, line = v, k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


@dataclass
class PlaybookCheck:
    """What checking a playbook file found: the playbook, or the problems in words."""

    spec: PlaybookSpec | None
    problems: list[str] = field(default_factory=list)


def check_text(text: str, source: str = "the file") -> PlaybookCheck:
    """Validate playbook YAML without loading it; every problem a sentence naming the line and
    the field in words (``line 12, the Identify phase, question 2, text: is missing``)."""
    import yaml
    from pydantic import ValidationError

    from models.playbook import load_yaml

    try:
        data = load_yaml(text, source)
    except PlaybookError as exc:
        return PlaybookCheck(None, [exc.message.removeprefix(f"{source}:").strip()])
    if not isinstance(data, dict):
        return PlaybookCheck(None, ["line 1: a playbook starts with its fields (name: …)"])
    try:
        return PlaybookCheck(PlaybookSpec.model_validate(data))
    except ValidationError as exc:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        problems: list[tuple[int, str]] = []
        for err in exc.errors()[:20]:
            loc = tuple(err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            msg = _MESSAGES.get(msg, msg)
            line = _line_of(root, loc)
            at = f"line {line}, " if line else ""
            problems.append((line or 0, f"{at}{_where(loc)}: {msg}"))
        return PlaybookCheck(None, [p for _, p in sorted(problems, key=lambda x: x[0])])
