"""The rocks store on a real RocksDB in a temp dir, without Kafka (clock injected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stores.rocks import layout
from stores.rocks.api import create_app
from stores.rocks.store import RocksStore
from stores.runtime.ownership import Ownership
from stores.runtime.store import Record
from strata.codec import PointBatch
from strata.rollup import rollup

DAY = 86400
NOW = 1_763_769_600 + 12 * 3600  # noon


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(
    offset: int, sid: list[int], ts: list[int], value: list[float], p: int = 0
) -> Record[PointBatch]:
    batch = PointBatch(
        "acme",
        "cpu",
        np.array(sid, np.uint64),
        np.array(ts, np.int64),
        np.array(value, np.float64),
    )
    return Record(p, offset, 0, batch)


def open_store(path: Path, clock: Clock, retention: int = 3) -> RocksStore:
    return RocksStore("points", path, retention, retention_check_seconds=1.0, clock=clock)


def test_apply_skips_applied_offsets_and_survives_reopen(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = open_store(tmp_path, clock)
    store.apply([rec(0, [1, 1], [NOW - 10, NOW], [1.0, 2.0]), rec(1, [2], [NOW], [5.0])])
    # Redelivery of offset 1 with a different value is skipped: the offset was applied.
    store.apply([rec(1, [2], [NOW], [50.0]), rec(2, [2], [NOW - 1], [4.0])])
    assert store.stats.skipped_records == 1
    store.close()
    again = open_store(tmp_path, clock)
    assert again.start_position(0, 0).offset == 3
    sid, ts, value = again.read_raw(np.array([2, 1], np.uint64), NOW - 60, NOW)
    assert sid.tolist() == [1, 1, 2, 2]
    assert ts.tolist() == [NOW - 10, NOW, NOW - 1, NOW]
    assert value.tolist() == [1.0, 2.0, 4.0, 5.0]
    again.apply([rec(0, [1], [NOW], [99.0])])  # replay after restart: skipped
    assert again.read_raw(np.array([1], np.uint64), NOW, NOW)[2].tolist() == [2.0]
    again.close()


def test_rollup_reads_match_rollups_of_the_points(tmp_path: Path) -> None:
    store = open_store(tmp_path, Clock(NOW))
    rng = np.random.default_rng(3)
    n = 2000
    sid = rng.integers(0, 4, n).astype(np.uint64)
    ts = NOW - rng.integers(0, 2 * DAY, n)
    value = np.round(rng.normal(0, 10, n), 2)
    for i in range(0, n, 300):
        store.apply(
            [
                rec(
                    i,
                    sid[i : i + 300].tolist(),
                    ts[i : i + 300].tolist(),
                    value[i : i + 300].tolist(),
                )
            ]
        )
    s, t, v = store.read_raw(np.arange(4, dtype=np.uint64), 0, NOW + DAY)
    assert s.size == np.unique(np.stack([sid, ts.view(np.uint64)]), axis=1).shape[1]
    for step in (60, 3600):
        ref = rollup(s, t, v, step)
        lo = NOW - DAY - (NOW - DAY) % step
        got = store.read_rollups(np.arange(4, dtype=np.uint64), lo, NOW, step)
        m = (ref.bucket >= lo) & (ref.bucket <= NOW)
        assert got.bucket.tolist() == ref.bucket[m].tolist()
        assert got.sum.tolist() == ref.sum[m].tolist()
        assert got.count.tolist() == ref.count[m].tolist()
    with pytest.raises(ValueError, match="no stored rollups"):
        store.read_rollups(np.arange(1, dtype=np.uint64), 0, 1, 10)
    store.close()


def test_retention_drops_old_shards_and_expired_points(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = open_store(tmp_path, clock, retention=3)
    store.apply([rec(0, [1, 1, 1], [NOW - 3 * DAY, NOW - DAY, NOW], [1.0, 2.0, 3.0])])
    assert store.shards.days() == []  # staged: the points are in sparse hours
    assert store.fold(everything=True) == 3
    first = layout.oldest_kept_day(NOW, 3)
    assert store.shards.days() == [first, first + 2, first + 3]
    assert store.coverage([0], NOW) == {0: [first * DAY, NOW]}
    store.apply([rec(1, [1], [NOW - 5 * DAY], [9.0])])  # older than the retention
    assert store.stats.expired_points == 1
    clock.now = NOW + DAY  # a day later the oldest shard expires
    store.idle()
    assert store.stats.dropped_shards == 1
    assert store.shards.days() == [first + 2, first + 3]
    ids = np.array([1], np.uint64)
    assert store.read_raw(ids, 0, NOW + DAY)[2].tolist() == [2.0, 3.0]
    assert len(store.read_rollups(ids, 0, NOW + DAY, 3600)) == 2
    assert store.coverage([0], int(clock.now))[0][0] == (first + 2) * DAY
    store.close()
    # Reopening after a long pause drops expired shards at start.
    clock.now = NOW + 10 * DAY
    again = open_store(tmp_path, clock, retention=3)
    assert again.shards.days() == []
    again.close()


def test_coverage_waits_until_a_partition_caught_up(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = open_store(tmp_path, clock)
    store.assigned([0, 1], {})
    assert store.coverage([0, 1], NOW) == {}
    newer = Record(0, 0, int(NOW * 1000) + 5, rec(0, [1], [NOW], [1.0]).value)
    store.apply([newer])
    assert list(store.coverage([0, 1], NOW)) == [0]
    store.idle()  # an empty poll is housekeeping, no proof partition 1 is at its end
    assert list(store.coverage([0, 1], NOW)) == [0]
    store.caught_up(1, 0)
    assert list(store.coverage([0, 1], NOW)) == [0, 1]
    store.close()


def test_coverage_starts_where_each_partition_is_complete(tmp_path: Path) -> None:
    """A partition read from offset 0 is complete as far back as the shards go; one whose
    log start Kafka already deleted only from its first record's append time + margin."""
    clock = Clock(NOW)
    store = open_store(tmp_path, clock, retention=5)
    store.bind_topic("topic-a")
    store.assigned([0, 1, 2, 3, 4], {})
    first = layout.oldest_kept_day(NOW, 5)
    whole = Record(0, 0, (NOW - DAY) * 1000, rec(0, [1], [first * DAY + 5], [1.0]).value)
    appended = NOW - 2 * DAY  # partition 1's records before offset 500 are gone
    cut = Record(1, 500, appended * 1000, rec(0, [2], [appended - 7200], [2.0], p=1).value)
    # The runtime reports each partition's first message before applying its batch.
    store.first_message(0, 0, whole.timestamp_ms)
    store.first_message(1, 500, cut.timestamp_ms)
    # Partition 3 starts at offset 0 with heartbeat markers (never applied), its first
    # record comes at offset 7: still complete since ever.
    store.first_message(3, 0, (NOW - DAY) * 1000)
    later = Record(3, 7, (NOW - DAY) * 1000, rec(0, [3], [first * DAY + 9], [3.0], p=3).value)
    store.apply([whole, cut, later])
    store.fold(everything=True)
    # Partition 2: every record already deleted; partition 4: markers only, from offset 0.
    store.first_message(4, 0, NOW * 1000)
    for p, end in ((0, 1), (1, 501), (2, 40), (3, 8), (4, 12)):
        store.caught_up(p, end)
    assert store.coverage([0, 1, 2, 3, 4], NOW) == {
        0: [first * DAY, NOW],
        1: [appended + 601, NOW],
        3: [first * DAY, NOW],
        4: [first * DAY, NOW],
    }
    # Partition 2 holds only what is appended from now on (plus the margin).
    assert store.coverage([2], NOW + 601) == {2: [NOW + 601, NOW + 601]}
    store.close()
    # Persisted beside the offsets: a restart keeps each partition's start.
    again = open_store(tmp_path, clock, retention=5)
    again.bind_topic("topic-a")
    assert again.coverage([0, 1], NOW) == {0: [first * DAY, NOW], 1: [appended + 601, NOW]}
    # Later records never move it; a new topic (new id) forgets it with the offsets.
    again.apply([Record(1, 501, NOW * 1000, rec(0, [2], [NOW], [3.0], p=1).value)])
    assert again.coverage([1], NOW) == {1: [appended + 601, NOW]}
    again.bind_topic("topic-b")
    assert again.coverage([0, 1, 2], NOW) == {p: [first * DAY, NOW] for p in (0, 1, 2)}
    again.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sids": [1], "from": -(2**62), "to": 1}, "from: "),
        ({"sids": [1], "from": 0, "to": 2**62}, "to: "),
        ({"sids": [1], "from": 0, "to": 2**64, "resolution": "1h"}, "to: "),
        ({"sids": [1], "from": -(2**70), "to": 0, "resolution": "1m"}, "from: "),
    ],
)
def test_read_api_rejects_times_out_of_range(
    tmp_path: Path, body: dict[str, object], field: str
) -> None:
    store = open_store(tmp_path, Clock(NOW))
    ownership = Ownership()
    ownership.assign({0: 1})
    with TestClient(create_app(store, ownership)) as client:
        resp = client.post("/v1/points/read", json=body)
        assert resp.status_code == 400, resp.text
        assert field in resp.text
        ok = client.post("/v1/points/read", json={"sids": [1], "from": 1 - 2**62, "to": 0})
        assert ok.status_code == 200
    store.close()


def test_changed_topic_id_replays_from_the_beginning(tmp_path: Path) -> None:
    store = open_store(tmp_path, Clock(NOW))
    store.bind_topic("topic-a")
    store.apply([rec(5, [1], [NOW], [1.0])])
    assert store.start_position(0, 0).offset == 6
    store.bind_topic("topic-b")
    assert store.start_position(0, 0).offset == -2
    store.apply([rec(0, [1], [NOW - 1], [2.0])])  # not skipped: the offsets were discarded
    assert store.read_raw(np.array([1], np.uint64), NOW - 1, NOW)[2].tolist() == [2.0, 1.0]
    store.close()
