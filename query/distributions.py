"""Distribution metrics: read sketches across the tiers, merge them in time and space, read
the percentile or the exact count/sum/min/max/avg (docs/query.md, "Distributions").

For ``p99:latency{scope} by {host}`` (or ``avg:``/``sum:``/``min:``/``max:``/``count:`` of a
distribution metric):

1. The series come from the indexes as for any metric (:mod:`query.evaluate`).
2. Sketches are read from the sketch tiers, planned and stitched exactly like points
   (:func:`query.segments.plan_segments`: freshest tier first, whole buckets of the
   resolution step only, finer resolutions at the edges, fallback when a tier fails), so
   every stored sketch is read from exactly one tier.
3. Every row is labelled with its output bucket and, through the group membership, with
   each group its series belongs to; one :meth:`SketchBatch.merge_by_key` then merges per
   (group, bucket) — across time buckets and across the group's series at once.
4. The value of a (group, bucket) is the quantile of the merged sketch, or its exact
   count/sum/min/max/avg (``avg`` = sum / count over all values, not an average of
   averages). Empty buckets have no value.

Merging is exact, so the answer does not depend on which tier held what, or on how the
sketches were split at intake: a percentile is within the sketch's relative accuracy (1 %)
of the exact percentile of every value submitted for the group and bucket. ``.rollup()``
only sets the interval here (the time merge is the rollup), ``.as_count()``/``.as_rate()``
do nothing, and ``.fill()`` fills the group rows. Sketch reads are not cached.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from query import ast
from query.aggregate import Membership
from query.functions import Floats, Frame
from query.segments import Segment, plan_segments, tiers_used
from query.stitch import FALLBACK_ERRORS
from query.stores_client import Sids, SketchClient, StoreReplyError
from strata.arrays import ranges
from strata.rollup import resolution_for
from strata.sketch import SketchBatch, SketchParams

log = logging.getLogger(__name__)

DISTRIBUTION = "distribution"


def is_distribution_query(q: ast.MetricQuery) -> bool:
    """A percentile aggregator asks for sketches whatever the metric's type says."""
    return isinstance(q.aggregator, ast.Percentile)


def sketch_values(batch: SketchBatch, aggregator: ast.Aggregator | ast.Percentile) -> Floats:
    """One value per row: the quantile, or the exact summary (NaN for an empty sketch)."""
    if isinstance(aggregator, ast.Percentile):
        out: Floats = batch.quantiles([aggregator.quantile])[:, 0]
        return out
    count = batch.count
    with np.errstate(all="ignore"):
        if aggregator is ast.Aggregator.COUNT:
            values = count.copy()
        elif aggregator is ast.Aggregator.SUM:
            values = batch.sum.copy()
        elif aggregator is ast.Aggregator.MIN:
            values = batch.min.copy()
        elif aggregator is ast.Aggregator.MAX:
            values = batch.max.copy()
        else:
            values = batch.sum / count
    return np.where(count > 0, values, np.nan)


def _select(sids: Sids, rows: SketchBatch, seg: Segment, step: int) -> SketchBatch:
    """Rows of asked-for sids inside the segment (anything else belongs to another tier's
    segment and must not count twice); rows merged per ``step`` bucket are labelled with
    the bucket start, which may precede the segment."""
    if len(rows) == 0:
        return rows
    pos = np.searchsorted(sids, rows.sid).clip(max=sids.size - 1)
    first = seg.start - seg.start % step
    keep = (sids[pos] == rows.sid) & (rows.ts >= first) & (rows.ts <= seg.end)
    return rows if bool(keep.all()) else rows.take(keep)


