"""Coverage of stores that answer about a partition as a whole (the tag and inverted
indexes): a partition is advertised only once the consumer has reached its end since it was
assigned here.

Without this, an instance that has just been given a partition (another instance died, or
the group rebalanced) would be routed queries while it is still replaying that partition's
history, and would answer them with the series it has seen so far: a silently incomplete
answer. Until the end-of-partition event, the query service finds no coverage for the
partition and answers 503 (or a partial answer naming it) instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class CaughtUpCoverage:
    """Mixin for a :class:`stores.runtime.store.Store`: overrides ``assigned``,
    ``revoked``, ``caught_up`` and ``coverage``. Thread-safe: the consumer thread updates
    it while the registry heartbeat reads it."""

    def __init__(self) -> None:
        self._caught_up: set[int] = set()
        self._caught_up_lock = threading.Lock()

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        with self._caught_up_lock:
            self._caught_up.difference_update(partitions)

    def revoked(self, partitions: Sequence[int]) -> None:
        with self._caught_up_lock:
            self._caught_up.difference_update(partitions)

    def caught_up(self, partition: int, end_offset: int) -> None:
        with self._caught_up_lock:
            self._caught_up.add(partition)

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        with self._caught_up_lock:
            return {p: [0, now] for p in partitions if p in self._caught_up}
