"""The data model shared by every service (DESIGN §2)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

# Column dtypes of every columnar batch. Fixed so that codecs, stores and queries agree.
SID_DTYPE = np.dtype(np.uint64)
TS_DTYPE = np.dtype(np.int64)
VALUE_DTYPE = np.dtype(np.float64)

# The inverted index and the "new series" records are bucketed by this many seconds: a
# series is announced at most once per bucket, and a query only considers buckets that
# overlap its range, so churned series drop out of today's queries.
INDEX_BUCKET_SECONDS = 3600


class MetricType(IntEnum):
    """Our own stable codes (used on the wire and on disk; never renumber)."""

    GAUGE = 0
    COUNT = 1
    RATE = 2
    # Series of POST /api/v1/distribution_points: values kept as sketches (sketches topic).
    DISTRIBUTION = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# Datadog v2 intake codes: 0 unspecified, 1 count, 2 rate, 3 gauge.
DATADOG_V2_TYPES: dict[int, MetricType] = {
    0: MetricType.GAUGE,
    1: MetricType.COUNT,
    2: MetricType.RATE,
    3: MetricType.GAUGE,
}

TYPE_NAMES: dict[str, MetricType] = {
    "gauge": MetricType.GAUGE,
    "count": MetricType.COUNT,
    "rate": MetricType.RATE,
    "unspecified": MetricType.GAUGE,
}


def index_bucket(ts: int) -> int:
    """Start of the index time bucket holding Unix second ``ts``."""
    return ts - ts % INDEX_BUCKET_SECONDS
