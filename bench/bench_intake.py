"""Intake hot path without the network: body -> JSON -> validated columnar batches -> wire
messages, for Datadog v1 and v2 payloads of 1 000 points (points/s on one core).

Two shapes: 100 series x 10 points, and 1 000 series x 1 point (what the Datadog agent
usually sends). Each request repeats the same series, as an agent does every interval, so
the series-identity cache is warm after the first request; ``cold`` rows give every request
a fresh cache (every series new to the process).

Run: ``python -m bench.bench_intake [--seed N] [--requests N]``. Kafka produce and HTTP are
not included (see docs/benchmarks.md for what is measured where).
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from bench.machine import describe
from intake.batching import ParsedPayload
from intake.decode import BodyLimits, decode_body
from intake.parse import load_json, parse_v1, parse_v2
from intake.rejections import TimeWindow
from strata.codec import encode_points, encode_series

POINTS_PER_REQUEST = 1_000
METRICS = 10
SHAPES = (10, 1)  # points per series


def payloads(seed: int, now: int, points_per_series: int) -> tuple[bytes, bytes]:
    """A v2 and a v1 body with the same 1 000 points: 10 cpu metrics x N hosts x M points."""
    rng = np.random.default_rng(seed)
    hosts = POINTS_PER_REQUEST // METRICS // points_per_series
    v2: list[dict[str, Any]] = []
    v1: list[dict[str, Any]] = []
    for h in range(hosts):
        for m in range(METRICS):
            ts = [now - 600 + 10 * i for i in range(points_per_series)]
            vals = rng.random(points_per_series).round(4).tolist()
            tags = [f"region:r{h % 3}", f"rack:{h}", "service:api", "env:prod"]
            metric = f"cpu.usage_{m}"
            v2.append(
                {
                    "metric": metric,
                    "type": 3,
                    "points": [{"timestamp": t, "value": v} for t, v in zip(ts, vals, strict=True)],
                    "resources": [{"name": f"host-{h}", "type": "host"}],
                    "tags": tags,
                }
            )
            v1.append(
                {
                    "metric": metric,
                    "type": "gauge",
                    "points": [[float(t), v] for t, v in zip(ts, vals, strict=True)],
                    "host": f"host-{h}",
                    "tags": tags,
                }
            )
    return orjson.dumps({"series": v2}), orjson.dumps({"series": v1})


def _parser(version: int, cold: bool) -> Callable[[Any, str, TimeWindow], ParsedPayload]:
    """The parse function, with one identity cache for the whole run (warm) or a fresh one
    per request (cold). Works against parsers without a cache too (for before/after)."""
    parse = parse_v2 if version == 2 else parse_v1
    if "identities" not in inspect.signature(parse).parameters:
        return parse
    from intake.identity import SeriesIdentities

    shared = SeriesIdentities(1_000_000)

    def run(doc: Any, org: str, window: TimeWindow) -> ParsedPayload:
        cache = SeriesIdentities(1_000_000) if cold else shared
        return parse(doc, org, window, identities=cache)

    return run


def run(
    body: bytes, version: int, requests: int, now: int, encoding: str | None, cold: bool
) -> float:
    limits = BodyLimits(wire=10**8, decompressed=10**9)
    window = TimeWindow(now, 3600, 600)
    parse = _parser(version, cold)
    points = 0
    t0 = time.process_time()
    for _ in range(requests):
        doc = load_json(decode_body(body, encoding, limits))
        parsed = parse(doc, "bench", window)
        for b in parsed.batches:
            encode_points(b.points)
            encode_series(b.series)
        points += parsed.accepted
    return points / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    now = int(time.time())
    print(describe())
    print(f"seed {args.seed}; {args.requests} requests x {POINTS_PER_REQUEST} points")
    for per_series in SHAPES:
        v2, v1 = payloads(args.seed, now, per_series)
        n_series = POINTS_PER_REQUEST // per_series
        print(f"-- {n_series} series x {per_series} point{'s' if per_series > 1 else ''}")
        for name, body, version in (("v2", v2, 2), ("v1", v1, 1)):
            for encoding in (None, "gzip"):
                for cold in (False, True) if encoding is None else (False,):
                    wire = gzip.compress(body) if encoding else body
                    rate = run(wire, version, args.requests, now, encoding, cold)
                    label = f"{name} {'gzip' if encoding else 'plain'}{' cold' if cold else ''}"
                    print(
                        f"intake {label:14s}: {rate:12,.0f} points/s  ({len(wire):,} bytes/request)"
                    )


if __name__ == "__main__":
    main()
