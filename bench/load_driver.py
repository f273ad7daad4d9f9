"""Load driver: send a workload to a running pipeline over HTTP and measure what it keeps up
with, how fast it answers and how fresh its data is.

What it does:

1. Builds every request body before the clock starts (a workload from :mod:`bench.workload`,
   cut into requests of ``points_per_request`` points, ``points_per_series`` consecutive
   points per series, compressed like the agent: gzip, or zstd with ``--encoding zstd1``),
   so the driver spends its CPU on HTTP during the run, not on JSON: on a 2-core machine
   it shares the cores with the pipeline it measures.
2. Sends them from ``connections`` threads, each with its own keep-alive connection, at a
   target ``rate`` (points/s; request ``i`` is due at ``i * points_per_request / rate``)
   or flat out, for ``duration`` seconds. A 503 is counted and the same body retried after
   its ``Retry-After`` (at most 1 s), as the agent does; nothing else is retried.
3. Meanwhile a freshness probe writes a marker point (series ``bench.freshness{run:<id>}``,
   value = marker number, timestamp = now) every ``marker_interval`` seconds and polls
   ``GET /api/v1/query`` for each outstanding marker's second until the value is there.
   Freshness = time from the marker's 202 to the poll answer that shows it (polls every
   ~20 ms, so it includes one query round trip). The first marker creates the series
   (tag and inverted index path) and is reported apart, before the load starts.

Timestamps: the workload starts ``start_offset`` seconds (default 3000) before the run, so
points lie inside intake's late-data window (default 1 h) and, as the stream advances 10 s
per step of all series, stay behind its future window (10 min). If the stream would run past
``now + 9 min`` it wraps to its start and repeats (same series and timestamps, new values
are *not* generated): repeated points are counted in ``repeated_points``. Use more hosts to
avoid it at high rates.

Shapes: ``cpu-only`` (TSBS, ``hosts`` x 10 series), ``high-churn`` (5 x ``hosts`` containers
x 2 metrics, each container replaced every ``churn_lifetime`` seconds) and ``late``
(cpu-only in arrival order, ``late_fraction`` of the points up to ``late_max_delay`` seconds
late; the reordering mixes series, so requests hold about one point per series whatever
``points_per_series``). Status 0 in the counts = no HTTP answer (connection error).

Run against a pipeline:
``python -m bench.load_driver --intake URL --query URL --api-key K --app-key K
[--rate N] [--duration S] [--connections N] [--shape cpu-only|high-churn|late] [--seed N]``
(or ``--endpoints DIR/endpoints.json`` of a ``strata up``), or let it start and stop a
``strata up`` of its own on free ports: ``python -m bench.load_driver --up``.
Importable: :func:`run` takes a :class:`DriverConfig` and returns a :class:`DriverResult`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.machine import describe
from bench.proc_cpu import cpu_delta, machine_busy, tree_cpu
from bench.workload import (
    ENCODINGS,
    INTERVAL,
    CpuOnly,
    HighChurn,
    Payload,
    Points,
    by_series_runs,
    late,
    payloads,
)

SHAPES = ("cpu-only", "high-churn", "late")
MARKER_METRIC = "bench.freshness"
FUTURE_SLACK = 540  # keep the stream this far behind intake's 600 s future window
POLL_SECONDS = 0.02
_REJECTED = re.compile(r"(\d+) points? rejected")


@dataclass(frozen=True)
class DriverConfig:
    intake: str
    query: str
    api_key: str
    app_key: str
    rate: float | None = None  # points/s; None = flat out
    duration: float = 30.0
    connections: int = 16
    shape: str = "cpu-only"
    seed: int = 1
    hosts: int = 4000  # cpu-only, late: hosts x 10 series; high-churn: 5 x hosts containers
    points_per_request: int = 1000
    points_per_series: int = 1  # consecutive points of a series per request (agent: 1)
    api: str = "v2"
    gzip_level: int | None = 1  # the compression level, whatever the encoding
    encoding: str = "gzip"  # or "zstd1", the agent's
    start_offset: int = 3000  # the workload starts this many seconds before the run
    max_points: int | None = None  # points to prepare when flat out (default 200 k/s)
    marker_interval: float = 1.0
    visible_timeout: float = 60.0  # longest wait for a marker to show up
    late_fraction: float = 0.1
    late_max_delay: int = 300
    churn_lifetime: int = 300

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive (omit it for flat out)")
        if self.marker_interval < 1.0:
            raise ValueError("markers need distinct seconds: marker_interval >= 1")


@dataclass
class DriverResult:
    """Figures of one run (latencies in milliseconds)."""

    config: dict[str, Any]
    run_id: str
    start: int  # timestamp of the workload's first step
    prepared_points: int
    prepare_seconds: float
    body_bytes_mean: float
    elapsed: float
    requests: int
    accepted_points: int
    repeated_points: int
    rejected_points: int
    status_counts: dict[int, int]
    http_503: int
    failures: list[str]
    latency_p50_ms: float
    latency_p99_ms: float
    first_marker_ms: float
    freshness_samples: int
    markers_not_visible: int
    freshness_p50_ms: float
    freshness_p99_ms: float
    freshness_max_ms: float
    # CPU seconds per component while sending (--up only: the strata up process tree), and
    # the busy fraction of the whole machine over the same window.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    machine_busy: float = math.nan

    @property
    def points_per_second(self) -> float:
        return self.accepted_points / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["points_per_second"] = self.points_per_second
        return out

    def report(self) -> str:
        c = self.config
        rate = "flat out" if c["rate"] is None else f"target {c['rate']:,.0f} points/s"
        lines = [
            f"run {self.run_id}: shape {c['shape']}, seed {c['seed']}, {rate}, "
            f"{c['connections']} connections, {c['duration']:g} s, {c['api']} "
            f"{c['points_per_request']} points/request ({c['points_per_series']} per series), "
            f"{c['encoding']} level {c['gzip_level']}",
            f"prepared {self.prepared_points:,} points in {self.prepare_seconds:.1f} s "
            f"({self.body_bytes_mean:,.0f} bytes/request on the wire)",
            f"accepted: {self.accepted_points:,} points in {self.elapsed:.1f} s = "
            f"{self.points_per_second:,.0f} points/s ({self.requests:,} requests; "
            f"repeated {self.repeated_points:,}; rejected {self.rejected_points:,})",
            f"HTTP latency: p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms; "
            f"status {dict(sorted(self.status_counts.items()))}; 503s {self.http_503}",
            f"freshness (202 -> visible in /api/v1/query): p50 {self.freshness_p50_ms:.0f} ms, "
            f"p99 {self.freshness_p99_ms:.0f} ms, max {self.freshness_max_ms:.0f} ms over "
            f"{self.freshness_samples} markers ({self.markers_not_visible} not visible); "
            f"first marker (new series) {self.first_marker_ms:.0f} ms",
        ]
        if self.cpu_seconds and self.accepted_points:
            per_m = 1e6 / self.accepted_points
            parts = ", ".join(f"{k} {v * per_m:.2f}" for k, v in self.cpu_seconds.items())
            total = sum(self.cpu_seconds.values()) * per_m
            lines.append(
                f"CPU s per 1 M accepted points: {parts}; all {total:.2f} "
                f"(machine busy {100 * self.machine_busy:.0f} % while sending)"
            )
        if self.failures:
            lines.append(f"failures (first {len(self.failures)}): {self.failures}")
        return "\n".join(lines)


# --- preparing the bodies --------------------------------------------------------------


def _stream(config: DriverConfig, start: int, points: int) -> Points:
    """The points to send, in sending order, at most ``points`` of them, stopping where the
    stream would pass the future window."""
    horizon = start + config.start_offset + FUTURE_SLACK  # ~ now + 9 min at the start
    if config.shape == "high-churn":
        churn = HighChurn(
            max(1, config.hosts * 5), config.churn_lifetime, start, config.seed, hosts=100
        )
        per_step = churn.containers * 2
        steps = max(1, min(math.ceil(points / per_step), (horizon - start) // INTERVAL))
        return churn.points(steps).take(slice(0, points))
    cpu = CpuOnly(config.hosts, start, config.seed)
    per_step = len(cpu.series)
    run = config.points_per_series
    cap = max(run, (horizon - start) // INTERVAL // run * run)  # whole runs of steps
    steps = min(math.ceil(points / per_step / run) * run, cap)
    out = cpu.points(steps)
    if run > 1:
        out = by_series_runs(out, per_step, run)
    if config.shape == "late":
        out = late(out, config.late_fraction, config.late_max_delay, config.seed)
    return out.take(slice(0, points))


def prepare(config: DriverConfig, start: int) -> list[Payload]:
    """Every request body of the run (see the module docstring)."""
    if config.rate is not None:
        wanted = math.ceil(config.rate * config.duration)
    else:
        wanted = config.max_points or int(200_000 * config.duration)
    points = _stream(config, start, max(wanted, 1))
    return list(
        payloads(
            points,
            config.points_per_request,
            api=config.api,
            level=config.gzip_level,
            encoding=config.encoding,
        )
    )


# --- freshness probe -------------------------------------------------------------------


class FreshnessProbe:
    """Writes marker points and measures when each becomes visible through the query API."""

    def __init__(self, config: DriverConfig, run_id: str) -> None:
        self.config = config
        self.run_id = run_id
        self.query = f"max:{MARKER_METRIC}{{run:{run_id}}}"
        self.samples: list[float] = []
        self.failures: list[str] = []
        self.missed = 0
        self._pending: dict[int, tuple[int, float]] = {}  # seq -> (ts, acked at)
        self._intake = httpx.Client(
            base_url=config.intake, timeout=10.0, headers={"DD-API-KEY": config.api_key}
        )
        self._query = httpx.Client(
            base_url=config.query,
            timeout=10.0,
            headers={"DD-API-KEY": config.api_key, "DD-APPLICATION-KEY": config.app_key},
        )

    def close(self) -> None:
        self._intake.close()
        self._query.close()

    def send(self, seq: int) -> bool:
        ts = int(time.time())
        body = {
            "series": [
                {
                    "metric": MARKER_METRIC,
                    "type": 3,
                    "points": [{"timestamp": ts, "value": float(seq)}],
                    "tags": [f"run:{self.run_id}"],
                }
            ]
        }
        try:
            resp = self._intake.post("/api/v2/series", content=orjson.dumps(body))
        except httpx.HTTPError as exc:
            self.failures.append(f"marker {seq}: {exc!r}")
            return False
        if resp.status_code != 202:
            self.failures.append(f"marker {seq}: HTTP {resp.status_code} {resp.text[:200]}")
            return False
        self._pending[seq] = (ts, time.monotonic())
        return True

    def visible(self, seq: int, ts: int) -> bool:
        params = {"from": str(ts), "to": str(ts), "query": self.query}
        try:
            resp = self._query.get("/api/v1/query", params=params)
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        for s in resp.json().get("series", []):
            for t, v in s.get("pointlist", []):
                if int(t) // 1000 == ts and v == float(seq):
                    return True
        return False

    def poll(self) -> None:
        """Check every outstanding marker once; record the ones now visible."""
        for seq, (ts, acked) in sorted(self._pending.items()):
            if self.visible(seq, ts):
                self.samples.append((time.monotonic() - acked) * 1000)
                del self._pending[seq]
            elif time.monotonic() - acked > self.config.visible_timeout:
                self.missed += 1
                del self._pending[seq]

    def first(self) -> float:
        """Send marker 0 (creates the series) and wait until visible; its ms, or NaN."""
        if not self.send(0):
            return math.nan
        while self._pending:
            self.poll()
            time.sleep(POLL_SECONDS)
        return self.samples.pop() if self.samples else math.nan

    def run(self, stop: threading.Event) -> None:
        """Markers every ``marker_interval`` seconds until ``stop``, then drain."""
        seq = 1
        next_at = time.monotonic()
        last_ts = int(time.time())
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_at and int(time.time()) != last_ts:
                last_ts = int(time.time())
                self.send(seq)
                seq += 1
                next_at = now + self.config.marker_interval
            self.poll()
            time.sleep(POLL_SECONDS)
        while self._pending:
            self.poll()
            time.sleep(POLL_SECONDS)


# --- senders ----------------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    status: Counter[int] = field(default_factory=Counter)
    accepted: int = 0
    repeated: int = 0
    rejected: int = 0
    failures: list[str] = field(default_factory=list)


class _Schedule:
    """Hands out request numbers to the sender threads, at the target rate if any."""

    def __init__(self, config: DriverConfig) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self.start = time.monotonic()
        self.end = self.start + config.duration
        self._spacing = 0.0
        self._limit: int | None = None  # flat out: until the time is up
        if config.rate is not None:
            self._spacing = config.points_per_request / config.rate
            self._limit = math.ceil(config.rate * config.duration / config.points_per_request)

    def take(self) -> int | None:
        """The next request number, once it is due; None when the run is over. At a
        target rate every scheduled request is sent, late ones too (a pipeline that cannot
        keep up shows as a longer elapsed time), up to twice the duration."""
        with self._lock:
            i = self._next
            if self._limit is not None and i >= self._limit:
                return None
            self._next += 1
        due = self.start + i * self._spacing
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self._limit is not None:
            return i if time.monotonic() < self.end + (self.end - self.start) else None
        return i if time.monotonic() < self.end else None


def _send_all(config: DriverConfig, bodies: list[Payload], tally: _Tally, sched: _Schedule) -> None:
    headers = {"DD-API-KEY": config.api_key}
    with httpx.Client(base_url=config.intake, timeout=30.0, headers=headers) as client:
        while (i := sched.take()) is not None:
            payload = bodies[i % len(bodies)]
            while True:
                t0 = time.perf_counter()
                try:
                    resp = client.post(
                        payload.path, content=payload.body, headers=payload.http_headers()
                    )
                except httpx.HTTPError as exc:
                    tally.status[0] += 1
                    if len(tally.failures) < 5:
                        tally.failures.append(repr(exc))
                    break
                tally.latencies.append((time.perf_counter() - t0) * 1000)
                tally.status[resp.status_code] += 1
                if resp.status_code == 503 and time.monotonic() < sched.end:
                    retry = float(resp.headers.get("retry-after", "1") or 1)
                    time.sleep(min(max(retry, 0.05), 1.0))
                    continue
                if resp.status_code == 202:
                    tally.accepted += payload.points
                    if i >= len(bodies):
                        tally.repeated += payload.points
                    if config.api == "v2":
                        for msg in resp.json().get("errors", []):
                            m = _REJECTED.search(msg)
                            tally.rejected += int(m.group(1)) if m else 0
                elif len(tally.failures) < 5:
                    tally.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                break


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def run(config: DriverConfig, cpu_root: int | None = None) -> DriverResult:
    """Prepare the bodies, measure the first marker, then send for ``duration`` seconds
    with the freshness probe running; return the figures. ``cpu_root``: a process (strata
    up) whose tree's CPU time is measured per component over the sending window."""
    run_id = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    start = int(time.time()) - config.start_offset
    start -= start % INTERVAL  # steps on multiples of 10 s: one point per 10 s bucket
    bodies = prepare(config, start)
    prepare_seconds = time.perf_counter() - t0
    probe = FreshnessProbe(config, run_id)
    try:
        first = probe.first()
        tallies = [_Tally() for _ in range(config.connections)]
        sched = _Schedule(config)
        stop = threading.Event()
        prober = threading.Thread(target=probe.run, args=(stop,), name="freshness")
        senders = [
            threading.Thread(target=_send_all, args=(config, bodies, t, sched), name=f"send-{i}")
            for i, t in enumerate(tallies)
        ]
        cpu_before = tree_cpu(cpu_root) if cpu_root is not None else {}
        busy_before = machine_busy()
        prober.start()
        for s in senders:
            s.start()
        for s in senders:
            s.join()
        elapsed = time.monotonic() - sched.start
        cpu = cpu_delta(cpu_before, tree_cpu(cpu_root)) if cpu_root is not None else {}
        busy_after = machine_busy()
        stop.set()
        prober.join()
    finally:
        probe.close()
    latencies = [x for t in tallies for x in t.latencies]
    status: Counter[int] = Counter()
    for t in tallies:
        status.update(t.status)
    failures = [f for t in tallies for f in t.failures][:5] + probe.failures[:5]
    return DriverResult(
        config=asdict(config) | {"api_key": "***", "app_key": "***"},
        run_id=run_id,
        start=start,
        prepared_points=sum(b.points for b in bodies),
        prepare_seconds=prepare_seconds,
        body_bytes_mean=float(np.mean([len(b.body) for b in bodies])),
        elapsed=elapsed,
        requests=sum(status.values()),
        accepted_points=sum(t.accepted for t in tallies),
        repeated_points=sum(t.repeated for t in tallies),
        rejected_points=sum(t.rejected for t in tallies),
        status_counts=dict(status),
        http_503=status[503],
        failures=failures,
        latency_p50_ms=_pct(latencies, 50),
        latency_p99_ms=_pct(latencies, 99),
        first_marker_ms=first,
        freshness_samples=len(probe.samples),
        markers_not_visible=probe.missed,
        freshness_p50_ms=_pct(probe.samples, 50),
        freshness_p99_ms=_pct(probe.samples, 99),
        freshness_max_ms=max(probe.samples, default=math.nan),
        cpu_seconds=cpu,
        machine_busy=(
            (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1])
            if busy_before and busy_after and busy_after[1] > busy_before[1]
            else math.nan
        ),
    )


