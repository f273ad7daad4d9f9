"""strata/observability.py: route-template labels, the text format, scrape-time families.

Every check compares with an independent model (a Counter of what was sent, a dict of
offsets, a walk of the directory) and reads the metrics back through the Prometheus text
parser, as a scraper would.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from intake.counters import IntakeCounters
from intake.producer import BrokerUnavailable, OutMessage, ReliableProducer
from intake.rejections import RejectReason
from query.app import create_app as create_query_app
from query.settings import QuerySettings
from strata.keys import KeyStore, create_keys
from strata.observability import (
    UNMATCHED,
    Cached,
    ConsumerMetrics,
    Families,
    FunctionCollector,
    Refreshed,
    counter,
    datadog_series,
    dir_size,
    instrument,
    merge_families,
)
from strata.servers import free_port
from tests.unit.query_fakes import FakeStore

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, Metric], Samples]:
    """Families by name and samples by (sample name, labels), via the official parser."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples
    }
    return families, samples


def scrape(client: TestClient) -> tuple[dict[str, Metric], Samples]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(resp.text)


def registry_text(*collectors: object) -> str:
    reg = CollectorRegistry()
    for c in collectors:
        reg.register(c)  # type: ignore[arg-type]
    return generate_latest(reg).decode()


def lbl(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


# -- HTTP ------------------------------------------------------------------------------------


def demo_app() -> FastAPI:
    app = FastAPI()
    instrument(app, "strata_demo", labels={"kind": "demo"})

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        if item_id == "forbidden":
            raise HTTPException(403, "no")
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("unhandled")

    router = APIRouter()

    @router.get("/api/v2/metrics/{name}/all-tags")
    def tags(name: str) -> dict[str, str]:
        return {"name": name}

    app.include_router(router)
    return app


def test_requests_are_counted_by_route_template_never_by_raw_path() -> None:
    sent: Counter[tuple[str, str, str]] = Counter()  # the model: (method, route, status)
    with TestClient(demo_app(), raise_server_exceptions=False) as client:
        for path, method, route, status in [
            ("/items/org-acme-secret", "GET", "/items/{item_id}", 200),
            ("/items/42", "GET", "/items/{item_id}", 200),
            ("/items/forbidden", "GET", "/items/{item_id}", 403),
            ("/items/7", "POST", "/items/{item_id}", 405),  # partial match: its template
            ("/api/v2/metrics/cpu.user/all-tags", "GET", "/api/v2/metrics/{name}/all-tags", 200),
            ("/boom", "GET", "/boom", 500),  # an exception escaping the app
            ("/no/such/api_key=abc123", "GET", UNMATCHED, 404),
            ("/items/42", "GET", "/items/{item_id}", 200),
        ]:
            assert client.request(method, path).status_code == status
            sent[(method, route, str(status))] += 1
        families, samples = scrape(client)

    requests = families["strata_demo_http_requests"]
    assert requests.type == "counter"
    got = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in requests.samples
    }
    assert got == dict(sent)
    assert {s.labels["kind"] for s in requests.samples} == {"demo"}
    # no raw path, org, key or metric name in any label of any family
    for fam in families.values():
        for s in fam.samples:
            for value in s.labels.values():
                for leak in ("secret", "42", "cpu.user", "abc123", "/no/such"):
                    assert leak not in value, (fam.name, s.labels)
    # the histogram counts every request once per (method, route)
    by_route: Counter[tuple[str, str]] = Counter()
    for (method, route, _), n in sent.items():
        by_route[(method, route)] += n
    latency = families["strata_demo_http_request_duration_seconds"]
    assert latency.type == "histogram"
    counts = {
        (s.labels["method"], s.labels["route"]): s.value
        for s in latency.samples
        if s.name.endswith("_count")
    }
    assert counts == dict(by_route)
    infinite = [
        s for s in latency.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"
    ]
    assert sorted(s.value for s in infinite) == sorted(by_route.values())
    # standard process families come along; no *_created noise
    assert "process_cpu_seconds" in families and "python_info" in families
    assert not any(name.endswith("_created") for name, _ in samples)


