"""Query latency of the TSBS devops ``cpu-only`` query shapes through the real query service.

Data set: TSBS cpu-only (:class:`bench.workload.CpuOnly`), ``--hosts`` hosts x 10 cpu metrics
every 10 s for ``--hours`` hours ending at the last full hour: by default 100 hosts x 24 h
(8.64 M points), with ``--full`` TSBS' 4 000 hosts x 24 h (345.6 M points).

Loading that many points through HTTP would take hours here, so the data goes straight onto
disk through the stores' own apply code, exactly what their consumers run on each Kafka
batch: :class:`stores.rocks.store.RocksStore` (points; closed dense hours are merged straight
into hour blocks and rollups), :class:`stores.tags.index.TagIndex` and
:class:`stores.inverted.index.InvertedIndex` (one series announcement per series and hourly
index bucket, as intake sends them), under the directories and instance ids the services
then open. Then real processes serve it: tansu and valkey (:mod:`strata.servers`),
``python -m stores.rocks``, ``stores.tags``, ``stores.inverted`` (they find the topics
empty, replay nothing and advertise their coverage in the Redis registry) and two
``python -m query``: one with the Redis result cache off (the main figures) and one with it
on. No RAM store runs: it would hold only what Kafka replays (nothing), and the data lies
in the past anyway.

Each shape runs ``--runs`` times with random parameters (hosts, time windows) drawn from
the seed, like ``tsbs_generate_queries``, one query at a time, after one warm-up instance.
Every answer is checked against the generated data (numpy reductions of the same values), so
a fast wrong answer cannot pass. The cached column repeats each instance on the cache-on
service and times the second execution.

TSBS shape -> Datadog query (TSBS windows are random; here aligned to their bucket size so
bucket boundaries match):

- ``single-groupby-1-1-1`` (max of 1 metric, 1 host, 1 h, by minute):
  v1 ``max:cpu.usage_user{host:H}.rollup(max, 60)`` over a random hour. Exact.
- ``single-groupby-5-8-1`` (max of 5 metrics, 8 hosts, 1 h, by minute): one v2 timeseries
  request with 5 queries ``max:cpu.usage_<m>{host IN (H1, ..., H8)}.rollup(max, 60)``
  (space max over the hosts = TSBS' max over their rows). Exact.
- ``cpu-max-all-8`` (max of all 10 metrics, 8 hosts, 8 h, by hour): one v2 timeseries
  request with 10 such queries, ``.rollup(max, 3600)``. Exact.
- ``double-groupby-1`` (mean of 1 metric per host and hour, all hosts, 12 h):
  v1 ``avg:cpu.usage_user{*} by {host}.rollup(avg, 3600)``. Exact.
- ``high-cpu-1`` (rows of 1 host where usage_user > 90, 12 h): Datadog has no filter on
  point values. What a user does instead, and what is measured: one v2 timeseries request
  for the host's 10 metrics over 12 h at the finest interval the API allows for 12 h
  (``max:cpu.usage_<m>{host:H}.rollup(max, 300)``, 144 buckets), then the buckets whose
  usage_user max exceeds 90 are picked on the client (counted, not timed apart).
- ``lastpoint`` (the last row of every host): Datadog needs a time range; one v2 scalar
  request with 10 queries ``avg:cpu.usage_<m>{*} by {host}``, aggregator ``last``, over the
  data's last 10 minutes (2 s buckets, so ``last`` is the last point).
- ``groupby-orderby-limit`` (max usage_user per minute over all hosts, the 5 minutes
  before a random end): v1 ``max:cpu.usage_user{*}.rollup(max, 60)`` over those 5 minutes.
  Exact.

Run: ``python -m bench.bench_query [--full] [--hosts N] [--hours N] [--runs N] [--seed N]
[--data-dir DIR]``. With ``--data-dir`` the loaded data is kept and reused by a later run
with the same parameters (``manifest.json``), so the query part can be re-run without
loading again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench.machine import describe, keep_logs
from bench.workload import CPU_METRICS, INTERVAL, CpuOnly
from stores.inverted.index import InvertedIndex
from stores.rocks.store import RocksStore
from stores.runtime.rocks import store_path
from stores.runtime.store import Record
from stores.tags.index import TagIndex
from strata.codec import PointBatch, SeriesBatch
from strata.keys import create_keys
from strata.model import INDEX_BUCKET_SECONDS, MetricType
from strata.partitioning import partition_for, partition_key
from strata.registry import Registry
from strata.servers import RunningServer, free_port, spawn, start_tansu, start_valkey
from strata.settings import CommonSettings
from strata.topics import ensure_topics

F64 = npt.NDArray[np.float64]

ORG = "bench"
PARTITIONS = 4
TOPIC_POINTS, TOPIC_SERIES = "strata.points", "strata.series"
INSTANCES = {"rocks": "rocks-bench", "tags": "tags-bench", "inverted": "inverted-bench"}
HOUR = 3600
STEPS_PER_HOUR = HOUR // INTERVAL
SHAPES = (
    "single-groupby-1-1-1",
    "single-groupby-5-8-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "high-cpu-1",
    "lastpoint",
    "groupby-orderby-limit",
)
HIGH_CPU = 90.0


# --- the data set and what we know about it ---------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    hosts: int
    hours: int
    seed: int
    end: int  # exclusive, hour-aligned

    @property
    def start(self) -> int:
        return self.end - self.hours * HOUR

    @property
    def steps(self) -> int:
        return self.hours * STEPS_PER_HOUR

    @property
    def points(self) -> int:
        return self.steps * self.hosts * len(CPU_METRICS)


@dataclass
class Truth:
    """Reductions of the generated values, enough to check every query shape.

    ``sampled[h]`` holds all values of host ``h`` (metrics x steps) for the hosts that
    host-specific queries name; the rest is kept as the aggregates the all-host shapes need.
    """

    sampled: dict[int, npt.NDArray[np.float32]]
    user_max: F64  # (steps,) max of usage_user over all hosts
    user_hour_mean: F64  # (hours, hosts) mean of usage_user per host and hour
    last: F64  # (metrics, hosts) the last values

    def save(self, path: Path) -> None:
        arrays = {f"host_{h}": v for h, v in self.sampled.items()}
        np.savez(
            path,
            user_max=self.user_max,
            user_hour_mean=self.user_hour_mean,
            last=self.last,
            **arrays,  # type: ignore[arg-type]
        )

    @classmethod
    def read(cls, path: Path) -> Truth:
        with np.load(path) as z:
            sampled = {int(k[5:]): z[k] for k in z.files if k.startswith("host_")}
            return cls(sampled, z["user_max"], z["user_hour_mean"], z["last"])


# --- the queries ------------------------------------------------------------------------------


@dataclass
class Case:
    """One query instance: the HTTP request and the answer it must give."""

    shape: str
    kind: str  # "v1", "timeseries" or "scalar"
    query: str  # the Datadog query (v1) or the queries joined with " ; " (v2)
    request: dict[str, Any]  # v1: URL parameters; v2: JSON body
    expected: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Case, dict[str, Any]], str | None] = field(
        default=lambda _c, _r: None, repr=False
    )

    def send(self, client: httpx.Client) -> httpx.Response:
        if self.kind == "v1":
            return client.get("/api/v1/query", params=self.request)
        return client.post(f"/api/v2/query/{self.kind}", json=self.request)


def _bucket(values: F64, start_step: int, buckets: int, width: int, how: str) -> F64:
    """Reduce ``buckets`` consecutive runs of ``width`` steps from ``start_step`` (last axis)."""
    part = values[..., start_step : start_step + buckets * width]
    shaped = part.reshape(*part.shape[:-1], buckets, width)
    return np.asarray(shaped.max(axis=-1) if how == "max" else shaped.mean(axis=-1))


def _close(got: list[float | None], want: F64) -> bool:
    if len(got) != want.size or any(v is None for v in got):
        return False
    return bool(np.allclose(np.array(got, dtype=np.float64), want, rtol=1e-9, atol=1e-9))


def with_server_errors(problem: str, body: dict[str, Any]) -> str:
    """A failed check with what the answer itself says went wrong (a partial answer names
    the queries it could not answer: v2 ``errors``, v1 ``message``)."""
    said = body.get("errors") or body.get("message")
    return f"{problem} (the answer says: {str(said)[:300]})" if said else problem


def _check_v1_single(case: Case, body: dict[str, Any]) -> str | None:
    series = body.get("series", [])
    if len(series) != 1:
        return f"expected 1 series, got {len(series)}"
    times = [int(p[0]) // 1000 for p in series[0]["pointlist"]]
    if times != case.expected["times"]:
        return f"bucket times differ: {times[:3]}... vs {case.expected['times'][:3]}..."
    if not _close([p[1] for p in series[0]["pointlist"]], case.expected["values"]):
        return "values differ from the generated data"
    return None


def _check_v1_by_host(case: Case, body: dict[str, Any]) -> str | None:
    want: F64 = case.expected["values"]  # (hosts, buckets)
    series = body.get("series", [])
    if len(series) != want.shape[0]:
        return f"expected {want.shape[0]} groups, got {len(series)}"
    for s in series:
        (tag,) = s["tag_set"]
        h = int(tag.removeprefix("host:host_"))
        times = [int(p[0]) // 1000 for p in s["pointlist"]]
        if times != case.expected["times"]:
            return f"{tag}: bucket times differ"
        if not _close([p[1] for p in s["pointlist"]], want[h]):
            return f"{tag}: values differ from the generated data"
    return None


def _check_timeseries(case: Case, body: dict[str, Any]) -> str | None:
    attrs = body["data"]["attributes"]
    times = [int(t) // 1000 for t in attrs["times"]]
    if times != case.expected["times"]:
        return f"bucket times differ: {times[:3]}... vs {case.expected['times'][:3]}..."
    want: F64 = case.expected["values"]  # (queries, buckets)
    got = {s["query_index"]: v for s, v in zip(attrs["series"], attrs["values"], strict=True)}
    if sorted(got) != list(range(want.shape[0])):
        return f"expected formulas 0..{want.shape[0] - 1}, got {sorted(got)}"
    for i in range(want.shape[0]):
        if not _close(got[i], want[i]):
            return f"formula {i}: values differ from the generated data"
    return None


def _check_scalar(case: Case, body: dict[str, Any]) -> str | None:
    columns = body["data"]["attributes"]["columns"]
    groups = [c for c in columns if c["type"] == "group"]
    numbers = [c for c in columns if c["type"] == "number"]
    want: F64 = case.expected["values"]  # (metrics, hosts)
    if len(groups) != 1 or len(numbers) != want.shape[0]:
        return f"expected 1 group and {want.shape[0]} number columns"
    hosts = [int(v[0].removeprefix("host_")) for v in groups[0]["values"]]
    if sorted(hosts) != list(range(want.shape[1])):
        return f"expected every host once, got {len(hosts)} rows"
    for i, col in enumerate(numbers):
        if not _close(col["values"], want[i, hosts]):
            return f"column {i}: last values differ from the generated data"
    return None


def _in_hosts(hosts: list[int]) -> str:
    return "host IN (" + ", ".join(f"host_{h}" for h in hosts) + ")"


def _v2_body(kind: str, queries: list[str], start: int, end: int, **extra: Any) -> dict[str, Any]:
    qs: list[dict[str, Any]] = [
        {"data_source": "metrics", "name": f"q{i}", "query": q} for i, q in enumerate(queries)
    ]
    if kind == "scalar":
        for q in qs:
            q["aggregator"] = "last"
    attrs: dict[str, Any] = {
        "from": start * 1000,
        "to": (end + 1) * 1000,
        "queries": qs,
        "formulas": [{"formula": f"q{i}"} for i in range(len(queries))],
        **extra,
    }
    return {"data": {"type": f"{kind}_request", "attributes": attrs}}


class Planner:
    """Random query instances over a data set, from one seed (like tsbs_generate_queries)."""

    def __init__(self, ds: DataSet, seed: int) -> None:
        self.ds = ds
        self.rng = np.random.default_rng((seed, 7))

    def _window(self, span: int, align: int) -> int:
        """Start of a random ``span``-second window inside the data, ``align``-aligned."""
        slots = (self.ds.hours * HOUR - span) // align
        return self.ds.start + int(self.rng.integers(0, slots + 1)) * align

    def _hosts(self, n: int) -> list[int]:
        return sorted(self.rng.choice(self.ds.hosts, size=n, replace=False).tolist())

    def _step(self, t: int) -> int:
        return (t - self.ds.start) // INTERVAL

    def case(self, shape: str) -> Case:
        return getattr(self, "_" + shape.replace("-", "_"))()  # type: ignore[no-any-return]

    def _single_groupby_1_1_1(self) -> Case:
        (h,) = self._hosts(1)
        a = self._window(HOUR, 60)
        q = f"max:cpu.usage_user{{host:host_{h}}}.rollup(max, 60)"
        return Case(
            "single-groupby-1-1-1",
            "v1",
            q,
            {"from": str(a), "to": str(a + HOUR - 1), "query": q},
            {"hosts": [h], "times": list(range(a, a + HOUR, 60)), "start": self._step(a)},
            _check_v1_single,
        )

    def _max_by(self, shape: str, n_hosts: int, metrics: int, span: int, step: int) -> Case:
        hosts = self._hosts(n_hosts)
        a = self._window(span, step)
        queries = [
            f"max:{m}{{{_in_hosts(hosts)}}}.rollup(max, {step})" for m in CPU_METRICS[:metrics]
        ]
        body = _v2_body("timeseries", queries, a, a + span - 1, interval=step * 1000)
        expected = {
            "hosts": hosts,
            "metrics": metrics,
            "times": list(range(a, a + span, step)),
            "start": self._step(a),
            "buckets": span // step,
            "width": step // INTERVAL,
        }
        return Case(shape, "timeseries", " ; ".join(queries), body, expected, _check_timeseries)

    def _single_groupby_5_8_1(self) -> Case:
        return self._max_by("single-groupby-5-8-1", 8, 5, HOUR, 60)

    def _cpu_max_all_8(self) -> Case:
        return self._max_by("cpu-max-all-8", 8, 10, 8 * HOUR, HOUR)

    def _high_cpu_1(self) -> Case:
        return self._max_by("high-cpu-1", 1, 10, 12 * HOUR, 300)

    def _double_groupby_1(self) -> Case:
        a = self._window(12 * HOUR, HOUR)
        q = "avg:cpu.usage_user{*} by {host}.rollup(avg, 3600)"
        return Case(
            "double-groupby-1",
            "v1",
            q,
            {"from": str(a), "to": str(a + 12 * HOUR - 1), "query": q},
            {"times": list(range(a, a + 12 * HOUR, HOUR)), "hour": (a - self.ds.start) // HOUR},
            _check_v1_by_host,
        )

    def _lastpoint(self) -> Case:
        a = self.ds.end - 600
        queries = [f"avg:{m}{{*}} by {{host}}" for m in CPU_METRICS]
        body = _v2_body("scalar", queries, a, self.ds.end - 1)
        return Case("lastpoint", "scalar", " ; ".join(queries), body, {}, _check_scalar)

    def _groupby_orderby_limit(self) -> Case:
        e = self._window(300, 60) + 300
        q = "max:cpu.usage_user{*}.rollup(max, 60)"
        return Case(
            "groupby-orderby-limit",
            "v1",
            q,
            {"from": str(e - 300), "to": str(e - 1), "query": q},
            {"times": list(range(e - 300, e, 60)), "start": self._step(e - 300)},
            _check_v1_single,
        )


def sampled_hosts(cases: list[Case]) -> set[int]:
    return {h for c in cases for h in c.expected.get("hosts", [])}


def fill_expected(case: Case, truth: Truth) -> None:
    """Put the expected answer (from the generated data) into ``case.expected``."""
    e = case.expected
    if case.shape == "single-groupby-1-1-1":
        user = truth.sampled[e["hosts"][0]][0].astype(np.float64)
        e["values"] = _bucket(user, e["start"], 60, 6, "max")
    elif case.kind == "timeseries":
        rows = [truth.sampled[h][: e["metrics"]] for h in e["hosts"]]
        stacked = np.stack(rows).astype(np.float64)
        per_host = _bucket(stacked, e["start"], e["buckets"], e["width"], "max")
        e["values"] = per_host.max(axis=0)  # space max over the hosts
        if case.shape == "high-cpu-1":
            e["over_threshold"] = int(np.count_nonzero(e["values"][0] > HIGH_CPU))
    elif case.shape == "double-groupby-1":
        e["values"] = truth.user_hour_mean[e["hour"] : e["hour"] + 12].T
    elif case.shape == "lastpoint":
        e["values"] = truth.last
    elif case.shape == "groupby-orderby-limit":
        e["values"] = _bucket(truth.user_max, e["start"], 5, 6, "max")


# --- loading through the stores' apply code -----------------------------------------------------


def load(ds: DataSet, root: Path, sampled: set[int]) -> tuple[Truth, dict[str, float]]:
    """Write the data set into the rocks store, tag index and inverted index under ``root``
    with their own apply code; return the truth and the seconds spent per part."""
    gen = CpuOnly(ds.hosts, ds.start, ds.seed)
    table = gen.series
    n_hosts = ds.hosts
    t0 = time.perf_counter()
    sids = table.sids(ORG)
    canon = table.canonical
    partition = [partition_for(partition_key(ORG, m), PARTITIONS) for m in CPU_METRICS]
    timing = {"series ids": time.perf_counter() - t0}

    t0 = time.perf_counter()
    tags = TagIndex(TOPIC_SERIES, store_path(root, "tags", INSTANCES["tags"]))
    inverted = InvertedIndex(TOPIC_SERIES, store_path(root, "inverted", INSTANCES["inverted"]))
    offset = [0] * PARTITIONS
    for bucket in range(ds.start, ds.end, INDEX_BUCKET_SECONDS):
        records = []
        for m, metric in enumerate(CPU_METRICS):
            rows = slice(m * n_hosts, (m + 1) * n_hosts)
            batch = SeriesBatch(
                ORG,
                metric,
                sids[rows],
                np.full(n_hosts, bucket, dtype=np.int64),
                np.full(n_hosts, int(MetricType.GAUGE), dtype=np.uint8),
                np.full(n_hosts, INTERVAL, dtype=np.uint32),
                canon[rows],
            )
            p = partition[m]
            records.append(Record(p, offset[p], bucket * 1000, batch))
            offset[p] += 1
        tags.apply(records)
        inverted.apply(records)
    tags.close()
    inverted.close()
    timing["tag + inverted index apply"] = time.perf_counter() - t0

    store = RocksStore(TOPIC_POINTS, store_path(root, "rocks", INSTANCES["rocks"]), 15)
    hosts = sorted(sampled)
    truth = Truth(
        # float32 holds the generator's integer values 0..100 exactly, in half the memory
        {h: np.empty((len(CPU_METRICS), ds.steps), dtype=np.float32) for h in hosts},
        np.empty(ds.steps),
        np.empty((ds.hours, n_hosts)),
        np.empty((len(CPU_METRICS), n_hosts)),
    )
    offset = [0] * PARTITIONS
    gen_seconds = apply_seconds = 0.0
    for hour in range(ds.hours):
        t0 = time.perf_counter()
        ts, vals = gen.values(STEPS_PER_HOUR)  # (steps, metrics * hosts), metric-major
        cube = vals.reshape(STEPS_PER_HOUR, len(CPU_METRICS), n_hosts)
        lo = hour * STEPS_PER_HOUR
        for h in hosts:
            truth.sampled[h][:, lo : lo + STEPS_PER_HOUR] = cube[:, :, h].T
        truth.user_max[lo : lo + STEPS_PER_HOUR] = cube[:, 0, :].max(axis=1)
        truth.user_hour_mean[hour] = cube[:, 0, :].mean(axis=0)
        truth.last[:] = cube[-1]
        ts_col = np.repeat(ts, n_hosts)
        gen_seconds += time.perf_counter() - t0
        for m, metric in enumerate(CPU_METRICS):
            t0 = time.perf_counter()
            rows = slice(m * n_hosts, (m + 1) * n_hosts)
            points = PointBatch(
                ORG, metric, np.tile(sids[rows], STEPS_PER_HOUR), ts_col, cube[:, m, :].ravel()
            )
            p = partition[m]
            gen_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            store.apply([Record(p, offset[p], int(ts[-1]) * 1000, points)])
            apply_seconds += time.perf_counter() - t0
            offset[p] += 1
        if ds.points > 50_000_000:  # long loads say how far they are
            print(f"  hour {hour + 1}/{ds.hours} applied", flush=True)
    t0 = time.perf_counter()
    store.fold(everything=True)
    store.close()
    timing["generate values"] = gen_seconds
    timing["rocks apply (incl. fold)"] = apply_seconds + time.perf_counter() - t0
    return truth, timing


# --- the services ------------------------------------------------------------------------------


@dataclass
class Cluster:
    """tansu, valkey, the three stores on the loaded data and two query services."""

    root: Path
    servers: list[RunningServer] = field(default_factory=list)
    redis_url: str = ""
    query_url: str = ""
    cached_query_url: str = ""
    api_key: str = ""
    app_key: str = ""

    def start(self) -> None:
        logs = self.root / "logs"
        tansu = start_tansu(logs)
        self.servers.append(tansu)
        valkey = start_valkey(logs)
        self.servers.append(valkey)
        self.redis_url = f"redis://127.0.0.1:{valkey.port}/0"
        keys_file = self.root / "keys.json"
        keys = create_keys(keys_file, ORG)
        self.api_key, self.app_key = keys.api_key, keys.app_key
        env = {
            **os.environ,
            "AWS_EC2_METADATA_DISABLED": "true",
            "STRATA_DATA_DIR": str(self.root),
            "STRATA_KAFKA_BOOTSTRAP": tansu.address,
            "STRATA_REDIS_URL": self.redis_url,
            "STRATA_PARTITIONS": str(PARTITIONS),
            "STRATA_KEYS_FILE": str(keys_file),
            "STRATA_LOG_LEVEL": "WARNING",
        }
        settings = CommonSettings(kafka_bootstrap=tansu.address, partitions=PARTITIONS)
        ensure_topics(settings)
        for kind, instance in INSTANCES.items():
            self._spawn(instance, ["-m", f"stores.{kind}"], env | {"STRATA_INSTANCE_ID": instance})
        self.query_url = self._spawn(
            "query", ["-m", "query"], env | {"STRATA_CACHE_ENABLED": "false"}
        )
        self.cached_query_url = self._spawn("query-cached", ["-m", "query"], env)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> str:
        port = free_port()
        log = self.root / "logs" / f"{name}.log"
        proc = spawn(name, [sys.executable, *args], log, env=env | {"STRATA_HTTP_PORT": str(port)})
        self.servers.append(RunningServer(name, port, proc, log))
        return f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Wait until every store advertises all partitions (rocks with coverage) and both
        query services answer; return the seconds waited."""
        t0 = time.monotonic()
        registry = Registry(self.redis_url)
        try:
            while True:
                for s in self.servers:
                    if not s.alive():
                        raise RuntimeError(f"{s.name} exited:\n{s.log_tail()}")
                regs = {r.kind: r for r in registry.discover()}
                ready = (
                    all(k in regs and len(regs[k].partitions) == PARTITIONS for k in INSTANCES)
                    and len(regs["rocks"].coverage) == PARTITIONS
                )
                if ready and all(_healthy(u) for u in (self.query_url, self.cached_query_url)):
                    return time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    tails = "\n".join(f"--- {s.name}\n{s.log_tail(800)}" for s in self.servers)
                    raise RuntimeError(f"services not ready after {timeout:g} s\n{tails}")
                time.sleep(0.3)
        finally:
            registry.close()

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running(root: Path) -> Iterator[Cluster]:
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- timing -----------------------------------------------------------------------------------


