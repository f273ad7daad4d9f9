"""An in-memory :class:`query.stores_client.StoreClient` for pure unit tests (and its checks).

It follows the read-API contract of docs/architecture.md: per-org series, resolve with
include/exclude tags, lookup that never returns another org's sids, inclusive point ranges,
and point tiers that each hold the points inside their advertised coverage and answer raw or
rollup reads (rollups over whole buckets whose start is in the range). By default there is
one RAM tier covering everything, as before tiers existed.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from query.segments import LIVE_TIERS, TierSource
from query.stores_client import PointColumns, Sids, StoreUnavailable
from stores.ram.store import rollup_span
from strata.conflict import resolve
from strata.naming import canonical_tags
from strata.rollup import RESOLUTIONS, Rollups, rollup
from strata.series_id import series_id

EVERYTHING = (-(2**40), 2**40)


@dataclass
class FakeTier:
    """A point tier: holds the store's points inside ``coverage`` (None = advertises none);
    ``error``, when set, is raised by every read (a tier that is down); ``remembered`` is
    the coverage start the query process remembers for a tier advertising none."""

    coverage: tuple[int, int] | None
    error: Exception | None = None
    remembered: int | None = None


@dataclass
class FakeSeries:
    org: str
    metric: str
    tags: tuple[str, ...]
    sid: int
    mtype: str = "gauge"


@dataclass
class FakeStore:
    series: dict[int, FakeSeries] = field(default_factory=dict)
    points: list[tuple[int, int, float]] = field(default_factory=list)  # (sid, ts, value)
    unavailable: bool = False
    lookups: int = 0
    tiers: dict[str, FakeTier] = field(default_factory=lambda: {"ram": FakeTier(EVERYTHING)})
    partition: int | None = 1
    # (tier, resolution, from, to) of every point read, in order
    reads: list[tuple[str, str, int, int]] = field(default_factory=list)

    # filter trees received by resolve_filter, in order
    trees: list[dict[str, Any]] = field(default_factory=list)
    # metrics whose owning instances are down: every call about them is unavailable
    down_metrics: set[str] = field(default_factory=set)
    # seconds every resolve sleeps (a slow index, for time budget tests)
    resolve_delay: float = 0.0

    def add(
        self,
        org: str,
        metric: str,
        tags: list[str],
        points: list[tuple[int, float]],
        mtype: str = "gauge",
    ) -> int:
        canon = canonical_tags(tags)
        sid = series_id(org, metric, canon)
        self.series[sid] = FakeSeries(org, metric, canon, sid, mtype)
        self.points.extend((sid, ts, v) for ts, v in points)
        return sid

    def _check(self, metric: str | None = None) -> None:
        if self.unavailable:
            raise StoreUnavailable("no ram store instance owns partition 1 (fake)")
        if metric in self.down_metrics:
            raise StoreUnavailable(f"inverted store inv-2 owning {metric!r} is down (fake)")

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids:
        self._check(metric)
        if self.resolve_delay:
            time.sleep(self.resolve_delay)
        sids = [
            s.sid
            for s in self.series.values()
            if s.org == org
            and s.metric == metric
            and all(t in s.tags for t in include)
            and not any(t in s.tags for t in exclude)
        ]
        return np.array(sorted(sids), dtype=np.uint64)

    def resolve_filter(
        self, org: str, metric: str, start: int, end: int, tree: dict[str, Any]
    ) -> Sids:
        """The contract's filter tree, evaluated independently of the query code
        (``fnmatch`` for wildcards: tags never contain ``[``, ``]`` or ``?``)."""
        self._check(metric)
        self.trees.append(tree)
        sids = [
            s.sid
            for s in self.series.values()
            if s.org == org and s.metric == metric and _matches(tree, s.tags)
        ]
        return np.array(sorted(sids), dtype=np.uint64)

    def series_types(self, org: str, metric: str, sids: Sids) -> dict[int, str]:
        self._check()
        return {
            sid: self.series[sid].mtype
            for sid in sids.tolist()
            if sid in self.series and self.series[sid].org == org
        }

    def lookup(self, org: str, metric: str, sids: Sids) -> dict[int, tuple[str, ...]]:
        self._check()
        self.lookups += 1
        out = {}
        for sid in sids.tolist():
            s = self.series.get(sid)
            if s is not None and s.org == org:
                out[sid] = s.tags
        return out

    def tier_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        self._check()
        return self.partition, [
            TierSource(name, f"{name}-1", f"http://{name}", t.coverage, t.remembered)
            for name, t in self.tiers.items()
        ]

    def read_tier(
        self, source: TierSource, sids: Sids, start: int, end: int, resolution: str
    ) -> PointColumns | Rollups:
        self.reads.append((source.tier, resolution, start, end))
        tier = self.tiers[source.tier]
        if tier.error is not None:
            raise tier.error
        step = RESOLUTIONS[resolution]
        lo, hi = rollup_span(start, end, step) if resolution != "raw" else (start, end)
        if tier.coverage is not None:  # what the tier holds
            lo = max(lo, tier.coverage[0])
            hi = hi if source.tier in LIVE_TIERS else min(hi, tier.coverage[1])
        wanted = set(sids.tolist())
        rows = [p for p in self.points if p[0] in wanted and lo <= p[1] <= hi]
        sid, ts, value = resolve(
            np.array([r[0] for r in rows], dtype=np.uint64),
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.float64),
        )
        if resolution == "raw":
            return PointColumns(sid, ts, value)
        return rollup(sid, ts, value, step)

    def list_metrics(self, org: str, start: int) -> list[str]:
        self._check()
        return sorted({s.metric for s in self.series.values() if s.org == org})

    def metric_tags(self, org: str, metric: str, start: int) -> list[str]:
        self._check()
        tags = {
            t for s in self.series.values() if s.org == org and s.metric == metric for t in s.tags
        }
        return sorted(tags)


def _matches(tree: dict[str, Any], tags: tuple[str, ...]) -> bool:
    op = tree["op"]
    if op == "all":
        return True
    if op == "tag":
        return tree["tag"] in tags
    if op == "wildcard":
        return any(fnmatch.fnmatchcase(t, tree["pattern"]) for t in tags)
    if op == "not":
        return not _matches(tree["arg"], tags)
    results = [_matches(a, tags) for a in tree["args"]]
    if op == "and":
        return all(results)
    if op == "or":
        return any(results)
    raise ValueError(f"unknown op {op!r}")
