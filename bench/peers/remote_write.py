"""Prometheus remote-write 1.0 request bodies, encoded by hand from workload columns.

Remote write is a snappy-compressed (block format, not framed) protobuf ``WriteRequest``
(prometheus/prompb/remote.proto, types.proto)::

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds

A tiny encoder instead of generated protobuf classes: labels are encoded once per series,
samples for a whole request at once with numpy (one byte matrix, a mask of the bytes each
sample really has, one boolean index), so preparing millions of samples costs no Python
object per sample. Output is byte-identical to a proto3 serializer: fields holding their
default value (0.0, timestamp 0, empty string) are left out, fields go in number order.
Snappy comes from pyarrow's codec (already a Strata dependency), which writes the raw block
format the receiver expects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
PATH = "/api/v1/write"

# field tags: (number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited)
_TIMESERIES = 0x0A  # WriteRequest.timeseries = 1, bytes
_LABEL = 0x0A  # TimeSeries.labels = 1, bytes
_SAMPLE = 0x12  # TimeSeries.samples = 2, bytes
_NAME = 0x0A  # Label.name = 1, bytes
_VALUE = 0x12  # Label.value = 2, bytes
_SAMPLE_VALUE = 0x09  # Sample.value = 1, fixed64
_SAMPLE_TS = 0x10  # Sample.timestamp = 2, varint
_MAX_VARINT = 10
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of ``n`` (negative ints as their 64-bit two's complement)."""
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def metric_name(metric: str) -> str:
    """A Datadog metric name as a Prometheus one (``cpu.usage_user`` -> ``cpu_usage_user``)."""
    name = _INVALID_NAME.sub("_", metric)
    return "_" + name if name[:1].isdigit() else name


def labels_for(metric: str, tags: Sequence[str]) -> list[tuple[str, str]]:
    """Prometheus labels of a series: ``__name__`` plus one label per ``key:value`` tag
    (bare tags and repeated keys have no label form and are refused), sorted by name as
    the TSDB requires."""
    out = {"__name__": metric_name(metric)}
    for tag in tags:
        key, sep, value = tag.partition(":")
        if not sep or not key:
            raise ValueError(f"tag {tag!r} has no key:value form")
        name = _INVALID_LABEL.sub("_", key)
        if name in out:
            raise ValueError(f"label {name!r} given twice")
        out[name] = value
    return sorted(out.items())


def encode_labels(labels: Sequence[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of one TimeSeries (each a length-delimited Label)."""
    out = bytearray()
    for name, value in labels:
        inner = b""
        if name:
            inner += _field(_NAME, name.encode())
        if value:
            inner += _field(_VALUE, value.encode())
        out += _field(_LABEL, inner)
    return bytes(out)


def _varint_lengths(x: U64) -> I64:
    n = np.ones(x.shape, dtype=np.int64)
    for k in range(1, _MAX_VARINT):
        n += x >= np.uint64(1 << (7 * k))
    return n


def encode_samples(ts_ms: I64, value: F64) -> tuple[bytes, I64]:
    """Every sample as a ``TimeSeries.samples`` field (tag, length, Sample), concatenated
    in order; returns the bytes and each sample's byte count (to cut them per series)."""
    n = ts_ms.size
    uts = ts_ms.astype(np.int64).view(np.uint64)
    bits = value.astype("<f8").view(np.uint64)
    has_value = bits != 0
    has_ts = uts != 0
    vlen = _varint_lengths(uts)
    body = np.where(has_value, 9, 0) + np.where(has_ts, 1 + vlen, 0)  # Sample length (< 128)
    width = 2 + 9 + 1 + _MAX_VARINT
    buf = np.zeros((n, width), dtype=np.uint8)
    keep = np.zeros((n, width), dtype=bool)
    buf[:, 0] = _SAMPLE
    buf[:, 1] = body
    keep[:, :2] = True
    buf[:, 2] = _SAMPLE_VALUE
    buf[:, 3:11] = value.astype("<f8").view(np.uint8).reshape(n, 8)
    keep[:, 2:11] = has_value[:, None]
    buf[:, 11] = _SAMPLE_TS
    keep[:, 11] = has_ts
    k = np.arange(_MAX_VARINT)
    groups = (uts[:, None] >> (np.uint64(7) * k.astype(np.uint64))) & np.uint64(0x7F)
    more = k[None, :] < (vlen[:, None] - 1)
    buf[:, 12:] = (groups | np.where(more, 0x80, 0).astype(np.uint64)).astype(np.uint8)
    keep[:, 12:] = (k[None, :] < vlen[:, None]) & has_ts[:, None]
    return buf[keep].tobytes(), 2 + body


def write_request(labels: Sequence[bytes], series: I64, ts_ms: I64, value: F64) -> bytes:
    """A serialized (uncompressed) WriteRequest: one TimeSeries per distinct entry of
    ``series`` in order of first appearance, holding that series' samples in the given
    order. ``labels[i]`` is :func:`encode_labels` of series ``i``."""
    if not series.size == ts_ms.size == value.size:
        raise ValueError("series, ts_ms and value must have equal lengths")
    if series.size == 0:
        return b""
    order = np.argsort(series, kind="stable")
    sample_bytes, sizes = encode_samples(ts_ms[order], value[order])
    ends = np.cumsum(sizes)
    sorted_series = series[order]
    starts_idx = np.flatnonzero(np.r_[True, sorted_series[1:] != sorted_series[:-1]])
    stops_idx = np.r_[starts_idx[1:], series.size]
    byte_lo = np.r_[0, ends][starts_idx]
    byte_hi = ends[stops_idx - 1]
    firsts = order[starts_idx]  # position of each series' first sample in the request
    out = bytearray()
    for j in np.argsort(firsts, kind="stable").tolist():
        s = int(sorted_series[starts_idx[j]])
        ts_msg = labels[s] + sample_bytes[int(byte_lo[j]) : int(byte_hi[j])]
        out += bytes((_TIMESERIES,)) + varint(len(ts_msg)) + ts_msg
    return bytes(out)


def compress(raw: bytes) -> bytes:
    """Snappy block format, as remote write sends it."""
    return bytes(pa.Codec("snappy").compress(raw, asbytes=True))


def body(labels: Sequence[bytes], series: I64, ts_ms: I64, value: F64) -> bytes:
    """A remote-write HTTP body: the snappy-compressed :func:`write_request`."""
    return compress(write_request(labels, series, ts_ms, value))
