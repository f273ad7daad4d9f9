"""Golden vectors of the sketch encoding: what v1 wrote decodes forever (docs/formats.md).

``tests/golden/sketch_v1.hex`` holds one ``name hex`` line per vector. Each test decodes a
vector, asserts every field, and re-encodes the same sketch to the same bytes. Expected keys
are checked against ``ddsketch``'s formula computed here with the ``math`` module, not
with the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ddsketch.pb import ddsketch_pb2 as pb

from strata.codec import UnreadableMessage
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import (
    UnreadableSketch,
    decode_batch,
    decode_sketch,
    encode_batch,
    encode_sketch,
    from_ddsketch_proto,
    to_ddsketch_proto,
)

GOLDEN = Path(__file__).parent.parent / "golden" / "sketch_v1.hex"


def golden(name: str) -> bytes:
    for line in GOLDEN.read_text().splitlines():
        key, _, hexed = line.partition(" ")
        if key == name:
            return bytes.fromhex(hexed)
    raise KeyError(name)


def ddsketch_key(x: float, a: float = 0.01) -> int:
    """sketches-py LogarithmicMapping.key, written out with math."""
    multiplier = (1 / math.log1p(2 * a / (1 - a))) * math.log(2)
    return math.ceil(math.log(x, 2) * multiplier)


SINGLE_VALUES = [0.5, 1.0, 1.0, 250.0, -3.0, 0.0, 1e-3]


def test_single_v1_decodes() -> None:
    raw = golden("single")
    assert raw[:6] == b"SK\x01\x01\x01\x00"  # magic, version 1, kind sketch, log mapping, ints
    s = decode_sketch(raw)
    assert s.params == SketchParams(0.01, 2048)
    assert (s.count, s.zero_count, s.min, s.max) == (7.0, 1.0, -3.0, 250.0)
    assert s.sum == 249.501
    assert s.pos_keys.tolist() == [-345, -34, 0, 277]
    assert s.pos_keys.tolist() == sorted({ddsketch_key(x) for x in SINGLE_VALUES if x > 0})
    assert s.pos_counts.tolist() == [1.0, 1.0, 2.0, 1.0]
    assert s.neg_keys.tolist() == [55] == [ddsketch_key(3.0)]
    assert s.neg_counts.tolist() == [1.0]


def test_single_v1_encoder_is_stable() -> None:
    assert encode_sketch(Sketch.from_values(SINGLE_VALUES)) == golden("single")


def float_count_sketch() -> Sketch:
    return Sketch.from_bins(
        SketchParams(0.02, 128),
        [0, 5],
        [1.5, 0.25],
        [-3],
        [2.0],
        zero_count=0.5,
        sum=1.25,
        min=-4.0,
        max=2.5,
    )


def test_float_counts_v1_decodes() -> None:
    raw = golden("single_float_counts")
    assert raw[5] == 1  # flags: float64 counts
    s = decode_sketch(raw)
    assert s.params == SketchParams(0.02, 128)
    assert (s.count, s.zero_count, s.sum, s.min, s.max) == (4.25, 0.5, 1.25, -4.0, 2.5)
    assert s.pos_keys.tolist() == [0, 5] and s.pos_counts.tolist() == [1.5, 0.25]
    assert s.neg_keys.tolist() == [-3] and s.neg_counts.tolist() == [2.0]
    assert encode_sketch(float_count_sketch()) == raw


def batch() -> SketchBatch:
    return SketchBatch.from_ragged(
        SketchParams(),
        [1, 0xFEDCBA9876543210, 7],
        [1700000000, 1700000060, 1700000120],
        [0, 3, 5, 5],
        [1.0, 2.0, 1000.0, -0.25, 0.0],
    )


def test_batch_v1_decodes() -> None:
    raw = golden("batch")
    assert raw[:4] == b"SK\x01\x02"
    b = decode_batch(raw)
    assert b.sid.tolist() == [1, 0xFEDCBA9876543210, 7]
    assert b.ts.tolist() == [1700000000, 1700000060, 1700000120]
    assert b.count.tolist() == [3.0, 2.0, 0.0]
    assert b.zero_count.tolist() == [0.0, 1.0, 0.0]
    assert b.sum.tolist() == [1003.0, -0.25, 0.0]
    assert b.min.tolist() == [1.0, -0.25, math.inf]  # the third row is an empty sketch
    assert b.max.tolist() == [1000.0, 0.0, -math.inf]
    assert b.pos.offsets.tolist() == [0, 3, 3, 3]
    assert b.pos.keys.tolist() == [ddsketch_key(x) for x in (1.0, 2.0, 1000.0)] == [0, 35, 346]
    assert b.pos.counts.tolist() == [1.0, 1.0, 1.0]
    assert b.neg.offsets.tolist() == [0, 0, 1, 1]
    assert b.neg.keys.tolist() == [ddsketch_key(0.25)] == [-69]
    assert b.neg.counts.tolist() == [1.0]
    assert encode_batch(batch()) == raw


def test_ddsketch_proto_golden() -> None:
    """Our protobuf export is stable and means what the protobuf library says it means."""
    s = Sketch.from_values([0.5, 0.52, 1.0, -2.0, 0.0])
    raw = golden("ddsketch_proto")
    assert to_ddsketch_proto(s) == raw
    msg = pb.DDSketch.FromString(raw)
    assert msg.mapping.gamma == SketchParams().gamma
    assert (msg.mapping.indexOffset, msg.mapping.interpolation) == (0.0, 0)
    assert msg.positiveValues.contiguousBinIndexOffset == -34
    dense = list(msg.positiveValues.contiguousBinCounts)
    assert len(dense) == 35 and [i for i, c in enumerate(dense) if c] == [0, 2, 34]
    assert msg.negativeValues.contiguousBinIndexOffset == 35
    assert list(msg.negativeValues.contiguousBinCounts) == [1.0]
    assert msg.zeroCount == 1.0
    back = from_ddsketch_proto(raw)
    assert back.pos_keys.tolist() == s.pos_keys.tolist() == [-34, -32, 0]
    assert back.neg_keys.tolist() == [35] and back.count == 5.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "shorter than the sketch header"),
        (b"XX" + golden("single")[2:], "bad magic"),
        (b"SK\x09" + golden("single")[3:], "unsupported sketch format version 9"),
        (golden("batch"), "expected sketch kind 1, got 2"),
        (golden("single")[:4] + b"\x07" + golden("single")[5:], "unknown index mapping 7"),
        (golden("single")[:5] + b"\x80" + golden("single")[6:], "unknown flags"),
        (golden("single")[:30], "truncated"),
        (golden("single")[:-1], "counts, expected"),
        (golden("single") + b"\x01", "counts, expected"),
        (golden("single_float_counts")[:-8], "counts take"),
    ],
)
def test_unreadable_sketches_name_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UnreadableSketch) as err:
        decode_sketch(raw)
    assert reason in err.value.reason
    assert isinstance(err.value, UnreadableMessage)  # the dead-letter path catches it


def _patched(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value) :]


def test_inconsistent_contents_are_unreadable() -> None:
    raw = golden("single")
    counts_at = len(raw) - 7  # count, zero, 4 positive, 1 negative: one byte each
    assert raw[counts_at] == 7
    with pytest.raises(UnreadableSketch, match="count differs"):
        decode_sketch(_patched(raw, counts_at, b"\x08"))
    with pytest.raises(UnreadableSketch, match="finite and > 0"):
        decode_sketch(_patched(raw, counts_at + 2, b"\x00"))
    # A bin limit (header offset 14) narrower than the keys' span.
    small_limit = _patched(raw, 14, (16).to_bytes(4, "little"))
    with pytest.raises(UnreadableSketch, match="bin limit"):
        decode_sketch(small_limit)
    # min (offset 26, after the 18-byte header and the sum) above max.
    with pytest.raises(UnreadableSketch, match="min <= max"):
        decode_sketch(_patched(raw, 26, np.float64(1e9).tobytes()))
