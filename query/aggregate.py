"""Pure numpy aggregation: time rollup per series, then space aggregation per group.

Datadog's order of operations: each series is first rolled up in time (average of its
points in each interval-aligned bucket), then the rolled-up values of all series of a group
are combined per bucket with the space aggregator. Buckets where no series of a group has
data are absent from that group's result (no fill).

Everything is columnar and sort-based (``lexsort`` + ``reduceat``): no Python loop runs per
point. Series are identified by a dense index (0..n_series-1) assigned by the planner; a
series may belong to several groups (a series tagged ``env:a`` and ``env:b`` grouped by
``env`` counts in both, as at Datadog).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from query.language import SpaceAggregator

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Rolled:
    """One row per (series, bucket) with data, sorted by (series, bucket)."""

    series: Ints
    bucket: Ints  # bucket start, Unix seconds, a multiple of the interval
    value: Floats


@dataclass(frozen=True, slots=True)
class Membership:
    """Pairs (series, group): which groups each series contributes to."""

    series: Ints
    group: Ints


@dataclass(frozen=True, slots=True)
class Grouped:
    """One row per (group, bucket) with data, sorted by (group, bucket)."""

    group: Ints
    bucket: Ints
    value: Floats

    def slices(self) -> list[tuple[int, slice]]:
        """(group, rows of that group) for every group present, in group order."""
        if self.group.size == 0:
            return []
        starts = _run_starts(self.group)
        ends = np.append(starts[1:], self.group.size)
        return [
            (int(self.group[s]), slice(int(s), int(e)))
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]


def _run_starts(*keys: npt.NDArray[np.int64]) -> Ints:
    """Indices where any of the (already sorted) key columns changes value; includes 0."""
    n = keys[0].size
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for k in keys:
            new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new).astype(np.int64)


def time_rollup(series: Ints, ts: Ints, value: Floats, interval: int) -> Rolled:
    """Average of each series' points per ``interval``-aligned bucket.

    Inputs are equal-length columns in any order. ``interval`` must be positive.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    if series.size == 0:
        return Rolled(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    # np.mod with a positive divisor is non-negative, so buckets floor even before 1970.
    bucket = ts - np.mod(ts, interval)
    order = np.lexsort((bucket, series))
    s, b, v = series[order], bucket[order], value[order]
    starts = _run_starts(s, b)
    sums = np.add.reduceat(v, starts)
    counts = np.diff(np.append(starts, s.size))
    return Rolled(s[starts], b[starts], sums / counts)


def space_aggregate(rolled: Rolled, membership: Membership, aggregator: SpaceAggregator) -> Grouped:
    """Combine rolled-up values of the series of each group, per bucket.

    Series of ``rolled`` absent from ``membership`` contribute to no group.
    """
    order = np.argsort(membership.series, kind="stable")
    m_series, m_group = membership.series[order], membership.group[order]
    # Expand each rolled row once per group of its series (vectorised "join").
    lo = np.searchsorted(m_series, rolled.series, side="left")
    hi = np.searchsorted(m_series, rolled.series, side="right")
    fan = hi - lo
    rows = np.repeat(np.arange(rolled.series.size), fan)
    first = np.repeat(lo, fan)
    within = np.arange(rows.size) - np.repeat(np.cumsum(fan) - fan, fan)
    group = m_group[first + within]
    bucket = rolled.bucket[rows]
    value = rolled.value[rows]
    if group.size == 0:
        return Grouped(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    order = np.lexsort((bucket, group))
    g, b, v = group[order], bucket[order], value[order]
    starts = _run_starts(g, b)
    if aggregator is SpaceAggregator.SUM:
        out = np.add.reduceat(v, starts)
    elif aggregator is SpaceAggregator.AVG:
        out = np.add.reduceat(v, starts) / np.diff(np.append(starts, v.size))
    elif aggregator is SpaceAggregator.MIN:
        out = np.minimum.reduceat(v, starts)
    else:
        out = np.maximum.reduceat(v, starts)
    return Grouped(g[starts], b[starts], out.astype(np.float64, copy=False))


def aggregate(
    series: Ints,
    ts: Ints,
    value: Floats,
    membership: Membership,
    interval: int,
    aggregator: SpaceAggregator,
) -> Grouped:
    """Time rollup (avg) then space aggregation: the whole numeric part of a query."""
    return space_aggregate(time_rollup(series, ts, value, interval), membership, aggregator)
