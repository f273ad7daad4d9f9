"""Deterministic workloads for the benchmarks, as columns (numpy), plus Datadog payload writers.

Every workload is a pure function of its parameters and a seed: the same seed gives the same
series, tags, timestamps and values, whatever the chunking (``CpuOnly.values(3)`` then
``values(5)`` equals ``values(8)``). Points are kept as columns of a :class:`Points` (series
row, timestamp, value) over a :class:`SeriesTable` (metric and tags per row), so writers for
other protocols (Prometheus remote-write, InfluxDB line protocol) can be added beside the
Datadog ones without touching the generators.

Shapes:

- **TSBS devops cpu-only** (:class:`CpuOnly`): ``hosts`` x the 10 ``cpu.usage_*`` metrics,
  tagged like TSBS' hosts (hostname as ``host``, region, datacenter, rack, os, arch, team,
  service, service_version, service_environment), one point per series every 10 s. Values as
  TSBS computes them: a random walk per series with N(0, 1) steps clamped to [0, 100],
  starting uniform in [0, 100], reported truncated to an integer (TSBS' ``ToPointAllInt64``).
- **High churn** (:class:`HighChurn`): container slots whose container is replaced every
  ``lifetime`` seconds (each slot at its own phase); a replacement is a new ``container_id``
  tag value, so series keep appearing and disappearing.
- **Distribution** (:func:`latency`): log-normal latency samples, many per series and
  interval (kept as arrays; intake has no distribution endpoint yet).
- **Late / out of order** (:func:`late`): the same points in arrival order, where a fraction
  arrives up to ``max_delay`` seconds after its timestamp and ties are shuffled, so a stream
  carries points older than their neighbours and series out of time order.

Values in the churn and late shapes come from counter-based hashing (splitmix64) of the
seed and the point's coordinates, so they do not depend on how the stream is cut.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
import orjson
import zstandard

from strata.naming import canonical_tags
from strata.series_id import series_id

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

INTERVAL = 10
CPU_FIELDS = (
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
)
CPU_METRICS = tuple(f"cpu.{f}" for f in CPU_FIELDS)
HOST_TAG_KEYS = (
    "host",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
)
# TSBS pkg/data/usecases/devops/host.go: regions with their datacenters, and the choices.
REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("us-east-1", ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e")),
    ("us-west-1", ("us-west-1a", "us-west-1b")),
    ("us-west-2", ("us-west-2a", "us-west-2b", "us-west-2c")),
    ("eu-west-1", ("eu-west-1a", "eu-west-1b", "eu-west-1c")),
    ("eu-central-1", ("eu-central-1a", "eu-central-1b")),
    ("ap-southeast-1", ("ap-southeast-1a", "ap-southeast-1b")),
    ("ap-southeast-2", ("ap-southeast-2a", "ap-southeast-2b")),
    ("ap-northeast-1", ("ap-northeast-1a", "ap-northeast-1c")),
    ("sa-east-1", ("sa-east-1a", "sa-east-1b", "sa-east-1c")),
)
TEAMS = ("SF", "NYC", "LON", "CHI")
OSES = ("Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10")
ARCHES = ("x64", "x86")
ENVIRONMENTS = ("production", "staging", "test")
RACKS, SERVICES, SERVICE_VERSIONS = 100, 20, 2

CONTAINER_METRICS = ("container.cpu.usage", "container.memory.rss")
LATENCY_METRIC = "bench.request.latency"

# Independent random streams under one seed (numpy SeedSequence entropy).
_HOSTS, _WALK, _CHURN, _LATENCY, _LATE = 1, 2, 3, 4, 5
V2_TYPES = {"gauge": 3, "count": 1, "rate": 2}


# --- tables and columns --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SeriesTable:
    """One row per series: metric name and tags as sent (``key:value``, un-normalised)."""

    metric: tuple[str, ...]
    tags: tuple[tuple[str, ...], ...]
    mtype: str = "gauge"  # gauge, count, rate or distribution, for every row

    def __post_init__(self) -> None:
        if len(self.metric) != len(self.tags):
            raise ValueError("metric and tags must have one entry per series")

    def __len__(self) -> int:
        return len(self.metric)

    @cached_property
    def canonical(self) -> tuple[tuple[str, ...], ...]:
        """Canonical tag set of each row, as intake computes it."""
        return tuple(canonical_tags(t) for t in self.tags)

    def sids(self, org: str) -> U64:
        """Series id of each row for ``org`` (what intake assigns)."""
        return np.fromiter(
            (series_id(org, m, t) for m, t in zip(self.metric, self.canonical, strict=True)),
            dtype=np.uint64,
            count=len(self),
        )

    @cached_property
    def host_split(self) -> tuple[tuple[str | None, list[str]], ...]:
        """(host tag value or None, the other tags) per row, for the payload writers."""
        out = []
        for tags in self.tags:
            host = None
            rest = []
            for t in tags:
                if host is None and t.startswith("host:"):
                    host = t[5:]
                else:
                    rest.append(t)
            out.append((host, rest))
        return tuple(out)


@dataclass(frozen=True, eq=False)
class Points:
    """Points as equal-length columns over a series table, in stream (sending) order."""

    series: SeriesTable
    row: I64
    ts: I64
    value: F64

    def __post_init__(self) -> None:
        if not self.row.size == self.ts.size == self.value.size:
            raise ValueError("row, ts and value must have equal lengths")

    def __len__(self) -> int:
        return int(self.row.size)

    def take(self, idx: npt.NDArray[np.intp] | slice) -> Points:
        return Points(self.series, self.row[idx], self.ts[idx], self.value[idx])


def concat(parts: list[Points]) -> Points:
    """Points of several chunks over one series table, in order."""
    if not parts:
        raise ValueError("nothing to concatenate")
    table = parts[0].series
    if any(p.series is not table for p in parts):
        raise ValueError("chunks over different series tables")
    return Points(
        table,
        np.concatenate([p.row for p in parts]),
        np.concatenate([p.ts for p in parts]),
        np.concatenate([p.value for p in parts]),
    )


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a well-mixed 64-bit hash of each element."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash(seed: int, *coords: npt.NDArray[np.integer]) -> U64:
    """A hash of (seed, coords...) per element (coords broadcast together)."""
    h = _mix(np.full(np.broadcast(*coords).shape, seed, dtype=np.uint64))
    for c in coords:
        with np.errstate(over="ignore"):
            h = _mix(h ^ c.astype(np.uint64))
    return h


def _unit(h: U64) -> F64:
    """Uniform floats in [0, 1) from 64-bit hashes (their top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# --- TSBS devops cpu-only ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Hosts:
    """Tag values of each simulated host (index = host number), drawn like TSBS does."""

    columns: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.columns["host"])

    def tags(self, i: int) -> tuple[str, ...]:
        return tuple(f"{k}:{self.columns[k][i]}" for k in HOST_TAG_KEYS)


