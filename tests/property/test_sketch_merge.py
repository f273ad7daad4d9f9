"""DDSketch merge laws and exact summaries (hypothesis).

- merge is commutative (everything equal, sum included) and associative bin for bin, with
  and without collapsing (small bin limits make every merge collapse);
- merging equals sketching the union of the values;
- count/min/max are exact and sum is within float tolerance of ``math.fsum``;
- the batch form's group-by merge equals merging the single sketches of each group;
- quantiles stay within the relative accuracy of the exact (lower-rank) quantile;
- the codec and the protobuf form round-trip, and corrupted bytes are refused cleanly.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.sketch import MAX_BIN_LIMIT, Sketch, SketchBatch, SketchParams, merge_sketches
from strata.sketch_codec import (
    UnreadableSketch,
    decode_batch,
    decode_sketch,
    encode_batch,
    encode_sketch,
    from_ddsketch_proto,
    to_ddsketch_proto,
)

params_st = st.sampled_from(
    [
        SketchParams(0.01, 2048),
        SketchParams(0.01, 16),  # collapses on most inputs
        SketchParams(0.05, 3),
        SketchParams(0.001, 64),
    ]
)
value = st.one_of(
    # The whole float range below overflow of a sum: subnormals, zeros, huge magnitudes.
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000).map(float),
    st.floats(min_value=1e-3, max_value=1e4),  # latency-like
    st.sampled_from([0.0, -0.0, 5e-324, -1e-310, 2.2250738585072014e-308, 1e300]),
)
values = st.lists(value, max_size=50)


def sk(v: list[float], params: SketchParams) -> Sketch:
    return Sketch.from_values(np.array(v, dtype=np.float64), params)


def bins(s: Sketch) -> tuple[list[int], list[float], list[int], list[float], float]:
    return (
        s.pos_keys.tolist(),
        s.pos_counts.tolist(),
        s.neg_keys.tolist(),
        s.neg_counts.tolist(),
        s.zero_count,
    )


def assert_summary(s: Sketch, v: list[float]) -> None:
    assert s.count == len(v)
    if v:
        assert (s.min, s.max) == (min(v), max(v))
        tolerance = 1e-12 * math.fsum(abs(x) for x in v) + 1e-300
        assert abs(s.sum - math.fsum(v)) <= tolerance
    else:
        assert (s.min, s.max, s.sum) == (math.inf, -math.inf, 0.0)
    tiny = s.params.min_possible
    assert s.zero_count == sum(1 for x in v if abs(x) <= tiny)


@settings(max_examples=300, deadline=None)
@given(params_st, values, values)
def test_merge_is_commutative(params: SketchParams, a: list[float], b: list[float]) -> None:
    x, y = sk(a, params), sk(b, params)
    assert x.merge(y) == y.merge(x)


@settings(max_examples=300, deadline=None)
@given(params_st, values, values, values)
def test_merge_is_associative_and_equals_the_union(
    params: SketchParams, a: list[float], b: list[float], c: list[float]
) -> None:
    x, y, z = sk(a, params), sk(b, params), sk(c, params)
    left = x.merge(y).merge(z)
    right = x.merge(y.merge(z))
    union = sk(a + b + c, params)
    assert bins(left) == bins(right) == bins(union)
    for m in (left, right, merge_sketches([z, x, y])):
        assert bins(m) == bins(union)
        assert_summary(m, a + b + c)
    # Keys never span more than the bin limit in either store.
    for keys in (union.pos_keys, union.neg_keys):
        assert keys.size == 0 or int(keys[-1]) - int(keys[0]) < params.bin_limit


@settings(max_examples=300, deadline=None)
@given(params_st, values)
def test_summary_is_exact(params: SketchParams, v: list[float]) -> None:
    s = sk(v, params)
    assert_summary(s, v)
    assert s.zero_count + s.pos_counts.sum() + s.neg_counts.sum() == len(v)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0.01, 0.05, 0.002]), st.lists(value, min_size=1, max_size=80))
def test_quantiles_within_relative_accuracy(a: float, v: list[float]) -> None:
    params = SketchParams(a, MAX_BIN_LIMIT)  # never collapses on these inputs
    s = sk(v, params)
    qs = np.array([0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    est = s.quantiles(qs)
    assert [s.quantile(q) for q in qs.tolist()] == est.tolist()  # scalar twin, same answers
    ordered = sorted(v)
    for q, e in zip(qs.tolist(), est.tolist(), strict=True):
        exact = ordered[math.floor(q * (len(v) - 1))]
        if abs(exact) <= params.min_possible:
            assert abs(e) <= params.min_possible  # indistinguishable from zero
        else:
            assert abs(e - exact) <= a * abs(exact) * (1 + 1e-9), (q, e, exact)


rows_st = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.lists(value, max_size=12)),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(params_st, rows_st)
def test_batch_group_merge_equals_merging_singles(
    params: SketchParams, rows: list[tuple[int, int, list[float]]]
) -> None:
    lengths = [len(r[2]) for r in rows]
    batch = SketchBatch.from_ragged(
        params,
        np.array([r[0] for r in rows], dtype=np.uint64),
        np.array([60 * r[1] for r in rows], dtype=np.int64),
        np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))),
        np.array([x for r in rows for x in r[2]], dtype=np.float64),
    )
    singles = [batch.row(i) for i in range(len(batch))]
    for i, r in enumerate(rows):
        assert bins(singles[i]) == bins(sk(r[2], params))
        assert_summary(singles[i], r[2])

    def check(merged: SketchBatch, label: list[tuple[int, int]]) -> None:
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, key in enumerate(label):
            groups[key].append(i)
        got = list(zip(merged.sid.tolist(), merged.ts.tolist(), strict=True))
        assert got == sorted(groups)
        for j, key in enumerate(got):
            members = groups[key]
            expect = merge_sketches([singles[i] for i in members])
            assert bins(merged.row(j)) == bins(expect)
            assert_summary(merged.row(j), [x for i in members for x in rows[i][2]])
        if len(merged):
            np.testing.assert_array_equal(
                merged.quantiles([0.1, 0.5, 0.99]),
                np.stack([merged.row(j).quantiles([0.1, 0.5, 0.99]) for j in range(len(merged))]),
            )

    # Rows sharing (sid, ts); then 2-minute rollups; then across series by sid parity.
    check(batch.merge_by_key(), [(r[0], 60 * r[1]) for r in rows])
    check(batch.rollup(120), [(r[0], 120 * (r[1] // 2)) for r in rows])
    parity = [(r[0] % 2, 0) for r in rows]
    check(
        batch.merge_by_key(
            np.array([p[0] for p in parity], np.uint64), np.zeros(len(rows), np.int64)
        ),
        parity,
    )
    # Labelled values (one label per value) fold into the same rows.
    flat = [(r[0], 60 * r[1], x) for r in rows for x in r[2]]
    by_value = SketchBatch.from_values(
        params,
        np.array([f[0] for f in flat], np.uint64),
        np.array([f[1] for f in flat], np.int64),
        np.array([f[2] for f in flat], np.float64),
    )
    non_empty = batch.take(batch.count > 0).merge_by_key()
    assert by_value.sid.tolist() == non_empty.sid.tolist()
    assert by_value.ts.tolist() == non_empty.ts.tolist()
    for j in range(len(by_value)):
        assert bins(by_value.row(j)) == bins(non_empty.row(j))
    # The whole batch merged equals the sketch of every value.
    assert bins(batch.merge_all()) == bins(sk([f[2] for f in flat], params))


weights = st.floats(min_value=1e-3, max_value=1e6)


@settings(max_examples=200, deadline=None)
@given(
    params_st,
    st.lists(st.tuples(st.integers(-5000, 5000), weights), max_size=30),
    st.lists(st.tuples(st.integers(-5000, 5000), weights), max_size=30),
    st.floats(min_value=0.0, max_value=10.0),
    values,
)
def test_codec_round_trips(
    params: SketchParams,
    pos: list[tuple[int, float]],
    neg: list[tuple[int, float]],
    zero: float,
    v: list[float],
) -> None:
    weighted = Sketch.from_bins(
        params,
        [k for k, _ in pos],
        [c for _, c in pos],
        [k for k, _ in neg],
        [c for _, c in neg],
        zero,
    )
    plain = sk(v, params)
    for s in (weighted, plain):
        assert decode_sketch(encode_sketch(s)) == s
        # Same mapping, so the protobuf form keeps every bin (not sum/min/max).
        back = from_ddsketch_proto(to_ddsketch_proto(s), params)
        assert bins(back) == bins(s)
    b = SketchBatch.from_sketches([5, 6], [10, 20], [weighted, plain])
    d = decode_batch(encode_batch(b))
    assert d.sid.tolist() == [5, 6] and d.ts.tolist() == [10, 20]
    assert d.row(0) == weighted and d.row(1) == plain
    # Float weights: same bins either way; a collapsed bin sums its weights in another
    # order, so its count may differ in the last bits.
    x, y = weighted.merge(plain), plain.merge(weighted)
    assert x.pos_keys.tolist() == y.pos_keys.tolist()
    assert x.neg_keys.tolist() == y.neg_keys.tolist()
    np.testing.assert_allclose(x.pos_counts, y.pos_counts, rtol=1e-12)
    np.testing.assert_allclose(x.neg_counts, y.neg_counts, rtol=1e-12)
    assert (x.count, x.sum, x.min, x.max) == (y.count, y.sum, y.min, y.max)


GOLDEN = {
    name: bytes.fromhex(hexed)
    for name, _, hexed in (
        line.partition(" ")
        for line in (Path(__file__).parent.parent / "golden" / "sketch_v1.hex")
        .read_text()
        .splitlines()
    )
}
DECODERS = {
    "single": decode_sketch,
    "single_float_counts": decode_sketch,
    "batch": decode_batch,
    "ddsketch_proto": from_ddsketch_proto,
}


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(DECODERS)),
    st.lists(
        st.tuples(
            st.sampled_from(["set", "cut", "insert"]),
            st.integers(0, 10**6),
            st.binary(max_size=1, min_size=1),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_corrupted_bytes_are_unreadable_never_a_crash(
    name: str, edits: list[tuple[str, int, bytes]]
) -> None:
    raw = bytearray(GOLDEN[name])
    for op, at, byte in edits:
        i = at % (len(raw) + 1)
        if op == "set" and i < len(raw):
            raw[i] = byte[0]
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = byte
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow or cast warnings either
        with contextlib.suppress(UnreadableSketch):  # anything else fails the test
            DECODERS[name](bytes(raw))
