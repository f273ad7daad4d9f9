"""The intake HTTP API: auth, body limits, parse, produce, answer (docs/intake.md).

Request flow: API key -> org (403 otherwise); the body is read with the wire limit enforced
while streaming (413); decompression and JSON parsing run on the event loop for a body of
the usual size and in a parse thread for a large one (400/413/415 on bad input); new
(series, bucket) pairs and the points are produced together, the points sharing messages
with requests that arrive within ``coalesce_ms`` (intake/coalesce.py), and the answer is
202 only once the broker acknowledged every message holding them (503 with Retry-After
otherwise). Keys are never logged; the org is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from intake.agent_sketches import parse_sketch_payload
from intake.batching import ParsedPayload
from intake.coalesce import Coalescer, Destination
from intake.counters import IntakeCounters
from intake.decode import V1_LIMITS, V2_LIMITS, BodyError, BodyLimits, check_wire_size, decode_body
from intake.distributions import ParsedDistributions, parse_distributions
from intake.heartbeats import HEARTBEAT_KEY, InFlight, heartbeat_emit_ms
from intake.identity import SeriesIdentities
from intake.messages import series_values, sketch_values
from intake.parse import PayloadError, load_json
from intake.producer import BrokerUnavailable, OutMessage, PartitionCounts, ReliableProducer
from intake.rejections import TimeWindow
from intake.series_tracker import SeriesTracker
from intake.settings import IntakeSettings
from intake.typed_parse import parse_v1_body, parse_v2_body
from strata.codec import HeartbeatMarker, PointBatch, SeriesBatch, encode_heartbeat
from strata.keys import KeysFileError, KeyStore
from strata.observability import FunctionCollector, HttpFamilies, instrument, new_registry
from strata.partitioning import partition_key
from strata.topics import ensure_topics

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Decompressed body, org, window, identity cache -> the request's batches.
Parser = Callable[[bytes, str, TimeWindow, SeriesIdentities], ParsedPayload]


class Forbidden(Exception):
    """Missing or unknown API key."""


class KeysUnavailable(Exception):
    """The keys file cannot be read (corrupt, unsupported version, unreadable)."""


@dataclass(frozen=True, slots=True)
class _Api:
    """What differs between v1 and v2."""

    limits: BodyLimits
    parse: Parser
    v1: bool


_V1 = _Api(V1_LIMITS, parse_v1_body, v1=True)
_V2 = _Api(V2_LIMITS, parse_v2_body, v1=False)


def _errors(status: int, *messages: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status, headers=headers)


class Intake:
    """The service behind the routes; owns the producer, tracker and counters."""

    def __init__(
        self,
        settings: IntakeSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.counters = IntakeCounters()
        self.keys = KeyStore(settings.keys_path)
        self.tracker = SeriesTracker(settings.announce_cache_size)
        # One per process, shared by the worker threads: normalise and hash a series once.
        self.identities = SeriesIdentities(settings.identity_cache_size)
        self._clock = clock
        self.producer = ReliableProducer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "linger.ms": settings.linger_ms,
                "compression.type": settings.compression,
                "queue.buffering.max.messages": settings.queue_max_messages,
                # Reconnect quickly once a restarted broker is back.
                "reconnect.backoff.max.ms": 1000,
            },
            settings.produce_timeout_seconds,
            on_replace=self._count_replacement,
            on_result=self.counters.produced,
        )
        self.partitions: PartitionCounts | None = None
        self._topics = (settings.topic_points, settings.topic_series, settings.topic_sketches)
        self.coalescer = Coalescer(
            self.producer.produce_all,
            window=settings.coalesce_ms / 1000,
            max_points=settings.coalesce_max_points,
            on_sent=self._count_sent,
        )
        self.inflight = InFlight()
        self._parse_limiter: CapacityLimiter | None = None

    def _count_sent(self, messages: int) -> None:
        self.counters.messages_produced += messages

    def _count_replacement(self) -> None:
        self.counters.producers_replaced += 1

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        counts = await run_in_threadpool(ensure_topics, self.settings)
        self.partitions = PartitionCounts(self.settings.kafka_bootstrap, counts)
        self.producer.start()

    async def _parse_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run the CPU-bound part of a request in one of ``parse_threads`` threads.

        Off the event loop, so a large body never stalls health checks and heartbeats; but
        not in the 40-thread default pool: parsing holds the GIL, and 40 threads trading
        it every switch interval (and starving the event loop that reads the sockets) cost
        as much as the parsing itself (docs/benchmarks.md: intake's CPU per point fell from
        5.2-8.8 to 4.5-6.0 s per 1 M points on strata up, the agent shape's median rate rose
        from 100 k to 149 k points/s)."""
        if self._parse_limiter is None:  # created on the event loop, by the first request
            self._parse_limiter = CapacityLimiter(self.settings.parse_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._parse_limiter)

    async def refresh_metadata_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metadata_refresh_seconds)
            if self.partitions is not None:
                await run_in_threadpool(self.partitions.refresh, self._topics)

    async def stop(self) -> None:
        await self.coalescer.close()
        await run_in_threadpool(self.producer.close)

    # --- requests ----------------------------------------------------------------------

    def org_for(self, request: Request) -> str:
        key = request.headers.get("dd-api-key") or request.query_params.get("api_key")
        try:
            org = self.keys.org_for_api_key(key)
        except KeysFileError as exc:
            # The key store retries the file on the next check; until then we cannot tell
            # customers apart, which is an outage, not their fault.
            log.error("keys file %s unreadable: %s", self.settings.keys_path, exc)
            raise KeysUnavailable from None
        if org is None:
            raise Forbidden
        return org

    def error_response(self, exc: Exception) -> Response | None:
        """The answer to an exception a request raised (counted), ``None`` if it is not
        one of intake's: an unexpected error stays a 500."""
        if isinstance(exc, Forbidden):
            self.counters.requests_refused[403] += 1
            return _errors(403, "Forbidden")
        retry = {"Retry-After": str(self.settings.retry_after_seconds)}
        if isinstance(exc, KeysUnavailable):
            self.counters.requests_refused[503] += 1
            return _errors(
                503, "Service unavailable, retry later: key store unreadable", headers=retry
            )
        if isinstance(exc, BodyError):
            self.counters.requests_refused[exc.status] += 1
            return _errors(exc.status, str(exc))
        if isinstance(exc, BrokerUnavailable):
            log.warning("503: %s", exc)
            self.counters.requests_refused[503] += 1
            return _errors(503, f"Service unavailable, retry later: {exc}", headers=retry)
        return None

    async def read_body(self, request: Request, limits: BodyLimits) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            check_wire_size(int(declared), limits)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            check_wire_size(len(body), limits)
        return bytes(body)

    def _decode_and_parse(
        self, api: _Api, org: str, body: bytes, encoding: str | None
    ) -> tuple[ParsedPayload, list[tuple[Destination, PointBatch]]]:
        """Everything CPU-bound about a request (in a parse thread)."""
        return self._parse_and_place(api, org, decode_body(body, encoding, api.limits))

    def _parse_and_place(
        self, api: _Api, org: str, raw: bytes
    ) -> tuple[ParsedPayload, list[tuple[Destination, PointBatch]]]:
        window = TimeWindow(
            int(self._clock()),
            self.settings.late_window_for(org),
            self.settings.future_window_seconds,
        )
        parsed = api.parse(raw, org, window, self.identities)
        placed = []
        if parsed.batches:
            assert self.partitions is not None
            topic = self.settings.topic_points
            for b in parsed.batches:
                key = partition_key(org, b.points.metric)
                placed.append(((topic, self.partitions.place(topic, key), key), b.points))
        return parsed, placed

    async def _parse_series(
        self, api: _Api, org: str, body: bytes, encoding: str | None
    ) -> tuple[ParsedPayload, list[tuple[Destination, PointBatch]]]:
        """A series body of the usual size is decompressed and parsed right here, on the
        event loop: handing it to the parse thread and the result back costs two thread
        wake-ups, more than its parse (docs/intake.md, "Threads"). Larger bodies, as
        received or once decompressed (decompression is bounded by the API's limits), go
        to the parse thread."""
        inline = self.settings.inline_parse_max_bytes
        if len(body) > inline:
            return await self._parse_thread(self._decode_and_parse, api, org, body, encoding)
        raw = decode_body(body, encoding, api.limits)
        if len(raw) > inline:
            return await self._parse_thread(self._parse_and_place, api, org, raw)
        return self._parse_and_place(api, org, raw)

    async def submit(self, api: _Api, request: Request) -> Response:
        org = self.org_for(request)
        if org == self.settings.heartbeat_org:
            return await self.heartbeat(api, request)
        token = self.inflight.start(self._clock())
        try:
            return await self._submit(api, request, org)
        finally:
            self.inflight.end(token)

    async def heartbeat(self, api: _Api, request: Request) -> Response:
        """Write a heartbeat marker to every partition of every topic (docs/heartbeats.md).
        The body is an ordinary series payload whose first point's value is the emitter's
        send time in ms (the emitter's clock, for end-to-end lag); the marker's time is
        when every earlier submission had been acknowledged (intake/inflight.py)."""
        now = self._clock()
        marker_ms = int(self.inflight.complete_before(now) * 1000)
        body = await self.read_body(request, api.limits)
        try:
            doc = load_json(decode_body(body, request.headers.get("content-encoding"), api.limits))
            emit_ms = heartbeat_emit_ms(doc, default=int(now * 1000))
        except PayloadError as exc:
            return _errors(400, f"heartbeat: {exc}")
        assert self.partitions is not None
        value = encode_heartbeat(HeartbeatMarker(marker_ms, emit_ms))
        messages = [
            OutMessage(topic, p, HEARTBEAT_KEY, value)
            for topic in self._topics
            for p in range(self.partitions.get(topic))
        ]
        await self.producer.produce_all(messages)
        self.counters.heartbeats += 1
        if api.v1:
            return JSONResponse({"status": "ok"}, status_code=202)
        return JSONResponse({"errors": []}, status_code=202)

    async def _submit(self, api: _Api, request: Request, org: str) -> Response:
        body = await self.read_body(request, api.limits)
        try:
            parsed, points = await self._parse_series(
                api, org, body, request.headers.get("content-encoding")
            )
        except PayloadError as exc:
            log.info("org %s: 400 %s", org, str(exc)[:300])
            self.counters.requests_refused[400] += 1
            return _errors(400, str(exc))
        announcements, messages = self._announcements(org, [b.series for b in parsed.batches])
        # Points messages are shared with concurrent requests (intake/coalesce.py); this
        # returns once the broker acknowledged every one holding this request's points.
        await self.coalescer.send(points, messages)
        # Only now: a failed request must not suppress the next announcement.
        for s in announcements:
            self.tracker.mark(s)
        self.counters.points_accepted += parsed.accepted
        self.counters.points_rejected.update(parsed.rejected_by_reason())
        if api.v1:
            # Never an "errors" key on v1: the datadog package treats it as failure.
            return JSONResponse({"status": "ok"}, status_code=202)
        return JSONResponse({"errors": parsed.messages()}, status_code=202)

    def _announcements(
        self, org: str, touched: list[SeriesBatch]
    ) -> tuple[list[SeriesBatch], list[OutMessage]]:
        """The (series, bucket) rows not announced yet, and their series-topic messages."""
        announcements = []
        for batch in touched:
            new = self.tracker.unannounced(batch)
            if new is not None:
                announcements.append(new)
        messages: list[OutMessage] = []
        if announcements:
            assert self.partitions is not None
            topic = self.settings.topic_series
            for s in announcements:
                key = partition_key(org, s.metric)
                partition = self.partitions.place(topic, key)
                for value in series_values(s):
                    messages.append(OutMessage(topic, partition, key, value))
        return announcements, messages

    # --- distributions (intake/distributions.py) ---------------------------------------

    def _parse_distributions(
        self, org: str, body: bytes, encoding: str | None, agent: bool = False
    ) -> tuple[ParsedDistributions, list[OutMessage]]:
        """Worker thread: decompress, parse, fold values into sketches (or convert the
        agent's, ``agent``: a protobuf ``SketchPayload``), encode."""
        raw = decode_body(body, encoding, V1_LIMITS)
        window = TimeWindow(
            int(self._clock()),
            self.settings.late_window_for(org),
            self.settings.future_window_seconds,
        )
        if agent:  # POST /api/beta/sketches (intake/agent_sketches.py)
            parsed = parse_sketch_payload(raw, org, window, self.identities)
        else:
            parsed = parse_distributions(load_json(raw), org, window, self.identities)
        messages = []
        if parsed.batches:
            assert self.partitions is not None
            topic = self.settings.topic_sketches
            for b in parsed.batches:
                key = partition_key(org, b.sketches.metric)
                partition = self.partitions.place(topic, key)
                for value in sketch_values(b.sketches):
                    messages.append(OutMessage(topic, partition, key, value))
        return parsed, messages

    async def submit_distributions(self, request: Request, agent: bool = False) -> Response:
        """``POST /api/v1/distribution_points`` (or, ``agent``, ``POST /api/beta/sketches``):
        202 ``{"status": "ok"}`` once the broker acknowledged the sketches and the series
        announcements (docs/intake.md)."""
        org = self.org_for(request)
        if org == self.settings.heartbeat_org:
            return _errors(400, "heartbeat keys submit series, not distribution points")
        token = self.inflight.start(self._clock())
        try:
            body = await self.read_body(request, V1_LIMITS)
            try:
                parsed, sketch_messages = await self._parse_thread(
                    self._parse_distributions,
                    org,
                    body,
                    request.headers.get("content-encoding"),
                    agent,
                )
            except PayloadError as exc:
                log.info("org %s: 400 %s", org, str(exc)[:300])
                self.counters.requests_refused[400] += 1
                return _errors(400, str(exc))
            touched = [b.series for b in parsed.batches]
            announcements, messages = self._announcements(org, touched)
            messages.extend(sketch_messages)
            await self.producer.produce_all(messages)
            for s in announcements:
                self.tracker.mark(s)
            self.counters.messages_produced += len(messages)
            self.counters.points_accepted += parsed.points
            self.counters.points_rejected.update(parsed.rejected_by_reason())
            # Like /api/v1/series: never an "errors" key (the datadog package fails on it).
            return JSONResponse({"status": "ok"}, status_code=202)
        finally:
            self.inflight.end(token)


