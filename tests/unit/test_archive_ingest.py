"""Archive writer + reader + compaction on a local directory, against a reference model.

No Kafka here: records are handed to the store as the consumer loop would. The local
directory is the real embedded backend, not a fake.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import DAY, Family
from stores.archive.objectstore import LocalDirStore, ObjectInfo, ObjectStore, ObjectStoreError
from stores.archive.reader import ArchiveReader, Columns
from stores.archive.store import ArchivePointStore
from stores.runtime.applied import OFFSET_BEGINNING
from stores.runtime.store import Record
from strata.codec import PointBatch
from strata.conflict import resolve
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR, MINUTE, Rollups, rollup

Model = dict[tuple[int, int], float]
T0 = 1_700_000_000 - 1_700_000_000 % DAY


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch(
    org: str, metric: str, sid: int, ts: Sequence[int], values: Sequence[float]
) -> PointBatch:
    n = len(ts)
    return PointBatch(
        org,
        metric,
        np.full(n, sid, SID_DTYPE),
        np.array(ts, TS_DTYPE),
        np.array(values, VALUE_DTYPE),
    )


def model_add(model: Model, b: PointBatch) -> None:
    for s, t, v in zip(b.sid.tolist(), b.ts.tolist(), b.value.tolist(), strict=True):
        old = model.get((s, t))
        if old is None:
            model[(s, t)] = v
        else:
            _, _, w = resolve(
                np.array([s, s], SID_DTYPE), np.array([t, t], TS_DTYPE), np.array([old, v])
            )
            model[(s, t)] = float(w[0])


def as_model(cols: Columns) -> Model:
    return {
        (int(s), int(t)): float(v)
        for s, t, v in zip(cols[0].tolist(), cols[1].tolist(), cols[2].tolist(), strict=True)
    }


def model_rollups(model: Model, sids: list[int], lo: int, hi: int, step: int) -> Rollups:
    items = sorted((k, v) for k, v in model.items() if k[0] in sids)
    if not items:
        return Rollups.empty()
    s = np.array([k[0] for k, _ in items], SID_DTYPE)
    t = np.array([k[1] for k, _ in items], TS_DTYPE)
    v = np.array([x for _, x in items], VALUE_DTYPE)
    r = rollup(s, t, v, step)
    keep = (r.bucket >= lo) & (r.bucket <= hi)
    return Rollups(*(getattr(r, f)[keep] for f in Rollups.__slots__))


def assert_rollups_equal(a: Rollups, b: Rollups) -> None:
    for f in Rollups.__slots__:
        x, y = getattr(a, f), getattr(b, f)
        if f == "sum":
            np.testing.assert_allclose(x, y, rtol=1e-12)
        else:
            np.testing.assert_array_equal(x, y, err_msg=f)


def make_store(objects: ObjectStore, clock: Clock, flush_rows: int = 50) -> ArchivePointStore:
    store = ArchivePointStore(
        "points",
        Catalog(objects),
        flush_rows=flush_rows,
        flush_seconds=30.0,
        max_buffer_rows=10_000,
        clock=clock,
        sleep=lambda _s: None,
    )
    store.bind_topic("TID")
    return store


def workload(seed: int, messages: int) -> list[PointBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(messages):
        org = str(rng.choice(["acme", "globex"]))
        metric = str(rng.choice(["cpu", "mem"]))
        sid = (
            int(rng.integers(1, 6))
            + (100 if org == "globex" else 0)
            + (10 if metric == "mem" else 0)
        )
        ts = (T0 + rng.integers(-2 * DAY, DAY, size=int(rng.integers(1, 30)))).tolist()
        vals = np.round(rng.normal(0, 100, size=len(ts)), 1).tolist()
        out.append(batch(org, metric, sid, ts, vals))
    return out


def ingest(store: ArchivePointStore, batches: list[PointBatch], partition: int, start: int) -> None:
    recs = [Record(partition, start + i, 0, b) for i, b in enumerate(batches)]
    for i in range(0, len(recs), 5):  # as the consumer loop would: several batches
        store.apply(recs[i : i + 5])
        store.make_durable()


def all_sids() -> list[int]:
    return [b + o + m for b in range(1, 6) for o in (0, 100) for m in (0, 10)]


def test_serves_what_was_ingested_at_every_resolution(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(T0)
    store = make_store(objects, clock)
    assert store.start_position(0, 0).offset == OFFSET_BEGINNING
    batches = workload(1, 60)
    model: Model = {}
    for b in batches:
        model_add(model, b)
    ingest(store, batches, 0, 0)
    assert store.flush_all()
    reader = ArchiveReader(store.catalog)
    sids = np.array(all_sids(), SID_DTYPE)
    lo, hi = T0 - 3 * DAY, T0 + 2 * DAY
    assert as_model(reader.read_raw(sids, lo, hi)) == model
    for step in (MINUTE, HOUR):
        got = reader.read_rollups(sids, lo, hi, step)
        assert_rollups_equal(got, model_rollups(model, all_sids(), lo, hi, step))
    # Object offsets are consecutive and disjoint; durable offsets say where to resume.
    names = store.catalog.family(Family.POINTS)
    assert names[0].first == 0 and names[-1].last == 59
    assert all(a.last + 1 == b.first for a, b in itertools.pairwise(names))
    assert store.durable_offsets() == {0: 60}
    assert store.start_position(0, 0).offset == 60


def test_replay_rewrites_the_same_objects(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    batches = workload(2, 20)
    store = make_store(objects, Clock(T0), flush_rows=10**9)
    ingest(store, batches, 1, 0)
    store.flush_all()
    before = {o.key: objects.get(o.key) for o in objects.list("")}
    # A crash before the commit: the next instance replays from the committed offset (0)
    # but starts after what the objects say, so nothing is written twice.
    again = make_store(objects, Clock(T0))
    assert again.start_position(1, 0).offset == 20
    ingest(again, batches, 1, 0)  # redelivered records are skipped
    again.flush_all()
    assert {o.key: objects.get(o.key) for o in objects.list("")} == before


class FlakyStore(ObjectStore):
    """Local store whose puts fail while ``down`` (an unreachable S3)."""

    def __init__(self, inner: LocalDirStore) -> None:
        self.inner = inner
        self.down = True

    def put(self, key: str, data: bytes) -> None:
        if self.down:
            raise ObjectStoreError("connection refused")
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def tail(self, key: str, size: int) -> bytes:
        return self.inner.tail(key, size)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def test_failed_uploads_keep_the_buffer_and_commit_nothing(tmp_path: Path) -> None:
    flaky = FlakyStore(LocalDirStore(tmp_path))
    clock = Clock(T0)
    store = make_store(flaky, clock, flush_rows=1)
    batches = workload(3, 10)
    ingest(store, batches, 0, 0)
    assert store.upload_failures >= 1 and store.durable_offsets() == {}
    clock.now += 1000  # past the backoff
    flaky.down = False
    store.idle()
    model: Model = {}
    for b in batches:
        model_add(model, b)
    assert store.durable_offsets() == {0: 10}
    reader = ArchiveReader(store.catalog)
    got = reader.read_raw(np.array(all_sids(), SID_DTYPE), T0 - 3 * DAY, T0 + DAY)
    assert as_model(got) == model


def test_compaction_keeps_answers_and_progress(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    store = make_store(objects, Clock(T0), flush_rows=20)
    batches = workload(4, 80)
    model: Model = {}
    for b in batches:
        model_add(model, b)
    ingest(store, batches[:40], 2, 0)
    store.flush_all()
    reader = ArchiveReader(store.catalog)
    sids = np.array(all_sids(), SID_DTYPE)
    lo, hi = T0 - 3 * DAY, T0 + 2 * DAY
    compactor = Compactor(Catalog(objects), Retention(400 * DAY), clock=Clock(T0 + DAY))
    report = compactor.run()
    assert report.outputs >= 2 and report.inputs >= 2
    names = store.catalog.family(Family.POINTS)
    assert all(n.compacted for n in names)
    assert store.catalog.family(Family.ROLLUPS_1H)
    # More raw objects after compaction; then compact again.
    ingest(store, batches[40:], 2, 40)
    store.flush_all()
    for _ in range(2):
        assert as_model(reader.read_raw(sids, lo, hi)) == model
        assert_rollups_equal(
            reader.read_rollups(sids, lo, hi, HOUR), model_rollups(model, all_sids(), lo, hi, HOUR)
        )
        compactor.run()
    fresh = make_store(objects, Clock(T0))
    assert fresh.start_position(2, 0).offset == 80


def test_retention_per_org(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    store = make_store(objects, Clock(T0), flush_rows=5)
    old = [
        batch("acme", "cpu", 1, [T0 - 40 * DAY], [1.0]),
        batch("globex", "cpu", 101, [T0 - 40 * DAY], [2.0]),
    ]
    new = [batch("acme", "cpu", 1, [T0 - 1], [3.0])]
    ingest(store, [*old, *new], 0, 0)
    store.flush_all()
    compactor = Compactor(
        Catalog(objects), Retention(400 * DAY, {"acme": 30 * DAY}), clock=Clock(T0)
    )
    report = compactor.run()
    assert report.expired_rows == 1
    reader = ArchiveReader(store.catalog)
    sids = np.array([1, 101], SID_DTYPE)
    assert as_model(reader.read_raw(sids, T0 - 50 * DAY, T0)) == {
        (101, T0 - 40 * DAY): 2.0,
        (1, T0 - 1): 3.0,
    }
    # Everything expired: the objects go, and the progress marker keeps the offset.
    Compactor(Catalog(objects), Retention(DAY), clock=Clock(T0 + 10 * DAY)).run()
    assert store.catalog.family(Family.POINTS) == []
    assert as_model(reader.read_raw(sids, 0, T0 + DAY)) == {}
    assert make_store(objects, Clock(T0)).start_position(0, 0).offset == 3


def test_coverage(tmp_path: Path) -> None:
    store = make_store(LocalDirStore(tmp_path), Clock(T0))
    store.start_position(0, 0)
    assert store.coverage([0], T0) == {}
    ingest(store, [batch("acme", "cpu", 1, [T0 - 5000], [1.0])], 0, 0)
    store.flush_all()
    lo = T0 - 5000
    # Not caught up (an empty poll, idle(), is no proof): covered up to the append time of
    # the last uploaded record (0 in these records), not up to now.
    store.idle()
    assert store.coverage([0], T0 + 9) == {0: [lo - lo % HOUR, 0]}
    store.caught_up(0, 1)  # end of partition reached: covered through now
    assert store.coverage([0], T0 + 9) == {0: [lo - lo % HOUR, T0 + 9]}


@pytest.mark.parametrize("resolution", [MINUTE, HOUR])
def test_rollup_reads_only_buckets_in_range(tmp_path: Path, resolution: int) -> None:
    store = make_store(LocalDirStore(tmp_path), Clock(T0))
    ingest(store, [batch("acme", "cpu", 1, [T0 + 5, T0 + resolution + 5], [1.0, 2.0])], 0, 0)
    store.flush_all()
    got = ArchiveReader(store.catalog).read_rollups(
        np.array([1], SID_DTYPE), T0 + resolution, T0 + resolution, resolution
    )
    assert got.bucket.tolist() == [T0 + resolution] and got.sum.tolist() == [2.0]
