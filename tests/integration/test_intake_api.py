"""Intake API against a real tansu broker: placement, encoding, announcements, auth."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from intake.messages import MAX_MESSAGE_BYTES
from intake.settings import IntakeSettings
from strata.codec import decode_points, decode_series
from strata.keys import create_keys
from strata.model import INDEX_BUCKET_SECONDS
from strata.partitioning import partition_for, partition_key
from strata.series_id import series_id
from tests.integration.intake_support import (
    RunningIntake,
    intake_settings,
    read_topic,
    running_intake,
)

pytestmark = pytest.mark.integration

ORG = "acme"


@pytest.fixture
def settings(strata_env: dict[str, str]) -> IntakeSettings:
    return intake_settings(strata_env, late_window_seconds=7200)


@pytest.fixture
def api_key(settings: IntakeSettings) -> str:
    return create_keys(settings.keys_path, ORG).api_key


@pytest.fixture
def intake(settings: IntakeSettings, api_key: str) -> Iterator[RunningIntake]:
    # Depends on api_key so the keys file exists before the key store first reads it.
    with running_intake(settings) as running:
        yield running


def post(intake: RunningIntake, path: str, key: str, json: object, **kw: object) -> httpx.Response:
    return httpx.post(
        intake.url + path,
        json=json,
        headers={"DD-API-KEY": key},
        timeout=15,
        **kw,  # type: ignore[arg-type]
    )


def post_gzip(intake: RunningIntake, path: str, key: str, body: object) -> httpx.Response:
    """``body`` as JSON, gzip-compressed as the agent sends it."""
    return httpx.post(
        intake.url + path,
        content=gzip.compress(json.dumps(body).encode()),
        headers={
            "DD-API-KEY": key,
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
        timeout=30,
    )


def test_points_land_on_the_murmur2_partition_decodable_and_exact(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    now = int(time.time())
    metrics = [f"test.metric.{i}" for i in range(8)]
    series = [
        {
            "metric": m,
            "type": 3,
            "points": [{"timestamp": now - j, "value": i + j / 7} for j in range(5)],
            "resources": [{"name": "web-1", "type": "host"}],
            "tags": ["env:prod"],
        }
        for i, m in enumerate(metrics)
    ]
    r = post(intake, "/api/v2/series", api_key, {"series": series})
    assert r.status_code == 202, r.text
    assert r.json() == {"errors": []}

    records = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=len(metrics))
    assert len(records) == len(metrics)
    seen_partitions = set()
    for rec in records:
        batch = decode_points(rec.value)
        i = metrics.index(batch.metric)
        assert rec.key == partition_key(ORG, batch.metric)
        assert rec.partition == partition_for(rec.key, settings.partitions)
        seen_partitions.add(rec.partition)
        assert batch.org == ORG
        sid = series_id(ORG, batch.metric, ("env:prod", "host:web-1"))
        assert batch.sid.tolist() == [sid] * 5
        assert batch.ts.tolist() == [now - j for j in range(5)]
        assert batch.value.tolist() == [i + j / 7 for j in range(5)]  # bit-exact
    assert len(seen_partitions) > 1


def test_v1_gzip_submission_and_response_has_no_errors_key(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    now = time.time()
    body: dict[str, object] = {
        "series": [
            {
                "metric": "v1.m",
                "points": [[now, 1.25]],
                "type": "count",
                "host": "h1",
                "tags": None,
                "device": None,
                "interval": 10,
            },
            {"metric": "v1.m", "points": [[now - 99999, 5.0], [now, float("nan")]]},
        ]
    }
    r = post_gzip(intake, "/api/v1/series", api_key, body)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "ok"}
    (rec,) = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1)
    batch = decode_points(rec.value)
    assert batch.ts.tolist() == [int(now)]
    assert batch.value.tolist() == [1.25]
    counters = intake.intake.counters
    assert counters.points_accepted == 1
    assert sum(counters.points_rejected.values()) == 2


def test_series_announced_once_per_bucket(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    now = int(time.time())
    bucket = now - now % INDEX_BUCKET_SECONDS
    s = {"metric": "ann.m", "tags": ["a:b"], "points": [{"timestamp": now, "value": 1}]}
    for _ in range(3):
        assert post(intake, "/api/v2/series", api_key, {"series": [s]}).status_code == 202
    previous = {**s, "points": [{"timestamp": bucket - 1, "value": 2}]}
    assert post(intake, "/api/v2/series", api_key, {"series": [previous, s]}).status_code == 202

    records = read_topic(settings.kafka_bootstrap, settings.topic_series, expect=2)
    rows = []
    for rec in records:
        assert rec.partition == partition_for(partition_key(ORG, "ann.m"), settings.partitions)
        b = decode_series(rec.value)
        rows += list(zip(b.sid.tolist(), b.bucket.tolist(), b.tags, strict=True))
    sid = series_id(ORG, "ann.m", ("a:b",))
    assert sorted(rows) == [
        (sid, bucket - INDEX_BUCKET_SECONDS, ("a:b",)),
        (sid, bucket, ("a:b",)),
    ]


def test_unknown_or_missing_key_is_403(intake: RunningIntake, api_key: str) -> None:
    body: dict[str, list[object]] = {"series": []}
    for headers in ({"DD-API-KEY": "0" * 32}, {}):
        r = httpx.post(intake.url + "/api/v2/series", json=body, headers=headers)
        assert (r.status_code, r.json()) == (403, {"errors": ["Forbidden"]})
        r = httpx.get(intake.url + "/api/v1/validate", headers=headers)
        assert (r.status_code, r.json()) == (403, {"errors": ["Forbidden"]})
    r = httpx.get(intake.url + "/api/v1/validate", headers={"DD-API-KEY": api_key})
    assert (r.status_code, r.json()) == (200, {"valid": True})
    r = httpx.post(intake.url + "/api/v1/series", params={"api_key": api_key}, json=body)
    assert (r.status_code, r.json()) == (202, {"status": "ok"})


def test_new_key_is_honoured_without_restart(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    fresh = create_keys(settings.keys_path, "newcorp").api_key
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(intake.url + "/api/v1/validate", headers={"DD-API-KEY": fresh})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200


def test_bad_requests_get_clear_errors(intake: RunningIntake, api_key: str) -> None:
    now = int(time.time())
    bad_value = {"series": [{"metric": "m", "points": [{"timestamp": now, "value": "x"}]}]}
    r = post(intake, "/api/v2/series", api_key, bad_value)
    assert (r.status_code, r.json()) == (
        400,
        {"errors": ["series[0].points[0].value: expected a number"]},
    )
    r = httpx.post(intake.url + "/api/v2/series", content=b"{nope", headers={"DD-API-KEY": api_key})
    assert r.status_code == 400 and r.json()["errors"][0].startswith("body: malformed JSON")
    r = httpx.post(
        intake.url + "/api/v2/series", content=b" " * 512_001, headers={"DD-API-KEY": api_key}
    )
    assert r.status_code == 413 and "512000-byte limit" in r.json()["errors"][0]
    r = httpx.post(
        intake.url + "/api/v2/series",
        content=gzip.compress(b" " * 5_242_881),
        headers={"DD-API-KEY": api_key, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 413 and "decompressed" in r.json()["errors"][0]
    r = httpx.post(
        intake.url + "/api/v2/series",
        content=b"{}",
        headers={"DD-API-KEY": api_key, "Content-Encoding": "br"},
    )
    assert r.status_code == 415
    r = post(intake, "/api/v1/series", api_key, {"series": [{"metric": "1x", "points": []}]})
    assert r.status_code == 400 and r.json()["errors"][0].startswith("series[0].metric:")


def test_v2_reports_rejected_groups_and_accepts_the_rest(
    intake: RunningIntake, api_key: str
) -> None:
    now = int(time.time())
    pts = [
        {"timestamp": now - 7300, "value": 1},
        {"timestamp": now, "value": 2},
        {"timestamp": now + 3600, "value": 3},
    ]
    r = post(
        intake,
        "/api/v2/series",
        api_key,
        {"series": [{"metric": "cpu.user", "points": pts}, {"metric": "", "points": pts}]},
    )
    assert r.status_code == 202
    assert r.json()["errors"] == [
        "metric cpu.user: 1 point rejected: more than 600s in the future",
        "metric cpu.user: 1 point rejected: older than the 7200s late-data window",
        "metric : 3 points rejected: invalid metric name (metric name is empty)",
    ]
    assert post(intake, "/api/v2/series", api_key, {"series": []}).status_code == 202


def test_python_m_intake_serves(strata_env: dict[str, str], tmp_path: Path) -> None:
    import os
    import sys

    from strata.servers import free_port, spawn

    settings = intake_settings(strata_env)
    key = create_keys(settings.keys_path, ORG).api_key
    port = free_port()
    env = {**os.environ, **strata_env, "STRATA_HTTP_PORT": str(port)}
    proc = spawn("intake", [sys.executable, "-m", "intake"], tmp_path / "intake.log", env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "intake.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=1).json() == {
                    "status": "ok",
                    "kind": "intake",
                }:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "intake did not come up"
            time.sleep(0.1)
        now = int(time.time())
        body = {"series": [{"metric": "sub.m", "points": [{"timestamp": now, "value": 42.0}]}]}
        r = httpx.post(url + "/api/v2/series", json=body, headers={"DD-API-KEY": key}, timeout=15)
        assert r.status_code == 202, r.text
        (rec,) = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1)
        assert np.array_equal(decode_points(rec.value).value, [42.0])
    finally:
        proc.terminate()
        proc.wait(10)


def test_broken_keys_file_keeps_the_last_good_keys(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    assert httpx.get(intake.url + "/api/v1/validate", headers={"DD-API-KEY": api_key}).is_success
    settings.keys_path.write_text("{not json")  # a bad hand edit must not lock customers out
    time.sleep(1.5)  # past the reload interval: the store has seen the broken file
    r = httpx.get(intake.url + "/api/v1/validate", headers={"DD-API-KEY": api_key})
    assert r.status_code == 200, r.text


def test_unreadable_keys_file_at_start_is_503_not_500(strata_env: dict[str, str]) -> None:
    settings = intake_settings(strata_env)
    settings.keys_path.parent.mkdir(parents=True, exist_ok=True)
    settings.keys_path.write_text("{not json")
    with running_intake(settings) as intake:
        r = httpx.get(intake.url + "/api/v1/validate", headers={"DD-API-KEY": "whatever"})
    assert r.status_code == 503 and "Retry-After" in r.headers
    assert "key store unreadable" in r.json()["errors"][0]


def test_datadog_package_submits_without_error(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    from datadog import api, initialize

    # A fixed host name: the package would otherwise probe cloud metadata endpoints.
    initialize(
        api_key=api_key, api_host=intake.url, host_name="test-host", hostname_from_config=False
    )
    now = time.time()
    result = api.Metric.send(  # type: ignore[attr-defined]
        metric="dd.client.m", points=[(now, 3.5)], host="h1", tags=["team:a"], type="gauge"
    )
    assert result == {"status": "ok"}
    (rec,) = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1)
    batch = decode_points(rec.value)
    assert (batch.metric, batch.ts.tolist(), batch.value.tolist()) == (
        "dd.client.m",
        [int(now)],
        [3.5],
    )


# --- bodies beyond one Kafka message (intake/messages.py) ---------------------------------


def test_one_metric_beyond_a_message_is_split_and_kept_whole(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    now = int(time.time())
    n = 100_000  # 2.4 MB of encoded columns: more than one Kafka message may hold
    series = [
        {
            "metric": "big.metric",
            "type": "gauge",
            "points": [[now - 7000 + j % 7000, j] for j in range(s, n, 50)],
            "tags": [f"shard:{s}"],
        }
        for s in range(50)
    ]
    r = post_gzip(intake, "/api/v1/series", api_key, {"series": series})
    assert r.status_code == 202, r.text
    at_least = -(-24 * n // MAX_MESSAGE_BYTES)  # the columns alone need this many messages
    records = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=at_least)
    assert all(len(rec.value) <= MAX_MESSAGE_BYTES for rec in records)
    assert len({rec.partition for rec in records}) == 1  # one metric: one partition
    batches = [decode_points(rec.value) for rec in records]
    assert sum(len(b) for b in batches) == n
    values = np.sort(np.concatenate([b.value for b in batches]))
    assert np.array_equal(values, np.arange(n, dtype=np.float64))


def test_a_series_too_large_for_any_message_is_413_naming_the_metric(
    intake: RunningIntake, settings: IntakeSettings, api_key: str
) -> None:
    tags = [f"k{i}:{'v' * 190}" for i in range(3000)]  # ~590 KB of tags on one series
    body = {"series": [{"metric": "wide.metric", "points": [[int(time.time()), 1]], "tags": tags}]}
    r = post_gzip(intake, "/api/v1/series", api_key, body)
    assert r.status_code == 413, r.text
    assert "wide.metric" in r.json()["errors"][0]
    # Nothing of it was produced: no points without their announcement.
    assert read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1, timeout=2) == []


# --- concurrent requests sharing messages (intake/coalesce.py) ------------------------------


def test_concurrent_requests_share_one_points_message_on_the_broker(
    strata_env: dict[str, str], api_key: str
) -> None:
    # A window long enough that both requests surely fall into it on a busy machine.
    settings = intake_settings(strata_env, late_window_seconds=7200, coalesce_ms=1000)
    now = int(time.time())

    def body(first: int) -> dict[str, object]:
        return {
            "series": [
                {
                    "metric": "shared.metric",
                    "type": 3,
                    "points": [{"timestamp": now - j, "value": first + j} for j in range(5)],
                    "resources": [{"name": f"host-{first}", "type": "host"}],
                }
            ]
        }

    with running_intake(settings) as intake, ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda b: post(intake, "/api/v2/series", api_key, b), [body(0), body(100)])
        )
        assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
        # One points message for both; each request announces its own new series.
        assert intake.intake.counters.messages_produced == 3
    (rec,) = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1)
    batch = decode_points(rec.value)
    assert sorted(batch.value.tolist()) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    assert len(set(batch.sid.tolist())) == 2  # both requests' series


@pytest.mark.parametrize("compression", ["none", "lz4", "snappy", "gzip", "zstd"])
def test_every_compression_setting_lands_whole_on_the_broker(
    strata_env: dict[str, str], compression: str
) -> None:
    """Every ``compression`` intake accepts is one tansu stores and consumers read back."""
    settings = intake_settings(strata_env, compression=compression)
    key = create_keys(settings.keys_path, ORG).api_key
    now = int(time.time())
    series = [
        {"metric": "test.codec", "points": [[now - j, j / 3] for j in range(200)], "tags": []}
    ]
    with running_intake(settings) as running:
        assert running.intake.producer.config["compression.type"] == compression
        r = post(running, "/api/v1/series", key, {"series": series})
        assert r.status_code == 202, r.text
    (record,) = read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1)
    batch = decode_points(record.value)
    assert batch.ts.tolist() == [now - j for j in range(200)]
    assert batch.value.tolist() == [j / 3 for j in range(200)]
