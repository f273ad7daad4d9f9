"""Partition-scoped archive reads: a read naming its partition opens only that partition's
objects, and answers exactly what an unscoped read answers for the same series.

The archive holds points and sketches of ten (org, metric) keys spread over four partitions
by the topics' partitioner, under two topic ids (a re-created topic): the old one compacted
(day objects, 1 h point rollups, 1 m / 1 h sketch rollups), the new one still as ingest
objects, so every read plan (rollup objects, raw rows, held days) is exercised. A counting
wrapper around the real backend (the local directory here; S3 on the real moto server in
tests/integration/test_archive_partition_s3.py) records every object opened (whole or
footer) and every listing. Answers are compared with the unscoped read restricted to the
partition's series, bit for bit, and with an independent model of what was sent.
"""

from __future__ import annotations

import builtins
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from stores.archive.api import create_app
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import DAY, Family, compacted_name, ingest_name, parse
from stores.archive.objectstore import LocalDirStore, ObjectInfo, ObjectStore
from stores.archive.reader import ArchiveReader
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.archive.store import ArchivePointStore, ArchiveWriter
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import RawColumns
from stores.runtime.serving import ServingGuard
from stores.runtime.store import Record
from strata.codec import PointBatch, SketchMessage
from strata.partitioning import partition_for, partition_key
from strata.rollup import HOUR, MINUTE, Rollups
from strata.sketch import SketchBatch, SketchParams
from strata.sketch_codec import encode_batch

M = TypeVar("M", bound=Sized)

T0 = 1_763_769_600  # a UTC midnight
NOW = T0 + 5 * DAY
PARTITIONS = 4
KEYS = [
    (org, metric) for org in ("acme", "globex") for metric in ("cpu", "mem", "disk", "net", "io")
]
SIDS_PER_KEY = 3
START, END = T0 - 10, T0 + 4 * DAY
U64 = npt.NDArray[np.uint64]
Key = tuple[int, int]
# A listing of one partition's objects (family, topic id, partition), never a wider one.
PARTITION_PREFIX = re.compile(r"^(points|rollups/1h|sketches|sketch-rollups/1[mh])/[^/]+/p\d{4}/$")


def key_sids(k: int) -> list[int]:
    return [1_000 * (k + 1) + j for j in range(SIDS_PER_KEY)]


def partition_of(k: int) -> int:
    org, metric = KEYS[k]
    return partition_for(partition_key(org, metric), PARTITIONS)


def value(sid: int, ts: int) -> float:
    """One value per (sid, ts): a redelivered point repeats it, so the model is a dict."""
    return float((sid * 7 + ts) % 1_000) / 10


