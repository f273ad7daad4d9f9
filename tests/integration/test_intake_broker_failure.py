"""Intake under broker failure: a private tansu is killed and restarted under it.

The promise checked: 503 with Retry-After within the bound while the broker is gone, recovery
without restarting intake once it is back, and every point answered 202 is on the topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from intake.settings import IntakeSettings
from strata.codec import decode_points
from strata.keys import create_keys
from strata.servers import RunningServer, free_port, start_tansu
from tests.integration.intake_support import (
    RunningIntake,
    intake_settings,
    read_topic,
    running_intake,
)

pytestmark = pytest.mark.integration

ORG = "acme"
TIMEOUT = 2.0  # produce_timeout_seconds for these tests
METRICS = [f"restart.m{i}" for i in range(4)]


def submit(intake: RunningIntake, key: str, value: float) -> httpx.Response:
    now = int(time.time())
    series = [{"metric": m, "points": [{"timestamp": now, "value": value}]} for m in METRICS]
    return httpx.post(
        intake.url + "/api/v2/series",
        json={"series": series},
        headers={"DD-API-KEY": key},
        timeout=TIMEOUT + 10,
    )


def settings_for(strata_env: dict[str, str], broker: RunningServer) -> IntakeSettings:
    env = {**strata_env, "STRATA_KAFKA_BOOTSTRAP": broker.address}
    return intake_settings(env, produce_timeout_seconds=TIMEOUT)


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[RunningServer]:
    broker = start_tansu(tmp_path / "tansu")
    yield broker
    broker.stop()


def test_broker_killed_gives_503_with_retry_after_within_the_bound(
    strata_env: dict[str, str], private_tansu: RunningServer
) -> None:
    settings = settings_for(strata_env, private_tansu)
    key = create_keys(settings.keys_path, ORG).api_key
    with running_intake(settings) as intake:
        assert submit(intake, key, 1.0).status_code == 202
        private_tansu.kill()
        for attempt in range(2):  # the first and a fresh (replaced) producer both give up
            started = time.monotonic()
            r = submit(intake, key, 2.0 + attempt)
            elapsed = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "1"
            assert r.json()["errors"][0].startswith("Service unavailable, retry later")
            assert elapsed < TIMEOUT + 1.5
        assert intake.intake.counters.requests_refused[503] == 2


def recover(intake: RunningIntake, key: str, value: float, acked: list[float], until: int) -> float:
    """Submit until ``until`` requests were acknowledged in all; only 503 may interrupt."""
    refused = 0
    deadline = time.monotonic() + 60
    while len(acked) < until:
        assert time.monotonic() < deadline, "intake did not recover within 60s"
        value += 1
        r = submit(intake, key, value)
        if r.status_code == 202:
            acked.append(value)
        else:
            assert r.status_code == 503, r.text
            refused += 1
    print(f"503s after the restart before recovery: {refused}")
    return value


@pytest.fixture
def s3_env(moto: RunningServer) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{moto.port}"
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }


def test_intake_recovers_after_broker_restart_and_keeps_every_acknowledged_point(
    strata_env: dict[str, str], s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    port = free_port()
    storage = f"s3://{bucket}/"
    broker = start_tansu(tmp_path / "tansu-1", port=port, storage=storage, env=s3_env)
    acked: list[float] = []
    value = 0.0
    try:
        settings = settings_for(strata_env, broker)
        key = create_keys(settings.keys_path, ORG).api_key
        with running_intake(settings) as intake:
            for _ in range(5):
                value += 1
                r = submit(intake, key, value)
                assert r.status_code == 202, r.text
                acked.append(value)

            broker.kill()
            value += 1
            assert submit(intake, key, value).status_code == 503
            broker = start_tansu(tmp_path / "tansu-2", port=port, storage=storage, env=s3_env)

            value = recover(intake, key, value, acked, until=10)

            # Again, but with no request while it is down: the producer that served before
            # the restart meets the restarted broker directly.
            broker.kill()
            broker = start_tansu(tmp_path / "tansu-3", port=port, storage=storage, env=s3_env)
            value = recover(intake, key, value, acked, until=15)
            print(f"producers replaced: {intake.intake.counters.producers_replaced}")

        # Each acknowledged request produced one message per metric; 503'd ones may add more.
        records = read_topic(broker.address, settings.topic_points, expect=len(acked) * 4)
    finally:
        broker.stop()
    on_topic: dict[str, set[float]] = {m: set() for m in METRICS}
    for rec in records:
        batch = decode_points(rec.value)
        on_topic[batch.metric].update(batch.value.tolist())
    for m in METRICS:
        assert set(acked) <= on_topic[m], f"{m}: lost {sorted(set(acked) - on_topic[m])}"
