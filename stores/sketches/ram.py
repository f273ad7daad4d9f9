"""The RAM sketch store: the last few hours of the sketches topic in memory.

It runs as a second consumer loop of the RAM store process (``stores/ram/__main__.py``),
with the RAM store's window, replay margin and coverage rules (docs/stores.md), and differs
in one thing: merging sketches is not idempotent, so a message must be applied exactly once.

- On every assignment of a partition the consumer seeks to ``now - window - margin`` by
  broker time (:meth:`start_position`), so :meth:`assigned` drops whatever the partition
  held: the replay rebuilds it from a clean state. A process restart starts clean anyway.
- Within one assignment, a record whose offset is below the partition's next offset is
  skipped (a redelivery: a batch re-read after a failure) and counted.

Thread safety: the consumer thread applies and HTTP threads read, all under one lock
(reads consolidate blocks, a mutation).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from stores.runtime.replay import ReplayWindow
from stores.runtime.store import Record, StartPosition, Store
from stores.sketches.memory import PartitionSketches
from stores.sketches.read import Sids, bucket_span
from strata.codec import SketchMessage, decode_sketches
from strata.sketch import SketchBatch, SketchParams

log = logging.getLogger(__name__)

KIND = "ram-sketches"


class RamSketchStore(Store[SketchMessage]):
    kind = KIND

    def __init__(
        self,
        topic: str,
        window_seconds: int,
        *,
        replay_margin_seconds: int = 600,
        params: SketchParams | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.params = params or SketchParams()
        self._lock = threading.Lock()
        self._replay = ReplayWindow(window_seconds, replay_margin_seconds, clock)
        self._parts: dict[int, PartitionSketches] = {}
        self._next: dict[int, int] = {}  # partition -> next offset to apply
        self.skipped_records = 0
        self.dropped_old = 0

    def decode(self, value: bytes) -> SketchMessage:
        return decode_sketches(value)

    def apply(self, records: Sequence[Record[SketchMessage]]) -> None:
        with self._lock:
            oldest = self._replay.oldest()
            for r in records:
                self._replay.seen(r.partition, r.timestamp_ms)
                part = self._parts.get(r.partition)
                if part is None:
                    continue  # not (or no longer) assigned here
                if r.offset < self._next.get(r.partition, -1):
                    self.skipped_records += 1
                    continue
                self._next[r.partition] = r.offset + 1
                kept = part.insert(r.value.batch, oldest)
                self.dropped_old += len(r.value) - kept
            for part in self._parts.values():
                part.evict(oldest)

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return self._replay.start_position(now_ms)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        with self._lock:
            for p in partitions:
                # The consumer replays the partition from the seek time: start clean, or
                # every sketch still held would be merged in a second time.
                self._parts[p] = PartitionSketches(self.params)
                self._next.pop(p, None)
            self._replay.assigned(partitions, replay_from_ms)

    def revoked(self, partitions: Sequence[int]) -> None:
        with self._lock:
            for p in partitions:
                self._parts.pop(p, None)
                self._next.pop(p, None)
            self._replay.revoked(partitions)

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """As the RAM store (stores/runtime/replay.py)."""
        with self._lock:
            return self._replay.coverage([p for p in partitions if p in self._parts], now)

    def caught_up(self, partition: int, end_offset: int) -> None:
        with self._lock:
            self._replay.caught_up(partition)

    def idle(self) -> None:
        with self._lock:
            oldest = self._replay.oldest()
            for part in self._parts.values():
                part.evict(oldest)

    def read_sketches(self, sids: Sids, start: int, end: int, step: int) -> SketchBatch:
        """Rows per (sid, ``step`` bucket) whose bucket start is in ``[start, end]``, each
        over the whole bucket, clamped to the window like the RAM store's reads."""
        wanted = np.unique(sids)
        lo, hi = bucket_span(start, end, step) if step > 1 else (start, end)
        with self._lock:
            lo = max(lo, self._replay.oldest())
            parts = [p.read(wanted, lo, hi) for p in self._parts.values()] if lo <= hi else []
        parts = [p for p in parts if len(p)]
        if not parts:
            return SketchBatch.empty(self.params)
        rows = parts[0] if len(parts) == 1 else SketchBatch.concat(parts)
        if step > 1:
            return rows.rollup(step)
        # A sid belongs to one org|metric, hence one partition: several parts are disjoint
        # and merging them only sorts them.
        return rows.merge_by_key() if len(parts) > 1 else rows

    def rows(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._parts.values())
