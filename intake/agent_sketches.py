"""``POST /api/beta/sketches``: the Datadog agent's protobuf ``SketchPayload`` -> sketches (pure).

The agent, Vector and the serverless extension send distributions as
``Content-Type: application/x-protobuf`` (compressed like every body, intake/decode.py), the
message ``SketchPayload`` of DataDog/agent-payload ``proto/metrics/agent_payload.proto``::

    SketchPayload { repeated Sketch sketches = 1; CommonMetadata metadata = 2; }
    Sketch        { string metric = 1; string host = 2; repeated Distribution distributions = 3;
                    repeated string tags = 4; reserved 5, 6;
                    repeated Dogsketch dogsketches = 7; Metadata metadata = 8; }
    Dogsketch     { int64 ts = 1; int64 cnt = 2; double min = 3; double max = 4;
                    double avg = 5; double sum = 6; repeated sint32 k = 7; repeated uint32 n = 8; }

A Dogsketch is one point: the agent's bins (``k``/``n``) of one (series, ts) and the exact
count/min/max/sum. The result is the :class:`intake.distributions.ParsedDistributions` of the
``/api/v1/distribution_points`` path, so the route shares everything after parsing: the bins
are converted into our sketch (strata/agent_mapping.py: each agent bin by the agent's own
representative, weight ``n``; count/sum/min/max exact), the points go through
:class:`intake.batching.BatchBuilder` (value = the point's row, NaN when its min/max/sum is
not finite) for the window checks, rejections and series announcements, tags are the
sketch's ``tags`` plus ``host:<host>``, and points of one (series, ts) are merged.

Differences from the JSON path, on purpose:

- an invalid metric name rejects that sketch's points (counted, ``invalid_metric_name``)
  instead of the request: an agent payload carries every distribution of a host, and the
  agent drops a payload answered 400 rather than fix it;
- a Dogsketch with ``cnt`` 0 and no bins holds nothing and is skipped (like ``[ts, []]``);
- the pre-6.0 GK ``distributions`` (field 3) are refused with a 400 naming the field: we
  cannot read them, and dropping them silently would lose data.

Decoding is by hand rather than through the ``protobuf`` runtime (bench/bench_agent_sketches.py
measures both): a Python walk over the fields of each Sketch and Dogsketch, and the packed
``k``/``n`` arrays of the whole payload decoded afterwards in one numpy pass. That lets every
malformed input be refused with a :class:`PayloadError` naming the field and the problem —
truncated data, a wrong wire type (which the runtime would silently keep as an unknown
field), an overlong varint, invalid UTF-8, ``k``/``n`` of different lengths, a count that
is negative or disagrees with the bins — while unknown fields are skipped, as protobuf
requires for forward compatibility. Repeated scalars are accepted packed and unpacked.

:func:`sketch_payload_class` builds the real protobuf message classes from a descriptor
written in code (no protoc, no generated files), for clients, tests and benchmarks that
encode payloads; it must agree with the field numbers below.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from intake.batching import BatchBuilder
from intake.distributions import MetricSketches, ParsedDistributions
from intake.identity import SeriesIdentities
from intake.parse import PayloadError
from intake.rejections import RejectReason, TimeWindow
from strata.agent_mapping import AGENT_INF_KEY, from_agent_bins
from strata.arrays import ranges
from strata.codec import SketchMessage
from strata.model import MetricType
from strata.sketch import SketchError, SketchParams

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

# Wire types.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "group", 5: "32-bit"}

# Field numbers (agent_payload.proto).
PAYLOAD_SKETCHES, PAYLOAD_METADATA = 1, 2
SKETCH_METRIC, SKETCH_HOST, SKETCH_DISTRIBUTIONS, SKETCH_TAGS = 1, 2, 3, 4
SKETCH_DOGSKETCHES, SKETCH_METADATA = 7, 8
DOG_TS, DOG_CNT, DOG_MIN, DOG_MAX, DOG_AVG, DOG_SUM, DOG_K, DOG_N = 1, 2, 3, 4, 5, 6, 7, 8

_SKETCH_NAMES = {
    SKETCH_METRIC: "metric",
    SKETCH_HOST: "host",
    SKETCH_DISTRIBUTIONS: "distributions",
    SKETCH_TAGS: "tags",
    SKETCH_DOGSKETCHES: "dogsketches",
    SKETCH_METADATA: "metadata",
}
_DOG_NAMES = {
    DOG_TS: "ts",
    DOG_CNT: "cnt",
    DOG_MIN: "min",
    DOG_MAX: "max",
    DOG_AVG: "avg",
    DOG_SUM: "sum",
    DOG_K: "k",
    DOG_N: "n",
}
_DOG_WIRE = {DOG_TS: _VARINT, DOG_CNT: _VARINT, DOG_K: _LEN, DOG_N: _LEN}  # k, n: packed
_DOG_WIRE.update({f: _I64 for f in (DOG_MIN, DOG_MAX, DOG_AVG, DOG_SUM)})


def _tag(number: int, wire: int) -> int:
    return number << 3 | wire


# Whole tags (every one fits a single byte): the walkers dispatch on them directly.
_T_SKETCHES = _tag(PAYLOAD_SKETCHES, _LEN)
_T_METRIC, _T_HOST = _tag(SKETCH_METRIC, _LEN), _tag(SKETCH_HOST, _LEN)
_T_DISTRIBUTIONS, _T_TAGS = _tag(SKETCH_DISTRIBUTIONS, _LEN), _tag(SKETCH_TAGS, _LEN)
_T_DOGSKETCHES = _tag(SKETCH_DOGSKETCHES, _LEN)
_T_TS, _T_CNT = _tag(DOG_TS, _VARINT), _tag(DOG_CNT, _VARINT)
_T_MIN, _T_MAX, _T_SUM = _tag(DOG_MIN, _I64), _tag(DOG_MAX, _I64), _tag(DOG_SUM, _I64)
_T_DOUBLES = frozenset((_T_MIN, _T_MAX, _T_SUM, _tag(DOG_AVG, _I64)))
_T_K, _T_K_PACKED = _tag(DOG_K, _VARINT), _tag(DOG_K, _LEN)
_T_N, _T_N_PACKED = _tag(DOG_N, _VARINT), _tag(DOG_N, _LEN)
_T_PACKED, _T_UNPACKED = frozenset((_T_K_PACKED, _T_N_PACKED)), frozenset((_T_K, _T_N))
_T_VARINTS = frozenset((_T_TS, _T_CNT))
_DOUBLE = struct.Struct("<d")
_LEGACY = "legacy (pre-6.0 agent) distributions are not supported: send dogsketches"
_U64_TOP = 1 << 64
_I64_SIGN = 1 << 63


# --- protobuf message classes (for encoders; the decoder below does not use them) --------


@cache
def sketch_payload_class() -> Any:
    """The ``datadog.agentpayload.SketchPayload`` message class (``protobuf`` runtime),
    built from a descriptor written here. Nested types: ``SketchPayload.Sketch``,
    ``SketchPayload.Sketch.Dogsketch``, ``SketchPayload.Sketch.Distribution``."""
    # No stubs are installed for protobuf; the classes are used dynamically anyway.
    from google.protobuf import (  # type: ignore[import-untyped]
        descriptor_pb2,
        descriptor_pool,
        message_factory,
    )

    fdp = descriptor_pb2.FileDescriptorProto(
        name="strata/agent_payload.proto", package="datadog.agentpayload", syntax="proto3"
    )
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED

    def add(msg: Any, name: str, number: int, ftype: int, label: int = optional, **kw: Any) -> None:
        msg.field.add(name=name, number=number, type=ftype, label=label, **kw)

    common = fdp.message_type.add(name="CommonMetadata")
    for i, name in enumerate(("agent_version", "timezone"), 1):
        add(common, name, i, f.TYPE_STRING)
    add(common, "current_epoch", 3, f.TYPE_DOUBLE)
    for i, name in enumerate(("internal_ip", "public_ip", "api_key"), 4):
        add(common, name, i, f.TYPE_STRING)
    origin = fdp.message_type.add(name="Origin")
    for i, name in enumerate(("origin_product", "origin_category", "origin_service"), 4):
        add(origin, name, i, f.TYPE_UINT32)
    metadata = fdp.message_type.add(name="Metadata")
    add(metadata, "origin", 1, f.TYPE_MESSAGE, type_name=".datadog.agentpayload.Origin")

    payload = fdp.message_type.add(name="SketchPayload")
    sketch = payload.nested_type.add(name="Sketch")
    dist = sketch.nested_type.add(name="Distribution")
    dog = sketch.nested_type.add(name="Dogsketch")
    for msg in (dist, dog):
        add(msg, "ts", DOG_TS, f.TYPE_INT64)
        add(msg, "cnt", DOG_CNT, f.TYPE_INT64)
        for name in ("min", "max", "avg", "sum"):
            add(msg, name, {"min": 3, "max": 4, "avg": 5, "sum": 6}[name], f.TYPE_DOUBLE)
    add(dist, "v", 7, f.TYPE_DOUBLE, repeated)
    add(dist, "g", 8, f.TYPE_UINT32, repeated)
    add(dist, "delta", 9, f.TYPE_UINT32, repeated)
    add(dist, "buf", 10, f.TYPE_DOUBLE, repeated)
    add(dog, "k", DOG_K, f.TYPE_SINT32, repeated)
    add(dog, "n", DOG_N, f.TYPE_UINT32, repeated)
    prefix = ".datadog.agentpayload.SketchPayload.Sketch"
    add(sketch, "metric", SKETCH_METRIC, f.TYPE_STRING)
    add(sketch, "host", SKETCH_HOST, f.TYPE_STRING)
    add(sketch, "distributions", 3, f.TYPE_MESSAGE, repeated, type_name=f"{prefix}.Distribution")
    add(sketch, "tags", SKETCH_TAGS, f.TYPE_STRING, repeated)
    add(sketch, "dogsketches", 7, f.TYPE_MESSAGE, repeated, type_name=f"{prefix}.Dogsketch")
    add(sketch, "metadata", 8, f.TYPE_MESSAGE, type_name=".datadog.agentpayload.Metadata")
    sketch.reserved_range.add(start=5, end=7)  # end exclusive
    add(payload, "sketches", 1, f.TYPE_MESSAGE, repeated, type_name=prefix)
    add(payload, "metadata", 2, f.TYPE_MESSAGE, type_name=".datadog.agentpayload.CommonMetadata")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("datadog.agentpayload.SketchPayload")
    )


# --- wire decoding ------------------------------------------------------------------------


@dataclass(slots=True)
class DecodedPayload:
    """A ``SketchPayload`` as columns. Sketch ``i`` owns the Dogsketch rows
    ``first_row[i]:first_row[i + 1]``; row ``r`` owns ``k_values``/``n_values``
    ``k_offsets[r]:k_offsets[r + 1]`` (``n_offsets`` likewise)."""

    metric: list[str] = field(default_factory=list)
    host: list[str] = field(default_factory=list)
    tags: list[tuple[str, ...]] = field(default_factory=list)
    first_row: list[int] = field(default_factory=lambda: [0])
    ts: list[int] = field(default_factory=list)
    cnt: list[int] = field(default_factory=list)
    vmin: list[float] = field(default_factory=list)
    vmax: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    k_values: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    k_offsets: I64 = field(default_factory=lambda: np.zeros(1, np.int64))
    n_values: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    n_offsets: I64 = field(default_factory=lambda: np.zeros(1, np.int64))

    @property
    def rows(self) -> int:
        return len(self.ts)

    def path(self, row: int) -> str:
        """``sketches[i].dogsketches[j]`` of Dogsketch row ``row``."""
        i = int(np.searchsorted(self.first_row, row, "right")) - 1
        return f"sketches[{i}].dogsketches[{row - self.first_row[i]}]"


class _Segments:
    """Byte ranges holding varints of one repeated field, with the row each belongs to."""

    __slots__ = ("ends", "rows", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.rows: list[int] = []


class _Bad(Exception):
    """A wire problem found by a helper; the message walker that catches it adds the path
    (paths are built only on error: formatting one per field would double the cost)."""


def decode_sketch_payload(body: bytes) -> DecodedPayload:
    """The columns of a ``SketchPayload``; raises :class:`PayloadError` naming the field."""
    out = DecodedPayload()
    ks, ns = _Segments(), _Segments()
    end = len(body)
    pos = 0
    what = "payload"
    try:
        while pos < end:
            what = "payload"
            start = pos
            tag, pos = _varint(body, pos, end)
            if tag == _T_SKETCHES:
                what = f"sketches[{len(out.metric)}]"
                pos, stop = _length(body, pos, end)
                _sketch(body, pos, stop, out, ks, ns)
                pos = stop
            elif tag >> 3 == PAYLOAD_SKETCHES:
                raise PayloadError(f"sketches[{len(out.metric)}]", _wire_problem(tag, _LEN))
            elif tag >> 3 == PAYLOAD_METADATA and tag & 7 != _LEN:
                raise PayloadError("metadata", _wire_problem(tag, _LEN))
            else:
                pos = _skip(body, pos, end, tag, start)
    except _Bad as exc:
        raise PayloadError(what, str(exc)) from None
    out.k_values, out.k_offsets = _packed(body, ks, out, signed=True, name="k")
    out.n_values, out.n_offsets = _packed(body, ns, out, signed=False, name="n")
    return out


def _sketch(
    buf: bytes, pos: int, end: int, out: DecodedPayload, ks: _Segments, ns: _Segments
) -> None:
    metric = host = ""
    tags: list[str] = []
    tag = 0
    try:
        while pos < end:
            start = pos
            tag = buf[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = _varint(buf, pos, end)
            if tag & 7 == _LEN:
                if pos < end and (size := buf[pos]) < 0x80:  # short value: inline
                    pos += 1
                    stop = pos + size
                    if stop > end:
                        raise _Bad(f"truncated: {size} bytes announced, {end - pos} left")
                else:
                    pos, stop = _length(buf, pos, end)
                if tag == _T_TAGS:
                    tags.append(buf[pos:stop].decode())
                elif tag == _T_DOGSKETCHES:
                    _dogsketch(buf, pos, stop, out, ks, ns)
                elif tag == _T_METRIC:
                    metric = buf[pos:stop].decode()
                elif tag == _T_HOST:
                    host = buf[pos:stop].decode()
                elif tag == _T_DISTRIBUTIONS:
                    raise _Bad(_LEGACY)
                elif tag >> 3 == 0:
                    raise _Bad(f"field number 0 at byte {start}")
                pos = stop  # metadata and unknown fields: skipped
            elif tag >> 3 in _SKETCH_NAMES:
                raise _Bad(_wire_problem(tag, _LEN))
            else:
                pos = _skip(buf, pos, end, tag, start)
    except (_Bad, UnicodeDecodeError) as exc:
        what = _SKETCH_NAMES.get(tag >> 3, "")
        if tag == _T_TAGS:
            what = f"tags[{len(tags)}]"
        problem = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise PayloadError(_join(f"sketches[{len(out.metric)}]", what), problem) from None
    out.metric.append(metric)
    out.host.append(host)
    out.tags.append(tuple(tags))
    out.first_row.append(len(out.ts))


def _dogsketch(
    buf: bytes, pos: int, end: int, out: DecodedPayload, ks: _Segments, ns: _Segments
) -> None:
    row = len(out.ts)
    ts = cnt = 0
    vmin = vmax = total = 0.0
    tag = 0
    try:
        while pos < end:
            start = pos
            tag = buf[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = _varint(buf, pos, end)
            if tag in _T_DOUBLES:
                stop = pos + 8
                if stop > end:
                    raise _Bad("truncated")
                if tag == _T_MIN:
                    vmin = _DOUBLE.unpack_from(buf, pos)[0]
                elif tag == _T_MAX:
                    vmax = _DOUBLE.unpack_from(buf, pos)[0]
                elif tag == _T_SUM:
                    total = _DOUBLE.unpack_from(buf, pos)[0]
                # avg is sum / cnt: not kept
                pos = stop
            elif tag in _T_PACKED:  # a run of varints
                segments = ks if tag == _T_K_PACKED else ns
                pos, stop = _length(buf, pos, end)
                segments.starts.append(pos)
                segments.ends.append(stop)
                segments.rows.append(row)
                pos = stop
            elif tag in _T_VARINTS:
                value, pos = _varint(buf, pos, end)
                if value >= _I64_SIGN:  # int64: two's complement
                    value -= _U64_TOP
                if tag == _T_TS:
                    ts = value
                else:
                    cnt = value
            elif tag in _T_UNPACKED:  # one element of k or n, not packed
                segments = ks if tag == _T_K else ns
                stop = _varint(buf, pos, end)[1]
                segments.starts.append(pos)
                segments.ends.append(stop)
                segments.rows.append(row)
                pos = stop
            elif tag >> 3 in _DOG_WIRE:
                raise _Bad(_wire_problem(tag, _DOG_WIRE[tag >> 3]))
            else:
                pos = _skip(buf, pos, end, tag, start)
    except _Bad as exc:
        path = f"sketches[{len(out.metric)}].dogsketches[{row - out.first_row[-1]}]"
        raise PayloadError(_join(path, _DOG_NAMES.get(tag >> 3, "")), str(exc)) from None
    out.ts.append(ts)
    out.cnt.append(cnt)
    out.vmin.append(vmin)
    out.vmax.append(vmax)
    out.total.append(total)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if name else path


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """One varint at ``pos`` (at most 10 bytes, within ``end``) and the position after it."""
    if pos < end:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
    result = shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift == 63 and b > 1:
                raise _Bad("varint overflows 64 bits")
            return result, pos
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes")
    raise _Bad("truncated varint")


def _length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of the length-delimited value whose length varint is at ``pos``."""
    size, pos = _varint(buf, pos, end)
    stop = pos + size
    if stop > end:
        raise _Bad(f"truncated: {size} bytes announced, {end - pos} left")
    return pos, stop


