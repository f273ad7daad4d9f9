"""Request bodies: size limits and bounded decompression (pure: bytes in, bytes out).

Limits follow Datadog's documentation. The wire limit applies to the body as received,
whatever its encoding; the decompressed limit applies to what decompression yields.
Decompression never produces more than ``limit + 1`` bytes, so a zip bomb costs at most
that much memory before it is refused.

gzip and deflate go through ISA-L's inflate (``isal``, the zlib module's interface): a
1 000-point series body costs 0.09 ms instead of zlib's 0.46 ms at gzip level 1, 0.06
instead of 0.19 at level 6 (docs/benchmarks.md, "Intake hot path"), about 7 % of
intake's CPU per point in the agent shape. Same formats, same errors (``isal_zlib.error``).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from typing import cast

import zstandard
from isal import igzip, isal_zlib

# isal's stub declares ``error`` as an instance of Exception; at run time it is the class.
_InflateError = cast(type[Exception], isal_zlib.error)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    wire: int  # bytes as received (compressed or not)
    decompressed: int


V2_LIMITS = BodyLimits(wire=512_000, decompressed=5_242_880)
V1_LIMITS = BodyLimits(wire=3_200_000, decompressed=62_914_560)


class BodyError(ValueError):
    """A body that cannot be accepted; ``status`` is the HTTP status to answer with."""

    status = 400


class PayloadTooLarge(BodyError):
    status = 413


class UnsupportedEncoding(BodyError):
    status = 415


class UndecodableBody(BodyError):
    """Corrupt or truncated compressed data."""


_GZIP = ("gzip", "x-gzip")
_DEFLATE = ("deflate",)
# "zstd1" is what the Datadog agent sends.
_ZSTD = ("zstd", "zstd1")
_IDENTITY = ("", "identity")


def check_wire_size(size: int, limits: BodyLimits) -> None:
    """Raise :class:`PayloadTooLarge` when ``size`` bytes exceed the wire limit."""
    if size > limits.wire:
        raise PayloadTooLarge(
            f"Payload too large: {size} bytes exceeds the {limits.wire}-byte limit"
        )


def decode_body(body: bytes, content_encoding: str | None, limits: BodyLimits) -> bytes:
    """Return the decompressed body.

    Raises :class:`PayloadTooLarge` (either limit exceeded), :class:`UnsupportedEncoding`
    (an encoding other than identity, gzip, deflate, zstd/zstd1) or
    :class:`UndecodableBody` (corrupt or truncated data).
    """
    check_wire_size(len(body), limits)
    encoding = (content_encoding or "").strip().lower()
    if encoding in _IDENTITY:
        out = body
    elif encoding in _GZIP:
        out = _inflate(body, isal_zlib.MAX_WBITS | 16, limits.decompressed, "gzip")
    elif encoding in _DEFLATE:
        # HTTP "deflate" means the zlib format, but some clients send raw deflate.
        try:
            out = _inflate(body, isal_zlib.MAX_WBITS, limits.decompressed, "deflate")
        except _TooManyStreams:
            raise
        except UndecodableBody:
            out = _inflate(body, -isal_zlib.MAX_WBITS, limits.decompressed, "deflate")
    elif encoding in _ZSTD:
        out = _unzstd(body, limits.decompressed)
    else:
        raise UnsupportedEncoding(
            f"Unsupported Content-Encoding {encoding[:40]!r}: use gzip, deflate or zstd1"
        )
    if len(out) > limits.decompressed:
        raise PayloadTooLarge(_too_large_decompressed(limits.decompressed))
    return out


def _too_large_decompressed(limit: int) -> str:
    return f"Payload too large: decompressed body exceeds the {limit}-byte limit"


def _inflate(body: bytes, wbits: int, limit: int, name: str) -> bytes:
    parts: list[bytes] = []
    produced = 0
    data = body
    try:
        # A loop because gzip allows several concatenated members. Each turn copies the rest
        # of the body (``unused_data``), so it is bounded: 150 000 empty members in a 3 MB
        # body took 14 s here. Past a few, gzip's further members go to igzip's reader, which
        # walks them in C.
        for _ in range(_INFLATE_MEMBERS):
            d = isal_zlib.decompressobj(wbits)
            chunk = d.decompress(data, limit + 1 - produced)
            parts.append(chunk)
            produced += len(chunk)
            if produced > limit:
                raise PayloadTooLarge(_too_large_decompressed(limit))
            if not d.eof:
                raise UndecodableBody(f"{name} body is truncated")
            data = d.unused_data
            if not data or (name == "gzip" and data[:1] == b"\0" and not data.strip(b"\0")):
                return b"".join(parts)  # the end, or gzip's zero padding (as gzip(1) takes)
    except _InflateError as exc:
        raise UndecodableBody(f"{name} body is corrupt: {exc}") from None
    if name != "gzip":
        raise _TooManyStreams(
            f"{name} body is corrupt: more than {_INFLATE_MEMBERS} concatenated streams"
        )
    parts.append(_gunzip_members(data, limit, produced))
    return b"".join(parts)


# Members (streams) inflated one Python call each.
_INFLATE_MEMBERS = 4


class _TooManyStreams(UndecodableBody):
    """A zlib body of more streams than :data:`_INFLATE_MEMBERS` (not retried as raw
    deflate, whose error would not name the problem)."""


def _gunzip_members(data: bytes, limit: int, produced: int) -> bytes:
    """The gzip members of ``data`` (what follows the first ones of a body, ``produced``
    bytes so far), at most ``limit`` bytes in all. Like gzip(1), zero bytes after the last
    member are taken as padding."""
    # isal's igzip.py carries no annotations; IGzipFile is a gzip.GzipFile.
    reader: gzip.GzipFile = igzip.IGzipFile(fileobj=io.BytesIO(data))  # type: ignore[no-untyped-call]
    try:
        with reader:
            out = reader.read(limit + 1 - produced)
    except EOFError:
        raise UndecodableBody("gzip body is truncated") from None
    except (OSError, _InflateError) as exc:  # BadGzipFile is an OSError
        raise UndecodableBody(f"gzip body is corrupt: {exc}") from None
    if produced + len(out) > limit:
        raise PayloadTooLarge(_too_large_decompressed(limit))
    return out


def _unzstd(body: bytes, limit: int) -> bytes:
    # Bound the decoder's window too: a frame may not demand more memory than the limit.
    window = 1 << max(20, min(limit.bit_length(), 27))
    parts: list[bytes] = []
    produced = 0
    rest = body
    for _ in range(_SIZED_FRAMES):
        frame = _sized_zstd_frame(rest, limit - produced, window)
        if frame is None:
            break
        out, rest = frame
        parts.append(out)
        produced += len(out)
        if not rest:
            return b"".join(parts)
    # No declared size (a streaming compressor), too big, corrupt, or more frames than the
    # one-call path takes: the bounded stream reader decodes the rest in C, or names what is
    # wrong with it.
    parts.append(_zstd_stream(rest, limit, window, produced))
    return b"".join(parts)


# Frames decompressed one call each before the stream reader takes over: a Python loop per
# frame would let a body of 50 000 empty frames (450 KB) hold the event loop for a second.
_SIZED_FRAMES = 4


def _sized_zstd_frame(body: bytes, budget: int, window: int) -> tuple[bytes, bytes] | None:
    """The frame ``body`` starts with, when it declares a content size of at most
    ``budget`` (what the agent's compressor writes), decompressed in one call, and the bytes
    after it (none from the agent): 0.1 ms for a 1 000-point series body against
    0.23-0.33 ms through the stream reader. zstd refuses a frame whose content outgrows the
    size it declares, so the output stays within the budget. ``None`` for anything else."""
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError:
        return None
    if not 0 <= declared <= budget:
        return None
    frame = zstandard.ZstdDecompressor(max_window_size=window).decompressobj()
    try:
        out = frame.decompress(body)
    except zstandard.ZstdError:
        return None
    if not frame.eof:
        return None
    return out, frame.unused_data


def _zstd_stream(body: bytes, limit: int, window: int, produced: int) -> bytes:
    """Every frame of ``body`` through the stream reader, which stops at ``limit`` bytes in
    all (``produced`` of them already decoded from earlier frames of the request)."""
    dctx = zstandard.ZstdDecompressor(max_window_size=window)
    parts: list[bytes] = []
    total = produced
    try:
        with dctx.stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
            while total <= limit:
                chunk = reader.read(limit + 1 - total)
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
    except zstandard.ZstdError as exc:
        raise UndecodableBody(f"zstd body is corrupt: {exc}") from None
    if total > limit:
        raise PayloadTooLarge(_too_large_decompressed(limit))
    # The stream reader ends quietly where its input does, even inside a frame (after a
    # complete one, it returns that one's content as if the body ended there); a pass frame
    # by frame sees the cut. It decodes at most what the reader just did, so these rare
    # bodies (the agent's have one sized frame) cost two decompressions.
    _require_complete_frames(dctx, body)
    return b"".join(parts)


# Frames the completeness pass walks (one Python call each); a body of more frames, which no
# client writes, is checked no further.
_CHECKED_FRAMES = 16


def _require_complete_frames(dctx: zstandard.ZstdDecompressor, body: bytes) -> None:
    rest = body
    for _ in range(_CHECKED_FRAMES):
        if not rest:
            return
        frame = dctx.decompressobj()
        try:
            frame.decompress(rest)
        except zstandard.ZstdError as exc:
            raise UndecodableBody(f"zstd body is corrupt: {exc}") from None
        if not frame.eof:
            raise UndecodableBody("zstd body is truncated or not zstd")
        rest = frame.unused_data
