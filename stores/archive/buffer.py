"""Per-partition buffering of decoded records until a flush is due. Pure (clock passed in).

A partition's buffer is a run of consecutive offsets ``first..last``; it becomes one object
named by that range. Records at offsets already buffered or uploaded (``next_offset``) are
skipped, so a redelivered batch cannot put a message into two objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Pending(Generic[T]):
    """Records of one partition waiting for upload."""

    partition: int
    first: int
    last: int
    started: float  # clock time the first record was buffered
    rows: int = 0
    max_append_ms: int = 0
    values: list[T] = field(default_factory=list)


class Buffer(Generic[T]):
    """Buffers per partition; ``due`` says which to flush, ``take``/``done`` hand them out.

    ``next_offset[p]`` is the first offset not yet buffered or uploaded; the owner sets it
    at assignment from what the objects say.
    """

    def __init__(self, flush_rows: int, flush_seconds: float, size: Callable[[T], int]) -> None:
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._size = size
        self._pending: dict[int, Pending[T]] = {}
        self.next_offset: dict[int, int] = {}

    def add(self, partition: int, offset: int, append_ms: int, value: T, now: float) -> bool:
        """Buffer one record; False (and nothing changes) if its offset was seen already."""
        if offset < self.next_offset.get(partition, 0):
            return False
        pend = self._pending.get(partition)
        if pend is None:
            pend = self._pending[partition] = Pending(partition, offset, offset, now)
        pend.last = offset
        pend.rows += self._size(value)
        pend.max_append_ms = max(pend.max_append_ms, append_ms)
        pend.values.append(value)
        self.next_offset[partition] = offset + 1
        return True

    def due(self, now: float, force: bool = False, budget: int | None = None) -> list[Pending[T]]:
        """Buffers that reached the row limit or the age limit (all if ``force``), then,
        while the others hold more than ``budget`` rows in total, the largest of them: many
        partitions each under the row limit must not add up to an unbounded buffer (nor
        wait, holding it, until one ages out)."""
        due = [
            p
            for p in self._pending.values()
            if force or p.rows >= self._flush_rows or now - p.started >= self._flush_seconds
        ]
        if budget is not None:
            taken = {p.partition for p in due}
            rest = sorted(
                (p for p in self._pending.values() if p.partition not in taken),
                key=lambda p: p.rows,
                reverse=True,
            )
            left = sum(p.rows for p in rest)
            for p in rest:
                if left <= budget:
                    break
                due.append(p)
                left -= p.rows
        return due

    def done(self, pending: Pending[T]) -> None:
        """``pending`` was uploaded: forget it."""
        if self._pending.get(pending.partition) is pending:
            del self._pending[pending.partition]

    def rows(self) -> int:
        return sum(p.rows for p in self._pending.values())

    def drop(self, partition: int) -> None:
        """Forget a revoked partition entirely (its next owner starts from the objects)."""
        self._pending.pop(partition, None)
        self.next_offset.pop(partition, None)

    def first_pending(self, partition: int) -> int | None:
        """Offset of the oldest record of ``partition`` still waiting for upload."""
        pend = self._pending.get(partition)
        return pend.first if pend is not None else None

    def partitions_pending(self) -> list[int]:
        return sorted(self._pending)
