"""The RAM store against real tansu + Valkey, as a `python -m stores.ram` subprocess."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from query.stores_client import decode_rollups
from strata.registry import Registry
from strata.rollup import Rollups, rollup
from strata.servers import free_port
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import (
    Points,
    Series,
    Stores,
    dead_letters,
    make_series,
    points_message,
    produce,
    read_points,
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


def workload(now: int) -> tuple[list[Series], list[tuple[bytes, bytes]], Points]:
    """Series over several metrics (so several partitions) and the reference model."""
    series = [
        make_series(org, metric, f"host:h{i}", "env:prod")
        for org in ("acme", "globex")
        for metric in ("cpu.user", "mem.used", "disk.io")
        for i in range(2)
    ]
    messages: list[tuple[bytes, bytes]] = []
    model: Points = {}
    for n, s in enumerate(series):
        ts = [now - 600 + 10 * k for k in range(30)]
        # Repeat a timestamp with a smaller |value|: the conflict rule keeps the larger.
        values = [float(n * 100 + k + 1) for k in range(30)]
        messages.append((s.key, points_message(s, [*ts, ts[0]], [*values, -0.5])))
        for t, v in zip(ts, values, strict=True):
            model[(s.sid, t)] = v
    return series, messages, model


def read_all(url: str, series: list[Series], now: int) -> Points:
    return read_points(url, [s.sid for s in series], now - 3600, now + 60)


Rows = dict[tuple[int, int], tuple[int, float, float, float, float, int]]


def read_rollups(url: str, series: list[Series], start: int, end: int, resolution: str) -> Rows:
    body = {"sids": [s.sid for s in series], "from": start, "to": end, "resolution": resolution}
    resp = httpx.post(f"{url}/v1/points/read", json=body, timeout=5.0)
    assert resp.status_code == 200, resp.text
    return rows(decode_rollups(resp.content, source="ram"))


def rows(r: Rollups) -> Rows:
    return {
        (int(r.sid[i]), int(r.bucket[i])): (
            int(r.count[i]),
            float(r.sum[i]),
            float(r.min[i]),
            float(r.max[i]),
            float(r.last[i]),
            int(r.last_ts[i]),
        )
        for i in range(len(r))
    }


def model_rollups(model: Points, start: int, end: int, step: int) -> Rows:
    """Rollups of the model's points in whole buckets starting in [start, end]."""
    last = end - end % step + step - 1
    keys = sorted(k for k in model if -(-start // step) * step <= k[1] <= last)
    return rows(
        rollup(
            np.array([k[0] for k in keys], np.uint64),
            np.array([k[1] for k in keys], np.int64),
            np.array([model[k] for k in keys], np.float64),
            step,
        )
    )


def test_serves_what_was_produced_and_redelivery_changes_nothing(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    ram = stores.start("ram", "ram-a")
    reg = ram.wait_ready(partitions=3)
    assert reg.address == ram.url and reg.partition_count == 3
    now = int(time.time())
    series, messages, model = workload(now)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    wait_for(lambda: read_all(ram.url, series, now) == model, what="all points served")
    # A narrower read: one series, part of the range.
    one = series[3].sid
    part = read_points(ram.url, [one], now - 500, now - 400)
    assert part == {
        k: v for k, v in model.items() if k[0] == one and now - 500 <= k[1] <= now - 400
    }
    # Redelivery: the same messages again give the same answers.
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    wait_for(
        lambda: sum((ram.registration() or reg).offsets.values()) == 2 * len(messages),
        what="second copy applied",
    )
    assert read_all(ram.url, series, now) == model
    # Rollup reads (the point read API's 1m/1h shapes) summarise the same resolved points.
    start = now - now % 3600 - 3600
    for resolution, step in (("1m", 60), ("1h", 3600)):
        got = read_rollups(ram.url, series, start, now, resolution)
        assert got == model_rollups(model, start, now, step), resolution
    # Registry coverage spans the window for every owned partition.
    final = ram.registration()
    assert final is not None and sorted(final.coverage) == [0, 1, 2]
    for lo, hi in final.coverage.values():
        assert hi - lo == pytest.approx(3 * 3600, abs=5)


def test_garbage_goes_to_dead_letters_and_the_store_keeps_going(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    ram = stores.start("ram", "ram-dl")
    ram.wait_ready(partitions=3)
    now = int(time.time())
    s = make_series("acme", "cpu.user", "host:a")
    topic = strata_env["STRATA_TOPIC_POINTS"]
    produce(strata_env, topic, [(s.key, b"not a strata message")])
    produce(strata_env, topic, [(s.key, points_message(s, [now], [1.5]))])
    wait_for(lambda: read_points(ram.url, [s.sid], now - 10, now + 10) == {(s.sid, now): 1.5})
    letters = dead_letters(strata_env, 1)
    assert len(letters) == 1
    letter = letters[0]
    raw_headers = letter.headers()
    assert isinstance(raw_headers, list)
    headers = {k: v.encode() if isinstance(v, str) else v or b"" for k, v in raw_headers}
    assert letter.value() == b"not a strata message" and letter.key() == s.key
    assert b"magic" in headers["reason"]
    assert headers["source-topic"] == topic.encode()
    assert headers["source-offset"] == b"0"
    group = f"strata-{strata_env['STRATA_TOPIC_POINTS']}-ram"
    assert headers["consumer-group"] == group.encode()
    assert int(headers["source-partition"].decode()) in range(3)


def test_restart_after_sigkill_replays_from_kafka(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    ram = stores.start("ram", "ram-k")
    ram.wait_ready(partitions=3)
    now = int(time.time())
    series, messages, model = workload(now)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    wait_for(lambda: read_all(ram.url, series, now) == model, what="points served")
    ram.kill()
    again = stores.start("ram", "ram-k2")
    again.wait_ready(partitions=3, timeout=30.0)
    wait_for(lambda: read_all(again.url, series, now) == model, what="replayed points")


def test_two_instances_split_the_partitions(stores: Stores, strata_env: dict[str, str]) -> None:
    a = stores.start("ram", "ram-1")
    a.wait_ready(partitions=3)
    b = stores.start("ram", "ram-2")
    b.wait_ready()

    def split() -> bool:
        ra, rb = a.registration(), b.registration()
        if ra is None or rb is None or not ra.partitions or not rb.partitions:
            return False
        return not set(ra.partitions) & set(rb.partitions) and sorted(
            ra.partitions + rb.partitions
        ) == [0, 1, 2]

    wait_for(split, timeout=20.0, what="a disjoint split of partitions 0-2")
    # Each instance serves exactly its own partitions' points; together, everything.
    now = int(time.time())
    series, messages, model = workload(now)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)

    def union() -> Points:
        return {**read_all(a.url, series, now), **read_all(b.url, series, now)}

    wait_for(lambda: union() == model, what="both instances serving their share")
    # Clean stop withdraws the registration.
    b.stop()
    registry = Registry(strata_env["STRATA_REDIS_URL"])
    try:
        assert all(r.instance != "ram-2" for r in registry.discover("ram"))
    finally:
        registry.close()


def test_keeps_consuming_when_redis_is_unreachable(
    stores: Stores, strata_env: dict[str, str]
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    ram = stores.start("ram", "ram-noredis", env={"STRATA_REDIS_URL": nowhere})

    def owns_all() -> bool:
        try:
            health = httpx.get(f"{ram.url}/health", timeout=1.0).json()
        except httpx.HTTPError:
            return False
        return bool(health["kind"] == "ram" and health["partitions"] == [0, 1, 2])

    wait_for(owns_all, timeout=30.0, what="assignment without a registry")
    now = int(time.time())
    series, messages, model = workload(now)
    produce(strata_env, strata_env["STRATA_TOPIC_POINTS"], messages)
    wait_for(lambda: read_all(ram.url, series, now) == model, what="points served")
    assert ram.server is not None and ram.server.alive()
    assert "registry publish failed" in ram.server.log_tail(100_000)
