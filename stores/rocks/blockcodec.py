"""Byte format of raw point blocks and rollup records (docs/formats.md), many at once.

A *raw block* holds the resolved points of one series in one hour; a *rollup record* holds
the 1-minute rows of one (series, hour) or the 1-hour rows of one (series, day). Both are
"frames": a fixed little-endian header starting with the format version and the frame
kind, then column streams. Encoding and decoding take and return whole columns for many
frames, so a batch costs a fixed number of numpy passes plus one slice per frame.

Compression split: this codec removes the structure (delta-of-delta timestamps, decimal
scaling or XOR of values); RocksDB's zstd on SST blocks does the entropy coding over
thousands of points at a time (docs/formats.md justifies this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stores.rocks.columns import (
    F64,
    I64,
    U8,
    CorruptColumn,
    cumsum_in_group,
    decode_floats,
    diff_in_group,
    encode_floats,
    group_heads,
    group_ids,
    group_starts,
    ranges,
    unzigzag,
    varint_decode,
    varint_encode,
    zigzag,
)
from strata.arrays import part_sums
from strata.rollup import HOUR, MINUTE

VERSION = 1
KIND_RAW = 1
KIND_MINUTES = 2  # 1-minute rollup rows of one hour
KIND_HOURS = 3  # 1-hour rollup rows of one day
RAW_HEADER = 8
ROLLUP_HEADER = 24
MAX_ROWS = 0xFFFF
#: Rows encoded per pass. Every step of the encoders is a numpy pass over all rows, with
#: temporaries; a batch of a few hundred thousand points makes them megabytes each and the
#: passes run at memory speed. In runs of whole groups of about this many rows they stay
#: in the core's cache (measured in docs/rocks.md), and the frames come out the same.
CHUNK_ROWS = 16_384


class CorruptBlock(ValueError):
    """A stored frame this reader cannot decode; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Points:
    """Decoded raw blocks: rows of block i are ``counts[i]`` consecutive rows, ts sorted."""

    counts: I64
    ts: I64
    value: F64


@dataclass(frozen=True, slots=True)
class RollupRows:
    """Decoded rollup records, rows of record i consecutive (``counts[i]`` of them)."""

    counts: I64
    bucket: I64
    count: I64
    sum: F64
    min: F64
    max: F64
    last: F64
    last_ts: I64


def _le16(x: I64) -> U8:
    return x.astype("<u2").view(np.uint8).reshape(-1, 2)


def _read16(h: U8, at: int) -> I64:
    return h[:, at].astype(np.int64) | (h[:, at + 1].astype(np.int64) << 8)


def _assemble(header: U8, parts: Sequence[tuple[U8, I64]]) -> list[bytes]:
    """Frame i = ``header[i]`` followed by part k's bytes of frame i, for every part."""
    groups, hsize = header.shape
    sizes = np.full(groups, hsize, dtype=np.int64)
    for _, lens in parts:
        sizes += lens
    offs = group_starts(sizes)
    buf = np.empty(int(sizes.sum()), dtype=np.uint8)
    buf[(offs[:, None] + np.arange(hsize)[None, :]).ravel()] = header.ravel()
    cursor = offs + hsize
    for data, lens in parts:
        buf[ranges(cursor, lens)] = data
        cursor = cursor + lens
    raw = buf.tobytes()
    ends = (offs + sizes).tolist()
    return [raw[a:b] for a, b in zip(offs.tolist(), ends, strict=True)]


def _split(frames: Sequence[bytes], hsize: int, kinds: tuple[int, ...]) -> tuple[U8, U8, I64, I64]:
    """(all bytes, headers (n, hsize), body start, frame size) of stored frames."""
    sizes = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
    if np.any(sizes < hsize):
        raise CorruptBlock(f"frame shorter than its {hsize}-byte header")
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    offs = group_starts(sizes)
    header = buf[offs[:, None] + np.arange(hsize)[None, :]]
    if len(frames) and np.any(header[:, 0] != VERSION):
        raise CorruptBlock(f"unsupported block format version {int(header[:, 0].max())}")
    if len(frames) and not np.isin(header[:, 1], kinds).all():
        raise CorruptBlock(f"unexpected frame kind, expected one of {kinds}")
    return buf, header, offs + hsize, sizes


