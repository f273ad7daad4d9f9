"""Rocks store core without Kafka: apply path incl. RocksDB writes (synced), bytes per point
on disk, and read latency for 100 series.

Workloads: "gauge" = TSBS-like cpu values (clamped random walk, 2 decimals) every 10 s;
"random walk" = full-precision float random walk every 10 s.

Ingest is measured in three shapes, each timed until every point is folded into hour blocks
(a final ``fold(everything=True)`` is inside the timing):
- catch-up: 1 h of every series per apply, clock at the end of the data (a lagging consumer);
- live: one point of every series per apply (``--live-series``, default 10 000), the clock
  5 s behind each timestamp, for 2 h 10 min of data so the periodic folds of two closed
  hours run inside the timed loop; apply (staging) and fold time are reported apart;
- backfill: 12 h of past data of ``--backfill-series`` (default 1 000) series, 16 points of
  every series per apply (what a client replaying history sends, and bench_peers' shape),
  the clock running with wall time so the periodic folds happen as in the service;
- late trickle: 2 h of past (closed-hour) data of ``--trickle-series`` (default 10 000)
  series, one point of every series per apply, wall clock, fold checks every second, so
  each check finds only a few new points per series in hours already folded into (a
  consumer catching up on old data at a few points per series per batch; the service's
  10-s checks at 40 000 series see the same ratio). The fold count printed shows whether
  the store re-encodes those hours' blocks at every check.

Run: ``python -m bench.bench_rocks [--seed N] [--series N] [--days N] [--live-series N]
[--backfill-series N] [--trickle-series N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
from rocksdict import Rdict

from bench.machine import describe
from stores.rocks import layout
from stores.rocks.shards import DayShards
from stores.rocks.store import RocksStore
from stores.runtime.store import Record
from strata.codec import PointBatch

STEP = 10
NOW = 1_800_000_000 - 1_800_000_000 % 86400 + 86399  # end of a UTC day


def walk(
    rng: np.random.Generator, steps: int, series: int, decimals: int | None
) -> npt.NDArray[np.float64]:
    v = 50 + np.cumsum(rng.normal(0, 1, (steps, series)), axis=0)
    if decimals is None:
        return v
    return np.round(np.clip(v, 0.0, 100.0), decimals).astype(np.float64)


def ingest(
    path: Path,
    sids: npt.NDArray[np.uint64],
    days: int,
    values: npt.NDArray[np.float64],
    per_apply: int,
    *,
    start: int | None = None,
    lag: int | None = None,
    wall_clock: bool = False,
    fold_check_seconds: float = 10.0,
) -> tuple[RocksStore, float, int]:
    """Apply ``per_apply`` timestamps of all series per batch (one record per timestamp),
    then fold everything; return the store, the seconds of the whole, and the points.
    The clock stands at ``NOW``, or with ``lag`` that many seconds after the latest
    timestamp applied, or with ``wall_clock`` at ``NOW`` plus the seconds elapsed."""
    steps = values.shape[0]
    first = NOW - steps * STEP + 1 if start is None else start
    now = [float(NOW)]
    began = time.perf_counter()

    def clock() -> float:
        return NOW + time.perf_counter() - began if wall_clock else now[0]

    store = RocksStore("bench", path, days + 1, fold_check_seconds=fold_check_seconds, clock=clock)
    n = sids.size
    records = [
        Record(
            0, i, 0, PointBatch("o", "m", sids, np.full(n, first + i * STEP, np.int64), values[i])
        )
        for i in range(steps)
    ]
    t0 = time.perf_counter()
    for i in range(0, steps, per_apply):
        if lag is not None:
            now[0] = first + (i + per_apply - 1) * STEP + lag
        store.apply(records[i : i + per_apply])
    store.fold(everything=True)
    return store, time.perf_counter() - t0, steps * n


def _raw_items(shard: Rdict) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in shard.items(from_key=layout.RAW):
        key = cast(bytes, k)
        if key[:1] != layout.RAW:
            break
        out.append((key, cast(bytes, v)))
    return out


def sst_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.sst"))


def raw_only_bytes(store: RocksStore, tmp: Path) -> int:
    """SST bytes of the raw blocks alone (copied into a fresh DB, flushed and compacted)."""
    copy = DayShards(tmp)
    for day in store.shards.days():
        shard = store.shards.db.get_column_family(layout.shard_name(day))
        items = [(bytes(k), bytes(v)) for k, v in _raw_items(shard)]
        copy.write({day: items}, {})
        del shard
    copy.flush()
    copy.compact()
    copy.close()
    return sst_bytes(tmp)


def disk(store: RocksStore, path: Path, tmp: Path, points: int) -> tuple[float, float, float]:
    frames = 0
    for day in store.shards.days():
        shard = store.shards.db.get_column_family(layout.shard_name(day))
        frames += sum(len(v) for _, v in _raw_items(shard))
        del shard
    store.shards.flush()
    store.shards.compact()
    return frames / points, raw_only_bytes(store, tmp) / points, sst_bytes(path) / points


def latency(fn: Callable[[], int], repeat: int = 20) -> tuple[float, int]:
    fn()  # warm the block cache
    t0 = time.perf_counter()
    rows = 0
    for _ in range(repeat):
        rows = fn()
    return (time.perf_counter() - t0) / repeat * 1000, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--live-series", type=int, default=10_000)
    ap.add_argument("--backfill-series", type=int, default=1_000)
    ap.add_argument("--trickle-series", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    sids = np.sort(rng.integers(0, 2**63, args.series, dtype=np.uint64))
    print(describe())
    print(f"seed {args.seed}; {args.series} series every {STEP} s; apply = synced WriteBatch")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        steps = args.days * 86400 // STEP
        gauge = walk(rng, steps, args.series, 2)
        store, secs, points = ingest(tmp / "gauge", sids, args.days, gauge, 360)
        print(
            f"ingest, 1 h of every series per apply : {points / secs:12,.0f} points/s "
            f"({points:,} points)"
        )
        b_frame, b_raw, b_all = disk(store, tmp / "gauge", tmp / "gauge-raw", points)
        print(
            f"gauge bytes/point: {b_frame:.2f} encoded blocks, {b_raw:.2f} raw blocks on disk "
            f"(zstd SST), {b_all:.2f} on disk incl. 1m+1h rollups"
        )
        wanted = sids[:100]
        for label, span, res in (
            ("1 h raw", 3600, "raw"),
            ("1 d raw", 86400, "raw"),
            ("1 d 1m", 86400, "1m"),
            (f"{args.days} d 1h", args.days * 86400, "1h"),
        ):
            lo = NOW + 1 - span

            def query(lo: int = lo, res: str = res) -> int:
                if res == "raw":
                    return int(store.read_raw(wanted, lo, NOW)[0].size)
                return len(store.read_rollups(wanted, lo, NOW, 60 if res == "1m" else 3600))

            ms, rows = latency(query, 5 if res == "raw" and span > 3600 else 20)
            print(f"query {label:>7} x {wanted.size} series: {ms:8.1f} ms ({rows:,} rows)")
        store.close()
        live = np.sort(rng.integers(0, 2**63, args.live_series, dtype=np.uint64))
        live_steps = (2 * 3600 + 600) // STEP
        store, secs, points = ingest(
            tmp / "live",
            live,
            1,
            walk(rng, live_steps, live.size, 2),
            1,
            start=NOW - 3 * 3600 + 1,
            lag=5,
        )
        st = store.stats
        print(
            f"ingest, one point of each of {live.size:,} series per apply (live), incl. fold: "
            f"{points / secs:12,.0f} points/s ({points:,} points, {secs:.1f} s)"
        )
        print(
            f"  staging (apply without fold): {points / (secs - st.fold_seconds):12,.0f} "
            f"points/s; fold: {st.folded_points / st.fold_seconds:12,.0f} points/s "
            f"({st.folds} fold batches, {st.fold_seconds:.1f} s)"
        )
        store.close()
        rw = walk(rng, 86400 // STEP, args.series, None)
        store, secs, points = ingest(tmp / "rw", sids, 1, rw, 360)
        b_frame, b_raw, b_all = disk(store, tmp / "rw", tmp / "rw-raw", points)
        print(
            f"random-walk float bytes/point: {b_frame:.2f} encoded, {b_raw:.2f} raw on disk, "
            f"{b_all:.2f} incl. rollups"
        )
        store.close()
        # Last, so the figures above keep the random streams they had before it.
        back = np.sort(rng.integers(0, 2**63, args.backfill_series, dtype=np.uint64))
        store, secs, points = ingest(
            tmp / "backfill",
            back,
            1,
            walk(rng, 12 * 3600 // STEP, back.size, 2),
            16,
            start=NOW - 86400 + 1,
            wall_clock=True,
        )
        st = store.stats
        print(
            f"ingest, 16 past points of each of {back.size:,} series per apply (backfill), "
            f"incl. fold: {points / secs:12,.0f} points/s ({points:,} points, {secs:.1f} s; "
            f"{st.direct_points:,} merged directly, {st.folded_points:,} staged and folded "
            f"in {st.folds} fold batches)"
        )
        store.close()
        late = np.sort(rng.integers(0, 2**63, args.trickle_series, dtype=np.uint64))
        store, secs, points = ingest(
            tmp / "trickle",
            late,
            1,
            walk(rng, 2 * 3600 // STEP, late.size, 2),
            1,
            start=NOW - 86400 + 1,
            wall_clock=True,
            fold_check_seconds=1.0,
        )
        st = store.stats
        print(
            f"ingest, 1 past point of each of {late.size:,} series per apply, folds checked "
            f"every 1 s (late trickle), incl. fold: {points / secs:12,.0f} points/s "
            f"({points:,} points, {secs:.1f} s; {st.folds} fold batches)"
        )
        store.close()


if __name__ == "__main__":
    main()
