"""Archive ingest without Kafka: point batches -> buffer -> Parquet (zstd) -> local dir.

Measures points/s on one core through the real writer (:class:`ArchivePointStore` with a
:class:`LocalDirStore`), and bytes per point on disk for two workloads:
- ``gauge``: realistic gauges — 10 s interval, values with few significant digits
  (CPU-like percentages rounded to 0.1, slowly varying);
- ``walk``: random-walk float64 (full-precision mantissas, the hard case).
Then the same data after compaction into day objects.

Run: ``python -m bench.bench_archive [--seed N] [--series N] [--points N]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import describe
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.objectstore import LocalDirStore
from stores.archive.store import ArchivePointStore
from stores.runtime.store import Record
from strata.codec import PointBatch


def workload(
    kind: str, rng: np.random.Generator, series: int, per_series: int, now: int
) -> list[PointBatch]:
    """Batches of one (org, metric) with 100 series each, in time order."""
    sids = rng.integers(0, 2**63, series, dtype=np.uint64)
    steps = now - 10 * (per_series - 1) + 10 * np.arange(per_series, dtype=np.int64)
    if kind == "gauge":
        base = rng.uniform(5, 80, series)
        noise = rng.normal(0, 0.8, (per_series, series)).cumsum(axis=0) * 0.2
        values = np.round(np.clip(base + noise, 0, 100), 1)
    else:
        values = rng.normal(0, 1, (per_series, series)).cumsum(axis=0)
    out = []
    group = 100
    for i, t in enumerate(steps.tolist()):
        for g in range(0, series, group):
            sl = slice(g, g + group)
            out.append(
                PointBatch(
                    "acme",
                    f"metric.{g // group}",
                    sids[sl],
                    np.full(sids[sl].size, t, np.int64),
                    values[i, sl].astype(np.float64),
                )
            )
    return out


def run(kind: str, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    now = int(time.time())
    now -= now % 86400
    per_series = max(1, args.points // args.series)
    batches = workload(kind, rng, args.series, per_series, now)
    points = sum(len(b) for b in batches)
    root = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        objects = LocalDirStore(root)
        store = ArchivePointStore(
            "points",
            Catalog(objects),
            flush_rows=args.flush,
            flush_seconds=1e9,
            max_buffer_rows=10**9,
        )
        store.bind_topic("bench")
        store.start_position(0, 0)
        records = [Record(0, i, 0, b) for i, b in enumerate(batches)]
        t0 = time.perf_counter()
        for i in range(0, len(records), 500):
            store.apply(records[i : i + 500])
            store.make_durable()
        store.flush_all()
        t1 = time.perf_counter()
        size = sum(o.size for o in objects.list(""))
        n_obj = len(objects.list("points/"))
        t2 = time.perf_counter()
        Compactor(Catalog(objects), Retention(10**9)).run()
        t3 = time.perf_counter()
        csize = sum(o.size for o in objects.list("points/"))
        print(
            f"{kind:5}: ingest {points / (t1 - t0):12,.0f} points/s  "
            f"{size / points:5.2f} B/point in {n_obj} ingest objects; "
            f"compacted {csize / points:5.2f} B/point ({points / (t3 - t2):,.0f} points/s)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", type=int, default=2_000)
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--flush", type=int, default=500_000, help="points per ingest object")
    args = ap.parse_args()
    print(describe())
    print(f"seed {args.seed}; {args.points:,} points, {args.series:,} series, 10 s interval")
    for kind in ("gauge", "walk"):
        run(kind, args)


if __name__ == "__main__":
    main()
