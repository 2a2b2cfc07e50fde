"""Rows that list a record an earlier row of the same file lists (a report listing a deal once
per product or per contact, an export that repeats a record it updated while it ran).

Each record is stored once, from its latest row, as before; what changes is that nobody is left
to guess: such a row is counted as *repeated*, not as new or changed, and the file's summary says
how many there were, whether their values differ from the earlier row's and in which of the
file's columns, with examples naming the lines (:class:`Repeated`).

A row is a repeat when the row stored under its key was written by an earlier line of the same
file in this import. When the table held no row of the source as the file started (a first
import), every stored row naming the file was written by it: the store tells, and nothing is
kept in memory. Otherwise the file's keys so far are kept as 64-bit hashes
(:class:`SeenKeys`, 8 bytes a row), and a row is a repeat when its key was seen and the stored
row names this file and an earlier line: both must agree, so a collision of hashes cannot
make a row a repeat alone.

A record is new, changed or unchanged by what the import leaves of its values (not of the file
and line it was read from: the same export under another name, or in another order, changes
nothing), against what the store held before: a file imported again whose record's rows differ
(line 2 says one amount, line 5 another) leaves it as it was, so it is unchanged, though its
first row, compared on its own, differed. So, on an import of a file into a table that held
rows of its source, :class:`Repeats` keeps, for each record whose first row was new or changed
its values, a hash of the values stored before (:class:`KeyValues`, 16 bytes a record), which
a later row of it that is written compares with (:meth:`Repeats.first`, :meth:`Repeats.settle`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from models.words import quoted

#: examples kept per file
SAMPLES = 3
_UNSET = object()  # a record's half not written yet by the import: the stored row is before
#: the value :class:`KeyValues` holds for a record its first row made new
_NEW = -(1 << 63)


class Repeat(BaseModel):
    key: str
    line: int
    earlier: int  # the line whose values the row replaced (or repeated)
    #: the file's columns whose values differ from the earlier row's (none: the same values)
    columns: list[str] = []


class Repeated(BaseModel):
    """A file's repeated rows: how many, how many of them with other values, and examples."""

    record: str  # "lead" or "deal"
    rows: int
    differ: int = 0
    examples: list[Repeat] = []

    def sentence(self, file: str) -> str:
        """What a person reads of it, e.g. "deals.csv: 2 rows list a deal that an earlier row
        lists too, 1 of them with other values (for example “D-7” on line 9, whose 'Amount'
        differs from line 4). Each deal is counted once; where the rows differ, the later one
        is kept." """
        lists = "row lists" if self.rows == 1 else "rows list"
        head = f"{file}: {self.rows:,} {lists} a {self.record} that an earlier row lists too"
        some = [_example(e) for e in self.examples]
        ending = f"Each {self.record} is counted once"
        if not self.differ:
            return f"{head}, with the same values (for example {_or(some)}). {ending}."
        if self.differ == self.rows:
            said = "with other values" if self.rows == 1 else "all with other values"
        else:
            said = f"{self.differ:,} of them with other values"
        return (
            f"{head}, {said} (for example {_or(some)}). {ending}; where the rows differ, the "
            "later one is kept."
        )


def _example(e: Repeat) -> str:
    if not e.columns:
        return f"{quoted(e.key, 40)} on lines {e.earlier:,} and {e.line:,}"
    named = [repr(c) for c in e.columns[:3]]
    if len(e.columns) > 3:
        named[-1] = f"{len(e.columns) - 2} other columns"
    joined = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    differ = "differs" if len(e.columns) == 1 else "differ"
    return (
        f"{quoted(e.key, 40)} on line {e.line:,}, whose {joined} {differ} from line {e.earlier:,}"
    )


