"""The archive's consumers: points and series records into Parquet objects (and, on the
same base, distribution sketches: :mod:`stores.archive.sketches`).

Exactly-once effect, step by step:
1. On assignment a partition starts after the highest offset its objects (or progress
   marker) name, not at the group's committed offset: a crash after an upload but before
   the commit therefore never writes those messages into a second object.
2. ``apply`` buffers records per partition (skipping offsets already buffered).
3. ``make_durable`` uploads every due buffer as one object named by its offset range,
   and the largest others while all buffers together hold more than ``max_buffer_rows``.
   A failed upload keeps the buffer, retries with backoff, and never drops it; above
   ``max_buffer_rows`` it blocks consumption (retrying) instead of growing without bound.
4. Offsets are committed (:class:`stores.archive.service.ArchiveLoop`) only up to what
   :meth:`ArchiveWriter.durable_offsets` reports: the end of the last uploaded object.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence, Sized
from typing import Any, TypeVar

import pyarrow as pa

from stores.archive.buffer import Buffer, Pending
from stores.archive.catalog import Catalog
from stores.archive.naming import (
    Family,
    ingest_name,
    partition_prefix,
    progress_prefix,
    safe_topic_id,
)
from stores.archive.objectstore import ObjectStoreError
from stores.archive.parquet_io import (
    SERIES_FORMAT,
    Meta,
    points_metadata,
    points_table,
    series_table,
    to_parquet,
)
from stores.runtime.applied import OFFSET_BEGINNING
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import PointBatch, SeriesBatch, decode_points, decode_series
from strata.rollup import HOUR

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Sized)


class ArchiveWriter(Store[T]):
    """Shared buffering/upload logic; subclasses say how records become a table."""

    family: Family

    def __init__(
        self,
        topic: str,
        catalog: Catalog,
        *,
        flush_rows: int,
        flush_seconds: float,
        max_buffer_rows: int,
        retry_max_seconds: float = 30.0,
        row_group_rows: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.topic = topic
        self.catalog = catalog
        self._buffer: Buffer[T] = Buffer(flush_rows, flush_seconds, len)
        self._max_buffer_rows = max_buffer_rows
        self._retry_max = retry_max_seconds
        self._row_group_rows = row_group_rows
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._topic_id = topic
        self._uploaded: dict[int, int] = {}  # partition -> next offset not yet uploaded
        self._failures = 0
        self._retry_at = 0.0
        self.stopping = threading.Event()
        self.uploads = 0
        self.upload_failures = 0

    @property
    def topic_id(self) -> str:
        return self._topic_id

    def bind_topic(self, topic_id: str | None) -> None:
        # Objects of a re-created topic (new id) live under a new prefix: their offsets
        # never shadow the new log's.
        self._topic_id = safe_topic_id(topic_id or self.topic)

    @abstractmethod
    def table(self, values: Sequence[T]) -> tuple[pa.Table, dict[str, str]]:
        """The object's rows and footer metadata for buffered values."""

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        """After the highest offset the partition's objects name. While the object store
        cannot be listed this blocks (retrying with backoff): starting anywhere else could
        duplicate rows or leave a hole."""
        delay = 0.5
        while True:
            try:
                nxt = self._progress(partition)
                break
            except ObjectStoreError as exc:
                if self.stopping.is_set():
                    raise
                log.warning("cannot list objects of partition %d (retrying): %s", partition, exc)
                self._sleep(delay)
                delay = min(self._retry_max, delay * 2)
        with self._lock:
            self._buffer.drop(partition)
            if nxt is not None:
                self._buffer.next_offset[partition] = nxt
                self._uploaded[partition] = nxt
            else:
                self._uploaded.pop(partition, None)
        self.on_start(partition)
        return StartPosition(offset=nxt if nxt is not None else OFFSET_BEGINNING)

    def _progress(self, partition: int) -> int | None:
        prefix = partition_prefix(self.family, self._topic_id, partition)
        lasts = [n.last for n in self.catalog.names(prefix)]
        marker = self.catalog.progress(progress_prefix(self._topic_id, partition, self.family))
        if marker is not None:
            lasts.append(marker)
        return max(lasts) + 1 if lasts else None

    def on_start(self, partition: int) -> None:
        """Hook: a partition was (re)assigned and its progress loaded."""

    def apply(self, records: Sequence[Record[T]]) -> None:
        now = self._clock()
        with self._lock:
            for r in records:
                self._buffer.add(r.partition, r.offset, r.timestamp_ms, r.value, now)

    def make_durable(self) -> None:
        """Upload due buffers; on failure back off, and block while the buffer is full."""
        self._flush(force=False)
        while self._buffered_rows() > self._max_buffer_rows and not self.stopping.is_set():
            log.warning("archive buffer full (%d rows): retrying uploads", self._buffered_rows())
            self._sleep(min(self._retry_max, 0.5 * 2**self._failures))
            self._flush(force=False, ignore_backoff=True)

    def idle(self) -> None:
        self._flush(force=False)

    def flush_all(self) -> bool:
        """Upload everything buffered now; True if nothing is left."""
        return self._flush(force=True, ignore_backoff=True)

    def _buffered_rows(self) -> int:
        with self._lock:
            return self._buffer.rows()

    def _flush(self, *, force: bool, ignore_backoff: bool = False) -> bool:
        now = self._clock()
        if not ignore_backoff and now < self._retry_at:
            return False
        with self._lock:
            due = self._buffer.due(now, force, budget=self._max_buffer_rows)
        for pend in due:
            try:
                self._upload(pend)
            except ObjectStoreError as exc:
                self._failures += 1
                self.upload_failures += 1
                delay = min(self._retry_max, 0.5 * 2 ** min(self._failures, 10))
                self._retry_at = self._clock() + delay
                log.warning(
                    "upload of %s partition %d offsets %d-%d failed (retry in %.1fs): %s",
                    self.family.value,
                    pend.partition,
                    pend.first,
                    pend.last,
                    delay,
                    exc,
                )
                return False
            with self._lock:
                self._buffer.done(pend)
                if pend.partition in self._buffer.next_offset:  # still ours
                    self._uploaded[pend.partition] = pend.last + 1
            self._failures = 0
            self._retry_at = 0.0
            self.uploads += 1
        return True

    def _upload(self, pend: Pending[T]) -> None:
        table, meta = self.table(pend.values)
        meta = {
            **meta,
            "strata.topic": self.topic,
            "strata.topic_id": self._topic_id,
            "strata.partition": str(pend.partition),
            "strata.first_offset": str(pend.first),
            "strata.last_offset": str(pend.last),
            "strata.max_append_ms": str(pend.max_append_ms),
        }
        key = ingest_name(self.family, self._topic_id, pend.partition, pend.first, pend.last)
        self.catalog.objects.put(key, to_parquet(table, meta, self._row_group_rows))
        self.uploaded(pend, key, table, meta)

    def uploaded(self, pend: Pending[T], key: str, table: pa.Table, meta: dict[str, str]) -> None:
        """Hook: an object was uploaded."""

    def complete_offsets(self, consumed: dict[int, int]) -> dict[int, int]:
        """Partition -> first offset not known durable, given the next offset consumed of
        each: the oldest record still buffered, or everything consumed when nothing is
        (what lies between holds no rows: heartbeat markers, dead letters)."""
        with self._lock:
            out = {}
            for p, nxt in consumed.items():
                first = self._buffer.first_pending(p)
                out[p] = nxt if first is None else min(first, nxt)
            return out

    def durable_offsets(self) -> dict[int, int]:
        """Partition -> next offset whose messages are not all in uploaded objects."""
        with self._lock:
            return dict(self._uploaded)

    def revoked(self, partitions: Sequence[int]) -> None:
        # Buffered data is dropped, not flushed: the next owner starts after our last
        # object, so it re-reads these messages; uploading now could race with it.
        with self._lock:
            for p in partitions:
                self._buffer.drop(p)
                self._uploaded.pop(p, None)

    def close(self) -> None:
        self.stopping.set()


