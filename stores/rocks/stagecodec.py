"""Byte format and keys of staging chunks (docs/formats.md, "Staging chunk").

A staging chunk holds the accepted points of one partition from one consumer batch, as
they arrived (unsorted, unresolved): it is written in the same synced WriteBatch as the
applied offsets and deleted by the fold that moves its points into hour blocks. Its key is
derived from (partition, first offset of the batch), so a replay rewrites the same key.

Frame: a 16-byte little-endian header (version, kind, codec, n, base ts) and one zstd
frame over three columns (sid u64, ts - base u32 or i64, value f64). Compression here is
per chunk because the chunk is written once and read back only at start (or never).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import zstandard

from stores.runtime.rocks import u32, u64

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

STAGING_PREFIX = b"\x00S"  # + partition u32 + first offset u64, in the default family
VERSION = 1
KIND_STAGING = 4
TS32 = 0  # timestamps stored as u32 offsets from the base
TS64 = 1  # timestamps stored as i64 (range of the chunk >= 2**32 s)
_HEADER = struct.Struct("<BBBxIq")
_LEVEL = 1  # chunks are transient: speed over ratio (level 3 gains < 1 %)


class CorruptChunk(ValueError):
    """A stored staging chunk this reader cannot decode; the message says why."""


@dataclass(frozen=True, slots=True)
class ChunkKey:
    partition: int
    first_offset: int

    def encode(self) -> bytes:
        return STAGING_PREFIX + u32(self.partition) + u64(self.first_offset)

    @classmethod
    def decode(cls, key: bytes) -> ChunkKey:
        if len(key) != 14 or not key.startswith(STAGING_PREFIX):
            raise CorruptChunk(f"not a staging chunk key: {key!r}")
        p, o = struct.unpack(">IQ", key[2:])
        return cls(int(p), int(o))


def encode_chunk(sid: U64, ts: I64, value: F64) -> bytes:
    """One frame for the points (any order, duplicates allowed)."""
    n = int(sid.size)
    base = int(ts.min()) if n else 0
    rel = ts - base
    wide = bool(n) and int(rel.max()) >= 2**32
    ts_col = rel.astype("<i8") if wide else rel.astype("<u4")
    body = sid.astype("<u8").tobytes() + ts_col.tobytes() + value.astype("<f8").tobytes()
    header = _HEADER.pack(VERSION, KIND_STAGING, TS64 if wide else TS32, n, base)
    return header + zstandard.ZstdCompressor(level=_LEVEL).compress(body)


def decode_chunk(frame: bytes) -> tuple[U64, I64, F64]:
    """Inverse of :func:`encode_chunk`; :class:`CorruptChunk` on anything unreadable."""
    if len(frame) < _HEADER.size:
        raise CorruptChunk("staging chunk shorter than its header")
    version, kind, ts_codec, n, base = _HEADER.unpack_from(frame)
    if version != VERSION:
        raise CorruptChunk(f"unsupported staging chunk version {version}")
    if kind != KIND_STAGING or ts_codec not in (TS32, TS64):
        raise CorruptChunk(f"not a staging chunk (kind {kind}, ts codec {ts_codec})")
    ts_width = 8 if ts_codec == TS64 else 4
    size = n * (16 + ts_width)
    try:
        body = zstandard.ZstdDecompressor().decompress(frame[_HEADER.size :], max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CorruptChunk(f"staging chunk body: {exc}") from exc
    if len(body) != size:
        raise CorruptChunk(f"staging chunk body is {len(body)} bytes, expected {size}")
    buf = np.frombuffer(body, dtype=np.uint8)
    sid = buf[: 8 * n].view("<u8").astype(np.uint64)
    rel = buf[8 * n : (8 + ts_width) * n].view("<i8" if ts_width == 8 else "<u4")
    ts = rel.astype(np.int64) + base
    value = buf[(8 + ts_width) * n :].view("<f8").astype(np.float64)
    return sid, ts, value
