"""Rocks block codec: round trips of edge cases and golden vectors (docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.rocks import blockcodec
from stores.rocks.blockcodec import (
    KIND_HOURS,
    KIND_MINUTES,
    CorruptBlock,
    RollupRows,
    decode_blocks,
    decode_rollups,
    encode_blocks,
    encode_rollups,
)
from stores.rocks.columns import (
    CODEC_DECIMAL,
    CODEC_XOR,
    _searched_scales,
    decimal_scales,
    diff_in_group,
    group_heads,
    group_ids,
    group_starts,
    shift_in_group,
    varint_decode,
    varint_encode,
)

F64 = npt.NDArray[np.float64]
GOLDEN = Path(__file__).parent.parent / "golden"
HOUR0 = 1_700_002_800  # an hour start


def _golden(name: str) -> bytes:
    return bytes.fromhex((GOLDEN / name).read_text().strip())


def _roundtrip(ts: list[int], values: list[float]) -> tuple[list[int], F64]:
    base = np.array([HOUR0], np.int64)
    frame = encode_blocks(
        np.array(ts, np.int64) + HOUR0,
        np.array(values, np.float64),
        np.array([len(ts)], np.int64),
        base,
    )
    assert len(frame) == 1
    out = decode_blocks(frame, base)
    assert out.counts.tolist() == [len(ts)]
    return (out.ts - HOUR0).tolist(), out.value


def _bits(values: list[float] | F64) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "values",
    [
        [1.5, 2.25, -7.0],
        [0.0, -0.0, 0.0],
        [np.finfo(np.float64).max, -np.finfo(np.float64).max, 5e-324, -5e-324],
        [np.finfo(np.float64).tiny, 1e-300, 1e300, 2.0**53 + 2],
        [0.1 + 0.2, 1 / 3, 123456.789],
        [9007199254740991.0, -9007199254740991.0, 0.5],
    ],
)
def test_extreme_values_round_trip_bit_exact(values: list[float]) -> None:
    ts = [0, 10, 3599, 3598][: len(values)]
    order = np.argsort(ts)
    sorted_ts = [ts[i] for i in order]
    sorted_v = [values[i] for i in order]
    got_ts, got_v = _roundtrip(sorted_ts, sorted_v)
    assert got_ts == sorted_ts
    assert _bits(got_v) == _bits(sorted_v)


def test_irregular_timestamps_and_single_point() -> None:
    ts = [0, 1, 2, 10, 11, 500, 3599]
    assert _roundtrip(ts, [1.0] * 7)[0] == ts
    assert _roundtrip([1234], [4.5])[0] == [1234]


def test_empty_groups_encode_and_decode() -> None:
    base = np.array([HOUR0, HOUR0 + 3600, HOUR0 + 7200], np.int64)
    counts = np.array([0, 2, 0], np.int64)
    frames = encode_blocks(
        np.array([HOUR0 + 3600, HOUR0 + 3601], np.int64), np.array([1.0, 2.0]), counts, base
    )
    assert len(frames) == 3 and len(frames[0]) == 8
    out = decode_blocks(frames, base)
    assert out.counts.tolist() == [0, 2, 0]
    assert out.value.tolist() == [1.0, 2.0]
    assert decode_blocks([], np.empty(0, np.int64)).ts.size == 0


def test_decimal_scale_is_chosen_per_group() -> None:
    v = np.array([12.5, 7.25, 0.1 + 0.2, 3.0, -0.0, 1.0], np.float64)
    scales = decimal_scales(v, np.array([2, 1, 1, 1, 1], np.int64))
    assert scales.tolist() == [2, -1, 0, -1, 0]


def test_realistic_gauge_block_is_small() -> None:
    rng = np.random.default_rng(7)
    v = np.round(np.clip(50 + np.cumsum(rng.normal(0, 1, 360)), 0.0, 100.0), 2).astype(np.float64)
    ts = np.arange(0, 3600, 10, dtype=np.int64) + HOUR0
    frame = encode_blocks(ts, v, np.array([360], np.int64), np.array([HOUR0], np.int64))[0]
    # Before RocksDB's zstd: 1 byte per timestamp (dod 0), ~2 per 2-decimal delta.
    assert len(frame) < 3.2 * 360
    assert frame[6] == CODEC_DECIMAL


def test_golden_vectors_decode_and_encoder_is_stable() -> None:
    base = np.array([HOUR0], np.int64)
    ts = np.array([0, 10, 20, 35], np.int64) + HOUR0
    cases = [
        ("rocks_block_v1.hex", [12.5, 12.75, -3.0, 100.25], CODEC_DECIMAL),
        ("rocks_block_xor_v1.hex", [0.1 + 0.2, -0.0, 1e308, 5e-324], CODEC_XOR),
    ]
    for name, values, codec in cases:
        raw = _golden(name)
        assert raw[:2] == b"\x01\x01" and raw[6] == codec
        out = decode_blocks([raw], base)
        assert out.ts.tolist() == ts.tolist()
        assert _bits(out.value) == _bits(values)
        assert encode_blocks(ts, np.array(values), np.array([4], np.int64), base) == [raw]
    raw = _golden("rocks_minutes_v1.hex")
    rows = decode_rollups([raw], base)
    assert rows.bucket.tolist() == [HOUR0, HOUR0 + 60]
    assert rows.count.tolist() == [2, 1]
    assert rows.sum.tolist() == [25.25, -3.0]
    assert rows.min.tolist() == [12.5, -3.0] and rows.max.tolist() == [12.75, -3.0]
    assert rows.last.tolist() == [12.75, -3.0]
    assert rows.last_ts.tolist() == [HOUR0 + 10, HOUR0 + 80]
    assert encode_rollups(rows, base, KIND_MINUTES) == [raw]


def test_rollup_records_round_trip_minutes_and_hours() -> None:
    day = 1_700_006_400 - 1_700_006_400 % 86400
    rows = RollupRows(
        np.array([3], np.int64),
        np.array([day, day + 3600, day + 23 * 3600], np.int64),
        np.array([360, 1, 3600], np.int64),
        np.array([0.1 + 0.2, 1e300, -5.5]),
        np.array([-0.0, 1e300, -7.0]),
        np.array([1.0, 1e300, 2.0]),
        np.array([0.5, 1e300, -1.0]),
        np.array([day + 3599, day + 3600, day + 23 * 3600 + 1800], np.int64),
    )
    base = np.array([day], np.int64)
    out = decode_rollups(encode_rollups(rows, base, KIND_HOURS), base)
    for name in ("counts", "bucket", "count", "last_ts"):
        assert getattr(out, name).tolist() == getattr(rows, name).tolist()
    for name in ("sum", "min", "max", "last"):
        assert _bits(getattr(out, name)) == _bits(getattr(rows, name))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x02\x01\x00\x00\x00\x00\x00\x00", "version"),
        (b"\x01\x07\x00\x00\x00\x00\x00\x00", "kind"),
        (b"\x01\x01", "shorter"),
        (b"\x01\x01\x02\x00\x05\x00\x00\x00\x01\x02", "timestamp stream"),
        (b"\x01\x01\x02\x00\x01\x00\x00\x00\x80", "varints"),
        (b"\x01\x01\x01\x00\x01\x00\x05\x00\x00", "codec"),
    ],
)
def test_corrupt_frames_raise_corrupt_block(frame: bytes, message: str) -> None:
    with pytest.raises(CorruptBlock, match=message):
        decode_blocks([frame], np.array([HOUR0], np.int64))


def test_varint_decode_rejects_truncation() -> None:
    with pytest.raises(ValueError, match="varints"):
        varint_decode(np.array([0x81], np.uint8), 1)


def test_a_group_scale_that_would_overflow_falls_back_to_xor() -> None:
    """Found by hypothesis: 262144.6326587127 needs 10 decimals; at that scale 922337204.0
    becomes 9.2e18, past 2**53 (and int64). The group must use the XOR codec, bit-exact."""
    from stores.rocks.columns import decode_floats, encode_floats

    v = np.array([0.0, 262144.6326587127, 922337204.0])
    counts = np.array([3], dtype=np.int64)
    stream, lengths, codec, scale = encode_floats(v, counts)
    back = decode_floats(stream, lengths, counts, codec, scale)
    assert back.view(np.uint64).tolist() == v.view(np.uint64).tolist()


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 300), max_size=60))
def test_varint_encode_is_leb128(values: list[int]) -> None:
    data, nbytes = varint_encode(np.array(values, dtype=np.uint64))
    want = [_leb128(v) for v in values]
    assert data.tobytes() == b"".join(want)
    assert nbytes.tolist() == [len(w) for w in want]
    assert varint_decode(data, len(values)).tolist() == values


_INTEGRAL = st.sampled_from([0.0, -0.0, 1.0, -3.0, 2.0**53 - 1, 2.0**53, -(2.0**53), 1e300])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        _INTEGRAL | st.integers(-(2**60), 2**60).map(float) | st.floats(allow_nan=True),
        max_size=12,
    ),
    st.data(),
)
def test_decimal_scales_shortcut_agrees_with_the_search(
    values: list[float], data: st.DataObject
) -> None:
    """Integral blocks take a one-pass shortcut; any input gets the search's answer."""
    v = np.array(values, dtype=np.float64)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    counts = np.diff([0, *cuts, len(values)]).astype(np.int64)
    assert decimal_scales(v, counts).tolist() == _searched_scales(v, counts).tolist()
    integral = v[np.isfinite(v)].round()
    assert decimal_scales(integral, np.array([integral.size], np.int64)).tolist() == (
        _searched_scales(integral, np.array([integral.size], np.int64)).tolist()
    )


