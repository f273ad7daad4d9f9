"""Hypothesis round-trips of every wire codec."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from strata.codec import (
    PointBatch,
    SeriesBatch,
    decode_points,
    decode_series,
    encode_points,
    encode_series,
)
from strata.naming import canonical_tags

names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) < 200)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
f64 = st.floats(allow_nan=False)


@st.composite
def point_batches(draw: st.DrawFn) -> PointBatch:
    n = draw(st.integers(0, 50))
    return PointBatch(
        draw(names),
        draw(names),
        np.array(draw(st.lists(u64, min_size=n, max_size=n)), dtype=np.uint64),
        np.array(draw(st.lists(i64, min_size=n, max_size=n)), dtype=np.int64),
        np.array(draw(st.lists(f64, min_size=n, max_size=n)), dtype=np.float64),
    )


@st.composite
def series_batches(draw: st.DrawFn) -> SeriesBatch:
    n = draw(st.integers(0, 20))
    tags = tuple(canonical_tags(draw(st.lists(st.text(max_size=30), max_size=5))) for _ in range(n))
    return SeriesBatch(
        draw(names),
        draw(names),
        np.array(draw(st.lists(u64, min_size=n, max_size=n)), dtype=np.uint64),
        np.array(draw(st.lists(i64, min_size=n, max_size=n)), dtype=np.int64),
        np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.uint8),
        np.array(draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n)), np.uint32),
        tags,
    )


@given(point_batches())
def test_points_roundtrip(batch: PointBatch) -> None:
    out = decode_points(encode_points(batch))
    assert (out.org, out.metric) == (batch.org, batch.metric)
    assert np.array_equal(out.sid, batch.sid)
    assert np.array_equal(out.ts, batch.ts)
    # Bit-exact (also for -0.0): compare the raw float bits.
    assert np.array_equal(out.value.view(np.uint64), batch.value.view(np.uint64))


@given(series_batches())
def test_series_roundtrip(batch: SeriesBatch) -> None:
    out = decode_series(encode_series(batch))
    assert (out.org, out.metric) == (batch.org, batch.metric)
    assert np.array_equal(out.sid, batch.sid)
    assert np.array_equal(out.bucket, batch.bucket)
    assert np.array_equal(out.mtype, batch.mtype)
    assert np.array_equal(out.interval, batch.interval)
    assert out.tags == batch.tags