def _or(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{'; '.join(items[:-1])}; or {items[-1]}"


def _values(row: tuple[Any, ...]) -> int:
    """A hash of a row's values, but its file and line (the last two), as :class:`KeyValues`
    holds it."""
    h = hash(row[:-2])
    return h if h != _NEW else _NEW + 1


def _differ(columns: list[str], stored: tuple[Any, ...], row: tuple[Any, ...]) -> list[str]:
    """The columns whose values differ, but the row's file and line (the last two)."""
    pairs = zip(columns[:-2], stored[:-2], row[:-2], strict=True)
    return [c for c, a, b in pairs if a != b]


class SeenKeys:
    """Keys (a file's so far, an import's), as 64-bit hashes in sorted runs: keys are looked
    up in each run (a binary search each, in numpy) and a batch of them added as a run of its
    own, merged into the run before it while that one is at most twice as long: n keys make at
    most about log2(n) runs, 8 bytes a key (the process's own ``hash``: within one process)."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    @staticmethod
    def _hashes(keys: Sequence[str]) -> np.ndarray:
        return np.fromiter(map(hash, keys), np.int64, len(keys))

    def _holds(self, hashes: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(hashes), dtype=bool)
        for run in self.runs:
            at = np.searchsorted(run, hashes)
            np.minimum(at, len(run) - 1, out=at)
            hit |= run[at] == hashes
        return hit

    def _add(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        runs = self.runs
        runs.append(np.sort(hashes))
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            runs[-1] = np.sort(np.concatenate((runs[-1], last)), kind="stable")

    def holds(self, keys: Sequence[str]) -> np.ndarray:
        """For each key, whether it was added (maybe: a hash may collide)."""
        return self._holds(self._hashes(keys))

    def add(self, keys: Sequence[str]) -> None:
        self._add(self._hashes(keys))

    def seen_before(self, keys: Sequence[str]) -> set[str]:
        """The keys of a batch (each once) that an earlier batch held, maybe (a hash may
        collide); the batch's keys are then held too."""
        if not keys:
            return set()
        hashes = self._hashes(keys)
        hit = self._holds(hashes)
        self._add(hashes)
        return {keys[i] for i in np.flatnonzero(hit)}


class Repeats:
    """Finds and counts one file's repeated rows, for the writer of the table its rows are
    counted by (:class:`models.funnel.upsert._Target`). ``columns``: the file's column of each
    value the writer stores, in order; the last two are the row's file and line.

    A file whose rows are leads and their deals has a second writer, of the deals: for a row
    the first counted as repeated, it adds the columns of the deal that differ (:meth:`also`),
    so the row is counted once, with every column that differs."""

    def __init__(self, file: str, record: str, columns: list[str], exact: bool) -> None:
        self.file = file
        self.record = record
        self.columns = columns
        self.exact = exact
        self.seen = None if exact else SeenKeys()
        self.rows = 0
        self.differ = 0
        self.alike: list[Repeat] = []
        self.unlike: list[Repeat] = []
        self._maybe: set[str] = set()
        #: the lines counted as repeats and not yet seen by the deals' writer (when it has one)
        self.paired = False
        self._open: dict[int, Repeat] = {}
        #: not on a first import (every record is new): of each half of a record (its row of
        #: the writer counting the rows; the deal of a file of leads), the records whose first
        #: row made them new or changed their values, with the hash of the values before; and
        #: the records a repeat replaced, each half as in :meth:`_half`
        self._before = None if exact else (KeyValues(), KeyValues())
        self._now: dict[str, list[list[Any]]] = {}
        #: of a batch's repeats, the values before the import (as in _before), per half
        self._held: list[dict[str, int]] = [{}, {}]

    def batch(self, keys: Collection[str]) -> None:
        """A batch's keys, before it is written (:meth:`check` tells its repeats)."""
        if self.seen is not None:
            self._maybe = self.seen.seen_before(list(keys))
        if self._before is not None:  # (of those, what their first rows replaced)
            maybe = list(self._maybe)
            self._held = [b.get(maybe) for b in self._before]

    def check(self, key: str, stored: tuple[Any, ...], row: tuple[Any, ...]) -> bool | None:
        """None when ``row`` is no repeat; else whether it must be written (its values differ
        from the stored row's, which an earlier line of the file wrote), counted."""
        if stored[-2] != self.file or not (stored[-1] or 0) < row[-1]:
            return None
        if not self.exact and key not in self._maybe:
            return None
        self.rows += 1
        differ = _differ(self.columns, stored, row)
        example = Repeat(key=key, line=row[-1], earlier=stored[-1], columns=differ)
        self.differ += bool(differ)
        examples = self.unlike if differ else self.alike
        if len(examples) < SAMPLES:
            examples.append(example)
        if self.paired:
            self._open[row[-1]] = example
        return bool(differ)

    def also(
        self, stored: tuple[Any, ...], row: tuple[Any, ...], columns: list[str]
    ) -> bool | None:
        """The deals' writer: None when the row (its deal) is no repeat the first writer
        counted; else whether the deal must be written (its values differ from the stored
        deal's), its columns that differ added to the row's."""
        example = self._open.pop(row[-1], None)
        if example is None or stored[-2] != self.file:
            return None
        differ = _differ(columns, stored, row)
        if not differ:
            return False
        if not example.columns:  # counted with the same values: it has other values
            self.differ += 1
            if any(e is example for e in self.alike):
                self.alike = [e for e in self.alike if e is not example]
                if len(self.unlike) < SAMPLES:
                    self.unlike.append(example)
        example.columns += [c for c in differ if c not in example.columns]
        return True

    def first(self, half: int, written: dict[str, tuple[Any, ...] | None]) -> None:
        """A batch's records whose first row, of one half of the record (0: the writer
        counting the rows, 1: the deals of a file of leads), made them new (None) or changed
        their values (the row stored before)."""
        if self._before is None or not written:
            return
        self._before[half].add(
            list(written), [_NEW if old is None else _values(old) for old in written.values()]
        )

    def settle(self, half: int, key: str, stored: tuple[Any, ...], row: tuple[Any, ...]) -> int:
        """A repeat whose row (of one half of the record) replaces the stored one: +1 when
        the record, counted unchanged so far, is changed now; -1 when, counted changed, its
        values are as they were before the import; else 0."""
        if self._before is None:
            return 0
        halves = self._now.get(key)
        if halves is None:  # each half: [its values' hash before the import, as they were now]
            halves = self._now[key] = [self._half(h, key) for h in (0, 1)]
        was = all(h[1] for h in halves)
        h = halves[half]
        if h[0] is _UNSET:  # unchanged by its first row: the stored values are those before
            h[0] = _values(stored)
        h[1] = h[0] is not None and _values(row) == h[0]
        return was - all(h[1] for h in halves)

    def _half(self, half: int, key: str) -> list[Any]:
        """A half of a record before its first repeat is written: the hash of its values
        before the import (None: it was new), whether they are as they were."""
        before = self._held[half].get(key)
        if before is None:
            return [_UNSET, True]
        return [None if before == _NEW else before, False]

    def done(self) -> None:
        """The deals' writer has seen a batch: the lines it had no deal for are done too."""
        self._open.clear()

    def summary(self) -> Repeated | None:
        if not self.rows:
            return None
        examples = (self.unlike + self.alike)[:SAMPLES] if self.differ else self.alike
        return Repeated(record=self.record, rows=self.rows, differ=self.differ, examples=examples)


class KeyValues:
    """Keys with a 64-bit integer each, as :class:`SeenKeys` holds keys (hashes in sorted runs,
    each run's values beside its keys): 16 bytes a key. A key is added once."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, keys: Sequence[str], values: Sequence[int]) -> None:
        if not keys:
            return
        runs = self.runs
        runs.append(_sorted(SeenKeys._hashes(keys), np.asarray(values, dtype=np.int64)))
        while len(runs) > 1 and len(runs[-2][0]) <= 2 * len(runs[-1][0]):
            (k1, v1), (k2, v2) = runs[-2], runs.pop()
            runs[-1] = _sorted(np.concatenate((k1, k2)), np.concatenate((v1, v2)))

    def get(self, keys: Sequence[str]) -> dict[str, int]:
        """The value of each key added (a hash may collide), by key."""
        found: dict[str, int] = {}
        if not keys:
            return found
        hashes = SeenKeys._hashes(keys)
        for run, values in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            for i in np.flatnonzero(run[at] == hashes):
                found[keys[i]] = int(values[at[i]])
        return found


def _sorted(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order]
