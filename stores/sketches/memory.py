"""Sketches of one partition in memory, in 10-minute time blocks (pure: no Kafka, no clock).

Each block keeps the batches appended to it (cheap appends) and folds them into one
consolidated :class:`~strata.sketch.SketchBatch` with one row per (sid, ts), sorted, once
the pending rows reach max(4096, consolidated rows) and before reads: amortised, every row
is merged O(log n) times. Merging is exact and order-independent, so the consolidated rows
do not depend on when folds happen — but it is not idempotent: the caller must never insert
the same message twice (the RAM sketch store skips applied offsets).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from strata.sketch import SketchBatch, SketchParams

BLOCK_SECONDS = 600
_MIN_CONSOLIDATE_ROWS = 4096

Sids = npt.NDArray[np.uint64]


def rows_in(batch: SketchBatch, sids: Sids, start: int, end: int) -> SketchBatch:
    """Rows of ``batch`` whose sid is in ``sids`` (sorted, unique) and ``start <= ts <=
    end``, in their order."""
    mask = np.isin(batch.sid, sids, assume_unique=False) & (batch.ts >= start) & (batch.ts <= end)
    return batch if bool(mask.all()) else batch.take(mask)


class SketchBlock:
    """Rows with ``start <= ts < start + BLOCK_SECONDS``."""

    __slots__ = ("_merged", "_pending", "_pending_rows", "start")

    def __init__(self, start: int, params: SketchParams) -> None:
        self.start = start
        self._merged = SketchBatch.empty(params)
        self._pending: list[SketchBatch] = []
        self._pending_rows = 0

    def __len__(self) -> int:
        return len(self._merged) + self._pending_rows

    def append(self, batch: SketchBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += len(batch)
        if self._pending_rows >= max(_MIN_CONSOLIDATE_ROWS, len(self._merged)):
            self.consolidate()

    def consolidate(self) -> SketchBatch:
        """Fold pending rows in; return one row per (sid, ts), sorted."""
        if self._pending:
            self._merged = SketchBatch.concat([self._merged, *self._pending]).merge_by_key()
            self._pending = []
            self._pending_rows = 0
        return self._merged


class PartitionSketches:
    """All blocks of one Kafka partition of the sketches topic."""

    __slots__ = ("_blocks", "params")

    def __init__(self, params: SketchParams) -> None:
        self.params = params
        self._blocks: dict[int, SketchBlock] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._blocks.values())

    def block_starts(self) -> list[int]:
        return sorted(self._blocks)

    def insert(self, batch: SketchBatch, oldest: int) -> int:
        """Add the rows with ``ts >= oldest`` (older ones are outside the window and
        dropped); return how many were kept. Rows in other parameters are converted."""
        keep = batch.ts >= oldest
        if not keep.all():
            batch = batch.take(keep)
        if len(batch) == 0:
            return 0
        batch = batch.convert(self.params)
        starts = batch.ts - batch.ts % BLOCK_SECONDS
        unique, which = np.unique(starts, return_inverse=True)
        # One iteration per 10-minute block the batch touches, not per row.
        for i, start in enumerate(unique.tolist()):
            part = batch if unique.size == 1 else batch.take(which == i)
            block = self._blocks.get(start)
            if block is None:
                block = self._blocks[start] = SketchBlock(start, self.params)
            block.append(part)
        return len(batch)

    def evict(self, oldest: int) -> int:
        """Drop blocks that end before ``oldest``; return how many were dropped."""
        gone = [s for s in self._blocks if s + BLOCK_SECONDS <= oldest]
        for s in gone:
            del self._blocks[s]
        return len(gone)

    def read(self, sids: Sids, start: int, end: int) -> SketchBatch:
        """Rows of ``sids`` (sorted, unique) with ``start <= ts <= end``, one per (sid,
        ts), sorted by (sid, ts)."""
        parts = [
            rows_in(block.consolidate(), sids, start, end)
            for s, block in sorted(self._blocks.items())
            if s <= end and s + BLOCK_SECONDS > start
        ]
        parts = [p for p in parts if len(p)]
        if not parts:
            return SketchBatch.empty(self.params)
        if len(parts) == 1:
            return parts[0]
        # Blocks are disjoint in time, so concatenation needs a sort, never a merge.
        out = SketchBatch.concat(parts)
        return out.take(np.lexsort((out.ts, out.sid)))
