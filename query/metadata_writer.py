"""Metric metadata writes (``PUT /api/v1/metrics/{name}``) through the series topic.

The tag index that owns a metric's partition serves its metadata, but ownership moves (a
rebalance, a crash, a new instance): an update written into one instance's RocksDB would be
lost to the next owner. So an update is a message on the series topic, keyed ``org|metric``
like the series announcements (docs/formats.md, kind 5): every instance that ever owns the
partition applies the same updates in the same log order, and a replay rebuilds them.

The PUT answers after the broker acknowledged the update (``acks=all``, idempotent
producer) and the owning instance shows it, so a GET right after sees the new value.
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from strata.codec import encode_metadata
from strata.partitioning import partition_key


class MetadataWriteFailed(RuntimeError):
    """The broker did not acknowledge the update in time (HTTP 503)."""


class MetadataWriter:
    def __init__(self, bootstrap: str, topic: str, *, timeout_seconds: float = 5.0) -> None:
        self._topic = topic
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._config = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
        self._producer: Producer | None = None

    def _client(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self._config)
            return self._producer

    def _retire(self) -> None:
        # After a broker restart an idempotent producer must be recreated (tansu).
        with self._lock:
            self._producer = None

    def write(self, org: str, metric: str, fields: dict[str, Any], partition: int) -> None:
        """Produce the update to ``partition`` of the series topic and wait for the ack."""
        done = threading.Event()
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            done.set()

        producer = self._client()
        try:
            producer.produce(
                self._topic,
                value=encode_metadata(org, metric, fields),
                key=partition_key(org, metric),
                partition=partition,
                on_delivery=on_delivery,
            )
        except (BufferError, KafkaException) as exc:
            self._retire()
            raise MetadataWriteFailed(f"metadata update not produced: {exc}") from exc
        producer.flush(self._timeout)
        if not done.is_set() or errors:
            self._retire()
            why = errors[0] if errors else f"no acknowledgement within {self._timeout:g} s"
            raise MetadataWriteFailed(f"metadata update not stored: {why}")

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self._timeout)
