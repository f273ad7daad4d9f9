"""Vectorised column primitives of the rocks block codec (pure numpy, no I/O).

Everything here works on many *groups* (blocks or rollup records) at once: a group is a
run of consecutive rows, described by per-group row counts. No function loops over points
in Python; the few loops that exist run over a fixed small number of byte positions or
decimal scales. The byte layouts these produce are specified in docs/formats.md.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from strata.arrays import part_sums

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Idx = npt.NDArray[np.intp]

#: largest decimal scale tried for the decimal value codec (10**e is exact up to e = 22)
MAX_SCALE = 12
POW10 = np.array([10.0**e for e in range(MAX_SCALE + 1)], dtype=np.float64)
#: integers above this magnitude are not all exactly representable as float64
_EXACT_INT = float(2**53)

CODEC_DECIMAL = 0
CODEC_XOR = 1


class CorruptColumn(ValueError):
    """A column stream that does not decode (truncated, overlong or inconsistent)."""


def group_ids(counts: I64) -> Idx:
    """Group number of every row, for groups of ``counts`` consecutive rows."""
    return np.repeat(np.arange(counts.size), counts)


def group_starts(counts: I64) -> I64:
    starts = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def ranges(starts: I64, lengths: I64) -> Idx:
    """Concatenated ``arange(s, s + n)`` for every (s, n) pair, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.intp)
    gid = group_ids(lengths)
    inner = np.arange(total, dtype=np.int64) - group_starts(lengths)[gid]
    return (starts[gid] + inner).astype(np.intp)


def group_heads(counts: I64, skip: int) -> Idx:
    """Rows at positions ``0 .. skip-1`` of their group (those a group has)."""
    starts = group_starts(counts)
    return np.concatenate([starts[counts > k] + k for k in range(skip)]).astype(np.intp)


def diff_in_group(x: I64, heads: Idx) -> I64:
    """``x[i] - x[i-1]``, except ``x[i]`` itself at the rows ``heads``: with
    :func:`group_heads` ``(counts, k)``, ``x - shift_in_group(x, pos, k)`` without the
    per-row positions, the zeroed copy and the mask over every row."""
    d = np.empty_like(x)
    if x.size:
        d[0] = x[0]
        np.subtract(x[1:], x[:-1], out=d[1:])
        d[heads] = x[heads]
    return d


def zigzag(x: I64) -> U64:
    z = np.left_shift(x, 1)
    z ^= x >> 63  # in place: one temporary fewer over a column of every point
    return z.view(np.uint64)


def unzigzag(z: U64) -> I64:
    return ((z >> np.uint64(1)).view(np.int64)) ^ -((z & np.uint64(1)).view(np.int64))


