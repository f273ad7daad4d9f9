"""Agent ``SketchPayload`` (``POST /api/beta/sketches``) -> our sketches (pure).

Payloads are encoded with the real ``protobuf`` runtime (the classes built from the
descriptor in intake/agent_sketches.py) and, for malformed inputs the runtime cannot write,
with a few lines of wire encoding here; one payload is a hand-written golden byte string
(tests/golden/agent_sketch_payload.hex, see agent_sketch_README.md there).

The agent's bins are built with :func:`ref_key`, an independent scalar reference of the
agent's key function written from its documented formula (``pkg/quantile/config.go``) and
checked against values published in the agent's own tests. Quantiles of converted sketches
are compared with the exact quantiles of the values behind the bins, within the stated bound
(:func:`strata.agent_mapping.conversion_error_bound`).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.agent_sketches import (
    DecodedPayload,
    decode_sketch_payload,
    parse_sketch_payload,
    sketch_payload_class,
)
from intake.decode import V1_LIMITS, decode_body
from intake.distributions import ParsedDistributions
from intake.parse import PayloadError
from intake.rejections import RejectReason, TimeWindow
from strata.agent_mapping import (
    AGENT_BIAS,
    AGENT_INF_KEY,
    AGENT_NORM_MAX,
    AGENT_NORM_MIN,
    AGENT_RELATIVE_ACCURACY,
    agent_keys,
    agent_values,
    conversion_error_bound,
    from_agent_bins,
)
from strata.model import MetricType
from strata.naming import canonical_tags
from strata.series_id import series_id
from strata.sketch import Sketch, SketchError, SketchParams

F64 = npt.NDArray[np.float64]
NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, 3600, 600)
ORG = "acme"
PARAMS = SketchParams()
BOUND = conversion_error_bound(PARAMS)
QS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
GOLDEN = Path(__file__).parent.parent / "golden" / "agent_sketch_payload.hex"
Payload: Any = sketch_payload_class()

# --- an independent reference of the agent's mapping (pkg/quantile/config.go) ------------

REF_GAMMA = 1.0 + 2.0 / 128.0
REF_LN_GAMMA = math.log1p(2.0 / 128.0)
REF_BIAS = -math.floor(math.log(1e-9) / REF_LN_GAMMA) + 1
REF_NORM_MIN = REF_GAMMA ** (1 - REF_BIAS)
REF_NORM_MAX = REF_GAMMA ** (32766 - REF_BIAS)


def ref_key(v: float) -> int:
    """Config.key: round half to even (Python's round) of log_gamma(v), plus the bias."""
    if v < 0:
        return -ref_key(-v)
    if v < REF_NORM_MIN:
        return 0
    i = round(math.log(v) / REF_LN_GAMMA) + REF_BIAS
    if i > 32766:
        return 32767  # +Inf key
    return max(i, 1)


def ref_f64(k: int) -> float:
    """Config.f64: gamma ** (k - bias)."""
    if k < 0:
        return -ref_f64(-k)
    if k == 0:
        return 0.0
    if k == 32767:
        return math.inf
    return float(REF_GAMMA ** (k - REF_BIAS))


def ref_bins(values: F64) -> tuple[list[int], list[int]]:
    """The agent's (k, n) columns for ``values``: sorted keys and their counts."""
    counts: dict[int, int] = {}
    for v in values.tolist():
        k = ref_key(v)
        counts[k] = counts.get(k, 0) + 1
    keys = sorted(counts)
    return keys, [counts[k] for k in keys]


def exact_quantiles(values: F64, qs: list[float]) -> F64:
    s = np.sort(values)
    out: F64 = s[np.floor(np.array(qs) * (s.size - 1)).astype(np.int64)]
    return out


def add_sketch(
    msg: Any,
    metric: str,
    values: F64,
    *,
    ts: int = NOW - 10,
    host: str = "web-1",
    tags: tuple[str, ...] = ("env:prod",),
) -> None:
    keys, counts = ref_bins(values)
    s = msg.sketches.add(metric=metric, host=host, tags=list(tags))
    s.dogsketches.add(
        ts=ts,
        cnt=values.size,
        min=float(values.min()),
        max=float(values.max()),
        avg=float(values.mean()),
        sum=float(values.sum()),
        k=keys,
        n=counts,
    )


def parse(body: bytes, window: TimeWindow = WINDOW) -> ParsedDistributions:
    return parse_sketch_payload(body, ORG, window)


def rows(parsed: ParsedDistributions) -> dict[tuple[str, int, int], Sketch]:
    out = {}
    for b in parsed.batches:
        batch = b.sketches.batch
        for i in range(len(batch)):
            key = (b.sketches.metric, int(batch.sid[i]), int(batch.ts[i]))
            assert key not in out, "one row per (series, ts)"
            out[key] = batch.row(i)
    return out


def sid(metric: str, *tags: str) -> int:
    return series_id(ORG, metric, canonical_tags(tags))


# --- minimal wire encoding, for what the protobuf runtime cannot write -------------------


def varint(x: int) -> bytes:
    x &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(k: int) -> int:
    return (k << 1) ^ (k >> 63)


def fld(number: int, wire: int, payload: bytes) -> bytes:
    """One field: tag, then a length for wire type 2."""
    head = varint(number << 3 | wire)
    return head + (varint(len(payload)) + payload if wire == 2 else payload)


def dogsketch(
    *,
    ts: int = NOW,
    cnt: int = 2,
    vmin: float = 1.0,
    vmax: float = 2.0,
    total: float = 3.0,
    k: bytes | None = None,
    n: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    packed_k = b"".join(varint(zigzag(x)) for x in (1338, 1383)) if k is None else k
    packed_n = varint(1) + varint(1) if n is None else n
    return (
        fld(1, 0, varint(ts))
        + fld(2, 0, varint(cnt))
        + fld(3, 1, struct.pack("<d", vmin))
        + fld(4, 1, struct.pack("<d", vmax))
        + fld(6, 1, struct.pack("<d", total))
        + fld(7, 2, packed_k)
        + fld(8, 2, packed_n)
        + extra
    )


def sketch_msg(dog: bytes, *, metric: bytes = b"m", extra: bytes = b"") -> bytes:
    return fld(1, 2, fld(1, 2, metric) + fld(7, 2, dog) + extra)


# --- the mapping ---------------------------------------------------------------------------


def test_reference_key_matches_values_published_by_the_agent() -> None:
    assert REF_BIAS == AGENT_BIAS == 1338
    assert REF_NORM_MIN == AGENT_NORM_MIN
    # config_test.go TestConfig/norm/key
    assert ref_key(0.0) == 0
    assert ref_key(-0.0) == 0
    assert ref_key(math.nextafter(REF_NORM_MIN, -math.inf)) == 0
    assert ref_key(REF_NORM_MIN) == 1
    assert ref_key(math.nextafter(REF_NORM_MIN, math.inf)) == 1
    assert ref_key(REF_NORM_MIN * REF_GAMMA) == 2
    assert ref_key(REF_NORM_MAX) == 32766
    # agent_test.go TestAgentInterpolation: InsertInterpolate(l, u, ...) starts at key(l)
    # and ends at key(u): "10..20" starts 1487, "-10..10" starts -1487, "1e3.." starts
    # 1784, "1e3..1e4" ends 1932.
    assert [ref_key(v) for v in (10.0, -10.0, 1e3, 1e4)] == [1487, -1487, 1784, 1932]


def test_vectorised_keys_and_values_match_the_reference() -> None:
    rng = np.random.default_rng(11)
    mags = np.exp(rng.uniform(math.log(1e-12), math.log(1e215), 20_000))
    values = np.concatenate(
        [mags * rng.choice([-1.0, 1.0], mags.size), [0.0, -0.0, REF_NORM_MIN, 1e300, -1e300]]
    )
    keys = agent_keys(values)
    assert keys.tolist() == [ref_key(v) for v in values.tolist()]
    ks = np.concatenate([np.arange(-AGENT_INF_KEY, AGENT_INF_KEY + 1, 97), [0, 1, -1, 32767]])
    got = agent_values(ks)
    want = np.array([ref_f64(int(k)) for k in ks])
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-13)


def test_each_key_represents_its_bin_within_the_agent_accuracy() -> None:
    assert math.isclose(AGENT_RELATIVE_ACCURACY, math.sqrt(REF_GAMMA) - 1)
    assert 0.0077 < AGENT_RELATIVE_ACCURACY < 0.0078
    for k in (1, 2, 500, 1338, 1339, 1383, 2000, 20_000, 32766):
        centre = ref_f64(k)
        assert ref_key(centre) == k  # the agent's "key(f64(k)) == k"
        # the bin's ends, just inside
        for v in (centre * math.sqrt(REF_GAMMA) * (1 - 1e-12), centre / math.sqrt(REF_GAMMA)):
            if v >= REF_NORM_MIN:
                assert ref_key(v) == k
                assert abs(centre - v) <= AGENT_RELATIVE_ACCURACY * v * (1 + 1e-9)


def test_conversion_bound_is_both_accuracies_composed() -> None:
    assert math.isclose(BOUND, 1.01 * math.sqrt(REF_GAMMA) - 1, rel_tol=1e-12)
    assert 0.0178 < BOUND < 0.0179


# --- accuracy ------------------------------------------------------------------------------


def datasets(rng: np.random.Generator, n: int) -> dict[str, F64]:
    bimodal = np.concatenate([rng.normal(10, 1, n // 2), rng.normal(1000, 50, n - n // 2)])
    zeros_and_signs = np.concatenate([rng.normal(0, 5, n - 50), np.zeros(50)])
    return {
        "uniform": rng.uniform(0, 100, n),
        "normal": rng.normal(0, 1, n),
        "lognormal": rng.lognormal(3, 1.5, n),
        "pareto": rng.pareto(1.5, n) + 1.0,
        "bimodal": bimodal,
        "zeros_and_signs": zeros_and_signs,
        "negative": -rng.lognormal(0, 2, n),
        "tiny": rng.lognormal(math.log(1e-6), 1, n),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_within_the_bound_for_many_distributions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = datasets(rng, 3000)
    msg = Payload()
    for name, values in data.items():
        add_sketch(msg, f"dist.{name}", values)
    parsed = parse(msg.SerializeToString())
    got = rows(parsed)
    assert parsed.points == len(data)
    assert parsed.values == sum(v.size for v in data.values())
    tags = ("env:prod", "host:web-1")
    for name, values in data.items():
        sk = got[(f"dist.{name}", sid(f"dist.{name}", *tags), NOW - 10)]
        assert sk.count == values.size
        assert sk.sum == float(values.sum())  # the message's, exactly
        assert (sk.min, sk.max) == (float(values.min()), float(values.max()))
        est = sk.quantiles(QS)
        exact = exact_quantiles(values, QS)
        err = np.abs(est - exact)
        assert np.all(err <= BOUND * np.abs(exact) + 1e-300), (name, est, exact)
        assert np.all(est[exact == 0] == 0)


def test_the_bound_is_nearly_reached_and_needed() -> None:
    """A value at the edge of an agent bin whose representative lands at the edge of ours:
    the error exceeds either accuracy alone (so the composed bound is the right claim)."""
    rng = np.random.default_rng(5)
    values = np.exp(rng.uniform(0, 10, 200_000))
    keys = agent_keys(values)
    reps = agent_values(keys)
    ours = PARAMS.values(PARAMS.keys(reps))
    rel = np.abs(ours - values) / values
    assert rel.max() <= BOUND * (1 + 1e-12)
    assert rel.max() > PARAMS.relative_accuracy


def test_vectorised_conversion_equals_the_per_sketch_model() -> None:
    """from_agent_bins == Sketch.from_bins of each bin's representative, sketch by sketch."""
    rng = np.random.default_rng(8)
    sketches = []
    all_k: list[int] = []
    all_n: list[int] = []
    offsets = [0]
    for i in range(40):
        values = rng.normal(0, 1, 200) * 10.0 ** rng.integers(-3, 4)
        if i % 7 == 0:
            values[:10] = 0.0
        k, n = ref_bins(values)
        all_k += k
        all_n += n
        offsets.append(len(all_k))
        bins = list(zip(k, n, strict=True))
        pos = [(PARAMS.keys(np.array([ref_f64(x)]))[0], c) for x, c in bins if x > 0]
        neg = [(PARAMS.keys(np.array([-ref_f64(x)]))[0], c) for x, c in bins if x < 0]
        zero = sum(c for x, c in bins if x == 0)
        sketches.append(
            Sketch.from_bins(
                PARAMS,
                [p[0] for p in pos],
                [p[1] for p in pos],
                [p[0] for p in neg],
                [p[1] for p in neg],
                zero_count=zero,
                sum=float(values.sum()),
                min=float(values.min()),
                max=float(values.max()),
            )
        )
    batch = from_agent_bins(
        PARAMS,
        np.arange(40),
        np.full(40, NOW),
        [s.count for s in sketches],
        [s.sum for s in sketches],
        [s.min for s in sketches],
        [s.max for s in sketches],
        offsets,
        all_k,
        all_n,
    )
    for i, expected in enumerate(sketches):
        assert batch.row(i) == expected


def test_counts_split_over_repeated_keys_add_up() -> None:
    # the agent stores at most 65535 per bin and repeats the key beyond that
    summary = (PARAMS, [0], [0], [65545], [65545.0], [1.0], [1.0])
    one = from_agent_bins(*summary, [0, 1], [1338], [65545])
    split = from_agent_bins(*summary, [0, 2], [1338, 1338], [65535, 10])
    assert split.row(0) == one.row(0)
    assert one.row(0).pos_counts.tolist() == [65545.0]


def test_infinity_keys_take_the_exact_extremes() -> None:
    batch = from_agent_bins(
        PARAMS,
        [0],
        [0],
        [4],
        [0.0],
        [-1e250],
        [1e250],
        [0, 2],
        [-AGENT_INF_KEY, AGENT_INF_KEY],
        [1, 3],
    )
    sk = batch.row(0)
    assert sk.pos_keys.tolist() == PARAMS.keys(np.array([1e250])).tolist()
    assert sk.neg_keys.tolist() == PARAMS.keys(np.array([1e250])).tolist()
    assert sk.quantile(0.5) == pytest.approx(1e250, rel=PARAMS.relative_accuracy)
    assert sk.quantile(0.1) == pytest.approx(-1e250, rel=PARAMS.relative_accuracy)
    # an inconsistent max still gives a value in the infinity bin, never below it
    low = from_agent_bins(PARAMS, [0], [0], [1], [0.0], [1.0], [1.0], [0, 1], [AGENT_INF_KEY], [1])
    assert low.row(0).pos_keys.tolist() == PARAMS.keys(np.array([AGENT_NORM_MAX * 1.0078])).tolist()


def test_kernel_refuses_inconsistent_rows() -> None:
    base: dict[str, Any] = {
        "params": PARAMS,
        "sid": [0],
        "ts": [0],
        "count": [2],
        "total": [3.0],
        "vmin": [1.0],
        "vmax": [2.0],
        "offsets": [0, 2],
        "keys": [1338, 1383],
        "counts": [1, 1],
    }
    assert len(from_agent_bins(**base)) == 1
    changes: list[tuple[dict[str, Any], str]] = [
        ({"count": [3]}, "count 3 but its bins hold 2"),
        ({"keys": [1338, 40_000]}, "within"),
        ({"counts": [1, -1]}, ">= 0"),
        ({"vmin": [math.nan]}, "finite"),
        ({"vmin": [5.0]}, "min > max"),
        ({"offsets": [0, 1]}, "offsets"),
    ]
    for change, problem in changes:
        with pytest.raises(SketchError, match=problem):
            from_agent_bins(**{**base, **change})


# --- the golden payload ----------------------------------------------------------------------


def golden() -> bytes:
    return bytes.fromhex(GOLDEN.read_text().strip())


def test_golden_payload_decodes_field_by_field() -> None:
    raw = golden()
    doc = decode_sketch_payload(raw)
    assert (doc.metric, doc.host, doc.tags) == (["req.latency"], ["web-1"], [("env:prod",)])
    assert (doc.ts, doc.cnt, doc.vmin, doc.vmax, doc.total) == (
        [NOW],
        [5],
        [-0.5],
        [10.0],
        [12.5],
    )
    assert doc.k_values.tolist() == [-1293, 0, 1338, 1383, 1487]
    assert doc.k_values.tolist() == [ref_key(v) for v in (-0.5, 0.0, 1.0, 2.0, 10.0)]
    assert doc.n_values.tolist() == [1, 1, 1, 1, 1]
    # the protobuf runtime reads the same fields from the hand-written bytes
    msg = Payload()
    msg.ParseFromString(raw)
    d = msg.sketches[0].dogsketches[0]
    assert (d.ts, d.cnt, d.min, d.max, d.avg, d.sum) == (NOW, 5, -0.5, 10.0, 2.5, 12.5)
    assert list(d.k) == doc.k_values.tolist() and list(d.n) == doc.n_values.tolist()
    assert msg.sketches[0].metadata.origin.origin_product == 10


def test_golden_payload_parses_into_the_sketch_of_its_values() -> None:
    parsed = parse(golden())
    assert parsed.rejections == []
    (b,) = parsed.batches
    assert b.sketches.org == ORG and b.sketches.metric == "req.latency"
    batch = b.sketches.batch
    assert batch.sid.tolist() == [sid("req.latency", "env:prod", "host:web-1")]
    assert batch.ts.tolist() == [NOW]
    sk = batch.row(0)
    assert (sk.count, sk.zero_count, sk.sum, sk.min, sk.max) == (5, 1, 12.5, -0.5, 10.0)
    exact = np.array([-0.5, 0.0, 1.0, 2.0, 10.0])
    for q, x in zip(QS, exact_quantiles(exact, QS), strict=True):
        assert abs(sk.quantile(q) - x) <= BOUND * abs(x)
    assert b.series.mtype.tolist() == [int(MetricType.DISTRIBUTION)]
    assert b.series.tags == (("env:prod", "host:web-1"),)


def test_compressed_bodies_decode_like_the_agent_sends_them() -> None:
    raw = golden()
    for encoding, body in [
        ("zstd", zstandard.ZstdCompressor().compress(raw)),
        ("deflate", zlib.compress(raw)),
        ("gzip", zlib.compress(raw, wbits=31)),
    ]:
        assert decode_body(body, encoding, V1_LIMITS) == raw
        assert parse(decode_body(body, encoding, V1_LIMITS)).points == 1


def test_unknown_fields_are_skipped() -> None:
    unknown = (
        fld(99, 0, varint(5))
        + fld(98, 1, b"\0" * 8)
        + fld(97, 5, b"\0" * 4)
        + fld(96, 2, b"whatever")
        + varint(95 << 3 | 3)
        + fld(1, 0, varint(1))
        + varint(95 << 3 | 4)  # a group
    )
    plain = sketch_msg(dogsketch())
    noisy = (
        unknown
        + sketch_msg(dogsketch(extra=unknown), extra=unknown + fld(5, 2, b"") + fld(6, 0, b"\1"))
        + unknown
    )
    a, b = decode_sketch_payload(plain), decode_sketch_payload(noisy)
    assert _columns(a) == _columns(b)


def _columns(doc: DecodedPayload) -> tuple[Any, ...]:
    return (
        doc.metric,
        doc.host,
        doc.tags,
        doc.first_row,
        doc.ts,
        doc.cnt,
        doc.vmin,
        doc.vmax,
        doc.total,
        doc.k_values.tolist(),
        doc.k_offsets.tolist(),
        doc.n_values.tolist(),
        doc.n_offsets.tolist(),
    )


def test_unpacked_and_split_repeated_fields_are_accepted() -> None:
    packed = decode_sketch_payload(sketch_msg(dogsketch()))
    k = b"".join(varint(zigzag(x)) for x in (1338, 1383))
    one_by_one = dogsketch(k=b"", n=b"") + b"".join(
        [
            fld(7, 0, varint(zigzag(1338))),
            fld(8, 0, varint(1)),
            fld(7, 0, varint(zigzag(1383))),
            fld(8, 2, varint(1)),  # packed and unpacked mixed
        ]
    )
    chunks = dogsketch(k=k[:2], n=varint(1)) + fld(7, 2, k[2:]) + fld(8, 2, varint(1))
    for dog in (one_by_one, chunks):
        assert _columns(decode_sketch_payload(sketch_msg(dog))) == _columns(packed)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=20),
            st.text(max_size=10),
            st.lists(st.text(max_size=15), max_size=4),
            st.lists(
                st.tuples(
                    st.integers(-(2**63), 2**63 - 1),
                    st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False),
                    st.floats(allow_nan=False),
                    st.floats(allow_nan=False),
                    st.lists(
                        st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**32 - 1)),
                        max_size=6,
                    ),
                ),
                max_size=3,
            ),
        ),
        max_size=4,
    )
)
def test_decoder_reads_what_the_protobuf_runtime_writes(sketches: list[Any]) -> None:
    msg = Payload()
    for metric, host, tags, dogs in sketches:
        s = msg.sketches.add(metric=metric, host=host, tags=tags)
        for ts, cnt, vmin, vmax, total, bins in dogs:
            s.dogsketches.add(
                ts=ts,
                cnt=cnt,
                min=vmin,
                max=vmax,
                sum=total,
                k=[b[0] for b in bins],
                n=[b[1] for b in bins],
            )
    doc = decode_sketch_payload(msg.SerializeToString())
    assert doc.metric == [s[0] for s in sketches]
    assert doc.host == [s[1] for s in sketches]
    assert doc.tags == [tuple(s[2]) for s in sketches]
    dogs = [d for s in sketches for d in s[3]]
    assert doc.ts == [d[0] for d in dogs] and doc.cnt == [d[1] for d in dogs]
    assert doc.vmin == [d[2] for d in dogs] and doc.vmax == [d[3] for d in dogs]
    assert doc.total == [d[4] for d in dogs]
    assert doc.k_values.tolist() == [b[0] for d in dogs for b in d[5]]
    assert doc.n_values.tolist() == [b[1] for d in dogs for b in d[5]]
    assert np.diff(doc.k_offsets).tolist() == [len(d[5]) for d in dogs]


