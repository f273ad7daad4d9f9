"""Staging chunks: codec round trip, golden vector, corrupt frames; staged points in memory;
the rocks store serving staged points before and after a fold (docs/formats.md)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stores.rocks.stagecodec import ChunkKey, CorruptChunk, decode_chunk, encode_chunk
from stores.rocks.staging import StagedPoints
from stores.rocks.store import RocksStore
from stores.runtime.store import Record
from strata.codec import PointBatch

GOLDEN = Path(__file__).parent.parent / "golden"
HOUR0 = 1_700_002_800
GOLDEN_SID = [7, 7, 3, 2**64 - 1]
GOLDEN_TS = [HOUR0, HOUR0 + 10, HOUR0 + 5, HOUR0 + 3599]
GOLDEN_VALUE = [1.5, -0.0, 37.42, 1e308]


def test_golden_chunk_decodes() -> None:
    frame = bytes.fromhex((GOLDEN / "rocks_staging_v1.hex").read_text().strip())
    # The header is fixed; the zstd body may differ between zstd versions, so only the
    # decoding is pinned, plus the header of a fresh encoding.
    fresh = encode_chunk(
        np.array(GOLDEN_SID, np.uint64),
        np.array(GOLDEN_TS, np.int64),
        np.array(GOLDEN_VALUE, np.float64),
    )
    assert fresh[:16] == frame[:16]
    sid, ts, value = decode_chunk(frame)
    assert sid.tolist() == GOLDEN_SID and ts.tolist() == GOLDEN_TS
    assert value.view(np.uint64).tolist() == np.array(GOLDEN_VALUE).view(np.uint64).tolist()


def test_wide_time_range_and_empty_round_trip() -> None:
    ts = np.array([-(2**40), 0, 2**40], np.int64)
    sid, back, _value = decode_chunk(
        encode_chunk(np.array([1, 2, 3], np.uint64), ts, np.array([1.0, 2.0, 3.0]))
    )
    assert back.tolist() == ts.tolist() and sid.tolist() == [1, 2, 3]
    empty = decode_chunk(
        encode_chunk(np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.float64))
    )
    assert all(c.size == 0 for c in empty)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:10], "shorter than its header"),
        (lambda f: b"\x02" + f[1:], "version 2"),
        (lambda f: f[:1] + b"\x01" + f[2:], "not a staging chunk"),
        (lambda f: f[:-3], "staging chunk body"),
    ],
)
def test_corrupt_chunks_are_rejected(mutate: object, message: str) -> None:
    frame = encode_chunk(
        np.array([1, 2], np.uint64), np.array([5, 6], np.int64), np.array([1.0, 2.0])
    )
    assert callable(mutate)
    with pytest.raises(CorruptChunk, match=message):
        decode_chunk(mutate(frame))


def test_chunk_keys_sort_by_partition_then_offset() -> None:
    keys = [ChunkKey(p, o).encode() for p, o in ((1, 5), (0, 2**40), (0, 7))]
    assert sorted(keys) == [keys[2], keys[1], keys[0]]
    assert ChunkKey.decode(keys[1]) == ChunkKey(0, 2**40)
    with pytest.raises(CorruptChunk):
        ChunkKey.decode(b"\x00O" + bytes(12))


def test_staged_points_take_and_remove_whole_chunks() -> None:
    staged = StagedPoints()
    sid = np.array([2, 1, 2], np.uint64)
    a = staged.add(b"a", sid, np.array([HOUR0, HOUR0 + 1, HOUR0 + 3600]), np.ones(3))
    b = staged.add(b"b", sid[:1], np.array([HOUR0 + 2]), np.full(1, 2.0))
    assert staged.points == 4 and staged.foldable({HOUR0 - 3600}) == []
    assert staged.foldable({HOUR0}) == [a, b]  # a only in part
    assert staged.foldable({HOUR0 + 3600}) == [a]
    got = staged.read(np.array([2], np.uint64), HOUR0, HOUR0 + 7200)
    assert sorted(got[1].tolist()) == [HOUR0, HOUR0 + 2, HOUR0 + 3600]
    assert sorted(staged.take([a])[1].tolist()) == [HOUR0, HOUR0 + 1, HOUR0 + 3600]
    staged.remove([a])
    assert staged.points == 1 and list(staged.chunks()) == [b]
    assert staged.read(np.array([1, 2], np.uint64), 0, 2**40)[1].tolist() == [HOUR0 + 2]


def test_staged_points_take_and_remove_the_closed_part_of_a_chunk() -> None:
    staged = StagedPoints()
    sid = np.array([2, 1, 2], np.uint64)
    a = staged.add(b"a", sid, np.array([HOUR0, HOUR0 + 1, HOUR0 + 3600]), np.arange(3.0))
    h = HOUR0 + 3600
    assert sorted(staged.take([a], {HOUR0})[1].tolist()) == [HOUR0, HOUR0 + 1]
    rest = staged.rest([a], {HOUR0})
    assert list(rest) == [a] and rest[a][1].tolist() == [h] and rest[a][2].tolist() == [2.0]
    staged.remove([a], {HOUR0})
    assert staged.points == 1 and staged.foldable({HOUR0}) == []
    assert staged.chunks()[a].points == 1 and staged.chunks()[a].last_hour == h
    assert staged.read(np.array([1, 2], np.uint64), 0, 2**40)[1].tolist() == [h]


def test_staged_points_fold_any_set_of_hours() -> None:
    """A chunk over three hours gives up its middle one: the others stay, and the hours
    report how many points each holds and since when (its oldest points came)."""
    staged = StagedPoints()
    ts = np.array([HOUR0 + 1, HOUR0 + 3601, HOUR0 + 7201, HOUR0 + 7202])
    a = staged.add(b"a", np.array([1, 1, 1, 2], np.uint64), ts, np.arange(4.0), at=5.0)
    staged.add(b"b", np.array([3], np.uint64), ts[2:3], np.ones(1), at=9.0)
    assert staged.hours() == {HOUR0: (1, 5.0), HOUR0 + 3600: (1, 5.0), HOUR0 + 7200: (3, 5.0)}
    assert staged.take([a], {HOUR0 + 3600})[1].tolist() == [HOUR0 + 3601]
    rest = staged.rest([a], {HOUR0 + 3600})
    assert sorted(rest[a][1].tolist()) == [HOUR0 + 1, HOUR0 + 7201, HOUR0 + 7202]
    staged.remove([a], {HOUR0 + 3600})
    assert staged.points == 4 and staged.chunks()[a].points == 3
    assert staged.hours() == {HOUR0: (1, 5.0), HOUR0 + 7200: (3, 5.0)}
    assert staged.foldable({HOUR0 + 3600}) == [] and staged.foldable({HOUR0}) == [a]


def _rec(offset: int, sid: list[int], ts: list[int], value: list[float]) -> Record[PointBatch]:
    batch = PointBatch(
        "acme",
        "cpu",
        np.array(sid, np.uint64),
        np.array(ts, np.int64),
        np.array(value, np.float64),
    )
    return Record(0, offset, 0, batch)


def _six_live_steps(tmp_path: Path, fold_delay: int) -> tuple[RocksStore, list[float]]:
    """A store (and its clock) that staged one minute of series 1 and 2 in the hour HOUR0:
    six steps of 10 s, values i and -i."""
    now = [float(HOUR0 + 30)]
    store = RocksStore(
        "points",
        tmp_path,
        30,
        fold_delay_seconds=fold_delay,
        fold_check_seconds=1,
        clock=lambda: now[0],
    )
    for i in range(6):
        now[0] = HOUR0 + 10 * i + 5
        store.apply([_rec(i, [1, 2], [HOUR0 + 10 * i] * 2, [float(i), -float(i)])])
    return store, now


def test_live_points_are_staged_then_folded_once_their_hour_closed(tmp_path: Path) -> None:
    store, now = _six_live_steps(tmp_path, fold_delay=600)
    ids = np.array([1, 2], np.uint64)
    assert store.shards.days() == [] and store.staged.points == 12
    assert store.read_rollups(ids, HOUR0, HOUR0, 3600).count.tolist() == [6, 6]
    now[0] = HOUR0 + 3600 + 599  # the hour closed, but not for fold_delay yet
    store.idle()
    assert store.staged.points == 12
    now[0] = HOUR0 + 3600 + 600
    store.idle()
    assert store.staged.points == 0 and store.stats.folded_points == 12
    # A late point for the folded hour is staged, and read together with the block.
    store.apply([_rec(6, [1], [HOUR0 + 1], [100.0])])
    assert store.staged.points == 1
    r = store.read_rollups(ids, HOUR0, HOUR0, 3600)
    assert r.count.tolist() == [7, 6] and r.max.tolist() == [100.0, 0.0]
    m = store.read_rollups(ids[:1], HOUR0, HOUR0 + 59, 60)
    assert m.count.tolist() == [7] and m.sum.tolist() == [115.0]
    assert store.read_raw(ids[:1], HOUR0, HOUR0 + 10)[1].tolist() == [HOUR0, HOUR0 + 1, HOUR0 + 10]
    store.close()
    # Restart: the staged point comes back from its chunk.
    again = RocksStore("points", tmp_path, 30, clock=lambda: now[0])
    assert again.staged.points == 1
    assert again.read_rollups(ids, HOUR0, HOUR0, 3600).count.tolist() == [7, 6]
    again.close()


def test_dense_points_of_closed_hours_go_straight_to_blocks(tmp_path: Path) -> None:
    store = RocksStore("points", tmp_path, 30, clock=lambda: float(HOUR0 + 86400))
    ts = [HOUR0 + 10 * i for i in range(20)]
    store.apply([_rec(0, [1] * 20, ts, [1.0] * 20)])
    assert store.stats.direct_points == 20 and store.staged.points == 0
    assert store.read_raw(np.array([1], np.uint64), HOUR0, HOUR0 + 3600)[1].tolist() == ts
    store.close()


def test_closed_hour_points_go_direct_only_into_blocks_the_batch_doubles(tmp_path: Path) -> None:
    """A backfill sending 10 points of a series at a time: the first two batches of a
    block are merged straight in (0 -> 10 -> 20 points), the third (10 < 20) is staged;
    a block the same batch brings fewer than 8 points is staged too."""
    store = RocksStore("points", tmp_path, 30, clock=lambda: float(HOUR0 + 86400))
    one = np.array([1], np.uint64)
    for i in range(3):
        ts = [HOUR0 + 10 * (10 * i + k) for k in range(10)]
        store.apply([_rec(i, [1] * 10 + [2] * 3, ts + ts[:3], [float(i + 1)] * 13)])
    assert store.stats.direct_points == 20
    assert store.staged.points == 10 + 3 * 3
    raw = store.read_raw(one, HOUR0, HOUR0 + 3599)
    assert raw[1].tolist() == [HOUR0 + 10 * k for k in range(30)]
    assert raw[2].tolist() == [1.0] * 10 + [2.0] * 10 + [3.0] * 10
    assert store.read_rollups(np.array([1, 2], np.uint64), HOUR0, HOUR0, 3600).count.tolist() == [
        30,
        9,
    ]
    assert store.fold(everything=True) == 19
    assert store.read_raw(one, HOUR0, HOUR0 + 3599)[2].tolist() == raw[2].tolist()
    store.close()


def _store_at(tmp_path: Path, now: list[float], staging_max: int = 10**6) -> RocksStore:
    """A store on a settable clock that folds only when a test calls fold()."""
    return RocksStore(
        "points",
        tmp_path,
        30,
        fold_delay_seconds=600,
        fold_check_seconds=1e9,
        staging_max_points=staging_max,
        clock=lambda: now[0],
    )


def test_a_closed_hour_is_folded_again_once_its_staged_points_match_the_folded_ones(
    tmp_path: Path,
) -> None:
    """A backfill into a closed hour, a few points per series per batch: the first fold
    takes them all; later ones wait until the staged points are at least as many as those
    already folded into the hour (so its blocks are re-encoded a bounded number of times),
    or until the oldest staged one waited the fold delay. A restart forgets the count."""
    now = [float(HOUR0 + 2 * 3600 + 700)]  # HOUR0 closed for > 600 s
    ids = np.array([1, 2, 3], np.uint64)

    store = _store_at(tmp_path, now)
    step = iter(range(1000))

    def send(n: int) -> None:
        k = next(step)
        store.apply(
            [
                _rec(
                    k,
                    [1 + i % 3 for i in range(n)],
                    [HOUR0 + 10 * k + i for i in range(n)],
                    [float(k)] * n,
                )
            ]
        )

    send(3)
    assert store.fold() == 3  # nothing folded into HOUR0 yet
    send(2)
    assert store.fold() == 0 and store.staged.points == 2  # 2 < 3 folded
    send(1)
    assert store.fold() == 3 and store.staged.points == 0  # 3 >= 3
    send(2)
    now[0] += 599
    assert store.fold() == 0
    now[0] += 1
    assert store.fold() == 2  # the oldest staged point waited the fold delay
    send(1)
    raw = store.read_raw(ids, HOUR0, HOUR0 + 3599)
    assert raw[1].size == 9 and store.staged.points == 1
    store.close()
    store = _store_at(tmp_path, now)
    assert store.fold() == 1 and store.staged.points == 0  # the count was forgotten
    assert store.read_raw(ids, HOUR0, HOUR0 + 3599)[1].tolist() == raw[1].tolist()
    store.close()


def test_a_steady_trickle_into_a_folded_hour_is_folded_every_fold_delay(tmp_path: Path) -> None:
    """Late points for an hour already folded into, one every 300 s (more often than the
    fold delay): each waits at most the delay, however many points the hour holds."""
    now = [float(HOUR0 + 2 * 3600 + 700)]
    store = _store_at(tmp_path, now)
    store.apply([_rec(0, [1] * 50, [HOUR0 + i for i in range(50)], [1.0] * 50)])
    assert store.folded(HOUR0) == 50 and store.staged.points == 0  # merged straight in
    folds = []
    for k in range(1, 9):
        now[0] += 300
        store.apply([_rec(k, [2], [HOUR0 + k], [float(k)])])
        folds.append(store.fold())
        # Never a point staged for the fold delay or longer.
        assert all(now[0] - since < 600 for _, since in store.staged.hours().values())
    # Far fewer staged points than the 50 folded: each fold is the age cap taking the
    # three that came within one fold delay.
    assert folds == [0, 0, 3, 0, 0, 3, 0, 0]
    assert store.read_raw(np.array([2], np.uint64), HOUR0, HOUR0 + 3599)[1].size == 8
    store.close()


def test_an_overflow_fold_of_an_open_hour_does_not_hold_its_later_points(tmp_path: Path) -> None:
    """Staging overflows while the hour is open: everything is folded, but that early fold
    is not counted, so the hour's later points fold once at the delay after it closes."""
    now = [float(HOUR0 + 60)]
    store = _store_at(tmp_path, now, staging_max=10)
    store.apply([_rec(0, [1] * 11, [HOUR0 + i for i in range(11)], [1.0] * 11)])
    assert store.staged.points == 0 and store.stats.folded_points == 11
    assert store.folded(HOUR0) == 0
    store.apply([_rec(1, [1, 2], [HOUR0 + 100, HOUR0 + 101], [2.0, 2.0])])
    now[0] = HOUR0 + 3600 + 600
    assert store.fold() == 2 and store.folded(HOUR0) == 2
    store.close()


