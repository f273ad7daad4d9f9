"""Tag index catalog, describe and metadata on a real RocksDB (tmp dir), over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from stores.runtime.ownership import Ownership
from stores.runtime.store import Record
from stores.tags.api import create_app
from stores.tags.index import TagIndex
from strata.codec import SeriesBatch, decode_series, encode_metadata
from strata.model import SID_DTYPE, TS_DTYPE

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % HOUR


def batch(org: str, metric: str, sid: int, bucket: int, tags: tuple[str, ...]) -> SeriesBatch:
    return SeriesBatch(
        org,
        metric,
        np.array([sid], dtype=SID_DTYPE),
        np.array([bucket], dtype=TS_DTYPE),
        np.zeros(1, dtype=np.uint8),
        np.full(1, 10, dtype=np.uint32),
        (tags,),
    )


def meta(org: str, metric: str, fields: dict[str, Any]) -> SeriesBatch:
    return decode_series(encode_metadata(org, metric, fields))


def test_catalog_describe_metadata(tmp_path: Path) -> None:
    index = TagIndex("series", tmp_path / "tags")
    index.apply(
        [
            Record(0, 0, 0, batch("acme", "cpu.user", 1, T0, ("env:prod", "host:a", "role"))),
            Record(0, 1, 0, batch("acme", "cpu.sys", 2, T0 - 5 * HOUR, ("env:dev",))),
            Record(0, 2, 0, batch("globex", "cpu.user", 3, T0, ("team:x",))),
        ]
    )
    c = TestClient(create_app(index, Ownership()))
    cat = c.get("/v1/catalog", params={"org": "acme", "prefix": "cpu."}).json()
    assert cat == {
        "metrics": [
            {"metric": "cpu.sys", "last_seen": T0 - 5 * HOUR},
            {"metric": "cpu.user", "last_seen": T0},
        ]
    }
    since = c.get("/v1/metrics", params={"org": "acme", "from": T0 - HOUR}).json()
    assert since == {"metrics": ["cpu.user"]}
    assert c.get("/v1/metrics", params={"org": "acme", "prefix": "cpu.s"}).json() == {
        "metrics": ["cpu.sys"]
    }
    d = c.get("/v1/metrics/cpu.user/describe", params={"org": "acme"}).json()
    assert d["tags"] == ["env:prod", "host:a", "role"]
    assert d["tag_values"] == {"env": ["prod"], "host": ["a"], "role": []}
    assert c.get("/v1/metrics/cpu.sys/describe", params={"org": "globex"}).status_code == 404
    # metadata: unknown -> 404, merge, null clears, orgs apart
    assert c.get("/v1/metrics/nope/metadata", params={"org": "acme"}).status_code == 404
    # updates arrive through the series topic (the query service produces them), in order
    index.apply([Record(0, 3, 0, meta("acme", "cpu.user", {"unit": "percent"}))])
    r = c.get("/v1/metrics/cpu.user/metadata", params={"org": "acme"})
    assert r.json() == {"metadata": {"unit": "percent"}}
    index.apply(
        [
            Record(0, 4, 0, meta("acme", "cpu.user", {"unit": None, "type": "count"})),
            Record(0, 5, 0, meta("acme", "cpu.user", {"type": "gauge"})),  # same batch
        ]
    )
    r = c.get("/v1/metrics/cpu.user/metadata", params={"org": "acme"})
    assert r.json() == {"metadata": {"type": "gauge"}}
    other = c.get("/v1/metrics/cpu.user/metadata", params={"org": "globex"})
    assert other.json() == {"metadata": {}}
    # writes only through Kafka: no write endpoint on the store
    assert (
        c.put("/v1/metrics/cpu.user/metadata", params={"org": "acme"}, json={}).status_code == 405
    )
    index.close()
    again = TagIndex("series", tmp_path / "tags")  # durable
    assert again.metadata("acme", "cpu.user") == {"type": "gauge"}
    again.close()
