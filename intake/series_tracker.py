"""Which (series, index bucket) pairs this intake process has already announced.

A bounded LRU: a series is announced at most once per bucket per process while it stays in
the cache; eviction only causes a harmless repeat announcement (the indexes apply
announcements idempotently). Pairs are marked only after the broker acknowledged the
request that carried them, so a failed request never suppresses a later announcement.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from strata.codec import SeriesBatch


class SeriesTracker:
    """Not thread-safe: used from the event loop only."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def unannounced(self, batch: SeriesBatch) -> SeriesBatch | None:
        """Rows of ``batch`` not announced yet, or ``None`` when there are none."""
        keep = np.fromiter(
            (
                (s, b) not in self._seen
                for s, b in zip(batch.sid.tolist(), batch.bucket.tolist(), strict=True)
            ),
            dtype=bool,
            count=len(batch),
        )
        if not keep.any():
            return None
        if keep.all():
            return batch
        return _select(batch, keep)

    def mark(self, batch: SeriesBatch) -> None:
        """Remember every row of ``batch`` as announced (call after the broker acked it)."""
        for key in zip(batch.sid.tolist(), batch.bucket.tolist(), strict=True):
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


def _select(batch: SeriesBatch, keep: npt.NDArray[np.bool_]) -> SeriesBatch:
    return SeriesBatch(
        batch.org,
        batch.metric,
        batch.sid[keep],
        batch.bucket[keep],
        batch.mtype[keep],
        batch.interval[keep],
        tuple(t for t, k in zip(batch.tags, keep.tolist(), strict=True) if k),
    )
