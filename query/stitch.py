"""Read one metric's points across the point tiers and roll them up in time per series.

Plans segments with :func:`query.segments.plan_segments`, reads each from its tier through
the :class:`query.stores_client.StoreClient`, and on a failing read (unreachable, 503, other
5xx) marks that tier failed and plans again: the failed segments move to the next tier
that covers them, segments already read are kept. Planning raises
:class:`query.segments.Uncovered` once nothing is left to fall back to.

Folding follows Datadog's time rollup (average per series per output interval):

- ``raw`` resolution: every segment is raw; points are concatenated and averaged by
  :func:`query.aggregate.time_rollup` (the path of a single-tier query).
- ``1m``/``1h``: rollup segments and the raw edge segments (turned into rollups with
  :func:`strata.rollup.rollup`) are folded with :func:`strata.rollup.merge` into output
  buckets, and avg = Σsum / Σcount. Output intervals are multiples of the resolution step
  (:func:`strata.rollup.resolution_for`), so each output bucket is an exact union of
  stored buckets and the two paths agree up to float rounding (tests/property).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from query.aggregate import Rolled, time_rollup
from query.cache import read_segment
from query.segments import Segment, plan_segments, tiers_used
from query.stores_client import (
    PointColumns,
    Sids,
    StoreClient,
    StoreReplyError,
    StoreServerError,
    StoreUnavailable,
)
from strata.rollup import Rollups, merge, resolution_for, rollup

log = logging.getLogger(__name__)

# Failures of a tier that move its segments to the next tier (contract: connection error
# or 5xx). Contract violations (StoreReplyError for 4xx / bad bodies) still fail the query.
FALLBACK_ERRORS = (StoreUnavailable, StoreServerError)


@dataclass(frozen=True, slots=True)
class Stitched:
    """Time-rolled series (index into the query's sids) and the tiers that served them."""

    rolled: Rolled
    tiers: tuple[str, ...]
    segments: tuple[Segment, ...]


def _select(
    sids: Sids, sid: Sids, ts: npt.NDArray[np.int64], seg: Segment
) -> npt.NDArray[np.bool_]:
    """Rows of asked-for sids inside the segment: whatever a tier sends beyond its segment
    belongs to another tier's segment and must not count twice."""
    pos = np.searchsorted(sids, sid).clip(max=sids.size - 1)
    return np.asarray((sids[pos] == sid) & (ts >= seg.start) & (ts <= seg.end))


def _points(sids: Sids, seg: Segment, data: PointColumns | Rollups) -> PointColumns:
    if not isinstance(data, PointColumns):
        raise StoreReplyError(f"{seg.source.tier} store answered rollups to a raw read")
    keep = _select(sids, data.sid, data.ts, seg)
    return PointColumns(data.sid[keep], data.ts[keep], data.value[keep])


def _rollups(sids: Sids, seg: Segment, data: PointColumns | Rollups, interval: int) -> Rollups:
    if isinstance(data, PointColumns):
        pts = _points(sids, seg, data)
        return rollup(pts.sid, pts.ts, pts.value, interval)
    keep = _select(sids, data.sid, data.bucket, seg)
    return Rollups(
        data.sid[keep],
        data.bucket[keep],
        data.count[keep],
        data.sum[keep],
        data.min[keep],
        data.max[keep],
        data.last[keep],
        data.last_ts[keep],
    )


def fetch_segments(
    client: StoreClient,
    org: str,
    metric: str,
    sids: Sids,
    start: int,
    end: int,
    resolution: str,
    scope: str | None = None,
) -> tuple[list[Segment], dict[Segment, PointColumns | Rollups]]:
    """Plan [start, end] over the tiers and read every segment, re-planning without a tier
    whose read fails (connection error or 5xx) so the next covering tier serves it. Reads
    go through the client's result cache, if any, under ``scope`` (query/cache.py).

    Raises :class:`query.segments.Uncovered` when no tier is left for some part.
    """
    partition, sources = client.tier_sources(org, metric)
    failed: dict[str, str] = {}
    fetched: dict[Segment, PointColumns | Rollups] = {}
    while True:
        segments = plan_segments(
            start, end, resolution, sources, partition=partition, failed=failed
        )
        retry = False
        for seg in segments:
            if seg in fetched:
                continue
            try:
                fetched[seg] = read_segment(client, org, metric, scope, seg, sids)
            except FALLBACK_ERRORS as exc:
                log.warning("%s read failed, falling back: %s", seg.source.tier, exc)
                failed[seg.source.tier] = str(exc)
                retry = True
                break
        if not retry:
            return segments, fetched


def stitched_rollups(
    client: StoreClient,
    org: str,
    metric: str,
    sids: Sids,
    start: int,
    end: int,
    interval: int,
    *,
    scope: str | None = None,
) -> tuple[Rollups, tuple[str, ...]]:
    """Rollups per (sid, ``interval`` bucket) over [start, end] across the tiers (count,
    sum, min, max, last: what every rollup method needs), and the tiers that served them."""
    resolution = resolution_for(interval)
    segments, fetched = fetch_segments(client, org, metric, sids, start, end, resolution, scope)
    if resolution == "raw":
        parts = [_points(sids, seg, fetched[seg]) for seg in segments]
        if not parts:
            return Rollups.empty(), ()
        sid = np.concatenate([p.sid for p in parts])
        ts = np.concatenate([p.ts for p in parts])
        value = np.concatenate([p.value for p in parts])
        return rollup(sid, ts, value, interval), tiers_used(segments)
    merged = merge([_rollups(sids, seg, fetched[seg], interval) for seg in segments], interval)
    return merged, tiers_used(segments)


def read_stitched(
    client: StoreClient,
    org: str,
    metric: str,
    sids: Sids,
    start: int,
    end: int,
    interval: int,
) -> Stitched:
    """Average per series (``sids`` sorted, unique) per ``interval`` bucket over [start, end].

    Raises :class:`query.segments.Uncovered` when some part of the range after the
    partition's history start cannot be served by any tier, and whatever non-fallback error
    the client raises (``StoreReplyError``).
    """
    resolution = resolution_for(interval)
    segments, fetched = fetch_segments(client, org, metric, sids, start, end, resolution)
    if resolution == "raw":
        parts = [_points(sids, seg, fetched[seg]) for seg in segments]
        sid = np.concatenate([p.sid for p in parts]) if parts else np.empty(0, np.uint64)
        ts = np.concatenate([p.ts for p in parts]) if parts else np.empty(0, np.int64)
        value = np.concatenate([p.value for p in parts]) if parts else np.empty(0, np.float64)
        pos = np.searchsorted(sids, sid).astype(np.int64)
        rolled = time_rollup(pos, ts, value, interval)
    else:
        merged = merge([_rollups(sids, seg, fetched[seg], interval) for seg in segments], interval)
        rolled = Rolled(
            np.searchsorted(sids, merged.sid).astype(np.int64),
            merged.bucket,
            merged.sum / merged.count,
        )
    return Stitched(rolled, tiers_used(segments), tuple(segments))
