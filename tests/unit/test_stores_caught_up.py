""" "Caught up" comes from librdkafka's partition-EOF events, never from an empty poll.

The consumer loop runs against a fake confluent-kafka consumer (no broker); the RAM, rocks
and archive stores are driven through the Store hooks directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError

import stores.runtime.consumer as consumer_module
from stores.archive.catalog import Catalog
from stores.archive.objectstore import LocalDirStore
from stores.archive.store import ArchivePointStore
from stores.ram.store import RamStore
from stores.rocks.store import RocksStore
from stores.runtime.consumer import ConsumerLoop
from stores.runtime.dead_letters import DeadLetter
from stores.runtime.ownership import Ownership
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import PointBatch

NOW = 1_763_769_600 + 12 * 3600


class FakeMessage:
    """What ``Consumer.consume`` returns: a record, or an event carrying an error."""

    def __init__(
        self, partition: int, offset: int, value: bytes | None, code: int | None = None
    ) -> None:
        self._partition, self._offset, self._value = partition, offset, value
        self._error = KafkaError(code) if code is not None else None

    def error(self) -> KafkaError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, NOW * 1000


def eof(partition: int, end: int) -> FakeMessage:
    return FakeMessage(partition, end, None, KafkaError._PARTITION_EOF)


class FakeConsumer:
    instances: list[FakeConsumer] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.batches: list[list[FakeMessage]] = []
        self.commits: list[list[tuple[int, int]]] = []
        FakeConsumer.instances.append(self)

    def consume(self, _n: int, _timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: Sequence[Any], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


class FakeDeadLetters:
    def __init__(self, *_args: object) -> None:
        self.written: list[DeadLetter] = []

    def write(self, letters: list[DeadLetter]) -> None:
        self.written += letters


class Recorder(Store[bytes]):
    """Records the hook calls in order."""

    kind = "recorder"
    topic = "points"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def decode(self, value: bytes) -> bytes:
        return value

    def apply(self, records: Sequence[Record[bytes]]) -> None:
        self.calls.append(("apply", [(r.partition, r.offset) for r in records]))

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return StartPosition()

    def caught_up(self, partition: int, end_offset: int) -> None:
        self.calls.append(("caught_up", partition, end_offset))

    def idle(self) -> None:
        self.calls.append(("idle",))


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> tuple[ConsumerLoop[bytes], Recorder, FakeConsumer]:
    monkeypatch.setattr(consumer_module, "Consumer", FakeConsumer)
    monkeypatch.setattr(consumer_module, "DeadLetterWriter", FakeDeadLetters)
    store = Recorder()
    ownership = Ownership()
    ownership.assign({0: None, 1: None})
    lp = ConsumerLoop(store, StoreSettings(), ownership)
    return lp, store, FakeConsumer.instances[-1]


def test_consumer_asks_for_partition_eof_events(
    loop: tuple[ConsumerLoop[bytes], Recorder, FakeConsumer],
) -> None:
    _, _, fake = loop
    assert fake.config["enable.partition.eof"] is True


def test_eof_reaches_the_store_after_the_batch_and_an_empty_poll_is_only_idle(
    loop: tuple[ConsumerLoop[bytes], Recorder, FakeConsumer],
) -> None:
    lp, store, fake = loop
    fake.batches = [
        [],  # right after an assignment: the first fetch is still in flight
        [FakeMessage(0, 0, b"a"), FakeMessage(0, 1, b"b"), eof(0, 2), FakeMessage(1, 5, b"c")],
        [eof(1, 6), eof(7, 3)],  # partition 7 is not ours (fetched before a revoke)
    ]
    lp.step()
    assert store.calls == [("idle",)]
    lp.step()
    assert store.calls[1:] == [("apply", [(0, 0), (0, 1), (1, 5)]), ("caught_up", 0, 2)]
    assert fake.commits[-1] == [(0, 2), (1, 6)]
    lp.step()
    # An EOF-only batch: nothing to apply, the event is not an error and not a record.
    assert store.calls[3:] == [("caught_up", 1, 6)]


def batch(ts: list[int]) -> PointBatch:
    n = len(ts)
    return PointBatch(
        "acme",
        "cpu",
        np.ones(n, np.uint64),
        np.array(ts, np.int64),
        np.arange(n, dtype=np.float64),
    )


def test_ram_covers_a_partition_only_after_its_eof() -> None:
    store = RamStore("points", 3600, clock=lambda: float(NOW))
    store.assigned([0, 1], {0: (NOW - 4200) * 1000, 1: (NOW - 4200) * 1000})
    store.idle()  # an empty poll mid-replay proves nothing
    assert store.coverage([0, 1], NOW) == {}
    store.apply([Record(0, 0, (NOW - 100) * 1000, batch([NOW - 100]))])
    store.caught_up(0, 1)
    assert store.coverage([0, 1], NOW) == {0: [NOW - 3600, NOW]}
    assert store.replaying() == [1]


def test_rocks_covers_a_partition_only_after_its_eof(tmp_path: Path) -> None:
    store = RocksStore("points", tmp_path, 3, clock=lambda: float(NOW))
    store.assigned([0, 1], {})
    store.idle()
    assert store.coverage([0, 1], NOW) == {}
    store.apply([Record(0, 0, (NOW - 100) * 1000, batch([NOW - 100]))])
    store.caught_up(0, 1)
    assert list(store.coverage([0, 1], NOW)) == [0]
    store.close()


def test_archive_covers_a_partition_only_after_its_eof(tmp_path: Path) -> None:
    store = ArchivePointStore(
        "points",
        Catalog(LocalDirStore(tmp_path)),
        flush_rows=1,
        flush_seconds=0.0,
        max_buffer_rows=100,
        clock=lambda: float(NOW),
    )
    store.start_position(0, 0)
    store.apply([Record(0, 0, (NOW - 100) * 1000, batch([NOW - 100]))])
    store.make_durable()
    store.idle()
    # Uploaded up to the append time of its last object, but not caught up: not "now".
    assert store.coverage([0], NOW + 50) == {0: [NOW - 100 - (NOW - 100) % 3600, NOW - 100]}
    store.caught_up(0, 1)
    assert store.coverage([0], NOW + 50) == {0: [NOW - 100 - (NOW - 100) % 3600, NOW + 50]}
