"""Numpy aggregation against a plain-Python reference model (dicts, no numpy)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from query.aggregate import Grouped, Membership, aggregate, space_aggregate, time_rollup
from query.language import SpaceAggregator

Point = tuple[int, int, float]  # (series, ts, value)
Expected = dict[tuple[int, int], float]  # (group, bucket) -> value


def reference_aggregate(
    points: list[Point],
    groups_of: dict[int, list[int]],
    interval: int,
    aggregator: SpaceAggregator,
) -> Expected:
    """Obviously-correct model: average per (series, bucket), then combine per group."""
    per_series: dict[tuple[int, int], list[float]] = defaultdict(list)
    for s, ts, v in points:
        per_series[(s, ts - ts % interval)].append(v)
    per_group: dict[tuple[int, int], list[float]] = defaultdict(list)
    for (s, bucket), values in per_series.items():
        for g in groups_of.get(s, []):
            per_group[(g, bucket)].append(sum(values) / len(values))

    def combine(xs: list[float]) -> float:
        if aggregator is SpaceAggregator.AVG:
            return sum(xs) / len(xs)
        if aggregator is SpaceAggregator.SUM:
            return sum(xs)
        return min(xs) if aggregator is SpaceAggregator.MIN else max(xs)

    return {key: float(combine(values)) for key, values in per_group.items()}


def run(
    points: list[Point],
    groups_of: dict[int, list[int]],
    interval: int,
    aggregator: SpaceAggregator,
) -> Grouped:
    pairs = [(s, g) for s, gs in groups_of.items() for g in gs]
    membership = Membership(
        np.array([s for s, _ in pairs], dtype=np.int64),
        np.array([g for _, g in pairs], dtype=np.int64),
    )
    return aggregate(
        np.array([p[0] for p in points], dtype=np.int64),
        np.array([p[1] for p in points], dtype=np.int64),
        np.array([p[2] for p in points], dtype=np.float64),
        membership,
        interval,
        aggregator,
    )


def as_dict(result: Grouped) -> Expected:
    return {
        (int(g), int(b)): float(v)
        for g, b, v in zip(result.group, result.bucket, result.value, strict=True)
    }


POINTS: list[Point] = [
    # series 0: two points in bucket 0, one in bucket 10
    (0, 1, 1.0),
    (0, 9, 3.0),
    (0, 12, 10.0),
    # series 1: one point in bucket 0, one in bucket 20 (bucket 10 empty)
    (1, 5, 4.0),
    (1, 25, -2.0),
    # series 2: only in bucket 10
    (2, 19, 7.0),
]


@pytest.mark.parametrize("aggregator", list(SpaceAggregator))
def test_one_group_matches_reference(aggregator: SpaceAggregator) -> None:
    groups_of = {0: [0], 1: [0], 2: [0]}
    result = run(POINTS, groups_of, 10, aggregator)
    assert as_dict(result) == pytest.approx(reference_aggregate(POINTS, groups_of, 10, aggregator))


def test_rollup_before_space_aggregation_by_hand() -> None:
    # Bucket 0: series 0 averages (1+3)/2 = 2 first, then avg with series 1 (4) -> 3,
    # not the flat average of all three points (8/3).
    result = as_dict(run(POINTS, {0: [0], 1: [0], 2: [0]}, 10, SpaceAggregator.AVG))
    assert result == {(0, 0): 3.0, (0, 10): 8.5, (0, 20): -2.0}
    total = as_dict(run(POINTS, {0: [0], 1: [0], 2: [0]}, 10, SpaceAggregator.SUM))
    assert total == {(0, 0): 6.0, (0, 10): 17.0, (0, 20): -2.0}


def test_groups_and_multi_membership() -> None:
    # series 0 in groups 0 and 1; series 1 in group 1; series 2 in no group (dropped).
    groups_of = {0: [0, 1], 1: [1]}
    result = run(POINTS, groups_of, 10, SpaceAggregator.MAX)
    assert as_dict(result) == {
        (0, 0): 2.0,
        (0, 10): 10.0,
        (1, 0): 4.0,
        (1, 10): 10.0,
        (1, 20): -2.0,
    }
    assert [(g, s.start, s.stop) for g, s in result.slices()] == [(0, 0, 2), (1, 2, 5)]


def test_buckets_without_data_are_omitted() -> None:
    result = run([(0, 0, 1.0), (0, 100, 2.0)], {0: [0]}, 10, SpaceAggregator.AVG)
    assert result.bucket.tolist() == [0, 100]


def test_unsorted_input_and_negative_timestamps() -> None:
    points: list[Point] = [(1, -5, 2.0), (0, 7, 1.0), (1, -1, 4.0), (0, 3, 3.0)]
    groups_of = {0: [0], 1: [0]}
    result = run(points, groups_of, 10, SpaceAggregator.SUM)
    assert as_dict(result) == {(0, -10): 3.0, (0, 0): 2.0}


def test_empty_inputs() -> None:
    empty = run([], {0: [0]}, 10, SpaceAggregator.AVG)
    assert empty.group.size == 0
    assert empty.slices() == []
    rolled = time_rollup(np.array([0], np.int64), np.array([0], np.int64), np.array([1.0]), 10)
    none = space_aggregate(
        rolled, Membership(np.empty(0, np.int64), np.empty(0, np.int64)), SpaceAggregator.MIN
    )
    assert none.group.size == 0


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        time_rollup(np.array([0], np.int64), np.array([0], np.int64), np.array([1.0]), 0)
