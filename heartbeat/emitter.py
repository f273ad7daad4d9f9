"""The heartbeat emitter: every second, a synthetic series point sent to intake's public
``POST /api/v2/series`` with the reserved heartbeat key, like any customer's agent would.

Intake recognises the heartbeat org and writes a marker to every partition of every topic
(intake/heartbeats.py). The point's value is the send time in ms, so a store's watermark
can be turned into an end-to-end lag. A failed send is logged (never the key) and counted;
the next beat is attempted on schedule: a missing heartbeat only makes watermarks older,
which is the truth (the pipeline is not known to be complete).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

log = logging.getLogger(__name__)

HEARTBEAT_METRIC = "strata.heartbeat"


@dataclass
class EmitterStats:
    sent: int = 0
    failed: int = 0
    last_error: str = ""


def heartbeat_payload(now: float) -> bytes:
    """The v2 series body of one heartbeat sent at ``now``."""
    point = {"timestamp": int(now), "value": int(now * 1000)}
    series = {"metric": HEARTBEAT_METRIC, "type": 3, "points": [point]}
    return orjson.dumps({"series": [series]})


class Emitter:
    def __init__(
        self,
        intake_url: str,
        api_key: str,
        *,
        interval_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        http: httpx.Client | None = None,
    ) -> None:
        self._url = intake_url.rstrip("/") + "/api/v2/series"
        self._headers = {"DD-API-KEY": api_key, "content-type": "application/json"}
        self._interval = interval_seconds
        self._clock = clock
        self._http = http or httpx.Client(timeout=timeout_seconds)
        self.stats = EmitterStats()

    def beat(self) -> bool:
        """Send one heartbeat; True when intake accepted it (202)."""
        try:
            resp = self._http.post(
                self._url, content=heartbeat_payload(self._clock()), headers=self._headers
            )
        except httpx.HTTPError as exc:
            return self._failed(f"intake unreachable: {exc}")
        if resp.status_code != 202:
            return self._failed(f"intake answered {resp.status_code}: {resp.text[:200]}")
        self.stats.sent += 1
        return True

    def _failed(self, why: str) -> bool:
        self.stats.failed += 1
        if why != self.stats.last_error:
            log.warning("heartbeat not accepted: %s", why)
        self.stats.last_error = why
        return False

    def run(self, stop: threading.Event) -> None:
        """Beat every ``interval_seconds`` (on a fixed schedule) until ``stop`` is set."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.beat()
            next_at += self._interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow send: skip the missed beats rather than burst
                next_at = time.monotonic()
                delay = 0
            stop.wait(delay)

    def close(self) -> None:
        self._http.close()
