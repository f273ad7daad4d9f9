"""The rocks store against real tansu + Valkey, as `python -m stores.rocks` subprocesses.

Every answer is compared with a reference model: all produced points resolved by the
conflict rule, and rollups of those points computed by strata.rollup.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from strata.conflict import resolve
from strata.rollup import rollup
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Series,
    StoreProcess,
    Stores,
    make_series,
    points_message,
    produce,
    stores_fixture,
    wait_for,
)

pytestmark = pytest.mark.integration

DAY = 86400
Cols = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


class Model:
    """Everything produced, resolved like the stores resolve it."""

    def __init__(self) -> None:
        self.parts: list[Cols] = []

    def add(self, s: Series, ts: list[int], values: list[float]) -> bytes:
        n = len(ts)
        self.parts.append(
            (np.full(n, s.sid, np.uint64), np.array(ts, np.int64), np.array(values, np.float64))
        )
        return points_message(s, ts, values)

    def points(self) -> Cols:
        return resolve(*(np.concatenate([p[k] for p in self.parts]) for k in range(3)))


def read(url: str, sids: list[int], start: int, end: int, resolution: str = "raw") -> pa.Table:
    resp = httpx.post(
        f"{url}/v1/points/read",
        json={"sids": sids, "from": start, "to": end, "resolution": resolution},
        timeout=10.0,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.apache.arrow.stream"
    return pa.ipc.open_stream(resp.content).read_all()


def expected(
    model: Model, sids: list[int], start: int, end: int, resolution: str
) -> dict[str, list[object]]:
    s, t, v = model.points()
    keep = np.isin(s, np.array(sids, np.uint64))
    s, t, v = s[keep], t[keep], v[keep]
    if resolution == "raw":
        m = (t >= start) & (t <= end)
        return {"sid": s[m].tolist(), "ts": t[m].tolist(), "value": v[m].tolist()}
    r = rollup(s, t, v, 60 if resolution == "1m" else 3600)
    m = (r.bucket >= start) & (r.bucket <= end)
    cols = ("sid", "bucket", "count", "sum", "min", "max", "last", "last_ts")
    out = {c: getattr(r, c)[m].tolist() for c in cols}
    out["ts"] = out.pop("bucket")
    return out


def matches(url: str, model: Model, sids: list[int], start: int, end: int, res: str) -> bool:
    table = read(url, sids, start, end, res)
    want = expected(model, sids, start, end, res)
    return all(table.column(c).to_pylist() == want[c] for c in want)


def stats(url: str) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{url}/v1/stats", timeout=5.0).json()
    return body


def workload(model: Model, now: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Gauges over several metrics (so partitions) and days; late, out-of-order and
    duplicate points (a smaller |value| at a repeated timestamp loses)."""
    series = [
        make_series(org, metric, f"host:h{i}")
        for org in ("acme", "globex")
        for metric in ("cpu.user", "mem.used")
        for i in range(2)
    ]
    messages = []
    for s in series:
        for day_back in (9, 2, 0):
            base = now - day_back * DAY - 3 * 3600
            ts = [base + 10 * k for k in range(0, 720, 3)]
            rng.shuffle(ts)
            values = [round(rng.uniform(0, 100), 2) for _ in ts]
            messages.append((s.key, model.add(s, [*ts, ts[0]], [*values, 0.001])))
    return messages


