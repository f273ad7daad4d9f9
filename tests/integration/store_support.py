"""Helpers for store integration tests: start store processes, produce, read back."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, Message, Producer

from strata.codec import PointBatch, SeriesBatch, encode_points, encode_series
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE, MetricType, index_bucket
from strata.naming import canonical_tags
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, Registry
from strata.series_id import series_id
from strata.servers import RunningServer, free_port, spawn


@dataclass
class StoreProcess:
    """One ``python -m stores.<kind>`` subprocess."""

    kind: str
    instance: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    server: RunningServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StoreProcess:
        env = {
            **os.environ,
            **self.env,
            "STRATA_HTTP_PORT": str(self.port),
            "STRATA_INSTANCE_ID": self.instance,
        }
        argv = [sys.executable, "-m", f"stores.{self.kind}"]
        proc = spawn(self.instance, argv, self.log_path, env=env)
        self.server = RunningServer(self.instance, self.port, proc, self.log_path)
        return self

    def registration(self) -> Registration | None:
        registry = Registry(self.env["STRATA_REDIS_URL"])
        try:
            for reg in registry.discover(self.kind):
                if reg.instance == self.instance:
                    return reg
            return None
        finally:
            registry.close()

    def wait_ready(self, partitions: int | None = None, timeout: float = 30.0) -> Registration:
        """Wait for /health and a registry entry owning ``partitions`` partitions (any
        number > 0 when None)."""
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server.alive():
                raise AssertionError(f"{self.instance} exited:\n{self.server.log_tail()}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=1.0)
                reg = self.registration()
            except httpx.HTTPError:
                reg = None
            else:
                owned = len(reg.partitions) if reg is not None else 0
                ready = reg is not None and health.status_code == 200 and owned > 0
                if ready and reg is not None and partitions in (None, owned):
                    return reg
            time.sleep(0.2)
        tail = self.server.log_tail()
        raise AssertionError(f"{self.instance} not ready after {timeout}s:\n{tail}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()


@dataclass
class Stores:
    """Starts store processes for one test and stops them all at teardown."""

    env: dict[str, str]
    log_dir: Path
    started: list[StoreProcess] = field(default_factory=list)

    def start(self, kind: str, instance: str, env: dict[str, str] | None = None) -> StoreProcess:
        proc = StoreProcess(
            kind, instance, {**self.env, **(env or {})}, self.log_dir / f"{instance}.log"
        )
        self.started.append(proc.start())
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


def stores_fixture(env: dict[str, str], tmp_path: Path) -> Iterator[Stores]:
    """Stores for one test, in consumer groups of their own (like its topics): a rebalance
    in one test never touches another test's consumers."""
    group_prefix = f"strata-{env['STRATA_TOPIC_POINTS']}"
    stores = Stores({**env, "STRATA_GROUP_PREFIX": group_prefix}, tmp_path / "logs")
    try:
        yield stores
    finally:
        stores.stop_all()


def producer(env: dict[str, str]) -> Producer:
    return Producer(
        {"bootstrap.servers": env["STRATA_KAFKA_BOOTSTRAP"], "acks": "all", "linger.ms": 0}
    )


def produce(env: dict[str, str], topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) pairs to the key's partition; wait for every acknowledgement."""
    partitions = int(env["STRATA_PARTITIONS"])
    p = producer(env)
    errors: list[str] = []

    def on_delivery(err: object, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in messages:
        p.produce(
            topic,
            value=value,
            key=key,
            partition=partition_for(key, partitions),
            on_delivery=on_delivery,
        )
    assert p.flush(15.0) == 0, "messages not acknowledged"
    assert not errors, errors


@dataclass(frozen=True)
class Series:
    org: str
    metric: str
    tags: tuple[str, ...]

    @property
    def sid(self) -> int:
        return series_id(self.org, self.metric, self.tags)

    @property
    def key(self) -> bytes:
        return partition_key(self.org, self.metric)


def make_series(org: str, metric: str, *tags: str) -> Series:
    return Series(org, metric, canonical_tags(tags))


def points_message(series: Series, ts: Sequence[int], values: Sequence[float]) -> bytes:
    n = len(ts)
    return encode_points(
        PointBatch(
            series.org,
            series.metric,
            np.full(n, series.sid, dtype=SID_DTYPE),
            np.array(ts, dtype=TS_DTYPE),
            np.array(values, dtype=VALUE_DTYPE),
        )
    )


def series_message(series: Sequence[Series], ts: int, mtype: MetricType) -> bytes:
    """One series message for series that all share (org, metric)."""
    n = len(series)
    return encode_series(
        SeriesBatch(
            series[0].org,
            series[0].metric,
            np.array([s.sid for s in series], dtype=SID_DTYPE),
            np.full(n, index_bucket(ts), dtype=TS_DTYPE),
            np.full(n, int(mtype), dtype=np.uint8),
            np.full(n, 10, dtype=np.uint32),
            tuple(s.tags for s in series),
        )
    )


Points = dict[tuple[int, int], float]


def read_points(url: str, sids: Sequence[int], start: int, end: int) -> Points:
    resp = httpx.post(
        f"{url}/v1/points/read", json={"sids": list(sids), "from": start, "to": end}, timeout=5.0
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(resp.content).read_all()
    assert table.schema.names == ["sid", "ts", "value"]
    sid = table.column("sid").to_numpy()
    ts = table.column("ts").to_numpy()
    keys = np.lexsort((ts, sid))
    assert (keys == np.arange(sid.size)).all(), "rows not sorted by (sid, ts)"
    return {
        (int(s), int(t)): float(v)
        for s, t, v in zip(
            sid.tolist(), ts.tolist(), table.column("value").to_pylist(), strict=True
        )
    }


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def dead_letters(env: dict[str, str], expected: int, timeout: float = 15.0) -> list[Message]:
    """Read ``expected`` messages from the test's dead-letter topic."""
    c = Consumer(
        {
            "bootstrap.servers": env["STRATA_KAFKA_BOOTSTRAP"],
            "group.id": f"dl-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 2000,
        }
    )
    c.subscribe([env["STRATA_TOPIC_DEAD_LETTER"]])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        c.close()
    return out
