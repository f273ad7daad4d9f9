"""Body decompression and size limits (intake.decode)."""

from __future__ import annotations

import contextlib
import gzip
import random
import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
import zstandard

from intake import decode
from intake.decode import (
    V1_LIMITS,
    V2_LIMITS,
    BodyLimits,
    PayloadTooLarge,
    UndecodableBody,
    UnsupportedEncoding,
    _sized_zstd_frame,
    decode_body,
)

BODY = b'{"series": [{"metric": "cpu.user", "points": []}]}' * 50


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd1": zstandard.ZstdCompressor().compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("encoding", [None, "", "identity"])
def test_plain_body_is_returned_unchanged(encoding: str | None) -> None:
    assert decode_body(BODY, encoding, V2_LIMITS) == BODY


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_each_encoding_round_trips(encoding: str) -> None:
    assert decode_body(ENCODERS[encoding](BODY), encoding, V2_LIMITS) == BODY


def test_encoding_name_is_case_insensitive() -> None:
    assert decode_body(gzip.compress(BODY), " GZIP ", V2_LIMITS) == BODY


def test_raw_deflate_is_accepted_too() -> None:
    assert decode_body(_raw_deflate(BODY), "deflate", V2_LIMITS) == BODY


def test_concatenated_gzip_members() -> None:
    assert decode_body(gzip.compress(BODY) * 2, "gzip", V2_LIMITS) == BODY * 2


def test_unknown_encoding_is_415() -> None:
    with pytest.raises(UnsupportedEncoding, match="br") as info:
        decode_body(BODY, "br", V2_LIMITS)
    assert info.value.status == 415


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_corrupt_body_is_400(encoding: str) -> None:
    with pytest.raises(UndecodableBody) as info:
        decode_body(b"this is not compressed at all", encoding, V2_LIMITS)
    assert info.value.status == 400


def test_truncated_gzip_is_400() -> None:
    with pytest.raises(UndecodableBody, match="truncated"):
        decode_body(gzip.compress(BODY)[:-8], "gzip", V2_LIMITS)


@pytest.mark.parametrize(("encoding", "where"), [("gzip", -8), ("deflate", -1)])
def test_checksum_mismatch_is_400(encoding: str, where: int) -> None:
    """The gzip trailer's CRC-32 and the zlib trailer's Adler-32 are checked."""
    body = bytearray(ENCODERS[encoding](BODY))
    body[where] ^= 1
    with pytest.raises(UndecodableBody, match="corrupt") as info:
        decode_body(bytes(body), encoding, V2_LIMITS)
    assert info.value.status == 400


def _zstd_frames(*parts: bytes, sized: bool = True) -> bytes:
    c = zstandard.ZstdCompressor(level=1)
    if sized:  # one-shot: the frame header declares its content size (as the agent writes)
        return b"".join(c.compress(p) for p in parts)
    out = []
    for p in parts:  # streamed: no content size in the header
        z = c.compressobj()
        out.append(z.compress(p) + z.flush())
    return b"".join(out)


@pytest.mark.parametrize("sized", [True, False])
def test_zstd_bodies_of_one_or_several_frames_decode(sized: bool) -> None:
    assert decode_body(_zstd_frames(BODY, sized=sized), "zstd1", V2_LIMITS) == BODY
    two = _zstd_frames(BODY, b"[1]", sized=sized)
    assert decode_body(two, "zstd1", V2_LIMITS) == BODY + b"[1]"
    # A frame that declares its size takes the one-call path, and hands on what follows it.
    one = _sized_zstd_frame(_zstd_frames(BODY, sized=sized), V2_LIMITS.decompressed, 1 << 23)
    assert one == ((BODY, b"") if sized else None)
    first = _sized_zstd_frame(two, V2_LIMITS.decompressed, 1 << 23)
    assert first == ((BODY, _zstd_frames(b"[1]")) if sized else None)