@dataclass
class ShapeResult:
    shape: str
    query: str
    runs: int
    p50_ms: float
    p99_ms: float
    cached_p50_ms: float
    cached_p99_ms: float
    answer: str  # what one answer holds
    failures: list[str]


def _client(url: str, cluster: Cluster) -> httpx.Client:
    headers = {"DD-API-KEY": cluster.api_key, "DD-APPLICATION-KEY": cluster.app_key}
    return httpx.Client(base_url=url, headers=headers, timeout=120.0)


def _timed(client: httpx.Client, case: Case) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    resp = case.send(client)
    ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"{case.shape}: HTTP {resp.status_code} {resp.text[:300]}")
    return ms, dict(resp.json())


def _answer_size(case: Case, body: dict[str, Any]) -> str:
    if case.kind == "v1":
        series = body["series"]
        return f"{len(series)} series x {len(series[0]['pointlist']) if series else 0} points"
    attrs = body["data"]["attributes"]
    if case.kind == "timeseries":
        extra = ""
        if case.shape == "high-cpu-1":
            extra = f"; {case.expected['over_threshold']} buckets over {HIGH_CPU:g}"
        return f"{len(attrs['series'])} series x {len(attrs['times'])} points{extra}"
    return f"{len(attrs['columns'][0]['values'])} rows x {len(attrs['columns']) - 1} values"


