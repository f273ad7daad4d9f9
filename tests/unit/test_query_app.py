"""The HTTP API over a fake store: auth and org scoping, parameters, results, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from query.app import create_app
from query.settings import QuerySettings
from strata.keys import KeyStore, NewKeys, create_keys
from tests.unit.query_fakes import FakeStore

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # hour-aligned: every ladder step divides it


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


@pytest.fixture
def acme(keys_path: Path) -> NewKeys:
    return create_keys(keys_path, "acme")


@pytest.fixture
def globex(keys_path: Path, acme: NewKeys) -> NewKeys:
    return create_keys(keys_path, "globex")


@pytest.fixture
def store() -> FakeStore:
    s = FakeStore()
    s.add("acme", "cpu", ["env:prod", "host:a"], [(T0, 1.0), (T0 + 5, 3.0), (T0 + 20, 4.0)])
    s.add("acme", "cpu", ["env:prod", "host:b"], [(T0 + 1, 10.0)])
    s.add("acme", "cpu", ["env:dev", "host:c", "role:db"], [(T0 + 2, 100.0)])
    s.add("acme", "mem", ["env:prod"], [(T0, 1.0)])
    s.add("globex", "cpu", ["env:prod", "host:a"], [(T0, 1000.0)])
    s.add("globex", "secret.metric", [], [(T0, 1.0)])
    return s


@pytest.fixture
def client(keys_path: Path, globex: NewKeys, store: FakeStore) -> Iterator[TestClient]:
    settings = QuerySettings(max_series=10, retry_after_seconds=2)
    app = create_app(settings, store, KeyStore(keys_path, check_every=0.0))
    with TestClient(app) as c:
        yield c


def headers(keys: NewKeys) -> dict[str, str]:
    return {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}


def get_query(
    client: TestClient, keys: NewKeys, query: str, start: int = T0, end: int = T0 + 59
) -> Any:
    return client.get(
        "/api/v1/query",
        params={"from": start, "to": end, "query": query},
        headers=headers(keys),
    )


def points(series: dict[str, Any]) -> list[tuple[int, float]]:
    return [(int(t) // 1000, v) for t, v in series["pointlist"]]


def test_health(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_query_no_group(client: TestClient, acme: NewKeys) -> None:
    resp = get_query(client, acme, "avg:cpu{env:prod}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["group_by"] == []
    [series] = body["series"]
    assert series["scope"] == "env:prod" and series["tag_set"] == []
    assert series["interval"] == 1
    # 1 s buckets: host a at +0 (1) and +5 (3) and +20 (4); host b at +1 (10).
    assert points(series) == [(T0, 1.0), (T0 + 1, 10.0), (T0 + 5, 3.0), (T0 + 20, 4.0)]


def test_query_group_by_with_exclusion(client: TestClient, acme: NewKeys) -> None:
    resp = get_query(client, acme, "sum:cpu{!role:db} by {host}", end=T0 + 3599)
    body = resp.json()
    assert body["group_by"] == ["host"]
    assert [s["tag_set"] for s in body["series"]] == [["host:a"], ["host:b"]]
    assert body["series"][0]["interval"] == 15
    # host a: bucket T0 averages 1 and 3 -> 2; bucket T0+15 holds 4.
    assert points(body["series"][0]) == [(T0, 2.0), (T0 + 15, 4.0)]
    assert body["series"][0]["scope"] == "!role:db,host:a"


def test_group_by_missing_key_is_na(client: TestClient, acme: NewKeys) -> None:
    body = get_query(client, acme, "max:cpu{*} by {role}").json()
    assert [s["tag_set"] for s in body["series"]] == [["role:N/A"], ["role:db"]]
    assert points(body["series"][0]) == [(T0, 1.0), (T0 + 1, 10.0), (T0 + 5, 3.0), (T0 + 20, 4.0)]
    assert points(body["series"][1]) == [(T0 + 2, 100.0)]


def test_results_are_scoped_to_the_org_of_the_keys(
    client: TestClient, acme: NewKeys, globex: NewKeys
) -> None:
    acme_body = get_query(client, acme, "max:cpu{host:a}").json()
    globex_body = get_query(client, globex, "max:cpu{host:a}").json()
    assert max(v for _, v in points(acme_body["series"][0])) == 4.0
    assert points(globex_body["series"][0]) == [(T0, 1000.0)]


def test_empty_result(client: TestClient, acme: NewKeys) -> None:
    body = get_query(client, acme, "avg:cpu{env:nowhere}").json()
    assert body["series"] == [] and body["status"] == "ok"
    body = get_query(client, acme, "avg:cpu{*}", T0 + 100, T0 + 200).json()
    assert body["series"] == []


def test_keys_in_query_parameters(client: TestClient, acme: NewKeys) -> None:
    resp = client.get(
        "/api/v1/query",
        params={
            "from": T0,
            "to": T0 + 10,
            "query": "avg:mem{*}",
            "api_key": acme.api_key,
            "application_key": acme.app_key,
        },
    )
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/metrics"])
def test_forbidden(client: TestClient, acme: NewKeys, globex: NewKeys, path: str) -> None:
    params = {"from": T0, "to": T0 + 10, "query": "avg:cpu{*}"}
    mixed = {"DD-API-KEY": acme.api_key, "DD-APPLICATION-KEY": globex.app_key}
    app_only = {"DD-APPLICATION-KEY": acme.app_key}
    api_only = {"DD-API-KEY": acme.api_key}
    swapped = {"DD-API-KEY": acme.app_key, "DD-APPLICATION-KEY": acme.api_key}
    unknown = {"DD-API-KEY": "0" * 32, "DD-APPLICATION-KEY": acme.app_key}
    for hdrs in (mixed, app_only, api_only, swapped, unknown, {}):
        resp = client.get(path, params=params, headers=hdrs)
        assert resp.status_code == 403, hdrs
        assert resp.json() == {"errors": ["Forbidden"]}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"to": T0, "query": "avg:cpu{*}"}, "missing required parameter 'from'"),
        ({"from": T0, "query": "avg:cpu{*}"}, "missing required parameter 'to'"),
        ({"from": T0, "to": T0}, "missing required parameter 'query'"),
        ({"from": "yesterday", "to": T0, "query": "avg:cpu{*}"}, "parameter 'from' must be"),
        ({"from": T0, "to": "nan", "query": "avg:cpu{*}"}, "parameter 'to' must be a finite"),
        ({"from": -1, "to": T0, "query": "avg:cpu{*}"}, "parameter 'from' is out of range"),
        ({"from": T0, "to": T0 * 1000, "query": "avg:cpu{*}"}, "parameter 'to' is out of range"),
        ({"from": T0 + 1, "to": T0, "query": "avg:cpu{*}"}, "'from' (1699999201) is after"),
        ({"from": T0, "to": T0, "query": "p42:cpu{*}"}, "position 0"),
    ],
)
def test_bad_requests_name_the_problem(
    client: TestClient, acme: NewKeys, params: dict[str, Any], fragment: str
) -> None:
    resp = client.get("/api/v1/query", params=params, headers=headers(acme))
    assert resp.status_code == 400
    [message] = resp.json()["errors"]
    assert fragment in message


def test_decimal_timestamps_are_floored(client: TestClient, acme: NewKeys) -> None:
    resp = client.get(
        "/api/v1/query",
        params={"from": f"{T0}.9", "to": f"{T0 + 1}.5", "query": "avg:mem{*}"},
        headers=headers(acme),
    )
    assert resp.status_code == 200
    assert resp.json()["from_date"] == T0 * 1000


def test_too_many_series(client: TestClient, acme: NewKeys, store: FakeStore) -> None:
    for i in range(11):
        store.add("acme", "wide", [f"host:h{i}"], [(T0, 1.0)])
    resp = get_query(client, acme, "avg:wide{*}")
    assert resp.status_code == 400
    assert "limit of 10" in resp.json()["errors"][0]


def test_store_unavailable_is_503_with_retry_after(
    client: TestClient, acme: NewKeys, store: FakeStore
) -> None:
    store.unavailable = True
    for resp in (
        get_query(client, acme, "avg:cpu{*}"),
        client.get("/api/v1/metrics", params={"from": T0}, headers=headers(acme)),
    ):
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "2"
        assert "no ram store instance owns partition" in resp.json()["errors"][0]


def test_metrics_list(client: TestClient, acme: NewKeys, globex: NewKeys) -> None:
    resp = client.get("/api/v1/metrics", params={"from": T0}, headers=headers(acme))
    assert resp.json() == {"from": str(T0), "metrics": ["cpu", "mem"]}
    resp = client.get("/api/v1/metrics", params={"from": T0}, headers=headers(globex))
    assert resp.json()["metrics"] == ["cpu", "secret.metric"]


def test_metrics_list_host_filter(client: TestClient, acme: NewKeys) -> None:
    resp = client.get("/api/v1/metrics", params={"from": T0, "host": "c"}, headers=headers(acme))
    assert resp.json()["metrics"] == ["cpu"]


def test_metrics_list_requires_from(client: TestClient, acme: NewKeys) -> None:
    resp = client.get("/api/v1/metrics", headers=headers(acme))
    assert resp.status_code == 400
    assert resp.json() == {"errors": ["missing required parameter 'from'"]}


def test_unknown_path_uses_the_error_shape(client: TestClient) -> None:
    resp = client.get("/api/v1/nope")
    assert resp.status_code == 404
    assert resp.json() == {"errors": ["Not Found"]}


def test_unreadable_keys_file_is_503_not_500(tmp_path: Path, store: FakeStore) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    app = create_app(QuerySettings(retry_after_seconds=2), store, KeyStore(path, check_every=0))
    with TestClient(app) as c:
        r = c.get("/api/v1/metrics", params={"from": 0}, headers={"DD-API-KEY": "x"})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert r.json() == {"errors": ["Service unavailable, retry later: key store unreadable"]}
