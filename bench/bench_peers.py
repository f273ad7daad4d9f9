"""Peers side by side: Strata, Prometheus and InfluxDB 1.x on the same points, one after the other.

Data: TSBS devops cpu-only from :mod:`bench.workload` (``--hosts`` x 10 cpu metrics every
10 s for ``--hours`` hours ending at the last full hour, values the clamped integer random
walk; seed ``--seed``). The same points go to each system in the same requests (about 1 000
points each, cut by :mod:`bench.peers.plan`: hosts sharded over 16 connections, each shard
in time order, shards kept within two requests of each other), encoded the way each
system's own clients send them:

- Strata: Datadog v2 ``/api/v2/series`` JSON, gzip level 1 (the load driver's encoding), to
  the intake of a ``strata up`` started by the bench (:class:`bench.peers.systems.Strata`);
- Prometheus 2.x: remote write (snappy protobuf, :mod:`bench.peers.remote_write`) to
  ``--web.enable-remote-write-receiver``;
- InfluxDB 1.x: line protocol (:mod:`bench.peers.line_protocol`, one line = one host's ten
  fields at one time, as TSBS writes it) to ``/write?precision=s``, gzip level 1.

Measured per system, alone on the machine:

1. **Ingest**: wall time from the first request to the moment the query API counts every
   accepted point. The peers answer 204 once the points are queryable, and are asked the
   count once. Strata answers 202 once Kafka has the points and the stores apply them
   after: it is asked once too, as soon as the stores it reads (RAM, rocks, the indexes)
   report by their heartbeat watermarks that everything answered before the last 202 is
   applied (:meth:`bench.peers.systems.Strata.applied`); the count is repeated only if it
   still comes up short. points/s = accepted points / that time; points/s per core =
   accepted points / CPU seconds the server processes spent over the same interval
   (``/proc/<pid>/stat`` utime + stime; for Strata every process of ``strata up``:
   intake, stores, query, heartbeat, tansu, valkey, supervisor). The rate at which HTTP
   answers came back is printed too.
2. **Settle**: Strata until rocks has folded everything staged and the archive has
   uploaded; InfluxDB until its cache is snapshotted and TSM files are fully compacted;
   Prometheus has nothing to wait for.
3. **Queries**: the seven TSBS shapes of bench/bench_query.py, ``--runs`` instances each
   from the seed after one warm-up, one at a time; every answer is checked against the
   generated values (a wrong answer fails the run). Strata gets bench_query's Datadog
   requests; the peers PromQL / InfluxQL asking the same (:mod:`bench.peers.queries`).
4. **Bytes per point** after the data is compacted: Strata stopped, then its RocksDBs
   flushed and compacted with their own options and ``python -m stores.archive compact``
   run; Prometheus: a ``/api/v1/admin/tsdb/snapshot`` (the head written as a block: chunks
   + index); InfluxDB: its data directory (TSM, series file, fields index) after the full
   compaction of step 2.

Run: ``python -m bench.bench_peers [--quick | --full] [--hosts N] [--hours H] [--seed S]
[--runs N] [--only strata,prometheus,influxdb] [--json FILE]``. Peers come from
``bench/peers/install.sh``; a missing peer is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.bench_query import SHAPES, Case, Planner, fill_expected, sampled_hosts
from bench.machine import describe, keep_logs
from bench.peers import plan
from bench.peers.plan import Cube, Request, Rounds
from bench.peers.systems import (
    Influx,
    Prometheus,
    Strata,
    System,
    SystemFailed,
    cpu_by_name,
    cpu_seconds,
    cpu_used,
)

CONNECTIONS = 16
POINTS_PER_REQUEST = 1000
MAX_SKEW = 2  # rounds a shard may run ahead of the slowest
_REJECTED = re.compile(r"(\d+) points? rejected")
SYSTEMS = ("strata", "prometheus", "influxdb")


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Sent:
    seconds: float = 0.0
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class _Lockstep:
    """Shard ``j`` may start round ``r`` only once every shard finished ``r - MAX_SKEW``."""

    def __init__(self, shards: int) -> None:
        self.done = [0] * shards
        self.cond = threading.Condition()

    def wait(self, r: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: min(self.done) >= r - MAX_SKEW)

    def finish(self, j: int) -> None:
        with self.cond:
            self.done[j] += 1
            self.cond.notify_all()


def send(system: System, requests: list[list[Request]]) -> Sent:
    """Every request, one sender thread per shard, flat out; 503s retried after their
    Retry-After (at most 1 s) like the Datadog agent, anything else counted as failed."""
    target = system.target()
    out = Sent()
    lock = threading.Lock()
    step = _Lockstep(len(requests))

    def run(j: int) -> None:
        with httpx.Client(base_url=target.base_url, headers=target.headers, timeout=60.0) as c:
            for r, req in enumerate(requests[j]):
                step.wait(r)
                while True:
                    t0 = time.perf_counter()
                    try:
                        resp = c.post(target.path, params=target.params, content=req.body)
                    except httpx.HTTPError as exc:
                        with lock:
                            out.status[0] += 1
                            if len(out.failures) < 5:
                                out.failures.append(repr(exc))
                        break
                    ms = (time.perf_counter() - t0) * 1000
                    with lock:
                        out.latencies.append(ms)
                        out.status[resp.status_code] += 1
                    if resp.status_code == 503:
                        time.sleep(min(max(float(resp.headers.get("retry-after") or 1), 0.05), 1))
                        continue
                    with lock:
                        if 200 <= resp.status_code < 300:
                            out.accepted += req.points
                            if resp.status_code == 202 and resp.content:
                                for msg in resp.json().get("errors", []):
                                    m = _REJECTED.search(msg)
                                    out.rejected += int(m.group(1)) if m else 0
                        elif len(out.failures) < 5:
                            out.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    break
                step.finish(j)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(len(requests))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.seconds = time.monotonic() - t0
    out.requests = sum(out.status.values())
    return out


# --- one system ---------------------------------------------------------------------------------


@dataclass
class ShapeTiming:
    p50_ms: float
    p99_ms: float
    runs: int
    failures: list[str]
    served_by: dict[str, int]  # Strata: X-Strata-Tiers of the timed answers


@dataclass
class SystemResult:
    name: str
    version: str
    start_seconds: float
    prepare_seconds: float
    body_bytes: int
    sent: dict[str, Any]
    answered_seconds: float  # first request -> last HTTP answer
    visible_seconds: float  # first request -> every accepted point counted by a query
    visible_points: int
    cpu_seconds: float
    cpu_by_process: dict[str, float]
    settle: str
    disk: dict[str, int]
    bytes_point_key: str
    shapes: dict[str, ShapeTiming]

    @property
    def accepted(self) -> int:
        return int(self.sent["accepted"])

    @property
    def rate(self) -> float:
        return self.accepted / self.visible_seconds if self.visible_seconds > 0 else math.nan

    @property
    def per_core(self) -> float:
        return self.accepted / self.cpu_seconds if self.cpu_seconds > 0 else math.nan

    def bytes_per_point(self, key: str | None = None) -> float:
        return self.disk[key or self.bytes_point_key] / self.accepted if self.accepted else math.nan


Builder = Callable[[Cube, Rounds], list[list[Request]]]


def measure(
    system: System,
    start: Callable[[], float],
    build: Builder,
    cube: Cube,
    rounds: Rounds,
    cases: dict[str, list[Case]],
    warmups: dict[str, Case],
    bytes_key: str,
) -> SystemResult:
    name = system.name
    t0 = time.perf_counter()
    requests = build(cube, rounds)
    prepared = time.perf_counter() - t0
    body_bytes = sum(len(r.body) for shard in requests for r in shard)
    points = sum(r.points for shard in requests for r in shard)
    print(
        f"[{name}] {points:,} points in {sum(len(s) for s in requests):,} requests "
        f"({body_bytes / points:.2f} bytes/point on the wire), prepared in {prepared:.1f} s",
        flush=True,
    )
    started = start()
    print(f"[{name}] {system.version}: up in {started:.1f} s", flush=True)
    try:
        time.sleep(3.0)  # let start-up work (consumer group joins, WAL replay) finish
        pids = system.pids()
        cpu0 = cpu_seconds(pids)
        client0 = time.process_time()
        t_start = time.monotonic()
        sent = send(system, requests)
        answered = time.monotonic() - t_start
        last_answer = time.time()
        client_cpu = time.process_time() - client0
        lat = np.percentile(sent.latencies, [50, 99]) if sent.latencies else [math.nan] * 2
        del requests
        print(
            f"[{name}] sent: {sent.accepted:,} points accepted in {answered:.1f} s "
            f"({sent.accepted / answered:,.0f} points/s answered), rejected {sent.rejected:,}, "
            f"status {dict(sorted(sent.status.items()))}; HTTP latency p50 {lat[0]:.1f} ms, "
            f"p99 {lat[1]:.1f} ms; client CPU {client_cpu:.1f} s"
            + (f", failures {sent.failures}" if sent.failures else ""),
            flush=True,
        )
        expected = sent.accepted - sent.rejected
        wait = max(120.0, expected / 20_000)
        deadline = time.monotonic() + wait
        behind = system.applied(last_answer, wait)
        if behind:
            print(f"[{name}] not complete after {wait:.0f} s ({behind}); counting", flush=True)
        while True:
            polled = time.monotonic()
            visible = system.count(cube.ds)
            if visible >= expected or time.monotonic() > deadline:
                break
            # poll at most a third of the time: the count query costs the server too
            time.sleep(max(0.5, 2 * (time.monotonic() - polled)))
        visible_s = time.monotonic() - t_start
        cpu1 = cpu_seconds(system.pids())
        cpu = cpu_used(cpu0, cpu1)
        by_process = cpu_by_name(cpu0, cpu1)
        print(
            f"[{name}] visible: {visible:,} of {expected:,} points counted by a query after "
            f"{visible_s:.1f} s = {sent.accepted / visible_s:,.0f} points/s; server CPU "
            f"{cpu:.1f} s = {sent.accepted / cpu:,.0f} points/s per core",
            flush=True,
        )
        if len(by_process) > 1:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in by_process.items() if v >= 0.05)
            print(f"[{name}] server CPU seconds by process: {parts}", flush=True)
        try:
            settle = system.settle(time.time(), visible)
        except SystemFailed as exc:  # measured as it is: queries and bytes still say much
            settle = f"NOT SETTLED: {str(exc).splitlines()[0]}"
        print(f"[{name}] settled: {settle}", flush=True)
        shapes = timed_queries(system, cases, warmups)
    finally:
        system.stop()
    disk = system.disk()
    print(f"[{name}] on disk: " + ", ".join(f"{k} {v:,} B" for k, v in disk.items()), flush=True)
    return SystemResult(
        name,
        system.version,
        started,
        prepared,
        body_bytes,
        {
            "seconds": sent.seconds,
            "requests": sent.requests,
            "accepted": sent.accepted,
            "rejected": sent.rejected,
            "status": dict(sent.status),
            "failures": sent.failures,
            "latency_p50_ms": float(lat[0]),
            "latency_p99_ms": float(lat[1]),
            "client_cpu_seconds": client_cpu,
        },
        answered,
        visible_s,
        visible,
        cpu,
        by_process,
        settle,
        disk,
        bytes_key,
        shapes,
    )


def timed_queries(
    system: System, cases: dict[str, list[Case]], warmups: dict[str, Case]
) -> dict[str, ShapeTiming]:
    out = {}
    with system.client() as client:
        for shape, runs in cases.items():
            system.query(client, warmups[shape])
            ms, failures = [], []
            served: Counter[str] = Counter()
            for case in runs:
                took, problem, note = system.query(client, case)
                ms.append(took)
                if note:
                    served[note] += 1
                if problem:
                    failures.append(problem)
            out[shape] = ShapeTiming(
                float(np.percentile(ms, 50)),
                float(np.percentile(ms, 99)),
                len(ms),
                failures[:3],
                dict(served),
            )
            t = out[shape]
            print(
                f"[{system.name}] {shape:22s} p50 {t.p50_ms:8.1f} ms  p99 {t.p99_ms:8.1f} ms"
                + (f"  WRONG: {failures[0]}" if failures else "  (answers checked)")
                + (f"  served by {dict(served)}" if served else ""),
                flush=True,
            )
    return out


# --- the table ----------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 0) -> str:
    if math.isnan(x):
        return "—"
    if digits == 0 and abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return "—" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def _shape_figure(shape: str, q: str) -> Callable[[SystemResult], float]:
    def get(r: SystemResult) -> float:
        t = r.shapes.get(shape)
        return math.nan if t is None else t.p50_ms if q == "p50" else t.p99_ms

    return get


def table(results: list[SystemResult]) -> str:
    """Markdown: one column per system, then Strata / peer for each peer."""
    strata = next((r for r in results if r.name == "Strata"), None)
    peers = [r for r in results if r.name != "Strata"]
    head = ["figure", *(r.name for r in results)]
    if strata is not None:
        head += [f"Strata / {p.name}" for p in peers]
    rows: list[list[str]] = []

    def row(label: str, value: Callable[[SystemResult], float], digits: int = 0) -> None:
        cells = [label, *(_fmt(value(r), digits) for r in results)]
        if strata is not None:
            cells += [_ratio(value(strata), value(p)) for p in peers]
        rows.append(cells)

    row("ingest, points/s (first request → all counted by a query)", lambda r: r.rate)
    row("ingest, points/s answered (HTTP 2xx)", lambda r: r.accepted / r.answered_seconds)
    row("server CPU seconds for the ingest", lambda r: r.cpu_seconds, 1)
    row("ingest, points/s per core (server CPU)", lambda r: r.per_core)
    row("bytes/point on disk", lambda r: r.bytes_per_point(), 2)
    for shape in SHAPES:
        for q in ("p50", "p99"):
            row(f"{shape} {q} ms", _shape_figure(shape, q), 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("strata", "numpy", "pyarrow", "httpx", "orjson"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} ?")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10 hosts x 12 h, 5 runs per shape")
    size.add_argument("--full", action="store_true", help="1 000 hosts x 12 h")
    ap.add_argument("--hosts", type=int, default=None, help="default 100 (quick 10, full 1 000)")
    ap.add_argument("--hours", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=None, help="query instances per shape (20)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="systems to run, comma-separated")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    hosts = args.hosts or (10 if args.quick else 1000 if args.full else 100)
    runs = args.runs or (5 if args.quick else 20)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(only) - set(SYSTEMS):
        ap.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.hours < 12 or hosts < 8:
        ap.error("the query shapes need at least 12 hours and 8 hosts")

    print(describe())
    print(_versions())
    print(f"seed {args.seed}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ds = plan.dataset(hosts, args.hours, args.seed, int(time.time()))
    planner = Planner(ds, args.seed)
    warmups = {s: planner.case(s) for s in SHAPES}
    cases = {s: [planner.case(s) for _ in range(runs)] for s in SHAPES}
    every = [*warmups.values(), *(c for r in cases.values() for c in r)]
    t0 = time.perf_counter()
    cube, truth = plan.generate(ds, sampled_hosts(every))
    for c in every:
        fill_expected(c, truth)
    rounds = plan.cut(hosts, ds.steps, CONNECTIONS, POINTS_PER_REQUEST)
    print(
        f"data: {ds.points:,} points ({hosts} hosts x 10 metrics x {args.hours} h every 10 s, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(ds.start))} to "
        f"{time.strftime('%H:%M UTC', time.gmtime(ds.end))}), generated in "
        f"{time.perf_counter() - t0:.1f} s; {len(rounds.shards)} connections, "
        f"{rounds.rounds} requests each of {rounds.steps} steps x their hosts' series",
        flush=True,
    )
    results: list[SystemResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        root = Path(tmp)
        for name in only:
            sub = root / name
            sub.mkdir()
            if name == "strata":
                strata = Strata(sub, ds)
                results.append(
                    measure(
                        strata,
                        strata.start,
                        plan.datadog_requests,
                        cube,
                        rounds,
                        cases,
                        warmups,
                        "rocks + indexes",
                    )
                )
            elif name == "prometheus":
                if shutil.which("prometheus") is None:
                    print("[Prometheus] not installed (bench/peers/install.sh): skipped")
                    continue
                prom = Prometheus(sub, ds)
                results.append(
                    measure(
                        prom,
                        prom.start,
                        plan.remote_write_requests,
                        cube,
                        rounds,
                        cases,
                        warmups,
                        "snapshot blocks",
                    )
                )
            else:
                if shutil.which("influxd") is None:
                    print("[InfluxDB] not installed (bench/peers/install.sh): skipped")
                    continue
                influx = Influx(sub, ds)
                results.append(
                    measure(
                        influx,
                        influx.start,
                        plan.line_protocol_requests,
                        cube,
                        rounds,
                        cases,
                        warmups,
                        "data dir (tsm, series file, fields.idx)",
                    )
                )
        if any(t.failures for r in results for t in r.shapes.values()):
            print(f"logs of the run kept in {keep_logs(root, 'bench-peers-logs-')}")
    print()
    for r in results:
        print(f"{r.name}: {r.version}")
    print(table(results))
    for r in results:
        extra = ", ".join(f"{k} {r.bytes_per_point(k):.2f}" for k in r.disk)
        print(f"{r.name} bytes/point: {extra}")
        served = {s: t.served_by for s, t in r.shapes.items() if t.served_by}
        if served:
            print(f"{r.name} tiers that served the timed queries: {served}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dataset": asdict(ds),
                    "results": [
                        asdict(r) | {"rate": r.rate, "per_core": r.per_core} for r in results
                    ],
                },
                indent=1,
                default=str,
            )
        )
    wrong = [f"{r.name} {s}" for r in results for s, t in r.shapes.items() if t.failures]
    short = [r.name for r in results if r.visible_points < r.accepted - r.sent["rejected"]]
    if wrong:
        print(f"WRONG ANSWERS: {', '.join(wrong)}")
    if short:
        print(f"NOT ALL POINTS VISIBLE: {', '.join(short)}")
    return 1 if wrong or short else 0


if __name__ == "__main__":
    sys.exit(main())
