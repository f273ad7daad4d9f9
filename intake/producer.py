"""Kafka producer wrapper: awaitable, all-or-nothing acknowledgement of a request's messages.

confluent_kafka delivery callbacks run on a poll thread; they count a request's
acknowledgements and resolve its asyncio future on the event loop once.
:meth:`ReliableProducer.produce_all` returns only once the broker acknowledged every message
(``acks=all``, idempotence on) and raises :class:`BrokerUnavailable` when it cannot within
``timeout`` seconds, when the local queue is full, or when a delivery fails.

A producer that failed a delivery or reported a fatal error is never trusted again: after a
broker restart its idempotence state (producer id, sequence numbers) may be unknown to the
broker, and librdkafka cannot recover from that. It is retired (its queue purged) and the
next request gets a fresh producer, so intake recovers on its own when the broker returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from strata.partitioning import partition_for

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
# Memoised key placements kept (an org|metric key each, ~100 bytes).
_PLACEMENT_MEMO = 100_000


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    partition: int
    key: bytes
    value: bytes


class BrokerUnavailable(RuntimeError):
    """The request's messages could not all be acknowledged; the client should retry.

    ``reason`` is a bounded label for the metrics (queue_full, produce_failed,
    ack_timeout, delivery_failed, no_metadata)."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class _DeliveryFailed(Exception):
    def __init__(self, err: KafkaError) -> None:
        super().__init__(err.str())
        self.err = err


def _settle(fut: asyncio.Future[None], err: KafkaError | None) -> None:
    if fut.done():  # the request already gave up (timeout or another failure)
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(_DeliveryFailed(err))


class _Acks:
    """The delivery callback of one request's messages (runs on the poll thread, which
    serves every callback of a producer, so the count needs no lock). The request's future
    is settled once, by the last acknowledgement or the first failure: one event-loop
    wake-up per request instead of one per message."""

    __slots__ = ("_fut", "_left", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], n: int):
        self._loop = loop
        self._fut = fut
        self._left = n

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if self._left <= 0:  # a failure already settled the request
            return
        if err is None:
            self._left -= 1
            if self._left:
                return
        else:
            self._left = 0
        # RuntimeError: the loop closed during shutdown and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, self._fut, err)


class _Generation:
    """One confluent Producer and the thread that polls it."""

    def __init__(self, config: dict[str, Any], number: int) -> None:
        self.number = number
        self.broken = False
        self._stop = threading.Event()
        self.producer = Producer({**config, "error_cb": self._on_error})
        self._thread = threading.Thread(
            target=self._run, name=f"intake-producer-{number}", daemon=True
        )
        self._thread.start()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("producer %d fatal error: %s", self.number, err.str())
            self.broken = True
        else:
            log.debug("producer %d: %s", self.number, err.str())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(_POLL_SECONDS)
        # Retired: fail whatever is still queued (its requests get 503) and serve the
        # callbacks, so no future is left waiting on a producer nobody polls.
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        self.producer.flush(1.0)

    def flush(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout + 2.0)

    def retire(self) -> None:
        self._stop.set()


