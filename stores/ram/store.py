"""The RAM store: Kafka-facing wrapper around :mod:`stores.ram.blocks`.

Thread safety: the consumer thread applies and the HTTP threads read, all under one lock.
Reads consolidate blocks (a mutation) so they take the same lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from stores.ram.blocks import Columns, PartitionPoints, Sids, concat, sort_columns
from stores.runtime.replay import ReplayWindow
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import PointBatch, decode_points
from strata.rollup import Rollups, rollup

log = logging.getLogger(__name__)


class RamStore(Store[PointBatch]):
    kind = "ram"

    def __init__(
        self,
        topic: str,
        window_seconds: int,
        *,
        replay_margin_seconds: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._replay = ReplayWindow(window_seconds, replay_margin_seconds, clock)
        self._parts: dict[int, PartitionPoints] = {}
        self._dropped_old = 0

    def decode(self, value: bytes) -> PointBatch:
        return decode_points(value)

    def apply(self, records: Sequence[Record[PointBatch]]) -> None:
        with self._lock:
            oldest = self._replay.oldest()
            for r in records:
                self._replay.seen(r.partition, r.timestamp_ms)
                part = self._parts.get(r.partition)
                if part is None:
                    part = self._parts[r.partition] = PartitionPoints()
                batch = r.value
                kept = part.insert(batch.sid, batch.ts, batch.value, oldest)
                self._dropped_old += len(batch) - kept
            for part in self._parts.values():
                part.evict(oldest)

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return self._replay.start_position(now_ms)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        with self._lock:
            for p in partitions:
                self._parts.setdefault(p, PartitionPoints())
            self._replay.assigned(partitions, replay_from_ms)

    def revoked(self, partitions: Sequence[int]) -> None:
        with self._lock:
            for p in partitions:
                self._parts.pop(p, None)
            self._replay.revoked(partitions)

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """[max(now - window, replay start), now] per owned partition whose replay has
        caught up (stores/runtime/replay.py); a partition still replaying advertises
        nothing."""
        with self._lock:
            return self._replay.coverage([p for p in partitions if p in self._parts], now)

    def replaying(self) -> list[int]:
        """Partitions whose replay has not caught up yet."""
        with self._lock:
            return self._replay.replaying()

    def caught_up(self, partition: int, end_offset: int) -> None:
        with self._lock:
            self._replay.caught_up(partition)

    def idle(self) -> None:
        # Housekeeping only: an empty poll does not mean the replay is complete.
        with self._lock:
            oldest = self._replay.oldest()
            for part in self._parts.values():
                part.evict(oldest)

    def read_raw(self, sids: Sids, start: int, end: int) -> Columns:
        """Points of ``sids`` in ``[start, end]`` (clamped to the window), sorted by
        (sid, ts), duplicates resolved."""
        wanted = np.unique(sids)
        with self._lock:
            start = max(start, self._replay.oldest())
            parts = (
                [p.read(wanted, start, end) for p in self._parts.values()] if start <= end else []
            )
        # A sid belongs to one org|metric, hence one partition: the parts are disjoint.
        return sort_columns(concat([p for p in parts if p[0].size]))

    def read_rollups(self, sids: Sids, start: int, end: int, step: int) -> Rollups:
        """Rollups of ``step`` seconds for buckets of ``sids`` whose start is in
        ``[start, end]``, each over the bucket's whole ``[bucket, bucket + step)`` (clamped to
        the window, like raw reads), computed on the fly from the resolved points."""
        lo, hi = rollup_span(start, end, step)
        if lo > hi:
            return Rollups.empty()
        sid, ts, value = self.read_raw(sids, lo, hi)
        return rollup(sid, ts, value, step)

    def rows(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._parts.values())


def rollup_span(start: int, end: int, step: int) -> tuple[int, int]:
    """The point range a rollup read needs: from the first bucket starting at or after
    ``start`` to the end of the last bucket starting at or before ``end``."""
    first = -(-start // step) * step
    last = end - end % step
    return first, last + step - 1
