"""Applied offsets kept inside a store's RocksDB, written in the same batch as the data.

Index stores start an assigned partition from their own record rather than the group's
committed offset: after a rebalance the committed offset may reflect what *another*
instance applied into *its* database, and starting there would leave a hole in ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from rocksdict import Rdict, WriteBatch, WriteOptions

from stores.runtime.rocks import read_u64, scan_prefix, u32, u64
from stores.runtime.store import Record, StartPosition

OFFSET_PREFIX = b"\x00O"  # + partition u32 -> next offset u64
# + partition u32 -> i64 Unix seconds from which the store holds all of the partition's
# points (stores that can start mid-log, e.g. rocks after Kafka retention, keep it)
COMPLETE_PREFIX = b"\x00C"
TOPIC_ID_KEY = b"\x00T"  # -> UTF-8 id of the topic the offsets belong to
# librdkafka's logical "beginning of the partition".
OFFSET_BEGINNING = -2

T = TypeVar("T")


def offset_key(partition: int) -> bytes:
    return OFFSET_PREFIX + u32(partition)


def complete_key(partition: int) -> bytes:
    return COMPLETE_PREFIX + u32(partition)


def applied_offsets(records: Sequence[Record[T]]) -> dict[bytes, bytes]:
    """Puts recording ``last offset + 1`` per partition of ``records``."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(r.offset, last.get(r.partition, -1))
    return {offset_key(p): u64(o + 1) for p, o in last.items()}


def start_from_db(db: Rdict, partition: int) -> StartPosition:
    raw = db.get(offset_key(partition))
    return StartPosition(offset=read_u64(raw) if raw is not None else OFFSET_BEGINNING)


def adopt_topic(db: Rdict, topic_id: str | None) -> bool:
    """Make the stored offsets belong to the topic with ``topic_id``; return True if
    offsets of a different topic (deleted and re-created under the same name, or a broker
    whose log was lost, as tansu's memory storage after a restart) were discarded.

    Their partitions' completeness times (:data:`COMPLETE_PREFIX`) are discarded with them.
    Discarding means the partition is replayed from the beginning, which is safe because
    apply is idempotent; keeping them would silently skip the new topic's first messages.
    ``None`` (a broker without topic ids) keeps whatever is stored.
    """
    if topic_id is None:
        return False
    stored = db.get(TOPIC_ID_KEY)
    if stored is not None and bytes(stored).decode() == topic_id:
        return False
    # Completeness times describe the old log too: they go with its offsets.
    stale = [
        key for prefix in (OFFSET_PREFIX, COMPLETE_PREFIX) for key, _ in scan_prefix(db, prefix)
    ]
    batch = WriteBatch(raw_mode=True)
    for key in stale:
        batch.delete(key)
    batch.put(TOPIC_ID_KEY, topic_id.encode())
    opts = WriteOptions()
    opts.sync = True
    db.write(batch, opts)
    return bool(stale) and stored is not None
