"""Run the archive process: three consumer loops (points, series, sketches), scheduled
compaction, the registry heartbeats (kinds ``archive`` and ``archive-sketches``) and the
read API.

A variant of :func:`stores.runtime.service.run_store` for a store that consumes two topics
and commits only what is uploaded; the shared runtime is reused piece by piece, unchanged.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence, Sized
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from confluent_kafka import KafkaException, TopicPartition
from prometheus_client.core import Metric

from stores.archive.api import ReadGate, create_app
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.naming import Family
from stores.archive.objectstore import ObjectStore
from stores.archive.reader import ArchiveReader
from stores.archive.settings import ArchiveSettings
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.archive.store import (
    ArchivePointStore,
    ArchiveSeriesStore,
    ArchiveTierWriter,
    ArchiveWriter,
)
from stores.runtime.consumer import ConsumerLoop
from stores.runtime.heartbeat import RegistryHeartbeat
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard
from stores.runtime.settings import StoreSettings
from stores.runtime.watermarks import as_registry
from strata.allocator import tune_service_malloc
from strata.observability import FunctionCollector, Refreshed, counter, gauge, process_sources
from strata.registry import Registration, Registry
from strata.topics import ensure_topics, topic_id

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Sized)


class ArchiveLoop(ConsumerLoop[T]):
    """The runtime's loop, committing only offsets whose messages are in uploaded objects.

    The base loop commits after every ``make_durable``; the archive buffers across batches,
    so here the commit is clamped to :meth:`ArchiveWriter.durable_offsets`.
    """

    def __init__(
        self, store: ArchiveWriter[T], settings: StoreSettings, ownership: Ownership
    ) -> None:
        super().__init__(store, settings, ownership)
        self._writer: ArchiveWriter[T] = store
        self._committed: dict[int, int] = {}

    def durable_offsets(self, applied: dict[int, int]) -> dict[int, int]:
        # Only uploaded objects are durable: a heartbeat marker counts once the object
        # holding every record before it is in the object store.
        return self._writer.complete_offsets(self._ownership.offsets())

    def _commit_uncommitted(self) -> None:
        self._uncommitted.clear()
        owned = set(self._ownership.partitions())
        todo = {
            p: o
            for p, o in self._writer.durable_offsets().items()
            if p in owned and self._committed.get(p) != o
        }
        if not todo:
            return
        offsets = [TopicPartition(self._store.topic, p, o) for p, o in todo.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed, will retry: %s", exc)
            return
        self._committed.update(todo)


#: how often GET /metrics may list the whole object store (in a background thread)
LISTING_MAX_AGE_SECONDS = 60.0


def object_totals(objects: ObjectStore) -> dict[str, tuple[int, int]]:
    """Family (``points``, ``series``, ``rollups/1h``, ``sketches``, ``sketch-rollups/1m``,
    ``sketch-rollups/1h``, else ``other``) -> (objects, bytes)."""
    out = {f.value: (0, 0) for f in Family}
    for info in objects.list(""):
        fam = next((f.value for f in Family if info.key.startswith(f.value + "/")), "other")
        n, size = out.get(fam, (0, 0))
        out[fam] = (n + 1, size + info.size)
    return out


def archive_metrics(
    objects: ObjectStore, writers: Sequence[ArchiveWriter[Any]]
) -> FunctionCollector:
    """``GET /metrics`` families of the archive beyond the runtime's: uploads and failed
    uploads per writer, objects and bytes per family (listed at most once a minute)."""
    listing = Refreshed(
        lambda: object_totals(objects), LISTING_MAX_AGE_SECONDS, name="archive-list"
    )

    def families() -> Iterator[Metric]:
        kinds = ("kind",)
        yield counter(
            "strata_store_archive_uploads",
            "objects uploaded",
            kinds,
            [((w.kind,), w.uploads) for w in writers],
        )
        yield counter(
            "strata_store_archive_upload_failures",
            "failed upload attempts (retried with backoff)",
            kinds,
            [((w.kind,), w.upload_failures) for w in writers],
        )
        totals = listing.get() or {}
        by_family = sorted(totals.items())
        yield gauge(
            "strata_store_archive_objects",
            "objects in the object store, by family",
            ("family",),
            [((f,), n) for f, (n, _) in by_family],
        )
        yield gauge(
            "strata_store_archive_bytes",
            "bytes in the object store, by family",
            ("family",),
            [((f,), size) for f, (_, size) in by_family],
        )

    return FunctionCollector(families)


def run_archive(settings: ArchiveSettings, default_port: int) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_service_malloc(log)  # batch-sized columns kept for the next batch (strata/allocator.py)
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    objects = settings.objects()
    catalog = Catalog(objects)
    writer_kw: dict[str, object] = {
        "flush_rows": settings.archive_flush_points,
        "flush_seconds": settings.archive_flush_seconds,
        "max_buffer_rows": settings.archive_max_buffer_points,
        "retry_max_seconds": settings.archive_retry_max_seconds,
        "row_group_rows": settings.archive_row_group_rows,
    }
    points = ArchivePointStore(settings.topic_points, catalog, **writer_kw)
    series = ArchiveSeriesStore(settings.topic_series, catalog, **writer_kw)  # type: ignore[arg-type]
    sketches = ArchiveSketchStore(
        settings.topic_sketches,
        catalog,
        flush_rows=settings.archive_flush_sketches,
        flush_seconds=settings.archive_flush_seconds,
        max_buffer_rows=settings.archive_max_buffer_sketches,
        retry_max_seconds=settings.archive_retry_max_seconds,
        row_group_rows=settings.archive_row_group_rows,
    )
    partition_counts = ensure_topics(settings)
    writers: tuple[ArchiveWriter[Any], ...] = (points, series, sketches)
    for w in writers:
        w.bind_topic(topic_id(settings.kafka_bootstrap, w.topic))
    port = settings.http_port if settings.http_port is not None else default_port
    own_points, own_series, own_sketches = Ownership(), Ownership(), Ownership()
    metrics = archive_metrics(objects, writers)  # held here: sources are weak refs
    process_sources().add(metrics)
    loops: list[ArchiveLoop[Any]] = [
        ArchiveLoop(points, settings, own_points),
        ArchiveLoop(series, settings, own_series),
        ArchiveLoop(sketches, settings, own_sketches),
    ]
    compactor = Compactor(
        catalog,
        Retention(settings.archive_retention_days * 86400, settings.retention_seconds()),
        row_group_rows=settings.archive_row_group_rows,
    )
    sketch_read = (ArchiveSketchReader(catalog), ServingGuard(own_sketches, sketches.coverage))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(
                ArchiveReader(catalog),
                own_points,
                sketches=sketch_read,
                gate=ReadGate(settings.archive_read_slots, settings.archive_read_wait_seconds),
            ),
            host=settings.http_host,
            port=port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    )
    failed = threading.Event()
    done = threading.Event()

    def consume(run: Callable[[], None]) -> None:
        try:
            run()
        except Exception:
            log.exception("consumer loop crashed")
            failed.set()
            server.should_exit = True

    tiers: tuple[tuple[ArchiveTierWriter[Any], Ownership], ...] = (
        (points, own_points),
        (sketches, own_sketches),
    )

    def compact_forever() -> None:
        interval = settings.archive_compact_interval_seconds
        while interval > 0 and not done.wait(interval):
            try:
                report = compactor.run()
                log.info("scheduled compaction: %s", report)
                for writer, own in tiers:
                    writer.refresh_oldest(own.partitions())
            except Exception:  # an S3 outage must not kill ingest; next round retries
                log.exception("scheduled compaction failed")

    def snapshot(writer: ArchiveTierWriter[Any], own: Ownership) -> Callable[[], Registration]:
        # Coverage and uploaded offsets as the registry wants them, per tier writer.
        def registration() -> Registration:
            partitions = own.partitions()
            durable = writer.durable_offsets()
            return Registration(
                kind=writer.kind,
                instance=settings.instance_name(writer.kind),
                address=settings.address(port),
                topic=writer.topic,
                partition_count=partition_counts[writer.topic],
                partitions=partitions,
                coverage=writer.coverage(partitions, int(time.time())),
                offsets={p: o for p, o in durable.items() if p in partitions},
                watermarks=as_registry(own.watermarks.snapshot()),
            )

        return registration

    heartbeats = [
        RegistryHeartbeat(
            Registry(settings.redis_url),  # each closes its own at stop
            snapshot(writer, own),
            interval=settings.registry_interval_seconds,
            ttl=settings.registry_ttl_seconds,
        )
        for writer, own in tiers
    ]
    threads = [
        threading.Thread(target=consume, args=(loop.run,), name=f"consumer-{name}")
        for name, loop in zip(("points", "series", "sketches"), loops, strict=True)
    ]
    threads.append(threading.Thread(target=compact_forever, name="compaction", daemon=True))
    for t in threads:
        t.start()
    for h in heartbeats:
        h.start()
    try:
        if not stopping.is_set():
            server.run()
    finally:
        done.set()
        for w in writers:
            w.close()
        for loop in loops:
            loop.stop()
        for t in threads[: len(loops)]:
            t.join(timeout=30.0)
        for h in heartbeats:
            h.stop()
        objects.close()
    log.info("%s stopped", settings.instance_name(points.kind))
    return 1 if failed.is_set() else 0
