"""``python -m query``: serve the query API with settings from ``STRATA_*`` variables."""

from __future__ import annotations

import logging

import httpx
import uvicorn

from query.app import create_app
from query.cache import CachedHttpStoreClient, SegmentCache, stats_router
from query.metadata_writer import MetadataWriter
from query.monitor_store import MonitorStore
from query.routes_monitors import monitor_router
from query.settings import QuerySettings
from query.stores_client import RegistryView, StoreUnavailable, kind_topics
from strata.allocator import tune_service_malloc
from strata.keys import KeyStore
from strata.registry import Registry

log = logging.getLogger("query")


def main() -> None:
    settings = QuerySettings.load()
    logging.basicConfig(level=settings.log_level)
    tune_service_malloc(log)  # result-sized columns kept for the next read (strata/allocator.py)
    registry = Registry(settings.redis_url)
    view = RegistryView(registry, settings.registry_cache_seconds, topics=kind_topics(settings))
    http = httpx.Client(timeout=settings.store_timeout_seconds)
    cache = (
        SegmentCache.from_url(
            settings.cache_url,
            timeout_seconds=settings.cache_timeout_seconds,
            settle_seconds=settings.cache_settle_seconds,
            ttl_seconds=settings.cache_ttl_seconds,
            retry_seconds=settings.cache_retry_seconds,
        )
        if settings.cache_enabled
        else None
    )
    client = CachedHttpStoreClient(
        view,
        http,
        coverage_margin_seconds=settings.coverage_margin_seconds,
        segment_cache=cache,
    )
    client.metadata_writer = MetadataWriter(settings.kafka_bootstrap, settings.topic_series)
    try:
        # Seed the remembered tier histories from whatever is registered now, so a tier
        # restarting right after this process starts is not taken for "no history".
        client.remember_coverage()
    except StoreUnavailable as exc:
        logging.getLogger(__name__).warning("tier coverage not seeded: %s", exc)
    keys = KeyStore(settings.keys_path)
    app = create_app(settings, client, keys)
    app.include_router(stats_router(cache))
    # Monitors live in Redis (the registry's unless STRATA_MONITORS_REDIS_URL is set): the
    # evaluator (python -m heartbeat) reads them there and writes their states back.
    monitors = MonitorStore.from_url(settings.monitors_url)
    app.include_router(
        monitor_router(monitors, keys, retry_after_seconds=settings.retry_after_seconds)
    )
    try:
        uvicorn.run(
            app,
            host=settings.http_host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            # Access lines would carry api_key/application_key query parameters: keys are
            # never logged.
            access_log=False,
        )
    finally:
        http.close()
        registry.close()
        monitors.close()
        client.metadata_writer.close()
        if cache is not None:
            cache.close()


if __name__ == "__main__":
    main()
