"""Rollups equal a direct computation, and merge is associative/commutative over splits."""

from __future__ import annotations

import random
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.rocks.ingest import rollup_sorted
from strata.conflict import resolve
from strata.rollup import HOUR, MINUTE, Rollups, merge, resolution_for, rollup

rows = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 3 * HOUR),
        st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
    ),
    max_size=80,
)


def resolved(r: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sid = np.array([x[0] for x in r], dtype=np.uint64)
    ts = np.array([x[1] for x in r], dtype=np.int64)
    v = np.array([x[2] for x in r], dtype=np.float64)
    return resolve(sid, ts, v)


def reference(
    sid: np.ndarray, ts: np.ndarray, v: np.ndarray, step: int
) -> dict[tuple[int, int], tuple[int, float, float, float, float]]:
    groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for s, t, x in zip(sid.tolist(), ts.tolist(), v.tolist(), strict=True):
        groups.setdefault((s, t - t % step), []).append((t, x))
    out = {}
    for key, pts in groups.items():
        vals = [x for _, x in pts]
        out[key] = (len(vals), sum(vals), min(vals), max(vals), max(pts)[1])
    return out


def as_dict(r: Rollups) -> dict[tuple[int, int], tuple[int, float, float, float, float]]:
    return {
        (int(s), int(b)): (int(c), float(su), float(mi), float(ma), float(la))
        for s, b, c, su, mi, ma, la in zip(
            r.sid, r.bucket, r.count, r.sum, r.min, r.max, r.last, strict=True
        )
    }


def close(
    a: dict[tuple[int, int], tuple[int, float, float, float, float]],
    b: dict[tuple[int, int], tuple[int, float, float, float, float]],
) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        ca, sa, *rest_a = a[k]
        cb, sb, *rest_b = b[k]
        if ca != cb or rest_a != rest_b or abs(sa - sb) > 1e-6 * max(1.0, abs(sa), abs(sb)) * ca:
            return False
    return True


@given(rows, st.sampled_from([1, MINUTE, HOUR]))
def test_rollup_matches_reference(r: list[tuple[int, int, float]], step: int) -> None:
    sid, ts, v = resolved(r)
    assert close(as_dict(rollup(sid, ts, v, step)), reference(sid, ts, v, step))


@settings(max_examples=200)
@given(rows, st.randoms(use_true_random=False), st.integers(1, 4))
def test_merge_of_any_split_and_order_equals_rollup_of_all(
    r: list[tuple[int, int, float]], rnd: random.Random, pieces: int
) -> None:
    sid, ts, v = resolved(r)
    idx = list(range(sid.size))
    rnd.shuffle(idx)
    chunks = [np.array(sorted(idx[i::pieces]), dtype=np.int64) for i in range(pieces)]
    minute_parts = [rollup(sid[c], ts[c], v[c], MINUTE) for c in chunks]
    rnd.shuffle(minute_parts)
    # Associativity: fold pairwise in a random tree shape, then re-bucket to hours.
    while len(minute_parts) > 1:
        i = rnd.randrange(len(minute_parts) - 1)
        minute_parts[i : i + 2] = [merge(minute_parts[i : i + 2], MINUTE)]
    folded = merge(minute_parts, HOUR)
    assert close(as_dict(folded), reference(sid, ts, v, HOUR))


def test_resolution_choice() -> None:
    assert resolution_for(7200) == "1h"
    assert resolution_for(300) == "1m"
    assert resolution_for(30) == "raw"
    assert resolution_for(90) == "raw"


def test_sums_beyond_float64_are_inf_without_a_warning() -> None:
    sid = np.zeros(4, dtype=np.uint64)
    ts = np.arange(4, dtype=np.int64) * 10
    big = np.array([1e308, 1e308, -1e308, -1e308])  # the halves overflow, each its own way
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow RuntimeWarning would raise here
        whole = rollup(sid, ts, np.abs(big), MINUTE)
        halves = merge(
            [rollup(sid[:2], ts[:2], big[:2], MINUTE), rollup(sid[2:], ts[2:], big[2:], MINUTE)],
            HOUR,
        )
        sorted_ = rollup_sorted(sid, ts, -np.abs(big), MINUTE)
    assert whole.sum.tolist() == [np.inf] and sorted_.sum.tolist() == [-np.inf]
    assert np.isnan(halves.sum).all()  # +inf from one half, -inf from the other
    assert halves.min.tolist() == [-1e308] and halves.max.tolist() == [1e308]