class ArchiveTierWriter(ArchiveWriter[T]):
    """A writer whose objects a read API serves: tracks and advertises per-partition
    coverage from the time ranges in its objects' footers (points and sketches)."""

    def __init__(self, topic: str, catalog: Catalog, **kw: Any) -> None:
        super().__init__(topic, catalog, **kw)
        self._oldest: dict[int, int] = {}  # partition -> oldest archived ts
        self._newest_append: dict[int, int] = {}  # partition -> append time (s) uploaded
        self._caught_up: set[int] = set()

    def on_start(self, partition: int) -> None:
        oldest = None
        for name in self.catalog.family(self.family, partition):
            meta = self.catalog.meta(name.key())
            if meta is not None and meta.rows:
                oldest = meta.min_ts if oldest is None else min(oldest, meta.min_ts)
        with self._lock:
            self._caught_up.discard(partition)
            if oldest is not None:
                self._oldest[partition] = oldest
            else:
                self._oldest.pop(partition, None)

    def uploaded(self, pend: Pending[T], key: str, table: pa.Table, meta: dict[str, str]) -> None:
        m = Meta(
            rows=int(meta["strata.rows"]),
            min_ts=int(meta["strata.min_ts"]),
            max_ts=int(meta["strata.max_ts"]),
            max_append_ms=pend.max_append_ms,
        )
        self.catalog.remember(key, m)
        with self._lock:
            p = pend.partition
            if m.rows:
                self._oldest[p] = min(self._oldest.get(p, m.min_ts), m.min_ts)
            self._newest_append[p] = max(self._newest_append.get(p, 0), m.max_append_ms // 1000)

    def caught_up(self, partition: int, end_offset: int) -> None:
        # The consumer reached the partition's end (not merely an empty poll, which may
        # come while the first fetch after an assignment is still in flight).
        with self._lock:
            if partition in self._buffer.next_offset:  # still ours
                self._caught_up.add(partition)

    def refresh_oldest(self, partitions: Sequence[int]) -> None:
        """Re-read the oldest archived point (after compaction or retention)."""
        for p in partitions:
            self.on_start(p)

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """[oldest archived point's hour, newest fully uploaded] per partition: ``now``
        once caught up with nothing buffered, else the append time of the last upload."""
        out: dict[int, list[int]] = {}
        with self._lock:
            pending = set(self._buffer.partitions_pending())
            for p in partitions:
                if p in self._caught_up and p not in pending:
                    hi = now
                elif p in self._newest_append:
                    hi = self._newest_append[p]
                else:
                    continue
                lo = self._oldest.get(p, hi)
                out[p] = [lo - lo % HOUR, hi]
        return out


class ArchivePointStore(ArchiveTierWriter[PointBatch]):
    """Points topic -> ``points/...`` objects; advertises per-partition coverage."""

    kind = "archive"
    family = Family.POINTS

    def decode(self, value: bytes) -> PointBatch:
        return decode_points(value)

    def table(self, values: Sequence[PointBatch]) -> tuple[pa.Table, dict[str, str]]:
        t = points_table(values)
        return t, points_metadata(t, {})


class ArchiveSeriesStore(ArchiveWriter[SeriesBatch]):
    """Series topic -> ``series/...`` objects, so the archive describes itself."""

    kind = "archive-series"
    family = Family.SERIES

    def decode(self, value: bytes) -> SeriesBatch:
        return decode_series(value)

    def table(self, values: Sequence[SeriesBatch]) -> tuple[pa.Table, dict[str, str]]:
        t = series_table(values)
        return t, {"strata.format": SERIES_FORMAT, "strata.rows": str(t.num_rows)}
