"""Window and replay bookkeeping of a store that holds the last few hours in memory and
rebuilds them by replaying Kafka on every assignment (the RAM point and sketch stores,
docs/stores.md): where a partition starts, when its coverage may be advertised, from what
time, and what is old enough to evict.

- Start: seek by broker append time to ``now - window - margin``. Points are kept by their
  own timestamps, and intake accepts points stamped up to its future window ahead of their
  append: a point appended before ``now - window`` can still be inside the window. So a
  margin more is replayed; whatever is older than the window is dropped at apply.
- A partition is *replaying* from its assignment until the consumer reaches its end (the
  partition-EOF event, :meth:`ReplayWindow.caught_up`) or a record appended after the
  assignment is read (:meth:`ReplayWindow.seen`): everything before it was replayed. A
  partition still replaying advertises nothing, so no reader mistakes its partial window for
  a complete one.
- Coverage: ``[max(now - window, replay start), now]``, where the replay start is the seek
  time plus the margin (points stamped before it may have been appended before the seek).

Pure (the clock is passed in) and not locked: the stores call it under their own lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stores.runtime.store import StartPosition


class ReplayWindow:
    """The window, replay starts and replaying partitions of one store instance."""

    def __init__(
        self, window_seconds: int, margin_seconds: int, clock: Callable[[], float]
    ) -> None:
        self._window = window_seconds
        self._margin = margin_seconds
        self._clock = clock
        self._start: dict[int, int] = {}  # partition -> replay start (Unix seconds)
        self._replaying: dict[int, int] = {}  # partition -> assignment time (ms)

    def oldest(self) -> int:
        """The oldest time (Unix seconds) inside the window now: older points are evicted."""
        return int(self._clock()) - self._window

    def start_position(self, now_ms: int) -> StartPosition:
        """Where a newly assigned partition starts: the window and the margin before now."""
        return StartPosition(timestamp_ms=now_ms - (self._window + self._margin) * 1000)

    def assigned(self, partitions: Iterable[int], replay_from_ms: dict[int, int]) -> None:
        """``partitions`` start replaying from the seek times in ``replay_from_ms``."""
        now_ms = int(self._clock() * 1000)
        for p in partitions:
            self._start[p] = replay_from_ms.get(p, 0) // 1000 + self._margin
            self._replaying[p] = now_ms

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._start.pop(p, None)
            self._replaying.pop(p, None)

    def seen(self, partition: int, timestamp_ms: int) -> None:
        """A record of ``partition`` appended at ``timestamp_ms`` was read: one appended
        after the assignment ends the replay."""
        started = self._replaying.get(partition)
        if started is not None and timestamp_ms >= started:
            del self._replaying[partition]

    def caught_up(self, partition: int) -> None:
        """The consumer reached the partition's end: its replay is complete."""
        self._replaying.pop(partition, None)

    def replaying(self) -> list[int]:
        """Partitions whose replay has not caught up yet."""
        return sorted(self._replaying)

    def coverage(self, partitions: Iterable[int], now: int) -> dict[int, list[int]]:
        """``[max(now - window, replay start), now]`` for each of ``partitions`` (those the
        store holds) whose replay caught up; without a replay start, ``[now, now]``."""
        return {
            p: [max(now - self._window, self._start.get(p, now)), now]
            for p in partitions
            if p not in self._replaying
        }