def test_each_app_has_its_own_registry() -> None:
    with TestClient(demo_app()) as a, TestClient(demo_app()) as b:
        a.get("/items/1")
        a.get("/items/2")
        b.get("/items/3")
        _, sa = scrape(a)
        _, sb = scrape(b)
    key = lbl(kind="demo", method="GET", route="/items/{item_id}", status="200")
    assert sa[("strata_demo_http_requests_total", key)] == 2
    assert sb[("strata_demo_http_requests_total", key)] == 1


# -- scrape-time families ----------------------------------------------------------------------


def test_families_of_several_sources_merge_by_name_and_dead_sources_vanish() -> None:
    sources = Families()
    points = ConsumerMetrics("archive", "points", lambda: {})
    series = ConsumerMetrics("archive-series", "series", lambda: {})
    sources.add(points)
    sources.add(series)
    points.applied(0.01, 3)
    series.applied(0.02, 5)
    families, _ = parse(registry_text(sources))
    applied = families["strata_store_records_applied"]
    assert {(s.labels["kind"], s.value) for s in applied.samples} == {
        ("archive", 3),
        ("archive-series", 5),
    }
    del series
    gc.collect()
    families, _ = parse(registry_text(sources))
    assert [s.labels["kind"] for s in families["strata_store_records_applied"].samples] == [
        "archive"
    ]
    sources.remove(points)
    assert list(sources.collect()) == []


def test_merging_one_name_of_two_types_is_refused() -> None:
    a = GaugeMetricFamily("x", "a", value=1)
    b = Metric("x", "b", "counter")
    with pytest.raises(ValueError, match="both gauge and counter"):
        merge_families([a, b])


def test_consumer_metrics_lag_offsets_and_watermark_age() -> None:
    now = [1_000.0]
    marks = {0: 995_500, 2: 1_000_000}
    m = ConsumerMetrics("rocks", "points", lambda: marks, clock=lambda: now[0])
    model_end: dict[int, int] = {}
    model_next: dict[int, int] = {}
    steps: list[tuple[dict[int, int], dict[int, int]]] = [
        ({0: 10, 1: 4}, {0: 3}),  # partition 1: no applied offset yet -> no lag sample
        ({0: 15}, {0: 15, 1: 4}),  # 0 caught up; 1 known now (an EOF at 4)
        ({1: 9, 2: 0}, {2: 0}),  # new messages in 1; empty partition 2
        ({0: 15}, {0: 17}),  # applied beyond a stale end: never negative
    ]
    for ends, nexts in steps:
        m.positions(ends, nexts)
        model_end.update(ends)
        model_next.update(nexts)
        want = {p: max(0, e - model_next[p]) for p, e in model_end.items() if p in model_next}
        assert m.lag() == want
    m.forget([1])
    families, _ = parse(registry_text(FunctionCollector(m.collect)))
    lag = {
        s.labels["partition"]: s.value
        for s in families["strata_store_consumer_lag_messages"].samples
    }
    assert lag == {"0": 0, "2": 0}
    end = {
        s.labels["partition"]: s.value for s in families["strata_store_consumer_end_offset"].samples
    }
    assert end == {"0": 15, "2": 0}
    age = {
        s.labels["partition"]: s.value
        for s in families["strata_store_watermark_age_seconds"].samples
    }
    assert age == {"0": pytest.approx(4.5), "2": 0.0}
    assert "strata_store_disk_bytes" not in families  # not a RocksDB store


def test_apply_histogram_records_and_dead_letters() -> None:
    m = ConsumerMetrics("ram", "points", lambda: {})
    durations = [0.0004, 0.003, 0.003, 0.2, 7.0]
    for i, d in enumerate(durations):
        m.applied(d, i + 1)
    m.dead_lettered(2)
    m.dead_lettered(0)
    _, samples = parse(registry_text(FunctionCollector(m.collect)))
    base = lbl(kind="ram", topic="points")
    assert samples[("strata_store_records_applied_total", base)] == sum(range(1, 6))
    assert samples[("strata_store_dead_letters_total", base)] == 2
    assert samples[("strata_store_apply_duration_seconds_count", base)] == len(durations)
    assert samples[("strata_store_apply_duration_seconds_sum", base)] == pytest.approx(
        sum(durations)
    )
    for le, want in (("0.0005", 1), ("0.005", 3), ("0.25", 4), ("5.0", 4), ("+Inf", 5)):
        key = ("strata_store_apply_duration_seconds_bucket", base | {("le", le)})
        assert samples[key] == want, le


