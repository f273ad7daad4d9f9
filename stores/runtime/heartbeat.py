"""Registry heartbeat: publish this instance's Registration every few seconds.

Redis being down must not stop consumption: failures are logged and retried on the next
tick; the entry simply lapses (TTL) until Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from strata.registry import Registration, Registry

log = logging.getLogger(__name__)


class RegistryHeartbeat:
    """Calls ``snapshot()`` and publishes it every ``interval`` seconds in its own thread."""

    def __init__(
        self,
        registry: Registry,
        snapshot: Callable[[], Registration],
        *,
        interval: float,
        ttl: int,
    ) -> None:
        self._registry = registry
        self._snapshot = snapshot
        self._interval = interval
        self._ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def publish_once(self) -> bool:
        reg = self._snapshot()
        reg.updated = time.time()
        try:
            self._registry.publish(reg, self._ttl)
        except Exception as exc:  # redis raises many types; none may kill the store
            if not self._failing:
                log.warning("registry publish failed (will retry): %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("registry publish recovered")
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish_once()
            self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stop publishing and withdraw the entry so queries stop routing here at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        try:
            self._registry.withdraw(self._snapshot())
        except Exception as exc:  # the TTL will remove it instead
            log.warning("registry withdraw failed: %s", exc)
        self._registry.close()
