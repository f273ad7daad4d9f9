"""Wire codec throughput: encode + decode of 1 000-point batches (points/s, one core).

Run: ``python -m bench.bench_codec [--seed N] [--batches N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.machine import describe
from strata.codec import PointBatch, decode_points, encode_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=1_000)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    batch = PointBatch(
        "org",
        "system.cpu.user",
        rng.integers(0, 2**63, args.points, dtype=np.uint64),
        np.sort(rng.integers(1_700_000_000, 1_700_003_600, args.points)),
        rng.random(args.points),
    )
    t0 = time.perf_counter()
    for _ in range(args.batches):
        raw = encode_points(batch)
    t1 = time.perf_counter()
    for _ in range(args.batches):
        decode_points(raw)
    t2 = time.perf_counter()
    n = args.batches * args.points
    print(describe())
    print(f"seed {args.seed}; {args.batches} batches x {args.points} points")
    print(f"encode: {n / (t1 - t0):,.0f} points/s  ({len(raw) / args.points:.1f} bytes/point)")
    print(f"decode: {n / (t2 - t1):,.0f} points/s")


if __name__ == "__main__":
    main()