# --- refusals: a 400 naming the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        (golden()[:50], "sketches[0]", "truncated"),
        (sketch_msg(dogsketch())[:-3], "sketches[0]", "truncated"),
        (sketch_msg(dogsketch(k=b"\x80")), "sketches[0].dogsketches[0].k", "truncated varint"),
        (b"\x0a", "sketches[0]", "truncated varint"),
        (b"\x80", "payload", "truncated varint"),
        (b"\x08\x01", "sketches[0]", "wire type varint, expected length-delimited"),
        (fld(1, 2, fld(1, 0, varint(3))), "sketches[0].metric", "wire type varint"),
        (
            sketch_msg(dogsketch(extra=fld(3, 0, varint(1)))),
            "sketches[0].dogsketches[0].min",
            "wire type varint, expected 64-bit",
        ),
        (
            sketch_msg(dogsketch(extra=fld(7, 5, b"\0\0\0\0"))),
            "sketches[0].dogsketches[0].k",
            "wire type 32-bit, expected length-delimited",
        ),
        (
            sketch_msg(dogsketch(extra=fld(1, 2, b"x"))),
            "sketches[0].dogsketches[0].ts",
            "wire type length-delimited, expected varint",
        ),
        (sketch_msg(dogsketch(), extra=varint(9 << 3 | 7)), "sketches[0]", "invalid wire type 7"),
        (sketch_msg(dogsketch(), extra=b"\x00"), "sketches[0]", "field number 0"),
        (
            sketch_msg(dogsketch(n=varint(1))),
            "sketches[0].dogsketches[0].n",
            "2 keys (k) but 1 counts (n)",
        ),
        (sketch_msg(dogsketch(cnt=-2)), "sketches[0].dogsketches[0].cnt", "negative count -2"),
        (
            sketch_msg(dogsketch(cnt=3)),
            "sketches[0].dogsketches[0].cnt",
            "count 3 but the bins (n) hold 2",
        ),
        (
            sketch_msg(dogsketch(n=varint(1) + varint(2**32))),
            "sketches[0].dogsketches[0].n",
            "out of 32-bit range",
        ),
        (
            sketch_msg(dogsketch(n=varint(1) + varint(-1))),  # a negative count, sign-extended
            "sketches[0].dogsketches[0].n",
            "out of 32-bit range",
        ),
        (
            sketch_msg(dogsketch(k=varint(zigzag(1338)) + varint(zigzag(-40_000)))),
            "sketches[0].dogsketches[0].k",
            "key -40000 outside",
        ),
        (
            sketch_msg(dogsketch(vmin=5.0)),
            "sketches[0].dogsketches[0].min",
            "min 5.0 > max 2.0",
        ),
        (fld(1, 2, fld(4, 2, b"\xff")), "sketches[0].tags[0]", "not valid UTF-8"),
        (fld(1, 2, fld(3, 2, b"")), "sketches[0].distributions", "legacy"),
        (fld(15, 0, b"\x80" * 10 + b"\x01"), "payload", "varint longer than 10 bytes"),
        (fld(2, 0, b"\x01"), "metadata", "wire type varint"),
    ],
)
def test_malformed_payloads_are_refused_with_the_field_and_problem(
    body: bytes, path: str, problem: str
) -> None:
    with pytest.raises(PayloadError) as info:
        parse(body)
    assert info.value.path == path
    assert problem in info.value.problem


