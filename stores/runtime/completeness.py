"""Per-partition completeness of a store that keeps its own applied offsets and can start a
partition mid-log (the rocks point and sketch stores): when it may advertise a partition's
coverage, and from what time it holds all of the partition (docs/rocks.md, "Coverage").

The rules, in one place so the stores cannot drift apart:

- A partition assigned here is *catching up* until the consumer reaches its end (the
  partition-EOF event, :meth:`Completeness.caught_up`) or a record appended after the
  assignment is read (:meth:`Completeness.seen`); meanwhile it advertises nothing.
- ``complete_p``, the time from which the store holds every point of partition ``p``, is
  recorded once, and only for a partition read from the beginning of the topic (no stored
  offset). It comes from the first *message* the consumer reads, not the first record:
  heartbeat markers usually come first and never reach ``apply``. First message at offset 0:
  the whole log is here, ``complete_p = 0``. At a later offset: Kafka deleted the log's
  start, whose messages were appended before this one's append time ``A`` and held points
  stamped at most ``future_margin_seconds`` after their append time (both in whole
  seconds, so a deleted message of the same second as ``A`` may hold one at ``A + margin``),
  so ``complete_p = A + margin + 1``. It is written together with the partition's first applied
  offset (:meth:`Completeness.take_complete`).
- Partition EOF at an offset > 0 with no record applied: ``complete_p`` from the first
  message when one was read (markers only), else (every message already deleted)
  ``now + margin + 1``.
- Coverage: ``[max(oldest kept, complete_p), now]``, nothing while catching up or while that
  start is still ahead of ``now``.

Pure: what the store's database says comes in through :class:`Stored`, the clock is passed
in, and the methods return what the store must write (stores/runtime/completeness_db.py
holds the RocksDB side). The consumer thread calls everything but :meth:`coverage`, which the
registry heartbeat and HTTP threads call too; the catching-up set is therefore locked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol


class Stored(Protocol):
    """What the store has durably recorded about a partition."""

    def next_offset(self, partition: int) -> int:
        """The next offset to apply (0 when nothing was ever applied)."""

    def complete_from(self, partition: int) -> int | None:
        """Unix seconds from which the store holds all of the partition, if recorded."""


class Completeness:
    """Catching-up state, a cache of the applied offsets and the pending ``complete_p``
    of the partitions assigned to one store instance (module docstring)."""

    def __init__(
        self, stored: Stored, future_margin_seconds: int, clock: Callable[[], float]
    ) -> None:
        self._stored = stored
        self._margin = future_margin_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._catching_up: dict[int, int] = {}  # partition -> assignment time (ms)
        self._next: dict[int, int] = {}  # partition -> next offset to apply (cache)
        # partition -> complete_p its first message says, written with its first record
        self._pending: dict[int, int] = {}

    def reset(self) -> None:
        """The stored offsets changed under the cache (a new topic id): forget it."""
        self._next.clear()

    def assigned(self, partitions: Iterable[int]) -> None:
        now_ms = int(self._clock() * 1000)
        with self._lock:
            for p in partitions:
                self._catching_up[p] = now_ms
                self._next.pop(p, None)

    def revoked(self, partitions: Iterable[int]) -> None:
        with self._lock:
            for p in partitions:
                self._catching_up.pop(p, None)
                self._next.pop(p, None)
                self._pending.pop(p, None)

    def next_offset(self, partition: int) -> int:
        """The partition's next offset to apply: records below it are redeliveries."""
        if partition not in self._next:
            self._next[partition] = self._stored.next_offset(partition)
        return self._next[partition]

    def applied(self, next_offsets: dict[int, int]) -> None:
        """The store durably recorded these next offsets."""
        self._next.update(next_offsets)

    def first_message(self, partition: int, offset: int, timestamp_ms: int) -> None:
        """The first message read of ``partition`` since its assignment (any kind: record,
        heartbeat marker or unreadable), at ``offset``, appended at ``timestamp_ms``."""
        if self.next_offset(partition) != 0 or self._stored.complete_from(partition) is not None:
            return  # resumed from our own offset: completeness is already recorded
        self._pending[partition] = 0 if offset == 0 else timestamp_ms // 1000 + self._margin + 1

    def seen(self, partition: int, timestamp_ms: int) -> None:
        """A record of ``partition`` appended at ``timestamp_ms`` was read (applied or
        skipped): one appended after the assignment ends the catch-up."""
        with self._lock:
            started = self._catching_up.get(partition)
            if started is not None and timestamp_ms >= started:
                del self._catching_up[partition]

    def take_complete(self, partitions: Iterable[int]) -> dict[int, int]:
        """Partition -> ``complete_p`` to write together with the first applied offsets of
        ``partitions`` (those whose first message set one); each is handed out once."""
        out: dict[int, int] = {}
        for p in partitions:
            lo = self._pending.pop(p, None)
            if lo is not None:
                out[p] = lo
        return out

    def caught_up(self, partition: int, end_offset: int) -> int | None:
        """The consumer reached the partition's end at ``end_offset`` with everything before
        it applied. Returns the ``complete_p`` to write now when none is recorded and no
        record was applied (markers only, or the log deleted before we read it)."""
        with self._lock:
            self._catching_up.pop(partition, None)
        nothing_applied = self.next_offset(partition) == 0
        if end_offset > 0 and nothing_applied and self._stored.complete_from(partition) is None:
            return self._pending.pop(partition, int(self._clock()) + self._margin + 1)
        return None

    def catching_up(self) -> list[int]:
        """Partitions still catching up."""
        with self._lock:
            return sorted(self._catching_up)

    def coverage(self, partitions: Sequence[int], now: int, oldest: int) -> dict[int, list[int]]:
        """``[max(oldest, complete_p), now]`` for each of ``partitions`` that caught up,
        unless that start is after ``now``; ``oldest`` is the store's oldest kept time."""
        with self._lock:
            catching_up = set(self._catching_up)
        out: dict[int, list[int]] = {}
        for p in partitions:
            if p in catching_up:
                continue
            complete = self._stored.complete_from(p)
            lo = oldest if complete is None else max(oldest, complete)
            if lo <= now:
                out[p] = [lo, now]
        return out