def test_direct_merges_count_as_folded_and_counts_are_forgotten_at_retention(
    tmp_path: Path,
) -> None:
    now = [float(HOUR0 + 86400)]
    store = _store_at(tmp_path, now)
    store.apply([_rec(0, [1] * 20, [HOUR0 + 10 * i for i in range(20)], [1.0] * 20)])
    assert store.stats.direct_points == 20 and store.folded(HOUR0) == 20
    store.apply([_rec(1, [2], [HOUR0 + 5], [1.0])])
    assert store.fold() == 0  # 1 staged < 20 merged
    now[0] += 31 * 86400
    store.run_retention()
    assert store.folded(HOUR0) == 0
    store.close()


def test_a_chunk_mixing_late_and_current_points_folds_its_closed_hours(tmp_path: Path) -> None:
    """One batch with a point of a closed hour and one of the open hour: the fold moves
    the closed one into its block and rewrites the chunk with the open one alone, which
    is what a restart finds."""
    now = [float(HOUR0 + 2 * 3600 + 700)]  # HOUR0 closed for > 600 s, HOUR0 + 2 h open
    store = RocksStore("points", tmp_path, 30, fold_delay_seconds=600, clock=lambda: now[0])
    ids = np.array([1], np.uint64)
    store.apply([_rec(0, [1, 1], [HOUR0 + 5, HOUR0 + 7200 + 5], [4.0, 5.0])])
    assert store.staged.points == 2 and len(store.staged) == 1
    assert store.fold() == 1
    assert store.staged.points == 1 and len(store.staged) == 1
    assert store.read_raw(ids, HOUR0, HOUR0 + 3 * 3600)[2].tolist() == [4.0, 5.0]
    store.close()
    again = RocksStore("points", tmp_path, 30, fold_delay_seconds=600, clock=lambda: now[0])
    assert again.staged.points == 1
    assert again.staged.take(again.staged.chunks())[1].tolist() == [HOUR0 + 7200 + 5]
    assert again.read_rollups(ids, HOUR0, HOUR0 + 7200, 3600).count.tolist() == [1, 1]
    now[0] += 3600
    assert again.fold() == 1 and again.staged.points == 0 and len(again.staged) == 0
    assert again.read_raw(ids, HOUR0, HOUR0 + 3 * 3600)[2].tolist() == [4.0, 5.0]
    again.close()


