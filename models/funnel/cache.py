"""The funnel's per-process cache of computed results, keyed by the store's data version (its
newest import, and the newest change of a source's currency: either is a new version),
shared by the threads of a process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from models.funnel.tables import FunnelImport, SourceCurrency

SC = SourceCurrency.__table__

T = TypeVar("T")


def version_key(session: Session | Connection) -> tuple[Any, ...]:
    """What a cached result is keyed by: the store, its newest import and when that import
    ended. The id alone repeats where a store is emptied and imported into again (or restored
    from an older backup) in the same process, and a result of other data was served
    (measured in the tests: a breach list of the previous test's store). Its second value is
    falsy before any import: rows written otherwise are not versioned, so not to be cached."""
    t = FunnelImport.__table__  # (a Core select: no mapper to configure)
    # a source's currency set by a person changes the numbers too (models.funnel.currency)
    currency = select(func.max(SC.c.set_at)).scalar_subquery()
    row = session.execute(
        select(t.c.id, t.c.finished_at, t.c.started_at, currency).order_by(t.c.id.desc()).limit(1)
    ).first()
    bind = session.get_bind() if isinstance(session, Session) else session
    store = str(bind.engine.url)  # one process may serve more than one store
    return (store, *(row or (0, None, None, None)))


class Cache:
    """A small least-recently-used cache shared by the threads of a process."""

    def __init__(self, size: int = 256) -> None:
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


cache = Cache()