Cases = dict[str, list[Case]]


def measure(cluster: Cluster, cases: Cases, warmups: dict[str, Case]) -> list[ShapeResult]:
    out = []
    with (
        _client(cluster.query_url, cluster) as plain,
        _client(cluster.cached_query_url, cluster) as cached,
    ):
        for shape, runs in cases.items():
            failures: list[str] = []
            _timed(plain, warmups[shape])
            ms: list[float] = []
            answer = ""
            for case in runs:
                took, body = _timed(plain, case)
                ms.append(took)
                problem = case.check(case, body)
                if problem:
                    failures.append(with_server_errors(problem, body))
                answer = _answer_size(case, body)
            cached_ms = []
            for case in runs:
                _timed(cached, case)  # fills the cache with what is complete
                took, body = _timed(cached, case)
                cached_ms.append(took)
                problem = case.check(case, body)
                if problem:
                    failures.append(f"cached: {with_server_errors(problem, body)}")
            out.append(
                ShapeResult(
                    shape,
                    runs[0].query,
                    len(runs),
                    float(np.percentile(ms, 50)),
                    float(np.percentile(ms, 99)),
                    float(np.percentile(cached_ms, 50)),
                    float(np.percentile(cached_ms, 99)),
                    answer,
                    failures[:3],
                )
            )
            r = out[-1]
            print(
                f"{shape:22s} p50 {r.p50_ms:8.1f} ms  p99 {r.p99_ms:8.1f} ms  | cached p50 "
                f"{r.cached_p50_ms:8.1f} ms  p99 {r.cached_p99_ms:8.1f} ms  | {answer}"
                + (f"  WRONG: {failures[0]}" if failures else "  (answers checked)"),
                flush=True,
            )
    return out


