"""Golden vector of the sketches message (kind 3): what v1 wrote decodes forever.

``tests/golden/sketches_v1.hex`` is one message: header ``SB`` v1 kind 3, org ``acme``,
metric ``request.latency``, then a sketch batch of two rows (docs/formats.md). The test
decodes it field by field against sketches built here from the values, and re-encodes it
byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from strata.codec import (
    Kind,
    SketchMessage,
    UnreadableMessage,
    decode_points,
    decode_sketches,
    encode_sketches,
    heartbeat_marker,
    message_kind,
)
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import UnreadableSketch, encode_batch

GOLDEN = Path(__file__).parent.parent / "golden" / "sketches_v1.hex"
SIDS = [1, 0xFEDCBA9876543210]
TS = [1700000000, 1700000010]
ROWS = [[0.5, 1.0, 250.0], [-3.0, 0.0, 2.0]]


def golden() -> bytes:
    return bytes.fromhex(GOLDEN.read_text().strip())


def golden_batch() -> SketchBatch:
    return SketchBatch.from_ragged(
        SketchParams(), np.array(SIDS, np.uint64), TS, [0, 3, 6], [v for r in ROWS for v in r]
    )


def test_sketches_v1_golden_decodes() -> None:
    raw = golden()
    assert message_kind(raw) == (1, Kind.SKETCHES)
    assert raw[:4] == b"SB\x01\x03"
    m = decode_sketches(raw)
    assert (m.org, m.metric, len(m)) == ("acme", "request.latency", 2)
    assert m.batch.sid.tolist() == SIDS
    assert m.batch.ts.tolist() == TS
    assert m.batch.params == SketchParams(0.01, 2048)
    for i, values in enumerate(ROWS):
        row = m.batch.row(i)
        assert row == Sketch.from_values(values)
        assert (row.count, row.sum, row.min, row.max) == (
            3,
            math.fsum(values),
            min(values),
            max(values),
        )
    # ddsketch's key formula written out: row 0's positive keys.
    m_ = (1 / math.log1p(2 * 0.01 / 0.99)) * math.log(2)
    assert m.batch.row(0).pos_keys.tolist() == [math.ceil(math.log2(x) * m_) for x in ROWS[0]]


def test_sketches_v1_encoder_is_stable() -> None:
    raw = encode_sketches(SketchMessage("acme", "request.latency", golden_batch()))
    assert raw == golden()
    # After header, org and metric comes exactly the sketch batch encoding.
    head = 4 + 2 + len("acme") + 2 + len("request.latency")
    assert raw[head:] == encode_batch(golden_batch())


def test_other_kinds_are_not_sketches() -> None:
    with pytest.raises(UnreadableMessage, match="expected a sketches message, got POINTS"):
        decode_sketches(bytes.fromhex((GOLDEN.parent / "points_v1.hex").read_text().strip()))
    with pytest.raises(UnreadableMessage, match="expected a points message, got SKETCHES"):
        decode_points(golden())
    assert heartbeat_marker(golden()) is None


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda raw: raw[:-1], "counts"),
        (lambda raw: raw + b"\x00", "counts"),
        (lambda raw: raw[:12], "truncated"),
        (lambda raw: raw[:30], "sketch header"),
    ],
)
def test_damaged_messages_are_unreadable(cut: Callable[[bytes], bytes], reason: str) -> None:
    with pytest.raises(UnreadableMessage) as err:
        decode_sketches(cut(golden()))
    assert reason in err.value.reason


def test_a_bad_inner_sketch_is_an_unreadable_sketch() -> None:
    raw = bytearray(golden())
    head = 4 + 2 + len("acme") + 2 + len("request.latency")
    raw[head + 2] = 9  # the sketch format version
    with pytest.raises(UnreadableSketch, match="version 9"):
        decode_sketches(bytes(raw))
