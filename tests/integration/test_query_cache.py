"""The query result cache against a real Valkey (query/cache.py), stores faked.

The store side is the in-memory fake of tests/unit/query_fakes.py (it records every tier
read); Redis is real: the session's Valkey for the warm-refresh tests, a private one for
the tests that kill or freeze it. Every answer is compared with the same query evaluated
without any cache.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from query.ast import MetricQuery
from query.cache import CHUNK_SECONDS, SegmentCache, chunk_key, scope_key, stats_router
from query.evaluate import Evaluation, evaluate
from query.filters import compile_filter
from query.language import parse
from query.stitch import read_stitched
from strata.servers import (
    RunningServer,
    free_port,
    port_open,
    spawn,
    start_valkey,
    wait_ready,
)
from tests.unit.query_fakes import FakeStore, FakeTier

H = 3600
DAY = 86400
NOW = 1_700_000_000  # 800 s into an hour: the current hour is the live edge
SETTLE = 300
QUERIES = (
    "avg:cpu{env:prod} by {host}",
    "max:cpu{host:web-* OR role:db}",
    "sum:cpu{*}.rollup(min)",
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class CachedFake(FakeStore):
    """The fake store carrying a result cache, as CachedHttpStoreClient does."""

    segment_cache: SegmentCache | None = None


def fill(store: FakeStore, org: str, days: int = 9, step: int = 120) -> None:
    ts = range(NOW - days * DAY, NOW + 1, step)
    rng = np.random.default_rng(7)
    for host, env, role in (
        ("web-1", "prod", "web"),
        ("web-2", "prod", "web"),
        ("db-1", "prod", "db"),
        ("web-3", "staging", "web"),
    ):
        values = rng.normal(50, 10, len(ts)).round(3).tolist()
        store.add(
            org,
            "cpu",
            [f"host:{host}", f"env:{env}", f"role:{role}"],
            list(zip(ts, values, strict=True)),
        )


def tiers() -> dict[str, FakeTier]:
    """Rocks behind RAM with a boundary that is not chunk-aligned."""
    return {"ram": FakeTier((NOW - 6 * H + 123, NOW)), "rocks": FakeTier((0, NOW))}


def make_stores(
    cache: SegmentCache, org: str, *, two_tiers: bool = True
) -> tuple[CachedFake, FakeStore]:
    cached, plain = CachedFake(segment_cache=cache), FakeStore()
    for s in (cached, plain):
        fill(s, org)
        if two_tiers:
            s.tiers = tiers()
    return cached, plain


def run(store: FakeStore, org: str, text: str, start: int, end: int) -> Evaluation:
    return evaluate(parse(text), org, start, end, store, max_points=300, max_series=1000)


def assert_same(a: Evaluation, b: Evaluation) -> None:
    assert a.interval == b.interval
    np.testing.assert_array_equal(a.grid, b.grid)
    assert a.frame.tag_sets == b.frame.tag_sets
    np.testing.assert_array_equal(a.frame.values, b.frame.values)  # NaN == NaN here
    assert a.tiers == b.tiers


@pytest.fixture
def valkey_cache(valkey: RunningServer) -> Iterator[tuple[SegmentCache, Clock]]:
    clock = Clock(NOW)
    cache = SegmentCache.from_url(
        f"redis://127.0.0.1:{valkey.port}/0",
        timeout_seconds=0.05,
        settle_seconds=SETTLE,
        clock=clock,
    )
    yield cache, clock
    cache.close()


@pytest.mark.parametrize(("span", "resolution"), [(DAY, "1m"), (8 * DAY, "1h"), (2 * H, "raw")])
def test_warm_refresh_reads_only_the_live_edge(
    valkey_cache: tuple[SegmentCache, Clock], span: int, resolution: str
) -> None:
    cache, clock = valkey_cache
    org = f"org-{uuid.uuid4().hex[:8]}"  # a fresh key space on the shared Valkey
    cached, plain = make_stores(cache, org)
    for text in QUERIES:
        assert_same(run(cached, org, text, NOW - span, NOW), run(plain, org, text, NOW - span, NOW))
    cold = cache.stats()
    assert cold["errors"] == 0 and cold["hits"] == 0
    assert cold["stored"] == cold["misses"]
    assert cold["stored"] > 0

    # A dashboard refresh one minute later, same queries.
    clock.now = NOW + 60
    cached.reads.clear()
    for text in QUERIES:
        got = run(cached, org, text, NOW + 60 - span, NOW + 60)
        assert_same(got, run(plain, org, text, NOW + 60 - span, NOW + 60))
    warm = cache.stats()
    assert warm["errors"] == 0
    assert warm["misses"] == cold["misses"]  # no complete chunk had to be read again
    assert warm["hits"] == cold["stored"]
    # Every tier read of the refresh is the live edge or the partial chunk at the head.
    length = CHUNK_SECONDS[resolution]
    live_from = (NOW + 60 - SETTLE) // length * length
    head_to = (NOW + 60 - span) // length * length + length - 1
    # RAM's coverage starts mid-chunk: the chunk at the tier boundary is partial on both
    # sides and read every time.
    boundary = (NOW - 6 * H + 123) // length * length
    for tier, _res, lo, hi in cached.reads:
        edge = lo >= live_from or hi <= head_to
        assert edge or boundary <= lo <= hi < boundary + length, (tier, lo, hi)


def test_read_stitched_is_cached_by_series(valkey_cache: tuple[SegmentCache, Clock]) -> None:
    cache, _ = valkey_cache
    org = f"org-{uuid.uuid4().hex[:8]}"
    cached, plain = make_stores(cache, org, two_tiers=False)
    sids = np.unique(plain.resolve(org, "cpu", NOW - DAY, NOW, (), ()))
    first = read_stitched(cached, org, "cpu", sids, NOW - DAY, NOW, 300)
    before = cache.stats()["hits"]
    again = read_stitched(cached, org, "cpu", sids, NOW - DAY, NOW, 300)
    want = read_stitched(plain, org, "cpu", sids, NOW - DAY, NOW, 300)
    assert cache.stats()["hits"] - before == 23
    for got in (first, again):
        np.testing.assert_array_equal(got.rolled.value, want.rolled.value)
        np.testing.assert_array_equal(got.rolled.bucket, want.rolled.bucket)


def test_corrupt_entry_is_counted_and_replaced(
    valkey: RunningServer, valkey_cache: tuple[SegmentCache, Clock]
) -> None:
    cache, _ = valkey_cache
    org = f"org-{uuid.uuid4().hex[:8]}"
    cached, plain = make_stores(cache, org, two_tiers=False)
    text = QUERIES[0]
    run(cached, org, text, NOW - DAY, NOW)
    r = redis.Redis(port=valkey.port)
    first_chunk = (NOW - DAY) // H * H + H
    scope = _scope_of(text)
    key = chunk_key(org, "cpu", scope, "ram", "1m", first_chunk, first_chunk + H - 1)
    assert r.exists(key)
    r.set(key, b"garbage")
    before = cache.stats()
    assert_same(run(cached, org, text, NOW - DAY, NOW), run(plain, org, text, NOW - DAY, NOW))
    after = cache.stats()
    assert after["errors"] - before["errors"] == 1
    assert after["stored"] - before["stored"] == 1
    assert r.get(key) != b"garbage"
    assert 0 < r.ttl(key) <= 86400
    r.close()


def _scope_of(text: str) -> str:
    q = parse(text)
    assert isinstance(q, MetricQuery)
    return scope_key(compile_filter(q.filter))


def test_stats_route(valkey_cache: tuple[SegmentCache, Clock]) -> None:
    cache, _ = valkey_cache
    app = FastAPI()
    app.include_router(stats_router(cache))
    body = TestClient(app).get("/v1/stats").json()
    assert set(body["cache"]) >= {"hits", "misses", "errors", "redis"}
    disabled = FastAPI()
    disabled.include_router(stats_router(None))
    assert TestClient(disabled).get("/v1/stats").json() == {"cache": None}


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_valkey(tmp_path / "valkey")
    yield server
    if server.alive():
        server.process.send_signal(signal.SIGCONT)
    server.stop()


def test_valkey_killed_mid_test_answers_stay_correct(private_valkey: RunningServer) -> None:
    clock = Clock(NOW)
    cache = SegmentCache.from_url(
        f"redis://127.0.0.1:{private_valkey.port}/0",
        timeout_seconds=0.05,
        settle_seconds=SETTLE,
        retry_seconds=0.0,  # try Redis on every read: every attempt must fail cleanly
        clock=clock,
    )
    org = "acme"
    cached, plain = make_stores(cache, org)
    text, start = QUERIES[0], NOW - DAY
    want = run(plain, org, text, start, NOW)
    assert_same(run(cached, org, text, start, NOW), want)
    assert_same(run(cached, org, text, start, NOW), want)
    assert cache.stats()["hits"] > 0 and cache.stats()["errors"] == 0

    private_valkey.kill()
    private_valkey.process.wait()
    for text in QUERIES:
        assert_same(run(cached, org, text, start, NOW), run(plain, org, text, start, NOW))
    down = cache.stats()
    assert down["errors"] >= len(QUERIES)
    assert down["last_error"].startswith("read: ")
    cache.close()


def test_valkey_frozen_costs_one_short_timeout(private_valkey: RunningServer) -> None:
    """A Redis that accepts nothing (SIGSTOP) is given up after the socket timeout, then
    left alone for retry_seconds: the query is answered uncached, slightly later."""
    clock = Clock(NOW)
    cache = SegmentCache.from_url(
        f"redis://127.0.0.1:{private_valkey.port}/0",
        timeout_seconds=0.05,
        settle_seconds=SETTLE,
        retry_seconds=60.0,
        clock=clock,
    )
    org = "acme"
    cached, plain = make_stores(cache, org)
    text, start = QUERIES[0], NOW - DAY
    assert_same(run(cached, org, text, start, NOW), run(plain, org, text, start, NOW))

    private_valkey.process.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    for _ in range(3):
        assert_same(run(cached, org, text, start, NOW), run(plain, org, text, start, NOW))
    elapsed = time.monotonic() - t0
    stats = cache.stats()
    assert stats["errors"] == 1 and stats["redis"] == "down"
    assert stats["skipped"] > 0
    plain_t0 = time.monotonic()
    for _ in range(3):
        run(plain, org, text, start, NOW)
    # One 50 ms timeout in total, not one per read: well under a second of overhead.
    assert elapsed - (time.monotonic() - plain_t0) < 1.0
    private_valkey.process.send_signal(signal.SIGCONT)
    cache.close()


def test_query_service_serves_cache_stats(
    valkey: RunningServer, tmp_path: Path, private_valkey: RunningServer
) -> None:
    """``python -m query`` builds the cache on STRATA_QUERY_CACHE_URL (here a private
    Valkey, not the registry's) and serves its counters on /v1/stats."""
    port = free_port()
    env = {
        **os.environ,
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        "STRATA_REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
        "STRATA_QUERY_CACHE_URL": f"redis://127.0.0.1:{private_valkey.port}/0",
        "STRATA_HTTP_PORT": str(port),
    }
    proc = spawn("query", [sys.executable, "-m", "query"], tmp_path / "query.log", env=env)
    server = RunningServer("query", port, proc, tmp_path / "query.log")
    try:
        wait_ready(server, lambda: port_open(port))
        body = httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=5).json()
        assert body["cache"]["redis"] == "up" and body["cache"]["errors"] == 0
    finally:
        server.stop()
