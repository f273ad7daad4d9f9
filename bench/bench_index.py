"""Index stores without Kafka: build 1 000 000 series of one metric in a real RocksDB
through the inverted index's apply path, then time resolves of filters that each match
100 000 series; build a 10 000-metric catalog in the tag index and time its answers.

Run: ``python -m bench.bench_index [--seed N] [--series N] [--metrics N] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import describe
from stores.inverted.filters import Filter, parse_filter
from stores.inverted.index import InvertedIndex
from stores.runtime.store import Record
from stores.tags.index import TagIndex
from strata.codec import SeriesBatch
from strata.model import SID_DTYPE, TS_DTYPE

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % HOUR
BATCH = 10_000


def series_tags(i: int) -> tuple[str, ...]:
    # Every filter below matches exactly n/10 series (i % 10 or i % 100 classes).
    return (
        f"env:e{i % 10}",
        f"host:h{i}",
        f"service:svc-{i % 100:03d}",
        f"team:t{i % 5}",
        f"tier:{'small' if i % 10 == 0 else 'big'}",
        f"zone:z{i % 2}",
    )


FILTERS: dict[str, dict[str, object]] = {
    "tag": {"op": "tag", "tag": "env:e3"},
    "and": {
        "op": "and",
        "args": [{"op": "tag", "tag": "zone:z1"}, {"op": "tag", "tag": "team:t3"}],
    },
    "or": {"op": "or", "args": [{"op": "tag", "tag": f"service:svc-{k:03d}"} for k in range(10)]},
    "not": {"op": "not", "arg": {"op": "tag", "tag": "tier:big"}},
    "wildcard": {"op": "wildcard", "pattern": "service:svc-00*"},
}


def batches(org: str, metric: str, sids: np.ndarray, bucket: int) -> list[SeriesBatch]:
    out = []
    for lo in range(0, sids.size, BATCH):
        part = sids[lo : lo + BATCH]
        n = part.size
        out.append(
            SeriesBatch(
                org,
                metric,
                part.astype(SID_DTYPE),
                np.full(n, bucket, dtype=TS_DTYPE),
                np.zeros(n, dtype=np.uint8),
                np.full(n, 10, dtype=np.uint32),
                tuple(series_tags(lo + j) for j in range(n)),
            )
        )
    return out


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float, object]:
    out = fn()  # warm
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ms.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), out


def bench_inverted(root: Path, rng: np.random.Generator, n: int, runs: int) -> None:
    index = InvertedIndex("series", root / "inverted")
    sids = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    t = time.perf_counter()
    offset = 0
    for bucket in (T0, T0 + HOUR):  # every series active in two hourly buckets
        for b in batches("acme", "cpu", sids, bucket):
            index.apply([Record(0, offset, 0, b)])
            offset += 1
    build = time.perf_counter() - t
    print(f"inverted build: {n:,} series x 2 buckets x 7 postings in {build:.1f} s")
    for name, raw in FILTERS.items():
        tree: Filter = parse_filter(raw)

        def resolve(tree: Filter = tree) -> object:
            return index.resolve_filter("acme", "cpu", T0, T0 + HOUR + 60, tree)

        p50, p99, out = timed(resolve, runs)
        size = len(out)  # type: ignore[arg-type]
        print(f"resolve {name:9s}: {size:8,} of {n:,} series  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    index.close()


def bench_tags(root: Path, metrics: int, runs: int) -> None:
    index = TagIndex("series", root / "tags")
    for m in range(metrics):
        rows = 5
        b = SeriesBatch(
            "acme",
            f"app.metric.m{m:05d}",
            np.arange(m * rows, (m + 1) * rows, dtype=SID_DTYPE),
            np.full(rows, T0 - (m % 48) * HOUR, dtype=TS_DTYPE),
            np.zeros(rows, dtype=np.uint8),
            np.full(rows, 10, dtype=np.uint32),
            tuple((f"env:e{j}", f"host:h{j}", "role:web") for j in range(rows)),
        )
        index.apply([Record(0, m, 0, b)])
    queries: dict[str, Callable[[], object]] = {
        "metrics since 0": lambda: index.metrics("acme", 0),
        "metrics since -24h": lambda: index.metrics("acme", T0 - 24 * HOUR),
        "catalog (last-seen)": lambda: index.catalog("acme", 0),
        "search prefix": lambda: index.metrics("acme", 0, prefix="app.metric.m001"),
        "tags of a metric": lambda: index.tags("acme", "app.metric.m00042", 0),
        "tag keys+values": lambda: index.tag_values("acme", "app.metric.m00042", 0),
    }
    for name, fn in queries.items():
        p50, p99, out = timed(fn, runs)
        size = len(out)  # type: ignore[arg-type]
        print(f"tags {name:20s}: {size:6,} rows  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    index.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--metrics", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=None, help="RocksDB parent (default: a temp dir)")
    args = ap.parse_args()
    print(describe())
    print(f"seed {args.seed}")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        bench_tags(Path(tmp), args.metrics, args.runs)
        bench_inverted(Path(tmp), rng, args.series, args.runs)


if __name__ == "__main__":
    main()