def test_serves_model_survives_redelivery_restart_and_retention(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    rng = random.Random(11)
    now = int(time.time())
    model = Model()
    messages = workload(model, now, rng)
    sids = sorted({int(x) for x in model.points()[0]})
    topic = strata_env["STRATA_TOPIC_POINTS"]
    rocks = stores.start("rocks", "rocks-a")
    reg = rocks.wait_ready(partitions=3)
    assert reg.address == rocks.url
    produce(strata_env, topic, messages)
    lo = now - 10 * DAY - (now - 10 * DAY) % DAY
    wait_for(lambda: matches(rocks.url, model, sids, lo, now, "raw"), what="raw points")
    for res in ("1m", "1h"):
        assert matches(rocks.url, model, sids, lo, now, res), res
    # A narrow, step-aligned rollup read and a raw read of one series.
    mid = now - 2 * DAY - (now - 2 * DAY) % 3600
    assert matches(rocks.url, model, sids[:1], mid - 3600, mid, "1h")
    assert matches(rocks.url, model, sids[1:2], mid - 1800, mid + 59, "raw")
    # Bad requests name the field.
    bad = httpx.post(
        f"{rocks.url}/v1/points/read", json={"sids": sids, "from": 0, "to": 1, "resolution": "5m"}
    )
    assert bad.status_code == 400 and "resolution" in bad.text
    bad = httpx.post(f"{rocks.url}/v1/points/read", json={"sids": [-1], "from": 0, "to": 1})
    assert bad.status_code == 400 and "sids" in bad.text
    bad = httpx.post(f"{rocks.url}/v1/points/read", json={"sids": [], "from": 2, "to": 1})
    assert bad.status_code == 400 and "from" in bad.text
    # Redelivery: the same messages again (new offsets) change no answer.
    produce(strata_env, topic, messages)
    wait_for(lambda: stats(rocks.url)["applied_records"] == 2 * len(messages), what="second copy")
    for res in ("raw", "1m", "1h"):
        assert matches(rocks.url, model, sids, lo, now, res), res
    oldest = int(model.points()[1].min()) // DAY * DAY

    def covered() -> bool:
        got = rocks.registration()
        if got is None or sorted(got.coverage) != [0, 1, 2]:
            return False
        return all(c[0] == oldest for c in got.coverage.values())

    wait_for(covered, what="coverage from the oldest day shard")
    # Restart on the same data dir: data is there at once, nothing is re-applied.
    rocks.stop()
    rocks = stores.start("rocks", "rocks-a")
    rocks.wait_ready(partitions=3)
    assert matches(rocks.url, model, sids, lo, now, "1h")
    time.sleep(1.0)
    assert stats(rocks.url)["applied_records"] == 0
    # Retention lowered to 5 days: the shard 9 days back is dropped, the rest untouched.
    rocks.stop()
    rocks = stores.start("rocks", "rocks-a", env={"STRATA_RETENTION_DAYS": "5"})
    rocks.wait_ready(partitions=3)
    cut = (int(time.time()) // DAY - 5) * DAY
    assert read(rocks.url, sids, lo, cut - 1, "raw").num_rows == 0
    assert read(rocks.url, sids, lo, cut - 1, "1h").num_rows == 0
    for res in ("raw", "1m", "1h"):
        assert matches(rocks.url, model, sids, cut, now, res), res
    body = stats(rocks.url)
    assert body["dropped_shards"] in (1, 2)  # the old points may straddle midnight
    shards = body["shards"]
    assert isinstance(shards, list)
    assert all(str(s) >= time.strftime("d%Y%m%d", time.gmtime(cut)) for s in shards)


def test_sigkill_mid_ingest_loses_and_doubles_nothing(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    seed = int(os.environ.get("STRATA_TEST_SEED", "7"))
    print(f"seed {seed}")
    rng = random.Random(seed)
    now = int(time.time())
    topic = strata_env["STRATA_TOPIC_POINTS"]
    series = [make_series("acme", f"m{i}", "host:a") for i in range(6)]
    model = Model()
    messages = []
    for k in range(300):
        s = series[k % len(series)]
        ts = [now - 3 * 3600 + rng.randrange(3 * 3600) for _ in range(50)]
        messages.append((s.key, model.add(s, ts, [rng.uniform(-1000, 1000) for _ in ts])))
    sids = [s.sid for s in series]
    rocks: StoreProcess = stores.start("rocks", "rocks-k")
    rocks.wait_ready(partitions=3)
    done = threading.Event()

    def feed() -> None:
        for i in range(0, len(messages), 5):
            produce(strata_env, topic, messages[i : i + 5])
            time.sleep(0.1)  # points keep flowing across the kills and restarts
        done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    kills = mid_ingest = 0
    while not done.is_set() and kills < 3:
        time.sleep(rng.uniform(0.2, 1.0))
        applied = stats(rocks.url)["applied_records"]
        rocks.kill()
        kills += 1
        mid_ingest += not done.is_set()
        print(f"kill {kills} after {applied} applied records (mid-ingest: {not done.is_set()})")
        rocks = stores.start("rocks", "rocks-k")
        rocks.wait_ready(partitions=3, timeout=30.0)
    feeder.join()
    assert mid_ingest >= 1, "no kill landed while points were flowing"
    start = now - 4 * 3600 - (now - 4 * 3600) % 3600
    wait_for(
        lambda: matches(rocks.url, model, sids, start, now, "1h"),
        timeout=30.0,
        what="counts and sums after kills",
    )
    assert matches(rocks.url, model, sids, start, now, "raw")
    assert matches(rocks.url, model, sids, start, now, "1m")
