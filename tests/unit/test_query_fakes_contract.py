"""The in-memory fake store used by the query unit tests honours the StoreClient contract."""

from __future__ import annotations

import numpy as np

from query.stores_client import StoreClient
from tests.unit.query_fakes import FakeStore


def test_fake_implements_the_protocol_and_scopes_orgs() -> None:
    store = FakeStore()
    client: StoreClient = store
    a = store.add("a", "m", ["env:prod"], [(10, 1.0)])
    store.add("b", "m", ["env:prod"], [(10, 2.0)])
    assert client.resolve("a", "m", 0, 100, ("env:prod",), ()).tolist() == [a]
    assert client.lookup("b", "m", np.array([a], np.uint64)) == {}
    assert client.read_points("a", "m", np.array([a], np.uint64), 0, 9).sid.size == 0
