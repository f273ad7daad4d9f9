"""The consumer loop: consume -> decode -> dead letters -> apply -> durable -> commit.

Written directly on confluent-kafka rather than a framework (docs/stores.md says why): the
RAM store seeks by time on every assignment, and the index stores decide their own start.

Commit sequence, with the reason for each step:
1. ``consume`` a batch. Rebalance callbacks run inside this call, and the previous batch
   was committed before it, so a revoke never loses applied-but-uncommitted work.
2. Decode every message; unreadable ones become dead letters.
3. Produce the dead letters and wait for the broker: once the offset is committed the
   original is gone for us, so the dead letter must exist first.
4. ``apply`` the readable records (idempotent, so a redelivery after a crash is harmless).
5. ``make_durable``: the store's data survives a crash from here on.
6. Commit ``last offset + 1`` per partition synchronously. A failed commit only means
   redelivery, which step 4 absorbs; it is retried with the next batch.
7. Heartbeat markers (strata/codec.py kind 4) are not given to the store: each one
   advances its partition's watermark once everything before it is durable
   (stores/runtime/watermarks.py; :meth:`ConsumerLoop.durable_offsets` says how far).
8. Tell the store which partitions reached their end (librdkafka's ``_PARTITION_EOF``
   events, ``enable.partition.eof``), after the records before the event are applied: only
   then may it advertise the partition's coverage as complete. An empty poll proves
   nothing (right after an assignment the first fetch may still be in flight), so it only
   gives the store a chance for housekeeping (``idle``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from stores.runtime.dead_letters import DeadLetter, DeadLetterFailed, DeadLetterWriter
from stores.runtime.ownership import Ownership
from stores.runtime.rocks import store_path
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Record, Store
from stores.runtime.watermarks import Watermark
from strata.codec import UnreadableMessage, heartbeat_marker
from strata.observability import ConsumerMetrics, process_sources

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_SECONDS = 1.0


class ConsumerLoop(Generic[T]):
    """Runs one store's consumer in the calling thread until :meth:`stop`."""

    def __init__(
        self,
        store: Store[T],
        settings: StoreSettings,
        ownership: Ownership,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._ownership = ownership
        self._clock = clock
        self._stop = threading.Event()
        self._group = settings.group_id(store.kind)
        self._uncommitted: dict[int, int] = {}
        self._unread: set[int] = set()  # assigned partitions not read from yet
        self.watermarks = ownership.watermarks
        # Scrape-time metrics (GET /metrics of the store's app, docs/operations.md).
        disk = store_path(settings.data_dir, store.kind, settings.instance_id)
        self.metrics = ConsumerMetrics(
            store.kind,
            store.topic,
            lambda: {p: m.marker_ms for p, m in self.watermarks.snapshot().items()},
            disk=disk if (disk / "CURRENT").exists() else None,  # a RocksDB store's directory
            clock=clock,
        )
        process_sources().add(self.metrics)
        self._dead_letters = DeadLetterWriter(
            settings.kafka_bootstrap,
            settings.topic_dead_letter,
            self._group,
            settings.dead_letter_timeout_seconds,
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": self._group,
                "client.id": settings.instance_name(store.kind),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Step 7 of the commit sequence: a fetch that reaches the end of a
                # partition delivers an event, the only reliable "caught up" signal.
                "enable.partition.eof": True,
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 4),
            }
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped; then close the consumer so it leaves the group at once."""
        self._consumer.subscribe(
            [self._store.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self._commit_uncommitted()
            process_sources().remove(self.metrics)
            self._consumer.close()
            self._dead_letters.close()

    def step(self) -> None:
        """One batch through the whole commit sequence (module docstring)."""
        messages = self._consumer.consume(
            self._settings.batch_max_messages, self._settings.poll_timeout_seconds
        )
        if not messages:
            self._store.idle()
            self._commit_uncommitted()
            self.watermarks.durable(self.durable_offsets({}))
            self._record_positions({})
            return
        owned = set(self._ownership.partitions())
        records: list[Record[T]] = []
        letters: list[DeadLetter] = []
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        at_end: dict[int, int] = {}  # partition -> end offset its EOF event reported
        for msg in messages:
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
                continue
            partition, offset = _position(msg)
            if partition not in owned:
                continue  # fetched before a revoke; its new owner will read it
            if err is not None:
                # End of partition: every message before ``offset`` is in this batch or
                # an earlier one. Recorded now, reported once the batch is applied.
                at_end[partition] = offset
                continue
            first.setdefault(partition, offset)
            last[partition] = offset
            if partition in self._unread:
                self._unread.discard(partition)
                self._store.first_message(partition, offset, _timestamp_ms(msg))
            value = msg.value()
            try:
                if value is None:
                    raise UnreadableMessage("message has no value")
                mark = heartbeat_marker(value)
                if mark is not None:
                    self.watermarks.seen(partition, offset, Watermark(mark.marker_ms, mark.emit_ms))
                    continue
                decoded = self._store.decode(value)
            except UnreadableMessage as exc:
                letters.append(
                    DeadLetter(msg.key(), value, exc.reason, self._store.topic, partition, offset)
                )
                continue
            except Exception as exc:
                # A decoder bug must not crash-loop the store on one message (it would be
                # re-read after every restart): park the message with the error, loudly.
                log.exception("decoder failed on %s[%d]@%d", self._store.topic, partition, offset)
                reason = f"decoder error: {type(exc).__name__}: {exc}"
                letters.append(
                    DeadLetter(msg.key(), value, reason, self._store.topic, partition, offset)
                )
                continue
            records.append(Record(partition, offset, _timestamp_ms(msg), decoded))
        try:
            self._dead_letters.write(letters)
        except DeadLetterFailed as exc:
            log.error("cannot write dead letters, will re-read the batch: %s", exc)
            self._rewind(first)
            return
        self.metrics.dead_lettered(len(letters))
        if records:
            started = time.perf_counter()
            self._store.apply(records)
            self._store.make_durable()
            self.metrics.applied(time.perf_counter() - started, len(records))
        next_offsets = {p: o + 1 for p, o in last.items()}
        self._ownership.applied(next_offsets)
        self._uncommitted.update(next_offsets)
        self._commit_uncommitted()
        self.watermarks.durable(self.durable_offsets(next_offsets))
        for p, end in at_end.items():
            self._store.caught_up(p, end)
        self._record_positions(at_end)

    def _record_positions(self, at_end: dict[int, int]) -> None:
        """Record each owned partition's end offset and next offset for the lag metric.

        The end is the high watermark of the latest fetch response (librdkafka's cached
        value, a local call): tansu answers ListOffsets(latest) with the base offset of
        the last batch + 1, wrong whenever a batch holds several records, while its fetch
        responses carry the true high watermark (docs/operations.md, "Metrics"). Next is
        what was applied, or the end an EOF event reported (an empty partition has no
        applied offset). Instrumentation never stops the loop: a failure only logs."""
        ends: dict[int, int] = {}
        try:
            for p in self._ownership.partitions():
                tp = TopicPartition(self._store.topic, p)
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:  # -1001: no fetch response for the partition yet
                    ends[p] = high
        except Exception as exc:
            log.debug("end offsets unavailable for the lag metric: %s", exc)
        self.metrics.positions(ends, {**at_end, **self._ownership.offsets()})

    def durable_offsets(self, applied: dict[int, int]) -> dict[int, int]:
        """Partition -> first offset not yet durable, given the offsets just applied (and
        made durable). Stores that buffer across batches override it."""
        return applied

    def _commit_uncommitted(self) -> None:
        if not self._uncommitted:
            return
        offsets = [TopicPartition(self._store.topic, p, o) for p, o in self._uncommitted.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Redelivery is harmless (apply is idempotent); try again with the next batch.
            log.warning("offset commit failed, will retry: %s", exc)
            return
        self._uncommitted.clear()

    def _rewind(self, first: dict[int, int]) -> None:
        for p, off in first.items():
            try:
                self._consumer.seek(TopicPartition(self._store.topic, p, off))
            except KafkaException as exc:
                log.warning("cannot rewind partition %d: %s", p, exc)
        self._stop.wait(_RETRY_SECONDS)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        now_ms = int(self._clock() * 1000)
        nums = [tp.partition for tp in partitions]
        seek_ms: dict[int, int] = {}
        starts: dict[int, int | None] = {}
        for p in nums:
            pos = self._store.start_position(p, now_ms)
            if pos.timestamp_ms is not None:
                seek_ms[p] = pos.timestamp_ms
            else:
                starts[p] = pos.offset
        if seek_ms:
            by_time = [TopicPartition(self._store.topic, p, t) for p, t in seek_ms.items()]
            for tp in consumer.offsets_for_times(by_time, timeout=10.0):
                # -1: nothing was appended since that time, so start at the end.
                starts[tp.partition] = tp.offset if tp.offset >= 0 else OFFSET_END
        rest = [TopicPartition(self._store.topic, p) for p, o in starts.items() if o is None]
        if rest:
            for tp in consumer.committed(rest, timeout=10.0):
                starts[tp.partition] = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        log.info("assigned %s, starting at %s", nums, starts)
        self._unread = set(nums)
        self._store.assigned(nums, seek_ms)
        self._ownership.assign(
            {p: o if o is not None and o >= 0 else None for p, o in starts.items()}
        )
        consumer.assign(
            [
                TopicPartition(self._store.topic, p, o if o is not None else OFFSET_INVALID)
                for p, o in starts.items()
            ]
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        nums = [tp.partition for tp in partitions]
        log.info("revoked %s", nums)
        # Everything applied is committed before each consume(); only a failed commit can
        # be outstanding, and this is its last chance while we still own the partitions.
        self._commit_uncommitted()
        self._forget(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (session expired): another member may own them already, so do not commit.
        log.warning("lost %s", [tp.partition for tp in partitions])
        self._forget(consumer, partitions)

    def _forget(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        nums = [tp.partition for tp in partitions]
        for p in nums:
            self._uncommitted.pop(p, None)
        self._ownership.revoke(nums)
        self.watermarks.forget(nums)
        self.metrics.forget(nums)
        self._store.revoked(nums)
        consumer.unassign()


def _position(msg: Message) -> tuple[int, int]:
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None  # set on every fetched message
    return int(partition), int(offset)


def _timestamp_ms(msg: Message) -> int:
    _, ts = msg.timestamp()
    return int(ts)
