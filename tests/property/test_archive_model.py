"""Stateful property: ingest, redeliver, flush, restart, compact and expire in any order;
every read (raw, 1 m, 1 h) matches a reference model afterwards."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import DAY
from stores.archive.objectstore import LocalDirStore
from stores.archive.reader import ArchiveReader
from stores.archive.store import ArchivePointStore
from stores.runtime.store import Record
from strata.codec import PointBatch
from strata.model import SID_DTYPE
from strata.rollup import HOUR, MINUTE
from tests.unit.test_archive_ingest import (
    T0,
    Clock,
    Model,
    as_model,
    assert_rollups_equal,
    batch,
    make_store,
    model_add,
    model_rollups,
)

SIDS = [1, 2, 3]
values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e300, -1e-300])
points = st.lists(
    st.tuples(st.sampled_from(SIDS), st.integers(-2 * DAY, DAY), values), min_size=1, max_size=8
)


class ArchiveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.objects = LocalDirStore(self.dir)
        self.clock = Clock(T0)
        self.store = self._new_store()
        self.log: list[PointBatch] = []  # the partition's messages, offset = index
        self.model: Model = {}
        self.expired_before = -(10**12)

    def _new_store(self) -> ArchivePointStore:
        store = make_store(self.objects, self.clock, flush_rows=10)
        store.start_position(0, 0)
        return store

    @rule(pts=points)
    def produce_and_apply(self, pts: list[tuple[int, int, float]]) -> None:
        sid = pts[0][0]
        b = batch("acme", "cpu", sid, [T0 + t for _, t, _ in pts], [v for _, _, v in pts])
        self.log.append(b)
        model_add(self.model, b)
        offset = len(self.log) - 1
        self.store.apply([Record(0, offset, 0, b)])
        self.store.make_durable()

    @rule(back=st.integers(1, 5))
    def redeliver(self, back: int) -> None:
        start = max(0, len(self.log) - back)
        recs = [Record(0, o, 0, self.log[o]) for o in range(start, len(self.log))]
        self.store.apply(recs)
        self.store.make_durable()

    @rule()
    def flush(self) -> None:
        self.store.flush_all()

    @rule()
    def crash_and_restart(self) -> None:
        # Buffered records are lost; the new store resumes after the objects' last offset
        # and the consumer replays from there.
        self.store = self._new_store()
        nxt = self.store.durable_offsets().get(0, 0)
        recs = [Record(0, o, 0, self.log[o]) for o in range(nxt, len(self.log))]
        self.store.apply(recs)

    @rule()
    def compact(self) -> None:
        self.store.flush_all()
        Compactor(Catalog(self.objects), Retention(400 * DAY), clock=self.clock).run()

    @precondition(lambda self: len(self.log) > 3)
    @rule()
    def expire_old(self) -> None:
        self.store.flush_all()
        now = T0 + DAY
        Compactor(Catalog(self.objects), Retention(2 * DAY), clock=Clock(now)).run()
        self.expired_before = max(self.expired_before, now - 2 * DAY)
        self.model = {k: v for k, v in self.model.items() if k[1] >= self.expired_before}

    @invariant()
    def reads_match_model(self) -> None:
        self.store.flush_all()
        reader = ArchiveReader(self.store.catalog)
        sids = np.array(SIDS, SID_DTYPE)
        lo, hi = T0 - 3 * DAY, T0 + 2 * DAY
        assert as_model(reader.read_raw(sids, lo, hi)) == self.model
        for step in (MINUTE, HOUR):
            assert_rollups_equal(
                reader.read_rollups(sids, lo, hi, step),
                model_rollups(self.model, SIDS, lo, hi, step),
            )

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


ArchiveMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestArchiveModel = ArchiveMachine.TestCase
