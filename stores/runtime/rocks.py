"""RocksDB helpers shared by the index stores (rocksdict in raw mode: bytes keys/values).

Key encodings keep byte order equal to numeric order: unsigned numbers are fixed-width
big-endian; signed ones (timestamps) have their sign bit flipped first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

from rocksdict import (
    BottommostLevelCompaction,
    CompactOptions,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63
#: RocksDB's informational LOG files kept per database: the current one and this many - 1
#: older (RocksDB's default is 1 000, one more at every open, forever).
KEEP_LOG_FILES = 3


class StoreLocked(RuntimeError):
    """The RocksDB directory is held by another process (two instances, one data dir)."""


def u32(n: int) -> bytes:
    return _U32.pack(n)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b: bytes) -> int:
    return int(_U64.unpack(b)[0])


def i64(n: int) -> bytes:
    """Signed int64 whose bytes sort like the numbers."""
    return _U64.pack((n + _SIGN) & 0xFFFFFFFFFFFFFFFF)


def read_i64(b: bytes) -> int:
    return int(_U64.unpack(b)[0]) - _SIGN


def common_options(opts: Options) -> Options:
    """What every RocksDB of ours sets on top of its own options: bounded LOG files."""
    opts.set_keep_log_file_num(KEEP_LOG_FILES)
    return opts


def index_options() -> Options:
    """The index stores' options: zstd on SST blocks (postings keys share long prefixes and
    roaring bitmaps of neighbouring buckets repeat: about 30 % smaller than RocksDB's
    default Snappy, docs/benchmarks.md)."""
    opts = common_options(Options(raw_mode=True))
    opts.create_if_missing(True)
    opts.set_compression_type(DBCompressionType.zstd())
    opts.set_bottommost_compression_type(DBCompressionType.zstd())
    return opts


def open_db(path: Path) -> Rdict:
    """Open (creating) a raw-mode RocksDB at ``path`` with :func:`index_options`.

    The options are passed for the default column family too: rocksdict otherwise takes a
    column family's options from the database's last OPTIONS file, so an existing database
    would keep the options it was created with (compression is per column family). SST
    blocks say how they are compressed, so files written with the older options stay
    readable and are rewritten with the new ones as compaction reaches them."""
    path.mkdir(parents=True, exist_ok=True)
    opts = index_options()
    try:
        return Rdict(str(path), opts, column_families={"default": index_options()})
    except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK file
        if "lock" in str(exc).lower():
            raise StoreLocked(f"{path} is in use by another process: {exc}") from exc
        raise


def compact_fully(db: Rdict) -> None:
    """Rewrite every key range of ``db`` into the last level, bottommost level included.

    A plain ``compact_range`` only moves a lone file down (a trivial move), so a flushed
    file keeps its per-key sequence numbers; rewriting it zeroes them, as RocksDB's own
    compactions eventually do to old data, which is what bytes-per-point figures are
    about (bench/peers)."""
    opts = CompactOptions()
    opts.set_bottommost_level_compaction(BottommostLevelCompaction.force())
    db.compact_range(None, None, opts)


def write_sync(db: Rdict, puts: dict[bytes, bytes]) -> None:
    """Write all ``puts`` atomically and fsync the WAL before returning."""
    if not puts:
        return
    batch = WriteBatch(raw_mode=True)
    for key, value in puts.items():
        batch.put(key, value)
    opts = WriteOptions()
    opts.sync = True
    db.write(batch, opts)


def scan_prefix(
    db: Rdict, prefix: bytes, start: bytes = b"", stop: bytes | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """Items whose key starts with ``prefix``, from ``prefix + start`` up to and including
    keys ``<= prefix + stop`` (compared on the part after the prefix)."""
    for raw_key, value in db.items(from_key=prefix + start):
        key = cast(bytes, raw_key)  # raw mode: keys are bytes
        if not key.startswith(prefix):
            return
        if stop is not None and key[len(prefix) :] > stop:
            return
        yield key, value


def get_many(db: Rdict, keys: Sequence[bytes]) -> list[bytes | None]:
    """Values of ``keys`` in order (``None`` where absent), in one multi-get."""
    if not keys:
        return []
    return cast(list[bytes | None], db.get(list(keys)))


def store_path(data_dir: Path, kind: str, instance_id: str | None) -> Path:
    """``data_dir/<kind>/<instance id or "default">``: stable across restarts."""
    return data_dir / kind / (instance_id or "default")
