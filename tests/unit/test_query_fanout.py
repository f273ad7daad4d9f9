"""Scale-out behaviour of the query service (issue 4 item 5) without servers: parallel
fan-out, the per-request time budget, and partial answers that always say what is missing.

The same behaviour against real store processes (two RAM and two index instances, one
killed) is tests/integration/test_query_scaleout.py.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse
from datadog_api_client.v2.model.timeseries_formula_query_response import (
    TimeseriesFormulaQueryResponse,
)
from fastapi.testclient import TestClient

from query import fanout
from query.app import create_app, header_value
from query.evaluate import evaluate_all
from query.language import QuerySyntaxError, parse, parse_list
from query.settings import QuerySettings
from query.stores_client import HttpStoreClient, RegistryView, StoreUnavailable
from strata.keys import KeyStore, NewKeys, create_keys
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from tests.unit.query_fakes import FakeStore

T0 = 1_700_000_000 - 1_700_000_000 % 3600
ORG = "acme"


# -- fanout primitives --------------------------------------------------------------------------


def meet(barrier: threading.Barrier, i: int) -> int:
    barrier.wait()
    return i


def test_parallel_runs_calls_at_the_same_time() -> None:
    barrier = threading.Barrier(3, timeout=5)  # passes only if all three wait together
    with fanout.request_scope(10):
        out = fanout.parallel([functools.partial(meet, barrier, i) for i in range(3)])
    assert out == [0, 1, 2]


def test_parallel_returns_exceptions_per_call_and_keeps_the_context() -> None:
    def fails() -> int:
        fanout.warn("left something out")
        raise StoreUnavailable("down")

    with fanout.request_scope(10) as scope:
        out = fanout.parallel([lambda: 1, fails])
        assert out[0] == 1
        assert isinstance(out[1], StoreUnavailable)
        # the warning recorded in the pool thread reached the request's scope
        assert scope.warnings == ["left something out"]
    assert fanout.warnings() == []  # outside a request there is no scope


def test_budget_cancels_what_has_not_finished() -> None:
    release = threading.Event()
    started = time.monotonic()
    with fanout.request_scope(0.3), pytest.raises(fanout.BudgetExceeded, match=r"0\.3 s"):
        fanout.parallel([lambda: 1, lambda: release.wait(10)])
    assert time.monotonic() - started < 2
    release.set()


def test_timeout_for_is_capped_by_the_budget_and_refuses_when_spent() -> None:
    assert fanout.timeout_for(10.0) == 10.0  # no request: the store timeout
    with fanout.request_scope(2.0):
        assert 1.0 < fanout.timeout_for(10.0) <= 2.0
        assert fanout.timeout_for(0.5) == 0.5
    with fanout.request_scope(0.01):
        time.sleep(0.02)
        with pytest.raises(fanout.BudgetExceeded):
            fanout.timeout_for(10.0)


def test_warnings_are_deduplicated_header_safe_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "_log_throttle", fanout.LogThrottle(60.0))
    with caplog.at_level(logging.WARNING, logger="query.fanout"), fanout.request_scope(1) as scope:
        fanout.warn("a")
        fanout.warn("a")
        fanout.warn("b\nc é")
    assert scope.warnings == ["a", "b\nc é"]
    assert [r.getMessage() for r in caplog.records] == [
        "partial answer: a",
        "partial answer: b\nc é",
    ]
    assert header_value(scope.warnings) == "a; b?c ?"
    assert len(header_value(["x" * 5000])) == 2000


def test_a_repeated_warning_is_logged_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "_log_throttle", fanout.LogThrottle(60.0))
    clock = [1000.0]
    monkeypatch.setattr(fanout, "_clock", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="query.fanout"):
        for _ in range(5):  # five requests meet the same outage within a minute
            with fanout.request_scope(1) as scope:
                fanout.warn("ram store ram-1 (partitions 0) did not answer")
                fanout.warn("tags store tags-1 (partitions 1) did not answer")
            assert len(scope.warnings) == 2  # every answer still names what is missing
            clock[0] += 10
        clock[0] += 20  # 70 s after the first lines
        with fanout.request_scope(1):
            fanout.warn("ram store ram-1 (partitions 0) did not answer")
    assert [r.getMessage() for r in caplog.records] == [
        "partial answer: ram store ram-1 (partitions 0) did not answer",
        "partial answer: tags store tags-1 (partitions 1) did not answer",
        "partial answer: ram store ram-1 (partitions 0) did not answer "
        "(and 4 more times since its last line)",
    ]


def test_log_throttle_forgets_the_oldest_messages_beyond_its_size() -> None:
    throttle = fanout.LogThrottle(60.0, max_messages=4)
    assert [throttle.admit(f"m{i}", 0.0) for i in range(4)] == [0, 0, 0, 0]
    assert throttle.admit("m0", 1.0) is None  # within the minute: left out, counted
    assert throttle.admit("m4", 2.0) == 0  # full, nothing expired: m0 and m1 forgotten
    assert throttle.admit("m0", 3.0) == 0  # logged again early, its count lost
    assert throttle.admit("m2", 4.0) is None  # still remembered
    assert throttle.admit("m5", 61.0) == 0  # full again: the expired m2, m3 go first
    assert throttle.admit("m3", 62.0) == 0
    assert throttle.admit("m4", 63.0) == 0  # expired, logged again with no count
    assert throttle.admit("m4", 64.0) is None


# -- comma-separated queries --------------------------------------------------------------------


def test_parse_list_splits_top_level_commas_only() -> None:
    exprs = parse_list("avg:a{x:1,y:2} by {h,k}, top(sum:b{*}, 5, 'mean', 'desc') ,avg:c{*}+1")
    assert [type(e).__name__ for e in exprs] == ["MetricQuery", "Call", "BinOp"]
    assert exprs[0] == parse("avg:a{x:1,y:2} by {h,k}")
    with pytest.raises(QuerySyntaxError, match=r"after ','.*position 9"):
        parse_list("avg:a{*},")
    with pytest.raises(QuerySyntaxError, match="position 9"):
        parse_list("avg:a{*},,avg:b{*}")


# -- partial answers from the evaluator ---------------------------------------------------------


def two_metric_store() -> FakeStore:
    store = FakeStore()
    for host, base in (("a", 1.0), ("b", 10.0)):
        store.add(ORG, "up", [f"host:{host}"], [(T0 + i, base + i) for i in range(60)])
        store.add(ORG, "down", [f"host:{host}"], [(T0 + i, 5.0) for i in range(60)])
    return store


def run(store: FakeStore, text: str) -> Any:
    return evaluate_all(parse_list(text), ORG, T0, T0 + 59, store, max_points=10, max_series=99)


def test_an_unanswerable_query_is_left_out_with_a_warning_naming_it() -> None:
    store = two_metric_store()
    complete = run(store, "sum:up{*},sum:down{*}")
    store.down_metrics.add("down")
    with fanout.request_scope(10) as scope:
        partial = run(store, "sum:up{*},sum:down{*}")
    assert partial.frames[1] is None
    assert partial.frames[0] is not None and complete.frames[0] is not None
    assert (partial.frames[0].values == complete.frames[0].values).all()
    assert len(scope.warnings) == 1
    assert "'sum:down{*}' could not be answered" in scope.warnings[0]
    assert "inv-2" in scope.warnings[0]


def test_arithmetic_over_a_missing_side_fails_instead_of_being_wrong() -> None:
    store = two_metric_store()
    store.down_metrics.add("down")
    with fanout.request_scope(10), pytest.raises(StoreUnavailable, match="inv-2"):
        run(store, "sum:up{*} + sum:down{*}")
    # with another expression answerable, the arithmetic one is the missing part
    with fanout.request_scope(10) as scope:
        out = run(store, "sum:up{*} + sum:down{*},avg:up{*}")
    assert out.frames[0] is None and out.frames[1] is not None
    assert "'sum:up{*} + sum:down{*}'" in scope.warnings[0]


# -- through the HTTP API ---------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, NewKeys]:
    path = tmp_path / "keys.json"
    return path, create_keys(path, ORG)


def make_client(keys: tuple[Path, NewKeys], store: FakeStore, budget: float = 30) -> TestClient:
    settings = QuerySettings(query_budget_seconds=budget, retry_after_seconds=1)
    return TestClient(create_app(settings, store, KeyStore(keys[0], check_every=0.0)))


@pytest.fixture
def headers(keys: tuple[Path, NewKeys]) -> dict[str, str]:
    return {"DD-API-KEY": keys[1].api_key, "DD-APPLICATION-KEY": keys[1].app_key}


def v1(client: TestClient, headers: dict[str, str], query: str) -> httpx.Response:
    params: dict[str, str | int] = {"from": T0, "to": T0 + 59, "query": query}
    resp: httpx.Response = client.get("/api/v1/query", params=params, headers=headers)
    return resp


def deserialize(body: dict[str, Any], model: type) -> Any:
    with ApiClient(Configuration()) as api:  # type: ignore[no-untyped-call]
        return api.deserialize(json.dumps(body), (model,), True)


def test_v1_comma_separated_queries_carry_their_query_index(
    keys: tuple[Path, NewKeys], headers: dict[str, str]
) -> None:
    with make_client(keys, two_metric_store()) as client:
        resp = v1(client, headers, "sum:up{*} by {host},avg:down{*}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(s["query_index"], s["scope"]) for s in body["series"]] == [
        (0, "host:a"),
        (0, "host:b"),
        (1, "*"),
    ]
    assert body["message"] == "" and "x-strata-warnings" not in resp.headers
    deserialize(body, MetricsQueryResponse)


def test_v1_partial_answer_says_what_is_missing(
    keys: tuple[Path, NewKeys], headers: dict[str, str]
) -> None:
    store = two_metric_store()
    store.down_metrics.add("down")
    with make_client(keys, store) as client:
        resp = v1(client, headers, "sum:up{*} by {host},avg:down{*}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert {s["query_index"] for s in body["series"]} == {0}
        assert "partial answer: 'avg:down{*}' could not be answered" in body["message"]
        assert "avg:down{*}" in resp.headers["x-strata-warnings"]
        assert deserialize(body, MetricsQueryResponse).message == body["message"]
        # nothing answerable: an error, never an empty 200
        resp = v1(client, headers, "avg:down{*}")
        assert resp.status_code == 503
        assert "inv-2" in resp.json()["errors"][0]


def test_v2_partial_answer_fills_errors(
    keys: tuple[Path, NewKeys], headers: dict[str, str]
) -> None:
    store = two_metric_store()
    store.down_metrics.add("down")
    queries = [
        {"data_source": "metrics", "name": "a", "query": "sum:up{*}"},
        {"data_source": "metrics", "name": "b", "query": "sum:down{*}"},
    ]
    body = {
        "data": {
            "type": "timeseries_request",
            "attributes": {
                "from": T0 * 1000,
                "to": (T0 + 60) * 1000,
                "queries": queries,
                "formulas": [{"formula": "a"}, {"formula": "a + b"}],
            },
        }
    }
    with make_client(keys, store) as client:
        resp = client.post("/api/v2/query/timeseries", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert {s["query_index"] for s in out["data"]["attributes"]["series"]} == {0}
        assert "could not be answered" in out["errors"]
        assert deserialize(out, TimeseriesFormulaQueryResponse).errors == out["errors"]
        body["data"]["attributes"]["formulas"] = [{"formula": "b"}]  # type: ignore[index]
        assert (
            client.post("/api/v2/query/timeseries", json=body, headers=headers).status_code == 503
        )


def test_time_budget_answers_504_naming_it(
    keys: tuple[Path, NewKeys], headers: dict[str, str]
) -> None:
    store = two_metric_store()
    store.resolve_delay = 1.0
    started = time.monotonic()
    with make_client(keys, store, budget=0.3) as client:
        resp = v1(client, headers, "sum:up{*},sum:down{*}")
    assert resp.status_code == 504
    assert "time budget of 0.3 s" in resp.json()["errors"][0]
    assert time.monotonic() - started < 1.0


# -- fan-out over tag index instances (HTTP client, mocked transport) ---------------------------


def tags_reg(name: str, partitions: list[int]) -> Registration:
    return Registration(
        kind="tags",
        instance=name,
        address=f"http://{name}:1",
        topic="t",
        partition_count=4,
        partitions=partitions,
        coverage={p: [0, 2**40] for p in partitions},
        updated=1.0,
    )


class Discovery:
    def __init__(self, regs: list[Registration]) -> None:
        self.regs = regs

    def discover(self, kind: str | None = None) -> list[Registration]:
        return [r for r in self.regs if kind is None or r.kind == kind]


def name_in(partition: int) -> str:
    """A metric name of ORG in ``partition`` of 4."""
    n = 0
    while partition_for(partition_key(ORG, f"m.x{n}"), 4) != partition:
        n += 1
    return f"m.x{n}"


NAMES = sorted(name_in(p) for p in range(4))
ONE = sorted(name_in(p) for p in (0, 1))  # what t1 serves


def list_client(regs: list[Registration], down: set[str]) -> HttpStoreClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host in down:
            raise httpx.ConnectError("connection refused", request=request)
        # every instance still holds metrics of partitions it does not serve (stale)
        return httpx.Response(200, content=json.dumps({"metrics": NAMES}))

    view = RegistryView(Discovery(regs), ttl=0.0)
    return HttpStoreClient(view, httpx.Client(transport=httpx.MockTransport(handler)))


def test_metric_list_merges_every_instance() -> None:
    client = list_client([tags_reg("t1", [0, 1]), tags_reg("t2", [2, 3])], set())
    with fanout.request_scope(5) as scope:
        assert client.list_metrics(ORG, 0) == NAMES
    assert scope.warnings == []


def test_metric_list_from_a_down_instance_is_partial_and_named() -> None:
    client = list_client([tags_reg("t1", [0, 1]), tags_reg("t2", [2, 3])], {"t2"})
    with fanout.request_scope(5) as scope:
        assert client.list_metrics(ORG, 0) == ONE
    assert len(scope.warnings) == 1
    assert "tags store t2 (partitions 2,3) did not answer" in scope.warnings[0]
    everyone_down = list_client([tags_reg("t1", [0, 1])], {"t1"})
    with fanout.request_scope(5), pytest.raises(StoreUnavailable, match="no tags store"):
        everyone_down.list_metrics(ORG, 0)


def test_partitions_nobody_owns_are_named() -> None:
    # t2 died and its registration expired before the group gave 2,3 to t1
    client = list_client([tags_reg("t1", [0, 1])], set())
    with fanout.request_scope(5) as scope:
        assert client.list_metrics(ORG, 0) == ONE
    assert scope.warnings == [
        "metric list is partial: no live tags store instance serves partitions 2,3 "
        "(unowned, or the owner is still catching up)"
    ]


def test_partitions_an_owner_is_still_catching_up_on_are_named() -> None:
    t2 = tags_reg("t2", [2, 3])
    t2.coverage = {2: [0, 2**40]}  # partition 3 just assigned, replaying
    client = list_client([tags_reg("t1", [0, 1]), t2], set())
    with fanout.request_scope(5) as scope:
        assert client.list_metrics(ORG, 0) == sorted(name_in(p) for p in (0, 1, 2))
    assert scope.warnings == [
        "metric list is partial: no live tags store instance serves partitions 3 "
        "(unowned, or the owner is still catching up)"
    ]


@pytest.fixture(autouse=True)
def _no_leftover_scope() -> Iterator[None]:
    yield
    assert fanout.current() is None
