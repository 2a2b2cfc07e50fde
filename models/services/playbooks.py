"""Loading versioned playbooks into the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.errors import InvalidInput, NotFound, PlaybookError
from models.playbook import PlaybookSpec, load_playbook_file, playbook_files
from models.services.common import record_event
from models.tables import Person, Playbook


def register(
    session: Session,
    spec: PlaybookSpec,
    content_hash: str,
    source: str | None,
    actor: Person | None = None,
) -> tuple[Playbook, bool]:
    """Store a validated playbook. Returns (row, created). A (name, version) already loaded
    with different content is refused: published versions are immutable."""
    row = session.scalar(
        select(Playbook).where(Playbook.name == spec.name, Playbook.version == spec.version)
    )
    if row is not None:
        if row.content_hash != content_hash:
            raise PlaybookError(
                f"{source or spec.name}: version {spec.version} of playbook {spec.name!r} is "
                "already loaded with different content; bump 'version' to publish a change"
            )
        return row, False
    row = Playbook(
        name=spec.name,
        version=spec.version,
        title=spec.title,
        content_hash=content_hash,
        body=spec.model_dump(mode="json"),
        source=source,
    )
    session.add(row)
    record_event(
        session,
        actor=actor,
        verb="playbook.loaded",
        obj=row,
        after={"name": row.name, "version": row.version, "hash": content_hash, "source": source},
    )
    session.flush()
    return row, True


def sync_directory(
    session: Session, directory: Path, actor: Person | None = None
) -> list[tuple[Playbook, bool]]:
    """Validate every playbook file first, then register them all (all or nothing)."""
    files = playbook_files(directory)
    parsed = [(load_playbook_file(path), path) for path in files]
    return [register(session, spec, digest, path.name, actor) for (spec, digest), path in parsed]


def list_playbooks(session: Session) -> list[Playbook]:
    return list(session.scalars(select(Playbook).order_by(Playbook.name, Playbook.version)))


def get_playbook(session: Session, ref: str) -> Playbook:
    """``name`` (newest version) or ``name@version``."""
    name, _, version = ref.partition("@")
    stmt = select(Playbook).where(Playbook.name == name)
    if version:
        if not version.isdigit():
            raise InvalidInput(f"bad playbook version in {ref!r}: use name@N")
        stmt = stmt.where(Playbook.version == int(version))
    row = session.scalar(stmt.order_by(Playbook.version.desc()).limit(1))
    if row is None:
        raise NotFound(f"unknown playbook {ref!r} (load playbooks with `aligncycle playbook load`)")
    return row


def spec_of(row: Playbook) -> PlaybookSpec:
    """The parsed playbook of a stored row. Parsed once per process: a (name, version) is
    immutable once loaded, and its content hash names exactly one body."""
    cached = _SPECS.get(row.content_hash)
    if cached is None:
        cached = PlaybookSpec.model_validate(row.body)
        if len(_SPECS) >= 256:
            _SPECS.clear()
        _SPECS[row.content_hash] = cached
    return cached


_SPECS: dict[str, PlaybookSpec] = {}


# --- checking an uploaded playbook, in words -------------------------------------------------

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
