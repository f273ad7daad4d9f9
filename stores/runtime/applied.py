"""Applied offsets kept inside a store's RocksDB, written in the same batch as the data.

Index stores start an assigned partition from their own record rather than the group's
committed offset: after a rebalance the committed offset may reflect what *another*
instance applied into *its* database, and starting there would leave a hole in ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from rocksdict import Rdict

from stores.runtime.rocks import read_u64, u32, u64
from stores.runtime.store import Record, StartPosition

OFFSET_PREFIX = b"\x00O"  # + partition u32 -> next offset u64
# librdkafka's logical "beginning of the partition".
OFFSET_BEGINNING = -2

T = TypeVar("T")


def offset_key(partition: int) -> bytes:
    return OFFSET_PREFIX + u32(partition)


def applied_offsets(records: Sequence[Record[T]]) -> dict[bytes, bytes]:
    """Puts recording ``last offset + 1`` per partition of ``records``."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(r.offset, last.get(r.partition, -1))
    return {offset_key(p): u64(o + 1) for p, o in last.items()}


def start_from_db(db: Rdict, partition: int) -> StartPosition:
    raw = db.get(offset_key(partition))
    return StartPosition(offset=read_u64(raw) if raw is not None else OFFSET_BEGINNING)