def test_reads_do_not_wait_for_a_folds_synced_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold's WriteBatch is fsynced, which can take seconds on a busy disk; reads from
    other threads go on meanwhile, before and after the write lands, and see every point
    exactly once (staged, or staged and in its new block: the conflict rule keeps one)."""
    store, now = _six_live_steps(tmp_path, fold_delay=0)
    ids = np.array([1, 2], np.uint64)
    assert store.staged.points == 12
    seen: list[tuple[str, list[int], list[int]]] = []
    real_write = store.shards.write

    def read_from_another_thread(when: str) -> None:
        def read() -> None:
            r = store.read_rollups(ids, HOUR0, HOUR0, 3600)
            _, ts, _ = store.read_raw(ids[:1], HOUR0, HOUR0 + 3599)
            seen.append((when, r.count.tolist(), ts.tolist()))

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), f"a read waited for the fold's write ({when})"

    def slow_write(*args: Any) -> None:
        read_from_another_thread("before the write")
        real_write(*args)
        read_from_another_thread("after the write")

    monkeypatch.setattr(store.shards, "write", slow_write)
    now[0] = HOUR0 + 3600
    store.idle()
    assert store.staged.points == 0 and store.stats.folded_points == 12
    every = [HOUR0 + 10 * i for i in range(6)]
    assert seen == [("before the write", [6, 6], every), ("after the write", [6, 6], every)]
    store.close()