def tsbs_hosts(n: int, seed: int) -> Hosts:
    """``n`` hosts named ``host_0`` ... with TSBS' tag choices, uniformly drawn."""
    rng = np.random.default_rng((seed, _HOSTS))
    region = rng.integers(0, len(REGIONS), n)
    dc_pick = rng.random(n)
    cols: dict[str, tuple[str, ...]] = {"host": tuple(f"host_{i}" for i in range(n))}
    cols["region"] = tuple(REGIONS[r][0] for r in region.tolist())
    cols["datacenter"] = tuple(
        REGIONS[r][1][int(u * len(REGIONS[r][1]))]
        for r, u in zip(region.tolist(), dc_pick.tolist(), strict=True)
    )
    cols["rack"] = tuple(str(v) for v in rng.integers(0, RACKS, n).tolist())
    cols["os"] = tuple(OSES[v] for v in rng.integers(0, len(OSES), n).tolist())
    cols["arch"] = tuple(ARCHES[v] for v in rng.integers(0, len(ARCHES), n).tolist())
    cols["team"] = tuple(TEAMS[v] for v in rng.integers(0, len(TEAMS), n).tolist())
    cols["service"] = tuple(str(v) for v in rng.integers(0, SERVICES, n).tolist())
    cols["service_version"] = tuple(str(v) for v in rng.integers(0, SERVICE_VERSIONS, n).tolist())
    cols["service_environment"] = tuple(
        ENVIRONMENTS[v] for v in rng.integers(0, len(ENVIRONMENTS), n).tolist()
    )
    return Hosts(cols)


