"""Columnar accumulation of one request's points: one batch per (org, metric).

Pure: the caller registers each series' identity and how many points it has, and hands over
the timestamp/value columns of the whole request at the end. :meth:`BatchBuilder.finish`
then applies the finiteness and time-window checks, counts rejections per (metric, reason),
groups the accepted rows per metric and finds the new (series, index bucket) pairs with a
fixed number of numpy calls per request, whatever the number of series. The output (rows,
their order, the order of batches and rejections) is what a per-series loop would produce.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from intake.identity import SeriesIdentity
from intake.rejections import Rejection, RejectReason, TimeWindow
from strata.codec import PointBatch, SeriesBatch
from strata.model import INDEX_BUCKET_SECONDS, SID_DTYPE, TS_DTYPE, VALUE_DTYPE, MetricType

_U32_MAX = 0xFFFFFFFF

# One added series: (identity, metric type, interval, number of its points).
SeriesRow = tuple[SeriesIdentity, int, int, int]
# Point rejections of one series are reported in this order (as a per-series loop would).
_POINT_REASONS = (RejectReason.NON_FINITE, RejectReason.TOO_NEW, RejectReason.TOO_OLD)


@dataclass(frozen=True, slots=True)
class MetricBatches:
    """Accepted points of one (org, metric) and the (series, bucket) rows they touch."""

    points: PointBatch
    series: SeriesBatch


@dataclass(frozen=True, slots=True)
class ParsedPayload:
    """Everything one request contributes: batches to produce, and what was rejected."""

    batches: list[MetricBatches]
    rejections: list[Rejection]
    window: TimeWindow

    @property
    def accepted(self) -> int:
        return sum(len(b.points) for b in self.batches)

    def rejected_by_reason(self) -> Counter[RejectReason]:
        out: Counter[RejectReason] = Counter()
        for r in self.rejections:
            out[r.reason] += r.count
        return out

    def messages(self) -> list[str]:
        return [r.message(self.window) for r in self.rejections]


class BatchBuilder:
    """Collects the series of one request for one org; :meth:`finish` returns the payload.

    Call :meth:`add_series` (and :meth:`reject`) in request order, then :meth:`finish` with
    the columns of every added series' points, concatenated in the same order.
    """

    def __init__(self, org: str, window: TimeWindow) -> None:
        self._org = org
        self._window = window
        self._series: list[SeriesRow] = []
        # (metric, reason, detail) -> [position, count]. Positions order the messages as a
        # per-series loop would: 4s for rejections made before series s was added, then
        # 4s + 1..3 for its point rejections.
        self._rejected: dict[tuple[str, RejectReason, str], list[int]] = {}

    def reject(self, metric: str, reason: RejectReason, count: int, detail: str = "") -> None:
        """Count ``count`` points rejected before reaching the builder (e.g. a bad name)."""
        if count:
            # Before the point rejections of the next series added, as in request order.
            position = 4 * len(self._series)
            entry = self._rejected.setdefault((metric, reason, detail), [position, 0])
            entry[1] += count

    def add_series(
        self, identity: SeriesIdentity, mtype: MetricType, interval: int, count: int
    ) -> None:
        """Register one (valid) series whose ``count`` points come next in the columns."""
        self._series.append((identity, mtype, interval, count))

    def add_rows(self, rows: list[SeriesRow]) -> None:
        """:meth:`add_series` for many series at once (a caller's own per-series loop)."""
        self._series += rows

    def finish(self, ts: npt.NDArray[np.int64], value: npt.NDArray[np.float64]) -> ParsedPayload:
        """The batches and rejections; ``ts``/``value`` hold every added series' points."""
        cols = _SeriesColumns(self._series)
        counts = cols.count
        if int(counts.sum()) != ts.size or ts.size != value.size:
            raise ValueError("columns do not match the points of the added series")
        point_series = np.repeat(np.arange(counts.size, dtype=np.intp), counts)
        metric_of = cols.metric_of
        finite = np.isfinite(value)
        too_new = finite & (ts > self._window.newest)
        too_old = finite & (ts < self._window.oldest)
        ok = finite & ~too_new & ~too_old
        all_ok = bool(ok.all())
        if not all_ok:
            for order, (reason, mask) in enumerate(
                zip(_POINT_REASONS, (~finite, too_new, too_old), strict=True)
            ):
                self._count_rejected(cols.names, reason, order, point_series[mask], metric_of)
        rejections = [
            Rejection(metric, reason, count, detail)
            for (metric, reason, detail), (_, count) in sorted(
                self._rejected.items(), key=lambda item: item[1][0]
            )
        ]
        if all_ok:
            # Every series with points has accepted ones: metrics appear among the points
            # in the order they appear among the series, unless a series has no points.
            batches = self._batches(cols, point_series, ts, value, bool(counts.all()))
        else:
            batches = self._batches(cols, point_series[ok], ts[ok], value[ok], False)
        return ParsedPayload(batches, rejections, self._window)

    def _count_rejected(
        self,
        names: list[str],
        reason: RejectReason,
        order: int,
        series: npt.NDArray[np.intp],
        metric_of: npt.NDArray[np.intp],
    ) -> None:
        """Count rejected points (given by their series, in request order) per metric."""
        if not series.size:
            return
        metrics = metric_of[series]
        per_metric = np.bincount(metrics)
        present, first = np.unique(metrics, return_index=True)
        for m, first_series in zip(present.tolist(), series[first].tolist(), strict=True):
            key = (names[m], reason, "")
            self._rejected[key] = [4 * first_series + 1 + order, int(per_metric[m])]

    def _batches(
        self,
        cols: _SeriesColumns,
        point_series: npt.NDArray[np.intp],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        series_order: bool,
    ) -> list[MetricBatches]:
        """Accepted rows (series index, ts, value, in request order) -> batches per metric,
        in the order of each metric's first accepted point (``series_order``: known to be
        the order of the metric ids, first appearance among the series)."""
        if not point_series.size:
            return []
        names = cols.names
        sids = cols.sid
        raw_metric = cols.metric_of[point_series]
        if series_order:
            n_metrics = len(names)
            by_first = np.arange(n_metrics, dtype=np.intp)
            metric = raw_metric
        else:
            # Renumber metrics by first accepted point, so batches come out in that order.
            present, first = np.unique(raw_metric, return_index=True)
            by_first = present[np.argsort(first, kind="stable")]
            n_metrics = by_first.size
            rank = np.empty(len(names), dtype=np.intp)
            rank[by_first] = np.arange(n_metrics)
            metric = rank[raw_metric]

        # Points grouped per metric, request order kept inside each group.
        order = np.argsort(metric, kind="stable")
        p_series = point_series[order]
        p_sid = sids[p_series]
        p_ts = ts[order].astype(TS_DTYPE, copy=False)
        p_value = value[order].astype(VALUE_DTYPE, copy=False)
        p_metric = metric[order]
        p_bounds = _bounds(p_metric, n_metrics)

        bucket = p_ts - p_ts % INDEX_BUCKET_SECONDS
        rows = _announcement_rows(p_metric, p_series, sids, bucket, n_metrics, cols.count)
        r_series = p_series[rows]
        r_sid = p_sid[rows]
        r_bucket = bucket[rows]
        r_mtype = cols.mtype[r_series]
        r_interval = cols.interval[r_series]
        r_tags = list(map(_TAGS, map(cols.idents.__getitem__, r_series.tolist())))
        r_bounds = _bounds(p_metric[rows], n_metrics)

        out = []
        for m, name_id in enumerate(by_first.tolist()):
            p0, p1 = p_bounds[m], p_bounds[m + 1]
            r0, r1 = r_bounds[m], r_bounds[m + 1]
            name = names[name_id]
            out.append(
                MetricBatches(
                    PointBatch(self._org, name, p_sid[p0:p1], p_ts[p0:p1], p_value[p0:p1]),
                    SeriesBatch(
                        self._org,
                        name,
                        r_sid[r0:r1],
                        r_bucket[r0:r1],
                        r_mtype[r0:r1],
                        r_interval[r0:r1],
                        tuple(r_tags[r0:r1]),
                    ),
                )
            )
        return out


def _announcement_rows(
    p_metric: npt.NDArray[np.intp],
    p_series: npt.NDArray[np.intp],
    sids: npt.NDArray[np.uint64],
    bucket: npt.NDArray[np.int64],
    n_metrics: int,
    counts: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Which points (positions in the metric-grouped order) become (series, bucket) rows.

    The first point of each (metric, sid, bucket) names the first series that touched it,
    whose metadata wins. Rows are ordered by (metric, that series, bucket), as a per-series
    loop over ascending buckets would add them.
    """
    n = p_series.size
    sorted_sids = np.sort(sids)
    if not (sorted_sids[1:] == sorted_sids[:-1]).any():
        # No two series with one id (the usual case), so (metric, sid, bucket) is (series,
        # bucket): a series' points are contiguous in the metric-grouped order, which is
        # already (metric, series) order.
        if int(counts.max()) <= 1:
            # The agent's shape: one point per series, each point its own row.
            return np.arange(n, dtype=np.intp)
        # Several points per series (a client batching its intervals), in time order: the
        # first point of each bucket starts a new run of (series, bucket).
        same_series = p_series[1:] == p_series[:-1]
        if not (same_series & (bucket[1:] < bucket[:-1])).any():
            new = np.ones(n, dtype=bool)
            new[1:] = ~same_series | (bucket[1:] != bucket[:-1])
            return np.flatnonzero(new)
    b_rank = (bucket - bucket.min()) // INDEX_BUCKET_SECONDS
    n_buckets = int(b_rank.max()) + 1
    n_series = counts.size
    # Dense ids of the distinct sids, in sid order, so that one int64 key sorts like
    # (metric, sid, bucket); stable: the first point of each key leads.
    distinct_sids, sid_rank = np.unique(sids, return_inverse=True)
    n_sids = distinct_sids.size  # <= n_series
    if n_metrics * n_series * n_buckets < _KEY_LIMIT:
        key = (p_metric * n_sids + sid_rank[p_series]) * n_buckets + b_rank
        by_key = np.argsort(key, kind="stable")
        k = key[by_key]
        new = np.ones(n, dtype=bool)
        new[1:] = k[1:] != k[:-1]
        firsts = by_key[new]
        # (metric, series, bucket) is unique among the firsts: any sort will do.
        return firsts[
            np.argsort(
                (p_metric[firsts] * n_series + p_series[firsts]) * n_buckets + b_rank[firsts]
            )
        ]
    # Key space beyond int64 (absurd windows): sort on the three columns.
    p_sid = sids[p_series]
    by_key = np.lexsort((bucket, p_sid, p_metric))
    k_metric, k_sid, k_bucket = p_metric[by_key], p_sid[by_key], bucket[by_key]
    new = np.ones(n, dtype=bool)
    new[1:] = (
        (k_metric[1:] != k_metric[:-1])
        | (k_sid[1:] != k_sid[:-1])
        | (k_bucket[1:] != k_bucket[:-1])
    )
    firsts = by_key[new]
    return firsts[np.lexsort((bucket[firsts], p_series[firsts], p_metric[firsts]))]


_KEY_LIMIT = 2**62
_METRIC = itemgetter(0)
_TAGS = itemgetter(1)
_SID = itemgetter(2)
_IDENTITY = itemgetter(0)
_MTYPE = itemgetter(1)
_INTERVAL = itemgetter(2)
_COUNT = itemgetter(3)


class _SeriesColumns:
    """The added series as columns: a few C-level passes over the rows per request (no
    per-series Python objects: unzipping would allocate an iterator per row)."""

    def __init__(self, rows: list[SeriesRow]) -> None:
        n = len(rows)
        self.idents: list[SeriesIdentity] = list(map(_IDENTITY, rows))
        self.mtype = np.fromiter(map(_MTYPE, rows), np.uint8, n)
        intervals = np.fromiter(map(_INTERVAL, rows), np.int64, n)
        self.interval = np.clip(intervals, 0, _U32_MAX).astype(np.uint32)
        self.count = np.fromiter(map(_COUNT, rows), np.intp, n)
        self.sid = np.fromiter(map(_SID, self.idents), SID_DTYPE, n)
        metrics = list(map(_METRIC, self.idents))
        # Metric ids by first appearance among the series.
        self.names = list(dict.fromkeys(metrics))
        ids = {name: i for i, name in enumerate(self.names)}
        self.metric_of = np.fromiter(map(ids.__getitem__, metrics), np.intp, n)


def _bounds(sorted_groups: npt.NDArray[np.intp], n: int) -> list[int]:
    """Start offsets of groups 0..n-1 in a sorted array, plus its length."""
    return [0, *np.cumsum(np.bincount(sorted_groups, minlength=n)).tolist()]
