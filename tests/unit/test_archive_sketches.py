"""The archive's sketch tier on a local directory, against a model of every value sent.

No Kafka here: records are handed to the writer as the consumer loop would, including
redeliveries, writer restarts and compactions that crash between any two object writes.
The model keeps every value per (sid, ts); a read's expected answer is, per (sid, bucket),
:meth:`Sketch.from_values` of that bucket's values — one sketch of all values, built
independently of the archive's merges — so a sketch merged twice or lost shows in the
counts and bins. The local directory is the real embedded backend; the wrapper around it
only injects a crash.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stores.archive.api import create_app
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import DAY, Family, ObjectName
from stores.archive.objectstore import LocalDirStore, ObjectInfo, ObjectStore, ObjectStoreError
from stores.archive.parquet_io import read_table
from stores.archive.reader import ArchiveReader
from stores.archive.service import archive_metrics, object_totals
from stores.archive.sketch_io import table_sketches
from stores.archive.sketch_plan import disjoint, select
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.runtime.applied import OFFSET_BEGINNING
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard
from stores.runtime.store import Record
from strata.codec import SketchMessage, decode_sketches, encode_sketches
from strata.rollup import HOUR, MINUTE
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import decode_batch

T0 = 1_763_769_600  # a UTC midnight
NOW = T0 + 3 * DAY + 12 * HOUR
SIDS = [1, 2, 3, 11, 12]
Key = tuple[int, int]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Model:
    """Every value sent, per (sid, ts); orgs by sid (acme 1-3, globex 11-12)."""

    def __init__(self) -> None:
        self.values: dict[Key, list[float]] = defaultdict(list)

    def add(self, batch: SketchBatch, values: list[list[float]]) -> None:
        for i, vs in enumerate(values):
            self.values[(int(batch.sid[i]), int(batch.ts[i]))] += vs

    def expected(self, start: int, end: int, step: int) -> dict[Key, Sketch]:
        buckets: dict[Key, list[float]] = defaultdict(list)
        for (sid, ts), vs in self.values.items():
            if start <= ts - ts % step <= end:
                buckets[(sid, ts - ts % step)] += vs
        return {k: Sketch.from_values(v) for k, v in buckets.items()}

    def expire(self, cutoffs: dict[int, int]) -> None:
        """Drop values older than their sid's cutoff."""
        for key in [k for k in self.values if k[1] < cutoffs[k[0]]]:
            del self.values[key]


