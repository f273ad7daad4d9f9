"""Intake hot path without the network: body -> JSON -> validated columnar batches -> wire
messages, for Datadog v1 and v2 payloads of 1 000 points (points/s on one core).

Run: ``python -m bench.bench_intake [--seed N] [--requests N]``. Kafka produce and HTTP are
not included (see docs/benchmarks.md for what is measured where).
"""

from __future__ import annotations

import argparse
import gzip
import time
from typing import Any

import numpy as np
import orjson

from bench.machine import describe
from intake.decode import BodyLimits, decode_body
from intake.parse import load_json, parse_v1, parse_v2
from intake.rejections import TimeWindow
from strata.codec import encode_points, encode_series

HOSTS = 100
POINTS_PER_SERIES = 10  # 100 series x 10 points = 1 000 points per request


def payloads(seed: int, now: int) -> tuple[bytes, bytes]:
    """A v2 and a v1 body with the same points: 10 cpu metrics x 10 hosts x 10 points."""
    rng = np.random.default_rng(seed)
    v2: list[dict[str, Any]] = []
    v1: list[dict[str, Any]] = []
    for h in range(HOSTS // 10):
        for m in range(10):
            ts = [now - 600 + 10 * i for i in range(POINTS_PER_SERIES)]
            vals = rng.random(POINTS_PER_SERIES).round(4).tolist()
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


def run(body: bytes, version: int, requests: int, now: int, encoding: str | None) -> float:
    limits = BodyLimits(wire=10**8, decompressed=10**9)
    window = TimeWindow(now, 3600, 600)
    parse = parse_v2 if version == 2 else parse_v1
    points = 0
    t0 = time.perf_counter()
    for _ in range(requests):
        doc = load_json(decode_body(body, encoding, limits))
        parsed = parse(doc, "bench", window)
        for b in parsed.batches:
            encode_points(b.points)
            encode_series(b.series)
        points += parsed.accepted
    return points / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    now = int(time.time())
    v2, v1 = payloads(args.seed, now)
    print(describe())
    print(f"seed {args.seed}; {args.requests} requests x {HOSTS * POINTS_PER_SERIES} points")
    for name, body, version in (("v2", v2, 2), ("v1", v1, 1)):
        for encoding in (None, "gzip"):
            wire = gzip.compress(body) if encoding else body
            rate = run(wire, version, args.requests, now, encoding)
            label = f"{name} {'gzip' if encoding else 'plain'}"
            print(f"intake {label:9s}: {rate:12,.0f} points/s  ({len(wire):,} bytes/request)")


if __name__ == "__main__":
    main()
