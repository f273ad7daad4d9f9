"""The in-memory fake store used by the query unit tests honours the StoreClient contract."""

from __future__ import annotations

import numpy as np

from query.stores_client import StoreClient
from strata.rollup import Rollups
from tests.unit.query_fakes import FakeStore


def test_fake_implements_the_protocol_and_scopes_orgs() -> None:
    store = FakeStore()
    client: StoreClient = store
    a = store.add("a", "m", ["env:prod"], [(10, 1.0)])
    store.add("b", "m", ["env:prod"], [(10, 2.0)])
    assert client.resolve("a", "m", 0, 100, ("env:prod",), ()).tolist() == [a]
    assert client.lookup("b", "m", np.array([a], np.uint64)) == {}
    _, [ram] = client.tier_sources("a", "m")
    assert ram.tier == "ram" and ram.coverage is not None
    assert client.read_tier(ram, np.array([a], np.uint64), 0, 9, "raw").sid.size == 0
    # A rollup read covers whole buckets starting in the range: bucket 0 holds ts 10.
    rollups = client.read_tier(ram, np.array([a], np.uint64), 0, 0, "1m")
    assert isinstance(rollups, Rollups)
    assert (rollups.sid.tolist(), rollups.bucket.tolist(), rollups.sum.tolist()) == (
        [a],
        [0],
        [1.0],
    )
