"""Rocks block codec round trips bit for bit (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.rocks.blockcodec import (
    KIND_MINUTES,
    RollupRows,
    decode_blocks,
    decode_rollups,
    encode_blocks,
    encode_rollups,
)

HOUR0 = 1_700_002_800

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
decimal = st.integers(-(10**9), 10**9).map(lambda i: i / 100)
value = st.one_of(finite, decimal, st.sampled_from([0.0, -0.0, 1e-320, -1.7e308]))
# A block: distinct timestamps inside the hour, values from one family (so decimal and
# XOR blocks both occur) or mixed.
block = st.sets(st.integers(0, 3599), max_size=40).flatmap(
    lambda ts: st.tuples(
        st.just(sorted(ts)),
        st.one_of(
            st.lists(decimal, min_size=len(ts), max_size=len(ts)),
            st.lists(value, min_size=len(ts), max_size=len(ts)),
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(block, max_size=6))
def test_blocks_round_trip_bit_exact(blocks: list[tuple[list[int], list[float]]]) -> None:
    base = HOUR0 + 3600 * np.arange(len(blocks), dtype=np.int64)
    counts = np.array([len(b[0]) for b in blocks], np.int64)
    ts = np.array([base[i] + t for i, b in enumerate(blocks) for t in b[0]], np.int64)
    v = np.array([x for b in blocks for x in b[1]], np.float64)
    frames = encode_blocks(ts, v, counts, base)
    assert len(frames) == len(blocks)
    out = decode_blocks(frames, base)
    assert out.counts.tolist() == counts.tolist()
    assert out.ts.tolist() == ts.tolist()
    assert out.value.view(np.uint64).tolist() == v.view(np.uint64).tolist()
    # Decoding frames one at a time gives the same as all together.
    for i, frame in enumerate(frames):
        one = decode_blocks([frame], base[i : i + 1])
        assert one.counts.tolist() == [counts[i]]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 59), st.integers(1, 3600), value, value, value, value),
        max_size=30,
        unique_by=lambda r: r[0],
    )
)
def test_rollup_records_round_trip_bit_exact(
    rows: list[tuple[int, int, float, float, float, float]],
) -> None:
    rows = sorted(rows)
    bucket = np.array([HOUR0 + 60 * r[0] for r in rows], np.int64)
    cols = [np.array([r[k] for r in rows], np.float64) for k in range(2, 6)]
    rr = RollupRows(
        np.array([len(rows)], np.int64),
        bucket,
        np.array([r[1] for r in rows], np.int64),
        cols[0],
        cols[1],
        cols[2],
        cols[3],
        bucket + np.array([r[0] for r in rows], np.int64) % 60,
    )
    base = np.array([HOUR0], np.int64)
    out = decode_rollups(encode_rollups(rr, base, KIND_MINUTES), base)
    for name in ("counts", "bucket", "count", "last_ts"):
        assert getattr(out, name).tolist() == getattr(rr, name).tolist()
    for name in ("sum", "min", "max", "last"):
        got = getattr(out, name).view(np.uint64).tolist()
        assert got == getattr(rr, name).view(np.uint64).tolist()