# --- a strata up of our own ---------------------------------------------------------------


@contextmanager
def strata_up(data_dir: Path, timeout: float = 180.0) -> Iterator[tuple[dict[str, Any], int]]:
    """Run ``strata up`` on free ports with ``data_dir``; yield its endpoints.json and its
    process id."""
    from strata.servers import free_port, spawn

    argv = [sys.executable, "-m", "strata.cli", "up", "--data-dir", str(data_dir)]
    for flag in ("--intake-port", "--query-port", "--kafka-port", "--redis-port"):
        argv += [flag, str(free_port())]
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    log = data_dir.parent / f"{data_dir.name}-up.log"
    proc = spawn("strata-up", argv, log, env=env)
    endpoints = data_dir / "endpoints.json"
    try:
        deadline = time.monotonic() + timeout
        while not endpoints.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"strata up did not come up:\n{tail}")
            time.sleep(0.2)
        yield dict(json.loads(endpoints.read_text())), proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- command line ---------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("strata", "httpx", "orjson"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} ?")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--intake", help="intake base URL")
    ap.add_argument("--query", help="query service base URL")
    ap.add_argument("--api-key")
    ap.add_argument("--app-key")
    ap.add_argument("--endpoints", type=Path, help="a strata up endpoints.json (URLs + keys)")
    ap.add_argument("--up", action="store_true", help="start (and stop) a strata up of our own")
    ap.add_argument("--rate", type=float, default=None, help="points/s (default: flat out)")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--shape", choices=SHAPES, default="cpu-only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hosts", type=int, default=4000)
    ap.add_argument("--points-per-request", type=int, default=1000)
    ap.add_argument("--points-per-series", type=int, default=1)
    ap.add_argument("--api", choices=("v1", "v2"), default="v2")
    ap.add_argument("--gzip-level", type=int, default=1, help="compression level (gzip or zstd)")
    ap.add_argument("--encoding", choices=ENCODINGS, default="gzip")
    ap.add_argument("--max-points", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = ap.parse_args(argv)

    def config(endpoints: dict[str, Any]) -> DriverConfig:
        return DriverConfig(
            intake=args.intake or endpoints["intake"],
            query=args.query or endpoints["query"],
            api_key=args.api_key or endpoints["api_key"],
            app_key=args.app_key or endpoints["app_key"],
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            shape=args.shape,
            seed=args.seed,
            hosts=args.hosts,
            points_per_request=args.points_per_request,
            points_per_series=args.points_per_series,
            api=args.api,
            gzip_level=args.gzip_level,
            encoding=args.encoding,
            max_points=args.max_points,
        )

    print(describe())
    print(_versions())
    print(f"seed {args.seed}")
    if args.up:
        with (
            tempfile.TemporaryDirectory(prefix="strata-load-") as tmp,
            strata_up(Path(tmp) / "data") as (endpoints, up_pid),
        ):
            print(f"strata up: intake {endpoints['intake']}, query {endpoints['query']}")
            result = run(config(endpoints), cpu_root=up_pid)
    else:
        endpoints = json.loads(args.endpoints.read_text()) if args.endpoints else {}
        missing = [
            n
            for n in ("intake", "query", "api_key", "app_key")
            if not (getattr(args, n) or endpoints.get(n))
        ]
        if missing:
            ap.error(f"missing {', '.join(missing)} (give flags, --endpoints or --up)")
        result = run(config(endpoints))
    print(result.report())
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
    return 0 if result.accepted_points > 0 and not math.isnan(result.first_marker_ms) else 1


if __name__ == "__main__":
    sys.exit(main())
