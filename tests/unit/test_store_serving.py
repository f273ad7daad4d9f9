"""Stores refuse reads about partitions they do not serve at the moment of reading
(stores/runtime/serving.py), and the indexes advertise a partition only once caught up on
it (stores/runtime/readiness.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stores.runtime.http import make_app
from stores.runtime.ownership import Ownership
from stores.runtime.readiness import CaughtUpCoverage
from stores.runtime.serving import NotServing, ServingGuard


def owning(*partitions: int) -> Ownership:
    o = Ownership()
    o.assign({p: None for p in partitions})
    return o


def test_caught_up_coverage_follows_assignment_and_end_of_partition() -> None:
    c = CaughtUpCoverage()
    c.assigned([0, 1], {})
    assert c.coverage([0, 1], 100) == {}  # replaying: nothing advertised
    c.caught_up(0, 10)
    assert c.coverage([0, 1], 100) == {0: [0, 100]}
    c.revoked([0])
    c.assigned([0], {})  # back again: must catch up again first
    assert c.coverage([0, 1], 100) == {}
    c.caught_up(1, 3)
    assert c.coverage([0, 1], 100) == {1: [0, 100]}


def guard_for(ownership: Ownership, ready: set[int]) -> ServingGuard:
    def coverage(partitions: Sequence[int], now: int) -> dict[int, list[int]]:
        return {p: [0, now] for p in partitions if p in ready}

    return ServingGuard(ownership, coverage, clock=lambda: 1000.0)


def test_guard_allows_served_partitions_and_unnamed_reads() -> None:
    guard = guard_for(owning(0, 1), {0, 1})
    with guard.serving(1):
        pass
    with guard.serving(None):  # older callers that do not name a partition
        pass


@pytest.mark.parametrize(
    ("owned", "ready", "asked"),
    [((0,), {0}, 2), ((0, 2), {0}, 2), ((0,), {0, 2}, 2)],
    ids=["not owned", "owned but replaying", "covered but no longer owned"],
)
def test_guard_refuses_partitions_not_served(
    owned: tuple[int, ...], ready: set[int], asked: int
) -> None:
    guard = guard_for(owning(*owned), ready)
    ran = []
    with (
        pytest.raises(NotServing, match=f"partition {asked} is not served here"),
        guard.serving(asked),
    ):
        ran.append(asked)
    assert ran == []  # the read never ran


def test_guard_discards_a_read_that_raced_a_reassignment() -> None:
    ownership = owning(0, 1)
    guard = guard_for(ownership, {0, 1})
    with pytest.raises(NotServing, match="reassigned during the read"), guard.serving(0):
        ownership.revoke([1])  # a rebalance while reading (0 is handed back)
        ownership.assign({0: None})


def test_store_apps_answer_503_naming_the_partition() -> None:
    app: FastAPI = make_app("ram", lambda: [0])
    guard = guard_for(owning(0), {0})

    @app.get("/read/{p}")
    def read(p: int) -> dict[str, int]:
        with guard.serving(p):
            return {"p": p}

    with TestClient(app) as client:
        assert client.get("/read/0").json() == {"p": 0}
        resp = client.get("/read/1")
    assert resp.status_code == 503
    assert "partition 1 is not served here" in resp.json()["errors"][0]
