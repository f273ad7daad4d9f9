"""intake.series_tracker against an obvious model: an LRU of (sid, bucket) pairs.

The tracker indexes announced sids per bucket for its hot path; whatever the sequence of
marks and lookups (one bucket or several per batch, duplicates, evictions), it must answer
like a plain ordered dict of pairs evicted least-recently-marked first.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.series_tracker import SeriesTracker
from strata.codec import SeriesBatch

BIG = 2**64 - 5  # sids use the whole uint64 range


class Model:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def unannounced(self, rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [r for r in rows if r not in self.seen]

    def mark(self, rows: list[tuple[int, int]]) -> None:
        for r in rows:
            self.seen[r] = None
            self.seen.move_to_end(r)
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)


def batch(rows: list[tuple[int, int]]) -> SeriesBatch:
    return SeriesBatch(
        "acme",
        "m",
        np.array([r[0] for r in rows], dtype=np.uint64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([i % 3 for i in range(len(rows))], dtype=np.uint8),
        np.array([10 * i for i in range(len(rows))], dtype=np.uint32),
        tuple((f"t:{r[0]}:{r[1]}",) for r in rows),
    )


def rows_of(b: SeriesBatch | None) -> list[tuple[int, int]]:
    if b is None:
        return []
    return list(zip(b.sid.tolist(), b.bucket.tolist(), strict=True))


pairs = st.tuples(st.sampled_from([1, 2, 3, BIG]), st.sampled_from([0, 3600, 7200]))
one_bucket = st.integers(0, 2).flatmap(
    lambda b: st.lists(st.sampled_from([1, 2, 3, BIG]).map(lambda s: (s, 3600 * b)), max_size=5)
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["mark", "check"]), st.one_of(one_bucket, st.lists(pairs, max_size=5))
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(st.integers(1, 6), operations)
def test_tracker_answers_like_an_lru_of_pairs(
    capacity: int, ops: list[tuple[str, list[tuple[int, int]]]]
) -> None:
    tracker = SeriesTracker(capacity)
    model = Model(capacity)
    for op, rows in ops:
        b = batch(rows)
        if op == "mark":
            tracker.mark(b)
            model.mark(rows)
            assert len(tracker) == len(model.seen)
        else:
            new = tracker.unannounced(b)
            expected = model.unannounced(rows)
            assert rows_of(new) == expected
            if new is not None:
                # The selected rows keep their own columns.
                keep = [r in expected for r in rows]
                assert new.tags == tuple(t for t, k in zip(b.tags, keep, strict=True) if k)
                assert new.mtype.tolist() == b.mtype[keep].tolist()
                assert new.interval.tolist() == b.interval[keep].tolist()
            if expected == rows:
                assert new is b or not rows
