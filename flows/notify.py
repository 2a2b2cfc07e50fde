"""Delivery of planned notifications through apprise (a Prefect dependency).

No Prefect import at module level: the CLI uses :func:`check_url` and the cadence flows wrap
:func:`deliver` in a task.

How a message is delivered exactly once, and the one exception
---------------------------------------------------------------
1. claim — whole (channel, person) groups, as many as fit in 2,000 rows, go ``pending`` →
   ``sending`` (attempts + 1, who, when) in one UPDATE, committed; two deliverers never take
   the same row;
2. send — one apprise call per message to its channel's URL: a person's reminders (or
   escalations) on a channel are one message listing each item (:mod:`models.cadence.grouped`),
   other kinds one message per row;
3. mark — the message's rows ``sent`` (or back to ``pending`` with the error; ``failed`` after
   the last attempt) in one statement, committed as soon as its send returns.

A deliverer that dies leaves the rows it claimed and had not sent yet ``sending``: once the
claim is older than ``stale_after`` (10 minutes) a later run takes them again, so nothing is
lost. Only a message whose send the channel had accepted when the deliverer died, before its
mark committed — a window of a few milliseconds per message, plus the request itself if the
channel acts before it answers — goes out twice when it is retried: the one at-least-once
window. Everything else is exactly once: planning never inserts a key twice and a ``sent``
row is never claimed again.

On PostgreSQL a mark commits without waiting for its write-ahead log to reach the disk
(``synchronous_commit = off`` for that transaction alone: about 15% faster delivery on a
2-core machine). The worker's death loses no mark (the server has it); only a crash of the
database server itself within a fraction of a second of a mark loses it, and that message is
then sent again once its claim is stale: the same at-least-once window, widened to that
case.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from models.base import utcnow
from models.cadence import channels, grouped, outbox, urls
from models.cadence.tables import NotificationKind
from models.db import Store
from models.errors import DomainError, InvalidInput

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


class Sender:
    """Sends through apprise, one apprise object per destination URL, reused for the run.

    Building an apprise object costs about 25 ms (URL parsing, plugin set-up); reusing it
    brings a send to the cost of the request. Sends to one destination are serialised, so
    apprise's per-service pacing (e.g. Slack: one post per 1.2 s per webhook) holds even with
    several delivery threads; different destinations go in parallel.
    """

    def __init__(self, logs: _ThreadLogs | None = None) -> None:
        self.logs = logs
        self._lock = threading.Lock()
        self._targets: dict[str, tuple[Any, threading.Lock]] = {}

    def _target(self, url: str) -> tuple[Any, threading.Lock] | None:
        import apprise

        with self._lock:
            if url not in self._targets:
                obj = apprise.Apprise()
                if not obj.add(url):
                    return None
                self._targets[url] = (obj, threading.Lock())
            return self._targets[url]

    def __call__(self, url: str, title: str, body: str) -> str | None:
        """Send one message; None on success, else a one-line reason."""
        target = self._target(url)
        if target is None:
            return "apprise does not understand the channel URL"
        obj, lock = target
        with lock:
            ok = obj.notify(body=body, title=title)
        reason = self.logs.take() if self.logs is not None else ""
        if ok:
            return None
        return reason or "the channel refused the message"


def send(url: str, title: str, body: str) -> str | None:
    """Send one message (no reuse); None on success, else a one-line reason."""
    return Sender()(url, title, body)


@dataclass
class DeliveryResult:
    """Counts of notifications (a grouped message carries several), and of messages sent."""

    sent: int = 0
    retrying: int = 0  # failed this time, pending for the next run
    failed: int = 0  # failed for good (attempts used up, or no channel)
    messages: int = 0  # messages sent: one per send, grouped or not
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "messages": self.messages,
            "retrying": self.retrying,
            "failed": self.failed,
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


def _by_destination(
    claimed: Sequence[grouped.Message], one: Callable[[grouped.Message], None], workers: int
) -> None:
    """Run ``one`` over a batch on ``workers`` threads, one message per destination at a time:
    a destination apprise paces (Slack: a post per 1.2 s per webhook; SMTP: 5.5 s) holds up its
    own messages only, while the other threads go on with other destinations. The first error
    stops the batch (what is claimed and not sent is retried once the claim is stale)."""
    queues: dict[str, deque[grouped.Message]] = {}
    for out in claimed:
        queues.setdefault(out.url or f"#{out.items[0].id}", deque()).append(out)
    cond = threading.Condition()
    busy: set[str] = set()
    failure: list[BaseException] = []

    def worker() -> None:
        while True:
            with cond:
                while True:
                    if failure:
                        return
                    ready = next((u for u, q in queues.items() if q and u not in busy), None)
                    if ready is not None:
                        break
                    if not any(queues.values()):
                        return
                    cond.wait()
                busy.add(ready)
                out = queues[ready].popleft()
            try:
                one(out)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with cond:
                    failure.append(exc)
            finally:
                with cond:
                    busy.discard(ready)
                    cond.notify_all()

    threads = [
        threading.Thread(target=worker, daemon=True)
        for _ in range(max(1, min(workers, len(queues))))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        raise failure[0]


def deliver(
    store: Store,
    kinds: Sequence[NotificationKind] | None = None,
    *,
    groups: int = 200,
    workers: int = 4,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_items: int = grouped.MAX_ITEMS,
    retry_delays: Sequence[float] = (),
    secrets: Callable[[Sequence[str]], dict[str, str]] | None = load_prefect_secrets,
    sender: Callable[[str, str, str], str | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    sweep: bool = False,
) -> DeliveryResult:
    """Deliver the pending notifications (of ``kinds``, or all): claim those of up to
    ``groups`` (channel, person) pairs (at most 2,000 rows, see
    :func:`models.cadence.outbox.claim_groups`) in one transaction, send a person's reminders (or
    escalations) on a channel as one message of at most ``max_items`` items (``max_items=1``:
    one message per notification), ``workers`` sends at a time, and mark each message's rows
    as soon as it is sent.

    ``retry_delays``: the messages whose send failed are tried again in this call after each
    delay in turn (backoff, e.g. 30 s then 120 s), until sent or their ``max_attempts`` are
    used up (then ``failed``); without delays a failed message waits for the next call, and
    no call takes it before its backoff has passed (:data:`models.cadence.outbox.BACKOFF`).
    ``sweep``: only what the scheduled sweep delivers (account links and messages tried
    before, :func:`models.cadence.outbox.sweepable`). The result counts each notification
    once, by how it ended."""
    started = time.perf_counter()
    claimer = uuid.uuid4().hex[:12]
    # id -> (sent | retrying | failed, why, the id of the first row of its message)
    ended: dict[int, tuple[str, str | None, int]] = {}
    messages_sent = [0]  # messages (each of one or more notifications) that went out
    lock = threading.Lock()
    logs = _ThreadLogs()
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(logs)
    with store.unit_of_work() as s:
        names = channels.secret_names(s)
    secret_values = secrets(names) if (secrets and names) else {}
    postgres = store.engine.dialect.name == "postgresql"
    stale_before = utcnow() - stale_after
    default_sender = Sender(logs)

    def one(message: grouped.Message) -> None:
        error: str | None
        if message.url is None:
            error = "the channel was removed or disabled"
            final_ids, retry_ids = message.ids, []
        else:
            url = None
            try:
                url = urls.resolve_url(message.url, secret_values)
                error = (sender or default_sender)(url, message.subject, message.body)
            except DomainError as exc:
                error = exc.message
            except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the run
                error = f"{type(exc).__name__}: {exc}"
            if error is not None:  # stored, logged and printed: no secret of the URL in it
                error = urls.redact(error, message.url, url)
            final_ids = [i.id for i in message.items if i.attempts >= max_attempts]
            retry_ids = [i.id for i in message.items if i.attempts < max_attempts]
        tried = min((i.attempts for i in message.items), default=1)
        # At once: the at-least-once window ends here. A plain connection, not a session: this
        # transaction runs once per message (see outbox.mark_sent); one statement marks every
        # row the message carried.
        with store.engine.begin() as conn:
            if postgres:  # the commit need not wait for the disk (see the module's docstring)
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            if error is None:
                outbox.mark_sent(conn, message.ids, claimer)
            else:
                outbox.mark_failed(conn, final_ids, claimer, error, final=True)
                outbox.mark_failed(conn, retry_ids, claimer, error, final=False, attempts=tried)
        with lock:
            if error is None:
                messages_sent[0] += 1
                for i in message.ids:
                    ended[i] = ("sent", None, message.ids[0])
            else:
                said = f"{message.words}: {error}"
                for i in final_ids:
                    ended[i] = ("failed", said, message.ids[0])
                for i in retry_ids:
                    ended[i] = ("retrying", said, message.ids[0])

    def deliver_claimed(claimed: list[outbox.Outgoing]) -> None:
        _by_destination(grouped.messages(claimed, max_items=max_items), one, workers)

    def first_pass() -> None:
        while True:
            with store.unit_of_work() as s:
                claimed = outbox.claim_groups(
                    s, claimer, stale_before, kinds, groups=groups, sweep=sweep
                )
            if not claimed:
                break
            deliver_claimed(claimed)

    def retry_pass(ids: list[int]) -> None:
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            with store.unit_of_work() as s:
                claimed = outbox.claim_batch(
                    s, claimer, stale_before, kinds, limit=len(chunk), ids=chunk
                )
            if claimed:
                deliver_claimed(claimed)

    try:
        first_pass()
        for delay in retry_delays:
            again = sorted(i for i, (how, _, _) in ended.items() if how == "retrying")
            if not again:
                break
            sleep(delay)
            retry_pass(again)
    finally:
        apprise_logger.removeHandler(logs)
    result = DeliveryResult()
    reported: set[int] = set()
    for i in sorted(ended):
        how, error, first = ended[i]
        if how == "sent":
            result.sent += 1
            continue
        if how == "failed":
            result.failed += 1
        else:
            result.retrying += 1
        if error and first not in reported:  # a message's error once, not per item
            reported.add(first)
            result.errors.append(error)
    result.messages = messages_sent[0]
    result.seconds = time.perf_counter() - started
    return result