def answer(batch: SketchBatch) -> dict[Key, Sketch]:
    keys = list(zip(batch.sid.tolist(), batch.ts.tolist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "sorted, one row per bucket"
    return {k: batch.row(i) for i, k in enumerate(keys)}


def assert_same(got: dict[Key, Sketch], want: dict[Key, Sketch], what: str = "") -> None:
    assert sorted(got) == sorted(want), what
    for key, w in want.items():
        g = got[key]
        assert (g.count, g.zero_count, g.min, g.max) == (w.count, w.zero_count, w.min, w.max), (
            what,
            key,
        )
        assert g.pos_keys.tolist() == w.pos_keys.tolist(), (what, key)
        assert g.pos_counts.tolist() == w.pos_counts.tolist(), (what, key)
        assert g.neg_keys.tolist() == w.neg_keys.tolist(), (what, key)
        assert g.neg_counts.tolist() == w.neg_counts.tolist(), (what, key)
        assert math.isclose(g.sum, w.sum, rel_tol=1e-12, abs_tol=1e-9), (what, key)


def messages(
    seed: int, n: int, span: int = 3 * DAY
) -> Iterator[tuple[SketchMessage, list[list[float]]]]:
    """Sketch messages of (org, metric) batches, ts in [T0, T0 + span), repeated labels."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        org = str(rng.choice(["acme", "globex"]))
        rows = int(rng.integers(1, 12))
        sid = rng.choice([1, 2, 3] if org == "acme" else [11, 12], rows).astype(np.uint64)
        ts = T0 + rng.integers(0, span, rows)
        sizes = rng.integers(1, 9, rows)
        values = [np.round(rng.lognormal(3, 1, k), 3).tolist() for k in sizes.tolist()]
        for vs in values:
            if rng.random() < 0.1:
                vs[0] = -vs[0]
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        flat = [v for vs in values for v in vs]
        batch = SketchBatch.from_ragged(SketchParams(), sid, ts, offsets, flat)
        # Through the wire codec, as the consumer hands it over.
        yield decode_sketches(encode_sketches(SketchMessage(org, "lat", batch))), values


def writer(objects: ObjectStore, clock: Clock, flush_rows: int = 40) -> ArchiveSketchStore:
    store = ArchiveSketchStore(
        "sketches",
        Catalog(objects),
        flush_rows=flush_rows,
        flush_seconds=3600.0,
        max_buffer_rows=10_000,
        clock=clock,
        sleep=lambda _s: None,
    )
    store.bind_topic("TID")
    return store


def read(objects: ObjectStore, start: int, end: int, step: int) -> dict[Key, Sketch]:
    reader = ArchiveSketchReader(Catalog(objects))
    return answer(reader.read_sketches(np.array(SIDS, np.uint64), start, end, step))


def assert_reads(objects: ObjectStore, model: Model, what: str) -> None:
    for step, (start, end) in {
        1: (T0, T0 + 3 * DAY),
        MINUTE: (T0 + 600, T0 + 2 * DAY + 3600),
        HOUR: (T0, T0 + 3 * DAY),
    }.items():
        want = model.expected(start, end, step)
        assert_same(read(objects, start, end, step), want, f"{what} step {step}")


def test_writer_skips_redelivered_offsets_and_resumes_after_its_objects(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock)
    assert store.start_position(0, 0).offset == OFFSET_BEGINNING
    model = Model()
    sent = list(messages(1, 30))
    records = [Record(0, i, (T0 + i) * 1000, m) for i, (m, _) in enumerate(sent)]
    for m, values in sent:
        model.add(m.batch, values)
    store.apply(records[:10])
    store.apply(records[5:20])  # a redelivery overlapping what is buffered
    store.make_durable()
    store.apply(records[:20])  # redelivered again after uploads
    assert store.flush_all()
    names = Catalog(objects).family(Family.SKETCHES)
    assert [(n.first, n.last) for n in names][-1][1] == 19
    # A restarted writer resumes after the highest offset named, whatever Kafka redelivers.
    again = writer(objects, clock)
    assert again.start_position(0, 0).offset == 20
    again.apply(records[15:])
    assert again.flush_all()
    assert again.durable_offsets() == {0: 30}
    assert_reads(objects, model, "after redeliveries")
    ranges = sorted((n.first, n.last) for n in Catalog(objects).family(Family.SKETCHES))
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), ranges
    assert ranges[0][0] == 0 and ranges[-1][1] == 29
    # Coverage: the oldest archived sketch's hour up to now once caught up.
    again.caught_up(0, 30)
    oldest = min(t for _, t in model.values)
    assert again.coverage([0], NOW) == {0: [oldest - oldest % HOUR, NOW]}


class Crash(Exception):
    """Injected: the process died here."""


class CrashingStore(ObjectStore):
    """The local directory, dying (raising :class:`Crash`) before its ``n``-th write or
    delete once armed."""

    def __init__(self, inner: LocalDirStore) -> None:
        self.inner = inner
        self.countdown: int | None = None
        self.hits = 0

    def _tick(self) -> None:
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown < 0:
                self.countdown = None
                self.hits += 1
                raise Crash

    def put(self, key: str, data: bytes) -> None:
        self._tick()
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def tail(self, key: str, size: int) -> bytes:
        return self.inner.tail(key, size)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._tick()
        self.inner.delete(key)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_crashes_anywhere_never_count_a_sketch_twice(tmp_path: Path, seed: int) -> None:
    """Seeded steps: ingest (with redeliveries), writer restarts, and compactions that die
    after a random number of object writes/deletes; every read (raw, 1 m, 1 h) equals the
    model after every step."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    objects = CrashingStore(LocalDirStore(tmp_path))
    clock = Clock(NOW)
    model = Model()
    store = writer(objects.inner, clock, flush_rows=rng.choice([15, 40]))
    offset = 0
    feed = messages(seed, 10_000)
    crashed_mid = 0
    windows = 0  # reads while a compacted day held an ingest object still listed
    for step in range(14):
        op = rng.choice(["ingest", "ingest", "restart", "compact", "compact"])
        if op == "ingest":
            batch = [next(feed) for _ in range(rng.randrange(3, 12))]
            records = [Record(0, offset + i, 0, m) for i, (m, _) in enumerate(batch)]
            for m, values in batch:
                model.add(m.batch, values)
            store.apply(records)
            store.apply(records[: rng.randrange(len(records))])  # redelivered
            store.flush_all()
            offset += len(records)
        elif op == "restart":
            store = writer(objects.inner, clock)
            start = store.start_position(0, 0).offset
            assert start == (offset or OFFSET_BEGINNING), "resumes after the highest offset named"
        else:
            objects.countdown = rng.randrange(0, 12)
            try:
                Compactor(Catalog(objects), Retention(10**9), clock=clock).run()
            except Crash:
                crashed_mid += 1
            objects.countdown = None
        sel = select(Catalog(objects.inner).family(Family.SKETCHES))
        windows += any(sel.held_days(n) for n in sel.ingest)
        assert_reads(objects.inner, model, f"step {step} ({op})")
    print(f"{crashed_mid} compactions died half-way, {windows} reads inside their window")
    # A last clean compaction leaves compacted objects only, and still the same answers.
    report = Compactor(Catalog(objects.inner), Retention(10**9), clock=clock).run()
    assert report.skipped == 0
    assert all(n.compacted for n in Catalog(objects.inner).family(Family.SKETCHES))
    assert_reads(objects.inner, model, "after the last compaction")
    assert windows >= 1, "no read happened between a compaction's outputs and its deletes"


def test_compaction_merges_every_input_once_and_writes_rollups(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock, flush_rows=20)
    model = Model()
    sent = list(messages(9, 40))
    for m, values in sent:
        model.add(m.batch, values)
    records = [Record(0, i, 0, m) for i, (m, _) in enumerate(sent)]
    for i in range(0, len(records), 5):
        store.apply(records[i : i + 5])
        store.make_durable()  # flushes at 20 rows
    store.flush_all()
    catalog = Catalog(objects)
    inputs = catalog.family(Family.SKETCHES)
    assert len(inputs) >= 4 and not any(n.compacted for n in inputs)
    report = Compactor(catalog, Retention(10**9), clock=clock).run()
    assert report.inputs == len(inputs) and report.outputs == 3  # three days
    days = catalog.family(Family.SKETCHES)
    assert sorted(n.day or 0 for n in days) == [T0, T0 + DAY, T0 + 2 * DAY]
    assert all((n.first, n.last) == (0, 39) for n in days)
    # Each compacted object and each rollup object, read directly, is bin for bin the
    # sketch of every value sent for its rows.
    for name in days:
        assert name.day is not None
        raw = table_sketches(read_table(objects.get(name.key())))
        assert_same(answer(raw), model.expected(name.day, name.day + DAY - 1, 1), "compacted")
        for fam, step in ((Family.SKETCHES_1M, MINUTE), (Family.SKETCHES_1H, HOUR)):
            key = ObjectName(fam, name.topic_id, 0, name.first, name.last, name.day, name.digest)
            rows = table_sketches(read_table(objects.get(key.key())))
            assert_same(answer(rows), model.expected(name.day, name.day + DAY - 1, step), fam.value)
    # Late data for a compacted day: rollup objects and ingest rows merge, each once.
    late = list(messages(10, 5, span=DAY))
    for m, values in late:
        model.add(m.batch, values)
    store.apply([Record(0, 40 + i, 0, m) for i, (m, _) in enumerate(late)])
    store.flush_all()
    assert_reads(objects, model, "late data beside compacted days")
    Compactor(catalog, Retention(10**9), clock=clock).run()
    assert_reads(objects, model, "late data compacted")
    assert all((n.first, n.last) == (0, 44) for n in catalog.family(Family.SKETCHES) if n.day == T0)


def test_retention_per_org_and_the_highest_offset_survives(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock)
    model = Model()
    sent = list(messages(4, 25))
    for m, values in sent:
        model.add(m.batch, values)
    store.apply([Record(0, i, 0, m) for i, (m, _) in enumerate(sent)])
    store.flush_all()
    # globex keeps one day (older rows expire), acme everything.
    retention = Retention(100 * DAY, {"globex": DAY})
    report = Compactor(Catalog(objects), retention, clock=clock).run()
    model.expire({sid: NOW - (DAY if sid > 10 else 100 * DAY) for sid in SIDS})
    assert report.expired_rows > 0
    assert_reads(objects, model, "after retention")
    # Everything expires: the day objects go, a progress marker keeps offset 24 named.
    Compactor(Catalog(objects), Retention(60), clock=clock).run()
    assert Catalog(objects).family(Family.SKETCHES) == []
    assert read(objects, T0, NOW, 1) == {}
    assert writer(objects, clock).start_position(0, 0).offset == 25


def names(*spans: tuple[int, int], day: int | None = None) -> list[ObjectName]:
    dig = "0a0b0c0d" if day is not None else ""
    return [ObjectName(Family.SKETCHES, "t", 0, a, b, day, dig) for a, b in spans]


def test_selection_by_offsets() -> None:
    # Two writers of one partition at once (a stalled one uploading late): the disjoint
    # set covering most offsets wins, an object inside it is a duplicate.
    stale, b1, b2 = names((10, 19), (10, 14), (15, 25))
    r = disjoint([stale, b1, b2])
    assert (r.chosen, r.inside, r.conflicts) == ([b1, b2], [stale], [])
    short = names((10, 12))[0]
    r = disjoint([stale, short])
    assert (r.chosen, r.inside) == ([stale], [short])
    # A compaction's output listed with its inputs: the days hold them.
    out = names((0, 29), day=T0)[0]
    old = names((0, 9), day=T0)[0]
    i1, i2, i3 = names((10, 19), (20, 29), (30, 39))
    sel = select([out, old, i1, i2, i3])
    assert sel.days == {T0: [out]} and sel.superseded == [old] and sel.conflicts == []
    assert sel.held_days(i1) == {T0} and sel.held_days(i3) == frozenset()
    # An ingest object only partly inside a day's range cannot be placed: a conflict.
    odd = names((25, 34))[0]
    assert select([out, odd]).conflicts == [odd]


def test_read_api_guard_step_and_outage(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock)
    batch = SketchBatch.from_values(
        SketchParams(), [7, 7, 8], [T0 + 70, T0 + 125, T0 + 125], [1.0, 2.0, 3.0]
    )
    store.apply([Record(0, 0, T0 * 1000, SketchMessage("acme", "lat", batch))])
    store.flush_all()
    own = Ownership()
    own.assign({0: 1})
    store.caught_up(0, 1)
    guard = ServingGuard(own, store.coverage, clock=clock)
    app = create_app(
        ArchiveReader(Catalog(objects)),
        Ownership(),
        sketches=(ArchiveSketchReader(Catalog(objects)), guard),
    )
    client = TestClient(app)
    body = {"sids": [8, 7], "from": T0, "to": T0 + 180, "resolution": "1m", "partition": 0}
    resp = client.post("/v1/sketches/read", json=body)
    assert resp.status_code == 200, resp.text
    got = decode_batch(resp.content)
    assert list(zip(got.sid.tolist(), got.ts.tolist(), strict=True)) == [
        (7, T0 + 60),
        (7, T0 + 120),
        (8, T0 + 120),
    ]
    two = decode_batch(client.post("/v1/sketches/read", json={**body, "step": 180}).content)
    assert two.count.tolist() == [2.0, 1.0]
    assert client.post("/v1/sketches/read", json={**body, "partition": 2}).status_code == 503

    class Down(LocalDirStore):
        def list(self, prefix: str) -> list[ObjectInfo]:
            raise ObjectStoreError("S3 is down")

    broken = create_app(
        ArchiveReader(Catalog(objects)),
        Ownership(),
        sketches=(ArchiveSketchReader(Catalog(Down(tmp_path))), guard),
    )
    resp = TestClient(broken).post("/v1/sketches/read", json=body)
    assert resp.status_code == 503 and "archive unavailable" in resp.text


def test_metrics_count_the_sketch_family_and_writer(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock)
    sent = list(messages(2, 6))
    store.apply([Record(0, i, 0, m) for i, (m, _) in enumerate(sent)])
    store.flush_all()
    Compactor(Catalog(objects), Retention(10**9), clock=clock).run()
    totals = object_totals(objects)
    listed = {
        fam: (len(objects.list(fam + "/")), sum(o.size for o in objects.list(fam + "/")))
        for fam in ("sketches", "sketch-rollups/1m", "sketch-rollups/1h")
    }
    assert {f: totals[f] for f in listed} == listed and listed["sketches"][0] == 3
    assert totals["points"] == (0, 0)
    samples = {
        (s.name, s.labels.get("kind")): s.value
        for fam in archive_metrics(objects, [store]).collect()
        for s in fam.samples
    }
    assert samples[("strata_store_archive_uploads_total", "archive-sketches")] == 1
    assert samples[("strata_store_archive_upload_failures_total", "archive-sketches")] == 0


class CompactAfterList(LocalDirStore):
    """Runs one compaction right after the first ``sketches/`` listing: a reader then holds
    a listing whose ingest objects are gone (deleted) before it reads them."""

    armed = False
    compactions = 0

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = super().list(prefix)
        if self.armed and prefix == f"{Family.SKETCHES.value}/":
            self.armed = False
            Compactor(Catalog(LocalDirStore(self.root)), Retention(10**9), clock=lambda: NOW).run()
            self.compactions += 1
        return out


def test_a_read_listing_objects_compacted_under_it_lists_again(tmp_path: Path) -> None:
    objects = CompactAfterList(tmp_path)
    clock = Clock(NOW)
    store = writer(objects, clock, flush_rows=10)
    model = Model()
    sent = list(messages(6, 20))
    for m, values in sent:
        model.add(m.batch, values)
    for i, (m, _) in enumerate(sent):
        store.apply([Record(0, i, 0, m)])
        store.make_durable()
    store.flush_all()
    for step in (1, HOUR):
        objects.armed = True
        assert_same(read(objects, T0, NOW, step), model.expected(T0, NOW, step), f"step {step}")
    assert objects.compactions == 2