def stitched_sketches(
    client: SketchClient, org: str, metric: str, sids: Sids, start: int, end: int, interval: int
) -> tuple[SketchBatch, tuple[str, ...]]:
    """Sketch rows of ``sids`` (sorted, unique) over [start, end] from the sketch tiers, at
    the resolution the interval allows (each row inside one output bucket), and the tiers
    that served them. A failing tier's segments move to the next covering tier; raises
    :class:`query.segments.Uncovered` when none is left."""
    resolution = resolution_for(interval)
    partition, sources = client.sketch_sources(org, metric)
    failed: dict[str, str] = {}
    fetched: dict[Segment, SketchBatch] = {}
    while True:
        segments = plan_segments(
            start, end, resolution, sources, partition=partition, failed=failed
        )
        retry = False
        for seg in segments:
            if seg in fetched:
                continue
            try:
                # Merged per output bucket by the store: a fifth of the rows of a 1-minute
                # read at 5-minute buckets cross the wire and the query's merge.
                rows = client.read_sketches(
                    seg.source, sids, seg.start, seg.end, seg.resolution, step=interval
                )
            except FALLBACK_ERRORS as exc:
                log.warning("%s sketch read failed, falling back: %s", seg.source.tier, exc)
                failed[seg.source.tier] = str(exc)
                retry = True
                break
            fetched[seg] = _select(sids, rows, seg, interval)
        if not retry:
            break
    parts = [fetched[seg] for seg in segments if len(fetched[seg])]
    if not parts:
        return SketchBatch.empty(SketchParams()), tiers_used(segments)
    params = parts[0].params
    try:
        rows = SketchBatch.concat([p.convert(params) for p in parts])
    except ValueError as exc:  # pragma: no cover - convert makes parameters equal
        raise StoreReplyError(f"sketch tiers answered incompatible sketches: {exc}") from exc
    return rows, tiers_used(segments)


def group_sketches(
    rows: SketchBatch,
    sids: Sids,
    membership: Membership,
    grid_start: int,
    interval: int,
    n_buckets: int,
    shift: int = 0,
) -> SketchBatch:
    """One merged sketch per (group, output bucket) that has rows: ``sid`` holds the group
    number and ``ts`` the bucket's column on the grid. A series in several groups counts in
    each of them."""
    col = (rows.ts - shift - grid_start) // interval
    series = np.searchsorted(sids, rows.sid)
    inside = (col >= 0) & (col < n_buckets) & (series < sids.size)
    if not inside.all():
        rows, col, series = rows.take(inside), col[inside], series[inside]
    order = np.argsort(membership.series, kind="stable")
    m_series, m_group = membership.series[order], membership.group[order]
    lo = np.searchsorted(m_series, series, side="left")
    n = np.searchsorted(m_series, series, side="right") - lo
    which = np.repeat(np.arange(len(rows), dtype=np.int64), n)
    group = m_group[ranges(lo.astype(np.int64), n.astype(np.int64))]
    return rows.take(which).merge_by_key(group.astype(np.uint64), col[which])


def distribution_frame(
    q: ast.MetricQuery,
    client: object,
    org: str,
    sids: Sids,
    groups: tuple[Membership, list[tuple[str, ...]]],
    grid: npt.NDArray[np.int64],
    interval: int,
    span: tuple[int, int],
    shift: int,
) -> tuple[Frame, tuple[str, ...]]:
    """The frame of a distribution query (one row per group label of ``groups``) and the
    tiers read. ``span`` is the (shifted) range read, ``shift`` what maps it onto ``grid``."""
    if not isinstance(client, SketchClient):
        raise StoreReplyError("this store client cannot read distribution sketches")
    membership, labels = groups
    start, end = span
    rows, tiers = stitched_sketches(client, org, q.metric, sids, start, end, interval)
    values = np.full((len(labels), grid.size), np.nan)
    if len(rows):
        merged = group_sketches(rows, sids, membership, int(grid[0]), interval, grid.size, shift)
        values[merged.sid.astype(np.int64), merged.ts] = sketch_values(merged, q.aggregator)
    return Frame(list(labels), values), tiers


@runtime_checkable
class _SeriesTypes(Protocol):
    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids: ...

    def series_types(self, org: str, metric: str, sids: Sids) -> dict[int, str]: ...


def with_distribution_type(
    client: object, org: str, metric: str, found: dict[str, Any]
) -> dict[str, Any]:
    """``found`` with ``type: distribution`` when no type is stored and the metric's series
    were submitted as distribution points (their type is known from intake; other metrics
    show the type a client stored, as before)."""
    if "type" in found or not isinstance(client, _SeriesTypes):
        return found
    sids = client.resolve(org, metric, 0, int(time.time()) + 3600, (), ())
    if sids.size == 0:
        return found
    types = client.series_types(org, metric, sids[:1])
    return {**found, "type": DISTRIBUTION} if DISTRIBUTION in types.values() else found
