"""What the query process remembers of each point tier's history, for the planner.

The planner tells "before history" (empty: no tier ever held points there) from a gap (503:
a tier holds points there but cannot serve them now) by the oldest time each tier holds.
A tier that is unregistered (crashed, restarting, TTL lapsed) or advertises nothing for a
while (catching up after a restart) says nothing about its history, so the query process
keeps, per (tier kind, partition, topic), the start of the coverage it last saw advertised,
for the lifetime of the process.

The *latest* advertisement wins, not the oldest ever seen: a tier's start moves forward
legitimately (retention drops shards and objects, RAM's window slides), and what it dropped
is before history again. The stores advertise nothing until they have caught up, so a
restart never shows a spuriously late start. No I/O here; thread-safe (the HTTP handlers
run in a thread pool).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from strata.registry import Registration

Key = tuple[str, int, str]  # (tier kind, partition, topic)


class TierHistory:
    """Per (tier kind, partition, topic): the coverage start last advertised."""

    def __init__(self) -> None:
        self._lo: dict[Key, int] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, partition: int, topic: str, lo: int) -> None:
        """Record that ``kind``'s instance for ``partition`` of ``topic`` advertises ``lo``."""
        with self._lock:
            self._lo[(kind, partition, topic)] = lo

    def observe_registrations(self, registrations: Iterable[Registration]) -> None:
        """Record every coverage the registrations advertise for partitions they own. When
        two instances claim a partition (a rebalance), the most recently refreshed wins."""
        latest: dict[Key, tuple[float, int]] = {}
        for reg in registrations:
            for partition, cov in reg.coverage.items():
                parsed = parse_coverage(cov)
                if parsed is None or partition not in reg.partitions:
                    continue
                key = (reg.kind, partition, reg.topic)
                if key not in latest or reg.updated >= latest[key][0]:
                    latest[key] = (reg.updated, parsed[0])
        with self._lock:
            self._lo.update({key: lo for key, (_, lo) in latest.items()})

    def lo(self, kind: str, partition: int, topic: str | None) -> int | None:
        """The start of ``kind``'s history for ``partition`` of ``topic`` (None: of any
        topic, the oldest), or None if this process never saw coverage advertised for it."""
        with self._lock:
            if topic is not None:
                return self._lo.get((kind, partition, topic))
            starts = [lo for (k, p, _), lo in self._lo.items() if (k, p) == (kind, partition)]
        return min(starts, default=None)


def parse_coverage(value: object) -> tuple[int, int] | None:
    """A registry coverage entry ``[lo, hi]`` as (lo, hi), or None when absent or malformed
    (a tier whose coverage cannot be read is treated as covering nothing)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    lo, hi = value
    if not isinstance(lo, int) or not isinstance(hi, int) or lo > hi:
        return None
    return lo, hi
