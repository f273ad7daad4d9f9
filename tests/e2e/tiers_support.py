"""A pipeline of individual service processes for the durable-tier tests.

Unlike ``strata up`` (tests/e2e/conftest.py), every service is started here by the test as a
``python -m <module>`` subprocess, so a test chooses each service's settings (a small RAM
window, a short rocks retention, the archive's backend) and decides itself when a store is
killed and restarted. Each pipeline gets its own topics, consumer-group prefix and Redis
database, so registry entries of earlier pipelines (a SIGKILLed store leaves its entry for a
TTL) can never be routed to.

Everything is checked through HTTP only: intake ``/api/v2/series``, query ``/api/v1/query``
and the point tiers' internal read API (docs/architecture.md, "Point read API").
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import redis

from strata.keys import create_keys
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, Registry
from strata.servers import RunningServer, free_port, spawn
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.e2e.reference import AGGREGATORS, ReferenceModel

POINT_TIERS = ("ram", "rocks", "archive")
MODULES = {
    "intake": "intake",
    "query": "query",
    "tags": "stores.tags",
    "inverted": "stores.inverted",
    "ram": "stores.ram",
    "rocks": "stores.rocks",
    "archive": "stores.archive",
}
ARROW_STREAM = "application/vnd.apache.arrow.stream"
TIERS_HEADER = "x-strata-tiers"
START_TIMEOUT = 120.0  # seven Python services importing at once on two shared cores

# Valkey has 16 databases; 0 is what the other suites use. One per pipeline of this session.
_redis_dbs = itertools.count(1)


class ServiceDied(AssertionError):
    """A service process exited while the test needed it; carries the tail of its log."""


def missing_modules(names: Iterable[str] = MODULES) -> list[str]:
    """Service ``__main__`` modules that do not exist yet."""
    missing = []
    for name in names:
        module = f"{MODULES[name]}.__main__"
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    return missing


def require_modules(names: Iterable[str] = MODULES) -> None:
    missing = missing_modules(names)
    if missing:
        pytest.skip(f"services not written yet: {', '.join(missing)}")


@dataclass
class Service:
    """One service process; restartable with the same instance id, port and data dir (as
    ``strata up``'s supervisor restarts it), so a restarted store replaces its own registry
    entry and reopens its own RocksDB."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        env = {
            **os.environ,
            **self.env,
            "STRATA_HTTP_HOST": "127.0.0.1",
            "STRATA_HTTP_PORT": str(self.port),
            "STRATA_ADVERTISE_URL": self.url,
            "STRATA_INSTANCE_ID": f"{self.name}-test",
        }
        argv = [sys.executable, "-m", MODULES[self.name]]
        self.process = spawn(self.name, argv, self.log_path, env=env)
        self.spawned_at = time.monotonic()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log written)"

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServiceDied(f"{self.name} exited during start:\n{self.log_tail()}")
            if self.healthy(timeout=0.5):
                return
            time.sleep(0.1)
        raise ServiceDied(f"{self.name} no /health after {timeout:g} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, committed or withdrawn on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class SeriesSpec:
    """One series as submitted: metric, host (a v2 ``resources`` host) and other tags."""

    metric: str
    host: str
    tags: tuple[str, ...]

    @property
    def all_tags(self) -> list[str]:
        return [*self.tags, f"host:{self.host}"]


Points = Sequence[tuple[int, float]]


def v2_payload(batch: Sequence[tuple[SeriesSpec, Points]]) -> dict[str, Any]:
    return {
        "series": [
            {
                "metric": s.metric,
                "type": 3,  # gauge
                "points": [{"timestamp": ts, "value": v} for ts, v in points],
                "resources": [{"name": s.host, "type": "host"}],
                "tags": list(s.tags),
            }
            for s, points in batch
        ]
    }


@dataclass
class Cluster:
    """Intake, query, both indexes and the three point tiers on one test's topics."""

    env: dict[str, str]  # shared STRATA_* environment
    log_dir: Path
    overrides: Mapping[str, Mapping[str, str]]  # per-service extra environment
    org: str = "main"
    api_key: str = ""
    app_key: str = ""
    services: dict[str, Service] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        base: Mapping[str, str],
        tmp: Path,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Cluster:
        """``base`` carries at least STRATA_KAFKA_BOOTSTRAP and STRATA_REDIS_URL's server;
        topics, group prefix, data dir, keys and Redis database are made unique here."""
        run = uuid.uuid4().hex[:8]
        redis_server = base["STRATA_REDIS_URL"].rsplit("/", 1)[0]
        db = next(_redis_dbs)
        env = {
            **base,
            "STRATA_DATA_DIR": str(tmp / "data"),
            "STRATA_REDIS_URL": f"{redis_server}/{db}",
            "STRATA_TOPIC_POINTS": f"points-{run}",
            "STRATA_TOPIC_SERIES": f"series-{run}",
            "STRATA_TOPIC_SKETCHES": f"sketches-{run}",
            "STRATA_TOPIC_DEAD_LETTER": f"dead-letter-{run}",
            "STRATA_GROUP_PREFIX": f"strata-{run}",
            "STRATA_SESSION_TIMEOUT_MS": "2000",
            "STRATA_LOG_LEVEL": "INFO",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        cluster = cls(env, tmp / "logs", overrides or {})
        settings = CommonSettings.model_validate(
            {
                k.removeprefix("STRATA_").lower(): v
                for k, v in env.items()
                if k.startswith("STRATA_")
            }
        )
        keys = create_keys(settings.keys_path, cluster.org)
        cluster.api_key, cluster.app_key = keys.api_key, keys.app_key
        ensure_topics(settings)
        # Leftovers of an earlier session that used this database number.
        client = redis.Redis.from_url(env["STRATA_REDIS_URL"])
        try:
            client.flushdb()
        finally:
            client.close()
        return cluster

    @property
    def partitions(self) -> int:
        return int(self.env["STRATA_PARTITIONS"])

    def start(self, names: Iterable[str] = MODULES) -> None:
        names = list(names)
        require_modules(names)
        for name in names:
            env = {**self.env, **self.overrides.get(name, {})}
            self.services[name] = Service(name, env, self.log_dir / f"{name}.log").start()
        try:
            for name in names:
                self.services[name].wait_healthy()
            for name in names:
                if name in POINT_TIERS or name in ("tags", "inverted"):
                    self.wait_owning_all(name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    # -- registry ------------------------------------------------------------------------

    def registration(self, kind: str) -> Registration | None:
        registry = Registry(self.env["STRATA_REDIS_URL"])
        try:
            regs = [r for r in registry.discover(kind) if r.instance == f"{kind}-test"]
        finally:
            registry.close()
        return regs[0] if regs else None

    def wait_owning_all(self, kind: str, timeout: float = 60.0) -> Registration:
        deadline = time.monotonic() + timeout
        reg = None
        while time.monotonic() < deadline:
            service = self.services[kind]
            if not service.alive():
                raise ServiceDied(f"{kind} exited:\n{service.log_tail()}")
            reg = self.registration(kind)
            if reg is not None and sorted(reg.partitions) == list(range(self.partitions)):
                return reg
            time.sleep(0.2)
        raise AssertionError(f"{kind} does not own every partition after {timeout:g} s: {reg}")

    def partition_of(self, metric: str) -> int:
        return partition_for(partition_key(self.org, metric), self.partitions)

    # -- public APIs ---------------------------------------------------------------------

    def submit(self, batch: Sequence[tuple[SeriesSpec, Points]], timeout: float = 10.0) -> int:
        """POST /api/v2/series; the status code. A 202 with errors (a rejected point) is a
        test bug, so it fails here rather than leaving the model wrong."""
        resp = httpx.post(
            f"{self['intake'].url}/api/v2/series",
            json=v2_payload(batch),
            headers={"DD-API-KEY": self.api_key},
            timeout=timeout,
        )
        if resp.status_code == 202:
            assert not resp.json().get("errors"), resp.text
        return resp.status_code

    def query(self, q: str, start: int, end: int) -> tuple[dict[str, Any], str]:
        """GET /api/v1/query -> (body, X-Strata-Tiers header)."""
        resp = httpx.get(
            f"{self['query'].url}/api/v1/query",
            params={"from": start, "to": end, "query": q},
            headers={"DD-API-KEY": self.api_key, "DD-APPLICATION-KEY": self.app_key},
            timeout=30.0,
        )
        assert resp.status_code == 200, f"{q}: {resp.status_code} {resp.text}"
        body: dict[str, Any] = resp.json()
        assert body.get("status") == "ok", body
        return body, resp.headers.get(TIERS_HEADER, "")

    def read(
        self, kind: str, sids: Sequence[int], start: int, end: int, resolution: str = "raw"
    ) -> pa.Table:
        """The point read API of one tier (Arrow IPC), checked for type and order."""
        resp = httpx.post(
            f"{self[kind].url}/v1/points/read",
            json={"sids": list(sids), "from": start, "to": end, "resolution": resolution},
            timeout=30.0,
        )
        assert resp.status_code == 200, f"{kind} {resolution}: {resp.status_code} {resp.text}"
        assert resp.headers["content-type"].startswith(ARROW_STREAM)
        table = pa.ipc.open_stream(resp.content).read_all()
        assert table.column_names[:2] == ["sid", "ts"], table.schema
        rows = list(
            zip(table.column("sid").to_pylist(), table.column("ts").to_pylist(), strict=True)
        )
        assert rows == sorted(rows), f"{kind} {resolution}: rows not sorted by (sid, ts)"
        assert len(set(rows)) == len(rows), f"{kind} {resolution}: duplicate (sid, ts) rows"
        return table


@dataclass(frozen=True)
class S3Bucket:
    endpoint: str
    bucket: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"


def s3_bucket(moto: RunningServer, name: str) -> S3Bucket:
    """Create bucket ``name`` on the (real) moto server."""
    import boto3

    s3 = S3Bucket(f"http://127.0.0.1:{moto.port}", name)
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return s3


def archive_env(s3: S3Bucket | None, flush_seconds: float = 1.0) -> dict[str, str]:
    """Archive settings (stores/archive/settings.py): the local-dir default when ``s3`` is
    None, else that bucket with explicit endpoint and credentials. Buffers are flushed after
    ``flush_seconds`` so a test sees uploads within seconds, not the production minute."""
    env = {"STRATA_ARCHIVE_FLUSH_SECONDS": str(flush_seconds)}
    if s3 is None:
        return env | {"STRATA_ARCHIVE_BACKEND": "local"}
    return env | {
        "STRATA_ARCHIVE_BACKEND": "s3",
        "STRATA_ARCHIVE_S3_ENDPOINT_URL": s3.endpoint,
        "STRATA_ARCHIVE_S3_BUCKET": s3.bucket,
        "STRATA_ARCHIVE_S3_PREFIX": "strata-test",
        "STRATA_ARCHIVE_S3_ACCESS_KEY_ID": s3.access_key_id,
        "STRATA_ARCHIVE_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def expected_rolled(
    model: ReferenceModel,
    org: str,
    metric: str,
    aggregator: str,
    interval: int,
    *,
    start: int,
    end: int,
    group_by: Sequence[str] = (),
    scope: Sequence[str] = (),
) -> dict[tuple[str, ...], dict[int, float]]:
    """``aggregator:metric{scope} by {group_by}`` over [start, end] at ``interval``, from the
    model alone: each series' points averaged per interval-aligned bucket (Datadog's time
    rollup), then the space aggregator across the series of a group. Unlike
    :meth:`ReferenceModel.expected` this holds for many points per series per bucket, which
    is what makes a point counted twice visible in an average."""
    keys, wanted = set(group_by), set(scope)
    per_group: dict[tuple[str, ...], dict[int, list[float]]] = {}
    for (o, m, tags), points in model.points.items():
        if o != org or m != metric or not wanted <= tags:
            continue
        group = tuple(sorted(t for t in tags if t.split(":", 1)[0] in keys))
        buckets: dict[int, list[float]] = {}
        for ts, v in points.items():
            if start <= ts <= end:
                buckets.setdefault(ts - ts % interval, []).append(v)
        out = per_group.setdefault(group, {})
        for b, vs in buckets.items():
            out.setdefault(b, []).append(sum(vs) / len(vs))
    agg = AGGREGATORS[aggregator]
    return {
        g: {b: float(agg(vs)) for b, vs in by_b.items()} for g, by_b in per_group.items() if by_b
    }


def response_interval(body: Mapping[str, Any]) -> int:
    """The rollup interval (seconds) of a v1 query answer; every series carries the same."""
    intervals = {int(s["interval"]) for s in body.get("series") or []}
    assert len(intervals) == 1, f"series with intervals {intervals}"
    return intervals.pop()
