"""The rocks store: Kafka-facing shell around staging, :mod:`stores.rocks.ingest` and the
day shards.

Apply (consumer thread): skip records below the partition's applied offset (kept in the
DB), drop points older than the retention (counted), then write the batch's points as one
*staging chunk* per partition (key = partition + first offset, so a replay rewrites the same
key) together with the new applied offsets in one synced WriteBatch, and keep them in memory
(:class:`~stores.rocks.staging.StagedPoints`) so reads see them. A crash leaves all of a
batch or none of it, and a redelivered record is skipped by offset.

Fold (consumer thread, from ``idle()`` and every ``fold_check_seconds`` during apply):
staged points of hours that closed more than ``fold_delay_seconds`` ago are merged into the
per-series hour blocks and rollups (read-modify-write with the conflict rule) and their
chunks deleted (or rewritten with the points of other hours they also hold), in one synced
WriteBatch; so each block is normally encoded once, not once per batch. An hour this
process already folded points into after it closed (by a fold or a direct merge, below) is
folded again only once its staged points are at least as many (each such fold at least
doubles its blocks on average, so a backfill or catch-up arriving a few points per series
per batch re-encodes them a bounded number of times, not once per check), or once its
oldest staged point has waited ``fold_delay_seconds`` (so a steady trickle is folded every
fold delay, and a late point is in its block about one delay and one check after it came
at the latest).
Everything is folded when more than ``staging_max_points`` are staged (or the topic
changed); what that folds of hours not yet closed for the delay does not count as folded.
Readers resolve block points together with staged points, and compute the rollups of hours
that have staged points from both (from their raw blocks, not their rollup records), so a
read never counts a point twice or misses one.

Points of already closed hours skip staging and are merged straight into their block when
the batch brings that block at least as many points as it holds (and at least
``DIRECT_MIN_POINTS``): a catch-up or a backfill. Each such merge at least doubles the
block, so a block is re-encoded at most about twice its final size in total; blocks the
batch adds only a few points to are staged and folded.
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
from stores.rocks.blockcodec import block_sizes, decode_blocks, decode_rollups
from stores.rocks.ingest import Writes, blocks_of, merge, touched
from stores.rocks.shards import DayShards
from stores.rocks.stagecodec import STAGING_PREFIX, ChunkKey, decode_chunk, encode_chunk
from stores.rocks.staging import StagedPoints
from stores.runtime.applied import TOPIC_ID_KEY, adopt_topic, offset_key, start_from_db
from stores.runtime.completeness import Completeness
from stores.runtime.completeness_db import DbStored, complete_puts
from stores.runtime.rocks import scan_prefix, u64
from stores.runtime.store import Record, StartPosition, Store
from strata.arrays import order_by_sid
from strata.codec import PointBatch, decode_points
from strata.conflict import resolve
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR, MINUTE, Rollups, rollup

log = logging.getLogger(__name__)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Columns = tuple[U64, I64, F64]
#: stored frames read from one day shard: (frames, their sids, their hour or day starts)
_Frames = tuple[list[bytes], U64, I64]

#: a batch's closed-hour points of a block go straight into it when they are at least this
#: many and at least as many as the block holds; the others (late points, a block filled a
#: few points at a time) are staged
DIRECT_MIN_POINTS = 8
#: a fold writes at most about this many points per WriteBatch (bounds its memory)
FOLD_BATCH_POINTS = 4_000_000


@dataclass
class Stats:
    """Counters exposed on ``GET /v1/stats`` (bounded: no per-series labels)."""

    applied_records: int = 0
    skipped_records: int = 0  # below the stored applied offset (redelivery)
    applied_points: int = 0
    expired_points: int = 0  # older than the retention at apply or fold
    dropped_shards: int = 0
    direct_points: int = 0  # merged straight into blocks (dense, closed hours)
    staged_points: int = 0  # currently staged (gauge)
    staged_chunks: int = 0  # currently staged (gauge)
    folds: int = 0  # fold WriteBatches written
    folded_points: int = 0
    fold_seconds: float = 0.0


def _empty_columns() -> Columns:
    return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)


def _concat(parts: Sequence[Columns]) -> Columns:
    if not parts:
        return _empty_columns()
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


class RocksStore(Store[PointBatch]):
    kind = "rocks"

    def __init__(
        self,
        topic: str,
        path: Path,
        retention_days: int,
        *,
        retention_check_seconds: float = 60.0,
        fold_delay_seconds: float = 600.0,
        fold_check_seconds: float = 10.0,
        staging_max_points: int = 20_000_000,
        future_margin_seconds: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._retention = retention_days
        self._check_every = retention_check_seconds
        self._fold_delay = fold_delay_seconds
        self._fold_every = fold_check_seconds
        self._staging_max = staging_max_points
        self._clock = clock
        self.shards = DayShards(path)
        self._stored = DbStored(self.shards.db)
        self._progress = Completeness(self._stored, future_margin_seconds, clock)
        self.stats = Stats()
        self.staged = StagedPoints()
        self._last_retention = 0.0
        self._last_fold = clock()
        # Points folded into each hour by this process (hour start -> count): what a later
        # fold of that hour must at least match (a restart forgets it: one early fold).
        self._folded: dict[int, int] = {}
        self._load_staging()
        self.run_retention()

    def _load_staging(self) -> None:
        """Rebuild the in-memory staged points from the staging chunks on disk."""
        with self.shards.lock:
            for key, frame in scan_prefix(self.shards.db, STAGING_PREFIX):
                sid, ts, value = decode_chunk(bytes(frame))
                if sid.size:
                    self.staged.add(bytes(key), sid, ts, value, self._clock())
        self._staged_gauges()
        if len(self.staged):
            log.info("rocks: %d staged points in %d chunks", self.staged.points, len(self.staged))

    def _staged_gauges(self) -> None:
        self.stats.staged_points = self.staged.points
        self.stats.staged_chunks = len(self.staged)

    # -- consumer side -------------------------------------------------------------------

    def decode(self, value: bytes) -> PointBatch:
        return decode_points(value)

    def bind_topic(self, topic_id: str | None) -> None:
        stored = self.shards.db.get(TOPIC_ID_KEY)
        if topic_id is not None and stored is not None and bytes(stored).decode() != topic_id:
            # The offsets are about to restart: fold first, so no new chunk key can
            # collide with a staged chunk of the old topic.
            self.fold(everything=True)
        if adopt_topic(self.shards.db, topic_id):
            log.warning(
                "rocks: topic %s is not the one our applied offsets came from (id now %s); "
                "replaying it from the beginning",
                self.topic,
                topic_id,
            )
        self._progress.reset()

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return start_from_db(self.shards.db, partition)

    def assigned(self, partitions: Sequence[int], replay_from_ms: dict[int, int]) -> None:
        self._progress.assigned(partitions)

    def revoked(self, partitions: Sequence[int]) -> None:
        self._progress.revoked(partitions)

    def first_message(self, partition: int, offset: int, timestamp_ms: int) -> None:
        """Where the log starts, for a partition this DB reads from the beginning of the
        topic (docs/rocks.md, "Coverage"; the rules: stores/runtime/completeness.py)."""
        self._progress.first_message(partition, offset, timestamp_ms)

    def _horizon(self, now: float) -> int:
        """Start of the first hour that has not been closed for ``fold_delay_seconds``."""
        t = int(now - self._fold_delay)
        return t - t % HOUR

    def apply(self, records: Sequence[Record[PointBatch]]) -> None:
        now = self._clock()
        cutoff = layout.oldest_kept_day(int(now), self._retention)
        fresh: dict[int, list[PointBatch]] = {}
        first: dict[int, int] = {}
        offsets: dict[int, int] = {}
        for r in records:
            self._progress.seen(r.partition, r.timestamp_ms)
            if r.offset < self._progress.next_offset(r.partition):
                self.stats.skipped_records += 1
                continue
            fresh.setdefault(r.partition, []).append(r.value)
            first.setdefault(r.partition, r.offset)
            first[r.partition] = min(first[r.partition], r.offset)
            offsets[r.partition] = max(offsets.get(r.partition, 0), r.offset + 1)
        # A partition's first applied offset carries the completeness its first message set.
        puts = complete_puts(self._progress.take_complete(offsets))
        writes: Writes = {}
        direct_ts: I64 | None = None
        chunks: list[tuple[bytes, Columns]] = []
        if fresh:
            parts = [_concat([(b.sid, b.ts, b.value) for b in fresh[p]]) for p in fresh]
            owner = np.repeat(np.arange(len(parts)), [p[0].size for p in parts])
            sid, ts, value = _concat(parts)
            keep = layout.day_of(ts) >= cutoff
            expired = int(keep.size - np.count_nonzero(keep))
            if expired:
                self.stats.expired_points += expired
                sid, ts, value, owner = sid[keep], ts[keep], value[keep], owner[keep]
            direct, writes = self._merge_direct(sid, ts, value, now)
            if direct is not None:
                self.stats.direct_points += int(np.count_nonzero(direct))
                direct_ts = ts[direct]
                staged = ~direct
                sid, ts, value, owner = sid[staged], ts[staged], value[staged], owner[staged]
            for i, p in enumerate(fresh):
                mine = owner == i
                if mine.any():
                    key = ChunkKey(p, first[p]).encode()
                    chunks.append((key, (sid[mine], ts[mine], value[mine])))
            self.stats.applied_points += int(keep.size) - expired
        self.stats.applied_records += sum(len(v) for v in fresh.values())
        puts.update({offset_key(p): u64(o) for p, o in offsets.items()})
        for key, cols in chunks:
            puts[key] = encode_chunk(*cols)
        if writes or puts:
            self.shards.write(writes, puts)
        if direct_ts is not None:
            self._count_folded(direct_ts, now)
        if chunks:
            with self.shards.lock:
                for key, cols in chunks:
                    self.staged.add(key, *cols, now)
            self._staged_gauges()
        self._progress.applied(offsets)
        if self.staged.points > self._staging_max:
            self.fold(everything=True)
        elif now - self._last_fold >= self._fold_every:
            self.fold()
        if now - self._last_retention >= self._check_every:
            self.run_retention()

    def _merge_direct(
        self, sid: U64, ts: I64, value: F64, now: float
    ) -> tuple[npt.NDArray[np.bool_] | None, Writes]:
        """Merge into their blocks the closed-hour points of the blocks this batch at least
        doubles (see the module docstring); return the mask of those points (``None`` if
        there are none) and the frames to write."""
        closed = np.flatnonzero(ts < self._horizon(now))
        if closed.size < DIRECT_MIN_POINTS:
            return None, {}
        t, block = blocks_of(sid[closed], ts[closed])
        new = np.bincount(block, minlength=t.block_sid.size)
        # Only blocks with enough new points are worth reading.
        read = np.flatnonzero(new >= DIRECT_MIN_POINTS)
        if not read.size:
            return None, {}
        frames = self._get_aligned(
            layout.keys(layout.RAW, t.block_sid[read], t.block_hour[read]),
            layout.day_of(t.block_hour[read]),
        )
        doubles = new[read] >= block_sizes(frames)
        if not doubles.any():
            return None, {}
        pick = np.zeros(t.block_sid.size, dtype=bool)
        pick[read[doubles]] = True
        direct = np.zeros(sid.size, dtype=bool)
        direct[closed[pick[block]]] = True
        sub = t.select(pick)
        old_days = self._get_aligned(sub.day_keys(), layout.day_of(sub.day_start))
        old_blocks = [f for f, d in zip(frames, doubles.tolist(), strict=True) if d]
        return direct, merge(sub, sid[direct], ts[direct], value[direct], old_blocks, old_days)

    def fold(self, *, everything: bool = False) -> int:
        """Fold staged points into blocks and rollups (all of them with ``everything``,
        else those of hours closed for ``fold_delay_seconds``); return the points folded.
        Each group of chunks is moved in one synced WriteBatch that writes the blocks and
        rollups and deletes the chunks, so a crash leaves either form, never both or none.
        A chunk that also holds points of later hours (late points that came in one batch
        with current ones) is rewritten in that WriteBatch with just those points, under
        the same key, rather than waiting for its last hour to close.
        """
        t0 = time.perf_counter()
        now = self._clock()
        self._last_fold = now
        with self.shards.lock:
            chunks = self.staged.chunks()
            hours = None if everything else self._due(self.staged.hours(), now)
            ids = list(chunks) if hours is None else self.staged.foldable(hours)
        ids.sort(key=lambda c: (chunks[c].last_hour, c))
        groups: list[list[int]] = []
        size = FOLD_BATCH_POINTS
        for cid in ids:
            if size + chunks[cid].points > FOLD_BATCH_POINTS and size:
                groups.append([])
                size = 0
            groups[-1].append(cid)
            size += chunks[cid].points
        cutoff = layout.oldest_kept_day(int(now), self._retention)
        folded = 0
        for group in groups:
            with self.shards.lock:
                sid, ts, value = self.staged.take(group, hours)
                rest = {} if hours is None else self.staged.rest(group, hours)
            keep = layout.day_of(ts) >= cutoff
            if not keep.all():
                self.stats.expired_points += int(keep.size - np.count_nonzero(keep))
                sid, ts, value = sid[keep], ts[keep], value[keep]
            writes = self._merge(sid, ts, value) if sid.size else {}
            rewrites = {chunks[c].key: encode_chunk(*cols) for c, cols in rest.items()}
            deletes = [chunks[c].key for c in group if c not in rest]
            # The synced write happens outside the lock readers hold for a whole read: an
            # fsync can take seconds on a busy disk, and reads would wait for it. A read
            # meanwhile sees the points staged and maybe in their new blocks too, which
            # the conflict rule resolves to one; never in neither, since they leave the
            # staged points only after the write.
            self.shards.write(writes, rewrites, deletes)
            with self.shards.lock:
                self.staged.remove(group, hours)
            self._count_folded(ts, now)
            folded += int(sid.size)
            self.stats.folds += 1
        self.stats.folded_points += folded
        self._staged_gauges()
        if groups:
            self.stats.fold_seconds += time.perf_counter() - t0
        return folded

    def folded(self, hour: int) -> int:
        """Points this process has folded into the hour starting at ``hour``."""
        return self._folded.get(hour, 0)

    def _count_folded(self, ts: I64, now: float) -> None:
        """Add points moved into their blocks to the folded counts of their hours, if those
        closed ``fold_delay_seconds`` ago. (An open hour folded early by an overflow must
        still be folded once at the delay: its blocks are not final, and counting it would
        hold its remaining points back until they outnumbered the early ones.)"""
        closed = ts[ts < self._horizon(now)]
        if closed.size:
            starts, counts = np.unique(closed - closed % HOUR, return_counts=True)
            for h, n in zip(starts.tolist(), counts.tolist(), strict=True):
                self._folded[h] = self._folded.get(h, 0) + n

    def _due(self, staged: dict[int, tuple[int, float]], now: float) -> set[int]:
        """The staged hours a fold at ``now`` takes (the rule in the module docstring)."""
        horizon = self._horizon(now)
        return {
            h
            for h, (points, since) in staged.items()
            if h < horizon and (points >= self.folded(h) or now - since >= self._fold_delay)
        }

    def _merge(self, sid: U64, ts: I64, value: F64) -> Writes:
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

    def caught_up(self, partition: int, end_offset: int) -> None:
        self._stored.write_complete(partition, self._progress.caught_up(partition, end_offset))

    def idle(self) -> None:
        # Housekeeping only: an empty poll does not mean any partition is at its end.
        self.fold()
        if self._clock() - self._last_retention >= self._check_every:
            self.run_retention()

    def run_retention(self) -> list[int]:
        """Drop day shards older than the retention; return the dropped days."""
        now = self._clock()
        self._last_retention = now
        oldest = layout.oldest_kept_day(int(now), self._retention)
        dropped = self.shards.drop_before(oldest)
        self.stats.dropped_shards += len(dropped)
        # Forget the folded counts of hours nothing can be staged for any more.
        for h in [h for h in self._folded if h < oldest * layout.DAY]:
            del self._folded[h]
        return dropped

    def coverage(self, partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        """[max(start of the oldest kept day shard, time from which the partition is
        complete), now] for owned partitions that have caught up; a partition still
        catching up, or complete only from a time still ahead, advertises nothing."""
        today = now // layout.DAY
        days = self.shards.days()
        oldest = max(min([*days, today]), layout.oldest_kept_day(now, self._retention))
        return self._progress.coverage(partitions, now, oldest * layout.DAY)

    def close(self) -> None:
        self.shards.close()

    # -- read side (HTTP threads) --------------------------------------------------------

    def _window(self, start: int, end: int) -> tuple[int, int, list[int]]:
        """The read range clamped to the kept shards, and the shard days it touches."""
        lo = layout.oldest_kept_day(int(self._clock()), self._retention) * layout.DAY
        start = max(start, lo)
        days = [d for d in self.shards.days() if start // layout.DAY <= d <= end // layout.DAY]
        return start, end, days

    def _fetch(self, kind: bytes, ksid: U64, kbase: I64) -> list[_Frames]:
        """The stored frames of ``kind`` (raw blocks or rollup records) of (ksid, kbase),
        absent ones skipped, one part per day. Caller holds the shard lock; decoding the
        frames does not need it."""
        parts: list[_Frames] = []
        days = layout.day_of(kbase)
        for day in np.unique(days).tolist():
            sel = np.flatnonzero(days == day)
            got = self.shards.get_many(day, layout.keys(kind, ksid[sel], kbase[sel]))
            idx = [i for i, f in enumerate(got) if f is not None]
            if idx:
                frames: list[bytes] = [got[i] for i in idx]  # type: ignore[misc]
                parts.append((frames, ksid[sel][idx], kbase[sel][idx]))
        return parts

    def read_raw(self, sids: U64, start: int, end: int) -> Columns:
        """Resolved points of ``sids`` in ``[start, end]`` sorted by (sid, ts): block
        points and staged points together, duplicates resolved by the conflict rule.
        The frames and staged points are taken under the shard lock (one consistent view
        against a fold); they are decoded after it, so concurrent reads do not queue for
        each other's decoding."""
        wanted = np.unique(sids)
        fetched: list[_Frames] = []
        with self.shards.lock:
            start, end, days = self._window(start, end)
            if wanted.size and start <= end:
                for day in days:
                    hours = _starts(
                        max(start, day * layout.DAY), min(end, (day + 1) * layout.DAY - 1), HOUR
                    )
                    ksid, khour = np.repeat(wanted, hours.size), np.tile(hours, wanted.size)
                    fetched += self._fetch(layout.RAW, ksid, khour)
                staged = self.staged.read(wanted, start, end)
            else:
                staged = _empty_columns()
        parts = _decode_blocks(fetched, start, end)
        if staged[0].size:
            return resolve(*_concat([*parts, staged]))
        sid, ts, value = _concat(parts)
        order = order_by_sid(sid, ts)
        return sid[order], ts[order], value[order]

    def read_rollups(self, sids: U64, start: int, end: int, step: int) -> Rollups:
        """Rollup rows (``step`` = 60 or 3600) of ``sids`` whose bucket start is in
        ``[start, end]``, sorted by (sid, bucket): stored rows, except for (series, hour)s
        with staged points, whose rows are computed from block + staged points."""
        if step not in (MINUTE, HOUR):
            raise ValueError(f"no stored rollups at {step}s")
        wanted = np.unique(sids)
        kind, span = (layout.MINUTES, HOUR) if step == MINUTE else (layout.HOURS, layout.DAY)
        records: list[_Frames] = []
        fetched: list[_Frames] = []
        with self.shards.lock:  # frames and staged points in one view; decoded after it
            start, end, days = self._window(start, end)
            if not wanted.size or start > end:
                return Rollups.empty()
            for day in days:
                lo, hi = max(start, day * layout.DAY), min(end, (day + 1) * layout.DAY - 1)
                bases = _starts(lo, hi, span)
                ksid, kbase = np.repeat(wanted, bases.size), np.tile(bases, wanted.size)
                records += self._fetch(kind, ksid, kbase)
            # Every bucket in [start, end] lies in an hour in [first, last + 1 h).
            first, last = start - start % HOUR, end - end % HOUR
            staged = self.staged.read(wanted, first, last + HOUR - 1)
            if staged[0].size:
                ssid, shour = _pairs(staged[0], staged[1] - np.mod(staged[1], HOUR))
                fetched = self._fetch(layout.RAW, ssid, shour)
        parts: list[Rollups] = []
        for frames, fsid, fbase in records:
            rows = decode_rollups(frames, fbase)
            rsid = np.repeat(fsid, rows.counts)
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
        if staged[0].size:
            pts = resolve(*_concat([*_decode_blocks(fetched, first, last + HOUR), staged]))
        parts = [p for p in parts if len(p)]
        if staged[0].size:
            # Stored rows of those (series, hour)s miss the staged points: replace them.
            parts = [_without(p, ssid, shour) for p in parts]
            live = rollup(*pts, step)
            m = (live.bucket >= start) & (live.bucket <= end)
            parts.append(_select(live, m))
        parts = [p for p in parts if len(p)]
        if not parts:
            return Rollups.empty()
        merged = Rollups(*(np.concatenate([getattr(p, n) for p in parts]) for n in _FIELDS))
        return _select(merged, np.lexsort((merged.bucket, merged.sid)))


