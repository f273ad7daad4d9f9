"""DDSketch accuracy against exact quantiles, and cross-checks with the ``ddsketch`` package.

Reference quantile (``ddsketch``'s definition, the one :mod:`strata.sketch` implements): with
``n`` values sorted ascending, quantile ``q`` is ``sorted[floor(q * (n - 1))]`` — the lower
value at a fractional rank. Every estimate must be within the relative accuracy ``a`` of it
(a zero must come back as exactly 0). The same check runs on a single sketch, on sketches
merged in random orders and groupings (singles and the batch form), and on what the codec
and the protobuf form give back after a round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from ddsketch import DDSketch, LogCollapsingLowestDenseDDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import (
    CubicallyInterpolatedMapping,
    KeyMapping,
    LinearlyInterpolatedMapping,
)
from ddsketch.pb import ddsketch_pb2 as pb
from ddsketch.pb.proto import DDSketchProto
from ddsketch.store import DenseStore

from strata.sketch import (
    IncompatibleSketches,
    Sketch,
    SketchBatch,
    SketchError,
    SketchParams,
    merge_sketches,
)
from strata.sketch_codec import (
    decode_batch,
    decode_sketch,
    encode_batch,
    encode_sketch,
    from_ddsketch_proto,
    to_ddsketch_proto,
)

F64 = npt.NDArray[np.float64]
A = 0.01
QS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999])
# Float rounding of log/pow at a bin edge may add a few ulps to the bound ``a``.
SLACK = 1e-9


def _bimodal(rng: np.random.Generator, n: int) -> F64:
    return np.concatenate((rng.normal(5.0, 1.0, n // 2), rng.normal(500.0, 50.0, n - n // 2)))


def _mixed_sign(rng: np.random.Generator, n: int) -> F64:
    k = n // 10
    return np.concatenate(
        (-rng.lognormal(1.0, 2.0, n // 2), np.zeros(k), rng.lognormal(0.0, 1.0, n - n // 2 - k))
    )


DATASETS: dict[str, Callable[[np.random.Generator, int], F64]] = {
    "uniform": lambda rng, n: rng.uniform(0.0, 1000.0, n),
    "normal": lambda rng, n: rng.normal(0.0, 1.0, n),  # half negative, values near zero
    "lognormal": lambda rng, n: rng.lognormal(0.0, 2.0, n),
    "pareto": lambda rng, n: rng.pareto(1.5, n) + 1.0,  # Pareto with alpha 1.5, x_m 1
    "bimodal": _bimodal,
    "mixed_sign": _mixed_sign,  # negatives, zeros and positives
}


def data(name: str, n: int, seed: int = 7) -> F64:
    rng = np.random.default_rng(seed)
    v = DATASETS[name](rng, n)
    rng.shuffle(v)
    return v


def exact_quantiles(v: F64, qs: F64 = QS) -> F64:
    s = np.sort(v)
    rank = np.floor(qs * (v.size - 1)).astype(np.int64)
    out: F64 = s[rank]
    return out


def assert_accurate(sketch: Sketch, exact: F64, qs: F64 = QS, a: float = A) -> None:
    est = sketch.quantiles(qs)
    err = np.abs(est - exact)
    bound = a * np.abs(exact) * (1 + SLACK)
    bad = np.flatnonzero(err > bound)
    assert bad.size == 0, {
        float(qs[i]): (float(est[i]), float(exact[i]), float(err[i] / abs(exact[i] or 1)))
        for i in bad
    }


def assert_summary(sketch: Sketch, v: F64) -> None:
    assert sketch.count == v.size
    assert sketch.min == v.min() and sketch.max == v.max()
    assert sketch.sum == pytest.approx(math.fsum(v.tolist()), rel=1e-9, abs=1e-9)
    assert sketch.zero_count == np.count_nonzero(v == 0)


# -- accuracy ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100_000, 1_000_000])
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_single_sketch_within_relative_accuracy(name: str, n: int) -> None:
    v = data(name, n)
    s = Sketch.from_values(v)
    assert_accurate(s, exact_quantiles(v))
    assert_summary(s, v)
    # The codec round trip is exact, so the decoded sketch passes the same suite.
    back = decode_sketch(encode_sketch(s))
    assert back == s
    assert_accurate(back, exact_quantiles(v))


def test_ten_million_values() -> None:
    v = data("lognormal", 10_000_000, seed=3)
    t0 = time.perf_counter()
    s = Sketch.from_values(v)
    elapsed = time.perf_counter() - t0
    assert_accurate(s, exact_quantiles(v))
    assert s.count == v.size
    assert elapsed < 5.0, f"1e7 values took {elapsed:.1f} s"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_merged_in_random_orders_and_groupings(name: str) -> None:
    v = data(name, 200_000)
    exact = exact_quantiles(v)
    whole = Sketch.from_values(v)
    rng = np.random.default_rng(11)
    for trial in range(3):
        cuts = np.sort(rng.choice(np.arange(1, v.size), size=rng.integers(1, 60), replace=False))
        parts = [Sketch.from_values(p) for p in np.split(v, cuts)]
        # Random merge tree: repeatedly merge a random run of neighbours in shuffled order.
        rng.shuffle(parts)
        while len(parts) > 1:
            i = int(rng.integers(0, len(parts) - 1))
            j = int(rng.integers(i + 2, min(len(parts), i + 5) + 1))
            parts[i:j] = [merge_sketches(parts[i:j])]
        merged = parts[0]
        assert_accurate(merged, exact)
        assert_summary(merged, v)
        # Bin for bin the sketch of the union, whatever the order.
        assert np.array_equal(merged.pos_keys, whole.pos_keys), trial
        assert np.array_equal(merged.pos_counts, whole.pos_counts), trial
        assert np.array_equal(merged.neg_keys, whole.neg_keys), trial
        assert np.array_equal(merged.neg_counts, whole.neg_counts), trial


@pytest.mark.parametrize("name", ["lognormal", "mixed_sign", "pareto"])
def test_batch_group_merge_in_random_groupings(name: str) -> None:
    v = data(name, 300_000)
    rng = np.random.default_rng(5)
    rows = 3_000
    # Ragged rows of random sizes labelled with random (sid, ts): the intake shape.
    offsets = np.concatenate(([0], np.sort(rng.integers(0, v.size, rows - 1)), [v.size]))
    sid = rng.integers(0, 40, rows).astype(np.uint64)
    ts = 1_700_000_000 + 10 * rng.integers(0, 360, rows)
    batch = SketchBatch.from_ragged(SketchParams(), sid, ts, offsets, v)
    # Fold by (sid, ts), then roll up to 1 m and 1 h, then merge across series per group.
    folded = batch.merge_by_key().rollup(60).rollup(3600)
    group = (folded.sid % 3).astype(np.uint64)
    per_group = folded.merge_by_key(group, np.zeros(len(folded), np.int64))
    assert len(per_group) == 3
    row_group = (sid % 3)[np.repeat(np.arange(rows), np.diff(offsets))]
    for g in range(3):
        mine = v[row_group == g]
        assert_accurate(per_group.row(g), exact_quantiles(mine))
        assert_summary(per_group.row(g), mine)
    total = per_group.merge_all()
    assert _same_bins(total, Sketch.from_values(v))
    assert_accurate(total, exact_quantiles(v))
    # Batch quantiles, the codec round trip of the batch.
    back = decode_batch(encode_batch(per_group))
    for g in range(3):
        assert back.row(g) == per_group.row(g)
        assert_accurate(back.row(g), exact_quantiles(v[row_group == g]))
    np.testing.assert_array_equal(
        per_group.quantiles(QS), np.stack([per_group.row(g).quantiles(QS) for g in range(3)])
    )


def test_from_values_labels_equal_ragged_rows() -> None:
    rng = np.random.default_rng(2)
    v = rng.lognormal(0, 1, 20_000)
    sid = rng.integers(0, 5, v.size)
    ts = rng.integers(0, 4, v.size)
    b = SketchBatch.from_values(SketchParams(), sid, ts, v)
    assert len(b) == len({(int(s), int(t)) for s, t in zip(sid, ts, strict=True)})
    for i in range(len(b)):
        sel = (sid == b.sid[i]) & (ts == b.ts[i])
        assert _same_bins(b.row(i), Sketch.from_values(v[sel]))
        assert_summary(b.row(i), v[sel])


def _same_bins(x: Sketch, y: Sketch) -> bool:
    return all(
        np.array_equal(getattr(x, f), getattr(y, f))
        for f in ("pos_keys", "pos_counts", "neg_keys", "neg_counts")
    ) and (x.count, x.zero_count, x.min, x.max) == (y.count, y.zero_count, y.min, y.max)


# -- bounded bins --------------------------------------------------------------------------


def test_collapsing_keeps_upper_quantiles_accurate() -> None:
    rng = np.random.default_rng(9)
    v = np.exp(rng.uniform(-300.0, 300.0, 200_000))  # ~30 000 keys wide at a = 1%
    s = Sketch.from_values(v)
    assert s.pos_keys.size <= 2048
    assert int(s.pos_keys[-1]) - int(s.pos_keys[0]) + 1 <= 2048
    assert s.count == v.size and s.min == v.min() and s.max == v.max()
    upper = np.array([0.95, 0.99, 0.999, 1.0])
    assert_accurate(s, exact_quantiles(v, upper), upper)
    # The lowest quantiles lost their accuracy (they sit in the collapsed bin) but never
    # leave the exact range.
    low = s.quantiles([0.0, 0.01])
    assert low[0] == v.min() and low[1] > exact_quantiles(v, np.array([0.01]))[0] * (1 + A)
    # Negative values collapse their smallest magnitudes: the most negative quantiles hold.
    n = Sketch.from_values(-v)
    lower = np.array([0.0, 0.001, 0.01, 0.05])
    assert_accurate(n, exact_quantiles(-v, lower), lower)
    # Merging collapsed sketches gives the collapsed sketch of the union.
    halves = merge_sketches([Sketch.from_values(v[::2]), Sketch.from_values(v[1::2])])
    assert _same_bins(halves, s)


def test_small_bin_limit_collapses_in_merges() -> None:
    params = SketchParams(0.01, bin_limit=16)
    rng = np.random.default_rng(4)
    parts = [rng.lognormal(float(mu), 1.0, 1000) for mu in range(-5, 6)]
    merged = merge_sketches([Sketch.from_values(p, params) for p in parts])
    whole = Sketch.from_values(np.concatenate(parts), params)
    assert _same_bins(merged, whole)
    assert int(whole.pos_keys[-1]) - int(whole.pos_keys[0]) < 16


# -- cross-check with the ddsketch package -------------------------------------------------


def dd_serialize(sketch: BaseDDSketch) -> bytes:
    """ddsketch's own protobuf writer."""
    message = DDSketchProto.to_proto(sketch)  # type: ignore[no-untyped-call]
    return bytes(message.SerializeToString())


