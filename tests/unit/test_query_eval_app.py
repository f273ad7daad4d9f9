"""``GET /api/v1/query`` with the full language, through the HTTP app over the fake store,
and the answers through the official client's deserializer."""

from __future__ import annotations

import json
from typing import Any

from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse
from fastapi.testclient import TestClient

from strata.keys import NewKeys
from tests.unit.test_query_app import T0, acme, client, globex, headers, keys_path, store

__all__ = ["acme", "client", "globex", "keys_path", "store"]  # fixtures used below


def get(client: TestClient, keys: NewKeys, query: str, end: int = T0 + 59) -> Any:
    resp = client.get(
        "/api/v1/query", params={"from": T0, "to": end, "query": query}, headers=headers(keys)
    )
    return resp


def points(series: dict[str, Any]) -> list[tuple[int, float | None]]:
    return [(int(t) // 1000, v) for t, v in series["pointlist"]]


def test_boolean_filters_wildcards_and_in(client: TestClient, acme: NewKeys) -> None:
    body = get(client, acme, "max:cpu{host:a OR role:db} by {host}").json()
    assert [s["tag_set"] for s in body["series"]] == [["host:a"], ["host:c"]]
    assert body["series"][1]["scope"] == "(host:a OR role:db) AND host:c"
    body = get(client, acme, "max:cpu{host:*} by {env}").json()
    assert [s["tag_set"] for s in body["series"]] == [["env:dev"], ["env:prod"]]
    body = get(client, acme, "sum:cpu{env NOT IN (dev)}").json()
    assert points(body["series"][0]) == [(T0, 1.0), (T0 + 1, 10.0), (T0 + 5, 3.0), (T0 + 20, 4.0)]


def test_modifiers_functions_and_arithmetic(client: TestClient, acme: NewKeys) -> None:
    body = get(client, acme, "sum:cpu{env:prod}.rollup(sum, 30)").json()
    [s] = body["series"]
    assert s["interval"] == 30 and points(s) == [(T0, 18.0)]
    assert s["expression"] == "sum:cpu{env:prod}.rollup(sum, 30)"
    body = get(client, acme, "sum:cpu{env:prod}.rollup(sum, 30) * 2 + 1").json()
    assert points(body["series"][0]) == [(T0, 37.0)]
    assert body["series"][0]["expression"] == "sum:cpu{env:prod}.rollup(sum, 30) * 2 + 1"
    body = get(client, acme, "cumsum(max:cpu{host:a})").json()
    assert points(body["series"][0]) == [(T0, 1.0), (T0 + 5, 4.0), (T0 + 20, 8.0)]


def test_answers_deserialize_with_the_official_client(client: TestClient, acme: NewKeys) -> None:
    for q in [
        "avg:cpu{env:prod OR env:dev} by {host}.fill(zero)",
        "top(max:cpu{*} by {host}, 2, 'max', 'desc') / max:cpu{*}",
        "count:cpu{*}",
    ]:
        resp = get(client, acme, q)
        assert resp.status_code == 200, resp.text
        with ApiClient(Configuration()) as api:  # type: ignore[no-untyped-call]
            parsed = api.deserialize(json.dumps(resp.json()), (MetricsQueryResponse,), True)
        assert isinstance(parsed, MetricsQueryResponse) and parsed.series


def test_errors_point_at_the_position(client: TestClient, acme: NewKeys) -> None:
    cases = {
        "avg:cpu{a, b OR c}": "cannot mix '!' or ',' with AND/OR/NOT in one scope; use 'NOT' "
        "and 'AND' instead at position 13",
        "p42:latency{*}": "unknown aggregator 'p42'; expected one of avg, sum, min, max, count, "
        "p50, p75, p90, p95, p99 at position 0",
        "avg:cpu{*}.rollup(median)": "unknown rollup method 'median'; expected one of avg, "
        "sum, min, max, count at position 18",
        "abs(2)": "the expression needs at least one metric query at position 0",
    }
    for q, message in cases.items():
        resp = get(client, acme, q)
        assert resp.status_code == 400
        assert resp.json() == {"errors": [message]}


def test_other_orgs_stay_invisible(client: TestClient, globex: NewKeys) -> None:
    body = get(client, globex, "sum:cpu{host:* OR env:*} + 0").json()
    assert [points(s) for s in body["series"]] == [[(T0, 1000.0)]]
