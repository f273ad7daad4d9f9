"""Binary forms of sketches: our versioned encoding, and the ``ddsketch`` protobuf form.

Our encoding (docs/formats.md, "Sketch encoding (v1)") is what the sketches topic and the
stores carry: compact (keys as delta varints, integer counts as varints: about 2 bytes per
bin), exact (count/sum/min/max travel beside the bins) and versioned (magic ``b"SK"``,
version byte; a new version adds a decoder branch, old branches stay). A reader that cannot
decode raises :class:`UnreadableSketch`, an :class:`~strata.codec.UnreadableMessage`, so the
store runtime routes it to the dead-letter topic with the reason.

The protobuf form (``DDSketch`` of DataDog's ``sketches-*`` libraries: mapping
{gamma, indexOffset, interpolation}, positive/negative ``Store`` {binCounts,
contiguousBinCounts, contiguousBinIndexOffset}, zeroCount) is written and read by hand — it
is small — so the runtime does not depend on ``protobuf`` or ``ddsketch``. It carries no
count/sum/min/max: an imported sketch estimates sum/min/max from its bins. Keys of a
logarithmic mapping with our gamma and an integral offset are taken as they are; any other
mapping (another gamma, a fractional offset, linear or cubic interpolation) is converted by
re-binning each bin's representative value, which adds up to our accuracy to theirs.

The encoders and decoders loop over fields, never over values or bins, except where the
protobuf form itself spells bins one by one (``binCounts`` map entries, unpacked repeated
doubles): those are parsed in a loop per bin, on the import path only.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from strata.arrays import exclusive_cumsum, part_sums, ranges
from strata.codec import UnreadableMessage
from strata.sketch import (
    F64,
    I64,
    U64,
    Bins,
    Sketch,
    SketchBatch,
    SketchError,
    SketchParams,
)

U8 = npt.NDArray[np.uint8]

MAGIC = b"SK"
VERSION = 1
KIND_SKETCH = 1
KIND_BATCH = 2
#: keys are ``ceil(log2(x) * m)`` (ddsketch's LogarithmicMapping, offset 0)
MAPPING_LOGARITHMIC = 1
#: counts section holds float64 values instead of unsigned varints
FLAG_FLOAT_COUNTS = 1

_HEAD = struct.Struct("<2sBBBBdI")  # magic, version, kind, mapping, flags, accuracy, limit
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_LE_F64 = np.dtype("<f8")
_LE_U64 = np.dtype("<u8")
_LE_I64 = np.dtype("<i8")
# Varints never need more bytes than this here: counts < 2**53, keys and lengths < 2**33.
_MAX_VARINT_BYTES = 8
_EXACT_INT = 2.0**53


class UnreadableSketch(UnreadableMessage):
    """Bytes that are not a sketch this reader can decode; ``reason`` says why."""


# -- vectorised varints ------------------------------------------------------------------


def _zigzag(x: I64) -> U64:
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def _unzigzag(z: U64) -> I64:
    return (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)


def _varints(z: U64) -> bytes:
    """Unsigned LEB128 of every value (7 bits a byte, low first, high bit = more follows)."""
    if z.size == 0:
        return b""
    nbytes = np.ones(z.size, dtype=np.int64)
    for k in range(1, 10):
        more = z >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        nbytes += more
    ends = np.cumsum(nbytes)
    first = ends - nbytes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for k in range(int(nbytes.max())):  # one pass per byte position, not per value
        sel = np.flatnonzero(nbytes > k)
        low = (z[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        cont = np.where(nbytes[sel] > k + 1, np.uint64(0x80), np.uint64(0))
        out[first[sel] + k] = (low | cont).astype(np.uint8)
    return out.tobytes()


def _unvarints(buf: U8) -> U64:
    """Every varint filling ``buf`` exactly."""
    if buf.size == 0:
        return np.empty(0, dtype=np.uint64)
    last = buf < 0x80
    if not last[-1]:
        raise UnreadableSketch("truncated varint")
    ends = np.flatnonzero(last)
    lengths = np.diff(ends, prepend=-1)
    if lengths.max() > _MAX_VARINT_BYTES:
        raise UnreadableSketch(f"varint longer than {_MAX_VARINT_BYTES} bytes")
    # Most varints here are one byte (key deltas, counts): start from every varint's last
    # byte, then add the lower groups of the multi-byte ones only, one pass per position.
    out = buf[ends].astype(np.uint64)
    multi = np.flatnonzero(lengths > 1)
    if multi.size == 0:
        return out
    m_ends, m_len = ends[multi], lengths[multi]
    value = out[multi] << (7 * (m_len - 1)).astype(np.uint64)
    for k in range(1, int(m_len.max())):
        sel = np.flatnonzero(m_len > k)
        group = (buf[m_ends[sel] - k] & np.uint8(0x7F)).astype(np.uint64)
        value[sel] |= group << (7 * (m_len[sel] - 1 - k)).astype(np.uint64)
    out[multi] = value
    return out


def _uvarint(x: int) -> bytes:
    return _varints(np.array([x], dtype=np.uint64))


# -- our encoding --------------------------------------------------------------------------


def _key_deltas(b: Bins) -> U64:
    """First key of each sketch zigzagged, then ``k[i] - k[i-1] - 1`` (keys rise strictly)."""
    k = b.keys.astype(np.int64)
    prev = np.zeros_like(k)
    prev[1:] = k[:-1]
    first = b.offsets[:-1][b.lengths > 0]
    out = (k - prev - 1).view(np.uint64)
    out[first] = _zigzag(k[first])
    return out


def _integral(x: F64) -> bool:
    return bool(np.all((x == np.floor(x)) & (x >= 0) & (x < _EXACT_INT)))


def _encode(b: SketchBatch, kind: int) -> bytes:
    counts = np.concatenate((b.count, b.zero_count, b.pos.counts, b.neg.counts))
    floats = not _integral(counts)
    n = len(b)
    lens = np.concatenate((b.pos.lengths, b.neg.lengths)).view(np.uint64)
    keys = _varints(np.concatenate((lens, _key_deltas(b.pos), _key_deltas(b.neg))))
    p = b.params
    parts = [
        _HEAD.pack(
            MAGIC,
            VERSION,
            kind,
            MAPPING_LOGARITHMIC,
            FLAG_FLOAT_COUNTS if floats else 0,
            p.relative_accuracy,
            p.bin_limit,
        )
    ]
    if kind == KIND_BATCH:
        parts += [_U32.pack(n), b.sid.astype(_LE_U64).tobytes(), b.ts.astype(_LE_I64).tobytes()]
    parts += [np.concatenate((b.sum, b.min, b.max)).astype(_LE_F64).tobytes()]
    parts += [_uvarint(len(keys)), keys]
    if floats:
        parts.append(counts.astype(_LE_F64).tobytes())
    else:
        parts.append(_varints(counts.astype(np.uint64)))
    return b"".join(parts)


def encode_sketch(sketch: Sketch) -> bytes:
    zero = np.zeros(1, dtype=np.int64)
    return _encode(SketchBatch.from_sketches(zero.view(np.uint64), zero, [sketch]), KIND_SKETCH)


def encode_batch(batch: SketchBatch) -> bytes:
    return _encode(batch, KIND_BATCH)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            raise UnreadableSketch(f"truncated sketch: need {end} bytes, have {len(self.buf)}")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def array(self, n: int, dtype: np.dtype[np.generic]) -> npt.NDArray[np.generic]:
        return np.frombuffer(self.take(n * dtype.itemsize), dtype=dtype)

    def uvarint(self, max_bytes: int = _MAX_VARINT_BYTES) -> int:
        """One varint (a loop over its bytes: for headers and protobuf tags only)."""
        result = 0
        for i in range(max_bytes):
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return result
        raise UnreadableSketch(f"varint longer than {max_bytes} bytes")

    def rest(self) -> bytes:
        return self.take(len(self.buf) - self.pos)


def _decode(raw: bytes, expect: int) -> SketchBatch:
    r = _Reader(bytes(raw))
    if len(raw) < _HEAD.size:
        raise UnreadableSketch(f"shorter than the sketch header ({len(raw)} bytes)")
    magic, version, kind, mapping, flags, accuracy, limit = _HEAD.unpack(r.take(_HEAD.size))
    if magic != MAGIC:
        raise UnreadableSketch(f"bad magic {magic!r}")
    if version != VERSION:
        raise UnreadableSketch(f"unsupported sketch format version {version}")
    if kind != expect:
        raise UnreadableSketch(f"expected sketch kind {expect}, got {kind}")
    if mapping != MAPPING_LOGARITHMIC:
        raise UnreadableSketch(f"unknown index mapping {mapping}")
    if flags & ~FLAG_FLOAT_COUNTS:
        raise UnreadableSketch(f"unknown flags {flags:#x}")
    try:
        params = SketchParams(accuracy, limit)
    except SketchError as e:
        raise UnreadableSketch(str(e)) from e
    if kind == KIND_BATCH:
        n = int(_U32.unpack(r.take(4))[0])
        sid = r.array(n, _LE_U64).astype(np.uint64)
        ts = r.array(n, _LE_I64).astype(np.int64)
    else:
        n = 1
        sid, ts = np.zeros(1, np.uint64), np.zeros(1, np.int64)
    stats = r.array(3 * n, _LE_F64).astype(np.float64).reshape(3, n)
    stream = _unvarints(np.frombuffer(r.take(r.uvarint()), np.uint8))
    if stream.size < 2 * n or (stream[: 2 * n] > np.uint64(1 << 32)).any():
        raise UnreadableSketch("bin lengths missing or out of range")
    lens = stream[: 2 * n].astype(np.int64)
    n_pos, n_neg = int(lens[:n].sum()), int(lens[n:].sum())
    if stream.size != 2 * n + n_pos + n_neg:
        raise UnreadableSketch(
            f"key stream holds {stream.size - 2 * n} keys, lengths say {n_pos + n_neg}"
        )
    want = 2 * n + n_pos + n_neg
    rest = r.rest()
    if flags & FLAG_FLOAT_COUNTS:
        if len(rest) != 8 * want:
            raise UnreadableSketch(f"counts take {len(rest)} bytes, expected {8 * want}")
        counts = np.frombuffer(rest, _LE_F64).astype(np.float64)
    else:
        cz = _unvarints(np.frombuffer(rest, np.uint8))
        if cz.size != want:
            raise UnreadableSketch(f"{cz.size} counts, expected {want}")
        if (cz >= np.uint64(1 << 53)).any():
            raise UnreadableSketch("integer count of 2**53 or more")
        counts = cz.astype(np.float64)
    pos = _bins(lens[:n], stream[2 * n : 2 * n + n_pos], counts[2 * n : 2 * n + n_pos], params)
    neg = _bins(lens[n:], stream[2 * n + n_pos :], counts[2 * n + n_pos :], params)
    count, zero = counts[:n], counts[n : 2 * n]
    if not (np.isfinite(counts[: 2 * n]).all() and (counts[: 2 * n] >= 0).all()):
        raise UnreadableSketch("count and zero count must be finite and >= 0")
    total = zero + pos.totals() + neg.totals()
    if flags & FLAG_FLOAT_COUNTS:
        consistent = np.abs(count - total) <= 1e-9 * np.maximum(count, 1.0)
    else:
        consistent = count == total
    if not consistent.all():
        raise UnreadableSketch("count differs from the zero count plus the bin counts")
    live = count > 0
    vsum, vmin, vmax = stats
    if not (np.isfinite(stats[:, live]).all() and (vmin[live] <= vmax[live]).all()):
        raise UnreadableSketch("sum/min/max of a non-empty sketch must be finite, min <= max")
    try:
        return SketchBatch(params, sid, ts, count, zero, vsum, vmin, vmax, pos, neg)
    except SketchError as e:  # pragma: no cover - every column was checked above
        raise UnreadableSketch(str(e)) from e


def _bins(lengths: I64, deltas: U64, counts: F64, params: SketchParams) -> Bins:
    if (deltas >= np.uint64(1 << 33)).any():
        raise UnreadableSketch("key delta out of range")
    if counts.size and not (np.isfinite(counts).all() and (counts > 0).all()):
        raise UnreadableSketch("bin counts must be finite and > 0")
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    filled = np.flatnonzero(lengths)
    first = offsets[filled]
    d = deltas.view(np.int64) + 1
    d[first] = _unzigzag(deltas[first])
    c = np.cumsum(d)
    keys = c - np.repeat((c - d)[first], lengths[filled])
    if keys.size:
        if keys.min() < -(2**31) or keys.max() >= 2**31:
            raise UnreadableSketch("bin key outside 32 bits")
        last = offsets[filled + 1] - 1
        if (keys[last] - keys[first] >= params.bin_limit).any():
            raise UnreadableSketch("bins span more keys than the bin limit")
    return Bins(offsets, keys.astype(np.int32), counts)


def decode_sketch(raw: bytes) -> Sketch:
    return _decode(raw, KIND_SKETCH).row(0)


def decode_batch(raw: bytes) -> SketchBatch:
    return _decode(raw, KIND_BATCH)


def decode_batches(raws: Sequence[bytes]) -> SketchBatch:
    """The rows of every batch of ``raws`` in order: what ``SketchBatch.concat`` of
    :func:`decode_batch` of each gives, with the same errors, but with one pass of numpy per
    column over all of them instead of ~30 small numpy calls per batch (a store read of a
    day of 1 000 series decodes 24 000 records). Only the headers are parsed per batch. A
    batch of float counts, of other parameters, or anything inconsistent falls back to
    :func:`decode_batch` one by one (which raises the reason)."""
    if not raws:
        return SketchBatch.empty(SketchParams())
    blobs = [bytes(r) for r in raws]
    heads = [_batch_layout(b) for b in blobs]
    layouts = [h for h in heads if h is not None]
    if len(layouts) != len(heads) or len({h.params for h in layouts}) != 1:
        return SketchBatch.concat([decode_batch(r) for r in raws])
    params = layouts[0].params
    n = np.array([h.n for h in layouts], dtype=np.int64)
    total = int(n.sum())

    def joined(part: int) -> bytes:
        return b"".join(
            b[h.spans[part][0] : h.spans[part][1]] for b, h in zip(blobs, layouts, strict=True)
        )

    sid = np.frombuffer(joined(0), _LE_U64).astype(np.uint64)
    ts = np.frombuffer(joined(1), _LE_I64).astype(np.int64)
    stats = np.frombuffer(joined(2), _LE_F64).astype(np.float64)
    key_buf = np.frombuffer(joined(3), np.uint8)
    count_buf = np.frombuffer(joined(4), np.uint8)
    try:
        keys = _unvarints(key_buf)
        counts_all = _unvarints(count_buf)
    except UnreadableSketch:
        return SketchBatch.concat([decode_batch(r) for r in raws])
    # Varints per batch: the terminator bytes in each batch's slice of the joined streams.
    key_sizes = np.array([h.spans[3][1] - h.spans[3][0] for h in layouts], dtype=np.int64)
    count_sizes = np.array([h.spans[4][1] - h.spans[4][0] for h in layouts], dtype=np.int64)
    per_keys = part_sums(key_buf < 0x80, key_sizes)
    per_counts = part_sums(count_buf < 0x80, count_sizes)
    key_at = exclusive_cumsum(per_keys)
    count_at = exclusive_cumsum(per_counts)
    # Each batch's key stream: pos_len[n], neg_len[n], P keys, N keys.
    raw_lens = keys[ranges(key_at[:-1], 2 * n)]
    if raw_lens.size != 2 * total or (raw_lens > np.uint64(1 << 32)).any():
        return SketchBatch.concat([decode_batch(r) for r in raws])
    lens = raw_lens.astype(np.int64)
    row_at = exclusive_cumsum(n)[:-1]
    len_at = exclusive_cumsum(2 * n)[:-1]
    pos_len = lens[ranges(len_at, n)]
    neg_len = lens[ranges(len_at + n, n)]
    p = part_sums(pos_len, n)
    q = part_sums(neg_len, n)
    if not (np.array_equal(per_keys, 2 * n + p + q) and np.array_equal(per_counts, 2 * n + p + q)):
        return SketchBatch.concat([decode_batch(r) for r in raws])
    pos_keys = keys[ranges(key_at[:-1] + 2 * n, p)]
    neg_keys = keys[ranges(key_at[:-1] + 2 * n + p, q)]
    if (counts_all >= np.uint64(1 << 53)).any():
        return SketchBatch.concat([decode_batch(r) for r in raws])
    counts = counts_all.astype(np.float64)
    count = counts[ranges(count_at[:-1], n)]
    zero = counts[ranges(count_at[:-1] + n, n)]
    pos_counts = counts[ranges(count_at[:-1] + 2 * n, p)]
    neg_counts = counts[ranges(count_at[:-1] + 2 * n + p, q)]
    # Stats of each batch are sum[n], min[n], max[n].
    stat_at = 3 * row_at
    vsum = stats[ranges(stat_at, n)]
    vmin = stats[ranges(stat_at + n, n)]
    vmax = stats[ranges(stat_at + 2 * n, n)]
    try:
        pos = _bins(pos_len, pos_keys, pos_counts, params)
        neg = _bins(neg_len, neg_keys, neg_counts, params)
    except UnreadableSketch:
        return SketchBatch.concat([decode_batch(r) for r in raws])
    live = count > 0
    consistent = count == zero + pos.totals() + neg.totals()
    finite = all(np.isfinite(x[live]).all() for x in (vsum, vmin, vmax))
    if not (consistent.all() and finite) or (vmin[live] > vmax[live]).any():
        return SketchBatch.concat([decode_batch(r) for r in raws])
    return SketchBatch(params, sid, ts, count, zero, vsum, vmin, vmax, pos, neg)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the parts of one encoded batch are: byte spans of sid, ts, stats, the key
    stream and the varint counts."""

    params: SketchParams
    n: int
    spans: tuple[tuple[int, int], ...]


