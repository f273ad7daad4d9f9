"""RAM store blocks and the RamStore wrapper (pure: no Kafka, fake clock)."""

from __future__ import annotations

import numpy as np
import pytest

from stores.ram.blocks import BLOCK_SECONDS, Columns, PartitionPoints
from stores.ram.store import RamStore
from stores.runtime.store import Record
from strata.codec import PointBatch

NOW = 1_700_000_000 - 1_700_000_000 % BLOCK_SECONDS


def cols(sid: list[int], ts: list[int], value: list[float]) -> Columns:
    return (
        np.array(sid, dtype=np.uint64),
        np.array(ts, dtype=np.int64),
        np.array(value, dtype=np.float64),
    )


def as_dict(c: Columns) -> dict[tuple[int, int], float]:
    return {
        (int(s), int(t)): float(v)
        for s, t, v in zip(c[0].tolist(), c[1].tolist(), c[2].tolist(), strict=True)
    }


ALL = np.array([1, 2, 3], dtype=np.uint64)


def test_insert_spreads_points_over_ten_minute_blocks() -> None:
    p = PartitionPoints()
    kept = p.insert(*cols([1, 1, 2], [NOW, NOW + BLOCK_SECONDS, NOW + 5], [1.0, 2.0, 3.0]), 0)
    assert kept == 3
    assert p.block_starts() == [NOW, NOW + BLOCK_SECONDS]
    out = p.read(ALL, NOW, NOW + 2 * BLOCK_SECONDS)
    assert out[0].tolist() == [1, 1, 2] and out[1].tolist() == [NOW, NOW + BLOCK_SECONDS, NOW + 5]


def test_duplicates_resolve_by_largest_absolute_value_ties_to_larger() -> None:
    p = PartitionPoints()
    p.insert(*cols([1, 1, 2, 2], [NOW, NOW, NOW, NOW], [3.0, -5.0, -2.0, 2.0]), 0)
    p.insert(*cols([1], [NOW], [4.0]), 0)
    assert as_dict(p.read(ALL, NOW, NOW)) == {(1, NOW): -5.0, (2, NOW): 2.0}


def test_read_filters_by_sids_and_inclusive_range() -> None:
    p = PartitionPoints()
    ts = [NOW + i for i in range(10)]
    p.insert(*cols([1] * 10 + [2] * 10, ts + ts, [float(i) for i in range(20)]), 0)
    out = p.read(np.array([2], dtype=np.uint64), NOW + 3, NOW + 5)
    assert as_dict(out) == {(2, NOW + 3): 13.0, (2, NOW + 4): 14.0, (2, NOW + 5): 15.0}
    assert p.read(np.array([9], dtype=np.uint64), NOW, NOW + 10)[0].size == 0


def test_points_older_than_the_window_are_dropped_and_blocks_evicted() -> None:
    p = PartitionPoints()
    kept = p.insert(*cols([1, 1], [NOW - 10, NOW + 10], [1.0, 2.0]), oldest=NOW)
    assert kept == 1
    p.insert(*cols([1], [NOW + BLOCK_SECONDS], [3.0]), oldest=NOW)
    assert p.evict(NOW + BLOCK_SECONDS) == 1
    assert p.block_starts() == [NOW + BLOCK_SECONDS]
    assert as_dict(p.read(ALL, 0, NOW * 2)) == {(1, NOW + BLOCK_SECONDS): 3.0}


