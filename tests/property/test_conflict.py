"""The duplicate-point rule is deterministic and order-independent (DESIGN §2)."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st

from strata.conflict import resolve

points = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 5), st.floats(-1e6, 1e6, allow_nan=False)),
    max_size=60,
)


def _arrays(
    rows: list[tuple[int, int, float]],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    return (
        np.array([r[0] for r in rows], dtype=np.uint64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def _reference(rows: list[tuple[int, int, float]]) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    for sid, ts, v in rows:
        cur = out.get((sid, ts))
        if cur is None or (abs(v), v) > (abs(cur), cur):
            out[(sid, ts)] = v
    return out


@given(points, st.randoms())
def test_resolve_matches_reference_in_any_order(
    rows: list[tuple[int, int, float]], rnd: random.Random
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    s, t, v = resolve(*_arrays(shuffled))
    got = {(int(a), int(b)): float(c) for a, b, c in zip(s, t, v, strict=True)}
    assert got == _reference(rows)
    # Output sorted by (sid, ts) with no duplicates.
    keys = list(zip(s.tolist(), t.tolist(), strict=True))
    assert keys == sorted(set(keys))


@given(points)
def test_resolve_is_idempotent(rows: list[tuple[int, int, float]]) -> None:
    once = resolve(*_arrays(rows))
    twice = resolve(*(np.concatenate([a, a]) for a in once))
    for a, b in zip(once, twice, strict=True):
        assert np.array_equal(a, b)


def test_positive_zero_beats_negative_zero_in_any_order() -> None:
    for values in ([-0.0, 0.0], [0.0, -0.0]):
        _, _, v = resolve(np.array([1, 1], np.uint64), np.array([5, 5], np.int64), np.array(values))
        assert not np.signbit(v[0])


def test_ties_go_to_the_larger_value() -> None:
    _, _, v = resolve(
        np.array([1, 1], np.uint64), np.array([5, 5], np.int64), np.array([-3.0, 3.0])
    )
    assert v.tolist() == [3.0]
