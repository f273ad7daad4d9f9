"""Heartbeats through real intake, tansu and store processes (issue 6 items 1-3).

The emitter posts heartbeats to intake's public API with the reserved key; intake writes a
marker to every partition of both topics; every store advances and publishes a watermark
per partition it owns. Then:

- SIGSTOP of one of two RAM instances freezes the gate of the metrics in its partitions
  (their data may be missing) while metrics in the other RAM instance's partitions keep
  advancing: only the partition that holds a metric gates it. A real evaluator (in this
  process, monitors in Valkey) holds the monitor of a frozen partition as delayed and keeps
  judging the monitor whose partition is healthy;
- after SIGCONT the frozen watermarks catch up past the resume time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from heartbeat.emitter import Emitter
from heartbeat.evaluator import build_evaluator
from heartbeat.gate import PipelineGate
from heartbeat.settings import EvaluatorSettings
from query.monitors import validate_definition
from query.stores_client import HttpStoreClient, RegistryView
from strata.keys import create_keys
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, Registry, pipeline_lag
from strata.settings import CommonSettings
from strata.topics import ensure_topics
from tests.integration.intake_support import intake_settings, running_intake
from tests.integration.store_support import StoreProcess, Stores, stores_fixture, wait_for

pytestmark = pytest.mark.integration

ORG = "acme"
PARTITIONS = 3
KINDS = ("ram", "rocks", "tags", "inverted")


@pytest.fixture
def stores(
    strata_env: dict[str, str], common_settings: CommonSettings, tmp_path: Path
) -> Iterator[Stores]:
    ensure_topics(common_settings)
    yield from stores_fixture(strata_env, tmp_path)


def metric_in(partitions: list[int]) -> str:
    n = 0
    while partition_for(partition_key(ORG, f"hb.m{n}"), PARTITIONS) not in partitions:
        n += 1
    return f"hb.m{n}"


def registrations(env: dict[str, str]) -> list[Registration]:
    registry = Registry(env["STRATA_REDIS_URL"])
    try:
        return registry.discover()
    finally:
        registry.close()


def test_watermarks_advance_per_partition_and_gate_only_their_metrics(
    stores: Stores, strata_env: dict[str, str], tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    beat_keys = create_keys(keys_file, "strata-heartbeat")
    env = {**strata_env, "STRATA_KEYS_FILE": str(keys_file)}
    fast = {"STRATA_REGISTRY_INTERVAL_SECONDS": "0.5"}  # watermarks published promptly
    # The paused RAM instance must keep its partitions through the pause (a longer pause
    # than the session timeout moves them to the other instance, which is also correct).
    slow_group = {**fast, "STRATA_SESSION_TIMEOUT_MS": "12000"}
    procs: dict[str, StoreProcess] = {
        k: stores.start(k, f"{k}-1", slow_group if k == "ram" else fast) for k in KINDS
    }
    for p in procs.values():
        p.wait_ready(partitions=PARTITIONS, timeout=60)
    ram2 = stores.start("ram", "ram-2", slow_group)

    def split() -> bool:
        a, b = procs["ram"].registration(), ram2.registration()
        return bool(a and b and a.partitions and b.partitions) and sorted(
            a.partitions + b.partitions  # type: ignore[union-attr]
        ) == list(range(PARTITIONS))

    wait_for(split, timeout=60, what="two RAM instances splitting the partitions")
    topics = {k: env["STRATA_TOPIC_POINTS"] for k in ("ram", "rocks")}
    topics.update({k: env["STRATA_TOPIC_SERIES"] for k in ("tags", "inverted")})
    registry = Registry(env["STRATA_REDIS_URL"])
    gate = PipelineGate(RegistryView(registry, 0.0, topics=topics))
    stop = threading.Event()
    with running_intake(intake_settings(env, keys_file=str(keys_file))) as intake:
        emitter = Emitter(intake.url, beat_keys.api_key, interval_seconds=0.3)
        beating = threading.Thread(target=emitter.run, args=(stop,), daemon=True)
        beating.start()
        try:
            # -- every store, every partition it owns: a watermark close to now -----------
            def all_fresh() -> bool:
                rows = pipeline_lag(registrations(env), time.time())
                return (
                    bool(rows)
                    and all(r.lag_seconds is not None for r in rows)
                    and all(r.lag_seconds is not None and r.lag_seconds < 5 for r in rows)
                )

            wait_for(all_fresh, timeout=60, what="fresh watermarks on every store and partition")
            assert intake.intake.counters.heartbeats > 0 and emitter.stats.failed == 0
            kinds = {r.kind for r in registrations(env)}
            assert kinds >= set(KINDS)

            stopped = ram2.registration()
            assert stopped is not None
            running = [p for p in range(PARTITIONS) if p not in stopped.partitions]
            held, free = metric_in(stopped.partitions), metric_in(running)
            settings = EvaluatorSettings(redis_url=env["STRATA_REDIS_URL"], max_delay_seconds=2)
            http = httpx.Client(timeout=5.0)
            client = HttpStoreClient(RegistryView(registry, 0.0, topics=topics), http)
            evaluator, monitors, notifier = build_evaluator(settings, client, gate)
            ids = {}
            for metric in (held, free):
                body = {"type": "metric alert", "query": f"avg(last_1m):avg:{metric}{{*}} > 1"}
                ids[metric] = monitors.create(ORG, validate_definition(body)).monitor.id
            evaluator.evaluate_once()
            assert evaluator.delayed() == []
            assert ram2.server is not None
            os.kill(ram2.server.process.pid, signal.SIGSTOP)
            paused_at = time.time()
            try:
                time.sleep(4.0)  # well inside the registry TTL: its entry stays, frozen
                evaluator.evaluate_once()
                status = evaluator.status()
                assert status[ids[held]].delayed, status[ids[held]]
                assert not status[ids[free]].delayed, status[ids[free]]
                through_held, through_free = gate(ORG, [held]), gate(ORG, [free])
                assert through_held is not None and through_free is not None
                assert through_held <= paused_at + 1  # frozen at the pause
                assert through_free >= paused_at + 2  # its partition kept going
                assert gate(ORG, [held, free]) == through_held
            finally:
                os.kill(ram2.server.process.pid, signal.SIGCONT)
            resumed = time.time()

            def caught_up() -> bool:
                t = gate(ORG, [held])
                return t is not None and t >= resumed

            wait_for(caught_up, timeout=30, what="the resumed RAM instance's watermarks")
            evaluator.evaluate_once()
            assert evaluator.delayed() == []
            for mid in ids.values():
                monitors.delete(ORG, mid)
            notifier.close()
            monitors.close()
            http.close()
        finally:
            stop.set()
            beating.join(5)
            emitter.close()
            registry.close()