def test_sized_frames_are_decompressed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few frames that declare their sizes never reach the stream reader, so no frame is
    decompressed twice; one without a declared size hands the rest over to it."""
    streamed: list[bytes] = []
    real = decode._zstd_stream

    def stream(body: bytes, limit: int, window: int, produced: int) -> bytes:
        streamed.append(body)
        return real(body, limit, window, produced)

    monkeypatch.setattr(decode, "_zstd_stream", stream)
    parts = (BODY, b"[1]", b"", b"[2]")
    assert decode_body(_zstd_frames(*parts), "zstd1", V2_LIMITS) == b"".join(parts)
    assert streamed == []
    mixed = _zstd_frames(BODY) + _zstd_frames(b"[1]", b"[2]", sized=False)
    assert decode_body(mixed, "zstd1", V2_LIMITS) == BODY + b"[1][2]"
    assert streamed == [_zstd_frames(b"[1]", b"[2]", sized=False)]


def test_many_frames_go_to_the_stream_reader_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python call per frame would let a 450 KB body of 50 000 empty frames hold the event
    loop for a second: past a few frames the stream reader decodes the rest, and the
    completeness pass walks only the first frames."""
    calls: list[int] = []
    real = decode._sized_zstd_frame

    def counted(body: bytes, budget: int, window: int) -> tuple[bytes, bytes] | None:
        calls.append(len(body))
        return real(body, budget, window)

    monkeypatch.setattr(decode, "_sized_zstd_frame", counted)
    for sized in (True, False):
        calls.clear()
        many = _zstd_frames(*[b"[1]"] * 20_000, sized=sized)
        assert decode_body(many, "zstd1", V2_LIMITS) == b"[1]" * 20_000
        assert len(calls) == (decode._SIZED_FRAMES if sized else 1)
    # A cut frame past the checked ones is not seen (no client writes so many frames).
    late_cut = _zstd_frames(*[b"[1]"] * 20, sized=False) + _zstd_frames(BODY)[:8]
    assert decode_body(late_cut, "zstd1", V2_LIMITS) == b"[1]" * 20


SKIPPABLE = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"


@pytest.mark.parametrize("sized", [True, False])
def test_skippable_and_empty_frames_are_taken(sized: bool) -> None:
    assert decode_body(_zstd_frames(BODY, sized=sized) + SKIPPABLE, "zstd1", V2_LIMITS) == BODY
    assert decode_body(SKIPPABLE + _zstd_frames(BODY, sized=sized), "zstd1", V2_LIMITS) == BODY
    assert decode_body(_zstd_frames(b"", sized=sized), "zstd1", V2_LIMITS) == b""


@pytest.mark.parametrize("first_sized", [True, False])
@pytest.mark.parametrize("second_sized", [True, False])
@pytest.mark.parametrize("keep", [4, 8, 0.5, -1])
def test_a_frame_cut_short_after_a_complete_one_is_400(
    first_sized: bool, second_sized: bool, keep: float
) -> None:
    """The stream reader returns the complete frames and stops quietly at a cut one (the
    magic number alone, a header, half a frame, all but its last byte): such a body was
    taken as if it ended after the first frame."""
    second = _zstd_frames(BODY, sized=second_sized)
    cut = int(len(second) * keep) if isinstance(keep, float) else keep % len(second)
    body = _zstd_frames(b'{"series": []}', sized=first_sized) + second[:cut]
    with pytest.raises(UndecodableBody, match=r"truncated|corrupt") as info:
        decode_body(body, "zstd1", V2_LIMITS)
    assert info.value.status == 400


@pytest.mark.parametrize("sized", [True, False])
def test_zstd_frame_followed_by_junk_is_400(sized: bool) -> None:
    with pytest.raises(UndecodableBody, match=r"corrupt|truncated"):
        decode_body(_zstd_frames(BODY, sized=sized) + b"xyz", "zstd1", V2_LIMITS)
    with pytest.raises(UndecodableBody, match=r"corrupt|truncated"):
        decode_body(_zstd_frames(BODY, sized=sized) + b"\x28\xb5\x2f\xfd", "zstd1", V2_LIMITS)


