"""A rollup's distribution comes back value for value, whatever its values, and takes fewer
bytes than plain 64-bit integers when its values lie close together (a day's, a month's)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.funnel.distributions import pack, unpack

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


@settings(max_examples=300, deadline=None)
@given(groups_st)
def test_every_group_comes_back_value_for_value(groups: list[list[int]]) -> None:
    blobs = _packed(groups)
    assert len(blobs) == len(groups)
    assert [list(unpack(b)) for b in blobs] == groups
    assert [b == b"" for b in blobs] == [not g for g in groups]  # no value: no bytes


def test_close_values_take_a_byte_or_two_each() -> None:
    day = sorted(np.random.default_rng(3).integers(1_700_000_000, 1_700_086_400, 5000).tolist())
    spread = sorted(np.random.default_rng(4).integers(0, 1 << 40, 300).tolist())
    blobs = _packed([day, [], spread, [7]])
    assert len(blobs[0]) == 9 + (len(day) - 1)  # differences under 256 seconds: a byte each
    assert len(blobs[2]) == 9 + 8 * (len(spread) - 1)  # (nothing smaller holds them)
    assert blobs[3] == bytes((1,)) + (7).to_bytes(8, "little")
    assert unpack(None).tolist() == [] and list(unpack(blobs[0])) == day
