"""How aligncycle runs Prefect: quiet output, the flow heartbeat, a log file, the store the
tasks use, and the tasks every phase shares.

Quiet by default (``flows/__init__.py`` sets the defaults before Prefect is imported; values
already in the environment win): no telemetry, nothing from Prefect on the console (its logs
still reach the UI, and a log file once :func:`enable_log_file` is called), no server
tracebacks at shutdown.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TagsContext

from flows import QUIET_DEFAULTS, configure_environment
from models.config import StoreSettings
from models.db import Store
from models.enums import Phase
from models.errors import Conflict
from models.phases import common as domain
from models.services import cycles as cycle_service

__all__ = ["QUIET_DEFAULTS", "configure_environment"]

#: Loggers that print pool and event-worker errors while a process shuts down; they go to the
#: log file only.
NOISY_LOGGERS = ("sqlalchemy", "docket", "prefect.events", "asyncio")


# --- the store -----------------------------------------------------------------------------

_stores: dict[str, Store] = {}


def store() -> Store:
    """The store selected by ``ALIGNCYCLE_DATABASE_URL`` now (read on every call, so a changed
    URL is followed); one engine per URL per process."""
    url = StoreSettings().effective_database_url
    found = _stores.get(url)
    if found is None:
        found = _stores[url] = Store(url)
    return found


def dispose_stores() -> None:
    for s in _stores.values():
        s.dispose()
    _stores.clear()


def store_tag(url: str | None = None) -> str:
    """A short, stable id of the store (no password in it): tells apart runs of cycles with the
    same id in different databases that share one Prefect server."""
    from sqlalchemy.engine import make_url

    url = url or StoreSettings().effective_database_url
    safe = make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(safe.encode()).hexdigest()[:10]


def cycle_tags(cycle_id: int) -> list[str]:
    return ["aligncycle", f"cycle:{cycle_id}", f"store:{store_tag()}"]


# --- log file and heartbeat -----------------------------------------------------------------


class _LogFile(RotatingFileHandler):
    """Marks the handler this module added (added once per path); 3 files of 5 MB at most."""


def enable_log_file(path: Path) -> Path:
    """Send Prefect's logs (INFO and up) and noisy libraries' output to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h, _LogFile) and Path(h.baseFilename) == path.resolve():
            return path
    handler = _LogFile(path, maxBytes=5_000_000, backupCount=2, encoding="utf-8", delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    for name in NOISY_LOGGERS:
        lg = logging.getLogger(name)
        lg.propagate = False
        lg.addHandler(handler)
    return path


@contextmanager
def no_heartbeat() -> Iterator[None]:
    """Flows started inside run without the heartbeat thread: a sync flow otherwise waits out
    about 1 s for it at its end. Safe for short phase flows; the long-running cycle flow keeps
    its heartbeat (it is how a server notices a crashed run). Cheap when already off."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().flows.heartbeat_frequency is None:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@contextmanager
def untagged() -> Iterator[None]:
    """Inside a flow body: task runs do not inherit the flow run's tags.

    Every tagged task run costs a round of Prefect's tag concurrency machinery (see
    :func:`without_limits`), so only the tasks that show who owes what carry tags (phase and
    owner)."""
    with TagsContext(current_tags=set()):
        yield


def tag_flow_run(*wanted: str) -> None:
    """Make sure the current flow run carries these tags (an API call only if some are
    missing, e.g. when the run was started from a deployment or the UI)."""
    from prefect.client.orchestration import get_client

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    have = set(ctx.flow_run.tags)
    if set(wanted) <= have:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(ctx.flow_run.id, tags=sorted(have | set(wanted)))
    ctx.flow_run.tags = sorted(have | set(wanted))


#: How long Prefect remembers that a task run's tag set has no concurrency limit (its own: 5 s).
NO_LIMITS_TTL = 300.0


def _no_limits_cache() -> Any:
    """Prefect 3.8's client-side cache of tag sets known to have no concurrency limit, made to
    remember for :data:`NO_LIMITS_TTL` (None if this Prefect has no such cache)."""
    try:
        import cachetools
        from prefect.concurrency import services
    except ImportError:  # pragma: no cover - a Prefect without it: the slower default path
        return None
    cache = getattr(services, "_no_limits_cache", None)
    if not isinstance(cache, cachetools.TTLCache):
        return None
    if cache.ttl < NO_LIMITS_TTL:
        cache = services._no_limits_cache = cachetools.TTLCache(
            maxsize=cache.maxsize, ttl=NO_LIMITS_TTL
        )
    return cache


def without_limits(task_tags: list[str]) -> list[str]:
    """The tags, marked as carrying no concurrency limit; returns them.

    Before it runs, a tagged task run asks the server for its tags' concurrency slots. On the
    embedded SQLite server of Prefect 3.8.8 that request does an UPDATE even when no limit
    exists, often meets a busy database and gets a 503, and the client waits 2 s before it
    retries (measured: most of the demo's time). aligncycle's tags (phase, owner) are for
    finding work in the UI, not for limits, so the question is answered here and the server is
    not asked. A limit someone creates on such a tag applies within five minutes."""
    cache = _no_limits_cache()
    if cache is not None and task_tags:
        cache[frozenset(f"tag:{t}" for t in task_tags)] = True
    return task_tags


# --- what every phase shares ---------------------------------------------------------------


def retry_on_conflict(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a writing task only when a concurrent writer got in the way."""
    from sqlalchemy.exc import OperationalError

    try:
        state.result()
    except (Conflict, OperationalError):
        return True
    except BaseException:
        return False
    return False


#: Options of every task: they always run (no caching, nothing persisted: the database is the
#: record, and every writer in the domain is idempotent on a natural key).
TASK = {"cache_policy": NO_CACHE, "persist_result": False}
WRITER = TASK | {"retries": 2, "retry_delay_seconds": 1, "retry_condition_fn": retry_on_conflict}


@task(name="check phase", **TASK)
def check_phase(cycle_id: int, phase: Phase, *also: Phase) -> str:
    """Refuse (fail the flow with the domain's message, before writing) unless the cycle is in
    the phase. With ``ALIGNCYCLE_BASE_URL`` set, the run links to the cycle's page in the web
    app (where point persons decide)."""
    with store().unit_of_work() as s:
        cycle = cycle_service.get_cycle(s, cycle_id)
        domain.require_phase(cycle, phase, *also)
        title = cycle.title
    link_cycle_page(cycle_id)
    return title


def cycle_page(cycle_id: int) -> str | None:
    """The cycle's page in the web app, when ``ALIGNCYCLE_BASE_URL`` is set."""
    base = StoreSettings().base_url
    return f"{base.rstrip('/')}/cycles/{cycle_id}" if base else None


def link_cycle_page(cycle_id: int) -> str | None:
    """Inside a run: a link artifact to the cycle's page in the web app (if configured)."""
    page = cycle_page(cycle_id)
    if page:
        from prefect.artifacts import create_link_artifact

        create_link_artifact(page, link_text=f"Cycle {cycle_id} in the web app")
    return page


def list_checklist(cycle_id: int, phase: Phase) -> list[domain.ChecklistStatus]:
    """The phase's checklist items: a read inside the flow, not a task run of its own (it has
    no owner; each item it lists becomes one, see :func:`open_checklist`)."""
    with store().unit_of_work() as s:
        return domain.checklist(s, cycle_service.get_cycle(s, cycle_id), phase)


#: The state of a checklist task whose question nobody has answered yet: it ends Completed (a
#: question is not a failure, and the phase's flow carries on), named so that the Prefect UI
#: shows who still owes what, with the owner and the question in its message.
AWAITING_ANSWER = "AwaitingAnswer"


@task(name="checklist item", **TASK)
def checklist_item(item_id: int) -> Any:
    """One question of the phase for its owner: the answer given so far, if any. Unanswered,
    the task run ends in the state "AwaitingAnswer" (its message names who owes the answer)."""
    from prefect.states import Completed

    with store().unit_of_work() as s:
        status = domain.item_status(s, item_id)
    if status.answered:
        return status
    required = "a required question" if status.required else "an optional question"
    return Completed(
        data=status,
        name=AWAITING_ANSWER,
        message=f"waiting for {_who(status.owner)} to answer {required}: "
        f"{_short(status.text, 200)}",
    )


def _who(owner: str) -> str:
    """An owner label in words: an email, or "any lead of sales" for a role-owned question."""
    if not owner.startswith("role:"):
        return owner
    role, _, team = owner.removeprefix("role:").partition("/")
    return f"any {role.replace('_', ' ')}" + (f" of {team}" if team else "")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def open_checklist(cycle_id: int, phase: Phase) -> list[domain.ChecklistStatus]:
    """Inside a flow: one task run per checklist item of the phase, named after its question
    and tagged with its phase and owner, so the Prefect UI shows who owes what."""
    # One after the other: submitting them together was slower (measured).
    return [
        checklist_item.with_options(
            task_run_name=lambda name=f"{phase}.{item.key}: {_short(item.text, 80)}": name,
            tags=without_limits([f"phase:{phase}", f"owner:{item.owner}"]),
        )(item.item_id)
        for item in list_checklist(cycle_id, phase)
    ]


def artifact_key(cycle_id: int, what: str) -> str:
    return f"cycle-{cycle_id}-{what}"


def publish_markdown(cycle_id: int, what: str, markdown: str, description: str) -> None:
    create_markdown_artifact(markdown, key=artifact_key(cycle_id, what), description=description)


def publish_table(cycle_id: int, what: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(rows, key=artifact_key(cycle_id, what), description=description)
