"""A sketch batch <-> one binary cell per row, each cell one sketch in the sketch encoding.

The archive's sketch objects hold one row per (sid, ts) with the sketch as a binary column
(docs/formats.md, "Archive sketch objects"). Every cell is exactly what
:func:`strata.sketch_codec.encode_sketch` writes for that row's sketch (version 1, kind 1:
header, sum/min/max, key stream, counts), so the cells carry the sketch format's own
version and any reader of that format reads them one by one.

Calling ``encode_sketch`` / ``decode_sketch`` per row costs ~250 µs / ~10 µs a row (about 30
small numpy calls each): hours for a day of compaction. So both directions here work on
every row at once — one numpy pass per field over all rows, no Python loop per row or bin —
following the layout in docs/formats.md. The two implementations cannot drift silently:
``tests/unit/test_archive_sketches_column.py`` checks every cell against the kernel's
encoder and decoder, and the golden object against both. Anything the fast decoder does
not accept (a cell of another version or other parameters, or a broken one) goes through
``decode_sketch`` row by row, which raises :class:`~strata.sketch_codec.UnreadableSketch`
naming what is wrong.

(This belongs beside ``decode_batches`` in ``strata/sketch_codec.py``; it lives here until
the kernel takes it, and uses only the documented format and the kernel's public API.)
"""

from __future__ import annotations

import itertools
import struct

import numpy as np
import numpy.typing as npt

from strata.arrays import exclusive_cumsum, part_sums, ranges
from strata.sketch import Bins, SketchBatch, SketchError, SketchParams
from strata.sketch_codec import (
    FLAG_FLOAT_COUNTS,
    KIND_SKETCH,
    MAGIC,
    MAPPING_LOGARITHMIC,
    VERSION,
    UnreadableSketch,
    decode_sketch,
)

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

_HEAD = struct.Struct("<2sBBBBdI")  # magic, version, kind, mapping, flags, accuracy, limit
_FIXED = _HEAD.size + 24  # header, then sum, min, max
_EXACT_INT = 2.0**53
_MAX_VARINT = 8  # the format never needs more bytes per varint
_LE_F64 = np.dtype("<f8")


# -- small vectorised helpers --------------------------------------------------------------


def _varint_sizes(z: U64) -> I64:
    sizes = np.ones(z.size, dtype=np.int64)
    for k in range(1, 10):
        more = z >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        sizes += more
    return sizes