class CpuOnly:
    """TSBS devops ``cpu-only``: a stream of 10-second steps of every series.

    Series rows are metric-major: row ``m * hosts + h`` is metric ``CPU_METRICS[m]`` of
    host ``h``. Each step advances every series' clamped walk by one N(0, 1) draw and emits
    the truncated state; step ``k`` is stamped ``start + k * interval``.
    """

    def __init__(self, hosts: int, start: int, seed: int, *, interval: int = INTERVAL) -> None:
        if hosts < 1:
            raise ValueError("hosts must be at least 1")
        self.hosts = tsbs_hosts(hosts, seed)
        self.start = start
        self.interval = interval
        self.series = SeriesTable(
            tuple(m for m in CPU_METRICS for _ in range(hosts)),
            tuple(self.hosts.tags(h) for _ in CPU_METRICS for h in range(hosts)),
        )
        self._rng = np.random.default_rng((seed, _WALK))
        self._state = self._rng.uniform(0.0, 100.0, len(self.series))
        self.step = 0  # index of the next step

    def values(self, steps: int) -> tuple[I64, F64]:
        """The next ``steps`` steps: timestamps ``(steps,)`` and values ``(steps, series)``."""
        n = len(self.series)
        out = np.empty((steps, n), dtype=np.float64)
        draws = self._rng.standard_normal((steps, n))
        state = self._state
        for k in range(steps):  # the clamp makes each step depend on the last: loop time
            state += draws[k]
            np.clip(state, 0.0, 100.0, out=state)
            np.trunc(state, out=out[k])
        ts = self.start + (self.step + np.arange(steps, dtype=np.int64)) * self.interval
        self.step += steps
        return ts, out

    def points(self, steps: int) -> Points:
        """The next ``steps`` steps as points, step-major (every series at one time, then
        the next time)."""
        ts, vals = self.values(steps)
        n = len(self.series)
        return Points(
            self.series,
            np.tile(np.arange(n, dtype=np.int64), steps),
            np.repeat(ts, n),
            vals.reshape(-1),
        )


