"""Scale-out against real store processes (issue 4 item 5): two RAM, two tag index and two
inverted index instances in their consumer groups, behind the real query API.

- With one instance of each kind the answers equal a model of the produced points; a second
  instance of each kind splits the partitions, and every answer given while the partitions
  move is either the same answer or a 503 (never a silently smaller one: an index that has
  just been given a partition is not asked until it has caught up on it).
- One RAM instance SIGKILLed: a request over several metrics answers the metrics the
  survivor holds and names the ones it cannot answer; once the group has moved the dead
  instance's partitions and the survivor has replayed them, the full answer is back.
- One tag index instance SIGKILLed: the metric list is partial, and the warning names the
  instance and its partitions.
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
from query.settings import QuerySettings
from query.stores_client import HttpStoreClient, RegistryView
from strata.keys import KeyStore, NewKeys, create_keys
from strata.model import MetricType
from strata.partitioning import partition_for, partition_key
from strata.registry import Registry
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Series,
    StoreProcess,
    Stores,
    make_series,
    points_message,
    produce,
    series_message,
    stores_fixture,
)

pytestmark = pytest.mark.integration

ORG = "acme"
PARTITIONS = 3
HOSTS = ("h0", "h1", "h2")
KINDS = ("ram", "tags", "inverted")


def metrics_per_partition() -> list[str]:
    """Two metric names per partition, so every instance owns some of them."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(v) < 2 for v in found.values()):
        name = f"svc.m{n}"
        p = partition_for(partition_key(ORG, name), PARTITIONS)
        if len(found[p]) < 2:
            found[p].append(name)
        n += 1
    return sorted(m for names in found.values() for m in names)


METRICS = metrics_per_partition()


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, NewKeys]:
    path = tmp_path / "keys.json"
    create_keys(path, "globex")
    return path, create_keys(path, ORG)


@pytest.fixture
def api(strata_env: dict[str, str], keys: tuple[Path, NewKeys]) -> Iterator[TestClient]:
    topics = {kind: strata_env["STRATA_TOPIC_POINTS"] for kind in ("ram", "rocks", "archive")}
    topics.update({kind: strata_env["STRATA_TOPIC_SERIES"] for kind in ("tags", "inverted")})
    registry = Registry(strata_env["STRATA_REDIS_URL"])
    http = httpx.Client(timeout=3.0)
    client = HttpStoreClient(RegistryView(registry, 0.0, topics=topics), http)
    settings = QuerySettings(query_budget_seconds=20.0, coverage_margin_seconds=0)
    app = create_app(settings, client, KeyStore(keys[0], check_every=0.0))
    try:
        with TestClient(app) as c:
            yield c
    finally:
        http.close()
        registry.close()


def produce_workload(env: dict[str, str], now: int) -> dict[str, dict[str, dict[int, float]]]:
    """Points every 10 s over the last 10 minutes for every metric and host (and the same
    metrics for another org, which must never show up). Returns metric -> host -> ts ->
    value."""
    model: dict[str, dict[str, dict[int, float]]] = {}
    series_msgs: list[tuple[bytes, bytes]] = []
    point_msgs: list[tuple[bytes, bytes]] = []
    first = now - now % 10 - 600
    for org in (ORG, "globex"):
        for m, metric in enumerate(METRICS):
            group: list[Series] = [make_series(org, metric, f"host:{h}") for h in HOSTS]
            series_msgs.append((group[0].key, series_message(group, first, MetricType.GAUGE)))
            for i, s in enumerate(group):
                ts = list(range(first, first + 600, 10))
                values = [float(m * 1000 + i * 100 + k) for k in range(len(ts))]
                if org == "globex":
                    values = [v + 0.5 for v in values]
                point_msgs.append((s.key, points_message(s, ts, values)))
                if org == ORG:
                    model.setdefault(metric, {})[f"host:{HOSTS[i]}"] = dict(
                        zip(ts, values, strict=True)
                    )
    produce(env, env["STRATA_TOPIC_SERIES"], series_msgs)
    produce(env, env["STRATA_TOPIC_POINTS"], point_msgs)
    return model


def headers(keys: tuple[Path, NewKeys]) -> dict[str, str]:
    return {"DD-API-KEY": keys[1].api_key, "DD-APPLICATION-KEY": keys[1].app_key}


def ask(api: TestClient, keys: tuple[Path, NewKeys], query: str, span: tuple[int, int]) -> Any:
    params: dict[str, str | int] = {"from": span[0], "to": span[1], "query": query}
    return api.get("/api/v1/query", params=params, headers=headers(keys))


