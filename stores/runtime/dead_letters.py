"""Dead-letter producer: unreadable messages are parked with the reason, never dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)


class DeadLetterFailed(RuntimeError):
    """The broker did not take the dead letters; the batch must not be committed."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An unreadable message and why it could not be read."""

    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int

    def headers(self, group: str) -> list[tuple[str, str | bytes | None]]:
        return [
            ("reason", self.reason.encode()),
            ("source-topic", self.source_topic.encode()),
            ("source-partition", str(self.source_partition).encode()),
            ("source-offset", str(self.source_offset).encode()),
            ("consumer-group", group.encode()),
        ]


class DeadLetterWriter:
    """Writes dead letters and waits for the broker's acknowledgement of all of them."""

    def __init__(self, bootstrap: str, topic: str, group: str, timeout: float) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
        self._topic = topic
        self._group = group
        self._timeout = timeout
        self._producer = Producer(self._config)

    def write(self, letters: list[DeadLetter]) -> None:
        """Produce ``letters`` and block until acknowledged; raise :class:`DeadLetterFailed`."""
        if not letters:
            return
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for letter in letters:
            log.warning(
                "dead letter %s[%d]@%d: %s",
                letter.source_topic,
                letter.source_partition,
                letter.source_offset,
                letter.reason,
            )
            self._producer.produce(
                self._topic,
                value=letter.value,
                key=letter.key,
                headers=letter.headers(self._group),
                on_delivery=on_delivery,
            )
        remaining = self._producer.flush(self._timeout)
        if remaining or errors:
            # An idempotent producer is unusable after a fatal error (and after a tansu
            # restart): start a fresh one so the redelivered batch can succeed next time.
            self._producer = Producer(self._config)
            raise DeadLetterFailed(
                f"{remaining} dead letters unacknowledged, errors: {[str(e) for e in errors]}"
            )

    def close(self) -> None:
        self._producer.flush(self._timeout)
