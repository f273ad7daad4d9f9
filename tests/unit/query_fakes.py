"""An in-memory :class:`query.stores_client.StoreClient` for pure unit tests (and its checks).

It follows the read-API contract of docs/architecture.md: per-org series, resolve with
include/exclude tags, lookup that never returns another org's sids, inclusive point ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from query.stores_client import PointColumns, Sids, StoreUnavailable
from strata.naming import canonical_tags
from strata.series_id import series_id


@dataclass
class FakeSeries:
    org: str
    metric: str
    tags: tuple[str, ...]
    sid: int


@dataclass
class FakeStore:
    series: dict[int, FakeSeries] = field(default_factory=dict)
    points: list[tuple[int, int, float]] = field(default_factory=list)  # (sid, ts, value)
    unavailable: bool = False
    lookups: int = 0

    def add(self, org: str, metric: str, tags: list[str], points: list[tuple[int, float]]) -> int:
        canon = canonical_tags(tags)
        sid = series_id(org, metric, canon)
        self.series[sid] = FakeSeries(org, metric, canon, sid)
        self.points.extend((sid, ts, v) for ts, v in points)
        return sid

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("no ram store instance owns partition 1 (fake)")

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids:
        self._check()
        sids = [
            s.sid
            for s in self.series.values()
            if s.org == org
            and s.metric == metric
            and all(t in s.tags for t in include)
            and not any(t in s.tags for t in exclude)
        ]
        return np.array(sorted(sids), dtype=np.uint64)

    def lookup(self, org: str, metric: str, sids: Sids) -> dict[int, tuple[str, ...]]:
        self._check()
        self.lookups += 1
        out = {}
        for sid in sids.tolist():
            s = self.series.get(sid)
            if s is not None and s.org == org:
                out[sid] = s.tags
        return out

    def read_points(self, org: str, metric: str, sids: Sids, start: int, end: int) -> PointColumns:
        self._check()
        wanted = set(sids.tolist())
        rows = sorted(p for p in self.points if p[0] in wanted and start <= p[1] <= end)
        return PointColumns(
            np.array([r[0] for r in rows], dtype=np.uint64),
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.float64),
        )

    def list_metrics(self, org: str, start: int) -> list[str]:
        self._check()
        return sorted({s.metric for s in self.series.values() if s.org == org})

    def metric_tags(self, org: str, metric: str, start: int) -> list[str]:
        self._check()
        tags = {
            t for s in self.series.values() if s.org == org and s.metric == metric for t in s.tags
        }
        return sorted(tags)