def _chunks(counts: I64) -> list[tuple[slice, slice]]:
    """(groups, rows) slices cutting groups of ``counts`` rows into runs of about
    :data:`CHUNK_ROWS` rows, whole groups each."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    if total <= CHUNK_ROWS:
        return [(slice(None), slice(None))]
    cuts = np.searchsorted(ends, np.arange(CHUNK_ROWS, total, CHUNK_ROWS), side="right")
    groups = [0, *np.unique(cuts[(cuts > 0) & (cuts < counts.size)]).tolist(), counts.size]
    rows = [0, *ends[np.array(groups[1:-1], dtype=np.intp) - 1].tolist(), total]
    return [
        (slice(groups[i], groups[i + 1]), slice(rows[i], rows[i + 1]))
        for i in range(len(groups) - 1)
    ]


def encode_blocks(ts: I64, value: F64, counts: I64, block_start: I64) -> list[bytes]:
    """Raw blocks for groups of ``counts`` rows each (ts strictly increasing inside a
    group, all in ``[block_start, block_start + 1 h)``)."""
    if np.any(counts > MAX_ROWS):
        raise ValueError(f"a block holds at most {MAX_ROWS} points")
    out: list[bytes] = []
    for g, r in _chunks(counts):
        out += _encode_blocks(ts[r], value[r], counts[g], block_start[g])
    return out


def _encode_blocks(ts: I64, value: F64, counts: I64, block_start: I64) -> list[bytes]:
    # Deltas of deltas of the offsets from the block start; the start cancels out of every
    # difference, so it is subtracted from each group's first row alone.
    first = group_heads(counts, 1)
    dod = diff_in_group(diff_in_group(ts, first), group_heads(counts, 2))
    dod[first] = ts[first] - block_start[counts > 0]
    ts_bytes, ts_nb = varint_encode(zigzag(dod))
    ts_len = part_sums(ts_nb, counts)
    v_bytes, v_len, codec, scale = encode_floats(value, counts)
    header = np.empty((counts.size, RAW_HEADER), dtype=np.uint8)
    header[:, 0] = VERSION
    header[:, 1] = KIND_RAW
    header[:, 2:4] = _le16(counts)
    header[:, 4:6] = _le16(ts_len)
    header[:, 6] = codec
    header[:, 7] = scale
    return _assemble(header, [(ts_bytes, ts_len), (v_bytes, v_len)])


def block_sizes(frames: Sequence[bytes | None]) -> I64:
    """Points held by each stored raw block (0 for ``None``), read from the headers only."""
    out = np.zeros(len(frames), dtype=np.int64)
    idx = [i for i, f in enumerate(frames) if f is not None]
    if idx:
        _, header, _, _ = _split([frames[i] for i in idx], RAW_HEADER, (KIND_RAW,))  # type: ignore[misc]
        out[idx] = _read16(header, 2)
    return out


def decode_blocks(frames: Sequence[bytes], block_start: I64) -> Points:
    """Inverse of :func:`encode_blocks`; :class:`CorruptBlock` on anything unreadable."""
    try:
        buf, header, body, sizes = _split(frames, RAW_HEADER, (KIND_RAW,))
        counts = _read16(header, 2)
        ts_len = _read16(header, 4)
        v_len = sizes - RAW_HEADER - ts_len
        if np.any(v_len < 0):
            raise CorruptBlock("timestamp stream runs past the end of the block")
        parts = [
            _decode_raw(buf, header[g], body[g], ts_len[g], v_len[g], counts[g], block_start[g])
            for g, _ in _chunks(counts)
        ]
    except CorruptColumn as exc:
        raise CorruptBlock(str(exc)) from exc
    if len(parts) == 1:
        return Points(counts, *parts[0])
    return Points(
        counts, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )


def _decode_raw(
    buf: U8, header: U8, body: I64, ts_len: I64, v_len: I64, counts: I64, block_start: I64
) -> tuple[I64, F64]:
    """Timestamps and values of some whole blocks of ``buf`` (:func:`decode_blocks`)."""
    gid = group_ids(counts)
    starts = group_starts(counts)
    dod = unzigzag(varint_decode(buf[ranges(body, ts_len)], int(counts.sum())))
    pos = np.arange(dod.size, dtype=np.int64) - starts[gid]
    x0 = dod[starts[counts > 0]]
    first = np.zeros(counts.size, dtype=np.int64)
    first[counts > 0] = x0
    step = np.where(pos == 0, 0, dod)
    delta = cumsum_in_group(step, gid, starts)
    x = first[gid] + cumsum_in_group(np.where(pos == 0, 0, delta), gid, starts)
    value = decode_floats(
        buf[ranges(body + ts_len, v_len)], v_len, counts, header[:, 6], header[:, 7]
    )
    return x + block_start[gid], value


def encode_rollups(rows: RollupRows, base: I64, kind: int) -> list[bytes]:
    """Rollup records: record i holds ``rows.counts[i]`` rows whose buckets lie in
    ``[base[i], base[i] + span)`` (span 1 h for minute rows, 1 day for hour rows)."""
    out: list[bytes] = []
    for g, r in _chunks(rows.counts):
        part = RollupRows(
            rows.counts[g],
            rows.bucket[r],
            rows.count[r],
            rows.sum[r],
            rows.min[r],
            rows.max[r],
            rows.last[r],
            rows.last_ts[r],
        )
        out += _encode_rollups(part, base[g], kind)
    return out


def _encode_rollups(rows: RollupRows, base: I64, kind: int) -> list[bytes]:
    step = MINUTE if kind == KIND_MINUTES else HOUR
    counts = rows.counts
    gid = group_ids(counts)
    idx = ((rows.bucket - base[gid]) // step).astype(np.uint8)
    cnt_bytes, cnt_nb = varint_encode(rows.count.astype(np.uint64))
    off_bytes, off_nb = varint_encode((rows.last_ts - rows.bucket).astype(np.uint64))
    groups = counts.size
    header = np.empty((groups, ROLLUP_HEADER), dtype=np.uint8)
    header[:, 0] = VERSION
    header[:, 1] = kind
    header[:, 2:4] = _le16(counts)
    cnt_len = part_sums(cnt_nb, counts)
    off_len = part_sums(off_nb, counts)
    header[:, 4:6] = _le16(cnt_len)
    header[:, 6:8] = _le16(off_len)
    parts: list[tuple[U8, I64]] = [(idx, counts), (cnt_bytes, cnt_len), (off_bytes, off_len)]
    for k, col in enumerate((rows.sum, rows.min, rows.max, rows.last)):
        data, lens, codec, scale = encode_floats(col, counts)
        at = 8 + 4 * k
        header[:, at] = codec
        header[:, at + 1] = scale
        header[:, at + 2 : at + 4] = _le16(lens)
        parts.append((data, lens))
    return _assemble(header, parts)


def decode_rollups(frames: Sequence[bytes], base: I64) -> RollupRows:
    """Inverse of :func:`encode_rollups` (minute and hour records may be mixed)."""
    try:
        buf, header, body, sizes = _split(frames, ROLLUP_HEADER, (KIND_MINUTES, KIND_HOURS))
        counts = _read16(header, 2)
        n = int(counts.sum())
        gid = group_ids(counts)
        step = np.where(header[:, 1] == KIND_MINUTES, MINUTE, HOUR).astype(np.int64)
        lens = [counts, _read16(header, 4), _read16(header, 6)]
        lens += [_read16(header, 8 + 4 * k + 2) for k in range(4)]
        total = ROLLUP_HEADER + sum(lens)
        if np.any(total != sizes):
            raise CorruptBlock("rollup record length does not match its header")
        cursor = body
        streams = []
        for ln in lens:
            streams.append(buf[ranges(cursor, ln)])
            cursor = cursor + ln
        bucket = base[gid] + streams[0].astype(np.int64) * step[gid]
        count = varint_decode(streams[1], n).astype(np.int64)
        last_ts = bucket + varint_decode(streams[2], n).astype(np.int64)
        floats = [
            decode_floats(
                streams[3 + k],
                lens[3 + k],
                counts,
                header[:, 8 + 4 * k],
                header[:, 9 + 4 * k],
            )
            for k in range(4)
        ]
    except CorruptColumn as exc:
        raise CorruptBlock(str(exc)) from exc
    return RollupRows(counts, bucket, count, floats[0], floats[1], floats[2], floats[3], last_ts)