def _varints(z: U64, sizes: I64) -> U8:
    """Unsigned LEB128 of every value, given each one's size (:func:`_varint_sizes`)."""
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    first = ends - sizes
    for k in range(int(sizes.max()) if sizes.size else 0):  # one pass per byte position
        sel = np.flatnonzero(sizes > k)
        low = (z[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        cont = np.where(sizes[sel] > k + 1, np.uint64(0x80), np.uint64(0))
        out[first[sel] + k] = (low | cont).astype(np.uint8)
    return out


def _unvarints(buf: U8) -> U64:
    """Every varint filling ``buf`` exactly; ValueError if one is cut or too long."""
    if buf.size == 0:
        return np.empty(0, dtype=np.uint64)
    last = buf < 0x80
    if not last[-1]:
        raise ValueError("truncated varint")
    ends = np.flatnonzero(last)
    lengths = np.diff(ends, prepend=-1)
    if lengths.max() > _MAX_VARINT:
        raise ValueError("overlong varint")
    # Most varints are one byte (key deltas, counts): take every varint's last byte, then
    # add the lower groups of the longer ones only, one pass per byte position.
    out = buf[ends].astype(np.uint64)
    multi = np.flatnonzero(lengths > 1)
    if multi.size:
        m_ends, m_len = ends[multi], lengths[multi]
        value = out[multi] << (7 * (m_len - 1)).astype(np.uint64)
        for k in range(1, int(m_len.max())):
            sel = np.flatnonzero(m_len > k)
            group = (buf[m_ends[sel] - k] & np.uint8(0x7F)).astype(np.uint64)
            value[sel] |= group << (7 * (m_len[sel] - 1 - k)).astype(np.uint64)
        out[multi] = value
    return out


def _key_deltas(b: Bins) -> U64:
    """Per sketch: the first key zigzagged, then ``k[i] - k[i-1] - 1``."""
    k = b.keys.astype(np.int64)
    prev = np.zeros_like(k)
    prev[1:] = k[:-1]
    out = (k - prev - 1).view(np.uint64)
    first = b.offsets[:-1][b.lengths > 0]
    out[first] = ((k[first] << 1) ^ (k[first] >> 63)).view(np.uint64)
    return out


def _per_row(
    offsets: I64,
    pl: I64,
    nl: I64,
    head: npt.ArrayLike,
    pos: npt.ArrayLike,
    neg: npt.ArrayLike,
    out: npt.NDArray[np.generic],
) -> None:
    """Fill ``out`` row by row with ``head`` (2 per row), then the row's ``pos`` and ``neg``
    values; ``offsets`` are the row starts in ``out``."""
    at = offsets[:-1]
    pair = np.asarray(head).reshape(2, -1)
    out[at] = pair[0]
    out[at + 1] = pair[1]
    out[ranges(at + 2, pl)] = pos
    out[ranges(at + 2 + pl, nl)] = neg


# -- encode ------------------------------------------------------------------------------


def encode_cells(batch: SketchBatch) -> tuple[I64, U8]:
    """Every row of ``batch`` as :func:`strata.sketch_codec.encode_sketch` encodes it: the
    cells' start offsets (n + 1, the first 0) and their concatenated bytes."""
    n = len(batch)
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.uint8)
    pl, nl = batch.pos.lengths, batch.neg.lengths
    seg = 2 + pl + nl  # values per row in the key stream and in the counts
    seg_at = exclusive_cumsum(seg)
    # Key stream per row: pos_len, neg_len, the positive then the negative key deltas.
    keys = np.empty(int(seg_at[-1]), dtype=np.uint64)
    head = np.concatenate((pl, nl)).astype(np.uint64)
    _per_row(seg_at, pl, nl, head, _key_deltas(batch.pos), _key_deltas(batch.neg), keys)
    key_sizes = _varint_sizes(keys)
    key_bytes = _varints(keys, key_sizes)
    k_len = part_sums(key_sizes, seg)  # bytes of each row's key stream
    klen_sizes = _varint_sizes(k_len.astype(np.uint64))
    klen_bytes = _varints(k_len.astype(np.uint64), klen_sizes)
    # Counts per row: count, zero count, positive then negative bin counts; varints when
    # every one of the row's counts is an integer below 2**53, else f64 (as encode_sketch).
    counts = np.empty(int(seg_at[-1]), dtype=np.float64)
    _per_row(
        seg_at,
        pl,
        nl,
        np.concatenate((batch.count, batch.zero_count)),
        batch.pos.counts,
        batch.neg.counts,
        counts,
    )
    whole = (counts == np.floor(counts)) & (counts >= 0) & (counts < _EXACT_INT)
    exact = part_sums(~whole, seg) == 0
    as_int = np.repeat(exact, seg)
    int_values = counts[as_int].astype(np.uint64)
    int_sizes = _varint_sizes(int_values)
    int_bytes = _varints(int_values, int_sizes)
    float_bytes = counts[~as_int].astype(_LE_F64).view(np.uint8)
    c_len = np.zeros(n, dtype=np.int64)
    c_len[exact] = part_sums(int_sizes, seg[exact])
    c_len[~exact] = 8 * seg[~exact]
    # Every piece of every cell lives in one source buffer; one gather assembles the cells.
    heads = b"".join(
        _HEAD.pack(
            MAGIC,
            VERSION,
            KIND_SKETCH,
            MAPPING_LOGARITHMIC,
            flags,
            batch.params.relative_accuracy,
            batch.params.bin_limit,
        )
        for flags in (0, FLAG_FLOAT_COUNTS)
    )
    stats = np.stack((batch.sum, batch.min, batch.max), axis=1).astype(_LE_F64).view(np.uint8)
    parts = [np.frombuffer(heads, np.uint8), stats.ravel(), klen_bytes, key_bytes]
    parts += [int_bytes, float_bytes]
    base = exclusive_cumsum(np.array([p.size for p in parts], dtype=np.int64))
    c_start = np.zeros(n, dtype=np.int64)
    c_start[exact] = base[4] + exclusive_cumsum(c_len[exact])[:-1]
    c_start[~exact] = base[5] + exclusive_cumsum(c_len[~exact])[:-1]
    starts = np.stack(
        (
            np.where(exact, 0, _HEAD.size),
            base[1] + 24 * np.arange(n, dtype=np.int64),
            base[2] + exclusive_cumsum(klen_sizes)[:-1],
            base[3] + exclusive_cumsum(k_len)[:-1],
            c_start,
        ),
        axis=1,
    )
    lengths = np.stack((np.full(n, _HEAD.size), np.full(n, 24), klen_sizes, k_len, c_len), axis=1)
    source = np.concatenate(parts)
    data = source[ranges(starts.ravel(), lengths.ravel().astype(np.int64))]
    return exclusive_cumsum(lengths.sum(axis=1).astype(np.int64)), data


# -- decode ------------------------------------------------------------------------------


class _Slow(Exception):
    """The fast path cannot take these cells: decode them one by one."""


def decode_cells(
    offsets: I64, data: U8, sid: U64, ts: I64, params: SketchParams | None = None
) -> SketchBatch:
    """The batch whose row ``i`` is the sketch in ``data[offsets[i]:offsets[i+1]]``,
    labelled ``sid[i], ts[i]``, in ``params`` (default: the cells' own, which must then
    agree). Raises :class:`UnreadableSketch` for a cell the sketch format refuses."""
    n = int(offsets.size - 1)
    if n <= 0:
        return SketchBatch.empty(params or SketchParams())
    try:
        batch = _decode_fast(offsets.astype(np.int64), data, sid, ts)
    except _Slow:
        batch = _decode_each(offsets, data, sid, ts, params)
    return batch if params is None else batch.convert(params)


def _decode_each(
    offsets: I64, data: U8, sid: U64, ts: I64, params: SketchParams | None
) -> SketchBatch:
    raw = data.tobytes()
    bounds = offsets.tolist()
    sketches = [decode_sketch(raw[a:b]) for a, b in itertools.pairwise(bounds)]
    target = params or sketches[0].params
    return SketchBatch.from_sketches(sid, ts, [s.convert(target) for s in sketches])


def _gather(data: U8, starts: I64, width: int) -> U8:
    """The ``width`` bytes from each start, one row each."""
    out: U8 = data[starts[:, None] + np.arange(width, dtype=np.int64)]
    return out


def _decode_fast(offsets: I64, data: U8, sid: U64, ts: I64) -> SketchBatch:
    start, end = offsets[:-1], offsets[1:]
    if (end - start < _FIXED + 1).any() or int(end[-1]) > data.size:
        raise _Slow
    head = _gather(data, start, _HEAD.size)
    want = np.frombuffer(MAGIC + bytes([VERSION, KIND_SKETCH, MAPPING_LOGARITHMIC]), np.uint8)
    flags = head[:, 5]
    if (head[:, :5] != want).any() or (flags & ~np.uint8(FLAG_FLOAT_COUNTS)).any():
        raise _Slow
    accuracy = np.ascontiguousarray(head[:, 6:14]).view(_LE_F64).ravel()
    limit = np.ascontiguousarray(head[:, 14:18]).view("<u4").ravel()
    if (accuracy != accuracy[0]).any() or (limit != limit[0]).any():
        raise _Slow  # several parameters: each cell converted by the slow path
    try:
        params = SketchParams(float(accuracy[0]), int(limit[0]))
    except SketchError:
        raise _Slow from None
    stats = np.ascontiguousarray(_gather(data, start + _HEAD.size, 24)).view(_LE_F64)
    vsum, vmin, vmax = (stats[:, i].astype(np.float64) for i in range(3))
    # K: the byte length of the key stream, a varint of at most 8 bytes after the stats.
    width = np.minimum(_MAX_VARINT, end - start - _FIXED)
    at = start + _FIXED
    probe = data[np.minimum(at[:, None] + np.arange(_MAX_VARINT), data.size - 1)]
    done = (probe < 0x80) & (np.arange(_MAX_VARINT) < width[:, None])
    if not done.any(axis=1).all():
        raise _Slow
    k_size = np.argmax(done, axis=1) + 1
    groups = (probe & np.uint8(0x7F)).astype(np.uint64) << (
        np.uint64(7) * np.arange(_MAX_VARINT, dtype=np.uint64)
    )
    groups[np.arange(_MAX_VARINT) >= k_size[:, None]] = 0
    k_len = groups.sum(axis=1, dtype=np.uint64).astype(np.int64)
    k_start = at + k_size
    c_start = k_start + k_len
    if (k_len < 2).any() or (c_start > end).any():
        raise _Slow
    key_buf = data[ranges(k_start, k_len)]
    if (data[c_start - 1] >= 0x80).any():
        raise _Slow  # a row's key stream ends inside a varint
    try:
        keys = _unvarints(key_buf)
    except ValueError:
        raise _Slow from None
    per_row = part_sums(key_buf < 0x80, k_len)
    key_at = exclusive_cumsum(per_row)[:-1]
    if (keys[key_at] > np.uint64(1 << 32)).any() or (keys[key_at + 1] > np.uint64(1 << 32)).any():
        raise _Slow
    pl = keys[key_at].astype(np.int64)
    nl = keys[key_at + 1].astype(np.int64)
    seg = 2 + pl + nl
    if not np.array_equal(per_row, seg):
        raise _Slow
    pos_deltas = keys[ranges(key_at + 2, pl)]
    neg_deltas = keys[ranges(key_at + 2 + pl, nl)]
    counts = _counts(data, c_start, end, flags != 0, seg)
    seg_at = exclusive_cumsum(seg)[:-1]
    count, zero = counts[seg_at], counts[seg_at + 1]
    pos = _bins(pl, pos_deltas, counts[ranges(seg_at + 2, pl)], params)
    neg = _bins(nl, neg_deltas, counts[ranges(seg_at + 2 + pl, nl)], params)
    if not (np.isfinite(count).all() and np.isfinite(zero).all()):
        raise _Slow
    if (count < 0).any() or (zero < 0).any():
        raise _Slow
    total = zero + pos.totals() + neg.totals()
    tolerance = np.where(flags != 0, 1e-9 * np.maximum(count, 1.0), 0.0)
    if (np.abs(count - total) > tolerance).any():
        raise _Slow
    live = count > 0
    if not all(np.isfinite(x[live]).all() for x in (vsum, vmin, vmax)):
        raise _Slow
    if (vmin[live] > vmax[live]).any():
        raise _Slow
    return SketchBatch(
        params,
        np.asarray(sid, dtype=np.uint64).copy(),
        np.asarray(ts, dtype=np.int64).copy(),
        count,
        zero,
        vsum,
        vmin,
        vmax,
        pos,
        neg,
    )


def _counts(data: U8, c_start: I64, end: I64, floats: npt.NDArray[np.bool_], seg: I64) -> F64:
    """Every row's counts (count, zero, bin counts) in row order, from varints or f64."""
    c_len = end - c_start
    out = np.empty(int(seg.sum()), dtype=np.float64)
    seg_at = exclusive_cumsum(seg)[:-1]
    ints = ~floats
    if ints.any():
        buf = data[ranges(c_start[ints], c_len[ints])]
        if (c_len[ints] < 1).any() or (data[end[ints] - 1] >= 0x80).any():
            raise _Slow
        try:
            values = _unvarints(buf)
        except ValueError:
            raise _Slow from None
        if not np.array_equal(part_sums(buf < 0x80, c_len[ints]), seg[ints]):
            raise _Slow
        if (values >= np.uint64(1 << 53)).any():
            raise _Slow
        out[ranges(seg_at[ints], seg[ints])] = values.astype(np.float64)
    if floats.any():
        if not np.array_equal(c_len[floats], 8 * seg[floats]):
            raise _Slow
        raw = data[ranges(c_start[floats], c_len[floats])]
        out[ranges(seg_at[floats], seg[floats])] = raw.view(_LE_F64).astype(np.float64)
    return out


def _bins(lengths: I64, deltas: U64, counts: F64, params: SketchParams) -> Bins:
    """Bins from per-row key deltas (first key zigzagged), checked like the kernel does."""
    if (deltas >= np.uint64(1 << 33)).any():
        raise _Slow
    if counts.size and not (np.isfinite(counts).all() and (counts > 0).all()):
        raise _Slow
    offsets = exclusive_cumsum(lengths)
    filled = np.flatnonzero(lengths)
    first = offsets[filled]
    step = deltas.view(np.int64) + 1
    z = deltas[first]
    step[first] = (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)
    run = np.cumsum(step)
    keys = run - np.repeat((run - step)[first], lengths[filled])
    if keys.size:
        if keys.min() < -(2**31) or keys.max() >= 2**31:
            raise _Slow
        last = offsets[filled + 1] - 1
        if (keys[last] - keys[first] >= params.bin_limit).any():
            raise _Slow
    return Bins(offsets, keys.astype(np.int32), counts)


__all__ = ["UnreadableSketch", "decode_cells", "encode_cells"]
