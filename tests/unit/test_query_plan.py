"""The planner: grouping rules and what it asks the stores."""

from __future__ import annotations

import numpy as np
import pytest

from query.language import parse_query
from query.plan import TooManySeries, execute, group_membership
from tests.unit.query_fakes import FakeStore


def test_membership_multi_value_missing_and_unknown_series() -> None:
    sids = np.array([1, 2, 3, 4], dtype=np.uint64)
    tags = {
        1: ("env:a", "env:b", "host:x"),
        2: ("host:y", "bare"),
        3: ("env:a", "host:x"),
        # sid 4 unknown to the tag index (lag): lands in N/A groups
    }
    membership, labels = group_membership(sids, tags, ("env", "host"))
    assert labels == [
        ("env:N/A", "host:N/A"),
        ("env:N/A", "host:y"),
        ("env:a", "host:x"),
        ("env:b", "host:x"),
    ]
    pairs = sorted(
        zip(membership.series.tolist(), [labels[g] for g in membership.group.tolist()], strict=True)
    )
    assert pairs == [
        (0, ("env:a", "host:x")),
        (0, ("env:b", "host:x")),
        (1, ("env:N/A", "host:y")),
        (2, ("env:a", "host:x")),
        (3, ("env:N/A", "host:N/A")),
    ]


def test_no_group_by_is_one_group_without_lookup() -> None:
    store = FakeStore()
    store.add("o", "m", ["a:1"], [(0, 1.0)])
    store.add("o", "m", ["a:2"], [(0, 3.0)])
    result = execute(parse_query("avg:m{*}"), "o", 0, 10, store, max_points=300, max_series=10)
    assert store.lookups == 0
    [series] = result.series
    assert series.tag_set == ()
    assert series.value.tolist() == [2.0]


def test_series_with_two_values_counts_in_both_groups() -> None:
    store = FakeStore()
    store.add("o", "m", ["env:a", "env:b"], [(0, 5.0)])
    store.add("o", "m", ["env:a"], [(0, 1.0)])
    q = parse_query("sum:m{*} by {env}")
    result = execute(q, "o", 0, 10, store, max_points=300, max_series=10)
    assert [(s.tag_set, s.value.tolist()) for s in result.series] == [
        (("env:a",), [6.0]),
        (("env:b",), [5.0]),
    ]


def test_points_outside_the_range_are_ignored() -> None:
    store = FakeStore()
    store.add("o", "m", [], [(5, 1.0), (10, 2.0), (20, 3.0), (21, 100.0)])
    result = execute(parse_query("max:m{*}"), "o", 10, 20, store, max_points=300, max_series=10)
    assert result.series[0].ts.tolist() == [10, 20]
    assert result.series[0].value.tolist() == [2.0, 3.0]


def test_too_many_series_is_refused_before_fetching() -> None:
    store = FakeStore()
    for i in range(3):
        store.add("o", "m", [f"h:{i}"], [(0, 1.0)])
    with pytest.raises(TooManySeries, match="3 series"):
        execute(parse_query("avg:m{*}"), "o", 0, 10, store, max_points=300, max_series=2)
