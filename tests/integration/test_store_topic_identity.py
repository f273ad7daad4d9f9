"""An index store whose broker lost its log (tansu memory storage restarted, or a topic
re-created) must not trust its stored offsets: it replays the new topic from the start."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from strata.model import MetricType
from strata.servers import RunningServer, start_tansu
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.store_support import Stores, make_series, produce, series_message

pytestmark = pytest.mark.integration

NOW = int(time.time())
FIRST = [make_series("acme", f"old.metric{i}", "host:h0") for i in range(4)]
AFTER = make_series("acme", "new.metric", "host:h1")


def metrics(url: str) -> list[str]:
    r = httpx.get(f"{url}/v1/metrics", params={"org": "acme", "from": NOW - 60}, timeout=5)
    assert r.status_code == 200, r.text
    names: list[str] = r.json()["metrics"]
    return names


def wait_metrics(url: str, want: set[str], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = metrics(url)
        if want <= set(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"wanted {sorted(want)}, store lists {seen}")


def test_index_replays_a_new_broker_log_instead_of_skipping_it(
    strata_env: dict[str, str], tmp_path: Path
) -> None:
    logs = tmp_path / "broker"
    broker: RunningServer = start_tansu(logs)
    env = {**strata_env, "STRATA_KAFKA_BOOTSTRAP": broker.address, "STRATA_PARTITIONS": "1"}
    settings = CommonSettings.model_validate(
        {k.removeprefix("STRATA_").lower(): v for k, v in env.items()}
    )
    stores = Stores({**env, "STRATA_GROUP_PREFIX": "identity"}, tmp_path / "logs")
    try:
        ensure_topics(settings)
        # Four messages: the store records "next offset 4" in its RocksDB.
        produce(
            env,
            env["STRATA_TOPIC_SERIES"],
            [(s.key, series_message([s], NOW, MetricType.GAUGE)) for s in FIRST],
        )
        tags = stores.start("tags", "tags-identity")
        tags.wait_ready()
        wait_metrics(tags.url, {s.metric for s in FIRST})
        tags.stop()

        # The broker restarts empty (memory storage): same port, same topic names.
        broker.kill()
        broker = start_tansu(logs, port=broker.port)
        ensure_topics(settings)
        produce(
            env,
            env["STRATA_TOPIC_SERIES"],
            [(AFTER.key, series_message([AFTER], NOW, MetricType.GAUGE))],
        )  # offset 0 of the new log: skipped if the store trusted its old offsets

        tags = stores.start("tags", "tags-identity")  # same instance id -> same RocksDB
        tags.wait_ready()
        listed = wait_metrics(tags.url, {AFTER.metric})
        # What the old log taught it stays: RocksDB survived the restart.
        assert {s.metric for s in FIRST} <= set(listed)
        assert "replaying it from the beginning" in tags.log_path.read_text()
    finally:
        stores.stop_all()
        broker.stop()
