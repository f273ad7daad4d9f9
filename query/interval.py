"""Rollup interval choice: the smallest "nice" step giving at most ``max_points`` buckets.

Buckets are aligned to multiples of the interval (Unix seconds), as at Datadog, so the same
point always lands in the same bucket whatever the query range; the number of buckets of
[start, end] is therefore ``end // step - start // step + 1``, not ``span / step``.
"""

from __future__ import annotations

DAY = 86400

# Datadog-like ladder of steps in seconds; beyond it, whole weeks/months of days.
LADDER: tuple[int, ...] = (
    1,
    2,
    5,
    10,
    15,
    20,
    30,
    60,
    120,
    300,
    600,
    900,
    1200,
    1800,
    3600,
    7200,
    14400,
    28800,
    43200,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
)


def bucket_count(start: int, end: int, step: int) -> int:
    """Number of step-aligned buckets touching [start, end] (inclusive, start <= end)."""
    return end // step - start // step + 1


def choose_interval(start: int, end: int, max_points: int = 300) -> int:
    """Smallest ladder step with at most ``max_points`` aligned buckets over [start, end].

    Raises ``ValueError`` if ``start > end`` or ``max_points < 1``. Beyond the ladder the
    step is the smallest multiple of 30 days that fits, so any range gets an answer.
    """
    if start > end:
        raise ValueError("start must not be after end")
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    for step in LADDER:
        if bucket_count(start, end, step) <= max_points:
            return step
    month = 30 * DAY
    # Two extra buckets at most come from alignment; grow until it fits.
    step = max(month, -(-(end - start) // max_points) // month * month)
    while bucket_count(start, end, step) > max_points:
        step += month
    return step