def write_files(root: Path, sizes: list[int]) -> None:
    for i, size in enumerate(sizes):
        path = root / f"d{i % 3}" / f"sub{i % 2}" / f"f{i}.sst"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)


def test_dir_size_matches_an_independent_walk(tmp_path: Path) -> None:
    write_files(tmp_path, [0, 1, 4096, 123, 70_000, 5])
    os.symlink(tmp_path / "d0", tmp_path / "link")  # not followed, not counted twice
    model = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink())
    assert dir_size(tmp_path) == model == 74_225
    assert dir_size(tmp_path / "missing") == 0


def test_disk_bytes_are_cached_between_scrapes(tmp_path: Path) -> None:
    write_files(tmp_path, [100, 200])
    m = ConsumerMetrics("tags", "series", lambda: {}, disk=tmp_path)
    _, first = parse(registry_text(FunctionCollector(m.collect)))
    assert first[("strata_store_disk_bytes", lbl(kind="tags"))] == 300
    (tmp_path / "more").write_bytes(b"y" * 50)
    _, second = parse(registry_text(FunctionCollector(m.collect)))
    assert second[("strata_store_disk_bytes", lbl(kind="tags"))] == 300  # within max age


def test_cached_recomputes_only_after_max_age() -> None:
    now = [0.0]
    calls: list[float] = []

    def compute() -> int:
        calls.append(now[0])
        return len(calls)

    c = Cached(compute, 5.0, clock=lambda: now[0])
    assert [c.get(), c.get()] == [1, 1]
    now[0] = 4.9
    assert c.get() == 1
    now[0] = 5.0
    assert c.get() == 2
    assert calls == [0.0, 5.0]


def test_refreshed_never_waits_and_keeps_the_last_value_on_failure() -> None:
    now = [0.0]
    results: list[object] = [{"a": 1}, OSError("s3 down"), {"a": 2}]

    def compute() -> object:
        r = results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    r = Refreshed(compute, 60.0, clock=lambda: now[0])
    assert r.get() is None  # nothing yet: the first listing runs in the background
    r.wait(5)
    assert r.get() == {"a": 1}
    now[0] = 61.0
    assert r.get() == {"a": 1}
    r.wait(5)
    assert r.failures == 1 and r.get() == {"a": 1}  # the failure kept the value
    now[0] = 200.0
    r.get()
    r.wait(5)
    assert r.get() == {"a": 2}


# -- services ----------------------------------------------------------------------------------


def test_intake_counters_are_read_at_scrape_time() -> None:
    c = IntakeCounters()
    c.points_accepted = 1_000
    c.points_rejected.update({RejectReason.TOO_OLD: 7, RejectReason.NON_FINITE: 1})
    c.requests_refused.update({403: 2, 413: 1})
    c.heartbeats = 3
    c.producers_replaced = 1
    c.produced(0.002, None)
    c.produced(0.02, None)
    c.produced(5.0, "ack_timeout")
    collector = FunctionCollector(c.families)
    _, samples = parse(registry_text(collector))
    assert samples[("strata_intake_points_accepted_total", lbl())] == 1_000
    rejected = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples.items()
        if name == "strata_intake_points_rejected_total"
    }
    assert rejected == {
        r.value: {"too_old": 7, "non_finite": 1}.get(r.value, 0) for r in RejectReason
    }
    assert samples[("strata_intake_requests_refused_total", lbl(status="403"))] == 2
    assert samples[("strata_intake_heartbeats_total", lbl())] == 3
    assert samples[("strata_intake_producers_replaced_total", lbl())] == 1
    assert samples[("strata_intake_kafka_produce_errors_total", lbl(reason="ack_timeout"))] == 1
    assert samples[("strata_intake_kafka_produce_duration_seconds_count", lbl())] == 2
    assert samples[("strata_intake_kafka_produce_duration_seconds_sum", lbl())] == pytest.approx(
        0.022
    )
    c.points_accepted += 5  # the next scrape sees it: nothing was copied at the first
    _, later = parse(registry_text(FunctionCollector(c.families)))
    assert later[("strata_intake_points_accepted_total", lbl())] == 1_005