def _skip(buf: bytes, pos: int, end: int, tag: int, start: int) -> int:
    """Position after the value of an unknown field (whose tag ended at ``pos``)."""
    number, wire = tag >> 3, tag & 7
    if number == 0:
        raise _Bad(f"field number 0 at byte {start}")
    if wire == _VARINT:
        return _varint(buf, pos, end)[1]
    if wire == _LEN:
        return _length(buf, pos, end)[1]
    if wire in (_I64, _I32):
        stop = pos + (8 if wire == _I64 else 4)
        if stop > end:
            raise _Bad(f"truncated field {number}")
        return stop
    if wire == _SGROUP:  # deprecated groups: skip to the matching end tag
        while pos < end:
            inner = pos
            inner_tag, pos = _varint(buf, pos, end)
            if inner_tag & 7 == _EGROUP:
                if inner_tag >> 3 != number:
                    raise _Bad(f"mismatched end of group (field {number})")
                return pos
            pos = _skip(buf, pos, end, inner_tag, inner)
        raise _Bad(f"unterminated group (field {number})")
    raise _Bad(f"invalid wire type {wire} (field {number}, byte {start})")


def _wire_problem(tag: int, expected: int) -> str:
    got = _WIRE_NAMES.get(tag & 7, str(tag & 7))
    return f"wire type {got}, expected {_WIRE_NAMES[expected]}"


