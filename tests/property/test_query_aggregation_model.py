"""Property: the numpy aggregation equals the plain-Python reference model for any points."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from query.language import SpaceAggregator
from tests.unit.test_query_aggregate import Point, as_dict, reference_aggregate, run

points_st = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.integers(-1000, 1000),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    max_size=200,
)
groups_st = st.dictionaries(
    st.integers(0, 5), st.lists(st.integers(0, 3), min_size=0, max_size=3, unique=True)
)


@settings(max_examples=300, deadline=None)
@given(
    points=points_st,
    groups_of=groups_st,
    interval=st.sampled_from([1, 2, 5, 10, 60, 300, 5000]),
    aggregator=st.sampled_from(list(SpaceAggregator)),
)
def test_numpy_matches_reference(
    points: list[Point],
    groups_of: dict[int, list[int]],
    interval: int,
    aggregator: SpaceAggregator,
) -> None:
    got = as_dict(run(points, groups_of, interval, aggregator))
    want = reference_aggregate(points, groups_of, interval, aggregator)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-6), (key, got[key], value)


@settings(max_examples=100, deadline=None)
@given(points=points_st, aggregator=st.sampled_from(list(SpaceAggregator)))
def test_output_sorted_and_bucket_aligned(points: list[Point], aggregator: SpaceAggregator) -> None:
    result = run(points, {s: [s % 2] for s in range(6)}, 10, aggregator)
    keys = list(zip(result.group.tolist(), result.bucket.tolist(), strict=True))
    assert keys == sorted(set(keys))
    assert all(b % 10 == 0 for b in result.bucket.tolist())