def _batch_layout(raw: bytes) -> _Layout | None:
    """The layout of a v1 batch of integer counts; None for anything else (left to
    :func:`decode_batch`, which names what is wrong)."""
    if len(raw) < _HEAD.size + 4:
        return None
    magic, version, kind, mapping, flags, accuracy, limit = _HEAD.unpack_from(raw)
    if (magic, version, kind, mapping, flags) != (MAGIC, VERSION, KIND_BATCH, 1, 0):
        return None
    try:
        params = SketchParams(accuracy, limit)
    except SketchError:
        return None
    r = _Reader(raw)
    r.pos = _HEAD.size
    try:
        n = int(_U32.unpack(r.take(4))[0])
        sid = (r.pos, r.pos + 8 * n)
        ts = (sid[1], sid[1] + 8 * n)
        stats = (ts[1], ts[1] + 24 * n)
        r.pos = stats[1]
        size = r.uvarint()
    except UnreadableSketch:
        return None
    keys = (r.pos, r.pos + size)
    if keys[1] > len(raw) or (size and raw[keys[1] - 1] >= 0x80):
        return None
    counts = (keys[1], len(raw))
    if counts[1] > counts[0] and raw[-1] >= 0x80:
        return None
    return _Layout(params, n, (sid, ts, stats, keys, counts))