_FIELDS = ("sid", "bucket", "count", "sum", "min", "max", "last", "last_ts")


def _decode_blocks(fetched: Sequence[_Frames], start: int, end: int) -> list[Columns]:
    """Points with ``start <= ts <= end`` of fetched raw blocks, one part per fetch."""
    parts: list[Columns] = []
    for frames, fsid, fhour in fetched:
        pts = decode_blocks(frames, fhour)
        psid = np.repeat(fsid, pts.counts)
        m = (pts.ts >= start) & (pts.ts <= end)
        parts.append((psid[m], pts.ts[m], pts.value[m]))
    return parts


def _select(r: Rollups, idx: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Rollups:
    return Rollups(*(getattr(r, n)[idx] for n in _FIELDS))


def _pairs(sid: U64, hour: I64) -> tuple[U64, I64]:
    """Unique (sid, hour) pairs, sorted."""
    order = np.lexsort((hour, sid))
    s, h = sid[order], hour[order]
    new = np.ones(s.size, dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (h[1:] != h[:-1])
    return s[new], h[new]


def _without(r: Rollups, psid: U64, phour: I64) -> Rollups:
    """Rows of ``r`` whose (sid, hour of bucket) is not one of the sorted unique pairs."""
    hour = r.bucket - np.mod(r.bucket, HOUR)
    # Rank sids over both sets, then one integer key per (sid, hour) pair.
    sids = np.unique(np.concatenate([psid, r.sid]))
    h0 = int(min(phour.min(), hour.min(initial=int(phour.min()))))
    nh = int(max(phour.max(), hour.max(initial=int(phour.max()))) - h0) // HOUR + 1
    pkey = np.searchsorted(sids, psid).astype(np.int64) * nh + (phour - h0) // HOUR
    rkey = np.searchsorted(sids, r.sid).astype(np.int64) * nh + (hour - h0) // HOUR
    return _select(r, ~np.isin(rkey, pkey))


def _starts(lo: int, hi: int, span: int) -> I64:
    """Starts of the ``span``-aligned periods overlapping ``[lo, hi]``."""
    if lo > hi:
        return np.empty(0, TS_DTYPE)
    first = lo - lo % span
    return np.arange(first, hi + 1, span, dtype=TS_DTYPE)
