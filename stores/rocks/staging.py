"""Staged points in memory (pure: no disk, clock or threads).

Every staging chunk on disk has its points here too, so reads see them before they are
folded into hour blocks. Points are kept per UTC hour, as a consolidated part sorted by
sid (searchable) plus appended parts (cheap appends); appended parts are merged into the
consolidated one once they outgrow it, so each point is sorted O(log n) times amortised
(the idea of stores/ram/blocks.py). Every row carries the id of its chunk so a fold can
take and then remove exactly the chunks it moved. Nothing is resolved here: readers
resolve staged rows together with block rows by the conflict rule.

The caller serialises access (the rocks store holds its shard lock).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Columns = tuple[U64, I64, F64]
_MIN_CONSOLIDATE_ROWS = 4096


@dataclass(frozen=True, slots=True)
class Chunk:
    """What the store needs to know about one staged chunk."""

    key: bytes  # its RocksDB key (stagecodec.ChunkKey)
    points: int
    last_hour: int  # start of the hour of its latest point


@dataclass(slots=True)
class _Rows:
    sid: U64
    ts: I64
    value: F64
    chunk: I64

    @classmethod
    def empty(cls) -> _Rows:
        return cls(
            np.empty(0, SID_DTYPE),
            np.empty(0, TS_DTYPE),
            np.empty(0, VALUE_DTYPE),
            np.empty(0, np.int64),
        )

    @classmethod
    def concat(cls, parts: list[_Rows]) -> _Rows:
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.sid for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.chunk for p in parts]),
        )

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> _Rows:
        return _Rows(self.sid[mask], self.ts[mask], self.value[mask], self.chunk[mask])

    def __len__(self) -> int:
        return int(self.sid.size)


class _Hour:
    """Staged rows with ``start <= ts < start + 1 h``."""

    __slots__ = ("_pending", "_pending_rows", "_sorted", "first_added")

    def __init__(self, at: float) -> None:
        self._sorted = _Rows.empty()  # sorted by sid
        self._pending: list[_Rows] = []
        self._pending_rows = 0
        # When its oldest rows came (the caller's clock): the hour is dropped once a fold
        # empties it, so this is how long its staged points have waited.
        self.first_added = at

    def __len__(self) -> int:
        return len(self._sorted) + self._pending_rows

    def append(self, rows: _Rows) -> None:
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= max(_MIN_CONSOLIDATE_ROWS, len(self._sorted)):
            self._consolidate()

    def _consolidate(self) -> None:
        if not self._pending:
            return
        rows = _Rows.concat([self._sorted, *self._pending])
        self._sorted = rows.select(np.argsort(rows.sid, kind="stable"))
        self._pending = []
        self._pending_rows = 0

    def rows(self) -> _Rows:
        self._consolidate()
        return self._sorted

    def find(self, wanted: U64) -> _Rows:
        """Rows whose sid is in ``wanted`` (sorted, unique)."""
        s = self._sorted
        lo = np.searchsorted(s.sid, wanted, side="left")
        hi = np.searchsorted(s.sid, wanted, side="right")
        n = hi - lo
        total = int(n.sum())
        if total:
            starts = np.repeat(lo - np.cumsum(n) + n, n)
            idx = starts + np.arange(total)
            parts = [s.select(idx.astype(np.intp))]
        else:
            parts = []
        for p in self._pending:
            m = np.isin(p.sid, wanted)
            if m.any():
                parts.append(p.select(m))
        return _Rows.concat(parts) if parts else _Rows.empty()

    def drop_chunks(self, gone: npt.NDArray[np.bool_]) -> None:
        """Remove the rows whose chunk id ``c`` has ``gone[c]``."""
        self._consolidate()
        keep = ~gone[self._sorted.chunk]
        if not keep.any():
            self._sorted = _Rows.empty()
        elif not keep.all():
            self._sorted = self._sorted.select(keep)


class StagedPoints:
    """All staged points of a store instance, by hour (see the module docstring)."""

    def __init__(self) -> None:
        self._hours: dict[int, _Hour] = {}
        self._chunks: dict[int, Chunk] = {}
        self._chunk_hours: dict[int, list[int]] = {}
        self._next_id = 0
        self.points = 0

    def __len__(self) -> int:
        return len(self._chunks)

    def add(self, key: bytes, sid: U64, ts: I64, value: F64, at: float = 0.0) -> int:
        """Stage one chunk's points (non-empty) at time ``at``; return its id."""
        cid = self._next_id
        self._next_id += 1
        hour = ts - np.mod(ts, HOUR)
        starts, which = np.unique(hour, return_inverse=True)
        chunk = np.full(sid.size, cid, dtype=np.int64)
        rows = _Rows(sid, ts, value, chunk)
        for i, h in enumerate(starts.tolist()):
            part = rows if starts.size == 1 else rows.select(which == i)
            staged = self._hours.get(h)
            if staged is None:
                staged = self._hours[h] = _Hour(at)
            staged.append(part)
        self._chunks[cid] = Chunk(key, int(sid.size), int(starts[-1]))
        self._chunk_hours[cid] = [int(h) for h in starts.tolist()]
        self.points += int(sid.size)
        return cid

    def chunks(self) -> dict[int, Chunk]:
        return dict(self._chunks)

    def hours(self) -> dict[int, tuple[int, float]]:
        """Per staged hour (its start): how many points it holds, and since when it has held
        some (when its oldest staged points came)."""
        return {h: (len(rows), rows.first_added) for h, rows in self._hours.items()}

    def foldable(self, hours: AbstractSet[int]) -> list[int]:
        """Ids of the chunks with points in any of ``hours`` (all their points or some: a
        batch can mix late points with points of the open hour)."""
        return [cid for cid, held in self._chunk_hours.items() if not hours.isdisjoint(held)]

    def _hours_of(self, gone: npt.NDArray[np.bool_], hours: AbstractSet[int] | None) -> list[int]:
        ids = np.flatnonzero(gone).tolist()
        held = {h for cid in ids for h in self._chunk_hours[cid]}
        return sorted(held if hours is None else held & hours)

    def take(self, ids: Iterable[int], hours: AbstractSet[int] | None = None) -> Columns:
        """Points of the chunks ``ids`` in ``hours`` (all their points with ``None``), left
        staged until :meth:`remove`."""
        gone = self._mask(ids)
        parts = []
        for h in self._hours_of(gone, hours):
            rows = self._hours[h].rows()
            mine = gone[rows.chunk]
            parts.append(rows if mine.all() else rows.select(mine))
        if not parts:
            return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)
        rows = _Rows.concat(parts)
        return rows.sid, rows.ts, rows.value

    def rest(self, ids: Iterable[int], hours: AbstractSet[int]) -> dict[int, Columns]:
        """Per chunk of ``ids`` that has any, its points in hours other than ``hours``: what
        stays staged (and is rewritten as the chunk) after a fold of ``hours``."""
        keep = self._mask(ids)
        kept = np.flatnonzero(keep).tolist()
        others = sorted({h for cid in kept for h in self._chunk_hours[cid]} - hours)
        parts = []
        for h in others:
            rows = self._hours[h].rows()
            parts.append(rows.select(keep[rows.chunk]))
        if not parts:
            return {}
        rows = _Rows.concat(parts)
        rows = rows.select(np.argsort(rows.chunk, kind="stable"))
        cids, starts = np.unique(rows.chunk, return_index=True)
        ends = [*starts[1:].tolist(), len(rows)]
        return {
            int(c): (rows.sid[a:b], rows.ts[a:b], rows.value[a:b])
            for c, a, b in zip(cids.tolist(), starts.tolist(), ends, strict=True)
        }

    def remove(self, ids: Iterable[int], hours: AbstractSet[int] | None = None) -> None:
        """Drop the points :meth:`take` returned for the same arguments; a chunk left
        without points is forgotten."""
        gone = self._mask(ids)
        dropped = np.zeros(gone.size, dtype=np.int64)
        for h in self._hours_of(gone, hours):
            block = self._hours[h]
            dropped += np.bincount(block.rows().chunk, minlength=gone.size) * gone
            block.drop_chunks(gone)
            if not len(block):
                del self._hours[h]
        for cid in np.flatnonzero(gone).tolist():
            left = [] if hours is None else [h for h in self._chunk_hours[cid] if h not in hours]
            chunk = self._chunks[cid]
            if left:
                self._chunks[cid] = Chunk(chunk.key, chunk.points - int(dropped[cid]), left[-1])
                self._chunk_hours[cid] = left
                self.points -= int(dropped[cid])
            else:
                self.points -= self._chunks.pop(cid).points
                del self._chunk_hours[cid]

    def _mask(self, ids: Iterable[int]) -> npt.NDArray[np.bool_]:
        gone = np.zeros(self._next_id, dtype=bool)
        wanted = [cid for cid in ids if cid in self._chunks]
        gone[np.array(wanted, dtype=np.intp)] = True
        return gone

    def read(self, wanted: U64, start: int, end: int) -> Columns:
        """Staged rows of ``wanted`` (sorted, unique sids) with ``start <= ts <= end``,
        unsorted and unresolved."""
        parts = []
        for h, block in self._hours.items():
            if h > end or h + HOUR <= start:
                continue
            rows = block.find(wanted)
            if start > h or end < h + HOUR - 1:
                rows = rows.select((rows.ts >= start) & (rows.ts <= end))
            if len(rows):
                parts.append(rows)
        if not parts:
            return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)
        rows = _Rows.concat(parts)
        return rows.sid, rows.ts, rows.value
