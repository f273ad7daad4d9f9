"""The announced-(series, bucket) cache (intake.series_tracker)."""

from __future__ import annotations

import numpy as np

from intake.series_tracker import SeriesTracker
from strata.codec import SeriesBatch


def batch(*rows: tuple[int, int]) -> SeriesBatch:
    return SeriesBatch(
        "acme",
        "m",
        np.array([r[0] for r in rows], dtype=np.uint64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.zeros(len(rows), dtype=np.uint8),
        np.zeros(len(rows), dtype=np.uint32),
        tuple((f"t:{r[0]}",) for r in rows),
    )


def test_new_series_are_announced_until_marked() -> None:
    t = SeriesTracker(10)
    b = batch((1, 0), (2, 0))
    assert t.unannounced(b) is b
    assert t.unannounced(b) is b  # not marked (the request failed): still new
    t.mark(b)
    assert t.unannounced(b) is None


def test_announced_once_per_bucket() -> None:
    t = SeriesTracker(10)
    t.mark(batch((1, 0)))
    new = t.unannounced(batch((1, 0), (1, 3600), (2, 0)))
    assert new is not None
    assert list(zip(new.sid.tolist(), new.bucket.tolist(), strict=True)) == [(1, 3600), (2, 0)]
    assert new.tags == (("t:1",), ("t:2",))


def test_capacity_bounds_memory_least_recently_marked_first() -> None:
    t = SeriesTracker(2)
    t.mark(batch((1, 0)))
    t.mark(batch((2, 0)))
    t.mark(batch((1, 0)))  # refreshes 1
    t.mark(batch((3, 0)))  # evicts 2
    assert len(t) == 2
    assert t.unannounced(batch((1, 0))) is None
    assert t.unannounced(batch((2, 0))) is not None