def test_every_truncation_of_the_golden_payload_is_refused_or_a_prefix() -> None:
    raw = golden()
    for cut in range(1, len(raw)):
        try:
            parsed = parse(raw[:cut])
        except PayloadError as exc:
            assert "truncated" in exc.problem
        else:  # only cuts at a top-level field boundary decode: the sketch is whole
            assert cut == len(raw) - 2 and parsed.points == 1


def test_the_second_sketch_and_dogsketch_are_named() -> None:
    good = sketch_msg(dogsketch())
    bad = sketch_msg(dogsketch() + b"", extra=fld(7, 2, dogsketch(cnt=5)))
    with pytest.raises(PayloadError) as info:
        parse(good + bad)
    assert info.value.path == "sketches[1].dogsketches[1].cnt"


# --- rejections and grouping, as the JSON distribution path --------------------------------


def test_points_outside_the_window_and_non_finite_are_rejected_and_counted() -> None:
    msg = Payload()
    v = np.array([1.0, 2.0, 3.0])
    add_sketch(msg, "ok", v)
    add_sketch(msg, "old", v, ts=NOW - 3601)
    add_sketch(msg, "new", v, ts=NOW + 601)
    add_sketch(msg, "nan", v)
    msg.sketches[3].dogsketches[0].sum = math.nan
    add_sketch(msg, "inf", v)
    msg.sketches[4].dogsketches[0].max = math.inf
    parsed = parse(msg.SerializeToString())
    assert [b.sketches.metric for b in parsed.batches] == ["ok"]
    assert parsed.rejected_by_reason() == {
        RejectReason.TOO_OLD: 1,
        RejectReason.TOO_NEW: 1,
        RejectReason.NON_FINITE: 2,
    }
    assert parsed.points == 1 and parsed.values == 3