# -- ddsketch protobuf --------------------------------------------------------------------

# Field numbers of ddsketch.proto (sketches-py ddsketch/pb/ddsketch_pb2.py):
# DDSketch{1 mapping IndexMapping, 2 positiveValues Store, 3 negativeValues Store,
#          4 zeroCount double}
# IndexMapping{1 gamma double, 2 indexOffset double, 3 interpolation enum}
# Store{1 binCounts map<sint32, double>, 2 contiguousBinCounts repeated double (packed),
#       3 contiguousBinIndexOffset sint32}
INTERPOLATION_NONE = 0
INTERPOLATION_LINEAR = 1
INTERPOLATION_QUADRATIC = 2
INTERPOLATION_CUBIC = 3

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _tag(number: int, wire: int) -> bytes:
    return _uvarint(number << 3 | wire)


def _message(number: int, body: bytes) -> bytes:
    return _tag(number, _LEN) + _uvarint(len(body)) + body


def _sint32(x: int) -> int:
    return ((x << 1) ^ (x >> 31)) & 0xFFFFFFFF


def _store_proto(keys: npt.NDArray[np.int32], counts: F64) -> bytes:
    """Contiguous form (the one ``ddsketch`` reads): dense counts from the lowest key."""
    if keys.size == 0:
        return b""
    lo = int(keys[0])
    dense = np.zeros(int(keys[-1]) - lo + 1, dtype=_LE_F64)
    dense[keys.astype(np.int64) - lo] = counts
    out = _message(2, dense.tobytes())
    if lo:
        out += _tag(3, _VARINT) + _uvarint(_sint32(lo))
    return out


