"""Versioned columnar wire codec for Kafka message values (docs/formats.md).

Every message starts with a 4-byte header: magic ``b"SB"``, format version (u8), kind
(u8). All integers are little-endian. Readers accept every version ever written; anything
else raises :class:`UnreadableMessage`, whose reason the store runtime sends to the
dead-letter topic.

Version 1 kinds:

- ``POINTS`` (1): one (org, metric) batch of points as three columns sid/ts/value.
- ``SERIES`` (2): series announcements for the indexes: sid, index bucket, metric type,
  interval and the canonical tags of each series.
- ``SKETCHES`` (3): one (org, metric) batch of distribution sketches: the org and metric,
  then the columnar sketch batch encoding of :mod:`strata.sketch_codec` (sid, ts, bins).
- ``HEARTBEAT`` (4): a completeness marker intake writes to every partition of every topic
  (heartbeat/): everything intake accepted before ``marker_ms`` is before it in the
  partition. ``emit_ms`` is when the emitter sent the heartbeat (end-to-end lag).
"""

from __future__ import annotations

import itertools
import struct
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.sketch import SketchBatch

MAGIC = b"SB"
VERSION = 1
_HEADER = struct.Struct("<2sBB")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

_LE_SID = SID_DTYPE.newbyteorder("<")
_LE_TS = TS_DTYPE.newbyteorder("<")
_LE_VALUE = VALUE_DTYPE.newbyteorder("<")
_NATIVE_LE = sys.byteorder == "little"
_LE_U32 = np.dtype("<u4")


class Kind(IntEnum):
    POINTS = 1
    SERIES = 2
    SKETCHES = 3
    HEARTBEAT = 4
    METADATA = 5


_HEARTBEAT_BODY = struct.Struct("<qq")


class UnreadableMessage(ValueError):
    """A message this reader cannot decode; ``reason`` says why (goes to the dead letters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PointBatch:
    """Points of one (org, metric). Columns have equal length; rows are unordered."""

    org: str
    metric: str
    sid: npt.NDArray[np.uint64]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.sid.size)


@dataclass(frozen=True, slots=True)
class SeriesBatch:
    """Series announcements of one (org, metric): one row per (series, index bucket)."""

    org: str
    metric: str
    sid: npt.NDArray[np.uint64]
    bucket: npt.NDArray[np.int64]
    mtype: npt.NDArray[np.uint8]
    interval: npt.NDArray[np.uint32]
    tags: tuple[tuple[str, ...], ...]
    # A METADATA message (kind 5) on the series topic decodes to a batch without rows whose
    # ``metadata`` holds the update: fields to set (None = clear) of the metric's metadata.
    metadata: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.sid.size)


@dataclass(frozen=True, slots=True)
class SketchMessage:
    """Distribution sketches of one (org, metric): one row per (sid, ts), see
    :class:`strata.sketch.SketchBatch` (rows unordered; a repeated label is merged)."""

    org: str
    metric: str
    batch: SketchBatch

    def __len__(self) -> int:
        return len(self.batch)


@dataclass(frozen=True, slots=True)
class HeartbeatMarker:
    """Completeness marker: every message intake accepted before ``marker_ms`` (Unix ms)
    precedes this one in its partition; ``emit_ms`` is the emitter's send time."""

    marker_ms: int
    emit_ms: int


def encode_heartbeat(marker: HeartbeatMarker) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, Kind.HEARTBEAT) + _HEARTBEAT_BODY.pack(
        marker.marker_ms, marker.emit_ms
    )


def heartbeat_marker(buf: bytes) -> HeartbeatMarker | None:
    """The marker if ``buf`` is a heartbeat message, None if it is any other message
    (readable or not: the store's own decoder judges those). Raises
    :class:`UnreadableMessage` for a heartbeat of the wrong length."""
    if len(buf) < _HEADER.size or buf[:2] != MAGIC or buf[3] != Kind.HEARTBEAT:
        return None
    if buf[2] != VERSION:
        raise UnreadableMessage(f"unsupported format version {buf[2]}")
    if len(buf) != _HEADER.size + _HEARTBEAT_BODY.size:
        raise UnreadableMessage(f"heartbeat message of {len(buf)} bytes")
    marker_ms, emit_ms = _HEARTBEAT_BODY.unpack_from(buf, _HEADER.size)
    return HeartbeatMarker(marker_ms, emit_ms)


def _str(s: str) -> bytes:
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError("string too long for the wire format")
    return _U16.pack(len(b)) + b


