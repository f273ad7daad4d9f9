"""The archive's memory bounds: rows buffered over all partitions, and reads at once.

The buffer side is checked against a model (rows in objects + rows buffered == rows
applied, the buffer within budget after every ``make_durable``), for the points writer and
for the sketch writer (whose own budget is ``archive_max_buffer_sketches``; a sketch
uploaded twice or lost shows in the counts read back). The read side runs the real app on a
real uvicorn server; readers that block until released count how many point and sketch
reads run at once, and ``/health`` must answer while every worker thread is taken.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import anyio.to_thread
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.archive.api import ReadGate, create_app
from stores.archive.buffer import Buffer
from stores.archive.catalog import Catalog
from stores.archive.objectstore import LocalDirStore
from stores.archive.reader import ArchiveReader
from stores.archive.settings import ArchiveSettings
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.archive.store import ArchivePointStore
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard
from stores.runtime.store import Record
from strata.codec import PointBatch, SketchMessage
from strata.rollup import Rollups
from strata.servers import free_port
from strata.sketch import SketchBatch, SketchParams

T0 = 1_763_769_600  # a UTC midnight


def batch(first_sid: int, n: int) -> PointBatch:
    """``n`` points of distinct series (no two rows resolve into one)."""
    sid = np.arange(first_sid, first_sid + n, dtype=np.uint64)
    return PointBatch("o", "m", sid, np.zeros(n, np.int64), np.ones(n))


def rows_in(root: Path) -> int:
    return sum(pq.read_metadata(path).num_rows for path in root.rglob("*.parquet"))


def no_wait(seconds: float) -> None:
    # Before the budget, many partitions under the row limit made make_durable sleep until
    # one aged out (60 s by default) although every upload succeeded.
    raise AssertionError(f"make_durable waited {seconds} s with uploads succeeding")


def test_settings_defaults_and_bounds() -> None:
    s = ArchiveSettings()
    assert (s.archive_read_slots, s.archive_read_wait_seconds) == (2, 5.0)
    with pytest.raises(ValueError):
        ArchiveSettings(archive_read_slots=0)
    with pytest.raises(ValueError):
        ReadGate(0, 1.0)


def test_budget_takes_the_largest_buffers_until_the_rest_fits() -> None:
    buf: Buffer[list[int]] = Buffer(flush_rows=100, flush_seconds=60.0, size=len)
    for p, rows in enumerate([80, 60, 40, 99]):
        buf.add(p, 0, 0, [0] * rows, now=0.0)
    assert buf.due(1.0) == []  # none at the row or age limit
    taken = buf.due(1.0, budget=150)
    assert [p.partition for p in taken] == [3, 0]  # 279 -> 180 -> 100 rows left
    assert [p.partition for p in buf.due(1.0, budget=1000)] == []
    buf.add(2, 1, 0, [0] * 60, now=0.0)  # partition 2 reaches the row limit (100)
    assert [p.partition for p in buf.due(1.0, budget=200)] == [2, 3]
    assert [p.partition for p in buf.due(61.0, budget=0)] == [0, 1, 2, 3]  # all aged out


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=60),
    partitions=st.integers(1, 12),
    budget=st.integers(1, 2000),
)
def test_buffer_stays_within_budget_without_waiting(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], partitions: int, budget: int
) -> None:
    objects = LocalDirStore(tmp_path_factory.mktemp("objects"))
    store = ArchivePointStore(
        "points",
        Catalog(objects),
        flush_rows=500,
        flush_seconds=3600.0,
        max_buffer_rows=budget,
        clock=lambda: 0.0,
        sleep=no_wait,
    )
    store.bind_topic("TID")
    for p in range(partitions):
        store.start_position(p, 0)
    offsets = [0] * partitions
    applied = 0
    for i, n in enumerate(sizes):
        p = i % partitions
        store.apply([Record(p, offsets[p], 0, batch(applied, n))])
        offsets[p] += 1
        applied += n
        store.make_durable()
        assert store._buffered_rows() <= budget
        # Nothing lost or doubled by early uploads: objects + buffer == everything applied.
        assert rows_in(objects.root) + store._buffered_rows() == applied
    assert store.flush_all()
    assert rows_in(objects.root) == applied


def test_sketch_writer_keeps_its_own_budget_and_every_sketch_once(tmp_path: Path) -> None:
    objects = LocalDirStore(tmp_path)
    budget, partitions = 30, 12
    store = ArchiveSketchStore(
        "sketches",
        Catalog(objects),
        flush_rows=10_000,  # never reached: only the budget uploads before the end
        flush_seconds=3600.0,
        max_buffer_rows=budget,
        clock=lambda: float(T0),
        sleep=no_wait,
    )
    store.bind_topic("TID")
    for p in range(partitions):
        store.start_position(p, 0)
    rng = np.random.default_rng(7)
    counts: Counter[tuple[int, int]] = Counter()  # values sent per (sid, ts)
    applied = 0
    for i in range(90):
        p = i % partitions
        n = int(rng.integers(1, 9))
        sid = rng.integers(1, 20, n).astype(np.uint64) + np.uint64(100 * p)
        ts = T0 + rng.integers(0, 600, n)
        values = rng.lognormal(2, 1, n)
        sketches = SketchBatch.from_values(SketchParams(), sid, ts, values)
        store.apply([Record(p, i // partitions, 0, SketchMessage("acme", "lat", sketches))])
        applied += len(sketches)
        counts.update(zip(sid.tolist(), ts.tolist(), strict=True))
        store.make_durable()
        assert store._buffered_rows() <= budget
    assert store.uploads > partitions  # the budget uploaded partitions early, repeatedly
    assert store.flush_all()
    got = ArchiveSketchReader(Catalog(objects)).read_sketches(
        np.array(sorted({s for s, _ in counts}), np.uint64), T0, T0 + 600, 1
    )
    keys = zip(got.sid.tolist(), got.ts.tolist(), strict=True)
    read = dict(zip(keys, got.count.tolist(), strict=True))
    assert read == {k: float(v) for k, v in counts.items()}  # each value counted once


class Blocker:
    """Counts reads running at once; each blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.release.wait(20)
            yield
        finally:
            with self._lock:
                self.running -= 1


