"""``python -m stores.archive`` against real tansu + Valkey, local dir and S3 on moto.

Every answer is compared with a reference model of everything produced.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from stores.archive.catalog import Catalog
from stores.archive.naming import Family, ObjectName
from stores.archive.objectstore import LocalDirStore, ObjectStore, S3Config, S3Store
from strata.model import MetricType
from strata.rollup import HOUR
from strata.servers import RunningServer, free_port, start_moto
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Points,
    Series,
    Stores,
    make_series,
    points_message,
    produce,
    read_points,
    series_message,
    stores_fixture,
    wait_for,
)

pytestmark = pytest.mark.integration

FAST = {
    "STRATA_ARCHIVE_FLUSH_SECONDS": "0.5",
    "STRATA_ARCHIVE_FLUSH_POINTS": "400",
    "STRATA_ARCHIVE_COMPACT_INTERVAL_SECONDS": "0",
    "STRATA_ARCHIVE_RETRY_MAX_SECONDS": "1",
    "STRATA_BATCH_MAX_MESSAGES": "20",
    "STRATA_POLL_TIMEOUT_SECONDS": "0.2",
}


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


def s3_env(endpoint: str, bucket: str, create: bool = True) -> dict[str, str]:
    return {
        "STRATA_ARCHIVE_BACKEND": "s3",
        "STRATA_ARCHIVE_S3_ENDPOINT_URL": endpoint,
        "STRATA_ARCHIVE_S3_BUCKET": bucket,
        "STRATA_ARCHIVE_S3_PREFIX": "arch",
        "STRATA_ARCHIVE_S3_ACCESS_KEY_ID": "testing",
        "STRATA_ARCHIVE_S3_SECRET_ACCESS_KEY": "testing",
        "STRATA_ARCHIVE_S3_CREATE_BUCKET": "true" if create else "false",
        "STRATA_ARCHIVE_S3_ATTEMPTS": "2",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(S3Config(endpoint, bucket, "arch", "testing", "testing", "us-east-1"))


def series_set() -> list[Series]:
    return [
        make_series(org, metric, f"host:h{i}")
        for org in ("acme", "globex")
        for metric in ("cpu.user", "mem.used", "disk.io")
        for i in range(2)
    ]


def workload(
    rng: random.Random, series: list[Series], now: int, messages: int
) -> tuple[list[tuple[bytes, bytes]], Points]:
    """Messages spread over three days (several day objects) with repeated (sid, ts)."""
    out: list[tuple[bytes, bytes]] = []
    model: Points = {}
    for _ in range(messages):
        s = rng.choice(series)
        ts = [now - rng.randrange(3 * 86400) for _ in range(rng.randrange(1, 40))]
        values = [float(rng.randrange(-1000, 1000)) for _ in ts]
        out.append((s.key, points_message(s, ts, values)))
        for t, v in zip(ts, values, strict=True):
            old = model.get((s.sid, t))
            if old is None or abs(v) > abs(old) or (abs(v) == abs(old) and v > old):
                model[(s.sid, t)] = v
    return out, model


def read_all(url: str, series: list[Series], now: int) -> Points:
    return read_points(url, [s.sid for s in series], now - 4 * 86400, now + 60)


def read_hours(
    url: str, sids: list[int], start: int, end: int
) -> dict[tuple[int, int], tuple[int, float]]:
    resp = httpx.post(
        f"{url}/v1/points/read",
        json={"sids": sids, "from": start, "to": end, "resolution": "1h"},
        timeout=10.0,
    )
    assert resp.status_code == 200, resp.text
    t = pa.ipc.open_stream(resp.content).read_all()
    assert t.schema.names == ["sid", "ts", "count", "sum", "min", "max", "last", "last_ts"]
    return {
        (s, b): (c, x)
        for s, b, c, x in zip(
            t["sid"].to_pylist(),
            t["ts"].to_pylist(),
            t["count"].to_pylist(),
            t["sum"].to_pylist(),
            strict=True,
        )
    }


def model_hours(model: Points, start: int, end: int) -> dict[tuple[int, int], tuple[int, float]]:
    out: dict[tuple[int, int], tuple[int, float]] = {}
    for (s, t), v in model.items():
        b = t - t % HOUR
        if start <= b <= end:
            c, x = out.get((s, b), (0, 0.0))
            out[(s, b)] = (c + 1, x + v)
    return out


def assert_hours(url: str, series: list[Series], model: Points, now: int) -> None:
    start = now - now % HOUR - 4 * 86400
    end = now - now % HOUR
    got = read_hours(url, [s.sid for s in series], start, end)
    want = model_hours(model, start, end)
    assert got.keys() == want.keys()
    for k, (c, x) in want.items():
        assert got[k][0] == c and got[k][1] == pytest.approx(x)


def committed(env: dict[str, str], partitions: int) -> dict[int, int]:
    c = Consumer(
        {
            "bootstrap.servers": env["STRATA_KAFKA_BOOTSTRAP"],
            "group.id": f"strata-{env['STRATA_TOPIC_POINTS']}-archive",
            "enable.auto.commit": False,
        }
    )
    try:
        tps = [TopicPartition(env["STRATA_TOPIC_POINTS"], p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in c.committed(tps, timeout=10.0) if tp.offset >= 0}
    finally:
        c.close()


def ingest_ranges(objects: ObjectStore) -> dict[tuple[str, int], list[ObjectName]]:
    out: dict[tuple[str, int], list[ObjectName]] = {}
    for n in Catalog(objects).family(Family.POINTS):
        out.setdefault((n.topic_id, n.partition), []).append(n)
    return out


def assert_each_offset_once(objects: ObjectStore, ends: dict[int, int]) -> None:
    """Exactly-once effect on disk: per partition, ingest objects tile [0, end) with no
    overlap and no hole."""
    ranges = ingest_ranges(objects)
    assert {p for _, p in ranges} == set(ends)
    for (_, p), names in ranges.items():
        names = sorted(names, key=lambda n: n.first)
        assert names[0].first == 0
        for a, b in itertools.pairwise(names):
            assert a.last + 1 == b.first, f"p{p}: {a.key()} then {b.key()}"
        assert names[-1].last + 1 == ends[p]


def partition_ends(messages: list[tuple[bytes, bytes]], partitions: int) -> dict[int, int]:
    from strata.partitioning import partition_for

    ends: dict[int, int] = {}
    for key, _ in messages:
        p = partition_for(key, partitions)
        ends[p] = ends.get(p, 0) + 1
    return ends


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_serves_what_was_produced_and_replay_writes_nothing_new(
    stores: Stores, strata_env: dict[str, str], backend: str, request: pytest.FixtureRequest
) -> None:
    env = dict(FAST)
    if backend == "s3":
        moto: RunningServer = request.getfixturevalue("moto")
        bucket = f"arch-{uuid.uuid4().hex[:10]}"
        env.update(s3_env(f"http://{moto.address}", bucket))
        objects: ObjectStore = s3_store(f"http://{moto.address}", bucket)
    else:
        objects = LocalDirStore(Path(strata_env["STRATA_DATA_DIR"]) / "archive" / "objects")
    archive = stores.start("archive", "archive-a", env)
    archive.wait_ready(partitions=3)
    now = int(time.time())
    series = series_set()
    messages, model = workload(random.Random(7), series, now, 60)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    announce = [
        (group[0].key, series_message(group, now, MetricType.GAUGE))
        for group in (series[i : i + 2] for i in range(0, len(series), 2))
    ]
    produce(strata_env, strata_env["STRATA_TOPIC_SERIES"], announce)
    wait_for(lambda: read_all(archive.url, series, now) == model, 30, "all points archived")
    assert_hours(archive.url, series, model, now)
    ends = partition_ends(messages, 3)
    wait_for(lambda: committed(strata_env, 3) == ends, 15, "offsets committed")
    assert_each_offset_once(objects, ends)
    # The series records are archived too: the archive describes itself.
    wait_for(lambda: bool(Catalog(objects).family(Family.SERIES)), 15, "series archived")
    rows = pa.concat_tables(
        [
            pq.read_table(pa.BufferReader(objects.get(n.key())))
            for n in Catalog(objects).family(Family.SERIES)
        ]
    )
    assert sorted(rows["sid"].to_pylist()) == sorted(s.sid for s in series)

    # Coverage: oldest archived point's hour .. now.
    def covered() -> bool:
        reg = archive.registration()
        return reg is not None and set(reg.coverage) == {0, 1, 2} and reg.offsets == ends

    wait_for(covered, 10, "coverage and offsets in the registry")
    reg = archive.registration()
    assert reg is not None
    oldest = min(t for _, t in model)
    assert min(c[0] for c in reg.coverage.values()) == oldest - oldest % HOUR
    # Replay: a new instance in a new consumer group (no committed offsets at all) starts
    # from what the objects say and writes nothing new.
    before = sorted((o.key, o.size) for o in objects.list(""))
    archive.stop()
    again = stores.start(
        "archive", "archive-b", {**env, "STRATA_GROUP_PREFIX": f"g-{uuid.uuid4().hex[:6]}"}
    )
    again.wait_ready(partitions=3)
    time.sleep(2.0)
    assert sorted((o.key, o.size) for o in objects.list("")) == before
    assert read_all(again.url, series, now) == model


def test_sigkill_mid_ingest_keeps_every_offset_exactly_once(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    seed = int(os.environ.get("STRATA_CHAOS_SEED", "20261122"))
    kills = int(os.environ.get("STRATA_ARCHIVE_KILLS", "8"))
    print(f"chaos seed {seed}, {kills} kills")
    rng = random.Random(seed)
    objects = LocalDirStore(Path(strata_env["STRATA_DATA_DIR"]) / "archive" / "objects")
    now = int(time.time())
    series = series_set()
    model: Points = {}
    all_messages: list[tuple[bytes, bytes]] = []
    archive = stores.start("archive", "archive-0", FAST)
    archive.wait_ready(partitions=3)
    in_flight = 0
    for k in range(kills):
        messages, part = workload(rng, series, now, rng.randrange(10, 40))
        for key, v in part.items():
            old = model.get(key)
            if old is None or abs(v) > abs(old) or (abs(v) == abs(old) and v > old):
                model[key] = v
        all_messages += messages
        produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
        time.sleep(rng.uniform(0.0, 1.5))
        archived = sum(n.last - n.first + 1 for ns in ingest_ranges(objects).values() for n in ns)
        if archived < len(all_messages):
            in_flight += 1  # the kill lands with produced messages not yet uploaded
        archive.kill()
        archive = stores.start("archive", f"archive-{k + 1}", FAST)
        archive.wait_ready(partitions=3)
    wait_for(lambda: read_all(archive.url, series, now) == model, 30, "all points after kills")
    assert_each_offset_once(objects, partition_ends(all_messages, 3))
    assert in_flight >= kills // 3, f"only {in_flight} kills hit data in flight"


def test_compaction_under_concurrent_reads_never_changes_an_answer(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    # Small objects: many ingest objects per partition for compaction to merge.
    archive = stores.start("archive", "archive-c", {**FAST, "STRATA_ARCHIVE_FLUSH_POINTS": "60"})
    archive.wait_ready(partitions=3)
    now = int(time.time())
    series = series_set()
    messages, model = workload(random.Random(11), series, now, 80)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    wait_for(lambda: read_all(archive.url, series, now) == model, 30, "all points archived")
    objects = LocalDirStore(Path(strata_env["STRATA_DATA_DIR"]) / "archive" / "objects")
    raw_before = sum(1 for n in Catalog(objects).family(Family.POINTS) if not n.compacted)
    stop = threading.Event()
    reads: list[bool] = []

    def reader() -> None:
        while not stop.is_set():
            reads.append(read_all(archive.url, series, now) == model)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(2):
            out = run_compact(strata_env)
            assert json.loads(out.splitlines()[-1])["skipped"] == 0
    finally:
        stop.set()
        t.join()
    assert len(reads) >= 3 and all(reads), f"{reads.count(False)} of {len(reads)} reads differed"
    names = Catalog(objects).family(Family.POINTS)
    assert raw_before >= 6 and all(n.compacted for n in names)
    assert Catalog(objects).family(Family.ROLLUPS_1H)
    assert_hours(archive.url, series, model, now)


def run_compact(env: dict[str, str], extra: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stores.archive", "compact", "--progress"],
        env={**os.environ, **env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "progress" in proc.stdout
    return proc.stdout


def test_retention_removes_expired_data_only(stores: Stores, strata_env: dict[str, str]) -> None:
    archive = stores.start("archive", "archive-r", FAST)
    archive.wait_ready(partitions=3)
    now = int(time.time())
    acme = make_series("acme", "cpu.user", "host:a")
    globex = make_series("globex", "cpu.user", "host:g")
    old, new = now - 100 * 86400, now - 3600
    produce(
        strata_env,
        strata_env["STRATA_TOPIC_POINTS"],
        [
            (acme.key, points_message(acme, [old, new], [1.0, 2.0])),
            (globex.key, points_message(globex, [old, new], [3.0, 4.0])),
        ],
    )
    sids = [acme.sid, globex.sid]
    everything = {
        (acme.sid, old): 1.0,
        (acme.sid, new): 2.0,
        (globex.sid, old): 3.0,
        (globex.sid, new): 4.0,
    }
    wait_for(lambda: read_points(archive.url, sids, 0, now) == everything, 30, "archived")
    run_compact(strata_env, {"STRATA_ARCHIVE_RETENTION_OVERRIDES": json.dumps({"acme": 30})})
    assert read_points(archive.url, sids, 0, now - 30 * 86400) == {(globex.sid, old): 3.0}
    assert read_points(archive.url, sids, now - 7200, now) == {
        (acme.sid, new): 2.0,
        (globex.sid, new): 4.0,
    }
    # The acme day object of 100 days ago is gone entirely; globex keeps its own.
    run_compact(strata_env, {"STRATA_ARCHIVE_RETENTION_DAYS": "30"})
    assert read_points(archive.url, sids, 0, now - 30 * 86400) == {}
    objects = LocalDirStore(Path(strata_env["STRATA_DATA_DIR"]) / "archive" / "objects")
    days = {n.day for n in Catalog(objects).family(Family.POINTS)}
    assert days == {new - new % 86400}


def test_s3_outage_retries_and_commits_only_after_upload(
    stores: Stores, strata_env: dict[str, str], server_logs: Path
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = "outage"
    moto = start_moto(server_logs / f"moto-{port}", port=port)
    try:
        s3_store(endpoint, bucket).ensure_bucket()
        env = {**FAST, **s3_env(endpoint, bucket, create=False)}
        archive = stores.start("archive", "archive-s3", env)
        archive.wait_ready(partitions=3)
        moto.stop()  # S3 goes away (moto keeps objects in memory: the bucket is gone too)
        now = int(time.time())
        series = series_set()
        messages, model = workload(random.Random(5), series, now, 30)
        produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
        server = archive.server
        assert server is not None
        wait_for(lambda: "failed" in server.log_tail(50000), 20, "failed uploads")
        time.sleep(2.0)
        assert committed(strata_env, 3) == {}, "offsets committed before any upload"
        moto = start_moto(server_logs / f"moto-{port}-again", port=port)
        s3 = s3_store(endpoint, bucket)
        s3.ensure_bucket()
        wait_for(lambda: read_all(archive.url, series, now) == model, 40, "uploads after outage")
        ends = partition_ends(messages, 3)
        wait_for(lambda: committed(strata_env, 3) == ends, 15, "offsets committed")
        assert_each_offset_once(s3, ends)
        assert server.alive()
    finally:
        stores.stop_all()
        moto.stop()


def test_bad_read_requests_name_the_field(stores: Stores) -> None:
    archive = stores.start("archive", "archive-bad", FAST)
    archive.wait_ready(partitions=3)
    for body, field in [
        ({"sids": [1], "from": 10, "to": 5}, "from"),
        ({"sids": [-1], "from": 1, "to": 5}, "sids"),
        ({"sids": [1], "from": 1, "to": 5, "resolution": "5m"}, "resolution"),
    ]:
        resp = httpx.post(f"{archive.url}/v1/points/read", json=body, timeout=5.0)
        assert resp.status_code == 400
        assert any(e.startswith(field) for e in resp.json()["errors"]), resp.text