def answers(body: dict[str, Any], queries: list[str]) -> dict[str, dict[str, dict[int, float]]]:
    """query -> scope -> ts -> value of a v1 body (metric queries by host)."""
    out: dict[str, dict[str, dict[int, float]]] = {q: {} for q in queries}
    for s in body["series"]:
        points = {int(t) // 1000: v for t, v in s["pointlist"]}
        out[queries[s["query_index"]]][s["scope"]] = points
    return out


def all_queries() -> list[str]:
    return [f"avg:{m}{{*}} by {{host}}" for m in METRICS]


def wait_split(a: StoreProcess, b: StoreProcess, timeout: float = 60.0) -> None:
    """Until the two instances own disjoint, complete sets of partitions and advertise
    coverage for all of them (caught up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ra, rb = a.registration(), b.registration()
        if ra is not None and rb is not None and ra.partitions and rb.partitions:
            owned = sorted(ra.partitions + rb.partitions)
            covered = set(ra.coverage) | set(rb.coverage)
            if owned == list(range(PARTITIONS)) and covered == set(owned):
                return
        time.sleep(0.2)
    raise AssertionError(f"{a.instance}/{b.instance} did not split the partitions")


def test_two_instances_per_kind_answer_like_one_and_partial_answers_name_the_missing(
    stores: Stores, strata_env: dict[str, str], api: TestClient, keys: tuple[Path, NewKeys]
) -> None:
    first = {kind: stores.start(kind, f"{kind}-1") for kind in KINDS}
    for proc in first.values():
        proc.wait_ready(partitions=PARTITIONS, timeout=60)
    now = int(time.time())
    model = produce_workload(strata_env, now)
    span = (now - now % 10 - 600, now - now % 10 - 10)  # 590 s at 2 s: one point per bucket
    queries = all_queries()
    joined = ",".join(queries)
    expected = {q: model[m] for q, m in zip(queries, METRICS, strict=True)}

    # -- one instance of each kind: the model ---------------------------------------------
    deadline = time.monotonic() + 60
    while True:
        resp = ask(api, keys, joined, span)
        if resp.status_code == 200 and answers(resp.json(), queries) == expected:
            break
        assert time.monotonic() < deadline, resp.text[:500]
        time.sleep(0.3)
    single = resp.json()
    assert single["message"] == ""
    listed = api.get("/api/v1/metrics", params={"from": now - 3600}, headers=headers(keys))
    assert listed.json()["metrics"] == METRICS

    # -- a second instance of each kind: same answers; while partitions move, 503 or equal --
    second = {kind: stores.start(kind, f"{kind}-2") for kind in KINDS}
    seen_during_move = {"equal": 0, "unavailable": 0}
    pending = set(KINDS)
    deadline = time.monotonic() + 90
    while pending:
        resp = ask(api, keys, joined, span)
        if resp.status_code == 200 and resp.json()["message"] == "":
            assert answers(resp.json(), queries) == expected  # never silently different
            seen_during_move["equal"] += 1
        else:
            # unavailable or partial: what is answered is right, what is not is named
            assert resp.status_code in (200, 503), resp.text[:500]
            seen_during_move["unavailable"] += 1
            if resp.status_code == 200:
                got = answers(resp.json(), queries)
                for q in queries:
                    assert got[q] in ({}, expected[q])
                    if not got[q]:
                        assert q in resp.json()["message"]
        for kind in list(pending):
            try:
                wait_split(first[kind], second[kind], timeout=0.01)
                pending.discard(kind)
            except AssertionError:
                pass
        assert time.monotonic() < deadline, f"{pending} never split the partitions"
        time.sleep(0.2)
    for kind in KINDS:
        wait_split(first[kind], second[kind])
    resp = ask(api, keys, joined, span)
    assert resp.status_code == 200 and resp.json()["message"] == "", resp.text[:500]
    assert resp.json()["series"] == single["series"]
    listed = api.get("/api/v1/metrics", params={"from": now - 3600}, headers=headers(keys))
    assert listed.json()["metrics"] == METRICS and "x-strata-warnings" not in listed.headers

    # -- SIGKILL one RAM instance: partial answers that name what is missing -----------------
    dead = second["ram"].registration()
    assert dead is not None
    lost = {
        q
        for q, m in zip(queries, METRICS, strict=True)
        if partition_for(partition_key(ORG, m), PARTITIONS) in dead.partitions
    }
    assert lost and lost != set(queries)
    second["ram"].kill()
    resp = ask(api, keys, joined, span)  # its registration outlives it for the TTL
    assert resp.status_code == 200, resp.text[:500]
    body = resp.json()
    got = answers(body, queries)
    for q in queries:
        if q in lost:
            assert got[q] == {}
            assert f"{q!r} could not be answered" in body["message"]
        else:
            assert got[q] == expected[q]
    assert "ram-2" in body["message"] and "ram-2" in resp.headers["x-strata-warnings"]

    # the survivor takes the partitions over and replays them: the full answer comes back
    deadline = time.monotonic() + 90
    while True:
        resp = ask(api, keys, joined, span)
        if resp.status_code == 200 and resp.json()["message"] == "":
            assert answers(resp.json(), queries) == expected
            break
        assert time.monotonic() < deadline, resp.text[:500]
        time.sleep(0.5)

    # -- SIGKILL one tag index instance: the metric list is partial and says so --------------
    tags_dead = second["tags"].registration()
    assert tags_dead is not None and tags_dead.partitions
    second["tags"].kill()
    listed = api.get("/api/v1/metrics", params={"from": now - 3600}, headers=headers(keys))
    assert listed.status_code == 200
    warning = listed.headers["x-strata-warnings"]
    parts = ",".join(str(p) for p in sorted(tags_dead.partitions))
    assert f"tags store tags-2 (partitions {parts}) did not answer" in warning
    kept = [
        m
        for m in METRICS
        if partition_for(partition_key(ORG, m), PARTITIONS) not in tags_dead.partitions
    ]
    assert listed.json()["metrics"] == kept
