"""Apply planning for the rocks store (pure): new points + stored frames -> frames to write.

The store reads the frames of every (series, hour) block the batch touches and of every
(series, day) hour-rollup record, hands them here, and writes what comes back in one
atomic WriteBatch. Everything is recomputed from the *merged, resolved* block, so the
stored bytes are a function of the set of points only: applying a point twice, in any
batch split or order, gives identical blocks and rollups (tests/property/test_rocks_*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stores.rocks import layout
from stores.rocks.blockcodec import (
    KIND_HOURS,
    KIND_MINUTES,
    RollupRows,
    decode_blocks,
    decode_rollups,
    encode_blocks,
    encode_rollups,
)
from strata.arrays import order_by_sid
from strata.conflict import resolve
from strata.rollup import HOUR, MINUTE, Rollups, bucket_sums

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: day number -> [(key, frame)] to put into that day's shard
Writes = dict[int, list[tuple[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class Touched:
    """The blocks and day-rollup records a batch of points touches, sorted by sid, time."""

    block_sid: U64
    block_hour: I64
    day_sid: U64
    day_start: I64

    def block_keys(self) -> list[bytes]:
        return layout.keys(layout.RAW, self.block_sid, self.block_hour)

    def day_keys(self) -> list[bytes]:
        return layout.keys(layout.HOURS, self.day_sid, self.day_start)

    def select(self, mask: npt.NDArray[np.bool_]) -> Touched:
        """The blocks where ``mask`` is set, and the day records those touch."""
        bs, bh = self.block_sid[mask], self.block_hour[mask]
        day = bh - np.mod(bh, layout.DAY)
        dfirst = _runs(bs, day)
        return Touched(bs, bh, bs[dfirst], day[dfirst])


def _runs(*cols: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
    """Start index of every run of equal rows in sorted columns."""
    change = np.zeros(cols[0].size, dtype=bool)
    change[:1] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


def _counts(starts: npt.NDArray[np.intp], n: int) -> I64:
    return np.diff(np.append(starts, n)).astype(np.int64)


def touched(sid: U64, ts: I64) -> Touched:
    return blocks_of(sid, ts)[0]


def blocks_of(sid: U64, ts: I64) -> tuple[Touched, npt.NDArray[np.intp]]:
    """The blocks and day records points touch, and each point's index in ``block_*``."""
    hour = ts - np.mod(ts, HOUR)
    order = order_by_sid(sid, hour)
    s, h = sid[order], hour[order]
    first = _runs(s, h)
    starts = np.zeros(sid.size, dtype=np.intp)
    starts[first] = 1
    block = np.empty(sid.size, dtype=np.intp)
    block[order] = np.cumsum(starts) - 1
    bs, bh = s[first], h[first]
    day = bh - np.mod(bh, layout.DAY)
    dfirst = _runs(bs, day)
    return Touched(bs, bh, bs[dfirst], day[dfirst]), block


def _present(frames: Sequence[bytes | None]) -> tuple[npt.NDArray[np.intp], list[bytes]]:
    idx = [i for i, f in enumerate(frames) if f is not None]
    return np.array(idx, dtype=np.intp), [f for f in frames if f is not None]


def _group_rows(r: Rollups, span: int) -> tuple[I64, U64, I64]:
    """(rows per record, record sid, record base) for rollup rows sorted by (sid, bucket)
    grouped into records covering ``span`` seconds."""
    base = r.bucket - np.mod(r.bucket, span)
    first = _runs(r.sid, base)
    return _counts(first, len(r)), r.sid[first], base[first]


def _to_rows(r: Rollups, counts: I64) -> RollupRows:
    return RollupRows(counts, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.last_ts)


def _add(writes: Writes, kind: bytes, sid: U64, start: I64, frames: list[bytes]) -> None:
    days = layout.day_of(start).tolist()
    for day, key, frame in zip(days, layout.keys(kind, sid, start), frames, strict=True):
        writes.setdefault(day, []).append((key, frame))


