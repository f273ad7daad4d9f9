"""Bodies whose points of one metric do not fit one Kafka message, against real tansu."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from intake.messages import MAX_MESSAGE_BYTES
from intake.settings import IntakeSettings
from strata.codec import decode_points
from strata.keys import create_keys
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
    with running_intake(settings) as running:
        yield running


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
    body = gzip.compress(json.dumps({"series": series}).encode(), 1)
    r = httpx.post(
        intake.url + "/api/v1/series",
        content=body,
        headers={
            "DD-API-KEY": api_key,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
        timeout=30,
    )
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
    r = httpx.post(
        intake.url + "/api/v1/series",
        content=gzip.compress(json.dumps(body).encode(), 1),
        headers={
            "DD-API-KEY": api_key,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert "wide.metric" in r.json()["errors"][0]
    # Nothing of it was produced: no points without their announcement.
    assert read_topic(settings.kafka_bootstrap, settings.topic_points, expect=1, timeout=2) == []