def test_frames_beyond_the_limit_together_are_413() -> None:
    """Two sized frames each within the limit, not together: the limit is the body's."""
    half = b"x" * (V2_LIMITS.decompressed // 2 + 1)
    with pytest.raises(PayloadTooLarge) as info:
        decode_body(_zstd_frames(half, half), "zstd1", V2_LIMITS)
    assert f"exceeds the {V2_LIMITS.decompressed}-byte limit" in str(info.value)


def test_zstd_frame_that_outgrows_its_declared_size_is_400() -> None:
    """A header that declares 300 bytes for 1 MB of content: the one-call path refuses it
    without decompressing it (zstd checks the declared size), and the stream reader, which
    then decides, answers 400 (within its own limit + 1 bound, tested above)."""
    frame = bytearray(_zstd_frames(bytes(range(256)) * 4000))
    assert zstandard.frame_content_size(bytes(frame)) == 1_024_000
    assert frame[4] == 0b10000000  # 4-byte content size after the window descriptor
    frame[6:10] = (300).to_bytes(4, "little")
    tracemalloc.start()
    try:
        assert _sized_zstd_frame(bytes(frame), V2_LIMITS.decompressed, 1 << 23) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300_000
    with pytest.raises(UndecodableBody):
        decode_body(bytes(frame), "zstd1", V2_LIMITS)


def test_many_gzip_members_are_walked_in_c() -> None:
    """Each member inflated in Python copies the rest of the body: 150 000 empty members in a
    3 MB v1 body took 14 s. Past the first few, igzip's reader walks them (30 ms here)."""
    body = gzip.compress(b"", compresslevel=1) * 150_000 + gzip.compress(BODY)
    assert len(body) < V1_LIMITS.wire
    t = time.process_time()
    assert decode_body(body, "gzip", V1_LIMITS) == BODY
    assert time.process_time() - t < 2.0
    members = [gzip.compress(b"[%d]" % i) for i in range(10)]
    assert decode_body(b"".join(members), "gzip", V2_LIMITS) == b"".join(
        b"[%d]" % i for i in range(10)
    )
    # Zero padding after the last member is taken, as gzip(1) takes it, however many.
    assert decode_body(b"".join(members) + bytes(16), "gzip", V2_LIMITS).endswith(b"[9]")
    assert decode_body(members[0] + bytes(16), "gzip", V2_LIMITS) == b"[0]"
    with pytest.raises(UndecodableBody, match="corrupt"):  # but nothing else
        decode_body(members[0] + bytes(16) + b"x", "gzip", V2_LIMITS)


def test_bad_later_gzip_members_are_refused() -> None:
    five = gzip.compress(b"[1]") * 5
    good = gzip.compress(BODY)
    with pytest.raises(UndecodableBody, match="truncated"):
        decode_body(five + good[:-8], "gzip", V2_LIMITS)
    flipped = bytearray(good)
    flipped[-8] ^= 1  # the CRC-32
    with pytest.raises(UndecodableBody, match="corrupt"):
        decode_body(five + bytes(flipped), "gzip", V2_LIMITS)
    bomb = gzip.compress(b"0" * (V2_LIMITS.decompressed + 1))
    with pytest.raises(PayloadTooLarge):
        decode_body(five + bomb, "gzip", V2_LIMITS)
    rng = random.Random(7)
    for _ in range(200):  # whatever follows: a 400 or a 413, never anything else
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        cut = good[:20] if rng.random() < 0.5 else b""
        with contextlib.suppress(UndecodableBody, PayloadTooLarge):
            decode_body(five + cut + tail, "gzip", V2_LIMITS)


def test_more_than_a_few_concatenated_deflate_streams_are_refused() -> None:
    body = zlib.compress(b"[1]") * 5
    with pytest.raises(UndecodableBody, match="more than 4 concatenated streams"):
        decode_body(body, "deflate", V2_LIMITS)
    assert decode_body(zlib.compress(b"[1]") * 4, "deflate", V2_LIMITS) == b"[1]" * 4


def test_bodies_of_every_gzip_level_decode() -> None:
    """What real clients send: the agent's and the Python clients' levels, 1 to 9."""
    body = BODY * 100
    for level in range(1, 10):
        assert decode_body(gzip.compress(body, compresslevel=level), "gzip", V2_LIMITS) == body


@pytest.mark.parametrize(("limits", "wire"), [(V2_LIMITS, 512_000), (V1_LIMITS, 3_200_000)])
def test_wire_limit_is_413(limits: BodyLimits, wire: int) -> None:
    assert decode_body(b" " * wire, None, limits)  # exactly at the limit is fine
    with pytest.raises(PayloadTooLarge, match=f"{wire}-byte limit") as info:
        decode_body(b" " * (wire + 1), None, limits)
    assert info.value.status == 413


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize(
    ("limits", "decompressed"), [(V2_LIMITS, 5_242_880), (V1_LIMITS, 62_914_560)]
)
def test_decompressed_limit_is_413(encoding: str, limits: BodyLimits, decompressed: int) -> None:
    at_limit = ENCODERS[encoding](b" " * decompressed)
    assert len(decode_body(at_limit, encoding, limits)) == decompressed
    over = ENCODERS[encoding](b" " * (decompressed + 1))
    with pytest.raises(PayloadTooLarge, match=f"decompressed body exceeds the {decompressed}"):
        decode_body(over, encoding, limits)


def _bomb(encoding: str, size: int) -> bytes:
    chunk = b"\0" * (1 << 20)
    if encoding == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    elif encoding == "deflate":
        c = zlib.compressobj(9)
    else:
        z = zstandard.ZstdCompressor().compressobj()
        return b"".join([*(z.compress(chunk) for _ in range(size >> 20)), z.flush()])
    return b"".join([*(c.compress(chunk) for _ in range(size >> 20)), c.flush()])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd1"])
def test_zip_bomb_allocates_at_most_about_the_limit(encoding: str) -> None:
    limits = BodyLimits(wire=V2_LIMITS.wire, decompressed=1 << 20)
    bomb = _bomb(encoding, 256 << 20)  # 256 MiB of zeros in a few hundred KiB
    assert len(bomb) < limits.wire
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, encoding, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # limit + 1 bytes of output, plus bookkeeping; never the 256 MiB the bomb expands to.
    assert peak < 3 * limits.decompressed
