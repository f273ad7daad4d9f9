"""strata.arrays against plain Python loops over random groups."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from strata.arrays import exclusive_cumsum, order_by_sid, part_sums, ranges

_sizes = st.lists(st.integers(0, 6), max_size=20)


@given(_sizes)
def test_exclusive_cumsum(sizes: list[int]) -> None:
    got = exclusive_cumsum(np.array(sizes, dtype=np.int64))
    assert got.tolist() == [sum(sizes[:i]) for i in range(len(sizes) + 1)]


@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 6)), max_size=20))
def test_ranges(pairs: list[tuple[int, int]]) -> None:
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    lengths = np.array([n for _, n in pairs], dtype=np.int64)
    assert ranges(starts, lengths).tolist() == [i for s, n in pairs for i in range(s, s + n)]


@given(_sizes, st.data())
def test_part_sums_of_ints_and_of_flags(sizes: list[int], data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(-1000, 1000), min_size=sum(sizes), max_size=sum(sizes)))
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    want = [sum(values[a:b]) for a, b in pairwise(bounds)]
    got = part_sums(np.array(values, dtype=np.int64), np.array(sizes, dtype=np.int64))
    assert got.tolist() == want
    flags = np.array(values, dtype=np.int64) > 0
    want_flags = [sum(v > 0 for v in values[a:b]) for a, b in pairwise(bounds)]
    assert part_sums(flags, np.array(sizes, dtype=np.int64)).tolist() == want_flags


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-3, 3)), max_size=40),
    st.sampled_from(
        [
            "as drawn",
            "time-major",
            "series runs",
            "series runs, time reversed",
            "series runs per time window",
        ]
    ),
)
def test_order_by_sid_is_the_two_key_lexsort(rows: list[tuple[int, int]], shape: str) -> None:
    """The same permutation as lexsort, whichever sort it takes: time-major rows (few equal
    neighbours), runs of a series in time order (one stable sort of the runs suffices,
    also when a series' runs are spread over the batch) or not."""
    if shape == "time-major":
        rows = sorted(rows, key=lambda r: r[1])
    elif shape == "series runs":
        rows = sorted(rows)
    elif shape == "series runs, time reversed":
        rows = sorted(rows, key=lambda r: (r[0], -r[1]))
    elif shape == "series runs per time window":
        # Each series' rows of a window together, in time order, and the series again in
        # the next window: a batch of several requests of several points per series.
        rows = sorted(rows, key=lambda r: (r[1] // 3, r[0], r[1]))
    sid = np.array([r[0] for r in rows], dtype=np.uint64) * np.uint64(2**61)
    then = np.array([r[1] for r in rows], dtype=np.int64)
    assert order_by_sid(sid, then).tolist() == np.lexsort((then, sid)).tolist()
