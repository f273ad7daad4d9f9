"""Metric metadata travels through the series topic (query/metadata_writer.py), so it
belongs to the partition, not to one tag-index instance.

A PUT through the real query API (official client shapes) is visible right after; then the
tag index that held it is SIGKILLed and a new instance with an empty data directory takes
the partitions over: it replays the topic and serves the same metadata.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from query.app import create_app
from query.metadata_writer import MetadataWriter
from query.settings import QuerySettings
from query.stores_client import HttpStoreClient, RegistryView
from strata.keys import KeyStore, create_keys
from strata.model import MetricType
from strata.registry import Registry
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Stores,
    make_series,
    produce,
    series_message,
    stores_fixture,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


def test_metadata_survives_the_tag_index_that_stored_it(
    stores: Stores, strata_env: dict[str, str], tmp_path: Path
) -> None:
    first = stores.start("tags", "tags-1")
    stores.start("inverted", "inverted-1").wait_ready(partitions=3, timeout=60)
    first.wait_ready(partitions=3, timeout=60)
    group = [make_series("acme", "shop.latency", f"host:h{i}") for i in range(2)]
    now = int(time.time())
    produce(
        strata_env,
        strata_env["STRATA_TOPIC_SERIES"],
        [(group[0].key, series_message(group, now, MetricType.GAUGE))],
    )
    keys_path = tmp_path / "keys.json"
    acme, globex = create_keys(keys_path, "acme"), create_keys(keys_path, "globex")
    registry = Registry(strata_env["STRATA_REDIS_URL"])
    topics = {k: strata_env["STRATA_TOPIC_SERIES"] for k in ("tags", "inverted")}
    view = RegistryView(registry, 0.0, topics=topics)
    http = httpx.Client(timeout=5.0)
    client = HttpStoreClient(view, http)
    writer = MetadataWriter(strata_env["STRATA_KAFKA_BOOTSTRAP"], strata_env["STRATA_TOPIC_SERIES"])
    client.metadata_writer = writer
    app = create_app(QuerySettings(), client, KeyStore(keys_path, check_every=0.0))

    def h(k: object) -> dict[str, str]:
        return {"DD-API-KEY": k.api_key, "DD-APPLICATION-KEY": k.app_key}  # type: ignore[attr-defined]

    url = "/api/v1/metrics/shop.latency"
    try:
        with TestClient(app) as api:
            wait_for(lambda: api.get(url, headers=h(acme)).status_code == 200, timeout=30)
            put = api.put(url, headers=h(acme), json={"unit": "millisecond", "type": "gauge"})
            assert put.status_code == 200, put.text
            assert put.json()["unit"] == "millisecond" and put.json()["type"] == "gauge"
            assert api.get(url, headers=h(acme)).json() == put.json()  # read your write
            put = api.put(url, headers=h(acme), json={"type": None, "description": "p50"})
            assert put.json() == {"unit": "millisecond", "description": "p50"}
            assert api.get(url, headers=h(globex)).status_code == 404  # never another org's
            assert api.put(url, headers=h(globex), json={"unit": "x"}).status_code == 404
            expected = api.get(url, headers=h(acme)).json()

            first.kill()  # its RocksDB held the metadata; the new owner never saw a PUT
            second = stores.start("tags", "tags-2")
            second.wait_ready(partitions=3, timeout=90)

            def served_by_second() -> bool:
                resp = api.get(url, headers=h(acme))
                if resp.status_code != 200:
                    return False  # 503 while the partition moves: never a wrong answer
                assert resp.json() == expected, resp.json()
                return True

            wait_for(served_by_second, timeout=60, what="metadata served by the new owner")
    finally:
        writer.close()
        http.close()
        registry.close()
