"""Rocks staging + fold against a reference model (hypothesis.stateful, real RocksDB).

Any interleaving of apply, redelivery, fold (periodic or everything), clock advance and
reopen (a crash: the DB is reopened without folding, the in-memory staging rebuilt from the
chunks on disk) must give reads -- raw, 1m and 1h -- equal to the conflict-rule resolution of
every applied point and its rollups; applying a record twice changes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stores.rocks.store import RocksStore
from stores.runtime.store import Record
from strata.codec import PointBatch
from strata.conflict import resolve
from strata.rollup import rollup

DAY = 86400
T0 = 1_700_000_000 - 1_700_000_000 % DAY + 82800  # one hour before midnight
SIDS = np.arange(3, dtype=np.uint64)
values = st.one_of(
    st.integers(-10_000, 10_000).map(lambda i: i / 100),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
# Points over three series and four hours spanning two day shards.
point = st.tuples(st.integers(0, 2), st.integers(0, 4 * 3600 - 1), values)
# A dense batch: many points of one series hour (takes the direct path once closed).
dense = st.tuples(st.integers(0, 2), st.integers(0, 3), st.lists(values, min_size=8, max_size=30))

Cols = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def batch(points: list[tuple[int, int, float]]) -> PointBatch:
    return PointBatch(
        "acme",
        "cpu",
        np.array([p[0] for p in points], np.uint64),
        np.array([T0 + p[1] for p in points], np.int64),
        np.array([p[2] for p in points], np.float64),
    )


class StagingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rocks-staging-"))
        self.now = [float(T0 + 1800)]
        self.store = self._open()
        self.records: list[Record[PointBatch]] = []
        self.next_offset = {0: 0, 1: 0}
        self.points: list[Cols] = []

    def _open(self) -> RocksStore:
        return RocksStore(
            "points",
            self.dir,
            30,
            fold_delay_seconds=600,
            fold_check_seconds=1e9,  # folds only when a rule asks
            clock=lambda: self.now[0],
        )

    @initialize()
    def start(self) -> None:
        pass

    def _apply(self, partition: int, points: list[tuple[int, int, float]]) -> None:
        rec = Record(partition, self.next_offset[partition], 0, batch(points))
        self.next_offset[partition] += 1
        self.records.append(rec)
        self.store.apply([rec])
        self.points.append((rec.value.sid, rec.value.ts, rec.value.value))

    @rule(partition=st.integers(0, 1), points=st.lists(point, min_size=1, max_size=20))
    def apply(self, partition: int, points: list[tuple[int, int, float]]) -> None:
        self._apply(partition, points)

    @rule(partition=st.integers(0, 1), d=dense)
    def apply_dense(self, partition: int, d: tuple[int, int, list[float]]) -> None:
        sid, hour, vals = d
        self._apply(partition, [(sid, hour * 3600 + 7 * i, v) for i, v in enumerate(vals)])

    @rule(partition=st.integers(0, 1), d=dense, points=st.lists(point, max_size=6))
    def apply_mixed(
        self, partition: int, d: tuple[int, int, list[float]], points: list[tuple[int, int, float]]
    ) -> None:
        """One record: a dense run for one block (direct if it doubles the block) and a few
        points elsewhere (staged)."""
        sid, hour, vals = d
        run = [(sid, hour * 3600 + 5 + 11 * i, v) for i, v in enumerate(vals)]
        self._apply(partition, run + points)

    @precondition(lambda self: bool(self.records))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """A batch of already applied records (possibly with a new one) arrives again."""
        k = data.draw(st.integers(1, len(self.records)))
        self.store.apply(self.records[-k:])

    @rule(seconds=st.sampled_from([60, 600, 1800, 3600]))
    def advance(self, seconds: int) -> None:
        self.now[0] = min(self.now[0] + seconds, T0 + 6 * 3600)

    @rule()
    def fold_closed(self) -> None:
        before = self.store.staged.hours()
        counts = {h: self.store.folded(h) for h in before}
        self.store.fold()
        # Nor is an hour folded before the rule asks: open ones, and closed ones with fewer
        # points than folded into them whose oldest came within the delay, are untouched.
        after = self.store.staged.hours()
        t = int(self.now[0]) - 600
        for hour, (points, since) in before.items():
            early = points < counts[hour] and self.now[0] - since < 600
            if hour >= t - t % 3600 or early:
                assert after.get(hour) == (points, since)
        # An hour closed for the fold delay stays staged only while it holds fewer points
        # than this process folded into it and its oldest came within the delay, even in a
        # chunk that also holds points of other hours (rewritten with those alone).
        t = int(self.now[0]) - 600
        for hour, (points, since) in self.store.staged.hours().items():
            if hour < t - t % 3600:
                assert 0 < points < self.store.folded(hour)
                assert self.now[0] - since < 600

    @rule()
    def fold_everything(self) -> None:
        self.store.fold(everything=True)
        assert self.store.staged.points == 0

    @rule()
    def idle(self) -> None:
        self.store.idle()

    @rule()
    def reopen(self) -> None:
        staged = self.store.staged.points
        self.store.close()
        self.store = self._open()
        assert self.store.staged.points == staged

    @invariant()
    def reads_match_the_model(self) -> None:
        lo, hi = T0 - 3600, T0 + 5 * 3600
        if not self.points:
            assert self.store.read_raw(SIDS, lo, hi)[0].size == 0
            return
        s, t, v = resolve(*(np.concatenate([p[k] for p in self.points]) for k in range(3)))
        gs, gt, gv = self.store.read_raw(SIDS, lo, hi)
        assert gs.tolist() == s.tolist() and gt.tolist() == t.tolist()
        assert gv.view(np.uint64).tolist() == v.view(np.uint64).tolist()
        for step in (60, 3600):
            ref = rollup(s, t, v, step)
            got = self.store.read_rollups(SIDS, lo, hi, step)
            assert got.sid.tolist() == ref.sid.tolist()
            assert got.bucket.tolist() == ref.bucket.tolist()
            assert got.count.tolist() == ref.count.tolist()
            assert got.last_ts.tolist() == ref.last_ts.tolist()
            for name in ("sum", "min", "max", "last"):
                want = getattr(ref, name).view(np.uint64).tolist()
                assert getattr(got, name).view(np.uint64).tolist() == want, name
        # A narrow rollup read (one hour, one series) agrees too.
        one = SIDS[:1]
        m = (ref.sid == 0) & (ref.bucket == T0 + 3600)
        got = self.store.read_rollups(one, T0 + 3600, T0 + 3600, 3600)
        assert got.count.tolist() == ref.count[m].tolist()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StagingMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_staging_fold_reopen_match_the_model = StagingMachine.TestCase