# The exceptions Intake.error_response answers (FastAPI needs them by class).
_REFUSALS: tuple[type[Exception], ...] = (Forbidden, KeysUnavailable, BodyError, BrokerUnavailable)
# What a directly served route does with a request.
Handler = Callable[[Request], Awaitable[Response]]


class IntakeApp(FastAPI):
    """FastAPI, with the write routes' POSTs served before FastAPI's own dispatch.

    Between uvicorn and an endpoint, FastAPI passes a request through about ten layers (its
    middlewares for body limits, telemetry, server errors, exceptions and exit stacks, the
    router, dependency solving). Together they cost more CPU per request than parsing a
    1 000-point body (docs/intake.md, "Direct routes"). Writes are what intake serves, so a
    POST to a path in :attr:`direct` goes straight to its handler, with the same error
    answers (:meth:`Intake.error_response`), counted in the same HTTP families under the
    same route label. Everything else, a GET on a write route's path (405) included, goes
    through FastAPI. An unexpected exception escapes to the server, which answers 500.
    """

    def __init__(self, intake: Intake, http: HttpFamilies, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state.intake = intake
        self._intake = intake
        self._http = http
        #: path -> (the declared route, for the metrics' route label; its handler)
        self.direct: dict[str, tuple[BaseRoute, Handler]] = {}

    def serve_directly(self, path: str, handler: Handler) -> None:
        """Serve POSTs to ``path``, a route declared on this app, with ``handler``."""
        route = next(r for r in self.routes if getattr(r, "path", None) == path)
        self.direct[path] = (route, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            direct = self.direct.get(scope["path"])
            if direct is not None:
                await self._serve(direct, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(
        self, direct: tuple[BaseRoute, Handler], scope: Scope, receive: Receive, send: Send
    ) -> None:
        route, handler = direct
        scope["app"] = self
        scope["route"] = route  # as Starlette's router records it: the route label
        start = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(Request(scope, receive))
            except Exception as exc:
                refused = self._intake.error_response(exc)
                if refused is None:
                    raise
                response = refused
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self._http.observe(scope, status, time.perf_counter() - start)


def create_app(settings: IntakeSettings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The ASGI app; topics are ensured and the producer started in its lifespan."""
    intake = Intake(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await intake.start()
        refresher = asyncio.create_task(intake.refresh_metadata_forever())
        try:
            yield
        finally:
            refresher.cancel()
            await intake.stop()

    registry = new_registry()
    http = HttpFamilies(registry, "strata_intake")
    app = IntakeApp(
        intake, http, title="Strata intake", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    # GET /metrics: requests by route and status, and the counters (docs/operations.md).
    instrument(app, "strata_intake", registry=registry, families=http)
    registry.register(FunctionCollector(intake.counters.families))

    async def refused(_request: Request, exc: Exception) -> Response:
        response = intake.error_response(exc)
        assert response is not None  # registered for intake's own exceptions only
        return response

    for refusal in _REFUSALS:
        app.add_exception_handler(refusal, refused)

    @app.post("/api/v2/series")
    async def series_v2(request: Request) -> Response:
        return await intake.submit(_V2, request)

    @app.post("/api/v1/series")
    async def series_v1(request: Request) -> Response:
        return await intake.submit(_V1, request)

    @app.post("/api/v1/distribution_points")
    async def distribution_points(request: Request) -> Response:
        return await intake.submit_distributions(request)

    @app.post("/api/beta/sketches")
    async def agent_sketches(request: Request) -> Response:
        return await intake.submit_distributions(request, agent=True)

    # The writes' POSTs never reach the routes above through FastAPI (IntakeApp): they
    # name the route for the metrics and answer 405 to other methods.
    app.serve_directly("/api/v2/series", series_v2)
    app.serve_directly("/api/v1/series", series_v1)
    app.serve_directly("/api/v1/distribution_points", distribution_points)
    app.serve_directly("/api/beta/sketches", agent_sketches)

    @app.get("/api/v1/validate")
    async def validate(request: Request) -> Response:
        intake.org_for(request)
        return JSONResponse({"valid": True})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "kind": "intake"})

    return app
