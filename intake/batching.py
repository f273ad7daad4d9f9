"""Columnar accumulation of one request's points: one batch per (org, metric).

Pure: the caller hands over each series' identity and its timestamp/value columns; the
builder applies the time window and finiteness checks with numpy, keeps the accepted rows
and counts the rest per (metric, reason). Nothing here creates a Python object per point.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from intake.rejections import Rejection, RejectReason, TimeWindow
from strata.codec import PointBatch, SeriesBatch
from strata.model import INDEX_BUCKET_SECONDS, SID_DTYPE, TS_DTYPE, VALUE_DTYPE, MetricType

_U32_MAX = 0xFFFFFFFF


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


@dataclass
class _MetricParts:
    sid: list[npt.NDArray[np.uint64]] = field(default_factory=list)
    ts: list[npt.NDArray[np.int64]] = field(default_factory=list)
    value: list[npt.NDArray[np.float64]] = field(default_factory=list)
    # (sid, bucket) -> (metric type, interval, tags); first occurrence wins
    series: dict[tuple[int, int], tuple[int, int, tuple[str, ...]]] = field(default_factory=dict)


class BatchBuilder:
    """Collects series of one request for one org; :meth:`finish` returns the payload."""

    def __init__(self, org: str, window: TimeWindow) -> None:
        self._org = org
        self._window = window
        self._metrics: dict[str, _MetricParts] = {}
        self._rejected: Counter[tuple[str, RejectReason, str]] = Counter()

    def reject(self, metric: str, reason: RejectReason, count: int, detail: str = "") -> None:
        if count:
            self._rejected[(metric, reason, detail)] += count

    def add_series(
        self,
        metric: str,
        sid: int,
        mtype: MetricType,
        interval: int,
        tags: tuple[str, ...],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
    ) -> None:
        """Add one series' points (``ts`` and ``value`` of equal length)."""
        finite = np.isfinite(value)
        too_new = finite & (ts > self._window.newest)
        too_old = finite & (ts < self._window.oldest)
        ok = finite & ~too_new & ~too_old
        self.reject(metric, RejectReason.NON_FINITE, int(value.size - np.count_nonzero(finite)))
        self.reject(metric, RejectReason.TOO_NEW, int(np.count_nonzero(too_new)))
        self.reject(metric, RejectReason.TOO_OLD, int(np.count_nonzero(too_old)))
        n = int(np.count_nonzero(ok))
        if n == 0:
            return
        parts = self._metrics.setdefault(metric, _MetricParts())
        kept_ts = ts[ok]
        parts.sid.append(np.full(n, sid, dtype=SID_DTYPE))
        parts.ts.append(kept_ts)
        parts.value.append(value[ok])
        row = (int(mtype), min(max(interval, 0), _U32_MAX), tags)
        for bucket in np.unique(kept_ts - kept_ts % INDEX_BUCKET_SECONDS).tolist():
            parts.series.setdefault((sid, int(bucket)), row)

    def finish(self) -> ParsedPayload:
        batches = [self._batches(metric, parts) for metric, parts in self._metrics.items()]
        rejections = [
            Rejection(metric, reason, count, detail)
            for (metric, reason, detail), count in self._rejected.items()
        ]
        return ParsedPayload(batches, rejections, self._window)

    def _batches(self, metric: str, parts: _MetricParts) -> MetricBatches:
        points = PointBatch(
            self._org,
            metric,
            np.concatenate(parts.sid).astype(SID_DTYPE, copy=False),
            np.concatenate(parts.ts).astype(TS_DTYPE, copy=False),
            np.concatenate(parts.value).astype(VALUE_DTYPE, copy=False),
        )
        keys = list(parts.series)
        rows = list(parts.series.values())
        series = SeriesBatch(
            self._org,
            metric,
            np.array([k[0] for k in keys], dtype=SID_DTYPE),
            np.array([k[1] for k in keys], dtype=TS_DTYPE),
            np.array([r[0] for r in rows], dtype=np.uint8),
            np.array([r[1] for r in rows], dtype=np.uint32),
            tuple(r[2] for r in rows),
        )
        return MetricBatches(points, series)
