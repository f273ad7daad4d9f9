"""Batches cut into message values that fit a Kafka message (intake/messages.py)."""

from __future__ import annotations

import numpy as np
import pytest

from intake.decode import PayloadTooLarge
from intake.messages import MAX_MESSAGE_BYTES, points_values, series_values, sketch_values
from strata.codec import (
    PointBatch,
    SeriesBatch,
    SketchMessage,
    decode_points,
    decode_series,
    decode_sketches,
    encode_points,
    encode_series,
    encode_sketches,
)
from strata.sketch import SketchBatch, SketchParams


def _points(n: int) -> PointBatch:
    rng = np.random.default_rng(3)
    return PointBatch(
        "acme",
        "cpu.user",
        rng.integers(1, 2**63, n).astype(np.uint64),
        np.arange(n, dtype=np.int64) + 1_700_000_000,
        rng.random(n),
    )


def _series(n: int, tag_bytes: int = 40) -> SeriesBatch:
    return SeriesBatch(
        "acme",
        "cpu.user",
        np.arange(1, n + 1, dtype=np.uint64),
        np.full(n, 1_700_000_000 // 3600 * 3600, np.int64),
        np.full(n, 3, np.uint8),
        np.full(n, 10, np.uint32),
        tuple((f"host:h{i}", "x:" + "y" * tag_bytes) for i in range(n)),
    )


def test_a_batch_that_fits_is_one_value_as_before() -> None:
    batch = _points(1000)
    assert points_values(batch) == [encode_points(batch)]
    series = _series(100)
    assert series_values(series) == [encode_series(series)]


def test_points_beyond_the_limit_become_values_within_it_in_row_order() -> None:
    batch = _points(100_000)  # 2.4 MB encoded
    assert len(encode_points(batch)) > MAX_MESSAGE_BYTES
    values = points_values(batch)
    assert len(values) == 5  # 21 844 points fit 512 KiB with the header
    assert all(len(v) <= MAX_MESSAGE_BYTES for v in values)
    parts = [decode_points(v) for v in values]
    assert all((p.org, p.metric) == ("acme", "cpu.user") for p in parts)
    assert np.array_equal(np.concatenate([p.sid for p in parts]), batch.sid)
    assert np.array_equal(np.concatenate([p.ts for p in parts]), batch.ts)
    assert np.array_equal(np.concatenate([p.value for p in parts]), batch.value)


def test_series_rows_are_cut_by_their_encoded_size_tags_included() -> None:
    batch = _series(500, tag_bytes=400)  # ~210 KB, cut at a 50 KB limit
    values = series_values(batch, limit=50_000)
    assert len(values) > 4
    assert all(len(v) <= 50_000 for v in values)
    parts = [decode_series(v) for v in values]
    assert np.array_equal(np.concatenate([p.sid for p in parts]), batch.sid)
    assert sum((p.tags for p in parts), ()) == batch.tags
    assert np.array_equal(np.concatenate([p.interval for p in parts]), batch.interval)


def test_sketches_are_cut_too() -> None:
    n = 2000
    rng = np.random.default_rng(5)
    sid = np.repeat(np.arange(1, n + 1, dtype=np.uint64), 10)
    ts = np.full(sid.size, 1_700_000_000, np.int64)
    batch = SketchBatch.from_values(SketchParams(), sid, ts, rng.lognormal(0, 1, sid.size))
    message = SketchMessage("acme", "latency", batch)
    whole = encode_sketches(message)
    values = sketch_values(message, limit=len(whole) // 3)
    assert len(values) >= 3
    assert all(len(v) <= len(whole) // 3 for v in values)
    parts = [decode_sketches(v).batch for v in values]
    assert np.array_equal(np.concatenate([p.sid for p in parts]), batch.sid)
    assert np.array_equal(np.concatenate([p.count for p in parts]), batch.count)


def test_one_row_that_cannot_fit_is_413_naming_the_metric() -> None:
    batch = _series(1, tag_bytes=2000)
    with pytest.raises(PayloadTooLarge, match=r"'cpu\.user'.*more than a Kafka message"):
        series_values(batch, limit=1000)


def test_a_limit_below_the_header_is_413_not_a_loop() -> None:
    with pytest.raises(PayloadTooLarge, match="more than a Kafka message"):
        points_values(_points(10), limit=10)
