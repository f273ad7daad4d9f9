"""RAM apply is idempotent and order-independent (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.ram.blocks import BLOCK_SECONDS, Columns, PartitionPoints

T0 = 1_700_000_000
SIDS = np.arange(6, dtype=np.uint64)

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5]),
)
point = st.tuples(st.integers(0, 5), st.integers(0, 3 * BLOCK_SECONDS), values)
batches = st.lists(st.lists(point, max_size=30), max_size=6)


def to_cols(batch: list[tuple[int, int, float]]) -> Columns:
    return (
        np.array([p[0] for p in batch], dtype=np.uint64),
        np.array([T0 + p[1] for p in batch], dtype=np.int64),
        np.array([p[2] for p in batch], dtype=np.float64),
    )


def apply_all(order: list[list[tuple[int, int, float]]]) -> Columns:
    p = PartitionPoints()
    for b in order:
        p.insert(*to_cols(b), 0)
    return p.read(SIDS, T0, T0 + 3 * BLOCK_SECONDS)


def same(a: Columns, b: Columns) -> bool:
    # Bit for bit, zeros included: the conflict rule prefers 0.0 over -0.0.
    return (
        np.array_equal(a[0], b[0])
        and np.array_equal(a[1], b[1])
        and np.array_equal(a[2].view(np.uint64), b[2].view(np.uint64))
    )


@settings(max_examples=150, deadline=None)
@given(batches)
def test_apply_twice_equals_apply_once(bs: list[list[tuple[int, int, float]]]) -> None:
    assert same(apply_all(bs), apply_all(bs + bs))


@settings(max_examples=150, deadline=None)
@given(batches, st.randoms(use_true_random=False))
def test_apply_order_does_not_matter(bs: list[list[tuple[int, int, float]]], rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    shuffled = list(bs)
    rnd.shuffle(shuffled)
    # Split batches differently too: one flat batch must give the same answer.
    flat = [[p for b in bs for p in b]]
    assert same(apply_all(bs), apply_all(shuffled))
    assert same(apply_all(bs), apply_all(flat))
