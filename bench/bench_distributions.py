"""Distribution queries through the sketch tiers: p99 over 1 day x 1 000 series.

Run: ``python -m bench.bench_distributions [--quick] [--series N] [--values V] [--seed S]``
(``--quick``: 100 series, one repeat — what ``make bench`` runs; the default is the
1 000-series figure quoted in docs/benchmarks.md, about 4 minutes).

What is measured, in one process (no Kafka, no Redis):

- **load**: a rocks sketch store (real RocksDB in a temp dir) is filled through its
  ``apply`` with one day of ``--series`` series, one sketch per series per minute of
  ``--values`` latency-like values (lognormal around 20 ms), an hour per apply, as a catching-
  up consumer would (rows/s applied, bytes on disk after a flush);
- **query**: the query service's evaluation (:func:`query.evaluate.evaluate`) of
  ``p99:bench.latency{*}`` and friends over the day, through
  :class:`query.stores_client.HttpStoreClient` and the store's real HTTP read API
  (``POST /v1/sketches/read``, served in process by starlette's TestClient: request
  encoding, the store read, the sketch batch encoding and decoding, stitching, merge and
  quantile are all in the figure; the inverted and tag index answers are stubbed);
- the same over the last 3 hours from a RAM sketch store holding them.

Every query is run ``--repeats`` times after a warm-up; p50 and max are printed in ms.
Also checked on every run: the day's p99 equals the p99 of the merged sketch of every value.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from bench.machine import describe
from query.evaluate import evaluate
from query.language import parse
from query.stores_client import HttpStoreClient, RegistryView, Sids
from stores.ram.api import create_app as ram_app
from stores.ram.store import RamStore
from stores.rocks.api import create_app as rocks_app
from stores.rocks.store import RocksStore
from stores.runtime.ownership import Ownership
from stores.runtime.service import Companion
from stores.runtime.store import Record
from stores.sketches.ram import RamSketchStore
from stores.sketches.rocks import RocksSketchStore
from strata.codec import SketchMessage
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from strata.sketch import SketchBatch, SketchParams

ORG, METRIC = "bench", "bench.latency"
PARTITIONS = 4
DAY, HOUR = 86400, 3600


class Stubbed(HttpStoreClient):
    """The real HTTP client for tier reads; the indexes are answered from memory."""

    def __init__(self, view: RegistryView, http: httpx.Client, sids: Sids, hosts: int) -> None:
        super().__init__(view, http)
        self._sids = sids
        self._hosts = hosts

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids:
        return self._sids

    def series_types(self, org: str, metric: str, sids: Sids) -> dict[int, str]:
        return {int(s): "distribution" for s in sids.tolist()}

    def lookup(self, org: str, metric: str, sids: Sids) -> dict[int, tuple[str, ...]]:
        return {int(s): (f"host:h{i % self._hosts}",) for i, s in enumerate(sids.tolist())}


class Discovery:
    def __init__(self, regs: list[Registration]) -> None:
        self.regs = regs

    def discover(self, kind: str | None = None) -> list[Registration]:
        return [r for r in self.regs if kind is None or r.kind == kind]


def registration(kind: str, coverage: tuple[int, int]) -> Registration:
    p = partition_for(partition_key(ORG, METRIC), PARTITIONS)
    return Registration(
        kind=kind,
        instance=f"{kind}-bench",
        address="http://testserver",
        topic="sketches",
        partition_count=PARTITIONS,
        partitions=list(range(PARTITIONS)),
        coverage={p: list(coverage)},
        updated=time.time() + 10**6,  # never aged: no RAM margin in the figures
    )


def day_batches(
    rng: np.random.Generator, sids: Sids, day: int, values: int, hours: int = 24
) -> list[SketchBatch]:
    """One batch per hour: a sketch per series per minute."""
    out = []
    params = SketchParams()
    for h in range(hours):
        minutes = day + h * HOUR + 60 * np.arange(60, dtype=np.int64)
        sid = np.repeat(sids, minutes.size)
        ts = np.tile(minutes, sids.size)
        offsets = np.arange(0, sid.size * values + 1, values, dtype=np.int64)
        v = rng.lognormal(np.log(20.0), 1.0, sid.size * values)
        out.append(SketchBatch.from_ragged(params, sid, ts, offsets, v))
    return out


def timed(client: HttpStoreClient, query: str, start: int, end: int, repeats: int) -> Any:
    expr = parse(query)
    result = evaluate(expr, ORG, start, end, client, max_points=300, max_series=100_000)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = evaluate(expr, ORG, start, end, client, max_points=300, max_series=100_000)
        times.append((time.perf_counter() - t0) * 1000)
    groups, buckets = result.frame.values.shape
    print(
        f"  {query:<44} interval {result.interval:>5} s  {groups:>5} x {buckets:<4} "
        f"p50 {statistics.median(times):8.1f} ms  max {max(times):8.1f} ms  "
        f"tiers {','.join(result.tiers)}"
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--values", type=int, default=20, help="values per series per minute")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="100 series, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.series, args.repeats = 100, 1
    print(describe())
    rng = np.random.default_rng(args.seed)
    sids = np.unique(rng.integers(1, 2**63, args.series).astype(np.uint64))
    now = (int(time.time()) // DAY) * DAY + 12 * HOUR  # noon today
    day = now - DAY
    with tempfile.TemporaryDirectory() as tmp:
        rocks = RocksSketchStore("sketches", Path(tmp) / "sk", 15, clock=lambda: now)
        rocks.assigned([0], {})
        batches = day_batches(rng, sids, day, args.values)
        rows = sum(len(b) for b in batches)
        t0 = time.perf_counter()
        for i, b in enumerate(batches):
            rocks.apply([Record(0, i, 0, SketchMessage(ORG, METRIC, b))])
        load = time.perf_counter() - t0
        rocks.shards.flush()
        size = sum(f.stat().st_size for f in (Path(tmp) / "sk").rglob("*.sst"))
        print(
            f"rocks load: {rows:,} sketches ({args.series} series x 1 day x 1/min, "
            f"{args.values} values each) in {load:.1f} s = {rows / load:,.0f} sketches/s; "
            f"{size / rows:.0f} bytes/sketch on disk (all three records)"
        )
        own = Ownership()
        own.assign({p: 0 for p in range(PARTITIONS)})
        rocks_points = RocksStore("points", Path(tmp) / "pts", 15, clock=lambda: now)
        app = rocks_app(rocks_points, Ownership(), Companion(rocks, own))
        view = RegistryView(Discovery([registration("rocks-sketches", (day, now))]), ttl=60.0)
        with TestClient(app) as http:
            client = Stubbed(view, http, sids, 10)
            print(f"query, rocks only ({args.series} series, 1 day):")
            result = timed(client, f"p99:{METRIC}{{*}}", day, day + DAY - 1, args.repeats)
            timed(client, f"p99:{METRIC}{{*}} by {{host}}", day, day + DAY - 1, args.repeats)
            timed(client, f"p99:{METRIC}{{*}}.rollup(avg, 3600)", day, day + DAY - 1, args.repeats)
            timed(client, f"avg:{METRIC}{{*}}", day, day + DAY - 1, args.repeats)
            timed(client, f"p99:{METRIC}{{*}}", now - 3 * HOUR, now - 1, args.repeats)
            # Check: the day's sketch merged once, from the raw batches.
            everything = SketchBatch.concat(batches).merge_all()
            day_p99 = evaluate(
                parse(f"p99:{METRIC}{{*}}.rollup(avg, 86400)"),
                ORG,
                day,
                day + DAY - 1,
                client,
                max_points=300,
                max_series=100_000,
            )
            got = float(np.nanmax(day_p99.frame.values))
            assert got == everything.quantile(0.99), (got, everything.quantile(0.99))
            assert np.isfinite(result.frame.values).all()
        rocks.close()
        rocks_points.close()

    # RAM: the last 3 hours (its default window) of the same shape.
    ram = RamSketchStore("sketches", 3 * HOUR, clock=lambda: now)
    part = partition_for(partition_key(ORG, METRIC), PARTITIONS)
    ram.assigned(list(range(PARTITIONS)), {})
    for i, b in enumerate(day_batches(rng, sids, now - 3 * HOUR, args.values, hours=3)):
        ram.apply([Record(part, i, now * 1000, SketchMessage(ORG, METRIC, b))])
    own = Ownership()
    own.assign({p: 0 for p in range(PARTITIONS)})
    app = ram_app(RamStore("points", 3 * HOUR, clock=lambda: now), Ownership(), Companion(ram, own))
    view = RegistryView(Discovery([registration("ram-sketches", (now - 3 * HOUR, now))]), ttl=60.0)
    with TestClient(app) as http:
        client = Stubbed(view, http, sids, 10)
        print(f"query, RAM only ({args.series} series, 3 h, {ram.rows():,} sketches held):")
        timed(client, f"p99:{METRIC}{{*}}", now - 3 * HOUR, now - 1, args.repeats)
        timed(client, f"p99:{METRIC}{{*}} by {{host}}", now - 3 * HOUR, now - 1, args.repeats)


if __name__ == "__main__":
    main()
