"""Day shards: one RocksDB, one column family per UTC day, retention by dropping them.

Dropping a whole column family is cheap (its SST files are deleted, nothing is rewritten),
so retention never competes with ingest the way per-key deletes and compactions would.
All shards live in one DB so a single WriteBatch can cover several days' blocks *and* the
applied offsets in the ``default`` family atomically.

Thread safety: the consumer thread writes, creates and drops shards; HTTP threads read.
Creating and dropping take :attr:`lock`, and readers hold it for the whole read, so a
shard never disappears under a reader (reads are short: a multi-get per shard).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from rocksdict import DBCompressionType, Options, Rdict, WriteBatch, WriteOptions

from stores.rocks import layout
from stores.runtime.rocks import StoreLocked, common_options, compact_fully

log = logging.getLogger(__name__)


def _options() -> Options:
    opts = common_options(Options(raw_mode=True))
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # zstd on SST blocks is the entropy coder of our block codec (docs/formats.md).
    opts.set_compression_type(DBCompressionType.zstd())
    opts.set_bottommost_compression_type(DBCompressionType.zstd())
    # One memtable per day shard: keep them small, most of them are cold.
    opts.set_write_buffer_size(16 << 20)
    return opts


class DayShards:
    """The shard set of one store instance (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._opts = _options()
        names: list[str] = []
        if (path / "CURRENT").exists():
            names = [n for n in Rdict.list_cf(str(path), self._opts) if layout.is_shard(n)]
        try:
            self.db = Rdict(str(path), self._opts, column_families={n: _options() for n in names})
        except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK file
            if "lock" in str(exc).lower():
                raise StoreLocked(f"{path} is in use by another process: {exc}") from exc
            raise
        self.lock = threading.RLock()
        self._shards: dict[int, Rdict] = {
            layout.shard_day(n): self.db.get_column_family(n) for n in names
        }
        self._handles: dict[int, Any] = {
            day: self.db.get_column_family_handle(layout.shard_name(day)) for day in self._shards
        }

    def days(self) -> list[int]:
        with self.lock:
            return sorted(self._shards)

    def _handle(self, day: int) -> Any:
        with self.lock:
            if day not in self._shards:
                name = layout.shard_name(day)
                self._shards[day] = self.db.create_column_family(name, _options())
                self._handles[day] = self.db.get_column_family_handle(name)
            return self._handles[day]

    def get_many(self, day: int, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of ``keys`` in the shard of ``day`` (all ``None`` if it does not exist).
        Callers reading several shards hold :attr:`lock` around the whole read."""
        if not keys:
            return []
        with self.lock:
            shard = self._shards.get(day)
            if shard is None:
                return [None] * len(keys)
            return cast(list[bytes | None], shard.get(list(keys)))

    def write(
        self,
        shard_puts: dict[int, list[tuple[bytes, bytes]]],
        default_puts: dict[bytes, bytes],
        default_deletes: Sequence[bytes] = (),
    ) -> None:
        """Everything in one atomic WriteBatch, WAL fsynced before returning."""
        batch = WriteBatch(raw_mode=True)
        for key in default_deletes:
            batch.delete(key)
        for day, items in shard_puts.items():
            handle = self._handle(day)
            for key, value in items:
                batch.put(key, value, handle)
        for key, value in default_puts.items():
            batch.put(key, value)
        opts = WriteOptions()
        opts.sync = True
        self.db.write(batch, opts)

    def drop_before(self, day: int) -> list[int]:
        """Drop every shard older than ``day``; return the dropped days."""
        with self.lock:
            old = [d for d in self._shards if d < day]
            for d in old:
                del self._handles[d]
                del self._shards[d]
                self.db.drop_column_family(layout.shard_name(d))
        if old:
            log.info("retention dropped day shards %s", [layout.shard_name(d) for d in old])
        return sorted(old)

    def flush(self) -> None:
        """Flush every memtable to SST files (benchmarks measure bytes on disk after it)."""
        with self.lock:
            for shard in self._shards.values():
                shard.flush(wait=True)
            self.db.flush(wait=True)

    def compact(self) -> None:
        with self.lock:
            for shard in self._shards.values():
                compact_fully(shard)

    def close(self) -> None:
        with self.lock:
            self._handles.clear()
            self._shards.clear()
            self.db.close()