def _packed(
    buf: bytes, seg: _Segments, out: DecodedPayload, *, signed: bool, name: str
) -> tuple[I64, I64]:
    """Decode the varints of every segment in one numpy pass: the values (zigzag-decoded
    for sint32) and CSR offsets per Dogsketch row. 32-bit fields: a value must fit."""
    rows = out.rows
    starts = np.array(seg.starts, dtype=np.int64)
    lengths = np.array(seg.ends, dtype=np.int64) - starts
    seg_rows = np.array(seg.rows, dtype=np.int64)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64), offsets
    data = np.frombuffer(buf, dtype=np.uint8)
    begin = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=begin[1:])
    b = data[np.arange(total, dtype=np.int64) + np.repeat(starts - begin, lengths)]
    last = b >= 0x80
    # A segment must end on a varint's last byte.
    filled = lengths > 0
    ends_open = last[(begin + lengths - 1)[filled]]
    if ends_open.any():
        r = int(seg_rows[filled][np.flatnonzero(ends_open)[0]])
        raise PayloadError(f"{out.path(r)}.{name}", "truncated varint")
    stops = np.flatnonzero(~last)  # the last byte of every varint
    firsts = np.empty_like(stops)
    firsts[0] = 0
    firsts[1:] = stops[:-1] + 1
    widths = stops - firsts + 1
    if widths.max() > 5:
        # 32-bit fields take at most 5 bytes, but encoders may sign-extend to 10: all of
        # them are out of range here (uint32 counts cannot be negative; sint32 is zigzag).
        first_bad = int(firsts[np.flatnonzero(widths > 5)[0]])
        r = int(seg_rows[np.searchsorted(begin, first_bad, "right") - 1])
        raise PayloadError(f"{out.path(r)}.{name}", "value out of 32-bit range")
    shift = (np.arange(total, dtype=np.int64) - np.repeat(firsts, widths)) * 7
    parts = (b & 0x7F).astype(np.int64) << shift
    values = np.add.reduceat(parts, firsts)
    if values.max() >= 1 << 32:
        first_bad = int(firsts[np.flatnonzero(values >= 1 << 32)[0]])
        r = int(seg_rows[np.searchsorted(begin, first_bad, "right") - 1])
        raise PayloadError(f"{out.path(r)}.{name}", "value out of 32-bit range")
    if signed:
        values = (values >> 1) ^ -(values & 1)
    # Values per row: the varints whose last byte lies in that row's segments.
    seg_of_value = np.searchsorted(begin, stops, "right") - 1
    per_row = np.bincount(seg_rows[seg_of_value], minlength=rows)
    np.cumsum(per_row, out=offsets[1:])
    return values, offsets


