"""A rollup's distribution comes back value for value, whatever its values, and takes fewer
bytes than plain 64-bit integers when its values lie close together (a day's, a month's)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.funnel.distributions import pack, unpack


def values(blob: bytes | None) -> list[int]:
    d = unpack(blob)
    return [d.smallest + v for v in d.excess]


int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
groups_st = st.lists(
    st.one_of(
        st.lists(int64, max_size=12),  # anything, the extremes too
        st.lists(st.integers(1_700_000_000, 1_700_086_400), max_size=40),  # one day's times
        st.lists(st.integers(-5, 5), max_size=8),
    ),
    max_size=8,
).map(lambda groups: [sorted(g) for g in groups])


def _packed(groups: list[list[int]]) -> list[bytes]:
    values = np.array([v for g in groups for v in g], dtype=np.int64)
    bounds = np.r_[0, np.cumsum([len(g) for g in groups], dtype=np.int64)].tolist()
    return pack(values, bounds)


@settings(max_examples=150, deadline=None)
@given(groups_st)
def test_every_group_comes_back_value_for_value(groups: list[list[int]]) -> None:
    blobs = _packed(groups)
    assert len(blobs) == len(groups)
    assert [values(b) for b in blobs] == groups
    assert [b == b"" for b in blobs] == [not g for g in groups]  # no value: no bytes


def test_close_values_take_half_the_bytes_or_less() -> None:
    day = sorted(np.random.default_rng(3).integers(1_700_000_000, 1_700_086_400, 5000).tolist())
    close = [1000, 1003, 1255]  # (within 255 of the first: a byte each)
    spread = sorted(np.random.default_rng(4).integers(0, 1 << 40, 300).tolist())
    blobs = _packed([day, [], spread, [-7], close])
    assert len(blobs[4]) == 9 + 3
    assert len(blobs[0]) == 9 + 4 * len(day)  # within a day of the first: 4 bytes each
    assert blobs[2] == bytes((8,)) + bytes(8) + np.array(spread, "<i8").tobytes()  # as they are
    assert blobs[3] == bytes((1,)) + (-7).to_bytes(8, "little", signed=True) + b"\0"
    assert values(None) == [] and values(blobs[0]) == day


@settings(max_examples=100, deadline=None)
@given(groups_st, st.lists(int64, max_size=6), st.booleans())
def test_a_groups_parts_read_as_one_sorted_sequence(
    groups: list[list[int]], probes: list[int], merged: bool
) -> None:
    """The KPIs' reader compares with each part's values as stored (its smallest and each
    value's excess): counts and the i-th value are those of all the values sorted, whether
    it merges the parts or searches them (many values)."""
    from models.funnel import rollup_read

    parts = rollup_read._Parts()
    for blob in _packed(groups):
        parts.add(unpack(blob))
    every = sorted(v for g in groups for v in g)
    old = rollup_read._MERGE_BELOW
    rollup_read._MERGE_BELOW = 1 << 30 if merged else 0
    try:
        assert [parts.nth(i) for i in range(len(every))] == every
    finally:
        rollup_read._MERGE_BELOW = old
    for x in [*probes, *every[:3], *every[-3:]]:
        assert parts.count_le(x) == sum(v <= x for v in every)
        assert parts.count_lt(x) == sum(v < x for v in every)
