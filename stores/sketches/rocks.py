"""The rocks sketch store: days of sketches in RocksDB, with 1 m / 1 h merged sketches.

It runs as a second consumer loop of the rocks store process (``stores/rocks/__main__.py``)
on its own database, ``data_dir/rocks-sketches/<instance>``, with the rocks store's day
shards (one column family per UTC day, retention by dropping them, ``stores/rocks/
shards.py``), key layout (``kind sid start``, ``stores/rocks/layout.py``) and coverage rules
(docs/rocks.md). Records: :mod:`stores.sketches.fold`.

Exactly once: apply skips every record below the partition's applied offset, then writes
the changed records *and* the new applied offsets in one synced WriteBatch before the
runtime commits. A crash leaves all of a batch or nothing, and a redelivered record is
skipped — merging it again would count its values twice.

Apply is read-modify-write of every record the batch touches (decode, merge, encode),
unlike the point store's staging: simple, and cheap while batches are not dense in one
series hour (known limit: a series sending every second re-encodes a growing hour record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stores.rocks import layout
from stores.rocks.shards import DayShards
from stores.runtime.applied import adopt_topic, offset_key, start_from_db
from stores.runtime.completeness import Completeness
from stores.runtime.completeness_db import DbStored, complete_puts
from stores.runtime.rocks import u64
from stores.runtime.store import Record, StartPosition, Store
from stores.sketches.fold import BY_STEP, I64, RECORDS, U64, decode_records, fold, record_keys
from stores.sketches.read import Sids
from strata.codec import SketchMessage, decode_sketches
from strata.sketch import SketchBatch, SketchParams

log = logging.getLogger(__name__)

KIND = "rocks-sketches"


@dataclass
class SketchStats:
    """Counters on ``GET /v1/sketches/stats`` (bounded: no per-series labels)."""

    applied_records: int = 0
    skipped_records: int = 0  # below the stored applied offset (redelivery)
    applied_rows: int = 0
    expired_rows: int = 0  # older than the retention at apply
    dropped_shards: int = 0
    records_written: int = 0


class RocksSketchStore(Store[SketchMessage]):
    kind = KIND

    def __init__(
        self,
        topic: str,
        path: Path,
        retention_days: int,
        *,
        retention_check_seconds: float = 60.0,
        future_margin_seconds: int = 600,
        params: SketchParams | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.params = params or SketchParams()
        self._retention = retention_days
        self._check_every = retention_check_seconds
        self._clock = clock
        self.shards = DayShards(path)
        self._stored = DbStored(self.shards.db)
        self._progress = Completeness(self._stored, future_margin_seconds, clock)
        self.stats = SketchStats()
        self._last_retention = 0.0
        self.run_retention()

    # -- consumer side -------------------------------------------------------------------

    def decode(self, value: bytes) -> SketchMessage:
        return decode_sketches(value)

    def bind_topic(self, topic_id: str | None) -> None:
        if adopt_topic(self.shards.db, topic_id):
            # The stored sketches came from the old log and stay (they are still true);
            # the new log is replayed from its beginning. Known limit: when the new log
            # replays the *same* messages (a broker restored from a copy), they count twice.
            log.warning(
                "rocks-sketches: topic %s has a new id %s; replaying it", self.topic, topic_id
            )
        self._progress.reset()

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return start_from_db(self.shards.db, partition)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        self._progress.assigned(partitions)

    def revoked(self, partitions: Sequence[int]) -> None:
        self._progress.revoked(partitions)

    def first_message(self, partition: int, offset: int, timestamp_ms: int) -> None:
        """As the rocks store (docs/rocks.md, "Coverage"; the rules:
        stores/runtime/completeness.py)."""
        self._progress.first_message(partition, offset, timestamp_ms)

    def apply(self, records: Sequence[Record[SketchMessage]]) -> None:
        now = self._clock()
        fresh: list[SketchBatch] = []
        offsets: dict[int, int] = {}
        for r in records:
            self._progress.seen(r.partition, r.timestamp_ms)
            if r.offset < max(self._progress.next_offset(r.partition), offsets.get(r.partition, 0)):
                self.stats.skipped_records += 1
                continue
            fresh.append(r.value.batch.convert(self.params))
            offsets[r.partition] = r.offset + 1
        # A partition's first applied offset carries the completeness its first message set.
        puts = complete_puts(self._progress.take_complete(offsets))
        writes: dict[int, list[tuple[bytes, bytes]]] = {}
        if fresh:
            rows = SketchBatch.concat(fresh)
            cutoff = layout.oldest_kept_day(int(now), self._retention)
            keep = layout.day_of(rows.ts) >= cutoff
            if not keep.all():
                self.stats.expired_rows += int(keep.size - np.count_nonzero(keep))
                rows = rows.take(keep)
            self.stats.applied_rows += len(rows)
            if len(rows):
                writes = self._fold(rows)
        self.stats.applied_records += len(fresh)
        puts.update({offset_key(p): u64(o) for p, o in offsets.items()})
        if writes or puts:
            self.shards.write(writes, puts)
        self._progress.applied(offsets)
        if now - self._last_retention >= self._check_every:
            self.run_retention()

    def _fold(self, rows: SketchBatch) -> dict[int, list[tuple[bytes, bytes]]]:
        """Every record ``rows`` touch, read, merged with them and encoded, per day."""
        writes: dict[int, list[tuple[bytes, bytes]]] = {}
        for record in RECORDS:
            ksid, kstart = record_keys(rows.sid, rows.ts, record.span)
            old = self._get(record.kind, ksid, kstart)
            sid, start, values = fold(record, [v for v in old if v is not None], rows)
            days = layout.day_of(start).tolist()
            for key, day, value in zip(
                layout.keys(record.kind, sid, start), days, values, strict=True
            ):
                writes.setdefault(day, []).append((key, value))
            self.stats.records_written += len(values)
        return writes

    def _get(self, kind: bytes, sid: U64, start: I64) -> list[bytes | None]:
        """Stored values of the records (sid, start) of ``kind`` (None where absent)."""
        out: list[bytes | None] = [None] * sid.size
        days = layout.day_of(start)
        for day in np.unique(days).tolist():
            idx = np.flatnonzero(days == day)
            got = self.shards.get_many(day, layout.keys(kind, sid[idx], start[idx]))
            for i, value in zip(idx.tolist(), got, strict=True):
                out[i] = None if value is None else bytes(value)
        return out

    def make_durable(self) -> None:
        """Nothing left to do: :meth:`apply` wrote its batch with the WAL fsynced."""

    def caught_up(self, partition: int, end_offset: int) -> None:
        self._stored.write_complete(partition, self._progress.caught_up(partition, end_offset))

    def idle(self) -> None:
        if self._clock() - self._last_retention >= self._check_every:
            self.run_retention()

    def run_retention(self) -> list[int]:
        now = self._clock()
        self._last_retention = now
        dropped = self.shards.drop_before(layout.oldest_kept_day(int(now), self._retention))
        self.stats.dropped_shards += len(dropped)
        return dropped

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """As the rocks store: ``[max(oldest kept day, complete_p), now]`` for owned
        partitions that have caught up."""
        today = now // layout.DAY
        oldest = max(
            min([*self.shards.days(), today]), layout.oldest_kept_day(now, self._retention)
        )
        return self._progress.coverage(partitions, now, oldest * layout.DAY)

    def close(self) -> None:
        self.shards.close()

    # -- read side (HTTP threads) --------------------------------------------------------

    def read_sketches(self, sids: Sids, start: int, end: int, step: int) -> SketchBatch:
        """Stored rows (``step`` 1), 1-minute or 1-hour rows of ``sids`` whose time (bucket
        start) is in ``[start, end]``, sorted by (sid, ts)."""
        record = BY_STEP.get(step)
        if record is None:
            raise ValueError(f"no stored sketches at {step}s")
        wanted = np.unique(sids)
        lo = layout.oldest_kept_day(int(self._clock()), self._retention) * layout.DAY
        start = max(start, lo)
        if wanted.size == 0 or start > end:
            return SketchBatch.empty(self.params)
        first = start - start % record.span
        spans = np.arange(first, end + 1, record.span, dtype=np.int64)
        ksid, kstart = np.repeat(wanted, spans.size), np.tile(spans, wanted.size)
        with self.shards.lock:  # a shard is never dropped under a reader
            blobs = [b for b in self._get(record.kind, ksid, kstart) if b is not None]
        rows = decode_records(blobs, self.params)
        inside = (rows.ts >= start) & (rows.ts <= end)
        if not inside.all():
            rows = rows.take(inside)
        return rows.take(np.lexsort((rows.ts, rows.sid)))