# --- request -> sketches -----------------------------------------------------------------


def parse_sketch_payload(
    body: bytes,
    org: str,
    window: TimeWindow,
    identities: SeriesIdentities | None = None,
    params: SketchParams | None = None,
) -> ParsedDistributions:
    """The decompressed body for ``org``; raises :class:`PayloadError`."""
    params = params or SketchParams()
    doc = decode_sketch_payload(body)
    _check(doc)
    if identities is None:
        identities = SeriesIdentities(len(doc.metric) + 1)
    builder = BatchBuilder(org, window)
    cnt = np.array(doc.cnt, dtype=np.int64)
    k_len = np.diff(doc.k_offsets)
    live = cnt > 0  # cnt 0 (its bins hold 0, checked): nothing to store, skipped
    keep = np.zeros(doc.rows, dtype=bool)
    first = doc.first_row
    live_before = np.zeros(doc.rows + 1, dtype=np.int64)
    np.cumsum(live, out=live_before[1:])
    live_per_sketch = (live_before[first[1:]] - live_before[first[:-1]]).tolist()
    for i, raw_metric in enumerate(doc.metric):
        n = live_per_sketch[i]
        if n == 0:
            continue
        tags, host = doc.tags[i], doc.host[i]
        key = (org, raw_metric, tags, host or None, None)
        ident = identities.get(key)
        if ident is None:
            full = tags + ((f"host:{host}",) if host else ())
            ident = identities.add(key, org, raw_metric, full)
        if ident.invalid is not None:
            builder.reject(raw_metric, RejectReason.INVALID_METRIC, n, ident.invalid)
            continue
        builder.add_series(ident, MetricType.DISTRIBUTION, 0, n)
        keep[first[i] : first[i + 1]] = True
    rows = np.flatnonzero(keep & live)
    vmin = np.array(doc.vmin, dtype=np.float64)
    vmax = np.array(doc.vmax, dtype=np.float64)
    total = np.array(doc.total, dtype=np.float64)
    finite = np.isfinite(vmin) & np.isfinite(vmax) & np.isfinite(total)
    # The builder's "value" of a point is its row, NaN when the row is not finite (the
    # builder then rejects it as non-finite, like a NaN value on the JSON path).
    index = np.where(finite[rows], rows.astype(np.float64), np.nan)
    parsed = builder.finish(np.array(doc.ts, dtype=np.int64)[rows], index)
    if not parsed.batches:
        return ParsedDistributions([], parsed.rejections, window, points=0, values=0)
    accepted = [b.points.value.astype(np.int64) for b in parsed.batches]
    take = np.concatenate(accepted)
    starts, sizes = doc.k_offsets[take], k_len[take]
    bin_offsets = np.zeros(take.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=bin_offsets[1:])
    bins = ranges(starts, sizes)
    try:
        converted = from_agent_bins(
            params,
            np.concatenate([b.points.sid for b in parsed.batches]),
            np.concatenate([b.points.ts for b in parsed.batches]),
            cnt[take],
            total[take],
            vmin[take],
            vmax[take],
            bin_offsets,
            doc.k_values[bins],
            doc.n_values[bins],
        )
    except SketchError as exc:  # pragma: no cover - _check refused what the kernel refuses
        raise PayloadError("sketches", str(exc)) from None
    batches = []
    at = 0
    for b, rows_of in zip(parsed.batches, accepted, strict=True):
        part = converted.take(np.arange(at, at + rows_of.size))
        at += rows_of.size
        sketches = SketchMessage(org, b.points.metric, part.merge_by_key())
        batches.append(MetricSketches(sketches, b.series))
    return ParsedDistributions(
        batches,
        parsed.rejections,
        window,
        points=parsed.accepted,
        values=int(cnt[take].sum()),
    )