def rollup_sorted(sid: U64, ts: I64, value: F64, step: int) -> Rollups:
    """``strata.rollup.rollup`` of points already sorted by (sid, ts) without duplicates
    (the output of :func:`strata.conflict.resolve`): the same rows, without its sort."""
    if sid.size == 0:
        return Rollups.empty()
    bucket = ts - np.mod(ts, step)
    starts = _runs(sid, bucket)
    ends = np.append(starts[1:], sid.size) - 1  # last row of each group = greatest ts
    return Rollups(
        sid[starts],
        bucket[starts],
        np.diff(np.append(starts, sid.size)).astype(np.int64),
        bucket_sums(value, starts),
        np.minimum.reduceat(value, starts),
        np.maximum.reduceat(value, starts),
        value[ends],
        ts[ends],
    )


def merge(
    t: Touched,
    sid: U64,
    ts: I64,
    value: F64,
    old_blocks: Sequence[bytes | None],
    old_days: Sequence[bytes | None],
) -> Writes:
    """Frames to put: merged raw blocks, their 1-minute records and the updated hour
    records of their days. ``old_blocks``/``old_days`` align with ``t``'s blocks/days
    (``None`` = not stored yet). Raises :class:`~stores.rocks.blockcodec.CorruptBlock`."""
    present, frames = _present(old_blocks)
    old = decode_blocks(frames, t.block_hour[present])
    old_sid = np.repeat(t.block_sid[present], old.counts)
    # Stored block rows, then the new ones: each series' rows mostly in time order already,
    # which strata.arrays.order_by_sid sorts with one stable sort by sid.
    s, tt, v = resolve(
        np.concatenate([old_sid, sid]),
        np.concatenate([old.ts, ts]),
        np.concatenate([old.value, value]),
    )
    hour = tt - np.mod(tt, HOUR)
    first = _runs(s, hour)
    counts = _counts(first, s.size)
    writes: Writes = {}
    bsid, bhour = s[first], hour[first]
    _add(writes, layout.RAW, bsid, bhour, encode_blocks(tt, v, counts, bhour))
    minutes = rollup_sorted(s, tt, v, MINUTE)
    mcounts, msid, mbase = _group_rows(minutes, HOUR)
    _add(
        writes,
        layout.MINUTES,
        msid,
        mbase,
        encode_rollups(_to_rows(minutes, mcounts), mbase, KIND_MINUTES),
    )
    hours = _merge_hours(rollup_sorted(s, tt, v, HOUR), t, old_days)
    hcounts, hsid, hbase = _group_rows(hours, layout.DAY)
    _add(
        writes,
        layout.HOURS,
        hsid,
        hbase,
        encode_rollups(_to_rows(hours, hcounts), hbase, KIND_HOURS),
    )
    return writes


def _merge_hours(new: Rollups, t: Touched, old_days: Sequence[bytes | None]) -> Rollups:
    """Stored hour rows of the touched days with the touched hours replaced by ``new``."""
    present, frames = _present(old_days)
    old = decode_rollups(frames, t.day_start[present])
    old_sid = np.repeat(t.day_sid[present], old.counts)
    prio = np.concatenate([np.zeros(len(new), np.int8), np.ones(old_sid.size, np.int8)])
    sid = np.concatenate([new.sid, old_sid])
    bucket = np.concatenate([new.bucket, old.bucket])
    order = np.lexsort((prio, bucket, sid))
    keep = order[_runs(sid[order], bucket[order])]  # the new row wins over the stored one

    def pick(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return np.concatenate([a, b])[keep]

    return Rollups(
        sid[keep],
        bucket[keep],
        pick(new.count, old.count),  # type: ignore[arg-type]
        pick(new.sum, old.sum),  # type: ignore[arg-type]
        pick(new.min, old.min),  # type: ignore[arg-type]
        pick(new.max, old.max),  # type: ignore[arg-type]
        pick(new.last, old.last),  # type: ignore[arg-type]
        pick(new.last_ts, old.last_ts),  # type: ignore[arg-type]
    )
