"""Heartbeats at intake (docs/heartbeats.md): the emit time a heartbeat carries, and the
start times of the submissions intake is still working on.

A heartbeat marker claims "everything accepted before my time precedes me in the
partition". A submission that started before the heartbeat arrived may still be producing
its points; they could land after the marker. So the marker's time is the start of the
oldest submission still in flight (or the heartbeat's own arrival when none is): every
submission that started earlier has been acknowledged by the broker, hence precedes the
marker in every partition.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from intake.parse import PayloadError

# Kafka key of heartbeat markers (their partition is chosen explicitly: every one).
HEARTBEAT_KEY = b"\x00heartbeat"


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._started: dict[int, float] = {}

    def start(self, now: float) -> int:
        with self._lock:
            token = next(self._tokens)
            self._started[token] = now
            return token

    def end(self, token: int) -> None:
        with self._lock:
            self._started.pop(token, None)

    def complete_before(self, now: float) -> float:
        """The latest time before which every submission has finished: ``now``, or the
        start of the oldest one still in flight."""
        with self._lock:
            return min(self._started.values(), default=now) if self._started else now

    def __len__(self) -> int:
        with self._lock:
            return len(self._started)


def heartbeat_emit_ms(doc: Any, *, default: int) -> int:
    """The emitter's send time (ms): the value of the first point of the first series, in
    the v2 (``{"value": v}``) or v1 (``[ts, v]``) shape; ``default`` when there is none."""
    try:
        point = doc["series"][0]["points"][0]
    except (KeyError, IndexError, TypeError):
        return default
    value = point.get("value") if isinstance(point, dict) else None
    if isinstance(point, list) and len(point) == 2:
        value = point[1]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise PayloadError("series[0].points[0]", "the value must be the emit time in ms")
    return int(value)
