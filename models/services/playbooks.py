"""Loading versioned playbooks into the store."""

from __future__ import annotations

from pathlib import Path

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
        raise NotFound(
            f"there is no playbook {ref!r}; the Playbooks page lists the ones there are"
        ).resolved_by("load_playbooks")
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
