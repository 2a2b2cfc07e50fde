"""A KPI rollup's distribution: a group's values (hand-off latencies, MQL times, deal cycle
times...), sorted 64-bit integers, stored as their differences.

The bytes of one group's values: none for no value; else one byte ``w`` (1, 2, 4 or 8), the
first value (a little-endian signed 64-bit integer), then each following value's difference
from the one before as a little-endian unsigned integer of ``w`` bytes, the fewest that hold
the group's largest difference. Sorted values of one day or month lie close together: at
1,000,000 leads the rollups took 68 MB instead of 162 MB as plain 64-bit integers, and writing
them (with the commit) 0.9-1.2 s instead of 1.7-2.3 s on SQLite (measured, the same rows).
Exact: differences and sums are taken modulo 2**64, so any 64-bit values come back as they
went in.

Migration 0029 turned the plain integers stored before into this form, with a copy of these
two functions (a migration keeps the format of its day).
"""

from __future__ import annotations

from array import array

import numpy as np

#: the largest difference each width holds (exclusive), for widths 1, 2 and 4 bytes (else 8)
_LIMITS = np.array([1 << 8, 1 << 16, 1 << 32], np.uint64)
_WIDTHS = (1, 2, 4, 8)


def pack(values: np.ndarray, bounds: list[int]) -> list[bytes]:
    """The bytes of each group ``i``: ``values[bounds[i]:bounds[i + 1]]``, sorted 64-bit
    integers (the groups side by side, in order)."""
    out = [b""] * (len(bounds) - 1)
    if not len(values):
        return out
    whole = np.ascontiguousarray(values, dtype="<i8")
    u = whole.view("<u8").astype(np.uint64, copy=False)
    diff = np.empty(len(u), np.uint64)
    diff[0] = 0
    np.subtract(u[1:], u[:-1], out=diff[1:])  # (modulo 2**64: never negative when sorted)
    ends = np.asarray(bounds, np.int64)
    starts = ends[:-1][ends[1:] > ends[:-1]]  # the groups with values, which cover them all
    diff[starts] = 0  # a group's first value is stored whole
    width = np.searchsorted(_LIMITS, np.maximum.reduceat(diff, starts), side="right").tolist()
    narrow = {w: diff.astype(f"<u{_WIDTHS[w]}") for w in set(width)}
    first = whole.tobytes()
    heads = [bytes((w,)) for w in _WIDTHS]
    i = 0
    for group, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if b > a:
            w = width[i]
            i += 1
            out[group] = heads[w] + first[8 * a : 8 * a + 8] + narrow[w][a + 1 : b].tobytes()
    return out


def unpack(blob: bytes | None) -> array:
    """The values of :func:`pack`'s bytes of one group, as an :mod:`array` of ``q``."""
    a = array("q")
    if not blob:
        return a
    diffs = np.frombuffer(blob, f"<u{blob[0]}", offset=9)
    values = np.empty(len(diffs) + 1, np.uint64)
    values[0] = np.frombuffer(blob, "<u8", 1, 1)[0]
    values[1:] = diffs
    np.cumsum(values, out=values)
    a.frombytes(values.view(np.int64).tobytes())
    return a
