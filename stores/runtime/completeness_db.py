"""The RocksDB side of :mod:`stores.runtime.completeness`: a store's applied offsets and
completeness times as its database holds them (keys of stores/runtime/applied.py), read for
:class:`~stores.runtime.completeness.Completeness` and encoded for writing."""

from __future__ import annotations

from rocksdict import Rdict

from stores.runtime.applied import complete_key, offset_key
from stores.runtime.rocks import i64, read_i64, read_u64, write_sync


class DbStored:
    """:class:`stores.runtime.completeness.Stored` read from ``db``'s default family."""

    def __init__(self, db: Rdict) -> None:
        self._db = db

    def next_offset(self, partition: int) -> int:
        raw = self._db.get(offset_key(partition))
        return read_u64(raw) if raw is not None else 0

    def complete_from(self, partition: int) -> int | None:
        raw = self._db.get(complete_key(partition))
        return read_i64(bytes(raw)) if raw is not None else None

    def write_complete(self, partition: int, complete_from: int | None) -> None:
        """Record ``complete_from`` at once, synced (``None``: nothing to record)."""
        if complete_from is not None:
            write_sync(self._db, complete_puts({partition: complete_from}))


def complete_puts(complete: dict[int, int]) -> dict[bytes, bytes]:
    """Puts recording partition -> completeness time, for the batch of its first offsets."""
    return {complete_key(p): i64(lo) for p, lo in complete.items()}
