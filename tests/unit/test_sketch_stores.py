"""The sketch tiers (RAM and rocks) against one contract and a reference model, no Kafka.

The model keeps every submitted value per (sid, ts); the expected answer of a read is, per
(sid, bucket), :meth:`Sketch.from_values` of the values in that bucket — one sketch of all
values, built independently of the stores' merges. Merging is exact, so bins, count, min
and max must agree exactly and sum to float rounding. Each store is driven through the
:class:`stores.runtime.store.Store` contract (apply / assigned / revoked / restart), with
redeliveries, since merging is not idempotent: a replay must be skipped, never merged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stores.ram.api import create_app as ram_app
from stores.ram.store import RamStore
from stores.rocks import layout
from stores.rocks.api import create_app as rocks_app
from stores.rocks.store import RocksStore
from stores.runtime.ownership import Ownership
from stores.runtime.service import Companion
from stores.runtime.store import Record, Store
from stores.sketches.ram import RamSketchStore
from stores.sketches.rocks import RocksSketchStore
from strata.codec import SketchMessage, decode_sketches, encode_sketches
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import decode_batch

NOW = 1_763_769_600 + 12 * 3600  # noon UTC
HOUR, DAY = 3600, 86400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Model:
    """Every value submitted, per (sid, ts)."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, int], list[float]] = defaultdict(list)

    def add(self, batch: SketchBatch, values: list[list[float]]) -> None:
        for i, vs in enumerate(values):
            self.values[(int(batch.sid[i]), int(batch.ts[i]))] += vs

    def expected(
        self, sids: list[int], start: int, end: int, step: int
    ) -> dict[tuple[int, int], Sketch]:
        """Per (sid, bucket) whose start is in [start, end]: the sketch of its values."""
        buckets: dict[tuple[int, int], list[float]] = defaultdict(list)
        for (sid, ts), vs in self.values.items():
            bucket = ts - ts % step
            if sid in sids and start <= bucket <= end:
                buckets[(sid, bucket)] += vs
        return {k: Sketch.from_values(v) for k, v in buckets.items()}


