"""RocksDB helpers shared by the index stores (rocksdict in raw mode: bytes keys/values).

Key encodings keep byte order equal to numeric order: unsigned numbers are fixed-width
big-endian; signed ones (timestamps) have their sign bit flipped first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63


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


def open_db(path: Path) -> Rdict:
    """Open (creating) a raw-mode RocksDB at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    try:
        return Rdict(str(path), opts)
    except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK file
        if "lock" in str(exc).lower():
            raise StoreLocked(f"{path} is in use by another process: {exc}") from exc
        raise


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
