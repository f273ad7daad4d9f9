"""The rocks store: Kafka-facing shell around :mod:`stores.rocks.ingest` and the shards.

Apply (consumer thread): skip records below the partition's applied offset (kept in the
DB), drop points older than the retention (counted), read the touched blocks and day
rollup records, merge (pure), then write blocks, rollups and the new applied offsets in
one synced WriteBatch. So a crash leaves either all of a batch or none of it, and a
redelivered record is skipped by offset -- and would change nothing even if applied again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stores.rocks import layout
from stores.rocks.blockcodec import decode_blocks, decode_rollups
from stores.rocks.ingest import merge, touched
from stores.rocks.shards import DayShards
from stores.runtime.applied import adopt_topic, offset_key, start_from_db
from stores.runtime.rocks import read_u64, u64
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import PointBatch, decode_points
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR, MINUTE, Rollups

log = logging.getLogger(__name__)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Columns = tuple[U64, I64, F64]


@dataclass
class Stats:
    """Counters exposed on ``GET /v1/stats`` (bounded: no per-series labels)."""

    applied_records: int = 0
    skipped_records: int = 0  # below the stored applied offset (redelivery)
    applied_points: int = 0
    expired_points: int = 0  # older than the retention at apply
    dropped_shards: int = 0


def _empty_columns() -> Columns:
    return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)


class RocksStore(Store[PointBatch]):
    kind = "rocks"

    def __init__(
        self,
        topic: str,
        path: Path,
        retention_days: int,
        *,
        retention_check_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._retention = retention_days
        self._check_every = retention_check_seconds
        self._clock = clock
        self.shards = DayShards(path)
        self.stats = Stats()
        self._next: dict[int, int] = {}  # partition -> next offset to apply (cache of DB)
        self._catching_up: dict[int, int] = {}  # partition -> assignment time (ms)
        self._last_retention = 0.0
        self.run_retention()

    # -- consumer side -------------------------------------------------------------------

    def decode(self, value: bytes) -> PointBatch:
        return decode_points(value)

    def bind_topic(self, topic_id: str | None) -> None:
        if adopt_topic(self.shards.db, topic_id):
            log.warning(
                "rocks: topic %s is not the one our applied offsets came from (id now %s); "
                "replaying it from the beginning",
                self.topic,
                topic_id,
            )
        self._next.clear()

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return start_from_db(self.shards.db, partition)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        now_ms = int(self._clock() * 1000)
        for p in partitions:
            self._catching_up[p] = now_ms
            self._next.pop(p, None)

    def revoked(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self._catching_up.pop(p, None)
            self._next.pop(p, None)

    def _next_offset(self, partition: int) -> int:
        if partition not in self._next:
            raw = self.shards.db.get(offset_key(partition))
            self._next[partition] = read_u64(raw) if raw is not None else 0
        return self._next[partition]

    def apply(self, records: Sequence[Record[PointBatch]]) -> None:
        now = self._clock()
        cutoff = layout.oldest_kept_day(int(now), self._retention)
        fresh: list[PointBatch] = []
        offsets: dict[int, int] = {}
        for r in records:
            started = self._catching_up.get(r.partition)
            if started is not None and r.timestamp_ms >= started:
                del self._catching_up[r.partition]  # appended after we were assigned
            if r.offset < self._next_offset(r.partition):
                self.stats.skipped_records += 1
                continue
            fresh.append(r.value)
            offsets[r.partition] = max(offsets.get(r.partition, 0), r.offset + 1)
        writes: dict[int, list[tuple[bytes, bytes]]] = {}
        if fresh:
            sid = np.concatenate([b.sid for b in fresh])
            ts = np.concatenate([b.ts for b in fresh])
            value = np.concatenate([b.value for b in fresh])
            keep = layout.day_of(ts) >= cutoff
            expired = int(keep.size - np.count_nonzero(keep))
            if expired:
                self.stats.expired_points += expired
                sid, ts, value = sid[keep], ts[keep], value[keep]
            if sid.size:
                writes = self._merge(sid, ts, value)
            self.stats.applied_points += int(sid.size)
        self.stats.applied_records += len(fresh)
        puts = {offset_key(p): u64(o) for p, o in offsets.items()}
        if writes or puts:
            self.shards.write(writes, puts)
        self._next.update(offsets)
        if now - self._last_retention >= self._check_every:
            self.run_retention()

    def _merge(self, sid: U64, ts: I64, value: F64) -> dict[int, list[tuple[bytes, bytes]]]:
        t = touched(sid, ts)
        old_blocks = self._get_aligned(t.block_keys(), layout.day_of(t.block_hour))
        old_days = self._get_aligned(t.day_keys(), layout.day_of(t.day_start))
        return merge(t, sid, ts, value, old_blocks, old_days)

    def _get_aligned(self, keys: list[bytes], days: I64) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(keys)
        for day in np.unique(days).tolist():
            idx = np.flatnonzero(days == day).tolist()
            for i, v in zip(idx, self.shards.get_many(day, [keys[i] for i in idx]), strict=True):
                out[i] = v
        return out

    def make_durable(self) -> None:
        """Nothing left to do: :meth:`apply` wrote its batch with the WAL fsynced."""

    def idle(self) -> None:
        # A poll came back empty: every assigned partition is at its end.
        self._catching_up.clear()
        if self._clock() - self._last_retention >= self._check_every:
            self.run_retention()

    def run_retention(self) -> list[int]:
        """Drop day shards older than the retention; return the dropped days."""
        now = self._clock()
        self._last_retention = now
        dropped = self.shards.drop_before(layout.oldest_kept_day(int(now), self._retention))
        self.stats.dropped_shards += len(dropped)
        return dropped

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """[start of the oldest kept day shard, now] for owned partitions that have caught
        up; a partition still catching up advertises nothing."""
        today = now // layout.DAY
        days = self.shards.days()
        oldest = max(min([*days, today]), layout.oldest_kept_day(now, self._retention))
        catching_up = set(self._catching_up)
        return {p: [oldest * layout.DAY, now] for p in partitions if p not in catching_up}

    def close(self) -> None:
        self.shards.close()

    # -- read side (HTTP threads) --------------------------------------------------------

    def _window(self, start: int, end: int) -> tuple[int, int, list[int]]:
        """The read range clamped to the kept shards, and the shard days it touches."""
        lo = layout.oldest_kept_day(int(self._clock()), self._retention) * layout.DAY
        start = max(start, lo)
        days = [d for d in self.shards.days() if start // layout.DAY <= d <= end // layout.DAY]
        return start, end, days

    def read_raw(self, sids: U64, start: int, end: int) -> Columns:
        """Resolved points of ``sids`` in ``[start, end]`` sorted by (sid, ts)."""
        wanted = np.unique(sids)
        parts: list[Columns] = []
        with self.shards.lock:
            start, end, days = self._window(start, end)
            for day in days:
                hours = _starts(
                    max(start, day * layout.DAY), min(end, (day + 1) * layout.DAY - 1), HOUR
                )
                if not hours.size or not wanted.size:
                    continue
                ksid, khour = np.repeat(wanted, hours.size), np.tile(hours, wanted.size)
                got = self.shards.get_many(day, layout.keys(layout.RAW, ksid, khour))
                idx = [i for i, f in enumerate(got) if f is not None]
                if not idx:
                    continue
                pts = decode_blocks([got[i] for i in idx], khour[idx])  # type: ignore[misc]
                psid = np.repeat(ksid[idx], pts.counts)
                m = (pts.ts >= start) & (pts.ts <= end)
                parts.append((psid[m], pts.ts[m], pts.value[m]))
        if not parts:
            return _empty_columns()
        sid = np.concatenate([p[0] for p in parts])
        ts = np.concatenate([p[1] for p in parts])
        value = np.concatenate([p[2] for p in parts])
        order = np.lexsort((ts, sid))
        return sid[order], ts[order], value[order]

    def read_rollups(self, sids: U64, start: int, end: int, step: int) -> Rollups:
        """Stored rollup rows (``step`` = 60 or 3600) of ``sids`` whose bucket start is in
        ``[start, end]``, sorted by (sid, bucket)."""
        if step not in (MINUTE, HOUR):
            raise ValueError(f"no stored rollups at {step}s")
        wanted = np.unique(sids)
        kind, span = (layout.MINUTES, HOUR) if step == MINUTE else (layout.HOURS, layout.DAY)
        parts: list[Rollups] = []
        with self.shards.lock:
            start, end, days = self._window(start, end)
            for day in days:
                lo, hi = max(start, day * layout.DAY), min(end, (day + 1) * layout.DAY - 1)
                bases = _starts(lo, hi, span)
                if not bases.size or not wanted.size:
                    continue
                ksid, kbase = np.repeat(wanted, bases.size), np.tile(bases, wanted.size)
                got = self.shards.get_many(day, layout.keys(kind, ksid, kbase))
                idx = [i for i, f in enumerate(got) if f is not None]
                if not idx:
                    continue
                rows = decode_rollups([got[i] for i in idx], kbase[idx])  # type: ignore[misc]
                rsid = np.repeat(ksid[idx], rows.counts)
                m = (rows.bucket >= start) & (rows.bucket <= end)
                parts.append(
                    Rollups(
                        rsid[m],
                        rows.bucket[m],
                        rows.count[m],
                        rows.sum[m],
                        rows.min[m],
                        rows.max[m],
                        rows.last[m],
                        rows.last_ts[m],
                    )
                )
        parts = [p for p in parts if len(p)]
        if not parts:
            return Rollups.empty()

        def col(name: str) -> npt.NDArray[np.generic]:
            return np.concatenate([getattr(p, name) for p in parts])

        sid, bucket = col("sid"), col("bucket")
        order = np.lexsort((bucket, sid))
        return Rollups(
            *(
                col(n)[order]
                for n in ("sid", "bucket", "count", "sum", "min", "max", "last", "last_ts")
            )  # type: ignore[arg-type]
        )


def _starts(lo: int, hi: int, span: int) -> I64:
    """Starts of the ``span``-aligned periods overlapping ``[lo, hi]``."""
    if lo > hi:
        return np.empty(0, TS_DTYPE)
    first = lo - lo % span
    return np.arange(first, hi + 1, span, dtype=TS_DTYPE)
