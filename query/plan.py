"""Query execution: resolve series -> (look up tags) -> stitch tiers -> aggregate.

The planner talks to the stores only through :class:`query.stores_client.StoreClient`, so it
runs unchanged against the HTTP client or a fake in unit tests.

Group-by semantics (documented in docs/query.md): a series joins the group of each value it
has for each key (a series with two values of a key is in two groups, as at Datadog); a
series without the key joins ``key:N/A``, the label Datadog shows for such series. Bare tags
(no ``:``) never form groups. A series the tag index does not know yet (index lag) has no
tags, so it lands in the ``N/A`` groups rather than being dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from query.aggregate import Membership, space_aggregate
from query.interval import choose_interval
from query.language import MetricQuery
from query.stitch import read_stitched
from query.stores_client import Sids, StoreClient

MISSING_VALUE = "N/A"


class TooManySeries(ValueError):
    """The query matches more series than the service is configured to aggregate."""


@dataclass(frozen=True, slots=True)
class GroupSeries:
    """One output series: a group's tag set and its (bucket start, value) columns."""

    tag_set: tuple[str, ...]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class QueryResult:
    query: MetricQuery
    start: int
    end: int
    interval: int
    series: list[GroupSeries]
    # Point tiers that served the answer, oldest first (the X-Strata-Tiers header).
    tiers: tuple[str, ...] = ()


def group_membership(
    sids: Sids, tags_by_sid: Mapping[int, tuple[str, ...]], group_by: tuple[str, ...]
) -> tuple[Membership, list[tuple[str, ...]]]:
    """Map series (by index into ``sids``) to groups; return (membership, group tag sets).

    Group ids are assigned in sorted order of their tag sets, so output order is stable.
    This loops per series (not per point): tag sets are Python strings by nature.
    """
    if not group_by:
        idx = np.arange(sids.size, dtype=np.int64)
        return Membership(idx, np.zeros(sids.size, np.int64)), [()]
    pairs: list[tuple[int, tuple[str, ...]]] = []
    for i, sid in enumerate(sids.tolist()):
        values: dict[str, list[str]] = {k: [] for k in group_by}
        for tag in tags_by_sid.get(sid, ()):
            key, sep, value = tag.partition(":")
            if sep and key in values:
                values[key].append(value)
        choices = [
            [f"{k}:{v}" for v in sorted(set(vs))] or [f"{k}:{MISSING_VALUE}"]
            for k, vs in values.items()
        ]
        pairs.extend((i, combo) for combo in itertools.product(*choices))
    labels = sorted({combo for _, combo in pairs})
    ids = {label: n for n, label in enumerate(labels)}
    series = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
    group = np.fromiter((ids[c] for _, c in pairs), dtype=np.int64, count=len(pairs))
    return Membership(series, group), labels


def execute(
    query: MetricQuery,
    org: str,
    start: int,
    end: int,
    client: StoreClient,
    *,
    max_points: int,
    max_series: int,
) -> QueryResult:
    """Run ``query`` for ``org`` over [start, end] (inclusive Unix seconds).

    Raises :class:`TooManySeries`, :class:`query.segments.Uncovered` (no tier can serve part
    of the range), and whatever the client raises
    (:class:`query.stores_client.StoreUnavailable` / ``StoreReplyError``).
    """
    interval = choose_interval(start, end, max_points)
    sids = np.unique(client.resolve(org, query.metric, start, end, query.include, query.exclude))
    if sids.size > max_series:
        raise TooManySeries(
            f"query matches {sids.size} series, more than the limit of {max_series}; "
            "narrow the scope"
        )
    if sids.size == 0:
        return QueryResult(query, start, end, interval, [])
    tags = client.lookup(org, query.metric, sids) if query.group_by else {}
    membership, labels = group_membership(sids, tags, query.group_by)

    # Time rollup across the tiers (avg per series per bucket), then space aggregation.
    stitched = read_stitched(client, org, query.metric, sids, start, end, interval)
    grouped = space_aggregate(stitched.rolled, membership, query.aggregator)
    series = [
        GroupSeries(labels[g], grouped.bucket[rows], grouped.value[rows])
        for g, rows in grouped.slices()
    ]
    return QueryResult(query, start, end, interval, series, stitched.tiers)
