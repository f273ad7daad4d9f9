"""The RAM store's read API in-process: raw and rollup resolutions, bad bodies (fake clock)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from query.stores_client import decode_points, decode_rollups
from stores.ram.api import create_app
from stores.ram.blocks import BLOCK_SECONDS
from stores.ram.store import RamStore, rollup_span
from stores.runtime.ownership import Ownership
from stores.runtime.store import Record
from strata.codec import PointBatch
from strata.conflict import resolve
from strata.rollup import rollup

H = 3600
NOW = 1_700_000_000 - 1_700_000_000 % H + 1800  # half past an hour
WINDOW = 3 * H


def batch(sid: list[int], ts: list[int], value: list[float]) -> PointBatch:
    return PointBatch(
        "acme",
        "cpu",
        np.array(sid, dtype=np.uint64),
        np.array(ts, dtype=np.int64),
        np.array(value, dtype=np.float64),
    )


@pytest.fixture
def points() -> tuple[list[int], list[int], list[float]]:
    rng = np.random.default_rng(7)
    n = 3000
    sid = rng.integers(1, 4, n).tolist()
    ts = (NOW - rng.integers(0, WINDOW + 600, n)).tolist()  # some older than the window
    value = rng.normal(0, 100, n).round(3).tolist()
    return sid, ts, value


@pytest.fixture
def client(points: tuple[list[int], list[int], list[float]]) -> Iterator[TestClient]:
    store = RamStore("points", WINDOW, clock=lambda: float(NOW))
    store.assigned([0], {0: (NOW - WINDOW) * 1000})
    # Applied twice: redelivery must not change a rollup.
    records = [Record(0, 0, NOW * 1000, batch(*points)), Record(0, 0, NOW * 1000, batch(*points))]
    store.apply(records)
    ownership = Ownership()
    ownership.assign({0: 1})
    with TestClient(create_app(store, ownership)) as c:
        yield c


def expected_rollups(
    points: tuple[list[int], list[int], list[float]], start: int, end: int, step: int
) -> dict[tuple[int, int], tuple[int, float, float, float, float, int]]:
    sid, ts, value = resolve(
        np.array(points[0], np.uint64), np.array(points[1], np.int64), np.array(points[2])
    )
    lo, hi = rollup_span(start, end, step)
    keep = (ts >= max(lo, NOW - WINDOW)) & (ts <= hi) & np.isin(sid, [1, 2])
    r = rollup(sid[keep], ts[keep], value[keep], step)
    return {
        (int(r.sid[i]), int(r.bucket[i])): (
            int(r.count[i]),
            float(r.sum[i]),
            float(r.min[i]),
            float(r.max[i]),
            float(r.last[i]),
            int(r.last_ts[i]),
        )
        for i in range(len(r))
    }


def test_raw_is_the_default(client: TestClient) -> None:
    resp = client.post("/v1/points/read", json={"sids": [1], "from": NOW - 60, "to": NOW})
    assert resp.status_code == 200
    pts = decode_points(resp.content, source="ram")
    assert set(pts.sid.tolist()) <= {1} and pts.ts.min() >= NOW - 60


@pytest.mark.parametrize(("resolution", "step"), [("1m", 60), ("1h", H)])
def test_rollups_summarise_whole_buckets_starting_in_range(
    client: TestClient,
    points: tuple[list[int], list[int], list[float]],
    resolution: str,
    step: int,
) -> None:
    start, end = NOW - 2 * H, NOW  # aligned to both steps
    body = {"sids": [2, 1, 1], "from": start, "to": end, "resolution": resolution}
    resp = client.post("/v1/points/read", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(resp.content).read_all()
    assert table.schema.names == ["sid", "ts", "count", "sum", "min", "max", "last", "last_ts"]
    got = decode_rollups(resp.content, source="ram")
    assert (np.lexsort((got.bucket, got.sid)) == np.arange(len(got))).all()
    assert ((got.bucket % step == 0) & (got.bucket >= start) & (got.bucket <= end)).all()
    want = expected_rollups(points, start, end, step)
    assert len(got) == len(want)
    for i in range(len(got)):
        key = (int(got.sid[i]), int(got.bucket[i]))
        count, total, lo, hi, last, last_ts = want[key]
        assert int(got.count[i]) == count and int(got.last_ts[i]) == last_ts
        assert float(got.sum[i]) == pytest.approx(total)
        assert (float(got.min[i]), float(got.max[i]), float(got.last[i])) == (lo, hi, last)
    # The bucket starting at `end` (NOW) is included and covers points up to its end.
    assert got.count.sum() == sum(w[0] for w in want.values())


def test_unaligned_range_keeps_buckets_starting_inside(client: TestClient) -> None:
    body = {"sids": [1], "from": NOW - 90, "to": NOW - 1, "resolution": "1m"}
    got = decode_rollups(client.post("/v1/points/read", json=body).content, source="ram")
    assert set(got.bucket.tolist()) <= {NOW - 60}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sids": [1], "from": 0, "to": 1, "resolution": "5m"}, "resolution"),
        ({"sids": [1], "from": 0, "to": 1, "resolution": 60}, "resolution"),
        ({"sids": [-1], "from": 0, "to": 1}, "sids"),
        ({"sids": [1], "from": 2, "to": 1, "resolution": "1h"}, "'from' (2) is after 'to' (1)"),
        ({"sids": [1], "from": 2**63, "to": 2**64}, "from: "),
        ({"sids": [1], "from": 0, "to": 2**62, "resolution": "1m"}, "to: "),
        ({"sids": [1], "from": -(2**62), "to": 0, "resolution": "1h"}, "from: "),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    resp = client.post("/v1/points/read", json=body)
    assert resp.status_code == 400
    assert field in resp.text


def test_rollup_span() -> None:
    assert rollup_span(0, 0, 60) == (0, 59)
    assert rollup_span(1, 119, 60) == (60, 119)
    assert rollup_span(1, 59, 60)[0] > rollup_span(1, 59, 60)[1]  # no bucket starts inside
    assert rollup_span(-BLOCK_SECONDS, -1, 600) == (-600, -1)
