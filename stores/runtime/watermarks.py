"""Per-partition heartbeat watermarks of one store instance (docs/heartbeats.md).

Intake writes a heartbeat marker (strata/codec.py, kind 4) into every partition; everything
it accepted before the marker's time precedes the marker in that partition. When this
instance has made durable everything up to a marker's offset, the partition is complete
through the marker's time: its watermark. The consumer loop records markers as it reads
them (:meth:`Watermarks.seen`) and reports how far each partition is durable
(:meth:`Watermarks.durable`); for most stores that is "everything applied" after each
batch, for the archive it is the end of the last uploaded object.

Thread-safe: the consumer thread writes, the registry heartbeat and HTTP handlers read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

# Markers still waiting for durability, per partition. Bounded: markers arrive about once a
# second, and a store that cannot make anything durable for this long has no watermark
# worth keeping precise (the oldest pending markers are dropped; later ones still count).
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class Watermark:
    marker_ms: int  # complete through this time (intake's marker time)
    emit_ms: int  # when the emitter sent the heartbeat behind it


class Watermarks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, list[tuple[int, Watermark]]] = {}
        self._current: dict[int, Watermark] = {}

    def seen(self, partition: int, offset: int, mark: Watermark) -> None:
        """A marker was read at ``offset`` (in offset order per partition)."""
        with self._lock:
            queue = self._pending.setdefault(partition, [])
            if queue and offset <= queue[-1][0]:
                return  # re-read after a rewind: already waiting
            queue.append((offset, mark))
            if len(queue) > MAX_PENDING:
                del queue[: len(queue) - MAX_PENDING]

    def durable(self, next_offsets: dict[int, int]) -> None:
        """Everything below ``next_offsets[p]`` is durable: markers before it count."""
        with self._lock:
            for p, nxt in next_offsets.items():
                queue = self._pending.get(p)
                if not queue:
                    continue
                done = 0
                while done < len(queue) and queue[done][0] < nxt:
                    done += 1
                if done:
                    newest = queue[done - 1][1]
                    old = self._current.get(p)
                    if old is None or newest.marker_ms >= old.marker_ms:
                        self._current[p] = newest
                    del queue[:done]

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions left this instance: their watermarks no longer say anything."""
        with self._lock:
            for p in partitions:
                self._pending.pop(p, None)
                self._current.pop(p, None)

    def snapshot(self) -> dict[int, Watermark]:
        with self._lock:
            return dict(self._current)


def as_registry(marks: dict[int, Watermark]) -> dict[int, list[int]]:
    """Partition -> [marker_ms, emit_ms] as published in the registry."""
    return {p: [m.marker_ms, m.emit_ms] for p, m in sorted(marks.items())}
