"""``decode_batches`` (many encoded batches at once) against ``decode_batch`` one by one.

The reference is the per-batch decoder (itself pinned by the golden vectors): for any list
of batches, decoding them together must give bin for bin the rows of decoding each and
concatenating, and a damaged batch must raise what ``decode_batch`` raises for it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata import sketch_codec
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import UnreadableSketch, decode_batch, decode_batches, encode_batch


def assert_same_rows(got: SketchBatch, want: SketchBatch) -> None:
    assert got.params == want.params and len(got) == len(want)
    for name in ("sid", "ts", "count", "zero_count", "sum", "min", "max"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for store in ("pos", "neg"):
        g, w = getattr(got, store), getattr(want, store)
        np.testing.assert_array_equal(g.offsets, w.offsets)
        np.testing.assert_array_equal(g.keys, w.keys)
        np.testing.assert_array_equal(g.counts, w.counts)


DEFAULT = SketchParams()


def batch(seed: int, rows: int, params: SketchParams = DEFAULT) -> SketchBatch:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 30, rows)  # empty rows included
    values = rng.lognormal(2, 2, int(sizes.sum())) * rng.choice(
        [-1.0, 1.0, 1.0, 0.0], int(sizes.sum())
    )
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    sid = rng.integers(0, 2**64 - 1, rows, dtype=np.uint64)
    ts = rng.integers(-(2**40), 2**40, rows)
    return SketchBatch.from_ragged(params, sid, ts, offsets, values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 12)), max_size=12))
def test_decoding_together_equals_decoding_each(specs: list[tuple[int, int]]) -> None:
    raws = [encode_batch(batch(seed, rows)) for seed, rows in specs]
    want = (
        SketchBatch.concat([decode_batch(r) for r in raws])
        if raws
        else SketchBatch.empty(SketchParams())
    )
    assert_same_rows(decode_batches(raws), want)


def test_integer_batches_never_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case (what the stores write) is decoded in one pass, not one by one."""
    raws = [encode_batch(batch(seed, 8)) for seed in range(50)]
    want = SketchBatch.concat([decode_batch(r) for r in raws])

    def refuse(raw: bytes) -> SketchBatch:
        raise AssertionError("fell back to decode_batch")

    monkeypatch.setattr(sketch_codec, "decode_batch", refuse)
    assert_same_rows(decode_batches(raws), want)


def test_float_counts_and_other_parameters_take_the_one_by_one_path() -> None:
    weighted = Sketch.from_bins(SketchParams(), [3, 9], [0.5, 2.25], sum=7.0, min=1.0, max=3.0)
    floats = SketchBatch.from_sketches([5], [6], [weighted])
    raws = [encode_batch(batch(1, 4)), encode_batch(floats), encode_batch(batch(2, 3))]
    want = SketchBatch.concat([decode_batch(r) for r in raws])
    assert_same_rows(decode_batches(raws), want)
    other = encode_batch(batch(3, 2, SketchParams(0.02, 128)))
    with pytest.raises(ValueError, match="different parameters"):
        decode_batches([raws[0], other])  # as SketchBatch.concat of the two would


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],  # a truncated count
        lambda raw: raw + b"\x01",  # a trailing count
        lambda raw: raw[:40],  # truncated inside the columns
        lambda raw: raw[:2] + b"\x07" + raw[3:],  # unknown version
    ],
)
def test_a_damaged_batch_raises_what_decode_batch_raises(damage: object) -> None:
    assert callable(damage)
    good = encode_batch(batch(4, 5))
    bad = damage(encode_batch(batch(5, 6)))
    with pytest.raises(UnreadableSketch) as one:
        decode_batch(bad)
    with pytest.raises(UnreadableSketch) as together:
        decode_batches([good, bad, good])
    assert together.value.reason == one.value.reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**56 - 1) | st.integers(0, 300), max_size=200))
def test_varints_round_trip(values: list[int]) -> None:
    """The varint reader's one-byte fast path and its multi-byte groups agree with the
    writer for every length up to the 8 bytes a sketch ever uses."""
    z = np.array(values, dtype=np.uint64)
    buf = np.frombuffer(sketch_codec._varints(z), np.uint8)
    assert sketch_codec._unvarints(buf).tolist() == values