def test_applying_twice_equals_applying_once() -> None:
    batch = cols([1, 2, 1, 3], [NOW, NOW + 1, NOW + 700, NOW], [1.0, -2.0, 3.5, 0.0])
    once, twice = PartitionPoints(), PartitionPoints()
    once.insert(*batch, 0)
    twice.insert(*batch, 0)
    twice.insert(*batch, 0)
    a, b = once.read(ALL, 0, NOW * 2), twice.read(ALL, 0, NOW * 2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_large_appends_consolidate_and_stay_sorted() -> None:
    rng = np.random.default_rng(7)
    p = PartitionPoints()
    for _ in range(5):
        n = 5000
        p.insert(
            rng.integers(0, 50, n).astype(np.uint64),
            (NOW + rng.integers(0, BLOCK_SECONDS, n)).astype(np.int64),
            rng.normal(size=n),
            0,
        )
    sid, ts, _ = p.read(np.arange(50, dtype=np.uint64), NOW, NOW + BLOCK_SECONDS)
    assert (np.lexsort((ts, sid)) == np.arange(sid.size)).all()
    assert not ((sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])).any()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(
    partition: int, offset: int, sid: list[int], ts: list[int], v: list[float]
) -> Record[PointBatch]:
    s, t, value = cols(sid, ts, v)
    return Record(partition, offset, 0, PointBatch("acme", "m", s, t, value))


def record_at(
    partition: int, appended_ms: int, sid: list[int], ts: list[int], v: list[float]
) -> Record[PointBatch]:
    s, t, value = cols(sid, ts, v)
    return Record(partition, 0, appended_ms, PointBatch("acme", "m", s, t, value))


def test_ram_store_window_coverage_and_revoke() -> None:
    clock = Clock(NOW)
    store = RamStore("points", 3600, replay_margin_seconds=600, clock=clock)
    pos = store.start_position(0, NOW * 1000)
    # The seek reaches back a margin for points stamped ahead of their append time.
    assert pos.timestamp_ms == (NOW - 3600 - 600) * 1000
    store.assigned([0, 1], {0: pos.timestamp_ms, 1: pos.timestamp_ms})
    store.apply(
        [record(0, 0, [1, 1], [NOW - 4000, NOW - 10], [1.0, 2.0]), record(1, 0, [2], [NOW], [5.0])]
    )
    assert as_dict(store.read_raw(ALL, 0, NOW)) == {(1, NOW - 10): 2.0, (2, NOW): 5.0}
    # Still replaying (nothing appended after the assignment seen, no end reached yet).
    assert store.coverage([0, 1], NOW) == {}
    assert store.replaying() == [0, 1]
    store.apply([record_at(0, NOW * 1000, [1], [NOW], [3.0])])  # appended after: caught up
    assert store.coverage([0, 1], NOW) == {0: [NOW - 3600, NOW]}
    store.idle()  # an empty poll proves nothing: the fetch may still be in flight
    assert store.coverage([0, 1], NOW) == {0: [NOW - 3600, NOW]}
    store.caught_up(1, 1)  # the consumer reached partition 1's end
    assert store.coverage([0, 1], NOW) == {0: [NOW - 3600, NOW], 1: [NOW - 3600, NOW]}
    store.revoked([1])
    assert as_dict(store.read_raw(ALL, 0, NOW)) == {(1, NOW - 10): 2.0, (1, NOW): 3.0}
    assert store.coverage([0], NOW) == {0: [NOW - 3600, NOW]}
    # Time passes: the window moves and old blocks go.
    clock.now = NOW + 3600 + BLOCK_SECONDS
    store.idle()
    assert store.rows() == 0
    assert store.read_raw(ALL, 5, 1).__len__() == 3 and store.read_raw(ALL, 5, 1)[0].size == 0


def test_read_clamps_to_the_window() -> None:
    clock = Clock(NOW)
    store = RamStore("points", 600, clock=clock)
    store.apply([record(0, 0, [1, 1], [NOW - 500, NOW - 100], [1.0, 2.0])])
    clock.now = NOW + 200  # NOW - 500 is now outside the window, though its block remains
    assert as_dict(store.read_raw(ALL, 0, NOW)) == {(1, NOW - 100): 2.0}


@pytest.mark.parametrize("start,end", [(NOW, NOW), (NOW - 1, NOW + BLOCK_SECONDS)])
def test_block_boundaries_are_inclusive(start: int, end: int) -> None:
    p = PartitionPoints()
    p.insert(*cols([1, 1], [NOW, NOW + BLOCK_SECONDS - 1], [1.0, 2.0]), 0)
    got = as_dict(p.read(ALL, start, end))
    assert (1, NOW) in got
