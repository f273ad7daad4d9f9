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
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import PointBatch, decode_points

log = logging.getLogger(__name__)


class RamStore(Store[PointBatch]):
    kind = "ram"

    def __init__(
        self, topic: str, window_seconds: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.topic = topic
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._parts: dict[int, PartitionPoints] = {}
        self._replay_start: dict[int, int] = {}
        self._dropped_old = 0

    def _oldest(self) -> int:
        return int(self._clock()) - self._window

    def decode(self, value: bytes) -> PointBatch:
        return decode_points(value)

    def apply(self, records: Sequence[Record[PointBatch]]) -> None:
        with self._lock:
            oldest = self._oldest()
            for r in records:
                part = self._parts.get(r.partition)
                if part is None:
                    part = self._parts[r.partition] = PartitionPoints()
                batch = r.value
                kept = part.insert(batch.sid, batch.ts, batch.value, oldest)
                self._dropped_old += len(batch) - kept
            for part in self._parts.values():
                part.evict(oldest)

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        # Replay everything the broker appended within the window; older points that
        # arrive late are dropped at apply by their own timestamps.
        return StartPosition(timestamp_ms=now_ms - self._window * 1000)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        with self._lock:
            for p in partitions:
                self._parts.setdefault(p, PartitionPoints())
                self._replay_start[p] = replay_from_ms.get(p, 0) // 1000

    def revoked(self, partitions: Sequence[int]) -> None:
        with self._lock:
            for p in partitions:
                self._parts.pop(p, None)
                self._replay_start.pop(p, None)

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """[max(now - window, replay start), now] per owned partition."""
        with self._lock:
            return {
                p: [max(now - self._window, self._replay_start.get(p, now)), now]
                for p in partitions
                if p in self._parts
            }

    def idle(self) -> None:
        with self._lock:
            oldest = self._oldest()
            for part in self._parts.values():
                part.evict(oldest)

    def read(self, sids: Sids, start: int, end: int) -> Columns:
        """Points of ``sids`` in ``[start, end]`` (clamped to the window), sorted by
        (sid, ts), duplicates resolved."""
        wanted = np.unique(sids)
        with self._lock:
            start = max(start, self._oldest())
            parts = (
                [p.read(wanted, start, end) for p in self._parts.values()] if start <= end else []
            )
        # A sid belongs to one org|metric, hence one partition: the parts are disjoint.
        return sort_columns(concat([p for p in parts if p[0].size]))

    def rows(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._parts.values())
