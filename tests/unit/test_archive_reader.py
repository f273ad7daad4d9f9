"""Archive reads racing compaction, wide ranges, footer-only loading, the read API's bounds.

The local directory is the real embedded backend; wrappers around it only interpose a
deterministic compaction or count what is read.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from stores.archive.api import create_app
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import DAY, Family, ObjectName
from stores.archive.objectstore import LocalDirStore, ObjectInfo, ObjectStore
from stores.archive.parquet_io import Meta, series_table
from stores.archive.plan import plan_hours
from stores.archive.reader import ArchiveReader
from stores.archive.store import ArchivePointStore
from stores.runtime.ownership import Ownership
from stores.runtime.store import Record
from strata.codec import PointBatch, SeriesBatch
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR, MINUTE

T0 = 1_700_000_000 - 1_700_000_000 % DAY
SIDS = np.array([1], SID_DTYPE)


class CompactAfterList(ObjectStore):
    """Local store that runs one compaction right after the first ``points/`` listing,
    i.e. after a reader listed the ingest objects and before it reads their footers."""

    def __init__(self, inner: LocalDirStore) -> None:
        self.inner = inner
        self.armed = False
        self.compactions = 0

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def tail(self, key: str, size: int) -> bytes:
        return self.inner.tail(key, size)

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = self.inner.list(prefix)
        if self.armed and prefix == f"{Family.POINTS.value}/":
            self.armed = False
            Compactor(Catalog(self.inner), Retention(10**9), clock=lambda: T0).run()
            self.compactions += 1
        return out

    def delete(self, key: str) -> None:
        self.inner.delete(key)


class CountingStore(LocalDirStore):
    """Counts whole-object and tail reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets = 0
        self.tail_bytes = 0

    def get(self, key: str) -> bytes:
        self.gets += 1
        return super().get(key)

    def tail(self, key: str, size: int) -> bytes:
        data = super().tail(key, size)
        self.tail_bytes += len(data)
        return data


def writer(objects: ObjectStore, flush_rows: int = 1) -> ArchivePointStore:
    store = ArchivePointStore(
        "points",
        Catalog(objects),
        flush_rows=flush_rows,
        flush_seconds=0.0,
        max_buffer_rows=10**9,
        clock=lambda: float(T0),
        sleep=lambda _s: None,
    )
    store.bind_topic("tid")
    store.start_position(0, 0)
    return store


def point(ts: int, value: float) -> PointBatch:
    return PointBatch(
        "acme",
        "cpu",
        np.array([1], SID_DTYPE),
        np.array([ts], TS_DTYPE),
        np.array([value], VALUE_DTYPE),
    )


def ingest(store: ArchivePointStore, batches: list[PointBatch]) -> None:
    for off, b in enumerate(batches):
        store.apply([Record(0, off, T0 * 1000, b)])
        store.make_durable()


@pytest.mark.parametrize("resolution", [0, MINUTE, HOUR])
def test_read_racing_compaction_with_cold_footers_sees_every_row(
    tmp_path: Path, resolution: int
) -> None:
    inner = LocalDirStore(tmp_path)
    ingest(writer(inner), [point(T0 + 60 * i, float(i)) for i in range(3)])
    racing = CompactAfterList(inner)
    reader = ArchiveReader(Catalog(racing))  # another instance: no footer cached
    racing.armed = True
    if resolution == 0:
        _, ts, values = reader.read_raw(SIDS, T0 - 10, T0 + DAY)
        assert ts.tolist() == [T0, T0 + 60, T0 + 120]
        assert values.tolist() == [0.0, 1.0, 2.0]
    else:
        r = reader.read_rollups(SIDS, T0 - resolution, T0 + DAY, resolution)
        assert int(r.count.sum()) == 3 and float(r.sum.sum()) == 3.0
    assert racing.compactions == 1  # the race did happen
    assert all(n.compacted for n in Catalog(inner).family(Family.POINTS))


def _listed(day: int, partition: int) -> tuple[ObjectName, Meta]:
    name = ObjectName(Family.POINTS, "tid", partition, 0, 9, day, "abc")
    return name, Meta(10, day, day + DAY - 1, 0)


def test_plan_hours_cost_does_not_grow_with_the_range() -> None:
    compacted = _listed(T0, 0)
    ingest_obj = (ObjectName(Family.POINTS, "tid", 1, 0, 9), Meta(5, T0 + 10, T0 + 3 * DAY, 0))
    stems = {compacted[0].stem: "rollups/1h/x"}
    started = time.monotonic()
    plan = plan_hours([compacted, ingest_obj], stems, -(2**62) + HOUR, 2**62 - HOUR)
    assert time.monotonic() - started < 0.5
    # Day T0 is covered by an ingest object of another partition too: raw for all of it.
    assert plan.rollup_objects == []
    assert plan.raw_objects == sorted([compacted[0].key(), ingest_obj[0].key()])
    only = plan_hours([compacted], stems, -(2**62) + HOUR, 2**62 - HOUR)
    assert only.rollup_objects == ["rollups/1h/x"] and only.raw_objects == []