class ReliableProducer:
    """Produces one request's messages and waits for all their acknowledgements."""

    def __init__(
        self,
        config: dict[str, Any],
        timeout: float,
        *,
        on_replace: Callable[[], None] | None = None,
        on_result: Callable[[float, str | None], None] | None = None,
    ) -> None:
        self._config = {
            **config,
            "acks": "all",
            "enable.idempotence": True,
            # librdkafka gives up on its own at the same bound as the request.
            "message.timeout.ms": max(1, int(timeout * 1000)),
        }
        self._timeout = timeout
        self._on_replace = on_replace
        # (seconds, None) per acknowledged produce_all, (seconds, reason) per failed one.
        self._on_result = on_result
        self._generations = 0
        self._current: _Generation | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The librdkafka configuration every generation of the producer is made with."""
        return dict(self._config)

    def _producer(self) -> _Generation:
        gen = self._current
        if gen is None or gen.broken:
            if gen is not None:
                self._retire(gen, "fatal error")
            self._generations += 1
            gen = self._current = _Generation(self._config, self._generations)
        return gen

    def _retire(self, gen: _Generation, why: str) -> None:
        if self._current is gen:
            log.warning("replacing producer %d (%s)", gen.number, why)
            self._current = None
            if self._on_replace is not None:
                self._on_replace()
        gen.retire()

    def start(self) -> None:
        """Create the first producer now, so its connection and producer id are set up
        before the first request instead of during it."""
        self._producer()

    async def produce_all(self, messages: Sequence[OutMessage]) -> None:
        """Return once every message is acknowledged; raise :class:`BrokerUnavailable`."""
        if not messages:
            return
        if self._on_result is None:
            await self._produce_all(messages)
            return
        started = time.perf_counter()
        try:
            await self._produce_all(messages)
        except BrokerUnavailable as exc:
            self._on_result(time.perf_counter() - started, exc.reason)
            raise
        self._on_result(time.perf_counter() - started, None)

    async def _produce_all(self, messages: Sequence[OutMessage]) -> None:
        loop = asyncio.get_running_loop()
        gen = self._producer()
        done: asyncio.Future[None] = loop.create_future()
        acks = _Acks(loop, done, len(messages))
        try:
            for m in messages:
                try:
                    gen.producer.produce(
                        m.topic, m.value, m.key, partition=m.partition, on_delivery=acks
                    )
                except BufferError:
                    raise BrokerUnavailable(
                        "the local produce queue is full", "queue_full"
                    ) from None
                except KafkaException as exc:
                    self._retire(gen, f"produce failed: {exc}")
                    raise BrokerUnavailable(f"produce failed: {exc}", "produce_failed") from None
            try:
                async with asyncio.timeout(self._timeout):
                    await done
            except TimeoutError:
                self._retire(gen, "acknowledgement timeout")
                raise BrokerUnavailable(
                    f"the broker did not acknowledge within {self._timeout:g}s", "ack_timeout"
                ) from None
            except _DeliveryFailed as exc:
                self._retire(gen, f"delivery failed: {exc}")
                raise BrokerUnavailable(f"delivery failed: {exc}", "delivery_failed") from None
        finally:
            done.cancel()  # no-op once settled; silences a late settle

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop."""
        gen, self._current = self._current, None
        if gen is not None:
            gen.producer.flush(timeout)
            gen.flush(timeout)


class PartitionCounts:
    """Partition count per topic, from broker metadata; refreshed periodically.

    Counts only ever come from the broker; a failed refresh keeps the last known counts.
    :meth:`place` gives a key's partition; the murmur2 hash (Python, ~3 us a key) is
    memoised per (key, partition count), since every request names each of its metrics.
    """

    def __init__(self, bootstrap: str, initial: dict[str, int]) -> None:
        self._bootstrap = bootstrap
        self._counts = dict(initial)
        self._placed: dict[tuple[bytes, int], int] = {}

    def get(self, topic: str) -> int:
        """Raise :class:`BrokerUnavailable` for a topic never seen in metadata."""
        n = self._counts.get(topic)
        if not n:
            raise BrokerUnavailable(f"no partition metadata for topic {topic}", "no_metadata")
        return n

    def place(self, topic: str, key: bytes) -> int:
        """``partition_for(key, get(topic))``: the key's partition with the current count."""
        memo = (key, self.get(topic))
        partition = self._placed.get(memo)
        if partition is None:
            if len(self._placed) >= _PLACEMENT_MEMO:
                self._placed = {}  # bounded; worker threads may race here harmlessly
            partition = self._placed[memo] = partition_for(key, memo[1])
        return partition

    def refresh(self, topics: Sequence[str], timeout: float = 5.0) -> None:
        """Blocking: call from a worker thread."""
        try:
            # A short-lived client: nothing stays connected between refreshes.
            admin = AdminClient({"bootstrap.servers": self._bootstrap})
            meta = admin.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            log.warning("metadata refresh failed: %s", exc)
            return
        for t in topics:
            if t in meta and meta[t].error is None and meta[t].partitions:
                self._counts[t] = len(meta[t].partitions)
