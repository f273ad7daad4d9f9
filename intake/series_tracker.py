"""Which (series, index bucket) pairs this intake process has already announced.

A bounded LRU: a series is announced at most once per bucket per process while it stays in
the cache; eviction only causes a harmless repeat announcement (the indexes apply
announcements idempotently). Pairs are marked only after the broker acknowledged the
request that carried them, so a failed request never suppresses a later announcement.

In steady state every row of every request is looked up and none is new, so the lookup is
the hot path: besides the LRU order of the pairs, the announced sids are kept as a set per
bucket, and a batch whose rows share one bucket (the usual case) is checked with one C-level
pass of integer lookups.
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
        # (sid, bucket) in the order last marked: eviction takes the least recent.
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        # bucket -> the sids in _seen with that bucket (the same pairs, indexed for lookup).
        self._sids: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def unannounced(self, batch: SeriesBatch) -> SeriesBatch | None:
        """Rows of ``batch`` not announced yet, or ``None`` when there are none."""
        n = len(batch)
        if not n:
            return None
        bucket = int(batch.bucket[0])
        if (batch.bucket == bucket).all():
            sids = self._sids.get(bucket)
            if sids is None:
                return batch
            seen = np.fromiter(map(sids.__contains__, batch.sid.tolist()), dtype=bool, count=n)
        else:
            pairs = zip(batch.sid.tolist(), batch.bucket.tolist(), strict=True)
            seen = np.fromiter(map(self._seen.__contains__, pairs), dtype=bool, count=n)
        if seen.all():
            return None
        if not seen.any():
            return batch
        return _select(batch, ~seen)

    def mark(self, batch: SeriesBatch) -> None:
        """Remember every row of ``batch`` as announced (call after the broker acked it)."""
        for key in zip(batch.sid.tolist(), batch.bucket.tolist(), strict=True):
            if key in self._seen:
                self._seen.move_to_end(key)
            else:
                self._seen[key] = None
                self._sids.setdefault(key[1], set()).add(key[0])
        while len(self._seen) > self._capacity:
            sid, bucket = self._seen.popitem(last=False)[0]
            sids = self._sids[bucket]
            sids.discard(sid)
            if not sids:
                del self._sids[bucket]


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