def _client(tmp_path: Path) -> TestClient:
    store = writer(LocalDirStore(tmp_path), flush_rows=100)
    ingest(store, [point(T0 + 5, 1.0), point(T0 + 3 * DAY + 7, 2.0)])
    store.flush_all()
    return TestClient(create_app(ArchiveReader(store.catalog), Ownership()))


def post(client: TestClient, body: dict[str, object]) -> httpx.Response:
    """POST a read, failing (not hanging) if it takes longer than 10 s."""
    answer: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answer.append(client.post("/v1/points/read", json=body)), daemon=True
    )
    thread.start()
    thread.join(10)
    assert answer, f"no answer within 10 s to {body}"
    return answer[0]


@pytest.mark.parametrize("resolution", ["raw", "1m", "1h"])
@pytest.mark.parametrize("field", ["from", "to"])
def test_read_api_rejects_timestamps_outside_int64_range(
    tmp_path: Path, resolution: str, field: str
) -> None:
    client = _client(tmp_path)
    for bad in (-1e20, 1e20, -(2**62), 2**62, 2**63):
        body: dict[str, object] = {"sids": [1], "from": 0, "to": 0, "resolution": resolution}
        body[field] = bad
        if field == "from" and bad > 0:
            body["to"] = bad
        if field == "to" and bad < 0:
            body["from"] = bad
        resp = post(client, body)
        assert resp.status_code == 400, (body, resp.text)
        assert any(e.startswith(f"{field}:") for e in resp.json()["errors"]), resp.text


@pytest.mark.parametrize("resolution", ["raw", "1m", "1h"])
def test_widest_accepted_range_answers_at_once(tmp_path: Path, resolution: str) -> None:
    client = _client(tmp_path)
    body = {"sids": [1], "from": -(2**62) + 1, "to": 2**62 - 1, "resolution": resolution}
    resp = post(client, body)
    assert resp.status_code == 200, resp.text
    got = pa.ipc.open_stream(resp.content).read_all()
    if resolution == "raw":
        assert got["value"].to_pylist() == [1.0, 2.0]
    else:
        assert got["count"].to_pylist() == [1, 1] and got["sum"].to_pylist() == [1.0, 2.0]


def test_footers_are_loaded_without_downloading_objects(tmp_path: Path) -> None:
    big = PointBatch(
        "acme",
        "cpu",
        np.arange(50_000, dtype=SID_DTYPE),
        np.full(50_000, T0, TS_DTYPE),
        np.random.default_rng(1).normal(size=50_000),
    )
    ingest(writer(LocalDirStore(tmp_path)), [big, point(T0 - 100, 1.0)])
    objects = CountingStore(tmp_path)
    total = sum(o.size for o in objects.list(""))
    fresh = writer(objects)  # a restart: assignment loads footers, none cached
    assert objects.gets == 0
    assert 0 < objects.tail_bytes < total / 4
    metas = [fresh.catalog.cached(o.key) for o in objects.list("points/")]
    assert sorted((m.rows, m.min_ts) for m in metas if m is not None) == [
        (1, T0 - 100),
        (50_000, T0),
    ]


def test_series_table_matches_row_by_row_construction() -> None:
    rng = np.random.default_rng(7)
    batches = []
    for i in range(40):
        n = int(rng.integers(0, 20))
        batches.append(
            SeriesBatch(
                ["acme", "globex", "é"][i % 3],
                f"m{i % 4}",
                rng.integers(0, 2**63, n, dtype=np.uint64),
                rng.integers(0, 10**9, n).astype(np.int64),
                rng.integers(0, 3, n).astype(np.uint8),
                rng.integers(0, 60, n).astype(np.uint32),
                tuple(tuple(f"k{j}:v" for j in range(int(rng.integers(0, 4)))) for _ in range(n)),
            )
        )
    t = series_table(batches)
    assert t["org"].to_pylist() == [b.org for b in batches for _ in range(len(b))]
    assert t["metric"].to_pylist() == [b.metric for b in batches for _ in range(len(b))]
    assert t["tags"].to_pylist() == [list(x) for b in batches for x in b.tags]
    assert t["sid"].to_pylist() == np.concatenate([b.sid for b in batches]).tolist()
    assert series_table([]).num_rows == 0
