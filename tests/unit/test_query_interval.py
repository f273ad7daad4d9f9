"""Rollup interval choice."""

from __future__ import annotations

import pytest

from query.interval import DAY, LADDER, bucket_count, choose_interval


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (0, 1),
        (299, 1),  # 300 one-second buckets
        (300, 2),
        (3600, 15),  # 1 h -> 15 s (241 buckets), as in Datadog's 1 h graphs
        (4 * 3600, 60),
        (DAY, 300),
        (7 * DAY, 3600),
        (30 * DAY, 14400),
        (365 * DAY, 2 * DAY),
    ],
)
def test_ladder_choice(span: int, expected: int) -> None:
    start = 1_700_000_000 - 1_700_000_000 % DAY  # aligned to every step
    assert choose_interval(start, start + span) == expected


def test_smallest_step_that_fits() -> None:
    start, end = 1_700_000_123, 1_700_090_456
    step = choose_interval(start, end, 300)
    assert bucket_count(start, end, step) <= 300
    smaller = [s for s in LADDER if s < step]
    assert all(bucket_count(start, end, s) > 300 for s in smaller)


def test_alignment_counts_partial_buckets() -> None:
    # [59, 60] touches two 60 s buckets although the span is one second.
    assert bucket_count(59, 60, 60) == 2
    assert choose_interval(59, 60, 1) == 120


def test_beyond_the_ladder() -> None:
    step = choose_interval(0, 50 * 365 * DAY, 300)
    assert step % (30 * DAY) == 0
    assert bucket_count(0, 50 * 365 * DAY, step) <= 300


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="start"):
        choose_interval(10, 5)
    with pytest.raises(ValueError, match="max_points"):
        choose_interval(0, 5, 0)
