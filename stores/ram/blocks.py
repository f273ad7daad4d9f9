"""In-memory point blocks: pure data structures, no Kafka, HTTP or clock.

A partition's points live in time blocks of :data:`BLOCK_SECONDS`. Each block keeps
appended chunks as they arrive (cheap appends) and folds them into one consolidated set of
columns sorted by (sid, ts), with duplicates resolved by :func:`strata.conflict.resolve`.
Because that rule is idempotent, commutative and associative, applying a batch twice, or
batches in any order, leaves the same consolidated columns. Eviction drops whole blocks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from strata.arrays import order_by_sid
from strata.conflict import resolve
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE

BLOCK_SECONDS = 600
# Pending rows are folded in once they reach this many, or the consolidated size,
# whichever is larger: amortised O(log n) sorts per point instead of one per batch.
_MIN_CONSOLIDATE_ROWS = 4096

Sids = npt.NDArray[np.uint64]
Times = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]
Columns = tuple[Sids, Times, Values]


def empty_columns() -> Columns:
    return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)


def concat(parts: list[Columns]) -> Columns:
    if not parts:
        return empty_columns()
    if len(parts) == 1:
        return parts[0]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


class TimeBlock:
    """Points with ``start <= ts < start + BLOCK_SECONDS``."""

    __slots__ = ("_cols", "_pending", "_pending_rows", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self._cols: Columns = empty_columns()
        self._pending: list[Columns] = []
        self._pending_rows = 0

    def __len__(self) -> int:
        """Rows held, counting unconsolidated duplicates."""
        return int(self._cols[0].size) + self._pending_rows

    def append(self, sid: Sids, ts: Times, value: Values) -> None:
        self._pending.append((sid, ts, value))
        self._pending_rows += int(sid.size)
        if self._pending_rows >= max(_MIN_CONSOLIDATE_ROWS, int(self._cols[0].size)):
            self.consolidate()

    def consolidate(self) -> Columns:
        """Fold pending chunks in; return the sorted, duplicate-free columns."""
        if self._pending:
            self._cols = resolve(*concat([self._cols, *self._pending]))
            self._pending = []
            self._pending_rows = 0
        return self._cols

    def read(self, sids: Sids, start: int, end: int) -> Columns:
        """Rows whose sid is in ``sids`` and ``start <= ts <= end``, sorted by (sid, ts)."""
        sid, ts, value = self.consolidate()
        mask = np.isin(sid, sids)
        if start > self.start or end < self.start + BLOCK_SECONDS - 1:
            mask &= (ts >= start) & (ts <= end)
        return sid[mask], ts[mask], value[mask]


class PartitionPoints:
    """All blocks of one Kafka partition."""

    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        self._blocks: dict[int, TimeBlock] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._blocks.values())

    def block_starts(self) -> list[int]:
        return sorted(self._blocks)

    def insert(self, sid: Sids, ts: Times, value: Values, oldest: int) -> int:
        """Add points with ``ts >= oldest`` (older ones are outside the window and
        dropped); return how many were kept."""
        keep = ts >= oldest
        if not keep.all():
            sid, ts, value = sid[keep], ts[keep], value[keep]
        if sid.size == 0:
            return 0
        starts = ts - ts % BLOCK_SECONDS
        unique, which = np.unique(starts, return_inverse=True)
        # One iteration per 10-minute block touched by the batch, not per point.
        for i, start in enumerate(unique.tolist()):
            rows = which == i if unique.size > 1 else slice(None)
            block = self._blocks.get(start)
            if block is None:
                block = self._blocks[start] = TimeBlock(start)
            block.append(sid[rows], ts[rows], value[rows])
        return int(sid.size)

    def evict(self, oldest: int) -> int:
        """Drop blocks that end before ``oldest``; return how many were dropped."""
        gone = [s for s in self._blocks if s + BLOCK_SECONDS <= oldest]
        for s in gone:
            del self._blocks[s]
        return len(gone)

    def read(self, sids: Sids, start: int, end: int) -> Columns:
        """Rows for ``sids`` in ``[start, end]``, sorted by (sid, ts), duplicates resolved."""
        parts = [
            block.read(sids, start, end)
            for s, block in sorted(self._blocks.items())
            if s <= end and s + BLOCK_SECONDS > start
        ]
        parts = [p for p in parts if p[0].size]
        return sort_columns(concat(parts))


def sort_columns(cols: Columns) -> Columns:
    """Sort columns by (sid, ts); rows are assumed duplicate-free."""
    sid, ts, value = cols
    if sid.size < 2:
        return cols
    order = order_by_sid(sid, ts)
    return sid[order], ts[order], value[order]
