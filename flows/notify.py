"""Delivery of planned notifications through apprise (a Prefect dependency).

No Prefect import at module level: the CLI uses :func:`check_url` and the cadence flows wrap
:func:`deliver` in a task.

How a message is delivered exactly once, and the one exception
---------------------------------------------------------------
Each notification row is taken by one deliverer at a time:

1. claim — ``pending`` → ``sending`` (attempts + 1, who, when), committed;
2. send — one apprise call to the channel's URL;
3. mark — ``sent`` (or back to ``pending`` with the error; ``failed`` after the last attempt),
   committed at once, before the next message.

A deliverer that dies between 1 and 2 leaves a row ``sending`` that was never sent: once the
claim is older than ``stale_after`` a later run takes it again, so nothing is lost. Only a death
after the channel accepted the message (2) and before the mark (3) committed — a few
milliseconds per message — makes that message go out twice when it is retried: the one
at-least-once window. Everything before and after is exactly once, because planning never
inserts a key twice and a ``sent`` row is never claimed again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from models.base import utcnow
from models.cadence import NotificationKind
from models.db import Store
from models.errors import DomainError, InvalidInput
from models.services import cadence as svc

#: How long a claim may stay ``sending`` before another run treats its deliverer as dead.
#: Well above apprise's network timeouts, so a slow send is never taken twice.
DEFAULT_STALE_AFTER = timedelta(minutes=10)
DEFAULT_MAX_ATTEMPTS = 3


class _ThreadLogs(logging.Handler):
    """Collects apprise's warnings per thread, to say why a send failed."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.setdefault(record.thread or 0, []).append(record.getMessage())

    def take(self) -> str:
        lines = self.lines.pop(threading.get_ident(), [])
        return "; ".join(dict.fromkeys(lines))[-1000:]


def check_url(url: str) -> None:
    """Raise :class:`InvalidInput` unless apprise understands ``url`` (indirections pass)."""
    import apprise

    if url.startswith(("env:", "secret:")):
        return
    if not apprise.Apprise().add(url):
        raise InvalidInput("apprise does not understand this URL (check its format)")


def send(url: str, title: str, body: str, logs: _ThreadLogs | None = None) -> str | None:
    """Send one message; None on success, else a one-line reason."""
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return "apprise does not understand the channel URL"
    ok = sender.notify(body=body, title=title)
    if ok:
        if logs is not None:
            logs.take()
        return None
    reason = logs.take() if logs is not None else ""
    return reason or "the channel refused the message"


@dataclass
class DeliveryResult:
    sent: int = 0
    retrying: int = 0  # failed this time, pending for the next run
    failed: int = 0  # failed for good (attempts used up, or no channel)
    taken_by_others: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "taken_by_others": self.taken_by_others,
            "seconds": round(self.seconds, 3),
            "errors": self.errors[:20],
        }


def load_prefect_secrets(names: Sequence[str]) -> dict[str, str]:
    """``secret:NAME`` channels: the values of Prefect Secret blocks (needs a Prefect API)."""
    if not names:
        return {}
    from prefect.blocks.system import Secret

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = str(Secret.load(name).get())
        except Exception:  # noqa: BLE001 - an unknown block only fails its own channels
            continue
    return out


def deliver(
    store: Store,
    kinds: Sequence[NotificationKind] | None = None,
    *,
    batch: int = 200,
    workers: int = 4,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    secrets: Callable[[Sequence[str]], dict[str, str]] | None = load_prefect_secrets,
    sender: Callable[[str, str, str], str | None] | None = None,
) -> DeliveryResult:
    """Deliver pending notifications (of ``kinds``, or all) in batches, ``workers`` at a time.
    Each message is claimed, sent and marked on its own (see the module docstring)."""
    started = time.perf_counter()
    claimer = f"{uuid.uuid4().hex[:12]}"
    result = DeliveryResult()
    lock = threading.Lock()
    logs = _ThreadLogs()
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(logs)
    with store.unit_of_work() as s:
        names = svc.secret_names(s)
    secret_values = secrets(names) if (secrets and names) else {}
    stale_before = utcnow() - stale_after

    def one(nid: int) -> None:
        with store.unit_of_work() as s:
            out = svc.claim(s, nid, claimer, stale_before)
        if out is None:
            with lock:
                result.taken_by_others += 1
            return
        error: str | None
        if out.url is None:
            error, final = "the channel was removed or disabled", True
        else:
            try:
                url = svc.resolve_url(out.url, secret_values)
                error = (sender or (lambda u, t, b: send(u, t, b, logs)))(
                    url, out.subject, out.body
                )
            except DomainError as exc:
                error = exc.message
            except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the run
                error = f"{type(exc).__name__}: {exc}"
            final = out.attempts >= max_attempts
        with store.unit_of_work() as s:
            if error is None:
                svc.mark_sent(s, nid, claimer)
            else:
                svc.mark_failed(s, nid, claimer, error, final)
        with lock:
            if error is None:
                result.sent += 1
            else:
                result.errors.append(f"{out.key}: {error}")
                if final:
                    result.failed += 1
                else:
                    result.retrying += 1

    try:
        after = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            while True:
                with store.unit_of_work() as s:
                    ids = svc.deliverable_ids(s, kinds, stale_before, after_id=after, limit=batch)
                if not ids:
                    break
                futures = [pool.submit(one, nid) for nid in ids]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:  # stop at once: what is not claimed stays pending
                        f.cancel()
                    raise
                after = ids[-1]
    finally:
        apprise_logger.removeHandler(logs)
    result.seconds = time.perf_counter() - started
    return result