def dd_parse(raw: bytes) -> BaseDDSketch:
    """ddsketch's own protobuf reader."""
    message = pb.DDSketch.FromString(raw)
    out: BaseDDSketch = DDSketchProto.from_proto(message)  # type: ignore[no-untyped-call]
    return out


def _dd_bins(store: DenseStore) -> tuple[list[int], list[float]]:
    keys, counts = [], []
    for i, c in enumerate(store.bins):
        if c:
            keys.append(i + store.offset)
            counts.append(c)
    return keys, counts


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_same_bins_and_quantiles_as_ddsketch(name: str) -> None:
    v = data(name, 50_000)
    theirs = LogCollapsingLowestDenseDDSketch(A, 2048)
    for x in v.tolist():
        theirs.add(x)
    mine = Sketch.from_values(v)
    assert (mine.pos_keys.tolist(), mine.pos_counts.tolist()) == _dd_bins(theirs._store)
    assert (mine.neg_keys.tolist(), mine.neg_counts.tolist()) == _dd_bins(theirs._negative_store)
    assert mine.zero_count == theirs._zero_count
    assert mine.count == theirs.count
    assert mine.sum == pytest.approx(theirs.sum, rel=1e-9)
    qs = np.concatenate(([0.0], QS, [1.0]))
    their_q = np.array([theirs.get_quantile_value(float(q)) for q in qs])
    # Same bins, so the same estimate up to pow()'s last bits; ours is clamped to [min, max]
    # and exact at q = 0 and q = 1.
    expected = np.clip(their_q, v.min(), v.max())
    expected[[0, -1]] = v.min(), v.max()
    np.testing.assert_allclose(mine.quantiles(qs), expected, rtol=1e-12, atol=0)
    exact = exact_quantiles(v, qs)
    assert np.all(np.abs(their_q - exact) <= A * np.abs(exact) * (1 + SLACK))
    assert_accurate(mine, exact, qs)


