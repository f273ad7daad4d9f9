"""Rocks apply planning: apply twice == once, and any batch split or order gives the same
stored bytes, whose rollups equal rollups of the resolved points (hypothesis).

Runs the pure merge (stores.rocks.ingest) over a dict standing in for the key space; the
RocksDB side is covered by tests/unit/test_rocks_store.py and the integration tests.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.rocks import layout
from stores.rocks.blockcodec import decode_blocks, decode_rollups
from stores.rocks.ingest import merge, touched
from strata.conflict import resolve
from strata.rollup import rollup

T0 = 1_700_000_000 - 1_700_000_000 % 86400 + 82800  # one hour before midnight
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-10_000, 10_000).map(lambda i: i / 100),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5]),
)
# Points over three series and three hours spanning two day shards.
point = st.tuples(st.integers(0, 2), st.integers(0, 3 * 3600 - 1), values)
batches = st.lists(st.lists(point, min_size=1, max_size=25), min_size=1, max_size=5)

Cols = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def cols(points: list[tuple[int, int, float]]) -> Cols:
    return (
        np.array([p[0] for p in points], np.uint64),
        np.array([T0 + p[1] for p in points], np.int64),
        np.array([p[2] for p in points], np.float64),
    )


def apply(db: dict[bytes, bytes], points: list[tuple[int, int, float]]) -> None:
    sid, ts, value = cols(points)
    t = touched(sid, ts)
    old_blocks = [db.get(k) for k in t.block_keys()]
    old_days = [db.get(k) for k in t.day_keys()]
    for items in merge(t, sid, ts, value, old_blocks, old_days).values():
        db.update(items)


def run(order: list[list[tuple[int, int, float]]]) -> dict[bytes, bytes]:
    db: dict[bytes, bytes] = {}
    for b in order:
        apply(db, b)
    return db


@settings(max_examples=150, deadline=None)
@given(batches, st.randoms(use_true_random=False))
def test_any_split_or_order_gives_the_same_bytes(
    order: list[list[tuple[int, int, float]]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    reference = run(order)
    flat = [p for b in order for p in b]
    rnd.shuffle(flat)
    cut = sorted(rnd.sample(range(1, len(flat)), min(3, len(flat) - 1))) if len(flat) > 1 else []
    pieces = [flat[a:b] for a, b in zip([0, *cut], [*cut, len(flat)], strict=True)]
    assert run(pieces) == reference
    # Applying everything again (redelivery) changes nothing.
    again = dict(reference)
    for b in order:
        apply(again, b)
    assert again == reference
    check_contents(reference, flat)


def check_contents(db: dict[bytes, bytes], points: list[tuple[int, int, float]]) -> None:
    s, t, v = resolve(*cols(points))
    raw = sorted((layout.parse_key(k), f) for k, f in db.items() if k[:1] == layout.RAW)
    blocks = decode_blocks([f for _, f in raw], np.array([k[2] for k, _ in raw], np.int64))
    bsid = np.repeat(np.array([k[1] for k, _ in raw], np.uint64), blocks.counts)
    assert bsid.tolist() == s.tolist() and blocks.ts.tolist() == t.tolist()
    assert blocks.value.view(np.uint64).tolist() == v.view(np.uint64).tolist()
    for kind, step in ((layout.MINUTES, 60), (layout.HOURS, 3600)):
        recs = sorted((layout.parse_key(k), f) for k, f in db.items() if k[:1] == kind)
        rows = decode_rollups([f for _, f in recs], np.array([k[2] for k, _ in recs], np.int64))
        rsid = np.repeat(np.array([k[1] for k, _ in recs], np.uint64), rows.counts)
        ref = rollup(s, t, v, step)
        assert rsid.tolist() == ref.sid.tolist()
        assert rows.bucket.tolist() == ref.bucket.tolist()
        assert rows.count.tolist() == ref.count.tolist()
        assert rows.last_ts.tolist() == ref.last_ts.tolist()
        for name in ("sum", "min", "max", "last"):
            got = getattr(rows, name).view(np.uint64).tolist()
            assert got == getattr(ref, name).view(np.uint64).tolist()