def answer(batch: SketchBatch) -> dict[tuple[int, int], Sketch]:
    keys = list(zip(batch.sid.tolist(), batch.ts.tolist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "sorted, one row per bucket"
    return {k: batch.row(i) for i, k in enumerate(keys)}


def assert_same(got: dict[tuple[int, int], Sketch], want: dict[tuple[int, int], Sketch]) -> None:
    assert want, "the test expects nothing, so it would prove nothing"
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = got[key]
        assert (g.count, g.zero_count, g.min, g.max) == (w.count, w.zero_count, w.min, w.max), key
        assert (
            g.pos_keys.tolist() == w.pos_keys.tolist()
            and g.pos_counts.tolist() == w.pos_counts.tolist()
        )
        assert (
            g.neg_keys.tolist() == w.neg_keys.tolist()
            and g.neg_counts.tolist() == w.neg_counts.tolist()
        )
        assert math.isclose(g.sum, w.sum, rel_tol=1e-12, abs_tol=1e-9), key


def workload(seed: int, n: int, span: int) -> Iterator[tuple[SketchBatch, list[list[float]]]]:
    """Batches of random rows (sids 1..4, ts in [NOW - span, NOW], 1..20 values each,
    latency-like, some negative and zero), repeated labels included."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        rows = int(rng.integers(1, 30))
        sid = rng.integers(1, 5, rows).astype(np.uint64)
        ts = NOW - rng.integers(0, span + 1, rows)
        sizes = rng.integers(1, 21, rows)
        values = [np.round(rng.lognormal(3, 1, k), 3).tolist() for k in sizes.tolist()]
        for vs in values:
            if rng.random() < 0.1:
                vs[0] = -vs[0]
            if rng.random() < 0.05:
                vs[-1] = 0.0
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        flat = [v for vs in values for v in vs]
        yield SketchBatch.from_ragged(SketchParams(), sid, ts, offsets, flat), values


def message(batch: SketchBatch) -> SketchMessage:
    # Through the wire codec, as the consumer hands it over.
    return decode_sketches(encode_sketches(SketchMessage("acme", "lat", batch)))


StoreFactory = Callable[[Path, Clock], Store[SketchMessage]]


def ram(_path: Path, clock: Clock) -> Store[SketchMessage]:
    return RamSketchStore("sketches", 3 * HOUR, replay_margin_seconds=0, clock=clock)


def rocks(path: Path, clock: Clock) -> Store[SketchMessage]:
    return RocksSketchStore("sketches", path, 3, retention_check_seconds=1.0, clock=clock)


def read(
    store: Store[SketchMessage], sids: list[int], start: int, end: int, step: int
) -> SketchBatch:
    assert isinstance(store, RamSketchStore | RocksSketchStore)
    return store.read_sketches(np.array(sids, np.uint64), start, end, step)


@pytest.mark.parametrize("make", [ram, rocks], ids=["ram", "rocks"])
def test_reads_at_every_resolution_match_the_model_and_redeliveries_are_skipped(
    make: StoreFactory, tmp_path: Path
) -> None:
    store = make(tmp_path, Clock(NOW))
    store.assigned([0, 1], {0: 0, 1: 0})
    model = Model()
    offset = {0: 0, 1: 0}
    sent: list[Record[SketchMessage]] = []
    for i, (batch, values) in enumerate(workload(7, 40, 2 * HOUR)):
        p = i % 2
        rec = Record(p, offset[p], 0, message(batch))
        offset[p] += 1
        sent.append(rec)
        # Every third apply repeats the previous batch first (a redelivery).
        store.apply([*sent[-3:-1], rec] if i % 3 == 0 else [rec])
        model.add(batch, values)
    for step, (start, end) in {
        1: (NOW - 2 * HOUR, NOW),
        60: (NOW - 2 * HOUR, NOW),
        3600: (NOW - 2 * HOUR, NOW),
    }.items():
        assert_same(
            answer(read(store, [1, 2, 3, 4], start, end, step)),
            model.expected([1, 2, 3, 4], start, end, step),
        )
    # A sub-range and a subset of the series.
    start, end = NOW - 5000, NOW - 1000
    assert_same(answer(read(store, [2, 3], start, end, 1)), model.expected([2, 3], start, end, 1))
    assert_same(answer(read(store, [3], start, end, 60)), model.expected([3], start, end, 60))
    assert len(read(store, [99], NOW - DAY, NOW, 60)) == 0
    store.close()


def test_ram_rebuilds_a_reassigned_partition_from_a_clean_state(tmp_path: Path) -> None:
    """Every assignment replays the partition from the seek time: what was held before
    must go, or each sketch would be merged in a second time."""
    store = ram(tmp_path, Clock(NOW))
    assert isinstance(store, RamSketchStore)
    batches = list(workload(11, 12, HOUR))
    model = Model()
    records = [Record(0, i, 0, message(b)) for i, (b, _) in enumerate(batches)]
    for b, values in batches:
        model.add(b, values)
    store.assigned([0], {0: 0})
    store.apply(records)
    store.apply(records[5:])  # redelivered within the assignment: skipped
    assert store.skipped_records == 7
    want = model.expected([1, 2, 3, 4], NOW - HOUR, NOW, 60)
    assert_same(answer(read(store, [1, 2, 3, 4], NOW - HOUR, NOW, 60)), want)
    # A rebalance hands the partition out again: the consumer seeks back and replays all.
    store.revoked([0])
    store.assigned([0], {0: 0})
    assert store.coverage([0], NOW) == {}  # replaying
    store.apply(records)
    store.caught_up(0, len(records))
    assert store.coverage([0], NOW) == {0: [NOW - 3 * HOUR, NOW]}
    assert_same(answer(read(store, [1, 2, 3, 4], NOW - HOUR, NOW, 60)), want)
    # An assignment without a revoke (eager rebalance keeping the partition) too.
    store.assigned([0], {0: 0})
    store.apply(records)
    assert_same(answer(read(store, [1, 2, 3, 4], NOW - HOUR, NOW, 60)), want)


def test_ram_window_drops_and_clamps(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = RamSketchStore("sketches", HOUR, replay_margin_seconds=0, clock=clock)
    store.assigned([0], {})
    old = SketchBatch.from_values(SketchParams(), [1, 1], [NOW - 2 * HOUR, NOW - 10], [5.0, 6.0])
    store.apply([Record(0, 0, 0, message(old))])
    assert store.dropped_old == 1
    got = answer(read(store, [1], NOW - DAY, NOW, 1))
    assert list(got) == [(1, NOW - 10)]
    clock.now += HOUR  # the row slides out of the window
    store.idle()
    assert len(read(store, [1], NOW - DAY, NOW + DAY, 1)) == 0


def test_rocks_keeps_offsets_with_the_data_across_a_restart(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = rocks(tmp_path, clock)
    assert isinstance(store, RocksSketchStore)
    batches = list(workload(5, 10, DAY))
    model = Model()
    for b, values in batches:
        model.add(b, values)
    store.assigned([0], {})
    store.apply([Record(0, i, 1000, message(b)) for i, (b, _) in enumerate(batches[:6])])
    store.close()
    again = rocks(tmp_path, clock)
    assert isinstance(again, RocksSketchStore)
    assert again.start_position(0, 0).offset == 6
    # The consumer resumes at 6, but a batch from 3 on is redelivered (commit was lost).
    again.assigned([0], {})
    again.apply([Record(0, i, 1000, message(b)) for i, (b, _) in enumerate(batches) if i >= 3])
    assert again.stats.skipped_records == 3
    assert_same(
        answer(read(again, [1, 2, 3, 4], NOW - DAY, NOW, 3600)),
        model.expected([1, 2, 3, 4], NOW - DAY, NOW, 3600),
    )
    assert_same(
        answer(read(again, [1, 2, 3, 4], NOW - DAY, NOW, 1)),
        model.expected([1, 2, 3, 4], NOW - DAY, NOW, 1),
    )
    # Coverage: complete since ever (offset 0 applied), once caught up.
    assert again.coverage([0], NOW) == {}
    again.caught_up(0, len(batches))
    lo = layout.oldest_kept_day(NOW, 3) * DAY
    assert again.coverage([0], NOW) == {0: [max(lo, min(again.shards.days()) * DAY), NOW]}
    again.close()


def test_rocks_retention_drops_old_days_and_expired_rows(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = RocksSketchStore("sketches", tmp_path, 1, retention_check_seconds=1.0, clock=clock)
    b = SketchBatch.from_values(
        SketchParams(), [1, 1, 1], [NOW - 3 * DAY, NOW - DAY, NOW], [1.0, 2.0, 3.0]
    )
    store.assigned([0], {})
    store.apply([Record(0, 0, 0, message(b))])
    assert store.stats.expired_rows == 1
    assert len(read(store, [1], NOW - 5 * DAY, NOW, 1)) == 2
    clock.now += DAY
    store.idle()
    assert store.stats.dropped_shards == 1
    assert read(store, [1], NOW - 5 * DAY, NOW + DAY, 1).ts.tolist() == [NOW]
    store.close()


def test_read_api_on_the_point_store_apps(tmp_path: Path) -> None:
    """``POST /v1/sketches/read`` mounted beside the point reads of both processes."""
    clock = Clock(NOW)
    batch = SketchBatch.from_values(
        SketchParams(), [7, 7, 8], [NOW - 70, NOW - 5, NOW - 5], [1.0, 2.0, 3.0]
    )
    sk_ram = RamSketchStore("sketches", HOUR, replay_margin_seconds=0, clock=clock)
    sk_rocks = RocksSketchStore("sketches", tmp_path / "sk", 3, clock=clock)
    apps = []
    for sk, make_app, points in (
        (sk_ram, ram_app, RamStore("points", HOUR, clock=clock)),
        (sk_rocks, rocks_app, RocksStore("points", tmp_path / "pts", 3, clock=clock)),
    ):
        own = Ownership()
        own.assign({0: 0})
        sk.assigned([0], {0: 0})
        sk.apply([Record(0, 0, 0, message(batch))])
        sk.caught_up(0, 1)
        apps.append(TestClient(make_app(points, Ownership(), Companion(sk, own))))  # type: ignore[arg-type]
    for client in apps:
        resp = client.post(
            "/v1/sketches/read",
            json={"sids": [8, 7], "from": NOW - 120, "to": NOW, "resolution": "1m", "partition": 0},
        )
        assert resp.status_code == 200, resp.text
        got = decode_batch(resp.content)
        assert list(zip(got.sid.tolist(), got.ts.tolist(), strict=True)) == [
            (7, NOW - 120),
            (7, NOW - 60),
            (8, NOW - 60),
        ]
        assert got.count.tolist() == [1.0, 1.0, 1.0]
        # Merged further per output bucket (120 s); the bucket may start before "from".
        body = {"sids": [7, 8], "from": NOW - 120, "to": NOW, "resolution": "1m", "step": 120}
        two = decode_batch(client.post("/v1/sketches/read", json=body).content)
        first = NOW - 120 - (NOW - 120) % 120
        want_rows = sorted(
            {
                (7, (NOW - 70) - (NOW - 70) % 120),
                (7, (NOW - 5) - (NOW - 5) % 120),
                (8, (NOW - 5) - (NOW - 5) % 120),
            }
        )
        assert list(zip(two.sid.tolist(), two.ts.tolist(), strict=True)) == want_rows
        assert int(two.count.sum()) == 3 and min(two.ts.tolist()) >= first
        bad_step = client.post("/v1/sketches/read", json={**body, "step": 90})
        assert bad_step.status_code == 400 and "multiple of 60" in bad_step.text
        raw = decode_batch(
            client.post(
                "/v1/sketches/read", json={"sids": [7], "from": NOW - 100, "to": NOW}
            ).content
        )
        assert raw.ts.tolist() == [NOW - 70, NOW - 5]
        assert (
            client.post(
                "/v1/sketches/read", json={"sids": [7], "from": NOW, "to": NOW - 1}
            ).status_code
            == 400
        )
        bad = client.post(
            "/v1/sketches/read", json={"sids": [7], "from": 0, "to": 1, "resolution": "5m"}
        )
        assert bad.status_code == 400 and "resolution" in bad.text
        # A partition this instance does not serve is refused, never answered partially.
        assert (
            client.post(
                "/v1/sketches/read", json={"sids": [7], "from": 0, "to": 1, "partition": 3}
            ).status_code
            == 503
        )
    sk_rocks.close()


def test_rocks_completeness_comes_from_the_first_message_read(tmp_path: Path) -> None:
    """Heartbeat markers precede the first record in every partition and never reach
    apply: where the log starts is what the first message read says, not the first record."""
    clock = Clock(NOW)
    store = RocksSketchStore("sketches", tmp_path, 3, future_margin_seconds=600, clock=clock)
    b = SketchBatch.from_values(SketchParams(), [1], [NOW - 60], [1.0])
    store.assigned([0, 1, 2], {})
    # p0: markers at offsets 0..4, the first record at 5: the whole log is here.
    store.first_message(0, 0, (NOW - 100) * 1000)
    store.apply([Record(0, 5, (NOW - 50) * 1000, message(b))])
    # p1: Kafka deleted offsets below 40 (the first message read is at 40).
    store.first_message(1, 40, (NOW - 100) * 1000)
    store.apply([Record(1, 41, (NOW - 50) * 1000, message(b))])
    # p2: only markers so far, the end reached at 7.
    store.first_message(2, 0, (NOW - 100) * 1000)
    for p in (0, 1, 2):
        store.caught_up(p, 7 if p == 2 else 42)
    oldest = min(store.shards.days()) * DAY
    assert store.coverage([0, 1, 2], NOW) == {0: [oldest, NOW], 2: [oldest, NOW]}
    clock.now = NOW + 600  # p1 is complete from its first message's append time + margin + 1
    assert store.coverage([1], NOW + 600) == {1: [NOW - 100 + 601, NOW + 600]}
    store.close()
    # Resuming from the stored offsets never changes the recorded completeness.
    again = RocksSketchStore("sketches", tmp_path, 3, future_margin_seconds=600, clock=clock)
    again.assigned([0], {})
    again.first_message(0, 6, NOW * 1000)
    again.caught_up(0, 6)
    assert again.coverage([0], NOW) == {0: [oldest, NOW]}
    again.close()