def test_an_invalid_metric_name_rejects_only_its_sketch() -> None:
    msg = Payload()
    add_sketch(msg, "", np.array([1.0]))
    add_sketch(msg, "fine.metric", np.array([1.0, 2.0]))
    parsed = parse(msg.SerializeToString())
    assert [b.sketches.metric for b in parsed.batches] == ["fine.metric"]
    assert parsed.rejected_by_reason() == {RejectReason.INVALID_METRIC: 1}


def test_points_of_one_series_and_ts_merge_and_empty_ones_are_skipped() -> None:
    rng = np.random.default_rng(3)
    a, b, c = rng.lognormal(0, 1, 300), rng.lognormal(2, 1, 200), rng.lognormal(1, 1, 100)
    msg = Payload()
    add_sketch(msg, "lat", a, tags=("env:prod", "Env:Prod"))
    add_sketch(msg, "lat", b)  # same series (tags normalise alike), same ts
    add_sketch(msg, "lat", c, ts=NOW - 20)
    add_sketch(msg, "lat", c, host="web-2")
    msg.sketches[0].dogsketches.add(ts=NOW - 30)  # cnt 0, no bins: nothing to store
    parsed = parse(msg.SerializeToString())
    got = rows(parsed)
    s1 = sid("lat", "env:prod", "host:web-1")
    s2 = sid("lat", "env:prod", "host:web-2")
    assert sorted(got) == sorted(
        [("lat", s1, NOW - 10), ("lat", s1, NOW - 20), ("lat", s2, NOW - 10)]
    )
    merged = got[("lat", s1, NOW - 10)]
    both = np.concatenate([a, b])
    assert merged.count == both.size and merged.sum == float(a.sum()) + float(b.sum())
    assert (merged.min, merged.max) == (float(both.min()), float(both.max()))
    est = merged.quantiles(QS)
    exact = exact_quantiles(both, QS)
    assert np.all(np.abs(est - exact) <= BOUND * np.abs(exact))
    assert parsed.points == 4 and parsed.values == both.size + 2 * c.size
    (batch,) = parsed.batches
    assert sorted(batch.series.sid.tolist()) == sorted([s1, s2])  # one announcement each


def test_empty_payloads_hold_nothing() -> None:
    for body in (b"", Payload().SerializeToString(), bytes.fromhex("1200")):
        parsed = parse(body)
        assert parsed.batches == [] and parsed.points == 0 and parsed.rejections == []