def varint_encode(z: U64) -> tuple[U8, I64]:
    """LEB128 bytes of every value (7 bits per byte, high bit = more follows) and the
    number of bytes each value took."""
    nbytes = np.ones(z.size, dtype=np.int64)
    if not (z >= np.uint64(0x80)).any():  # common: regular timestamps, small counts
        return z.astype(np.uint8), nbytes
    for k in range(1, 10):
        more = z >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        nbytes += more
    ends = np.cumsum(nbytes)
    first = ends - nbytes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    multi = np.flatnonzero(nbytes > 1)
    if 2 * multi.size > z.size:
        for k in range(int(nbytes.max())):
            sel = nbytes > k
            part = (z[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
            cont = np.where(nbytes[sel] - 1 > k, np.uint64(0x80), np.uint64(0))
            out[first[sel] + k] = (part | cont).astype(np.uint8)
        return out, nbytes
    # Mostly one-byte values (timestamp deltas of deltas, small value deltas): every value's
    # first byte in one pass, then the further bytes of the few longer ones, instead of
    # selecting among all values at every byte position.
    low = (z & np.uint64(0x7F)).astype(np.uint8)
    low[multi] |= np.uint8(0x80)
    out[first] = low
    zm, nm, fm = z[multi], nbytes[multi], first[multi]
    for k in range(1, int(nm.max())):
        sel = nm > k
        part = ((zm[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        part[nm[sel] - 1 > k] |= np.uint8(0x80)
        out[fm[sel] + k] = part
    return out, nbytes


def varint_decode(buf: U8, count: int) -> U64:
    """Exactly ``count`` LEB128 values filling ``buf``; :class:`CorruptColumn` otherwise."""
    if buf.size == 0:
        if count:
            raise CorruptColumn(f"expected {count} varints, got no bytes")
        return np.empty(0, dtype=np.uint64)
    last = buf < 0x80
    ends = np.flatnonzero(last)
    if ends.size != count or not last[-1]:
        raise CorruptColumn(f"expected {count} varints, found {ends.size} (or a truncated one)")
    lengths = np.diff(ends, prepend=-1)
    if lengths.max() > 10:
        raise CorruptColumn("varint longer than 10 bytes")
    starts = ends - lengths + 1
    shift = (np.arange(buf.size) - np.repeat(starts, lengths)) * 7
    contrib = (buf & np.uint8(0x7F)).astype(np.uint64) << shift.astype(np.uint64)
    return np.add.reduceat(contrib, starts)


def shift_in_group(x: I64, pos: I64, skip: int) -> I64:
    """``x[i-1]`` where row i is at position >= ``skip`` in its group, else 0."""
    prev = np.zeros_like(x)
    prev[1:] = x[:-1]
    prev[pos < skip] = 0
    return prev


def cumsum_in_group(x: I64, gid: Idx, starts: I64) -> I64:
    """Running sum restarting at every group."""
    c = np.cumsum(x)
    if c.size == 0:
        return c
    at = np.minimum(starts, c.size - 1)  # empty groups own no rows: any index will do
    base = c[at] - x[at]
    return c - base[gid]


def decimal_scales(v: F64, counts: I64) -> npt.NDArray[np.int16]:
    """Per group: the smallest e <= MAX_SCALE such that every value is exactly
    ``rint(v * 10**e) / 10**e`` (bit for bit) with an integer below 2**53 and no value is
    -0.0; -1 where there is none."""
    # Integral values everywhere (counts, bytes, integer gauges, and their rollups) are
    # scale 0 in every group: one pass instead of the search below. ``rint(x) == x``
    # holds for exactly the finite integral values, as the search's bit test at e = 0
    # does; -0.0 compares equal to 0.0, so it is excluded apart as there.
    if (
        v.size
        and (np.rint(v) == v).all()
        and (np.abs(v) < _EXACT_INT).all()
        and not ((v == 0) & np.signbit(v)).any()
    ):
        return np.zeros(counts.size, dtype=np.int16)
    return _searched_scales(v, counts)


def _searched_scales(v: F64, counts: I64) -> npt.NDArray[np.int16]:
    """:func:`decimal_scales` by trying every scale from 0 up, value by value."""
    gid = group_ids(counts)
    best = np.full(v.size, -1, dtype=np.int16)
    # -0.0 would come back as the integer 0, i.e. +0.0: it needs the XOR codec.
    negative_zero = (v == 0) & np.signbit(v)
    todo = np.flatnonzero((np.abs(v) < _EXACT_INT) & ~negative_zero)
    bits = v.view(np.uint64)
    for e in range(MAX_SCALE + 1):
        if todo.size == 0:
            break
        m = np.rint(v[todo] * POW10[e])
        ok = (np.abs(m) < _EXACT_INT) & ((m / POW10[e]).view(np.uint64) == bits[todo])
        best[todo[ok]] = e
        todo = todo[~ok]
    scale = np.zeros(counts.size, dtype=np.int16)  # an empty group: 0, as ever
    filled = np.flatnonzero(counts > 0)  # reduceat would give an empty group a neighbour's
    if filled.size:
        starts = group_starts(counts)[filled]
        scale[filled] = np.where(
            np.minimum.reduceat(best, starts) < 0, -1, np.maximum.reduceat(best, starts)
        )
    # A value exact at a smaller scale is in practice exact at a larger one too, but verify
    # (the encoder must never depend on that), and the group's scale may push a large value
    # of the group past 2**53 (then past int64): such a group needs the XOR codec. A value
    # found exact at its group's scale itself needs no second look.
    group_scale = scale[gid]
    rows = np.flatnonzero((group_scale >= 0) & (best != group_scale))
    if rows.size:
        p = POW10[scale[gid[rows]]]
        m = np.rint(v[rows] * p)
        bad = ((m / p).view(np.uint64) != bits[rows]) | ~(np.abs(m) < _EXACT_INT)
        scale[np.unique(gid[rows[bad]])] = -1
    return scale


def encode_floats(v: F64, counts: I64) -> tuple[U8, I64, U8, U8]:
    """Float column of many groups -> (stream bytes, bytes per group, codec per group,
    scale per group). Decimal groups: zigzag varints of deltas of ``rint(v * 10**e)``;
    other groups: XOR with the previous value, stored as 8 byte planes (most significant
    plane first) so the mostly-zero high bytes sit together for RocksDB's zstd."""
    groups = counts.size
    scale = decimal_scales(v, counts)
    decimal_group = scale >= 0
    if decimal_group.all():
        # Every group decimal (the usual case): no selection of rows, and the stream is
        # the varints as they come, already in group order.
        data, out_len = _decimal_varints(v, counts, scale)
        return data, out_len, np.zeros(groups, np.uint8), scale.astype(np.uint8)
    gid = group_ids(counts)
    starts = group_starts(counts)
    pos = np.arange(v.size, dtype=np.int64) - starts[gid]
    is_dec = decimal_group[gid]
    # Decimal rows.
    dec_rows = np.flatnonzero(is_dec)
    dec_bytes, out_len = _decimal_varints(v[dec_rows], np.where(decimal_group, counts, 0), scale)
    # XOR rows.
    xor_rows = np.flatnonzero(~is_dec)
    bits = v[xor_rows].view(np.int64)
    xr = (bits ^ shift_in_group(bits, pos[xor_rows], 1)).view(np.uint64)
    xcounts = np.where(decimal_group, 0, counts)
    out_len += 8 * xcounts
    planes = xr.astype(">u8").view(np.uint8).reshape(-1, 8)
    # Group-major, then plane, then row: row i of group g, plane j goes to
    # xstart[g] + j * n_g + i.
    xstart = group_starts(8 * xcounts)
    xg = gid[xor_rows]
    dest = (
        xstart[xg][:, None] + np.arange(8)[None, :] * xcounts[xg][:, None] + pos[xor_rows][:, None]
    )
    xor_bytes = np.empty(8 * xor_rows.size, dtype=np.uint8)
    xor_bytes[dest.ravel()] = planes.ravel()
    # Interleave the two kinds back into group order.
    stream = np.empty(int(out_len.sum()), dtype=np.uint8)
    gstart = group_starts(out_len)
    dec_len = np.where(decimal_group, out_len, 0)
    stream[ranges(gstart, dec_len)] = dec_bytes
    stream[ranges(gstart, out_len - dec_len)] = xor_bytes
    codec = np.where(decimal_group, CODEC_DECIMAL, CODEC_XOR).astype(np.uint8)
    return stream, out_len, codec, np.maximum(scale, 0).astype(np.uint8)


def _decimal_varints(v: F64, counts: I64, scale: npt.NDArray[np.int16]) -> tuple[U8, I64]:
    """Zigzag varints of the in-group deltas of ``rint(v * 10**scale)`` for the rows of
    decimal groups (``counts``: each group's rows in ``v``, 0 for a group that is not
    decimal), and the bytes each group took. Per-group work only where a row needs its
    group (a scale above 0): no row-wide group ids or positions."""
    # At scale 0 everywhere the values are integers already (decimal_scales checked them).
    if (scale > 0).any():
        v = np.rint(v * np.repeat(POW10[np.maximum(scale, 0)], counts))
    data, nbytes = varint_encode(zigzag(diff_in_group(v.astype(np.int64), group_heads(counts, 1))))
    return data, part_sums(nbytes, counts)


def decode_floats(stream: U8, lengths: I64, counts: I64, codec: U8, scale: U8) -> F64:
    """Inverse of :func:`encode_floats` (``stream`` holds the groups' bytes in order)."""
    if np.any(codec > CODEC_XOR):
        raise CorruptColumn(f"unknown float codec {int(codec.max())}")
    if np.any(scale > MAX_SCALE):
        raise CorruptColumn(f"decimal scale {int(scale.max())} above {MAX_SCALE}")
    gid = group_ids(counts)
    starts = group_starts(counts)
    pos = np.arange(gid.size, dtype=np.int64) - starts[gid]
    gstart = group_starts(lengths)
    is_dec_group = codec == CODEC_DECIMAL
    xor_counts = np.where(is_dec_group, 0, counts)
    if np.any(lengths[~is_dec_group] != 8 * counts[~is_dec_group]):
        raise CorruptColumn("XOR value stream length is not 8 bytes per row")
    out = np.empty(gid.size, dtype=np.float64)
    is_dec = is_dec_group[gid]
    # Decimal groups.
    dec_rows = np.flatnonzero(is_dec)
    dec_buf = stream[ranges(gstart, np.where(is_dec_group, lengths, 0))]
    delta = unzigzag(varint_decode(dec_buf, dec_rows.size))
    dec_counts = np.where(is_dec_group, counts, 0)
    dgid = group_ids(dec_counts)
    m = cumsum_in_group(delta, dgid, group_starts(dec_counts))
    out[dec_rows] = m.astype(np.float64) / POW10[scale[dgid]]
    # XOR groups.
    xor_rows = np.flatnonzero(~is_dec)
    if xor_rows.size:
        xstart = gstart
        xg = gid[xor_rows]
        src = (
            xstart[xg][:, None]
            + np.arange(8)[None, :] * xor_counts[xg][:, None]
            + pos[xor_rows][:, None]
        )
        xr = stream[src.ravel()].reshape(-1, 8).copy().view(">u8").ravel().astype(np.uint64)
        acc = np.bitwise_xor.accumulate(xr)
        xs = group_starts(xor_counts)
        first = xs[xor_counts > 0]
        before = np.zeros(xor_counts.size, dtype=np.uint64)
        nz = np.flatnonzero(xor_counts > 0)
        before[nz] = np.where(first > 0, acc[np.maximum(first - 1, 0)], np.uint64(0))
        bits = acc ^ before[group_ids(xor_counts)]
        out[xor_rows] = bits.view(np.float64)
    return out
