"""RAM store core without Kafka: apply 1 000-point batches into time blocks, then read
series back (points/s on one core, bytes per point held).

Run: ``python -m bench.bench_ram [--seed N] [--series N] [--points N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.machine import describe
from stores.ram.blocks import PartitionPoints


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=2_000_000, help="total points applied")
    ap.add_argument("--batch", type=int, default=1_000)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    sids = rng.integers(0, 2**63, args.series, dtype=np.uint64)
    now = 1_700_000_000
    per_series = max(1, args.points // args.series)
    # Series report every 10 s, batches arrive in time order as from an agent fleet.
    ts = np.repeat(now - 10 * (per_series - 1) + 10 * np.arange(per_series), args.series)
    ts = ts.astype(np.int64)
    sid = np.tile(sids, per_series)
    value = rng.random(sid.size)
    store = PartitionPoints()
    t0 = time.perf_counter()
    for i in range(0, sid.size, args.batch):
        j = i + args.batch
        store.insert(sid[i:j], ts[i:j], value[i:j], now - 4 * 3600)
    t1 = time.perf_counter()
    queries = 200
    picked = np.sort(rng.choice(sids, 100, replace=False))
    read_points = 0
    t2 = time.perf_counter()
    for _ in range(queries):
        out = store.read(picked, now - 1800, now)
        read_points += int(out[0].size)
    t3 = time.perf_counter()
    print(describe())
    print(f"seed {args.seed}; {sid.size:,} points, {args.series:,} series, batches of {args.batch}")
    print(f"ram apply: {sid.size / (t1 - t0):12,.0f} points/s")
    print(
        f"ram read : {queries / (t3 - t2):12,.1f} queries/s of 100 series x 30 min "
        f"({read_points // queries:,} points each, {read_points / (t3 - t2):,.0f} points/s)"
    )
    print("ram bytes/point: 24 (uint64 sid + int64 ts + float64 value, consolidated blocks)")


if __name__ == "__main__":
    main()