_COUNTS = st.lists(st.integers(0, 7), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_COUNTS, st.data())
def test_group_differences_match_their_per_row_definition(
    counts_list: list[int], data: st.DataObject
) -> None:
    """diff_in_group at group_heads (the encoders' row-free form) against shift_in_group,
    which spells it out row by row (part_sums is checked in tests/property/test_arrays.py)."""
    counts = np.array(counts_list, dtype=np.int64)
    n = int(counts.sum())
    x = np.array(data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)))
    x = x.astype(np.int64)
    gid = group_ids(counts)
    pos = np.arange(n, dtype=np.int64) - group_starts(counts)[gid]
    for skip in (1, 2):
        want = x - shift_in_group(x, pos, skip)
        assert diff_in_group(x, group_heads(counts, skip)).tolist() == want.tolist()
        assert sorted(group_heads(counts, skip).tolist()) == np.flatnonzero(pos < skip).tolist()


def test_encoding_in_chunks_gives_the_frames_of_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Frames do not depend on how the encoders cut a batch into cache-sized runs, including
    groups larger than a run and runs that end exactly at a group's end; nor do the points
    decoded from them."""
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 90, 400).astype(np.int64)
    counts[[3, 50, 51]] = [300, 0, 700]
    base = HOUR0 + 3600 * np.arange(counts.size, dtype=np.int64)
    offsets = [np.sort(rng.choice(3600, int(c), replace=False)) for c in counts]
    ts = (np.repeat(base, counts) + np.concatenate(offsets)).astype(np.int64)
    value = np.round(rng.normal(50, 20, ts.size), 2)
    value[::7] = rng.normal(0, 1, value[::7].size)  # some XOR groups among decimal ones
    rows = RollupRows(
        counts, ts, rng.integers(1, 9, ts.size), value, value - 1, value + 1, value, ts
    )
    monkeypatch.setattr(blockcodec, "CHUNK_ROWS", ts.size)  # one pass: the reference
    whole_blocks = encode_blocks(ts, value, counts, base)
    whole_rollups = encode_rollups(rows, base, KIND_MINUTES)
    for chunk in (1, 64, int(counts[:10].sum()), 1000, 16_384):
        monkeypatch.setattr(blockcodec, "CHUNK_ROWS", chunk)
        assert encode_blocks(ts, value, counts, base) == whole_blocks
        assert encode_rollups(rows, base, KIND_MINUTES) == whole_rollups
        out = decode_blocks(whole_blocks, base)  # decoded in runs of the same size
        assert out.counts.tolist() == counts.tolist()
        assert out.ts.tolist() == ts.tolist()
        assert _bits(out.value) == _bits(value)