def test_collapsed_bins_equal_ddsketch() -> None:
    rng = np.random.default_rng(21)
    v = np.exp(rng.uniform(-200.0, 200.0, 30_000)) * rng.choice([-1.0, 1.0], 30_000)
    theirs = LogCollapsingLowestDenseDDSketch(A, 512)
    for x in v.tolist():
        theirs.add(x)
    mine = Sketch.from_values(v, SketchParams(A, 512))
    assert (mine.pos_keys.tolist(), mine.pos_counts.tolist()) == _dd_bins(theirs._store)
    assert (mine.neg_keys.tolist(), mine.neg_counts.tolist()) == _dd_bins(theirs._negative_store)


@pytest.mark.parametrize("name", ["lognormal", "mixed_sign", "normal"])
def test_protobuf_export_is_read_by_ddsketch(name: str) -> None:
    v = data(name, 50_000)
    mine = Sketch.from_values(v)
    raw = to_ddsketch_proto(mine)
    assert pb.DDSketch.FromString(raw).mapping.gamma == SketchParams().gamma
    theirs = dd_parse(raw)
    assert theirs.count == mine.count
    assert (mine.pos_keys.tolist(), mine.pos_counts.tolist()) == _dd_bins(theirs._store)
    assert (mine.neg_keys.tolist(), mine.neg_counts.tolist()) == _dd_bins(theirs._negative_store)
    their_q = np.array([theirs.get_quantile_value(float(q)) for q in QS])
    exact = exact_quantiles(v)
    assert np.all(np.abs(their_q - exact) <= A * np.abs(exact) * (1 + SLACK))
    np.testing.assert_allclose(mine.quantiles(QS), their_q, rtol=1e-12)


