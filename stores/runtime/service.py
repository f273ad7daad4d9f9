"""Run one store process: consumer thread, registry heartbeat, HTTP server in the main thread.

A process may run *companion* stores besides its main one (the RAM and rocks processes
consume the sketches topic too, stores/sketches/): each companion has its own consumer
loop and thread, consumer group and registry entry (its own ``kind``), and is served by the
same HTTP app; if any loop crashes, the process stops.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from stores.runtime.consumer import ConsumerLoop
from stores.runtime.heartbeat import RegistryHeartbeat
from stores.runtime.ownership import Ownership
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Store
from stores.runtime.watermarks import as_registry
from strata.allocator import tune_service_malloc
from strata.registry import Registration, Registry
from strata.topics import ensure_topics, topic_id

log = logging.getLogger(__name__)

T = TypeVar("T")

AppFactory = Callable[[Ownership], FastAPI]


@dataclass(frozen=True, slots=True)
class Companion:
    """A further store of the process; ``ownership`` is the one its read routes (built by
    the app factory) check, so the caller creates it."""

    store: Store[Any]
    ownership: Ownership


def run_store(
    store: Store[T],
    settings: StoreSettings,
    app_factory: AppFactory,
    default_port: int,
    *,
    companions: Sequence[Companion] = (),
) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Batch-sized numpy columns stay in the process instead of being page-faulted in (and
    # zeroed by the kernel) again for every batch (strata/allocator.py).
    tune_service_malloc(log)
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        # Installed before uvicorn's own handlers, which restore and re-raise ours on exit:
        # we only record the request, so the cleanup below always runs.
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = settings.http_port if settings.http_port is not None else default_port
    counts = ensure_topics(settings)
    ownership = Ownership()
    members = [Companion(store, ownership), *companions]
    for m in members:
        m.store.bind_topic(topic_id(settings.kafka_bootstrap, m.store.topic))
    loops = [ConsumerLoop(m.store, settings, m.ownership) for m in members]
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

    def consume(loop: ConsumerLoop[Any]) -> None:
        try:
            loop.run()
        except Exception:
            log.exception("consumer loop crashed")
            failed.set()
            server.should_exit = True

    def snapshot(m: Companion) -> Callable[[], Registration]:
        def registration() -> Registration:
            partitions = m.ownership.partitions()
            return Registration(
                kind=m.store.kind,
                instance=settings.instance_name(m.store.kind),
                address=settings.address(port),
                topic=m.store.topic,
                partition_count=counts[m.store.topic],
                partitions=partitions,
                coverage=m.store.coverage(partitions, int(time.time())),
                offsets=m.ownership.offsets(),
                watermarks=as_registry(m.ownership.watermarks.snapshot()),
            )

        return registration

    heartbeats = [
        RegistryHeartbeat(
            Registry(settings.redis_url),  # each closes its own at stop
            snapshot(m),
            interval=settings.registry_interval_seconds,
            ttl=settings.registry_ttl_seconds,
        )
        for m in members
    ]
    threads = [
        threading.Thread(target=consume, args=(loop,), name=f"consumer-{m.store.kind}")
        for m, loop in zip(members, loops, strict=True)
    ]
    for t in threads:
        t.start()
    for h in heartbeats:
        h.start()
    try:
        if not stopping.is_set():
            server.run()
    finally:
        for loop in loops:
            loop.stop()
        for t in threads:
            t.join(timeout=30.0)
        for h in heartbeats:
            h.stop()
        for m in members:
            m.store.close()
    log.info("%s stopped", settings.instance_name(store.kind))
    return 1 if failed.is_set() else 0
