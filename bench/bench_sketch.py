"""DDSketch kernel figures beside the ``ddsketch`` package, measured in the same run.

Run: ``python -m bench.bench_sketch [--quick] [--seed N]``.

- insert: values/s of one batch insert of 1e6 latency-like values (``Sketch.from_values``)
  and of the intake shape (``SketchBatch.from_ragged``, 10 000 rows x 100 values);
- merge: sketches/s folding sketches one at a time, all at once, and the batch group-by merge;
- bytes per encoded sketch of 100 and 1 000 latency-like values: our v1 encoding, the
  protobuf form we export, and ``ddsketch``'s own protobuf;
- quantile: time of one p99 read, and of batch quantiles over many rows;
- codec: batch encode/decode in sketches/s;
- query kernel: p99 over 1 day x 1 000 series from hourly sketches (merge + quantile), and
  p99 by 5-minute interval over 1 hour x 1 000 series from 1-minute sketches.

Timings are the best of several repeats (wall clock, one thread) on a shared machine.
Latency-like values: lognormal around 20 ms (sigma 1), in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.pb.proto import DDSketchProto

from bench.machine import describe
from strata.sketch import Sketch, SketchBatch, SketchParams, merge_sketches
from strata.sketch_codec import decode_batch, encode_batch, encode_sketch, to_ddsketch_proto

F64 = npt.NDArray[np.float64]
PARAMS = SketchParams()


def best(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def latencies(rng: np.random.Generator, n: int) -> F64:
    return rng.lognormal(np.log(20.0), 1.0, n)


def dd_sketch(values: F64) -> LogCollapsingLowestDenseDDSketch:
    d = LogCollapsingLowestDenseDDSketch(0.01, 2048)
    for x in values.tolist():
        d.add(x)
    return d


def dd_bytes(d: LogCollapsingLowestDenseDDSketch) -> int:
    message = DDSketchProto.to_proto(d)  # type: ignore[no-untyped-call]
    return len(message.SerializeToString())


def report(name: str, value: float, unit: str) -> None:
    print(f"{name:<58} {value:>16,.1f} {unit}")


def bench_insert(rng: np.random.Generator, quick: bool) -> None:
    n = 1_000_000
    v = latencies(rng, n)
    reps = 3 if quick else 15
    t = best(lambda: Sketch.from_values(v), reps)
    report("insert: Sketch.from_values, 1e6 values", n / t / 1e6, "M values/s")
    rows, per = 10_000, 100
    offsets = np.arange(0, rows * per + 1, per, dtype=np.int64)
    sid = rng.integers(0, 2**63, rows).astype(np.uint64)
    ts = np.full(rows, 1_700_000_000, dtype=np.int64)
    w = latencies(rng, rows * per)
    t = best(lambda: SketchBatch.from_ragged(PARAMS, sid, ts, offsets, w), reps)
    report("insert: SketchBatch.from_ragged, 10 000 rows x 100", rows * per / t / 1e6, "M values/s")
    rows, per = 100_000, 10
    offsets = np.arange(0, rows * per + 1, per, dtype=np.int64)
    sid = np.arange(rows, dtype=np.uint64)
    ts = np.full(rows, 1_700_000_000, dtype=np.int64)
    t = best(lambda: SketchBatch.from_ragged(PARAMS, sid, ts, offsets, w), reps)
    report("insert: SketchBatch.from_ragged, 100 000 rows x 10", rows * per / t / 1e6, "M values/s")
    mixed = np.concatenate((v[: n // 2], -v[n // 2 :]))
    t = best(lambda: Sketch.from_values(mixed), reps)
    report("insert: Sketch.from_values, 1e6 values half negative", n / t / 1e6, "M values/s")
    m = 20_000 if quick else 200_000
    t = best(lambda: dd_sketch(v[:m]), 1 if quick else 2)
    report(f"insert: ddsketch add() loop, {m:,} values", m / t / 1e6, "M values/s")


def bench_merge(rng: np.random.Generator, quick: bool) -> None:
    k = 1_000
    mine = [Sketch.from_values(latencies(rng, 1_000)) for _ in range(k)]
    theirs = [dd_sketch(latencies(rng, 1_000)) for _ in range(200 if quick else k)]

    def fold_mine() -> None:
        acc = mine[0]
        for s in mine[1:]:
            acc = acc.merge(s)

    def fold_theirs() -> None:
        acc = LogCollapsingLowestDenseDDSketch(0.01, 2048)
        for s in theirs:
            acc.merge(s)

    reps = 2 if quick else 5
    t = best(fold_mine, reps)
    report("merge: fold one at a time (1 000-value sketches)", (k - 1) / t, "merges/s")
    t = best(lambda: merge_sketches(mine), reps)
    report("merge: merge_sketches of 1 000 at once", k / t, "sketches/s")
    t = best(fold_theirs, reps)
    report("merge: ddsketch merge() one at a time", len(theirs) / t, "merges/s")
    rows = 20_000 if quick else 100_000
    per = 100
    batch = SketchBatch.from_ragged(
        PARAMS,
        rng.integers(0, 1_000, rows).astype(np.uint64),
        1_700_000_000 + 60 * rng.integers(0, 60, rows),
        np.arange(0, rows * per + 1, per, dtype=np.int64),
        latencies(rng, rows * per),
    )
    t = best(lambda: batch.rollup(3600), reps)
    report(f"merge: batch group-by, {rows:,} rows -> 1 000 (sid, hour)", rows / t, "sketches/s")


def bench_bytes(rng: np.random.Generator, quick: bool) -> None:
    count = 50 if quick else 200
    for n in (100, 1_000):
        ours, proto, theirs, bins = [], [], [], []
        sketches = []
        for _ in range(count):
            v = latencies(rng, n)
            s = Sketch.from_values(v)
            sketches.append(s)
            ours.append(len(encode_sketch(s)))
            proto.append(len(to_ddsketch_proto(s)))
            theirs.append(dd_bytes(dd_sketch(v)))
            bins.append(s.bin_count)
        report(f"bytes: {n} values, bins per sketch", statistics.mean(bins), "bins")
        report(f"bytes: {n} values, v1 encode_sketch", statistics.mean(ours), "bytes")
        batch = SketchBatch.from_sketches(np.arange(count), np.zeros(count), sketches)
        report(
            f"bytes: {n} values, v1 encode_batch per row (incl. sid+ts)",
            len(encode_batch(batch)) / count,
            "bytes",
        )
        report(f"bytes: {n} values, our protobuf export", statistics.mean(proto), "bytes")
        report(f"bytes: {n} values, ddsketch protobuf", statistics.mean(theirs), "bytes")


def bench_quantile(rng: np.random.Generator, quick: bool) -> None:
    v = latencies(rng, 1_000)
    s = Sketch.from_values(v)
    d = dd_sketch(v)
    calls = 500 if quick else 5_000

    def mine() -> None:
        for _ in range(calls):
            s.quantile(0.99)

    def theirs() -> None:
        for _ in range(calls):
            d.get_quantile_value(0.99)

    report("quantile: Sketch.quantile(0.99), 1 000-value sketch", best(mine, 3) / calls * 1e6, "us")
    report("quantile: ddsketch get_quantile_value(0.99)", best(theirs, 3) / calls * 1e6, "us")
    rows = 10_000
    batch = SketchBatch.from_ragged(
        PARAMS,
        np.arange(rows, dtype=np.uint64),
        np.zeros(rows, np.int64),
        np.arange(0, rows * 100 + 1, 100, dtype=np.int64),
        latencies(rng, rows * 100),
    )
    qs = [0.5, 0.75, 0.9, 0.95, 0.99]
    t = best(lambda: batch.quantiles(qs), 3)
    report("quantile: SketchBatch.quantiles, 10 000 rows x 5 q", rows / t, "rows/s")
    raw = encode_batch(batch)
    t = best(lambda: encode_batch(batch), 3)
    report("codec: encode_batch, 10 000 sketches of 100 values", rows / t, "sketches/s")
    t = best(lambda: decode_batch(raw), 3)
    report("codec: decode_batch, 10 000 sketches of 100 values", rows / t, "sketches/s")


def bench_query_kernel(rng: np.random.Generator, quick: bool) -> None:
    series = 200 if quick else 1_000
    per_sketch = 600  # values behind each hourly sketch: ~ the bins of a busy hour
    parts = []
    for hour in range(24):
        parts.append(
            SketchBatch.from_ragged(
                PARAMS,
                np.arange(series, dtype=np.uint64),
                np.full(series, 1_700_000_000 + 3600 * hour, dtype=np.int64),
                np.arange(0, series * per_sketch + 1, per_sketch, dtype=np.int64),
                latencies(rng, series * per_sketch),
            )
        )
    day = SketchBatch.concat(parts)
    bins = (day.pos.keys.size + day.neg.keys.size) / len(day)

    def p99_day() -> float:
        return day.merge_all().quantile(0.99)

    t = best(p99_day, 3)
    report(f"query kernel: p99 over 1 day x {series:,} series, 1 h sketches", t * 1e3, "ms")
    print(f"  ({len(day):,} sketches, {bins:.0f} bins each)")
    group = (day.sid % 10).astype(np.uint64)
    t = best(lambda: day.merge_by_key(group, day.ts).quantiles([0.99]), 3)
    report("query kernel: p99 by 10 groups per hour, same data", t * 1e3, "ms")
    per_minute = 60
    minutes = SketchBatch.from_ragged(
        PARAMS,
        np.repeat(np.arange(series, dtype=np.uint64), 60),
        np.tile(1_700_000_000 + 60 * np.arange(60, dtype=np.int64), series),
        np.arange(0, series * 60 * per_minute + 1, per_minute, dtype=np.int64),
        latencies(rng, series * 60 * per_minute),
    )
    zero = np.zeros(len(minutes), dtype=np.uint64)
    t = best(lambda: minutes.merge_by_key(zero, minutes.ts - minutes.ts % 300).quantiles([0.99]), 3)
    report(
        f"query kernel: p99 per 5 min over 1 h x {series:,} series, 1 m sketches",
        t * 1e3,
        "ms",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(describe())
    print(
        f"seed {args.seed}; relative accuracy {PARAMS.relative_accuracy}, bin limit "
        f"{PARAMS.bin_limit}; {'quick' if args.quick else 'default'} mode"
    )
    t0 = time.perf_counter()
    for step in (bench_insert, bench_merge, bench_bytes, bench_quantile, bench_query_kernel):
        step(np.random.default_rng(args.seed), args.quick)
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
