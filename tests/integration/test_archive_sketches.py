"""The archive's sketch tier in real processes: tansu, Valkey, moto S3, ``python -m
stores.archive`` (and ``stores.rocks`` / ``stores.ram`` for the stitched query).

A model keeps every value produced per (sid, ts). The archive's ``POST /v1/sketches/read``
must return, per (sid, bucket), bin for bin the sketch of that bucket's values — a sketch
merged twice or lost shows in counts and bins — after seeded SIGKILLs during ingestion, on
the local directory and on S3, and again after compaction. The query part stitches the three
sketch tiers through the query service's own client and planner (``HttpStoreClient``,
``stitched_sketches``) and checks p99 and counts against the exact values.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from query.distributions import stitched_sketches
from query.stores_client import HttpStoreClient, RegistryView, kind_topics
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import Family
from stores.archive.objectstore import LocalDirStore, ObjectStore, S3Config, S3Store
from strata.codec import HeartbeatMarker, SketchMessage, encode_heartbeat, encode_sketches
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, Registry
from strata.rollup import HOUR
from strata.series_id import series_id
from strata.servers import RunningServer
from strata.settings import CommonSettings
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import decode_batch
from strata.topics import ensure_topics
from tests.integration.store_support import StoreProcess, Stores, stores_fixture, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 3
DAY = 86400
ALPHA = 0.01
FAST = {
    "STRATA_ARCHIVE_FLUSH_SECONDS": "0.5",
    "STRATA_ARCHIVE_FLUSH_SKETCHES": "150",
    "STRATA_ARCHIVE_COMPACT_INTERVAL_SECONDS": "0",
    "STRATA_ARCHIVE_RETRY_MAX_SECONDS": "1",
    "STRATA_BATCH_MAX_MESSAGES": "20",
    "STRATA_POLL_TIMEOUT_SECONDS": "0.2",
    "STRATA_REGISTRY_INTERVAL_SECONDS": "0.5",
}
Key = tuple[int, int]


@pytest.fixture
def env(strata_env: dict[str, str]) -> dict[str, str]:
    """The test's environment with a sketches topic of its own."""
    return {**strata_env, "STRATA_TOPIC_SKETCHES": f"sketches-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def stores(env: dict[str, str], tmp_path: Path) -> Iterator[Stores]:
    fields = {k.removeprefix("STRATA_").lower(): v for k, v in env.items()}
    ensure_topics(CommonSettings.model_validate(fields))
    yield from stores_fixture(env, tmp_path)


class Model:
    def __init__(self) -> None:
        self.values: dict[Key, list[float]] = defaultdict(list)

    def expected(self, start: int, end: int, step: int) -> dict[Key, Sketch]:
        buckets: dict[Key, list[float]] = defaultdict(list)
        for (sid, ts), vs in self.values.items():
            if start <= ts - ts % step <= end:
                buckets[(sid, ts - ts % step)] += vs
        return {k: Sketch.from_values(v) for k, v in buckets.items()}

    def between(self, start: int, end: int) -> list[float]:
        return [v for (_, ts), vs in self.values.items() if start <= ts <= end for v in vs]


SERIES = [
    (org, metric, host)
    for org in ("acme", "globex")
    for metric in ("req.latency", "db.latency")
    for host in ("h0", "h1")
]


def sid_of(org: str, metric: str, host: str) -> int:
    return series_id(org, metric, (f"host:{host}",))


def workload(
    rng: random.Random, now: int, messages: int, span: int, model: Model
) -> list[tuple[bytes, bytes]]:
    """Sketch messages of one (org, metric) each: a few series, timestamps over ``span``
    seconds before ``now``, log-normal latencies (one (sid, ts) may recur across messages)."""
    out = []
    for _ in range(messages):
        org, metric, _ = rng.choice(SERIES)
        hosts = rng.sample(("h0", "h1"), rng.randint(1, 2))
        sids, stamps, offsets, flat = [], [], [0], []
        for host in hosts:
            for _ in range(rng.randint(1, 4)):
                ts = now - rng.randrange(60, span)
                vs = [round(rng.lognormvariate(3, 1), 3) for _ in range(rng.randint(1, 12))]
                sid = sid_of(org, metric, host)
                model.values[(sid, ts)] += vs
                sids.append(sid)
                stamps.append(ts)
                flat += vs
                offsets.append(len(flat))
        batch = SketchBatch.from_ragged(SketchParams(), sids, stamps, offsets, flat)
        out.append((partition_key(org, metric), encode_sketches(SketchMessage(org, metric, batch))))
    return out


def produce(env: dict[str, str], messages: list[tuple[bytes, bytes]]) -> None:
    from tests.integration.store_support import produce as produce_to

    produce_to(env, env["STRATA_TOPIC_SKETCHES"], messages)


def markers(now_ms: int) -> list[tuple[bytes, bytes]]:
    """One heartbeat marker per partition (keys chosen to land on each)."""
    out: dict[int, tuple[bytes, bytes]] = {}
    for i in itertools.count():
        key = f"hb|{i}".encode()
        out.setdefault(
            partition_for(key, PARTITIONS), (key, encode_heartbeat(HeartbeatMarker(now_ms, now_ms)))
        )
        if len(out) == PARTITIONS:
            return list(out.values())
    raise AssertionError("unreachable")


def read(url: str, start: int, end: int, resolution: str) -> dict[Key, Sketch]:
    sids = sorted({sid_of(*s) for s in SERIES})
    resp = httpx.post(
        f"{url}/v1/sketches/read",
        json={"sids": sids, "from": start, "to": end, "resolution": resolution},
        timeout=20.0,
    )
    assert resp.status_code == 200, resp.text
    b = decode_batch(resp.content)
    return {(int(s), int(t)): b.row(i) for i, (s, t) in enumerate(zip(b.sid, b.ts, strict=True))}


def same(got: dict[Key, Sketch], want: dict[Key, Sketch]) -> str | None:
    """None if equal bin for bin (sum to rounding), else the first difference."""
    if sorted(got) != sorted(want):
        return f"{len(got)} rows vs {len(want)}: {sorted(set(got) ^ set(want))[:3]}"
    for key, w in want.items():
        g = got[key]
        if (g.count, g.zero_count, g.min, g.max) != (w.count, w.zero_count, w.min, w.max):
            return f"{key}: count {g.count} vs {w.count}"
        bins = (g.pos_keys.tolist(), g.pos_counts.tolist(), g.neg_keys.tolist())
        if bins != (w.pos_keys.tolist(), w.pos_counts.tolist(), w.neg_keys.tolist()):
            return f"{key}: bins differ"
        if not math.isclose(g.sum, w.sum, rel_tol=1e-12, abs_tol=1e-9):
            return f"{key}: sum {g.sum} vs {w.sum}"
    return None


def assert_reads(url: str, model: Model, now: int, timeout: float) -> None:
    span = (now - 3 * DAY, now)
    for resolution, step in (("raw", 1), ("1h", HOUR)):
        lo = span[0] - span[0] % step

        def matches(resolution: str = resolution, step: int = step, lo: int = lo) -> bool:
            return same(read(url, lo, now, resolution), model.expected(lo, now, step)) is None

        try:
            wait_for(matches, timeout, f"{resolution} sketches equal to the model")
        except AssertionError:
            diff = same(read(url, lo, now, resolution), model.expected(lo, now, step))
            raise AssertionError(f"{resolution}: {diff}") from None


def each_offset_once(objects: ObjectStore, ends: dict[int, int]) -> None:
    """Ingest objects of every partition are disjoint (a message in two objects would be
    merged twice) and the last ends at the partition's last sketch message."""
    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for n in Catalog(objects).family(Family.SKETCHES):
        assert not n.compacted
        by_partition[n.partition].append((n.first, n.last))
    for p, ranges in by_partition.items():
        ranges.sort()
        for a, b in itertools.pairwise(ranges):
            assert a[1] < b[0], f"p{p}: {a} overlaps {b}"
        assert ranges[-1][1] == ends[p] - 1
    assert set(by_partition) == set(ends)


def s3(moto: RunningServer, bucket: str) -> tuple[dict[str, str], ObjectStore]:
    endpoint = f"http://{moto.address}"
    env = {
        "STRATA_ARCHIVE_BACKEND": "s3",
        "STRATA_ARCHIVE_S3_ENDPOINT_URL": endpoint,
        "STRATA_ARCHIVE_S3_BUCKET": bucket,
        "STRATA_ARCHIVE_S3_PREFIX": "arch",
        "STRATA_ARCHIVE_S3_ACCESS_KEY_ID": "testing",
        "STRATA_ARCHIVE_S3_SECRET_ACCESS_KEY": "testing",
        "STRATA_ARCHIVE_S3_CREATE_BUCKET": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    store = S3Store(S3Config(endpoint, bucket, "arch", "testing", "testing", "us-east-1"))
    return env, store


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkill_mid_ingest_counts_stay_exact(
    stores: Stores, env: dict[str, str], backend: str, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("STRATA_CHAOS_SEED", "20261122"))
    kills = 2
    print(f"chaos seed {seed}, {kills} kills, {backend}")
    rng = random.Random(seed)
    extra = dict(FAST)
    if backend == "s3":
        s3_env, objects = s3(request.getfixturevalue("moto"), f"sk-{uuid.uuid4().hex[:10]}")
        extra.update(s3_env)
    else:
        objects = LocalDirStore(Path(env["STRATA_DATA_DIR"]) / "archive" / "objects")
    now = int(time.time())
    model = Model()
    sent: list[tuple[bytes, bytes]] = []
    archive = stores.start("archive", "archive-0", extra)
    archive.wait_ready()
    in_flight = 0
    for k in range(kills + 1):
        batch = workload(rng, now, rng.randrange(15, 40), 3 * DAY, model)
        sent += batch
        produce(env, batch)
        if k == kills:
            break
        time.sleep(rng.uniform(0.05, 0.6))
        uploaded = sum(n.last - n.first + 1 for n in Catalog(objects).family(Family.SKETCHES))
        in_flight += uploaded < len(sent)  # killed with produced messages not yet uploaded
        archive.kill()
        archive = stores.start("archive", f"archive-{k + 1}", extra)
        archive.wait_ready()
    # Markers after the data: the sketch loop's watermarks pass them once all is uploaded.
    mark_ms = int(time.time() * 1000)
    produce(env, markers(mark_ms))
    assert_reads(archive.url, model, now, 40.0)
    data_ends: dict[int, int] = defaultdict(int)  # next offset after the last sketch message
    for key, _ in sent:
        data_ends[partition_for(key, PARTITIONS)] += 1
    each_offset_once(objects, data_ends)
    assert in_flight >= 1, "no kill hit messages in flight"

    def registered() -> bool:
        reg = registration(archive, "archive-sketches")
        return (
            reg is not None
            and reg.topic == env["STRATA_TOPIC_SKETCHES"]
            and reg.offsets == dict(data_ends)  # committed: uploaded messages only
            and set(reg.coverage) == set(range(PARTITIONS))
            and all(reg.watermarks.get(p, [0])[0] >= mark_ms for p in range(PARTITIONS))
        )

    try:
        wait_for(registered, 15, "archive-sketches registered: offsets, coverage, watermarks")
    except AssertionError:
        raise AssertionError(f"{registration(archive, 'archive-sketches')} {data_ends}") from None
    # Compaction, against the same backend while the archive serves, changes no answer.
    report = Compactor(Catalog(objects), Retention(10**9)).run()
    assert report.skipped == 0 and report.outputs >= 3
    assert all(n.compacted for n in Catalog(objects).family(Family.SKETCHES))
    assert Catalog(objects).family(Family.SKETCHES_1H)
    assert_reads(archive.url, model, now, 5.0)


def registration(proc: StoreProcess, kind: str) -> Registration | None:
    """The registry entry of ``kind`` published by ``proc``."""
    registry = Registry(proc.env["STRATA_REDIS_URL"])
    try:
        return next((r for r in registry.discover(kind) if r.instance == proc.instance), None)
    finally:
        registry.close()


def wait_covering(proc: StoreProcess, kind: str, partition: int) -> None:
    def covered() -> bool:
        reg = registration(proc, kind)
        return reg is not None and partition in reg.coverage

    wait_for(covered, 60, f"{kind} coverage of partition {partition}")


def test_query_stitches_archive_rocks_and_ram_without_double_counting(
    stores: Stores, env: dict[str, str]
) -> None:
    """Sketches over the last 6 days: only the archive holds the oldest 4 (rocks keeps
    today and yesterday, RAM 15 minutes). A p99 over an archive-only range and over a range
    spanning all three tiers equals the exact p99 of the values within alpha, counts exact."""
    rng = random.Random(7)
    now = int(time.time())
    model = Model()
    org, metric = "acme", "req.latency"
    produce(env, workload(rng, now, 120, 6 * DAY, model))
    archive = stores.start("archive", "archive-q", FAST)
    rocks = stores.start("rocks", "rocks-q", {"STRATA_RETENTION_DAYS": "1"})
    ram = stores.start("ram", "ram-q", {"STRATA_WINDOW_HOURS": "0.25"})
    part = partition_for(partition_key(org, metric), PARTITIONS)
    for proc, kind in (
        (archive, "archive-sketches"),
        (rocks, "rocks-sketches"),
        (ram, "ram-sketches"),
    ):
        wait_covering(proc, kind, part)
    fields = {k.removeprefix("STRATA_").lower(): v for k, v in env.items()}
    registry = Registry(env["STRATA_REDIS_URL"])
    topics = kind_topics(CommonSettings.model_validate(fields))
    view = RegistryView(registry, 0.0, topics=topics)
    sids = np.array(sorted(sid_of(org, metric, h) for h in ("h0", "h1")), np.uint64)
    mine = {(s, ts): vs for (s, ts), vs in model.values.items() if s in set(sids.tolist())}
    with httpx.Client(timeout=20.0) as http, contextlib.closing(registry):
        client = HttpStoreClient(view, http)
        for start, end, tiers in (
            (now - 6 * DAY, now - 3 * DAY, ("archive",)),
            (now - 5 * DAY, now, ("archive", "rocks", "ram")),
        ):
            values = [v for (_, ts), vs in mine.items() if start <= ts <= end for v in vs]

            def exact(start: int = start, end: int = end, values: list[float] = values) -> bool:
                rows, _ = stitched_sketches(client, org, metric, sids, start, end, 3600)
                return rows.merge_all().count == len(values)

            wait_for(exact, 30, f"every sketch of [{start}, {end}] served once")
            rows, used = stitched_sketches(client, org, metric, sids, start, end, 3600)
            assert used == tiers
            merged = rows.merge_all()
            assert merged.count == len(values) and merged.sum == pytest.approx(math.fsum(values))
            truth = sorted(values)[math.floor(0.99 * (len(values) - 1))]
            assert abs(merged.quantile(0.99) - truth) <= ALPHA * truth
            assert merged.quantile(0.99) == Sketch.from_values(values).quantile(0.99)
