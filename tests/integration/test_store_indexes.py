"""Tag index and inverted index against real tansu + Valkey, as subprocesses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from strata.model import INDEX_BUCKET_SECONDS, MetricType
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Series,
    StoreProcess,
    Stores,
    make_series,
    produce,
    series_message,
    stores_fixture,
    wait_for,
)

pytestmark = pytest.mark.integration

NOW = int(time.time())
HOUR = INDEX_BUCKET_SECONDS
CPU = [
    make_series("acme", "cpu.user", f"host:h{i}", f"env:{env}")
    for i, env in enumerate(["prod", "prod", "staging"])
]
MEM = [make_series("acme", "mem.used", "host:h0", "env:prod")]
OTHER = [make_series("globex", "cpu.user", "host:h0", "env:prod")]
OLD = [make_series("acme", "cpu.old", "host:h9")]


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


def announce(env: dict[str, str]) -> None:
    msgs = [
        (CPU[0].key, series_message(CPU, NOW, MetricType.GAUGE)),
        (MEM[0].key, series_message(MEM, NOW, MetricType.COUNT)),
        (OTHER[0].key, series_message(OTHER, NOW, MetricType.RATE)),
        (OLD[0].key, series_message(OLD, NOW - 5 * HOUR, MetricType.GAUGE)),
    ]
    produce(env, env["STRATA_TOPIC_SERIES"], msgs)


def lookup(proc: StoreProcess, org: str, sids: list[int]) -> list[dict[str, Any]]:
    r = httpx.post(f"{proc.url}/v1/series/lookup", json={"org": org, "sids": sids}, timeout=5)
    assert r.status_code == 200, r.text
    return sorted(r.json()["series"], key=lambda s: s["sid"])


def get(proc: StoreProcess, path: str, **params: Any) -> Any:
    r = httpx.get(f"{proc.url}{path}", params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def expected(series: list[Series], mtype: str) -> list[dict[str, Any]]:
    return sorted(
        [{"sid": s.sid, "metric": s.metric, "type": mtype, "tags": list(s.tags)} for s in series],
        key=lambda s: s["sid"],
    )


def test_tags_answer_lookups_within_the_org_and_survive_a_restart(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    tags = stores.start("tags", "tags-a")
    tags.wait_ready(partitions=3)
    announce(strata_env)
    everything = [s.sid for s in CPU + MEM + OTHER + OLD]
    want = sorted(
        expected(CPU, "gauge") + expected(MEM, "count") + expected(OLD, "gauge"),
        key=lambda s: s["sid"],
    )
    wait_for(lambda: lookup(tags, "acme", everything) == want, what="acme lookups")
    assert lookup(tags, "globex", everything) == expected(OTHER, "rate")
    assert lookup(tags, "nobody", everything) == []
    assert get(tags, "/v1/metrics", org="acme", **{"from": NOW - HOUR})["metrics"] == [
        "cpu.user",
        "mem.used",
    ]
    assert get(tags, "/v1/metrics", org="acme", **{"from": 0})["metrics"] == [
        "cpu.old",
        "cpu.user",
        "mem.used",
    ]
    assert get(tags, "/v1/metrics", org="globex")["metrics"] == ["cpu.user"]
    assert get(tags, "/v1/metrics/cpu.user/tags", org="acme", **{"from": NOW - HOUR})["tags"] == [
        "env:prod",
        "env:staging",
        "host:h0",
        "host:h1",
        "host:h2",
    ]
    assert get(tags, "/v1/metrics/cpu.user/tags", org="globex")["tags"] == ["env:prod", "host:h0"]
    # Bad input is a 400 naming the problem.
    bad = httpx.post(f"{tags.url}/v1/series/lookup", json={"org": "acme", "sids": [-1]})
    assert bad.status_code == 400 and "sids" in bad.json()["errors"][0]
    # Restart with the same data dir (and instance id): the data is still there at once.
    tags.stop()
    again = stores.start("tags", "tags-a")
    again.wait_ready(partitions=3)
    assert lookup(again, "acme", everything) == want


def resolve(proc: StoreProcess, **body: Any) -> list[int]:
    body = {"org": "acme", "metric": "cpu.user", "from": NOW - 60, "to": NOW, **body}
    r = httpx.post(f"{proc.url}/v1/resolve", json=body, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return [int(x) for x in np.frombuffer(r.content, dtype="<u8")]


def test_inverted_resolves_filters_and_never_crosses_orgs(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    inv = stores.start("inverted", "inv-a")
    inv.wait_ready(partitions=3)
    announce(strata_env)
    announce(strata_env)  # redelivered announcements change nothing
    cpu = sorted(s.sid for s in CPU)
    wait_for(lambda: resolve(inv) == cpu, what="cpu.user resolved")
    assert resolve(inv, include=["env:prod"]) == sorted([CPU[0].sid, CPU[1].sid])
    assert resolve(inv, include=["env:prod", "host:h1"]) == [CPU[1].sid]
    assert resolve(inv, exclude=["env:prod"]) == [CPU[2].sid]
    assert resolve(inv, include=["env:nope"]) == []
    assert resolve(inv, org="globex") == [OTHER[0].sid]
    assert resolve(inv, org="nobody") == []
    # Time: the old series is only found in its own bucket.
    assert resolve(inv, metric="cpu.old") == []
    assert resolve(inv, metric="cpu.old", **{"from": NOW - 6 * HOUR}) == [OLD[0].sid]
    bad = httpx.post(
        f"{inv.url}/v1/resolve", json={"org": "acme", "metric": "m", "from": 5, "to": 1}
    )
    assert bad.status_code == 400 and "after" in bad.json()["errors"][0]
