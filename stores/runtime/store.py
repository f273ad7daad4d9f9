"""The contract between the consumer runtime and a store.

The runtime owns Kafka (assignment, offsets, commits) and dead letters; a store owns its
data. The runtime calls, from its single consumer thread and in this order per batch:
``decode`` for every message, ``apply`` once with the decoded records, ``make_durable``,
and only then commits the offsets; then ``caught_up`` for each partition whose end the
batch reached. HTTP handlers read the store from other threads, so
every public method of a store must be safe to call concurrently with ``apply``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    """One decoded message with where it came from."""

    partition: int
    offset: int
    timestamp_ms: int  # broker (append) timestamp of the message
    value: T


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Exactly one of: a broker timestamp (ms) to seek to with offsets_for_times, an
    offset (the store's own record of what it applied), or neither = the group's committed
    offset (earliest if none)."""

    timestamp_ms: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        if self.timestamp_ms is not None and self.offset is not None:
            raise ValueError("a start position is a time or an offset, not both")


class Store(ABC, Generic[T]):
    """A consumer-group member's state; see the module docstring for the call order."""

    #: registry kind and consumer-group suffix (group.id = ``strata-<kind>``)
    kind: str
    #: the topic this store consumes
    topic: str

    @abstractmethod
    def decode(self, value: bytes) -> T:
        """Decode one message value; raise :class:`strata.codec.UnreadableMessage`."""

    @abstractmethod
    def apply(self, records: Sequence[Record[T]]) -> None:
        """Apply a batch. Must be idempotent: applying a record twice changes nothing."""

    def make_durable(self) -> None:
        """Return once everything applied survives a crash; offsets are committed after."""

    @abstractmethod
    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        """Where a newly assigned partition starts reading."""

    def bind_topic(self, topic_id: str | None) -> None:
        """Called once before consuming with the broker's id of :attr:`topic` (``None`` if
        the broker has none); stores that keep offsets of their own check them against it."""

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        """The runtime now owns ``partitions``; ``replay_from_ms`` holds the
        seek times of the partitions that start by time."""

    def first_message(self, partition: int, offset: int, timestamp_ms: int) -> None:
        """The first message the consumer read of ``partition`` since it was assigned
        (a record, a heartbeat marker or an unreadable message alike), called before the
        batch holding it is applied. Offset 0 means the store starts at the log's very
        beginning; heartbeat markers never reach :meth:`apply`, so a store's first *record*
        says nothing about where the log starts."""

    def revoked(self, partitions: Sequence[int]) -> None:
        """``partitions`` were taken away; drop any in-memory state kept for them."""

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """Partition -> [from, to] (Unix seconds, inclusive) this instance can answer."""
        return {p: [0, now] for p in partitions}

    def caught_up(self, partition: int, end_offset: int) -> None:
        """The consumer reached the end of ``partition`` (librdkafka's partition-EOF
        event): every message below ``end_offset`` was applied (or dead-lettered) before
        this call. From here on the store may advertise the partition's coverage as
        complete; it is called again each time the consumer reaches the end anew."""

    def idle(self) -> None:
        """Called when a poll returned nothing: a chance for housekeeping (eviction).
        Says nothing about progress: right after an assignment the first fetch may still
        be in flight, so an empty poll is no proof that any partition is caught up."""

    def close(self) -> None:
        """Release resources at shutdown (after the consumer has left the group)."""
