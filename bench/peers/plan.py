"""One data set, cut into the same requests for Strata, Prometheus and InfluxDB.

The data is TSBS cpu-only from :class:`bench.workload.CpuOnly` (``hosts`` x 10 metrics every
10 s over ``hours`` hours ending at the last full hour), kept as a cube of values
(steps x metrics x hosts) beside the truth bench/bench_query.py checks answers with.

Requests are cut the way Prometheus' own remote-write client cuts them: series are sharded
over ``connections`` senders (here by host, so an InfluxDB line, which carries a host's ten
metrics, stays in one shard), and each shard sends its series in time order. Rounds keep
the shards in step: request ``r`` of every shard covers the same steps, about
``points_per_request`` points of its hosts, and a shard may run at most a few rounds ahead
of the slowest (:mod:`bench.bench_peers`). Per-series time order and bounded skew matter to
Prometheus, whose head refuses samples older than its newest minus one hour, and cost the
others nothing. Every system gets the same points in the same requests; only the encoding
differs: Datadog v2 JSON (gzip), remote-write protobuf (snappy), line protocol (gzip).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.bench_query import HOUR, STEPS_PER_HOUR, DataSet, Truth
from bench.peers import line_protocol, remote_write
from bench.workload import CPU_FIELDS, CPU_METRICS, CpuOnly, Points, SeriesTable, v2_body

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

MEASUREMENT = "cpu"


@dataclass(frozen=True)
class Request:
    body: bytes
    points: int
    last_ts: int  # newest timestamp in the request


@dataclass(frozen=True)
class Cube:
    """The generated values: ``values[step, metric, host]`` at ``ts[step]``."""

    ds: DataSet
    series: SeriesTable  # rows metric-major: row = metric * hosts + host
    ts: I64
    values: F64

    @property
    def points(self) -> int:
        return int(self.values.size)


def generate(ds: DataSet, sampled: set[int]) -> tuple[Cube, Truth]:
    """The data set's values, and the truth for the query checks (the hosts in ``sampled``
    kept whole, the rest as the aggregates bench_query's checks need)."""
    gen = CpuOnly(ds.hosts, ds.start, ds.seed)
    n_metrics = len(CPU_METRICS)
    values = np.empty((ds.steps, n_metrics, ds.hosts))
    ts = np.empty(ds.steps, dtype=np.int64)
    for hour in range(ds.hours):
        lo = hour * STEPS_PER_HOUR
        t, v = gen.values(STEPS_PER_HOUR)
        ts[lo : lo + STEPS_PER_HOUR] = t
        values[lo : lo + STEPS_PER_HOUR] = v.reshape(STEPS_PER_HOUR, n_metrics, ds.hosts)
    user = values[:, 0, :]
    truth = Truth(
        {h: values[:, :, h].T.astype(np.float32) for h in sorted(sampled)},
        user.max(axis=1),
        user.reshape(ds.hours, STEPS_PER_HOUR, ds.hosts).mean(axis=1),
        values[-1].copy(),
    )
    return Cube(ds, gen.series, ts, values), truth


@dataclass(frozen=True)
class Rounds:
    """Shards of hosts and rounds of steps: request (shard j, round r) holds every series of
    the hosts ``shards[j]`` over steps ``[r * steps, (r + 1) * steps)``."""

    shards: list[I64]
    steps: int  # steps per round
    total_steps: int

    @property
    def rounds(self) -> int:
        return -(-self.total_steps // self.steps)

    def step_range(self, r: int) -> tuple[int, int]:
        return r * self.steps, min((r + 1) * self.steps, self.total_steps)


def cut(hosts: int, total_steps: int, connections: int, points_per_request: int) -> Rounds:
    """Shard ``hosts`` over at most ``connections`` senders (contiguous, sizes differ by at
    most one) with rounds of about ``points_per_request`` points per request."""
    if connections < 1 or points_per_request < 1:
        raise ValueError("connections and points_per_request must be at least 1")
    n = min(connections, hosts)
    shards = [s.astype(np.int64) for s in np.array_split(np.arange(hosts), n)]
    per_step = len(CPU_METRICS) * hosts / n  # points of one step of an average shard
    steps = max(1, round(points_per_request / per_step))
    return Rounds(shards, steps, total_steps)


def _points(cube: Cube, hosts: I64, lo: int, hi: int) -> Points:
    """The points of ``hosts`` over steps ``[lo, hi)``, step-major, then metric, then host."""
    n_hosts = cube.ds.hosts
    rows = (np.arange(len(CPU_METRICS), dtype=np.int64)[:, None] * n_hosts + hosts).ravel()
    steps = hi - lo
    return Points(
        cube.series,
        np.tile(rows, steps),
        np.repeat(cube.ts[lo:hi], rows.size),
        cube.values[lo:hi][:, :, hosts].reshape(-1),
    )


def datadog_requests(cube: Cube, rounds: Rounds, level: int = 1) -> list[list[Request]]:
    """Per shard, per round: a gzip-compressed Datadog v2 ``/api/v2/series`` body."""
    out: list[list[Request]] = []
    for hosts in rounds.shards:
        reqs = []
        for r in range(rounds.rounds):
            lo, hi = rounds.step_range(r)
            pts = _points(cube, hosts, lo, hi)
            body = gzip.compress(v2_body(pts), compresslevel=level, mtime=0)
            reqs.append(Request(body, len(pts), int(cube.ts[hi - 1])))
        out.append(reqs)
    return out


def remote_write_requests(cube: Cube, rounds: Rounds) -> list[list[Request]]:
    """Per shard, per round: a snappy-compressed remote-write body (timestamps in ms)."""
    table = cube.series
    labels = [
        remote_write.encode_labels(remote_write.labels_for(m, t))
        for m, t in zip(table.metric, table.tags, strict=True)
    ]
    out: list[list[Request]] = []
    for hosts in rounds.shards:
        reqs = []
        for r in range(rounds.rounds):
            lo, hi = rounds.step_range(r)
            pts = _points(cube, hosts, lo, hi)
            body = remote_write.body(labels, pts.row, pts.ts * 1000, pts.value)
            reqs.append(Request(body, len(pts), int(cube.ts[hi - 1])))
        out.append(reqs)
    return out


def line_protocol_requests(cube: Cube, rounds: Rounds, level: int = 1) -> list[list[Request]]:
    """Per shard, per round: gzip-compressed line protocol, one line per host and step."""
    n_hosts = cube.ds.hosts
    tag_sets = [line_protocol.tag_set(cube.series.tags[h]) for h in range(n_hosts)]
    out: list[list[Request]] = []
    for hosts in rounds.shards:
        reqs = []
        for r in range(rounds.rounds):
            lo, hi = rounds.step_range(r)
            steps = hi - lo
            # (steps, metrics, hosts) -> (steps, hosts, metrics): one row per line
            vals = cube.values[lo:hi][:, :, hosts].transpose(0, 2, 1).reshape(-1, len(CPU_FIELDS))
            text = line_protocol.lines(
                MEASUREMENT,
                tag_sets,
                np.tile(hosts, steps),
                CPU_FIELDS,
                vals,
                np.repeat(cube.ts[lo:hi], hosts.size),
            )
            body = gzip.compress(text, compresslevel=level, mtime=0)
            reqs.append(Request(body, int(vals.size), int(cube.ts[hi - 1])))
        out.append(reqs)
    return out


def dataset(hosts: int, hours: int, seed: int, now: int) -> DataSet:
    """``hours`` of data ending at the last full hour before ``now``."""
    return DataSet(hosts, hours, seed, now - now % HOUR)