@pytest.mark.parametrize("name", ["lognormal", "mixed_sign", "bimodal"])
def test_protobuf_import_of_ddsketch_is_exact(name: str) -> None:
    v = data(name, 50_000)
    theirs = DDSketch(A)
    for x in v.tolist():
        theirs.add(x)
    raw = dd_serialize(theirs)
    imported = from_ddsketch_proto(raw)
    mine = Sketch.from_values(v)
    for f in ("pos_keys", "pos_counts", "neg_keys", "neg_counts"):
        assert np.array_equal(getattr(imported, f), getattr(mine, f)), f
    assert imported.count == v.size and imported.zero_count == mine.zero_count
    # min/max are the representative values of the extreme bins: within a of the truth.
    assert imported.min == pytest.approx(v.min(), rel=A)
    assert imported.max == pytest.approx(v.max(), rel=A)
    assert_accurate(imported, exact_quantiles(v))
    # The decoded proto re-exports to what ddsketch reads back with the same bins.
    again = dd_parse(to_ddsketch_proto(imported))
    assert _dd_bins(again._store) == _dd_bins(theirs._store)


@pytest.mark.parametrize(
    ("mapping", "a"),
    [
        (LinearlyInterpolatedMapping(0.01), 0.01),
        (CubicallyInterpolatedMapping(0.01), 0.01),
        (LinearlyInterpolatedMapping(0.005), 0.005),
    ],
)
def test_protobuf_import_converts_other_mappings(mapping: KeyMapping, a: float) -> None:
    v = data("mixed_sign", 50_000)
    theirs = BaseDDSketch(mapping, DenseStore(), DenseStore(), 0.0)
    for x in v.tolist():
        theirs.add(x)
    imported = from_ddsketch_proto(dd_serialize(theirs))
    assert imported.count == v.size
    # Their bin's representative is within a of the value, ours of theirs.
    assert_accurate(imported, exact_quantiles(v), a=A + a + A * a)


