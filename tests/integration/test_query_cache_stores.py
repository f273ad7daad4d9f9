"""The query result cache in front of real store processes (issue 4 item 4).

A rocks store and both indexes run as real processes on tansu; the query API runs in-process
with its segment cache on a private Valkey. Points three to two hours old are complete
(older than the settle time), so:

- the first query reads rocks and stores the chunks; repeating it is answered from Redis
  (hits counted, no new stores), with the identical body;
- the answer equals the produced points;
- Redis of the cache SIGKILLed mid-test: the same query is still answered, identically,
  from the store, and the failure is counted and reported (``redis: down``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from query.app import create_app
from query.cache import CachedHttpStoreClient, SegmentCache, stats_router
from query.settings import QuerySettings
from query.stores_client import RegistryView
from strata.keys import KeyStore, NewKeys, create_keys
from strata.model import MetricType
from strata.registry import Registry
from strata.servers import RunningServer, start_valkey
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Stores,
    make_series,
    points_message,
    produce,
    series_message,
    stores_fixture,
)

pytestmark = pytest.mark.integration

ORG = "acme"
METRIC = "cache.cpu"
HOSTS = ("h0", "h1")


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


@pytest.fixture
def cache_redis(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_valkey(tmp_path / "cache-valkey")
    yield server
    server.stop()


def test_repeated_query_is_served_from_redis_and_survives_its_loss(
    stores: Stores,
    strata_env: dict[str, str],
    cache_redis: RunningServer,
    tmp_path: Path,
) -> None:
    for kind in ("rocks", "tags", "inverted"):
        stores.start(kind, f"{kind}-1").wait_ready(partitions=3, timeout=60)
    now = int(time.time())
    first = now - now % 3600 - 3 * 3600  # one whole cache chunk (1 h), long settled
    ts = list(range(first, first + 3600, 60))
    model: dict[str, dict[int, float]] = {}
    group = [make_series(ORG, METRIC, f"host:{h}") for h in HOSTS]
    produce(
        strata_env,
        strata_env["STRATA_TOPIC_SERIES"],
        [(group[0].key, series_message(group, first, MetricType.GAUGE))],
    )
    messages = []
    for i, s in enumerate(group):
        values = [float(i * 1000 + k) for k in range(len(ts))]
        messages.append((s.key, points_message(s, ts, values)))
        model[f"host:{HOSTS[i]}"] = dict(zip(ts, values, strict=True))
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)

    keys_path = tmp_path / "keys.json"
    keys: NewKeys = create_keys(keys_path, ORG)
    topics = {"rocks": strata_env["STRATA_TOPIC_POINTS"]}
    topics.update({k: strata_env["STRATA_TOPIC_SERIES"] for k in ("tags", "inverted")})
    registry = Registry(strata_env["STRATA_REDIS_URL"])
    http = httpx.Client(timeout=5.0)
    cache = SegmentCache.from_url(
        f"redis://127.0.0.1:{cache_redis.port}/0",
        timeout_seconds=0.2,
        settle_seconds=4500,
        retry_seconds=60.0,
    )
    client = CachedHttpStoreClient(
        RegistryView(registry, 0.0, topics=topics), http, segment_cache=cache
    )
    app = create_app(QuerySettings(max_points=60), client, KeyStore(keys_path, check_every=0.0))
    app.include_router(stats_router(cache))
    params: dict[str, str | int] = {
        "from": first,
        "to": first + 3599,
        "query": f"avg:{METRIC}{{*}} by {{host}}",
    }
    headers = {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}

    def stats(api: TestClient) -> dict[str, Any]:
        out: dict[str, Any] = api.get("/v1/stats").json()["cache"]
        return out

    try:
        with TestClient(app) as api:
            deadline = time.monotonic() + 60
            while True:  # until rocks has applied and folded everything
                resp = api.get("/api/v1/query", params=params, headers=headers)
                if resp.status_code == 200:
                    got = {
                        s["scope"]: {int(t) // 1000: v for t, v in s["pointlist"]}
                        for s in resp.json()["series"]
                    }
                    if got and all(len(p) == 60 for p in got.values()):
                        break
                assert time.monotonic() < deadline, resp.text[:300]
                time.sleep(0.5)
            assert resp.headers["x-strata-tiers"] == "rocks"
            # one-minute buckets: each holds one point, the model's value
            assert got == model
            cold = stats(api)
            assert cold["stored"] > 0 and cold["errors"] == 0, cold

            warm = api.get("/api/v1/query", params=params, headers=headers)
            after = stats(api)
            assert warm.json() == resp.json()
            assert after["hits"] - cold["hits"] >= cold["stored"]  # every chunk from Redis
            assert after["misses"] == cold["misses"] and after["stored"] == cold["stored"]

            cache_redis.kill()
            lost = api.get("/api/v1/query", params=params, headers=headers)
            assert lost.status_code == 200
            assert lost.json() == resp.json()
            down = stats(api)
            assert down["errors"] >= 1 and down["redis"] == "down"
    finally:
        cache.close()
        http.close()
        registry.close()