# --- command line -----------------------------------------------------------------------------


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("strata", "rocksdict", "pyroaring", "pyarrow", "fastapi", "uvicorn", "httpx"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} ?")
    return "; ".join(out)


def _prepare(args: argparse.Namespace, root: Path) -> tuple[DataSet, Cases, dict[str, Case], Truth]:
    """Plan the queries, then load the data (or reuse a matching earlier load)."""
    manifest = root / "manifest.json"
    wanted = {"hosts": args.hosts, "hours": args.hours, "seed": args.seed, "runs": args.runs}
    old = json.loads(manifest.read_text()) if manifest.exists() else None
    if old is not None and {k: old.get(k) for k in wanted} == wanted:
        ds = DataSet(args.hosts, args.hours, args.seed, int(old["end"]))
        print(f"reusing the data loaded at {time.ctime(old['loaded_at'])} in {root}")
    else:
        if old is not None or any(root.iterdir()):
            raise SystemExit(f"{root} holds another data set; use an empty directory")
        now = int(time.time())
        ds = DataSet(args.hosts, args.hours, args.seed, now - now % HOUR)
    planner = Planner(ds, args.seed)
    warmups = {s: planner.case(s) for s in SHAPES}
    cases = {s: [planner.case(s) for _ in range(args.runs)] for s in SHAPES}
    every = [*warmups.values(), *(c for runs in cases.values() for c in runs)]
    if old is not None and manifest.exists():
        truth = Truth.read(root / "truth.npz")
    else:
        print(
            f"loading {ds.points:,} points ({ds.hosts} hosts x {len(CPU_METRICS)} metrics x "
            f"{ds.hours} h at {INTERVAL} s, {_utc(ds.start)} to {_utc(ds.end)}) "
            "through the stores' apply",
            flush=True,
        )
        t0 = time.perf_counter()
        truth, timing = load(ds, root, sampled_hosts(every))
        took = time.perf_counter() - t0
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in timing.items())
        print(f"loaded in {took:.1f} s = {ds.points / took:,.0f} points/s ({parts})")
        disk = sum(f.stat().st_size for f in (root / "rocks").rglob("*") if f.is_file())
        print(f"rocks on disk: {disk / 1e6:,.1f} MB = {disk / ds.points:.2f} bytes/point")
        truth.save(root / "truth.npz")
        manifest.write_text(json.dumps(wanted | {"end": ds.end, "loaded_at": time.time()}))
    for c in every:
        fill_expected(c, truth)
    return ds, cases, warmups, truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--full", action="store_true", help="TSBS scale: 4 000 hosts x 24 h")
    ap.add_argument("--hosts", type=int, default=None, help="default 100 (4 000 with --full)")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--runs", type=int, default=20, help="query instances per shape")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the data")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.hosts is None:
        args.hosts = 4000 if args.full else 100
    if args.hours < 12 or args.hosts < 8:
        ap.error("the shapes need at least 12 hours and 8 hosts")
    print(describe())
    print(_versions())
    print(f"seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        root = args.data_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ds, cases, warmups, _ = _prepare(args, root)
        with running(root) as cluster:
            waited = cluster.wait_ready()
            print(f"services ready in {waited:.1f} s; {args.runs} runs per shape, sequential")
            results = measure(cluster, cases, warmups)
            stats = httpx.get(f"{cluster.cached_query_url}/v1/stats", timeout=5.0).json()
            print(f"result cache of the cached service: {stats.get('cache')}")
        failed = [r.shape for r in results if r.failures]
        if failed:
            print(f"logs of the run kept in {keep_logs(root, 'bench-query-logs-')}")
    if args.json:
        args.json.write_text(
            json.dumps({"dataset": asdict(ds), "results": [asdict(r) for r in results]}, indent=1)
        )
    if failed:
        print(f"WRONG ANSWERS: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
