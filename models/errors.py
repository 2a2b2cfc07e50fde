"""Domain errors. Each carries a one-line, user-facing message.

The faces map them: the CLI prints the message and exits 1, the API answers a 4xx.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation. ``str(err)`` is the one-line message shown to the user."""

    code = "refused"
    #: What resolves it, as a key and its arguments (``("advance", 3)``): the message says it in
    #: the app's words; a face may add its own way to do it (the CLI, a command to run).
    next_step: tuple[object, ...] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def resolved_by(self, *step: object) -> DomainError:
        """``raise NotFound("…").resolved_by("load_playbooks")``: say what resolves it."""
        self.next_step = step
        return self


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class InvalidInput(DomainError):
    """A value that cannot be taken. ``field``: the input it is about, when one is (the web
    shows the message beside that field)."""

    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TransitionRefused(DomainError):
    """A phase transition that is out of order or whose gate is not met."""

    code = "transition_refused"

    def __init__(self, message: str, blockers: list[str] | None = None) -> None:
        self.blockers = list(blockers or [])
        if self.blockers:
            message = f"{message}: " + "; ".join(self.blockers)
        super().__init__(message)


class Conflict(DomainError):
    """Somebody else changed the object since it was read (optimistic version check)."""

    code = "conflict"


class PlaybookError(InvalidInput):
    """An invalid playbook file; the message names the file and the field."""

    code = "invalid_playbook"
