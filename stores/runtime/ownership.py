"""What this instance owns right now: partitions and the next offset of each.

Written by the consumer thread, read by the registry heartbeat and the HTTP ``/health``
handler, hence the lock; readers get copies.
"""

from __future__ import annotations

import threading

from stores.runtime.watermarks import Watermarks


class Ownership:
    def __init__(self) -> None:
        # How complete each owned partition is (heartbeat markers made durable).
        self.watermarks = Watermarks()
        self._lock = threading.Lock()
        self._next: dict[int, int | None] = {}
        self._epoch = 0

    def assign(self, starts: dict[int, int | None]) -> None:
        """Replace the assignment (eager rebalancing hands out the full set each time)."""
        with self._lock:
            self._next = dict(starts)
            self._epoch += 1

    def revoke(self, partitions: list[int]) -> None:
        with self._lock:
            for p in partitions:
                self._next.pop(p, None)
            self._epoch += 1

    def applied(self, next_offsets: dict[int, int]) -> None:
        with self._lock:
            for p, off in next_offsets.items():
                if p in self._next:
                    self._next[p] = off

    def epoch(self) -> int:
        """Changes with every assignment and revocation (stores/runtime/serving.py)."""
        with self._lock:
            return self._epoch

    def partitions(self) -> list[int]:
        with self._lock:
            return sorted(self._next)

    def offsets(self) -> dict[int, int]:
        """Partition -> next offset to apply, for partitions where it is known."""
        with self._lock:
            return {p: o for p, o in sorted(self._next.items()) if o is not None and o >= 0}
