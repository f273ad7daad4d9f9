"""Helpers for intake integration tests: run the app on a real port, read topics back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from intake.app import Intake, create_app
from intake.settings import IntakeSettings
from strata.servers import free_port


def intake_settings(strata_env: dict[str, str], **overrides: Any) -> IntakeSettings:
    fields: dict[str, Any] = {k.removeprefix("STRATA_").lower(): v for k, v in strata_env.items()}
    fields.update(overrides)
    return IntakeSettings.model_validate(fields)


@dataclass
class RunningIntake:
    url: str
    intake: Intake


@contextmanager
def running_intake(settings: IntakeSettings) -> Iterator[RunningIntake]:
    """The intake app under uvicorn in a thread on a free port; stopped on exit."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="intake-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("intake did not start")
        time.sleep(0.02)
    try:
        yield RunningIntake(f"http://127.0.0.1:{port}", app.state.intake)
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes
    value: bytes


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 15.0) -> list[Record]:
    """Every record of ``topic`` from the beginning, once ``expect`` arrived or on timeout.

    Reads by assignment (no group join) and never trusts tansu's high watermark.
    """
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    partitions = len(meta.topics[topic].partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(_record(msg))
        # Catch anything beyond ``expect`` (a duplicate would show up here).
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(_record(msg))
    finally:
        consumer.close()
    return out


def _record(msg: Message) -> Record:
    partition, key, value = msg.partition(), msg.key(), msg.value()
    assert partition is not None and key is not None and value is not None
    return Record(partition, key, value)
