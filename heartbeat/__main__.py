"""``python -m heartbeat``: the heartbeat emitter and the monitor evaluator in one process.

- the emitter posts a heartbeat to intake every ``STRATA_EMIT_INTERVAL_SECONDS`` with the
  reserved key ``STRATA_HEARTBEAT_API_KEY`` (strata up creates it; without one, no heartbeat
  is sent and every monitor stays "delayed": nothing is known to be complete);
- the evaluator judges every monitor over its newest complete window (heartbeat/gate.py
  gives "complete through"), and the webhook notifier delivers its transitions;
- ``GET /health`` and ``GET /v1/status`` (emitter counters, monitors held as delayed and
  why, pipeline lag per store and partition) on ``STRATA_HTTP_PORT`` (default 8102).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client.metrics_core import Metric

from heartbeat.emitter import Emitter
from heartbeat.evaluator import Evaluator, build_evaluator
from heartbeat.gate import PipelineGate
from heartbeat.settings import HeartbeatSettings
from query.stores_client import HttpStoreClient, RegistryView, kind_topics
from strata.observability import FunctionCollector, counter, gauge, instrument
from strata.registry import Registry, pipeline_lag

log = logging.getLogger("heartbeat")


def status_app(
    emitter: Emitter | None, evaluator: Evaluator, registry: Registry, settings: HeartbeatSettings
) -> FastAPI:
    app = FastAPI(title="Strata heartbeat", docs_url=None, redoc_url=None, openapi_url=None)

    def families() -> list[Metric]:
        sent = emitter.stats.sent if emitter is not None else 0
        failed = emitter.stats.failed if emitter is not None else 0
        return [
            counter("strata_heartbeat_sent", "heartbeats intake accepted", (), [((), sent)]),
            counter("strata_heartbeat_failed", "heartbeats not accepted", (), [((), failed)]),
            gauge(
                "strata_monitors_delayed",
                "monitors whose latest evaluation was held: their data is not complete yet",
                (),
                [((), len(evaluator.delayed()))],
            ),
        ]

    instrument(app, "strata_heartbeat").register(FunctionCollector(families))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "kind": "heartbeat"}

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        out: dict[str, Any] = {
            "emitter": None
            if emitter is None
            else {
                "sent": emitter.stats.sent,
                "failed": emitter.stats.failed,
                "last_error": emitter.stats.last_error,
                "interval_seconds": settings.emit_interval_seconds,
            },
            "monitors": {str(i): s.to_json() for i, s in sorted(evaluator.status().items())},
            "delayed": evaluator.delayed(),
        }
        try:
            now = time.time()
            out["lag"] = [
                {
                    "kind": r.kind,
                    "instance": r.instance,
                    "partition": r.partition,
                    "complete_through_ms": r.complete_through_ms,
                    "lag_seconds": r.lag_seconds,
                }
                for r in pipeline_lag(registry.discover(), now)
            ]
        except Exception as exc:  # the registry may be down; status still answers
            out["lag_error"] = f"{type(exc).__name__}: {exc}"
        return out

    return app


def main() -> None:
    settings = HeartbeatSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    registry = Registry(settings.redis_url)
    view = RegistryView(registry, settings.registry_cache_seconds, topics=kind_topics(settings))
    http = httpx.Client(timeout=settings.store_timeout_seconds)
    client = HttpStoreClient(view, http)
    gate = PipelineGate(
        view,
        point_tiers=settings.gate_point_tiers,
        sketch_tiers=settings.gate_sketch_tiers,
        on_error=lambda exc: log.warning("completeness unknown: %s", exc),
    )
    evaluator, store, notifier = build_evaluator(settings, client, gate)
    emitter = (
        Emitter(
            settings.intake_url,
            settings.heartbeat_api_key,
            interval_seconds=settings.emit_interval_seconds,
        )
        if settings.heartbeat_api_key
        else None
    )
    if emitter is None:
        log.warning("STRATA_HEARTBEAT_API_KEY is not set: no heartbeats, monitors stay delayed")
    server = uvicorn.Server(
        uvicorn.Config(
            status_app(emitter, evaluator, registry, settings),
            host=settings.http_host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    )

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=evaluator.run, args=(stop,), name="evaluator")]
    if emitter is not None:
        threads.append(threading.Thread(target=emitter.run, args=(stop,), name="emitter"))
    for t in threads:
        t.start()
    try:
        if not stop.is_set():
            server.run()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15.0)
        if emitter is not None:
            emitter.close()
        notifier.close()
        store.close()
        http.close()
        registry.close()


if __name__ == "__main__":
    main()
