"""Run one store process: consumer thread, registry heartbeat, HTTP server in the main thread.

Shutdown: SIGTERM/SIGINT stop uvicorn; then the consumer loop is stopped and closes the
consumer (leaving the group, so its partitions move at once), the registry entry is
withdrawn and the store closed. A crash of the consumer thread stops the server too, so
the process exits non-zero instead of serving stale data.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from stores.runtime.consumer import ConsumerLoop
from stores.runtime.heartbeat import RegistryHeartbeat
from stores.runtime.ownership import Ownership
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Store
from stores.runtime.watermarks import as_registry
from strata.registry import Registration, Registry
from strata.topics import ensure_topics, topic_id

log = logging.getLogger(__name__)

T = TypeVar("T")

AppFactory = Callable[[Ownership], FastAPI]


def run_store(
    store: Store[T], settings: StoreSettings, app_factory: AppFactory, default_port: int
) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        # Installed before uvicorn's own handlers, which restore and re-raise ours on exit:
        # we only record the request, so the cleanup below always runs.
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = settings.http_port if settings.http_port is not None else default_port
    instance = settings.instance_name(store.kind)
    partition_count = ensure_topics(settings)[store.topic]
    store.bind_topic(topic_id(settings.kafka_bootstrap, store.topic))
    ownership = Ownership()
    loop = ConsumerLoop(store, settings, ownership)
    server = uvicorn.Server(
        uvicorn.Config(
            app_factory(ownership),
            host=settings.http_host,
            port=port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    )
    failed = threading.Event()

    def consume() -> None:
        try:
            loop.run()
        except Exception:
            log.exception("consumer loop crashed")
            failed.set()
            server.should_exit = True

    def snapshot() -> Registration:
        partitions = ownership.partitions()
        return Registration(
            kind=store.kind,
            instance=instance,
            address=settings.address(port),
            topic=store.topic,
            partition_count=partition_count,
            partitions=partitions,
            coverage=store.coverage(partitions, int(time.time())),
            offsets=ownership.offsets(),
            watermarks=as_registry(ownership.watermarks.snapshot()),
        )

    heartbeat = RegistryHeartbeat(
        Registry(settings.redis_url),
        snapshot,
        interval=settings.registry_interval_seconds,
        ttl=settings.registry_ttl_seconds,
    )
    consumer_thread = threading.Thread(target=consume, name="consumer")
    consumer_thread.start()
    heartbeat.start()
    try:
        if not stopping.is_set():
            server.run()
    finally:
        loop.stop()
        consumer_thread.join(timeout=30.0)
        heartbeat.stop()
        store.close()
    log.info("%s stopped", instance)
    return 1 if failed.is_set() else 0