def by_series_runs(points: Points, series_per_step: int, run: int) -> Points:
    """Step-major points reordered so each series contributes ``run`` consecutive points
    before the next series (a request of ``run`` points per series), runs in time order."""
    n = len(points)
    step = np.arange(n, dtype=np.int64) // series_per_step
    order = np.lexsort((step, points.row, step // run))
    return points.take(order)


# --- high churn ----------------------------------------------------------------------------


class HighChurn:
    """``containers`` slots spread over ``hosts`` hosts; each slot's container lives
    ``lifetime`` seconds, then a new one (new ``container_id``) takes its place. Slots are
    staggered by a random phase, so replacements happen continuously. Every container
    reports each of :data:`CONTAINER_METRICS` every ``interval`` seconds (uniform values in
    [0, 100))."""

    def __init__(
        self,
        containers: int,
        lifetime: int,
        start: int,
        seed: int,
        *,
        hosts: int = 10,
        interval: int = INTERVAL,
    ) -> None:
        if containers < 1 or lifetime < interval:
            raise ValueError("need at least one container and lifetime >= interval")
        self.containers = containers
        self.lifetime = lifetime
        self.start = start
        self.seed = seed
        self.interval = interval
        self.hosts = hosts
        rng = np.random.default_rng((seed, _CHURN))
        self.phase = rng.integers(0, lifetime, containers)
        self.step = 0

    def generation(self, ts: I64, slot: I64) -> I64:
        """Which container (0, 1, ...) occupies ``slot`` at ``ts``."""
        return (ts - self.start + self.phase[slot]) // self.lifetime

    def container_id(self, slot: I64, gen: I64) -> list[str]:
        return [f"{h:016x}" for h in _hash(self.seed, slot, gen).tolist()]

    def points(self, steps: int) -> Points:
        """The next ``steps`` steps, step-major; the table holds the containers seen."""
        c, m = self.containers, len(CONTAINER_METRICS)
        k = self.step + np.arange(steps, dtype=np.int64)
        self.step += steps
        ts_step = self.start + k * self.interval
        slot = np.tile(np.repeat(np.arange(c, dtype=np.int64), m), steps)
        metric = np.tile(np.arange(m, dtype=np.int64), c * steps)
        ts = np.repeat(ts_step, c * m)
        gen = self.generation(ts, slot)
        # One table row per (slot, generation, metric) present in this chunk.
        keys = (slot * (int(gen.max()) + 1) + gen) * m + metric
        uniq, row = np.unique(keys, return_inverse=True)
        u_metric = uniq % m
        u_pair = uniq // m
        u_slot = u_pair // (int(gen.max()) + 1)
        u_gen = u_pair % (int(gen.max()) + 1)
        ids = self.container_id(u_slot, u_gen)
        table = SeriesTable(
            tuple(CONTAINER_METRICS[i] for i in u_metric.tolist()),
            tuple(
                (f"host:node-{s % self.hosts}", f"container_id:{cid}", f"slot:s{s}")
                for s, cid in zip(u_slot.tolist(), ids, strict=True)
            ),
        )
        value = _unit(_hash(self.seed, slot, gen, metric, k.repeat(c * m))) * 100.0
        return Points(table, row.astype(np.int64), ts, value)


# --- distribution ------------------------------------------------------------------------


def latency(
    series: int,
    start: int,
    steps: int,
    samples: int,
    seed: int,
    *,
    median: float = 0.05,
    sigma: float = 0.6,
    interval: int = INTERVAL,
) -> Points:
    """``samples`` log-normal latency samples (seconds; median ``median``, log-sd
    ``sigma``) per series and step, for ``series`` (service, endpoint) series. Several
    points share each (series, timestamp), as the samples of a distribution do."""
    rng = np.random.default_rng((seed, _LATENCY))
    table = SeriesTable(
        tuple(LATENCY_METRIC for _ in range(series)),
        tuple((f"service:svc-{i % 10}", f"endpoint:/api/e{i}") for i in range(series)),
        mtype="distribution",
    )
    per_step = series * samples
    row = np.tile(np.repeat(np.arange(series, dtype=np.int64), samples), steps)
    ts = np.repeat(start + np.arange(steps, dtype=np.int64) * interval, per_step)
    value = rng.lognormal(np.log(median), sigma, per_step * steps)
    return Points(table, row, ts, value)


# --- late and out-of-order arrival -----------------------------------------------------------


def late(points: Points, fraction: float, max_delay: int, seed: int) -> Points:
    """The same points in arrival order: a ``fraction`` of them (chosen by hashing their
    position) arrives ``1..max_delay`` seconds after its timestamp, the rest on time, and
    points arriving in the same second come in random order."""
    if not 0.0 <= fraction <= 1.0 or max_delay < 1:
        raise ValueError("fraction must be in [0, 1] and max_delay >= 1")
    pos = np.arange(len(points), dtype=np.int64)
    h = _hash(seed + _LATE, pos)
    delayed = _unit(h) < fraction
    delay = 1 + (_hash(seed + _LATE + 1, pos) % np.uint64(max_delay)).astype(np.int64)
    arrival = points.ts + np.where(delayed, delay, 0)
    order = np.lexsort((_hash(seed + _LATE + 2, pos), arrival))
    return points.take(order)


# --- Datadog payloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """One request body for intake: ``points`` points, gzip, zstd or plain JSON."""

    api: str  # "v1" or "v2"
    body: bytes
    points: int
    encoding: str | None = "gzip"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/api/{self.api}/series"

    def http_headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json", **self.headers}
        if self.encoding:
            out["Content-Encoding"] = self.encoding
        return out


def _groups(points: Points) -> tuple[list[int], list[int], list[float], list[int]]:
    """Series rows in order of first appearance, with each one's points (in stream order)
    as Python lists and the bounds of each series' run."""
    uniq, first, inverse = np.unique(points.row, return_index=True, return_inverse=True)
    rank = np.empty(uniq.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    key = rank[inverse]
    order = np.argsort(key, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(key, minlength=uniq.size))))
    rows = uniq[np.argsort(rank)]
    return rows.tolist(), points.ts[order].tolist(), points.value[order].tolist(), bounds.tolist()


def v1_body(points: Points) -> bytes:
    """``POST /api/v1/series`` JSON: ``{"series": [{"metric", "points": [[ts, v]...],
    "type", "host", "tags"}]}`` (the host tag goes to ``host``)."""
    table = points.series
    if table.mtype not in V2_TYPES:
        raise ValueError(f"intake takes no {table.mtype} series")
    rows, ts, vals, b = _groups(points)
    series = []
    for j, r in enumerate(rows):
        host, rest = table.host_split[r]
        item: dict[str, object] = {
            "metric": table.metric[r],
            "points": list(zip(ts[b[j] : b[j + 1]], vals[b[j] : b[j + 1]], strict=True)),
            "type": table.mtype,
            "tags": rest,
        }
        if host is not None:
            item["host"] = host
        series.append(item)
    return orjson.dumps({"series": series})


def v2_body(points: Points) -> bytes:
    """``POST /api/v2/series`` JSON: ``{"series": [{"metric", "type": 0..3, "points":
    [{"timestamp", "value"}...], "resources": [{"name", "type": "host"}], "tags"}]}``."""
    table = points.series
    if table.mtype not in V2_TYPES:
        raise ValueError(f"intake takes no {table.mtype} series")
    code = V2_TYPES[table.mtype]
    rows, ts, vals, b = _groups(points)
    series = []
    for j, r in enumerate(rows):
        host, rest = table.host_split[r]
        item: dict[str, object] = {
            "metric": table.metric[r],
            "type": code,
            "points": [
                {"timestamp": t, "value": v}
                for t, v in zip(ts[b[j] : b[j + 1]], vals[b[j] : b[j + 1]], strict=True)
            ],
            "tags": rest,
        }
        if host is not None:
            item["resources"] = [{"name": host, "type": "host"}]
        series.append(item)
    return orjson.dumps({"series": series})


ENCODINGS = ("gzip", "zstd1")


def payloads(
    points: Points,
    per_request: int,
    *,
    api: str = "v2",
    level: int | None = 6,
    encoding: str = "gzip",
) -> Iterator[Payload]:
    """Consecutive slices of ``per_request`` points as request bodies, compressed at
    ``level`` with ``encoding`` (gzip, or ``zstd1``: zstd, one frame declaring its size, as
    the Datadog agent writes it); ``level=None``: plain JSON."""
    if api not in ("v1", "v2"):
        raise ValueError("api must be 'v1' or 'v2'")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
    if per_request < 1:
        raise ValueError("per_request must be at least 1")
    zstd = zstandard.ZstdCompressor(level=level or 1)  # used only for encoding="zstd1"
    write = v1_body if api == "v1" else v2_body
    for lo in range(0, len(points), per_request):
        part = points.take(slice(lo, lo + per_request))
        body = write(part)
        if level is None:
            yield Payload(api, body, len(part), None)
        elif encoding == "zstd1":
            yield Payload(api, zstd.compress(body), len(part), "zstd1")
        else:
            yield Payload(api, gzip.compress(body, compresslevel=level, mtime=0), len(part))