def test_protobuf_import_with_other_gamma_and_offset_and_sparse_bins() -> None:
    params = SketchParams()
    gamma = (1 + 0.02) / (1 - 0.02)
    message = pb.DDSketch(
        mapping=pb.IndexMapping(gamma=params.gamma, indexOffset=3.0),
        positiveValues=pb.Store(
            binCounts={10: 2.0, 13: 1.0},
            contiguousBinCounts=[1.0, 4.0, 0.0],
            contiguousBinIndexOffset=12,
        ),
        negativeValues=pb.Store(binCounts={-2: 5.0}),
        zeroCount=7.0,
    )
    s = from_ddsketch_proto(message.SerializeToString())
    # Their keys are ours + 3; map entries and contiguous counts add up (13 is in both), the
    # dense store's empty bin (14) is no bin.
    assert s.pos_keys.tolist() == [7, 9, 10]
    assert s.pos_counts.tolist() == [2.0, 1.0, 5.0]
    assert s.neg_keys.tolist() == [-5] and s.neg_counts.tolist() == [5.0]
    assert (s.zero_count, s.count) == (7.0, 20.0)
    assert s.min == -params.values(np.array([-5]))[0]
    assert s.max == params.values(np.array([10]))[0]
    # A coarser mapping is re-binned by representative values.
    theirs = DDSketch(0.02)
    v = data("lognormal", 20_000)
    for x in v.tolist():
        theirs.add(x)
    assert theirs._mapping.gamma == pytest.approx(gamma)
    got = from_ddsketch_proto(dd_serialize(theirs))
    assert_accurate(got, exact_quantiles(v), a=0.02 + A + 0.02 * A)


# -- contracts -----------------------------------------------------------------------------


def test_empty_and_invalid_inputs() -> None:
    e = Sketch.empty()
    assert e.is_empty and e.count == 0 and np.isnan(e.quantiles(QS)).all()
    assert decode_sketch(encode_sketch(e)) == e
    assert Sketch.from_values([]) == e
    assert Sketch.from_values([5.0]).merge(e) == Sketch.from_values([5.0])
    for bad in ([1.0, math.nan], [math.inf], [-math.inf, 2.0]):
        with pytest.raises(SketchError, match="finite"):
            Sketch.from_values(bad)
    with pytest.raises(SketchError, match=r"\[0, 1\]"):
        Sketch.from_values([1.0]).quantiles([1.5])
    with pytest.raises(IncompatibleSketches):
        Sketch.from_values([1.0]).merge(Sketch.from_values([1.0], SketchParams(0.02)))
    with pytest.raises(SketchError):
        SketchParams(0.0)
    with pytest.raises(SketchError):
        SketchParams(0.01, bin_limit=0)


def test_single_values_and_extremes_are_exact_or_within_a() -> None:
    for x in (1e-300, 3.5, -3.5, 0.0, 1e300, -1e-200, 5e-324):
        s = Sketch.from_values([x])
        # One value: every quantile is that value (the clamp to [min, max] makes it exact).
        assert s.quantiles([0.0, 0.5, 1.0]).tolist() == [x] * 3
    s = Sketch.from_values([2.0, 2.0, 3.0, -1.0, 0.0])
    assert s.quantiles([0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(
        [-1.0, 0.0, 2.0, 2.0, 3.0], rel=A
    )


def test_sketches_are_immutable() -> None:
    s = Sketch.from_values([1.0, 2.0])
    with pytest.raises(ValueError, match="read-only"):
        s.pos_counts[0] = 5.0
    before = s.pos_counts.copy()
    s.add([1.0, 1.0])
    assert np.array_equal(s.pos_counts, before)
    labels = np.array([1, 2], np.uint64)
    b = SketchBatch.from_ragged(SketchParams(), labels, [0, 0], [0, 1, 2], [1.0, 2.0])
    labels[0] = 9  # the batch copied the caller's labels
    assert b.sid.tolist() == [1, 2]


def test_convert_rebins_and_keeps_the_summary() -> None:
    v = data("lognormal", 50_000)
    s = Sketch.from_values(v)
    c = s.convert(SketchParams(0.02, 256))
    assert (c.count, c.sum, c.min, c.max) == (s.count, s.sum, s.min, s.max)
    assert int(c.pos_keys[-1]) - int(c.pos_keys[0]) < 256
    upper = np.array([0.5, 0.9, 0.99])
    assert_accurate(c, exact_quantiles(v, upper), upper, a=0.02 + A + 0.02 * A)
    # Re-binning into the same mapping by representative values changes nothing.
    same = s.convert(SketchParams(A, 4096))
    assert _same_bins(same, s)
