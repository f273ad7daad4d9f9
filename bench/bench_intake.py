"""Intake hot path without the network: body -> (gunzip) -> validated columnar batches -> wire
messages, for Datadog v1 and v2 payloads of 1 000 points (points/s on one core).

The payloads are TSBS devops cpu-only points from :mod:`bench.workload` (the load driver's
generator): the 10 ``cpu.usage_*`` metrics of each host, tagged like TSBS — ``host`` (v2
``resources``, v1 ``host``) and 9 more tags. Two shapes: 1 000 series x 1 point (100 hosts;
what the Datadog agent sends each interval) and 100 series x 10 points (10 hosts).

Each request goes through what intake does for it, in the same threads: decompression,
parsing and validation (:func:`intake.typed_parse.parse_v2_body` / ``parse_v1_body``), the
partition of each batch and its encoded points message — in the main thread (the event
loop) for a body within intake's ``inline_parse_max_bytes`` as sent and decompressed, as
every row here is, otherwise in a worker thread (intake's parse thread; always, for intake
code from before that setting); then in the main thread, the series-announcement check
(:class:`intake.series_tracker.SeriesTracker`) with the encoded series message of what is
new. Only HTTP and the Kafka produce call are left out, and intake's coalescing of
concurrent requests' points into shared messages (intake/coalesce.py): each request's
points are encoded on their own here (:func:`encoders`), as intake does
with a lone request. The
process's malloc thresholds are set as ``python -m intake`` sets them
(:mod:`strata.allocator`) unless ``--no-malloc-tuning``. Every
request repeats the same series, as an agent does every interval, so after the first one
the series-identity cache is warm and nothing is new to announce; ``cold`` rows give every
request a fresh identity cache and tracker (every series new to the process: normalised,
hashed and announced). ``--series N`` spreads the requests over N distinct series instead
(N / 1 000 bodies sent in turn, each series once per round, as a ``strata up`` under the
load driver sees 40 000): every request still hits the cache, but the cache and the
tracker no longer fit the CPU's caches.

Rates are points per second of process CPU time (``time.process_time``, all threads), which
suffers less than wall time from a busy shared machine; each row is run ``--repeat`` times
and the best and the median are printed, with the load average before and after.

Run: ``python -m bench.bench_intake [--seed N] [--requests N] [--repeat N] [--quick]
[--series N] [--no-malloc-tuning]``.
Works against older intake code too (no typed parser: ``parse_vN(load_json(body))``), for
before/after figures from the same bench.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import os
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import intake
from bench.machine import describe
from bench.workload import CpuOnly, Points, by_series_runs, v1_body, v2_body
from intake.batching import ParsedPayload
from intake.decode import BodyLimits, decode_body
from intake.identity import SeriesIdentities
from intake.producer import PartitionCounts
from intake.rejections import TimeWindow
from intake.series_tracker import SeriesTracker
from strata.partitioning import partition_for, partition_key

POINTS_PER_REQUEST = 1_000
METRICS = 10
SHAPES = (1, 10)  # points per series
PARTITIONS = 4
ORG = "bench"

BodyParser = Callable[[bytes, str, TimeWindow, SeriesIdentities], ParsedPayload]
Placer = Callable[[str, bytes], int]


def shape_points(seed: int, now: int, per_series: int, series: int = 0) -> list[Points]:
    """Requests of 1 000 points: ``per_series`` consecutive 10 s points of each series, the
    last one 10 minutes before ``now``; the series of ``series / 10`` hosts (default: one
    request's worth), 1 000 / ``per_series`` of them per request."""
    per_request = POINTS_PER_REQUEST // per_series
    hosts = max(series, per_request) // METRICS
    workload = CpuOnly(hosts, now - 600 - 10 * (per_series - 1), seed)
    points = by_series_runs(workload.points(per_series), len(workload.series), per_series)
    return [
        points.take(slice(i, i + POINTS_PER_REQUEST))
        for i in range(0, len(points) - POINTS_PER_REQUEST + 1, POINTS_PER_REQUEST)
    ]


def _local(module: str) -> ModuleType | None:
    """``intake.<module>`` if the intake package at hand has it. Run from another checkout
    (for before/after), an editable install of this one could otherwise lend its modules."""
    try:
        found = importlib.import_module(f"intake.{module}")
    except ImportError:
        return None
    here = Path(intake.__file__).parent
    return found if Path(str(found.__file__)).parent == here else None


def parsers() -> tuple[BodyParser, BodyParser]:
    """(v2, v1) body parsers of the intake code at hand."""
    typed = _local("typed_parse")
    if typed is None:  # intake before the typed fast path
        from intake.parse import load_json, parse_v1, parse_v2

        def v2(body: bytes, org: str, w: TimeWindow, ids: SeriesIdentities) -> ParsedPayload:
            return parse_v2(load_json(body), org, w, ids)

        def v1(body: bytes, org: str, w: TimeWindow, ids: SeriesIdentities) -> ParsedPayload:
            return parse_v1(load_json(body), org, w, ids)

        return v2, v1
    return typed.parse_v2_body, typed.parse_v1_body


def encoders() -> tuple[Callable[[Any], list[bytes]], Callable[[Any], list[bytes]]]:
    """(points, series) batch -> message values, as the intake code at hand makes them."""
    messages = _local("messages")
    if messages is None:  # intake before batches were cut to fit a message
        from strata.codec import encode_points, encode_series

        return (lambda b: [encode_points(b)]), (lambda b: [encode_series(b)])
    return messages.points_values, messages.series_values


def inline_bound() -> int:
    """Bodies up to this size, as sent and decompressed, intake parses on its event loop;
    0 (always the parse thread) for intake code from before ``inline_parse_max_bytes``."""
    from intake.settings import IntakeSettings

    return int(getattr(IntakeSettings(), "inline_parse_max_bytes", 0))


def placer() -> Placer:
    """How the intake code at hand places a key (topic, key -> partition)."""
    counts = PartitionCounts("unused:9092", {"points": PARTITIONS, "series": PARTITIONS})
    if hasattr(counts, "place"):
        return counts.place
    return lambda topic, key: partition_for(key, counts.get(topic))  # before the memo


def run(
    parse: BodyParser,
    wires: list[bytes],
    encoding: str | None,
    requests: int,
    now: int,
    cold: bool,
) -> tuple[float, float]:
    """Points per CPU second over ``requests`` requests (``wires`` in turn), and the minor
    page faults per request (buffers the allocator handed back to the kernel and maps
    again). Every wire is sent once before the clock starts, so the cache is warm unless
    ``cold``."""
    limits = BodyLimits(wire=10**8, decompressed=10**9)
    window = TimeWindow(now, 3600, 600)
    identities = SeriesIdentities(1_000_000)
    tracker = SeriesTracker(1_000_000)
    place = placer()

    inline = inline_bound()
    points_values, series_values = encoders()

    def parse_encode(raw: bytes) -> tuple[ParsedPayload, list[Any]]:
        parsed = parse(raw, ORG, window, identities)
        messages: list[tuple[int, bytes, bytes]] = []
        for b in parsed.batches:
            key = partition_key(ORG, b.points.metric)
            messages.extend((place("points", key), key, v) for v in points_values(b.points))
        return parsed, messages

    def decode_parse_encode(wire: bytes) -> tuple[ParsedPayload, list[Any]]:
        return parse_encode(decode_body(wire, encoding, limits))

    def request(pool: ThreadPoolExecutor, wire: bytes) -> int:
        # Where intake.app.Intake._parse_series does each step.
        if len(wire) > inline:
            parsed, messages = pool.submit(decode_parse_encode, wire).result()
        else:
            raw = decode_body(wire, encoding, limits)
            if len(raw) > inline:
                parsed, messages = pool.submit(parse_encode, raw).result()
            else:
                parsed, messages = parse_encode(raw)
        for b in parsed.batches:  # event loop: announce what is new, mark it once acked
            new = tracker.unannounced(b.series)
            if new is not None:
                key = partition_key(ORG, new.metric)
                messages.extend((place("series", key), key, v) for v in series_values(new))
                tracker.mark(new)
        return parsed.accepted

    points = 0
    with ThreadPoolExecutor(1) as pool:
        if not cold:
            for wire in wires:
                request(pool, wire)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.process_time()
        for i in range(requests):
            if cold:
                identities = SeriesIdentities(1_000_000)
                tracker = SeriesTracker(1_000_000)
            points += request(pool, wires[i % len(wires)])
        elapsed = time.process_time() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return points / elapsed, faults / requests


def malloc_tuning(enabled: bool) -> str:
    """Set the malloc thresholds as ``python -m intake`` does; what was done, for the log."""
    if not enabled:
        return "off (--no-malloc-tuning)"
    allocator = _local("allocator")  # intake code from before strata/allocator.py
    if allocator is None:
        try:
            allocator = importlib.import_module("strata.allocator")
        except ImportError:  # before intake/allocator.py
            return "not available in this intake code"
    return "as python -m intake sets it" if allocator.tune_malloc() else "not glibc: defaults"


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=300, help="requests per run of a row")
    ap.add_argument("--repeat", type=int, default=5, help="runs per row (best and median)")
    ap.add_argument("--quick", action="store_true", help="100 requests, 1 run per row")
    ap.add_argument(
        "--series",
        type=int,
        default=0,
        help="distinct series the requests cycle through (default: one request's worth)",
    )
    ap.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's malloc thresholds alone"
    )
    args = ap.parse_args()
    if args.quick:
        args.requests, args.repeat = 100, 1
    now = int(time.time())
    print(describe())
    print(
        f"seed {args.seed}; {args.requests} requests x {POINTS_PER_REQUEST} points, "
        f"{args.repeat} run(s) per row; load average {_load()} (1/5/15 min)"
    )
    parse_v2, parse_v1 = parsers()
    print(f"parsers: {parse_v2.__module__}.{parse_v2.__name__}, {parse_v1.__name__}")
    print(f"malloc thresholds: {malloc_tuning(not args.no_malloc_tuning)}")
    print(f"parsed on the event loop up to: {inline_bound():,} bytes (0: always a thread)")
    for per_series in SHAPES:
        requests = shape_points(args.seed, now, per_series, args.series)
        n_series = POINTS_PER_REQUEST // per_series
        print(
            f"-- {n_series} series x {per_series} point{'s' if per_series > 1 else ''}, "
            f"{len(requests[0].series.tags[0])} tags per series, "
            f"{n_series * len(requests):,} distinct series"
        )
        for name, to_body, parse in (("v2", v2_body, parse_v2), ("v1", v1_body, parse_v1)):
            bodies = [to_body(points) for points in requests]
            for encoding in (None, "gzip"):
                for cold in (False, True) if encoding is None else (False,):
                    wires = [
                        gzip.compress(body, compresslevel=6) if encoding else body
                        for body in bodies
                    ]
                    wire = wires[0]
                    runs = [
                        run(parse, wires, encoding, args.requests, now, cold)
                        for _ in range(args.repeat)
                    ]
                    rates = [rate for rate, _ in runs]
                    faults = statistics.median(f for _, f in runs)
                    label = f"{name} {'gzip' if encoding else 'plain'}{' cold' if cold else ''}"
                    print(
                        f"intake {label:14s}: best {max(rates):12,.0f}  median "
                        f"{statistics.median(rates):12,.0f} points/s  ({len(wire):,} "
                        f"bytes/request, {faults:.0f} page faults/request)"
                    )
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