class Counting(ObjectStore):
    """Any backend, recording the keys reads open (whole or by their footer) and the
    prefixes they list key by key."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.opened: builtins.list[str] = []
        self.listed: builtins.list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        self.opened.append(key)
        return self.inner.get(key)

    def tail(self, key: str, size: int) -> bytes:
        self.opened.append(key)
        return self.inner.tail(key, size)

    def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        self.listed.append(prefix)
        return self.inner.list(prefix)

    def children(self, prefix: str) -> builtins.list[str]:
        return self.inner.children(prefix)  # the backend's own one-level listing

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def partitions_opened(self) -> set[int]:
        return {parse(k).partition for k in self.opened}

    def only_partition_listings(self) -> bool:
        return bool(self.listed) and all(PARTITION_PREFIX.match(x) for x in self.listed)


@dataclass
class Archive:
    objects: ObjectStore
    points: dict[tuple[int, int], float]  # (sid, ts) -> value
    sketches: dict[tuple[int, int], list[float]]  # (sid, ts) -> values

    def sids(self, partition: int | None = None) -> U64:
        keys = [k for k in range(len(KEYS)) if partition is None or partition_of(k) == partition]
        return np.array(sorted(s for k in keys for s in key_sids(k)), np.uint64)

    def partitions(self) -> list[int]:
        return sorted({partition_of(k) for k in range(len(KEYS))})

    def counting(self) -> tuple[Counting, Catalog]:
        """A fresh catalog (no footer cached) over a counting view of the objects."""
        store = Counting(self.objects)
        return store, Catalog(store)


def write(store: ArchiveWriter[M], tid: str, messages: list[tuple[int, M]]) -> None:
    store.bind_topic(tid)
    for p in range(PARTITIONS):
        store.start_position(p, 0)
    offsets: Counter[int] = Counter()
    for p, msg in messages:
        store.apply([Record(p, offsets[p], 0, msg)])
        offsets[p] += 1
        store.make_durable()
    assert store.flush_all()


def build(objects: ObjectStore, seed: int = 3) -> Archive:
    """Points and sketches under topic id ``old`` (then compacted) and ``new``."""
    rng = np.random.default_rng(seed)
    points: dict[tuple[int, int], float] = {}
    sketches: dict[tuple[int, int], list[float]] = defaultdict(list)

    def messages(
        first_day: int, days: int, n: int
    ) -> Iterator[tuple[int, PointBatch | SketchMessage]]:
        for _ in range(n):
            for k, (org, metric) in enumerate(KEYS):
                sid = rng.choice(key_sids(k), 12).astype(np.uint64)
                ts = T0 + first_day * DAY + rng.integers(0, days * DAY, 12)
                pairs = list(zip(sid.tolist(), ts.tolist(), strict=True))
                vals = np.array([value(s, t) for s, t in pairs])
                points.update(zip(pairs, vals.tolist(), strict=True))
                yield partition_of(k), PointBatch(org, metric, sid, ts.astype(np.int64), vals)
                sv = rng.lognormal(2, 1, 12)
                for pair, v in zip(pairs, sv.tolist(), strict=True):
                    sketches[pair].append(v)
                batch = SketchBatch.from_values(SketchParams(), sid, ts, sv)
                yield partition_of(k), SketchMessage(org, metric, batch)

    def clock() -> float:
        return float(NOW)

    for tid, first_day, days, n in (("old", 0, 3, 4), ("new", 1, 3, 2)):
        sent = list(messages(first_day, days, n))
        point_msgs = [(p, m) for p, m in sent if isinstance(m, PointBatch)]
        sketch_msgs = [(p, m) for p, m in sent if isinstance(m, SketchMessage)]
        catalog = Catalog(objects)
        kw: dict[str, Any] = {
            "flush_rows": 60,
            "flush_seconds": 3600.0,
            "max_buffer_rows": 10**6,
            "clock": clock,
        }
        # A redelivery of the first messages: the same points again, resolved away.
        write(ArchivePointStore("points", catalog, **kw), tid, point_msgs + point_msgs[:3])
        write(ArchiveSketchStore("sketches", catalog, **kw), tid, sketch_msgs)
        if tid == "old":
            Compactor(Catalog(objects), Retention(10**9), clock=clock).run()
    families = {n.family for n in Catalog(objects).names("")}
    assert families >= {Family.POINTS, Family.ROLLUPS_1H, Family.SKETCHES, Family.SKETCHES_1H}
    archive = Archive(objects, points, dict(sketches))
    assert len(archive.partitions()) >= 2  # else scoping could not skip anything
    return archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return build(LocalDirStore(tmp_path_factory.mktemp("archive")))


def restrict_raw(cols: RawColumns, keep: U64) -> list[tuple[int, int, float]]:
    sid, ts, v = cols
    mask = np.isin(sid, keep)
    return list(zip(sid[mask].tolist(), ts[mask].tolist(), v[mask].tolist(), strict=True))


def restrict_rollups(r: Rollups, keep: U64) -> dict[str, list[float]]:
    mask = np.isin(r.sid, keep)
    fields = ("sid", "bucket", "count", "sum", "min", "max", "last", "last_ts")
    return {f: getattr(r, f)[mask].tolist() for f in fields}


def counts(sid: U64, bucket: npt.NDArray[np.int64], count: npt.ArrayLike) -> dict[Key, float]:
    keys = zip(sid.tolist(), bucket.tolist(), strict=True)
    return dict(zip(keys, np.asarray(count).tolist(), strict=True))


def check_point_reads(archive: Archive, resolution: str) -> None:
    """For every partition: a read naming it opens and lists only its objects, and equals
    the unscoped read restricted to its series, and the model."""
    step = {"raw": 0, "1m": MINUTE, "1h": HOUR}[resolution]

    def read(reader: ArchiveReader, sids: U64, p: int | None) -> RawColumns | Rollups:
        if step == 0:
            return reader.read_raw(sids, START, END, partition=p)
        return reader.read_rollups(sids, START, END, step, partition=p)

    wide, catalog = archive.counting()
    everything = read(ArchiveReader(catalog), archive.sids(), None)
    assert len(wide.partitions_opened()) >= 2
    for p in archive.partitions():
        sids = archive.sids(p)
        mine = set(sids.tolist())
        narrow, catalog = archive.counting()
        got = read(ArchiveReader(catalog), sids, p)
        assert narrow.partitions_opened() == {p}, narrow.opened
        assert narrow.only_partition_listings(), narrow.listed
        assert 0 < len(narrow.opened) < len(wide.opened)
        if isinstance(got, tuple):
            assert isinstance(everything, tuple)
            assert restrict_raw(got, sids) == restrict_raw(everything, sids)
            want = sorted((s, t, v) for (s, t), v in archive.points.items() if s in mine)
            assert restrict_raw(got, sids) == want and want
        else:
            assert isinstance(everything, Rollups)
            assert restrict_rollups(got, sids) == restrict_rollups(everything, sids)
            sent = Counter((s, t - t % step) for s, t in archive.points if s in mine)
            assert counts(got.sid, got.bucket, got.count) == sent and sent


def check_sketch_reads(archive: Archive, resolution: str) -> None:
    """As :func:`check_point_reads`, for sketches (bit for bit, and the counts sent)."""
    step = {"raw": 1, "1m": MINUTE, "1h": HOUR}[resolution]
    wide, catalog = archive.counting()
    everything = ArchiveSketchReader(catalog).read_sketches(archive.sids(), START, END, step)
    assert len(wide.partitions_opened()) >= 2
    for p in archive.partitions():
        sids = archive.sids(p)
        mine = set(sids.tolist())
        narrow, catalog = archive.counting()
        got = ArchiveSketchReader(catalog).read_sketches(sids, START, END, step, partition=p)
        assert narrow.partitions_opened() == {p}, narrow.opened
        assert narrow.only_partition_listings(), narrow.listed
        assert 0 < len(narrow.opened) < len(wide.opened)
        restricted = everything.take(np.flatnonzero(np.isin(everything.sid, sids)))
        assert encode_batch(got) == encode_batch(restricted)
        sent: Counter[Key] = Counter()
        for (s, t), vs in archive.sketches.items():
            if s in mine and START <= t - t % step <= END:
                sent[(s, t - t % step)] += len(vs)
        assert counts(got.sid, got.ts, got.count) == sent and sent


@pytest.mark.parametrize("resolution", ["raw", "1m", "1h"])
def test_point_read_with_partition_opens_only_its_objects_and_answers_the_same(
    archive: Archive, resolution: str
) -> None:
    check_point_reads(archive, resolution)


@pytest.mark.parametrize("resolution", ["raw", "1m", "1h"])
def test_sketch_read_with_partition_opens_only_its_objects_and_answers_the_same(
    archive: Archive, resolution: str
) -> None:
    check_sketch_reads(archive, resolution)


def test_read_api_passes_the_partition_to_both_readers(archive: Archive) -> None:
    store, catalog = archive.counting()
    own = Ownership()
    own.assign({p: 0 for p in range(PARTITIONS)})
    guard = ServingGuard(own, lambda ps, now: {p: [0, now] for p in ps})
    client = TestClient(
        create_app(ArchiveReader(catalog), own, sketches=(ArchiveSketchReader(catalog), guard))
    )
    for p in archive.partitions():
        sids = archive.sids(p)
        body = {"sids": sids.tolist(), "from": START, "to": END, "resolution": "1h", "partition": p}
        answers = {}
        for path in ("/v1/points/read", "/v1/sketches/read"):
            store.opened.clear()
            store.listed.clear()
            resp = client.post(path, json=body)
            assert resp.status_code == 200, resp.text
            assert store.partitions_opened() <= {p}, (path, store.opened)
            assert store.only_partition_listings(), (path, store.listed)
            answers[path] = resp.content
        # The same answers as unscoped reads of the same series.
        points = pa.ipc.open_stream(answers["/v1/points/read"]).read_all()
        unscoped = ArchiveReader(Catalog(archive.objects)).read_rollups(sids, START, END, HOUR)
        assert points.column("count").to_pylist() == unscoped.count.tolist()
        assert points.column("sum").to_pylist() == unscoped.sum.tolist()
        full = ArchiveSketchReader(Catalog(archive.objects)).read_sketches(sids, START, END, HOUR)
        assert answers["/v1/sketches/read"] == encode_batch(full)
    # Without a partition the API reads every partition's objects, as before.
    store.opened.clear()
    body = {"sids": archive.sids().tolist(), "from": START, "to": END, "resolution": "raw"}
    assert client.post("/v1/points/read", json=body).status_code == 200
    assert len(store.partitions_opened()) >= 2


class ListOnly(ObjectStore):
    """A backend that only lists (the base class derives ``children`` from ``list``)."""

    def __init__(self, inner: LocalDirStore) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def tail(self, key: str, size: int) -> bytes:
        return self.inner.tail(key, size)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def test_children_and_partition_listings(tmp_path: Path) -> None:
    local = LocalDirStore(tmp_path)
    for key in (
        ingest_name(Family.POINTS, "old", 1, 0, 4),
        ingest_name(Family.POINTS, "old", 2, 0, 1),
        compacted_name(Family.POINTS, "new", 1, T0, 0, 9, "0123abcd"),
        "points/new/p0001/_progress/00000000000000000009",
        # Not ours: "+" is no topic id character (ingest_name would write "a_b").
        ingest_name(Family.POINTS, "old", 1, 0, 4).replace("/old/", "/a+b/"),
        "points/loose.parquet",
        ingest_name(Family.SERIES, "old", 1, 0, 4),
    ):
        local.put(key, b"x")
    for backend in (local, ListOnly(local)):
        assert backend.children("points/") == ["a+b", "new", "old"]
        assert backend.children("") == ["points", "series"]
        assert backend.children("points/old/") == ["p0001", "p0002"]
        assert backend.children("nothing/") == []
        with pytest.raises(ValueError):
            backend.children("points")
        catalog = Catalog(backend)
        scoped = catalog.family(Family.POINTS, 1)
        assert scoped == [n for n in catalog.family(Family.POINTS) if n.partition == 1]
        assert [(n.topic_id, n.compacted) for n in scoped] == [("new", True), ("old", False)]
        assert catalog.family(Family.POINTS, 3) == []