def encode_points(batch: PointBatch) -> bytes:
    n = len(batch)
    if batch.ts.size != n or batch.value.size != n:
        raise ValueError("columns of a point batch must have equal length")
    return b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, Kind.POINTS),
            _str(batch.org),
            _str(batch.metric),
            _U32.pack(n),
            batch.sid.astype(_LE_SID, copy=False).tobytes(),
            batch.ts.astype(_LE_TS, copy=False).tobytes(),
            batch.value.astype(_LE_VALUE, copy=False).tobytes(),
        )
    )


def encode_series(batch: SeriesBatch) -> bytes:
    n = len(batch)
    cols = (batch.bucket, batch.mtype, batch.interval)
    if any(c.size != n for c in cols) or len(batch.tags) != n:
        raise ValueError("columns of a series batch must have equal length")
    # Canonical tags never contain "," (normalisation replaces it), so it is a safe joiner.
    blobs = [",".join(t).encode() for t in batch.tags]
    offsets = np.zeros(n + 1, dtype=_LE_U32)
    if n:
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, Kind.SERIES),
            _str(batch.org),
            _str(batch.metric),
            _U32.pack(n),
            batch.sid.astype(_LE_SID, copy=False).tobytes(),
            batch.bucket.astype(_LE_TS, copy=False).tobytes(),
            batch.mtype.astype(np.uint8, copy=False).tobytes(),
            batch.interval.astype(_LE_U32, copy=False).tobytes(),
            offsets.tobytes(),
            b"".join(blobs),
        )
    )


def encode_sketches(message: SketchMessage) -> bytes:
    # Imported here: strata.sketch_codec builds on this module (UnreadableMessage).
    from strata.sketch_codec import encode_batch

    return b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, Kind.SKETCHES),
            _str(message.org),
            _str(message.metric),
            encode_batch(message.batch),
        )
    )


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = _HEADER.size

    def take(self, size: int) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.buf):
            raise UnreadableMessage(f"truncated message: need {end} bytes, have {len(self.buf)}")
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def string(self) -> str:
        (size,) = _U16.unpack(self.take(2))
        try:
            return bytes(self.take(size)).decode()
        except UnicodeDecodeError as exc:
            raise UnreadableMessage(f"invalid UTF-8 string: {exc}") from exc

    def array(self, dtype: np.dtype[np.generic], n: int) -> npt.NDArray[np.generic]:
        raw = self.take(n * dtype.itemsize)
        # Copy into native byte order: callers get ordinary, aligned, writable arrays.
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise UnreadableMessage(f"{len(self.buf) - self.pos} trailing bytes")


def message_kind(buf: bytes) -> tuple[int, Kind]:
    """Return (version, kind) of a message, or raise :class:`UnreadableMessage`."""
    if len(buf) < _HEADER.size:
        raise UnreadableMessage("message shorter than the header")
    magic, version, kind = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise UnreadableMessage(f"bad magic {magic!r}")
    if version != VERSION:
        raise UnreadableMessage(f"unsupported format version {version}")
    try:
        return version, Kind(kind)
    except ValueError:
        raise UnreadableMessage(f"unknown message kind {kind}") from None


def decode_points(buf: bytes) -> PointBatch:
    # Every store decodes every points message (a few hundred points each), so the fixed
    # cost per message counts: header fields are read in place, and on little-endian hosts
    # the three 8-byte columns (back to back) are copied once into one aligned, writable
    # array and sliced, instead of a reader object, memoryviews and three conversions.
    _, kind = message_kind(buf)
    if kind is not Kind.POINTS:
        raise UnreadableMessage(f"expected a points message, got {kind.name}")
    if not _NATIVE_LE:
        return _decode_points_portable(buf)
    size = len(buf)
    pos = _HEADER.size
    try:
        (n_org,) = _U16.unpack_from(buf, pos)
        org_end = pos + 2 + n_org
        (n_metric,) = _U16.unpack_from(buf, org_end)
        metric_end = org_end + 2 + n_metric
        (n,) = _U32.unpack_from(buf, metric_end)
    except struct.error:
        return _decode_points_portable(buf)  # truncated: the reader names what is missing
    pos = metric_end + 4
    if size - pos != 24 * n:
        return _decode_points_portable(buf)  # truncated or trailing bytes, named there
    try:  # both strings lie inside the message: the count after them was read
        org = buf[_HEADER.size + 2 : org_end].decode()
        metric = buf[org_end + 2 : metric_end].decode()
    except UnicodeDecodeError as exc:
        raise UnreadableMessage(f"invalid UTF-8 string: {exc}") from exc
    cols = np.frombuffer(buf, dtype=np.uint64, count=3 * n, offset=pos).copy()
    return PointBatch(
        org, metric, cols[:n], cols[n : 2 * n].view(np.int64), cols[2 * n :].view(np.float64)
    )