def _check(doc: DecodedPayload) -> None:
    """Refuse rows whose bins cannot be what they claim (first in document order)."""
    if doc.rows == 0:
        return
    k_len = np.diff(doc.k_offsets)
    n_len = np.diff(doc.n_offsets)
    cnt = np.array(doc.cnt, dtype=np.int64)
    vmin = np.array(doc.vmin, dtype=np.float64)
    vmax = np.array(doc.vmax, dtype=np.float64)
    lengths_differ = k_len != n_len
    negative = cnt < 0
    bad_key = np.zeros(doc.rows, dtype=bool)
    if doc.k_values.size:
        key_rows = np.repeat(np.arange(doc.rows), k_len)
        bad_key[key_rows[np.abs(doc.k_values) > AGENT_INF_KEY]] = True
    sums = np.zeros(doc.rows, dtype=np.int64)
    same = ~lengths_differ
    if doc.n_values.size:
        n_rows = np.repeat(np.arange(doc.rows), n_len)
        sums = np.bincount(n_rows, weights=doc.n_values, minlength=doc.rows).astype(np.int64)
    mismatch = same & ~negative & (sums != cnt)
    min_above_max = (cnt > 0) & (vmin > vmax)  # NaN compares false: rejected as non-finite
    bad = lengths_differ | negative | bad_key | mismatch | min_above_max
    if not bad.any():
        return
    r = int(np.flatnonzero(bad)[0])
    path = doc.path(r)
    if lengths_differ[r]:
        raise PayloadError(f"{path}.n", f"{k_len[r]} keys (k) but {n_len[r]} counts (n)")
    if negative[r]:
        raise PayloadError(f"{path}.cnt", f"negative count {cnt[r]}")
    if bad_key[r]:
        ks = doc.k_values[doc.k_offsets[r] : doc.k_offsets[r + 1]]
        worst = int(ks[np.argmax(np.abs(ks))])
        raise PayloadError(f"{path}.k", f"key {worst} outside the agent's +-{AGENT_INF_KEY}")
    if mismatch[r]:
        raise PayloadError(f"{path}.cnt", f"count {cnt[r]} but the bins (n) hold {sums[r]}")
    raise PayloadError(f"{path}.min", f"min {float(vmin[r])!r} > max {float(vmax[r])!r}")