def query_app(tmp_path: Path, store: FakeStore) -> tuple[TestClient, dict[str, str]]:
    keys = create_keys(tmp_path / "keys.json", "acme")
    app = create_query_app(QuerySettings(), store, KeyStore(tmp_path / "keys.json", check_every=0))
    headers = {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}
    return TestClient(app), headers


@pytest.fixture
def partial_store() -> Iterator[FakeStore]:
    store = FakeStore()
    store.add("acme", "up", ["host:a"], [(1_700_000_000 + i, float(i)) for i in range(60)])
    store.add("acme", "down", ["host:a"], [(1_700_000_000 + i, 1.0) for i in range(60)])
    store.down_metrics.add("down")
    yield store


def test_query_counts_partial_answers_by_route(tmp_path: Path, partial_store: FakeStore) -> None:
    client, headers = query_app(tmp_path, partial_store)
    t0 = 1_700_000_000
    with client:
        for query, partial in (
            ("sum:up{*},avg:down{*}", True),
            ("sum:up{*}", False),
            ("avg:up{*},sum:down{*}", True),
        ):
            params: dict[str, str | int] = {"from": t0, "to": t0 + 59, "query": query}
            resp = client.get("/api/v1/query", params=params, headers=headers)
            assert resp.status_code == 200, resp.text
            assert ("x-strata-warnings" in resp.headers) is partial
        families, samples = scrape(client)
    assert samples[("strata_query_partial_answers_total", lbl(route="/api/v1/query"))] == 2
    ok = lbl(method="GET", route="/api/v1/query", status="200")
    assert samples[("strata_query_http_requests_total", ok)] == 3
    assert "strata_query_cache_hits" not in families  # no cache configured
    assert not math.isnan(samples[("strata_query_http_requests_total", ok)])


def test_samples_become_datadog_v2_gauges_with_label_tags() -> None:
    reg = CollectorRegistry()
    reg.register(
        FunctionCollector(
            lambda: [
                counter("strata_x_points", "c", ("reason",), [(("too_old",), 7.0)]),
                GaugeMetricFamily("strata_x_ratio", "r", value=float("nan")),
                GaugeMetricFamily("strata_x_up", "u", value=1.0),
            ]
        )
    )
    text = generate_latest(reg).decode()
    got = datadog_series(text, 1_700_000_000, ["service:intake"])
    assert got == [
        {
            "metric": "strata_x_points_total",
            "type": 3,
            "points": [{"timestamp": 1_700_000_000, "value": 7.0}],
            "tags": ["service:intake", "reason:too_old"],
        },
        {
            "metric": "strata_x_up",
            "type": 3,
            "points": [{"timestamp": 1_700_000_000, "value": 1.0}],
            "tags": ["service:intake"],
        },
    ]  # the NaN ratio is left out: intake rejects non-finite values


def test_a_failed_produce_is_reported_with_its_reason() -> None:
    """A broker nobody answers for: produce_all fails after its timeout, and the producer
    reports (seconds, reason) once; nothing is observed as a latency."""
    counters = IntakeCounters()
    producer = ReliableProducer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}"}, 0.3, on_result=counters.produced
    )
    producer.start()
    try:
        with pytest.raises(BrokerUnavailable) as err:
            asyncio.run(producer.produce_all([OutMessage("t", 0, b"k", b"v")]))
    finally:
        producer.close(0.1)
    assert err.value.reason in ("ack_timeout", "delivery_failed")
    assert dict(counters.produce_errors) == {err.value.reason: 1}
    _, samples = parse(registry_text(FunctionCollector(counters.families)))
    assert samples[("strata_intake_kafka_produce_duration_seconds_count", lbl())] == 0
