"""A request's batches as Kafka message values that a broker accepts (pure, no I/O).

Every batch of one (org, metric) used to become one message. A body within the API's
limits can hold far more than one message may: 100 000 points of one metric encode to
2.4 MB, and librdkafka refuses anything over ``message.max.bytes`` (1 000 000 by default,
as Kafka brokers do at 1 048 588) before it reaches the broker, which turned a valid
request into a 503 its client retried forever. So a batch that encodes to more than
:data:`MAX_MESSAGE_BYTES` is cut in halves (row slices, no copies) until every part fits.
Consumers never relied on one request being one message: duplicates resolve by value, not
by position (strata.conflict), and series announcements are per row.

Points rows have a fixed size, so points are cut into equal slices at once.
A single row that cannot fit (a series with megabytes of tags) is refused with 413 naming
the metric, instead of a 503 that would never succeed on retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from intake.decode import PayloadTooLarge
from strata.codec import (
    PointBatch,
    SeriesBatch,
    SketchMessage,
    encode_points,
    encode_series,
    encode_sketches,
)

#: Largest message value intake produces: half of librdkafka's default
#: ``message.max.bytes``, leaving room for the record batch's own overhead and for brokers
#: configured below Kafka's default. A points message holds up to ~21 800 points.
MAX_MESSAGE_BYTES = 524_288

B = TypeVar("B", PointBatch, SeriesBatch, SketchMessage)


def points_rows(batch: PointBatch, start: int, stop: int) -> PointBatch:
    return PointBatch(
        batch.org,
        batch.metric,
        batch.sid[start:stop],
        batch.ts[start:stop],
        batch.value[start:stop],
    )


def series_rows(batch: SeriesBatch, start: int, stop: int) -> SeriesBatch:
    return SeriesBatch(
        batch.org,
        batch.metric,
        batch.sid[start:stop],
        batch.bucket[start:stop],
        batch.mtype[start:stop],
        batch.interval[start:stop],
        batch.tags[start:stop],
        batch.metadata,
    )


def sketch_rows(message: SketchMessage, start: int, stop: int) -> SketchMessage:
    rows = np.arange(start, stop, dtype=np.int64)
    return SketchMessage(message.org, message.metric, message.batch.take(rows))


def encode_within(
    batch: B,
    encode: Callable[[B], bytes],
    rows: Callable[[B, int, int], B],
    limit: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """``[encode(batch)]`` if it fits ``limit`` bytes, else the values of row slices that
    each fit, in row order. Only an oversized batch is encoded more than once."""
    value = encode(batch)
    if len(value) <= limit:
        return [value]
    n = len(batch)
    if n <= 1:
        raise PayloadTooLarge(
            f"metric {batch.metric!r}: one row encodes to {len(value)} bytes, more than a "
            f"Kafka message may hold ({limit})"
        )
    half = n // 2
    return encode_within(rows(batch, 0, half), encode, rows, limit) + encode_within(
        rows(batch, half, n), encode, rows, limit
    )


def points_values(batch: PointBatch, limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """Points rows have a fixed size (24 bytes), so a large batch is cut into equal slices
    directly, each encoded once (a 62 MB v1 body would otherwise be encoded ~7 times)."""
    value = encode_points(batch)
    if len(value) <= limit:
        return [value]
    n = len(batch)
    per_message = (limit - (len(value) - 24 * n)) // 24  # what fits beside the header
    if per_message < 1:
        return encode_within(batch, encode_points, points_rows, limit)  # names the problem
    return [
        encode_points(points_rows(batch, start, min(start + per_message, n)))
        for start in range(0, n, per_message)
    ]


def series_values(batch: SeriesBatch, limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    return encode_within(batch, encode_series, series_rows, limit)


def sketch_values(message: SketchMessage, limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    return encode_within(message, encode_sketches, sketch_rows, limit)