def to_ddsketch_proto(sketch: Sketch) -> bytes:
    """The ``DDSketch`` protobuf message of ``sketch`` (logarithmic mapping, offset 0).
    Count, sum, min and max have no field there and are not carried."""
    mapping = _tag(1, _FIXED64) + _F64.pack(sketch.params.gamma)
    out = _message(1, mapping)
    out += _message(2, _store_proto(sketch.pos_keys, sketch.pos_counts))
    out += _message(3, _store_proto(sketch.neg_keys, sketch.neg_counts))
    if sketch.zero_count:
        out += _tag(4, _FIXED64) + _F64.pack(sketch.zero_count)
    return out


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of one message; LEN and fixed
    values come as bytes, varints as int."""
    r = _Reader(buf)
    while r.pos < len(buf):
        key = r.uvarint(10)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            yield number, wire, r.uvarint(10)
        elif wire == _FIXED64:
            yield number, wire, r.take(8)
        elif wire == _LEN:
            yield number, wire, r.take(r.uvarint(10))
        elif wire == _FIXED32:
            yield number, wire, r.take(4)
        else:
            raise UnreadableSketch(f"unsupported protobuf wire type {wire}")


def _double(v: int | bytes) -> float:
    if not isinstance(v, bytes) or len(v) != 8:
        raise UnreadableSketch("expected a double field")
    return float(_F64.unpack(v)[0])


def _signed32(v: int | bytes) -> int:
    if not isinstance(v, int):
        raise UnreadableSketch("expected a varint field")
    v &= 0xFFFFFFFF
    return (v >> 1) ^ -(v & 1)


@dataclass
class _ProtoStore:
    keys: list[I64] = field(default_factory=list)
    counts: list[F64] = field(default_factory=list)

    def parse(self, body: bytes) -> None:
        contiguous: list[F64] = []
        offset = 0
        for number, wire, v in _fields(body):
            if number == 1 and isinstance(v, bytes) and wire == _LEN:
                k, c = 0, 0.0
                for n2, _, v2 in _fields(v):  # one map entry: a bin spelled on its own
                    if n2 == 1:
                        k = _signed32(v2)
                    elif n2 == 2:
                        c = _double(v2)
                self.add(np.array([k], np.int64), np.array([c]))
            elif number == 2 and wire == _LEN and isinstance(v, bytes):
                if len(v) % 8:
                    raise UnreadableSketch("packed doubles not a multiple of 8 bytes")
                contiguous.append(np.frombuffer(v, _LE_F64).astype(np.float64))
            elif number == 2 and wire == _FIXED64:  # unpacked repeated double
                contiguous.append(np.array([_double(v)]))
            elif number == 3:
                offset = _signed32(v)
        if contiguous:
            dense = np.concatenate(contiguous)
            self.add(offset + np.arange(dense.size, dtype=np.int64), dense)

    def add(self, keys: I64, counts: F64) -> None:
        if not (np.isfinite(counts).all() and (counts >= 0).all()):
            raise UnreadableSketch("bin counts must be finite and >= 0")
        keep = counts > 0  # dense stores hold empty bins
        self.keys.append(keys[keep])
        self.counts.append(counts[keep])

    def arrays(self) -> tuple[I64, F64]:
        if not self.keys:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        return np.concatenate(self.keys), np.concatenate(self.counts)


def _mapping_values(keys: I64, gamma: float, offset: float, interpolation: int) -> F64:
    """Representative values of ``keys`` under a ddsketch mapping (sketches-py mapping.py)."""
    log_gamma = math.log1p(gamma - 1.0)
    x = keys.astype(np.float64) - offset
    if interpolation == INTERPOLATION_NONE:
        v = np.power(2.0, x * (log_gamma / math.log(2.0)))
    elif interpolation == INTERPOLATION_LINEAR:
        y = x * log_gamma  # log2 approximated by (significand - 1) + exponent
        exponent = np.floor(y) + 1
        v = np.ldexp((y - exponent + 2) / 2.0, exponent.astype(np.int64))
    elif interpolation == INTERPOLATION_CUBIC:
        a, b, c = 6.0 / 35.0, -3.0 / 5.0, 10.0 / 7.0
        y = x * log_gamma * c
        exponent = np.floor(y)
        d0 = b * b - 3 * a * c
        d1 = 2.0 * b**3 - 9.0 * a * b * c - 27.0 * a * a * (y - exponent)
        cardano = np.cbrt((d1 - np.sqrt(d1 * d1 - 4 * d0**3)) / 2.0)
        significand_plus_one = -(b + cardano + d0 / cardano) / (3.0 * a) + 1.0
        v = np.ldexp(significand_plus_one / 2, (exponent + 1).astype(np.int64))
    else:
        raise UnreadableSketch(f"unsupported index mapping interpolation {interpolation}")
    result: F64 = v * (2.0 / (1.0 + gamma))
    return result


def from_ddsketch_proto(raw: bytes, params: SketchParams | None = None) -> Sketch:
    """A sketch (in ``params``, default :class:`SketchParams()`) from a ``DDSketch`` protobuf
    message. Sum/min/max are estimated from the bins (the message does not carry them)."""
    params = params or SketchParams()
    gamma, offset, interpolation = 0.0, 0.0, INTERPOLATION_NONE
    stores = {2: _ProtoStore(), 3: _ProtoStore()}
    zero = 0.0
    for number, _, v in _fields(bytes(raw)):
        if number == 1 and isinstance(v, bytes):
            for n2, _, v2 in _fields(v):
                if n2 == 1:
                    gamma = _double(v2)
                elif n2 == 2:
                    offset = _double(v2)
                elif n2 == 3 and isinstance(v2, int):
                    interpolation = v2
        elif number in stores and isinstance(v, bytes):
            stores[number].parse(v)
        elif number == 4:
            zero = _double(v)
    if not (math.isfinite(gamma) and gamma > 1.0 and math.isfinite(offset)):
        raise UnreadableSketch(f"invalid index mapping: gamma {gamma!r}, offset {offset!r}")
    same = (
        interpolation == INTERPOLATION_NONE
        and abs(gamma - params.gamma) <= 1e-12 * params.gamma
        and offset == math.floor(offset)
    )
    converted = []
    for store in (stores[2], stores[3]):
        keys, counts = store.arrays()
        if same:
            keys = keys - int(offset)
        elif keys.size:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                values = _mapping_values(keys, gamma, offset, interpolation)
            if not (np.isfinite(values).all() and (values >= 0).all()):
                raise UnreadableSketch("a bin of the sender's mapping is outside float64")
            keys = params.keys(np.maximum(values, params.min_possible * 2.0))
        converted.append((keys, counts))
    (pk, pc), (nk, nc) = converted
    try:
        return Sketch.from_bins(params, pk, pc, nk, nc, zero_count=zero)
    except SketchError as e:
        raise UnreadableSketch(str(e)) from e
