"""Golden vectors: bytes written by format version 1 must decode forever (docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from strata.codec import (
    HeartbeatMarker,
    Kind,
    PointBatch,
    SeriesBatch,
    UnreadableMessage,
    decode_points,
    decode_series,
    encode_heartbeat,
    encode_metadata,
    encode_points,
    encode_series,
    heartbeat_marker,
    message_kind,
)

GOLDEN = Path(__file__).parent.parent / "golden"


def _golden(name: str) -> bytes:
    return bytes.fromhex((GOLDEN / name).read_text().strip())


def test_points_v1_golden_decodes() -> None:
    raw = _golden("points_v1.hex")
    assert message_kind(raw) == (1, Kind.POINTS)
    b = decode_points(raw)
    assert (b.org, b.metric) == ("acme", "system.load.1")
    assert b.sid.tolist() == [1, 0xFEDCBA9876543210]
    assert b.ts.tolist() == [1700000000, 1700000010]
    assert b.value.tolist() == [0.5, -2.25]


def test_points_v1_encoder_is_stable() -> None:
    batch = PointBatch(
        "acme",
        "system.load.1",
        np.array([1, 0xFEDCBA9876543210], np.uint64),
        np.array([1700000000, 1700000010], np.int64),
        np.array([0.5, -2.25]),
    )
    assert encode_points(batch) == _golden("points_v1.hex")


def test_series_v1_golden_decodes() -> None:
    raw = _golden("series_v1.hex")
    assert message_kind(raw) == (1, Kind.SERIES)
    s = decode_series(raw)
    assert (s.org, s.metric) == ("acme", "system.load.1")
    assert s.sid.tolist() == [1, 0xFEDCBA9876543210]
    assert s.bucket.tolist() == [1699999200, 1699999200]
    assert s.mtype.tolist() == [0, 1]
    assert s.interval.tolist() == [0, 10]
    assert s.tags == (("env:prod", "host:Web-1"), ("région:été",))


def test_series_v1_encoder_is_stable() -> None:
    batch = SeriesBatch(
        "acme",
        "system.load.1",
        np.array([1, 0xFEDCBA9876543210], np.uint64),
        np.array([1699999200, 1699999200], np.int64),
        np.array([0, 1], np.uint8),
        np.array([0, 10], np.uint32),
        (("env:prod", "host:Web-1"), ("région:été",)),
    )
    assert encode_series(batch) == _golden("series_v1.hex")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "shorter than the header"),
        (b"XX\x01\x01", "bad magic"),
        (b"SB\x09\x01", "unsupported format version 9"),
        (b"SB\x01\x07", "unknown message kind 7"),
        (_golden("points_v1.hex")[:-3], "truncated"),
        (_golden("points_v1.hex") + b"\x00", "trailing bytes"),
    ],
)
def test_unreadable_messages_name_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UnreadableMessage) as err:
        decode_points(raw)
    assert reason in err.value.reason


def test_kind_mismatch_is_unreadable() -> None:
    with pytest.raises(UnreadableMessage, match="expected a series message"):
        decode_series(_golden("points_v1.hex"))


def test_offsets_splitting_a_utf8_character_are_unreadable() -> None:
    raw = bytearray(_golden("series_v1.hex"))
    # Layout tail: offsets [0, 19, 32] (3 x u32) then the 32-byte blob
    # "env:prod,host:Web-1" + "région:été". Moving offsets[1] to 21 cuts the "é" at 20-21.
    blob = 32
    offsets_at = len(raw) - blob - 12
    assert int.from_bytes(raw[offsets_at + 4 : offsets_at + 8], "little") == 19
    raw[offsets_at + 4 : offsets_at + 8] = (21).to_bytes(4, "little")
    with pytest.raises(UnreadableMessage, match="UTF-8"):
        decode_series(bytes(raw))


def test_heartbeat_v1_golden_decodes_and_encodes() -> None:
    raw = _golden("heartbeat_v1.hex")
    assert message_kind(raw) == (1, Kind.HEARTBEAT)
    marker = heartbeat_marker(raw)
    assert marker == HeartbeatMarker(marker_ms=1795000000123, emit_ms=1795000000456)
    assert encode_heartbeat(marker) == raw


def test_heartbeat_marker_leaves_other_messages_to_their_decoder() -> None:
    assert heartbeat_marker(_golden("points_v1.hex")) is None
    assert heartbeat_marker(b"junk") is None
    raw = _golden("heartbeat_v1.hex")
    with pytest.raises(UnreadableMessage, match="heartbeat message of 19 bytes"):
        heartbeat_marker(raw[:-1])
    with pytest.raises(UnreadableMessage, match="version 9"):
        heartbeat_marker(raw[:2] + b"\x09" + raw[3:])


def test_metadata_v1_golden_decodes_as_a_rowless_series_batch() -> None:
    raw = _golden("metadata_v1.hex")
    assert message_kind(raw) == (1, Kind.METADATA)
    b = decode_series(raw)
    assert (b.org, b.metric, len(b), b.tags) == ("acme", "cpu.user", 0, ())
    assert b.metadata == {"unit": "percent", "description": None}
    assert encode_metadata("acme", "cpu.user", {"unit": "percent", "description": None}) == raw
    with pytest.raises(UnreadableMessage, match="not a JSON object"):
        decode_series(encode_metadata("acme", "m", {})[:-2] + b"[]")
    assert decode_series(_golden("series_v1.hex")).metadata is None


def test_every_cut_or_padding_of_a_points_message_is_unreadable_not_a_crash() -> None:
    multibyte = encode_points(
        PointBatch("ørg", "métric", np.ones(2, np.uint64), np.ones(2, np.int64), np.ones(2))
    )
    for raw in (_golden("points_v1.hex"), multibyte):
        for cut in range(4, len(raw)):  # shorter: not even a header
            with pytest.raises(UnreadableMessage, match="truncated"):
                decode_points(raw[:cut])
        for pad in (b"\x00", b"\x00" * 24):
            with pytest.raises(UnreadableMessage, match="trailing bytes"):
                decode_points(raw + pad)
    bad_utf8 = multibyte.replace("ø".encode(), b"\xff\xfe", 1)
    with pytest.raises(UnreadableMessage, match="invalid UTF-8"):
        decode_points(bad_utf8)


def test_decoded_points_are_native_writable_columns_of_their_own() -> None:
    batch = PointBatch(
        "acme-é",
        "m",
        np.array([3, 1, 2], dtype=np.uint64),
        np.array([10, -20, 30], dtype=np.int64),
        np.array([0.5, -0.0, np.inf]),
    )
    b = decode_points(encode_points(batch))
    assert (b.org, b.metric) == ("acme-é", "m")
    for got, want in ((b.sid, batch.sid), (b.ts, batch.ts), (b.value, batch.value)):
        assert got.dtype == want.dtype and got.dtype.isnative
        assert got.flags.writeable and got.flags.aligned
        assert got.tobytes() == want.tobytes()  # bit for bit: -0.0 stays -0.0
    b.ts[0] = 99  # a column written in place leaves its neighbours alone
    assert b.sid.tolist() == [3, 1, 2] and b.value[0] == 0.5
    empty = decode_points(encode_points(PointBatch("o", "m", b.sid[:0], b.ts[:0], b.value[:0])))
    assert len(empty) == 0 and empty.ts.dtype == np.int64