class BlockingReader(ArchiveReader):
    def __init__(self, blocker: Blocker) -> None:
        self.blocker = blocker

    def read_rollups(
        self, sids: object, start: int, end: int, step: int, partition: int | None = None
    ) -> Rollups:
        with self.blocker.read():
            return Rollups.empty()


class BlockingSketchReader(ArchiveSketchReader):
    def __init__(self, blocker: Blocker) -> None:
        self.params = SketchParams()
        self.blocker = blocker

    def read_sketches(
        self, sids: object, start: int, end: int, step: int, partition: int | None = None
    ) -> SketchBatch:
        with self.blocker.read():
            return SketchBatch.empty(self.params)


@contextmanager
def serve(gate: ReadGate, worker_threads: int) -> Iterator[tuple[str, Blocker]]:
    """The archive app (points and sketches, blocking readers sharing one :class:`Blocker`)
    on a real uvicorn server, with ``worker_threads`` threads for sync handlers (anyio's
    default is 40) so a test can take them all."""
    blocker = Blocker()
    sketch_guard = ServingGuard(Ownership(), lambda _p, _now: {})
    app = create_app(
        BlockingReader(blocker),
        Ownership(),
        sketches=(BlockingSketchReader(blocker), sketch_guard),
        gate=gate,
    )

    @app.post("/test/limit-threads")
    async def limit() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        httpx.post(f"{url}/test/limit-threads").raise_for_status()
        yield url, blocker
    finally:
        blocker.release.set()
        server.should_exit = True
        thread.join(10)


def wait_running(blocker: Blocker, n: int) -> None:
    deadline = time.monotonic() + 5
    while blocker.running < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert blocker.running == n


BODY = {"sids": [1], "from": 0, "to": 7199, "resolution": "1h"}  # both routes take it


def post(pool: ThreadPoolExecutor, url: str, path: str, body: object) -> Future[httpx.Response]:
    return pool.submit(httpx.post, f"{url}{path}", json=body, timeout=30)


def test_point_and_sketch_reads_share_two_slots_and_health_answers_meanwhile() -> None:
    with serve(ReadGate(2, 5.0), worker_threads=4) as (url, blocker), ThreadPoolExecutor(6) as pool:
        reads = [post(pool, url, "/v1/points/read", BODY) for _ in range(3)]
        reads += [post(pool, url, "/v1/sketches/read", BODY) for _ in range(3)]
        wait_running(blocker, 2)
        time.sleep(0.3)  # the other four now wait for a slot (2) or a worker thread (2)
        assert blocker.running == 2
        started = time.monotonic()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        blocker.release.set()
        assert [r.result().status_code for r in reads] == [200] * 6
    assert blocker.most == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/v1/points/read", "/v1/points/read"),
        ("/v1/points/read", "/v1/sketches/read"),
        ("/v1/sketches/read", "/v1/points/read"),
    ],
)
def test_a_read_that_finds_no_slot_in_time_gets_503(first: str, second: str) -> None:
    with (
        serve(ReadGate(1, 0.2), worker_threads=40) as (url, blocker),
        ThreadPoolExecutor(1) as pool,
    ):
        held = post(pool, url, first, BODY)
        wait_running(blocker, 1)
        started = time.monotonic()
        answer = httpx.post(f"{url}{second}", json=BODY, timeout=30)
        waited = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert "archive unavailable" in answer.json()["errors"][0]
        assert 0.2 <= waited < 2.0
        blocker.release.set()
        assert held.result().status_code == 200