def _decode_points_portable(buf: bytes) -> PointBatch:
    """Any host's byte order, and the error messages for malformed messages."""
    r = _Reader(buf)
    org, metric, n = r.string(), r.string(), r.u32()
    sid = r.array(_LE_SID, n)
    ts = r.array(_LE_TS, n)
    value = r.array(_LE_VALUE, n)
    r.done()
    return PointBatch(org, metric, sid, ts, value)  # type: ignore[arg-type]


def encode_metadata(org: str, metric: str, fields: dict[str, Any]) -> bytes:
    """A metric metadata update for the series topic (keyed ``org|metric``): the tag
    index merges ``fields`` into the metric's metadata, in log order (None clears)."""
    body = orjson.dumps(fields)
    return b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, Kind.METADATA),
            _str(org),
            _str(metric),
            _U32.pack(len(body)),
            body,
        )
    )


def merge_metadata(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """How a reader applies a metadata update: ``fields`` merged into ``current``, a None
    value clearing its field."""
    out = dict(current)
    for name, value in fields.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def _decode_metadata(buf: bytes) -> SeriesBatch:
    r = _Reader(buf)
    org, metric, n = r.string(), r.string(), r.u32()
    blob = bytes(r.take(n))
    r.done()
    try:
        fields = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise UnreadableMessage(f"metadata is not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise UnreadableMessage("metadata is not a JSON object")
    empty = np.empty(0, dtype=SID_DTYPE)
    return SeriesBatch(
        org,
        metric,
        empty,
        np.empty(0, dtype=TS_DTYPE),
        np.empty(0, dtype=np.uint8),
        np.empty(0, dtype=np.uint32),
        (),
        metadata=fields,
    )


def decode_series(buf: bytes) -> SeriesBatch:
    """A series-topic message: series announcements (kind 2) or a metadata update
    (kind 5, a batch without rows carrying ``metadata``)."""
    _, kind = message_kind(buf)
    if kind is Kind.METADATA:
        return _decode_metadata(buf)
    if kind is not Kind.SERIES:
        raise UnreadableMessage(f"expected a series message, got {kind.name}")
    r = _Reader(buf)
    org, metric, n = r.string(), r.string(), r.u32()
    sid = r.array(_LE_SID, n)
    bucket = r.array(_LE_TS, n)
    mtype = r.array(np.dtype(np.uint8), n)
    interval = r.array(_LE_U32, n)
    offsets = r.array(_LE_U32, n + 1)
    blob = bytes(r.take(int(offsets[-1]) if n else 0))
    r.done()
    if n and (offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) < 0)):
        raise UnreadableMessage("tag offsets are not monotonic")
    try:
        text = blob.decode()
    except UnicodeDecodeError as exc:
        raise UnreadableMessage(f"invalid UTF-8 in tags: {exc}") from exc
    bounds = offsets.tolist()
    if len(text) != len(blob):
        # Offsets are byte offsets; decode per series when non-ASCII is present.
        try:
            tags = tuple(
                tuple(t for t in blob[a:b].decode().split(",") if t)
                for a, b in itertools.pairwise(bounds)
            )
        except UnicodeDecodeError as exc:
            raise UnreadableMessage(f"tag offsets split a UTF-8 character: {exc}") from exc
    else:
        tags = tuple(
            tuple(t for t in text[a:b].split(",") if t) for a, b in itertools.pairwise(bounds)
        )
    return SeriesBatch(org, metric, sid, bucket, mtype, interval, tags)  # type: ignore[arg-type]


def decode_sketches(buf: bytes) -> SketchMessage:
    """A kind-3 message; :class:`UnreadableMessage` (its ``UnreadableSketch`` subclass for
    the batch) names what is wrong."""
    from strata.sketch_codec import decode_batch

    _, kind = message_kind(buf)
    if kind is not Kind.SKETCHES:
        raise UnreadableMessage(f"expected a sketches message, got {kind.name}")
    r = _Reader(buf)
    org, metric = r.string(), r.string()
    batch = decode_batch(bytes(r.take(len(buf) - r.pos)))
    return SketchMessage(org, metric, batch)
