"""Explore endpoints over a fake explore client: shapes through the official client's
deserializers, errors, and org isolation on every endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v1.model.metric_metadata import MetricMetadata
from datadog_api_client.v1.model.metric_search_response import MetricSearchResponse
from datadog_api_client.v2.model.metric_all_tags_response import MetricAllTagsResponse
from fastapi.testclient import TestClient

from query.app import create_app
from query.settings import QuerySettings
from strata.keys import KeyStore, NewKeys, create_keys
from tests.unit.query_fakes import FakeStore


class FakeExplore(FakeStore):
    """FakeStore plus the tag index's catalog, describe and metadata calls."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[tuple[str, str], dict[str, Any]] = {}

    def _tags(self, org: str, metric: str) -> list[str] | None:
        found = [set(s.tags) for s in self.series.values() if s.org == org and s.metric == metric]
        return sorted(set().union(*found)) if found else None

    def catalog(self, org: str, start: int, prefix: str) -> list[tuple[str, int]]:
        return [(m, 0) for m in self.list_metrics(org, start) if m.startswith(prefix)]

    def describe(self, org: str, metric: str, start: int) -> list[str] | None:
        return self._tags(org, metric)

    def get_metadata(self, org: str, metric: str) -> dict[str, Any] | None:
        if self._tags(org, metric) is None:
            return None
        return dict(self.meta.get((org, metric), {}))

    def put_metadata(self, org: str, metric: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        current = self.get_metadata(org, metric)
        if current is None:
            return None
        current.update(fields)
        current = {k: v for k, v in current.items() if v is not None}
        self.meta[(org, metric)] = current
        return current


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
def client(keys_path: Path, globex: NewKeys) -> Iterator[TestClient]:
    s = FakeExplore()
    s.add("acme", "cpu.user", ["env:prod", "host:a"], [(0, 1.0)])
    s.add("acme", "cpu.user", ["env:dev", "role"], [(0, 1.0)])
    s.add("acme", "mem.used", ["env:prod"], [(0, 1.0)])
    s.add("globex", "cpu.secret", ["team:x"], [(0, 1.0)])
    s.add("globex", "mem.used", ["team:x"], [(0, 1.0)])
    app = create_app(QuerySettings(), s, KeyStore(keys_path, check_every=0.0))
    with TestClient(app) as c:
        yield c


def h(keys: NewKeys) -> dict[str, str]:
    return {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}


def deserialize(body: Any, model: type) -> Any:
    config = Configuration()  # type: ignore[no-untyped-call]
    return validate_and_convert_types(  # type: ignore[no-untyped-call]
        json.loads(json.dumps(body)), (model,), ["received_data"], True, True, config
    )


def test_all_tags_shape_and_404(client: TestClient, acme: NewKeys) -> None:
    r = client.get("/api/v2/metrics/cpu.user/all-tags", headers=h(acme))
    assert r.status_code == 200
    parsed = deserialize(r.json(), MetricAllTagsResponse)
    assert parsed.data.id == "cpu.user"
    assert parsed.data.attributes.tags == ["env:dev", "env:prod", "host:a", "role"]
    missing = client.get("/api/v2/metrics/nope/all-tags", headers=h(acme))
    assert missing.status_code == 404 and "nope" in missing.json()["errors"][0]
    bad = client.get("/api/v2/metrics/9bad/all-tags", headers=h(acme))
    assert bad.status_code == 400 and "'name'" in bad.json()["errors"][0]


def test_search_by_prefix(client: TestClient, acme: NewKeys) -> None:
    r = client.get("/api/v1/search", params={"q": "metrics:cpu"}, headers=h(acme))
    assert r.status_code == 200
    assert deserialize(r.json(), MetricSearchResponse).results.metrics == ["cpu.user"]
    everything = client.get("/api/v1/search", params={"q": "metrics:"}, headers=h(acme))
    assert everything.json() == {"results": {"metrics": ["cpu.user", "mem.used"]}}
    bad = client.get("/api/v1/search", params={"q": "hosts:a"}, headers=h(acme))
    assert bad.status_code == 400 and "'q'" in bad.json()["errors"][0]


def test_metadata_round_trip(client: TestClient, acme: NewKeys) -> None:
    assert client.get("/api/v1/metrics/cpu.user", headers=h(acme)).json() == {}
    body = {"type": "gauge", "unit": "percent", "description": "user CPU", "statsd_interval": 10}
    r = client.put("/api/v1/metrics/cpu.user", json=body, headers=h(acme))
    assert r.status_code == 200
    got = client.get("/api/v1/metrics/cpu.user", headers=h(acme)).json()
    parsed = deserialize(got, MetricMetadata)
    assert (parsed.type, parsed.unit, parsed.description, parsed.statsd_interval) == (
        "gauge",
        "percent",
        "user CPU",
        10,
    )
    r = client.put("/api/v1/metrics/cpu.user", json={"unit": "byte"}, headers=h(acme))
    assert r.json()["unit"] == "byte" and r.json()["type"] == "gauge"  # a merge
    unknown = client.put("/api/v1/metrics/nope", json={"unit": "byte"}, headers=h(acme))
    assert unknown.status_code == 404
    assert client.get("/api/v1/metrics/nope", headers=h(acme)).status_code == 404
    bad = client.put("/api/v1/metrics/cpu.user", json={"colour": "red"}, headers=h(acme))
    assert bad.status_code == 400 and "colour" in bad.json()["errors"][0]
    bad = client.put("/api/v1/metrics/cpu.user", json={"statsd_interval": -1}, headers=h(acme))
    assert bad.status_code == 400 and "statsd_interval" in bad.json()["errors"][0]


ENDPOINTS = [
    ("GET", "/api/v2/metrics/cpu.user/all-tags", None),
    ("GET", "/api/v1/search?q=metrics:", None),
    ("GET", "/api/v1/metrics/cpu.user", None),
    ("PUT", "/api/v1/metrics/cpu.user", {"unit": "byte"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_keys_are_required(
    client: TestClient, acme: NewKeys, globex: NewKeys, method: str, path: str, body: Any
) -> None:
    assert client.request(method, path, json=body).status_code == 403
    mixed = {"DD-API-KEY": acme.api_key, "DD-APPLICATION-KEY": globex.app_key}
    r = client.request(method, path, json=body, headers=mixed)
    assert r.status_code == 403 and r.json() == {"errors": ["Forbidden"]}


def test_org_isolation_on_every_endpoint(
    client: TestClient, acme: NewKeys, globex: NewKeys
) -> None:
    # globex cannot see acme's cpu.user, nor acme globex's cpu.secret: both are unknown.
    for keys, other in ((globex, "cpu.user"), (acme, "cpu.secret")):
        assert client.get(f"/api/v2/metrics/{other}/all-tags", headers=h(keys)).status_code == 404
        assert client.get(f"/api/v1/metrics/{other}", headers=h(keys)).status_code == 404
        put = client.put(f"/api/v1/metrics/{other}", json={"unit": "x"}, headers=h(keys))
        assert put.status_code == 404
    search = client.get("/api/v1/search", params={"q": "metrics:"}, headers=h(globex))
    assert search.json()["results"]["metrics"] == ["cpu.secret", "mem.used"]
    # The shared name mem.used: each org sees only its own tags and metadata.
    client.put("/api/v1/metrics/mem.used", json={"unit": "byte"}, headers=h(acme))
    assert client.get("/api/v1/metrics/mem.used", headers=h(globex)).json() == {}
    tags = client.get("/api/v2/metrics/mem.used/all-tags", headers=h(globex)).json()
    assert tags["data"]["attributes"]["tags"] == ["team:x"]
