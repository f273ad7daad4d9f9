"""Webhook notifications of monitor transitions (docs/monitors.md, "Webhooks").

A monitor whose message mentions ``@webhook-NAME`` has each of its transitions posted as a
JSON event (:func:`event_body`, format version 1) to the URL configured for ``NAME``
(``STRATA_WEBHOOKS``). Delivery is at least once, through the outbox of
:mod:`query.monitor_store`:

1. the evaluator records a transition and its outbox entries (one per webhook) in the same
   Redis transaction as the state change, so a recorded transition is always queued;
2. :meth:`WebhookNotifier.deliver_pending` claims each due entry (a lease, so a second
   notifier skips it), posts it, and on a 2xx answer marks it delivered (entry removed in
   one transaction): a delivered event is never sent again;
3. a failed or unanswered post is retried with exponential backoff; an entry whose sender
   died (evaluator restarted) becomes due again when its lease ends and is sent then.

So a receiver sees every event at least once and, unless a sender dies between the
receiver's 2xx and the delivery mark, exactly once; the stable ``event_id``
(``<monitor id>:<group>:<transition seq>``, also in the ``X-Strata-Event-Id`` header) lets
it drop the rare duplicate.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from heartbeat.settings import EvaluatorSettings
from query.monitor_store import MonitorStore, MonitorStoreUnavailable, OutboxEntry

log = logging.getLogger(__name__)

EVENT_VERSION = 1
EVENT_ID_HEADER = "X-Strata-Event-Id"
_MENTION = re.compile(r"@webhook-([A-Za-z0-9_-]+)")


def mentioned_webhooks(message: str) -> list[str]:
    """The webhook names ``@webhook-NAME`` mentions in ``message``, in order, once each."""
    return list(dict.fromkeys(_MENTION.findall(message)))


def event_body(entry: OutboxEntry) -> dict[str, Any]:
    """The JSON event (version 1) posted for an outbox entry; the same bytes every time the
    entry is sent, whatever happened to the monitor since."""
    r = entry.record
    t = r.transition
    m = entry.monitor
    return {
        "version": EVENT_VERSION,
        "event_id": r.event_id,
        "event_type": t.kind,
        "org": r.org,
        "monitor": {
            "id": m["id"],
            "name": m["name"],
            "type": m["type"],
            "query": m["query"],
            "tags": m["tags"],
            "priority": m["priority"],
        },
        "message": m["message"],
        "group": t.group,
        "transition": {"seq": r.seq, "from": t.from_state, "to": t.to_state},
        "value": t.value,
        "window": {"start": t.window_start, "end": t.window_end},
        "time": t.time,
        "webhook": entry.webhook,
    }


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """Seconds to wait before the next try after ``attempts`` failed ones (doubling)."""
    return float(min(maximum, initial * 2 ** min(attempts, 30)))


class WebhookNotifier:
    """Sends due outbox entries to their webhooks (see the module docstring)."""

    def __init__(
        self,
        store: MonitorStore,
        webhooks: Mapping[str, str],
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 5.0,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        interval_seconds: float = 1.0,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._webhooks = dict(webhooks)
        self._client = client or httpx.Client(timeout=timeout_seconds)
        self._owns_client = client is None
        self._clock = clock
        self._retry = (retry_initial_seconds, retry_max_seconds)
        # Longer than one post can take: a live sender always finishes before its lease ends.
        self._lease = 2 * timeout_seconds + 5
        self._interval = interval_seconds
        self._batch = batch
        self._wake = threading.Event()
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, store: MonitorStore, settings: EvaluatorSettings) -> WebhookNotifier:
        return cls(
            store,
            settings.webhooks,
            timeout_seconds=settings.webhook_timeout_seconds,
            retry_initial_seconds=settings.webhook_retry_initial_seconds,
            retry_max_seconds=settings.webhook_retry_max_seconds,
            interval_seconds=settings.delivery_interval_seconds,
        )

    def targets(self, message: str) -> list[str]:
        """The configured webhooks ``message`` mentions; unknown names are logged (once)."""
        names = mentioned_webhooks(message)
        for name in names:
            if name not in self._webhooks and name not in self._warned:
                self._warned.add(name)
                log.warning("monitor message mentions @webhook-%s, which is not configured", name)
        return [n for n in names if n in self._webhooks]

    def kick(self) -> None:
        """Wake the delivery loop now (a transition was just recorded)."""
        self._wake.set()

    def deliver_pending(self) -> int:
        """Send every due entry once; returns how many were delivered."""
        now = self._clock()
        delivered = 0
        for entry in self._store.due(now, self._batch):
            if not self._store.claim(entry.key, now, self._lease):
                continue  # another notifier has it, or it was delivered meanwhile
            url = self._webhooks.get(entry.webhook)
            error = self._post(url, entry) if url else f"webhook {entry.webhook!r} not configured"
            if error is None:
                self._store.mark_delivered(entry.key, self._clock())
                delivered += 1
            else:
                wait = backoff(entry.attempts, *self._retry)
                log.warning(
                    "webhook %s: event %s not delivered (attempt %d): %s; retry in %.0f s",
                    entry.webhook,
                    entry.record.event_id,
                    entry.attempts + 1,
                    error,
                    wait,
                )
                self._store.retry_later(entry, self._clock() + wait, error)
        return delivered

    def _post(self, url: str, entry: OutboxEntry) -> str | None:
        """``None`` when the receiver answered 2xx, else what went wrong."""
        body = orjson.dumps(event_body(entry))
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: entry.record.event_id}
        try:
            resp = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code}"

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set: every ``interval_seconds`` or when kicked."""
        while not stop.is_set():
            try:
                self.deliver_pending()
            except MonitorStoreUnavailable as exc:
                log.warning("webhook delivery paused: %s", exc)
            self._wake.wait(self._interval)
            self._wake.clear()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
