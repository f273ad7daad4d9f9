"""Every service watches itself: Prometheus ``GET /metrics`` (docs/operations.md, "Metrics").

Pieces, each usable alone:

- :func:`instrument` puts :class:`HttpMetrics` (an ASGI middleware counting into
  :class:`HttpFamilies`) and the ``/metrics`` route on an app. Requests are counted by
  route *template* (``/api/v2/metrics/{name}/all-tags``), method and status, with a
  latency histogram by route and method; the raw path never becomes a label, so metric
  names, orgs and keys cannot leak into the metrics or blow up their cardinality.
- Values the services already keep (intake counters, cache stats, offsets, watermarks) are
  read at scrape time by a collector (:class:`Families`, :class:`FunctionCollector`)
  instead of being copied into gauges on a hot path: no per-point work.
- :class:`ConsumerMetrics` is what a consumer loop reports: apply latency, records applied,
  dead letters, lag per partition and watermark age.
- :class:`Cached` and :class:`Refreshed` bound the cost of scrape-time values that touch
  the disk or an object store.
- :class:`SelfScraper` turns the services' /metrics into Datadog v2 series posted to intake
  under an internal org, so Strata can be graphed and alerted on with Strata.

Registries: each app has its own (:func:`new_registry`), so several apps in one test
process never collide. A store builds its HTTP app and its consumer loop separately
(stores/runtime/service.py), so the loop's families go to the process-wide
:func:`process_sources`, which every store app serves; several loops of one process (the
archive runs two) merge into the same families, told apart by their labels.

The kernel imports no service package; services import this.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")

# No ``*_created`` series beside every counter and histogram: they double the series for a
# start time nobody graphs (process_start_time_seconds says it once).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: the route label of a request no route matched (404s of arbitrary paths)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: seconds; HTTP latencies from a health check (~1 ms) to a slow query (the 10 s budget)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: seconds; one consumer batch apply + make_durable (fsync), or one Kafka produce round trip
IO_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Source(Protocol):
    """Anything with a scrape-time ``collect()``."""

    def collect(self) -> Iterable[Metric]: ...


def new_registry() -> CollectorRegistry:
    """A registry with the standard process families (``process_*`` CPU, memory, open
    files; ``python_gc_*``; ``python_info``), read from /proc at scrape time."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# -- HTTP ------------------------------------------------------------------------------------


def route_template(scope: Scope) -> str:
    """The matched route's path template, :data:`UNMATCHED` when none matched.

    Starlette records the matched route in ``scope["route"]`` (a partial match, e.g. a
    405, counts as its route)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpFamilies:
    """``<prefix>_http_requests_total{method,route,status}`` and
    ``<prefix>_http_request_duration_seconds{method,route}`` (until the response is sent),
    registered in ``registry``.

    ``labels`` are constant labels added to both (e.g. ``kind`` of a store). Counted by
    :class:`HttpMetrics`, or directly by a route served before the framework's own
    dispatch (intake's series routes: intake/app.py).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        prefix: str,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        const = dict(labels or {})
        names = [*const, "method", "route"]
        self._const = tuple(const.values())
        self._requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests answered, by route template, method and status",
            [*names, "status"],
            registry=registry,
        )
        self._latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "time from request to the end of the response, by route template and method",
            names,
            registry=registry,
            buckets=HTTP_BUCKETS,
        )

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """One answered request; its route label is :func:`route_template` of ``scope``."""
        method = scope.get("method", "")
        labels = (*self._const, method if method in _METHODS else "other", route_template(scope))
        self._latency.labels(*labels).observe(seconds)
        self._requests.labels(*labels, str(status)).inc()


class HttpMetrics:
    """ASGI middleware counting every HTTP request into :class:`HttpFamilies`. An exception
    escaping the app is counted as a 500 and re-raised."""

    def __init__(self, app: ASGIApp, *, families: HttpFamilies) -> None:
        self.app = app
        self._families = families

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 500
            raise
        finally:
            self._families.observe(scope, status, time.perf_counter() - start)


def metrics_route(app: Any, registry: CollectorRegistry) -> None:
    """Mount ``GET /metrics``: ``registry`` in the Prometheus text format (0.0.4).

    A plain ``def``: the framework runs it in its thread pool, so collectors that touch the
    disk never block an event loop; collectors therefore copy what they read under the
    owner's lock or atomically (a ``dict(...)`` copy)."""

    def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def instrument(
    app: Any,
    prefix: str,
    *,
    registry: CollectorRegistry | None = None,
    labels: Mapping[str, str] | None = None,
    families: HttpFamilies | None = None,
) -> CollectorRegistry:
    """Add :class:`HttpMetrics` and ``GET /metrics`` to a FastAPI ``app``; return its
    registry (a :func:`new_registry` unless given) for the service's own collectors.
    ``families``: the HTTP families to count into, when the caller needs them too (made
    here, in the registry, from ``prefix`` and ``labels`` otherwise)."""
    reg = registry if registry is not None else new_registry()
    if families is None:
        families = HttpFamilies(reg, prefix, labels)
    app.add_middleware(HttpMetrics, families=families)
    metrics_route(app, reg)
    return reg


# -- scrape-time collectors ------------------------------------------------------------------


class FunctionCollector:
    """A collector whose families come from ``families()`` at every scrape."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return list(self._families())


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name, samples concatenated in order (the text format allows a name
    once); raise ``ValueError`` for one name with two types."""
    merged: dict[str, Metric] = {}
    for fam in families:
        have = merged.get(fam.name)
        if have is None:
            copy = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            copy.samples = list(fam.samples)
            merged[fam.name] = copy
        elif have.type != fam.type:
            raise ValueError(f"metric {fam.name} is both {have.type} and {fam.type}")
        else:
            have.samples.extend(fam.samples)
    return list(merged.values())


class Families:
    """Scrape-time sources whose families are merged by name.

    Sources are held weakly (a consumer loop that is gone stops reporting without being
    removed) and may also be removed explicitly. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.add(source)

    def remove(self, source: Source) -> None:
        with self._lock:
            self._sources.discard(source)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            sources = list(self._sources)
        return merge_families(fam for s in sources for fam in s.collect())


@functools.cache
def process_sources() -> Families:
    """The families every store app of this process serves (module docstring: why a
    process-wide meeting point rather than an argument)."""
    return Families()


def gauge(
    name: str, doc: str, labels: Sequence[str], values: Iterable[tuple[Sequence[str], float]]
) -> GaugeMetricFamily:
    """A gauge family from (label values, value) pairs."""
    fam = GaugeMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        fam.add_metric(list(label_values), value)
    return fam


def counter(
    name: str, doc: str, labels: Sequence[str], values: Iterable[tuple[Sequence[str], float]]
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) from (label values, value) pairs."""
    fam = CounterMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        fam.add_metric(list(label_values), value)
    return fam


# -- bounded scrape-time cost ----------------------------------------------------------------


class Cached(Generic[T]):
    """``compute()`` at most once per ``max_age`` seconds; thread-safe."""

    def __init__(
        self,
        compute: Callable[[], T],
        max_age: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = -float("inf")

    def get(self) -> T:
        with self._lock:
            now = self._clock()
            if self._value is None or now - self._at >= self._max_age:
                self._value = self._compute()
                self._at = now
            return self._value


class Refreshed(Generic[T]):
    """The last result of ``compute()``, recomputed in a daemon thread once older than
    ``max_age``: :meth:`get` never waits (an object store that retries for a minute must
    not hang the scrape). ``None`` until the first computation succeeded; a failure keeps
    the previous value and counts in :attr:`failures`."""

    def __init__(
        self,
        compute: Callable[[], T],
        max_age: float,
        *,
        name: str = "metrics-refresh",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._max_age = max_age
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = -float("inf")
        self._running: threading.Thread | None = None
        self.failures = 0

    def get(self) -> T | None:
        with self._lock:
            stale = self._clock() - self._at >= self._max_age
            if stale and self._running is None:
                self._running = threading.Thread(target=self._refresh, name=self._name, daemon=True)
                self._running.start()
            return self._value

    def wait(self, timeout: float) -> None:
        """Wait for a refresh in progress (tests)."""
        with self._lock:
            running = self._running
        if running is not None:
            running.join(timeout)

    def _refresh(self) -> None:
        try:
            value = self._compute()
        except Exception:  # a failed listing keeps the last value; counted, next scrape retries
            with self._lock:
                self.failures += 1
                self._at = self._clock()
                self._running = None
            return
        with self._lock:
            self._value = value
            self._at = self._clock()
            self._running = None


def dir_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist). Files deleted
    while walking (a RocksDB compaction) are skipped."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


# -- consumer loops --------------------------------------------------------------------------


class ConsumerMetrics:
    """What one consumer loop (one store kind, one topic) reports, read at scrape time.

    Families (prefix ``strata_store``; labels ``kind``, ``topic`` and, per partition,
    ``partition``):

    - ``_apply_duration_seconds`` histogram: ``apply`` + ``make_durable`` of one batch;
    - ``_records_applied_total``, ``_dead_letters_total`` counters;
    - ``_consumer_end_offset``, ``_consumer_next_offset``, ``_consumer_lag_messages``
      gauges per owned partition (:meth:`positions`; docs/operations.md says why the end
      offset comes from fetch responses and not from ListOffsets);
    - ``_watermark_age_seconds`` per partition with a heartbeat watermark: now minus the
      time through which the partition is durably complete.

    - ``_disk_bytes`` when ``disk`` names the store's RocksDB directory: its size, walked
      at most every :attr:`DISK_MAX_AGE` seconds.

    ``watermarks_ms`` returns partition -> watermark (ms); it is called at scrape time.
    The recording methods are called by the loop's thread only.
    """

    PREFIX = "strata_store"
    DISK_MAX_AGE = 5.0

    def __init__(
        self,
        kind: str,
        topic: str,
        watermarks_ms: Callable[[], Mapping[int, int]],
        *,
        disk: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._labels = (kind, topic)
        self._disk = None if disk is None else Cached(lambda: dir_size(disk), self.DISK_MAX_AGE)
        self._watermarks_ms = watermarks_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._records = 0
        self._dead_letters = 0
        self._ends: dict[int, int] = {}
        self._next: dict[int, int] = {}
        # Not registered anywhere: collect() below yields it with the other families.
        self._apply_parent = Histogram(
            f"{self.PREFIX}_apply_duration_seconds",
            "time in store.apply + make_durable per consumed batch",
            ["kind", "topic"],
            registry=None,
            buckets=IO_BUCKETS,
        )
        self._apply = self._apply_parent.labels(kind, topic)

    def applied(self, seconds: float, records: int) -> None:
        """One batch of ``records`` was applied and made durable in ``seconds``."""
        self._apply.observe(seconds)
        with self._lock:
            self._records += records

    def dead_lettered(self, count: int) -> None:
        with self._lock:
            self._dead_letters += count

    def positions(self, ends: Mapping[int, int], next_offsets: Mapping[int, int]) -> None:
        """Partition -> end offset (one past the last message in the log) and partition ->
        next offset the store will apply, as known now; partitions missing from one keep
        their previous value."""
        with self._lock:
            self._ends.update(ends)
            self._next.update(next_offsets)

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions left this instance: stop reporting them."""
        with self._lock:
            for p in partitions:
                self._ends.pop(p, None)
                self._next.pop(p, None)

    def lag(self) -> dict[int, int]:
        """Partition -> messages in the log not yet applied, where both ends are known."""
        with self._lock:
            return {
                p: max(0, end - self._next[p])
                for p, end in sorted(self._ends.items())
                if p in self._next
            }

    def collect(self) -> Iterator[Metric]:
        kind, topic = self._labels
        names = ("kind", "topic")
        per_partition = ("kind", "topic", "partition")
        with self._lock:
            records, dead = self._records, self._dead_letters
            ends, nexts = dict(self._ends), dict(self._next)
        lag = self.lag()
        now = self._clock()
        marks = dict(self._watermarks_ms())
        yield counter(
            f"{self.PREFIX}_records_applied",
            "records (messages) applied to the store",
            names,
            [((kind, topic), records)],
        )
        yield counter(
            f"{self.PREFIX}_dead_letters",
            "unreadable messages written to the dead-letter topic",
            names,
            [((kind, topic), dead)],
        )
        yield gauge(
            f"{self.PREFIX}_consumer_end_offset",
            "one past the last offset of the partition (fetch high watermark)",
            per_partition,
            [((kind, topic, str(p)), v) for p, v in sorted(ends.items())],
        )
        yield gauge(
            f"{self.PREFIX}_consumer_next_offset",
            "next offset of the partition the store will apply",
            per_partition,
            [((kind, topic, str(p)), v) for p, v in sorted(nexts.items())],
        )
        yield gauge(
            f"{self.PREFIX}_consumer_lag_messages",
            "messages in the partition not yet applied (end offset - next offset)",
            per_partition,
            [((kind, topic, str(p)), v) for p, v in lag.items()],
        )
        yield gauge(
            f"{self.PREFIX}_watermark_age_seconds",
            "now minus the heartbeat watermark: how far behind intake the durable data is",
            per_partition,
            [((kind, topic, str(p)), max(0.0, now - ms / 1000)) for p, ms in sorted(marks.items())],
        )
        yield from self._apply_parent.collect()
        if self._disk is not None:
            yield gauge(
                f"{self.PREFIX}_disk_bytes",
                "bytes of the store's RocksDB directory (SST files, WAL, manifests)",
                ("kind",),
                [((kind,), self._disk.get())],
            )


# -- Strata watching itself through Strata ---------------------------------------------------


def datadog_series(text: str, timestamp: int, tags: Sequence[str]) -> list[dict[str, Any]]:
    """Prometheus text -> Datadog v2 ``series`` entries, one per sample, at ``timestamp``.

    Every sample becomes a gauge (type 3) named like the sample (``..._total``,
    ``..._bucket``): counters keep their cumulative value, so graph them with
    ``per_second()`` or ``diff()``. Labels become ``key:value`` tags after ``tags``;
    non-finite values (a NaN hit ratio) are skipped, as intake would reject them."""
    out: list[dict[str, Any]] = []
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if not math.isfinite(sample.value):
                continue
            labels = [f"{k}:{v}" for k, v in sorted(sample.labels.items())]
            out.append(
                {
                    "metric": sample.name,
                    "type": 3,
                    "points": [{"timestamp": timestamp, "value": float(sample.value)}],
                    "tags": [*tags, *labels],
                }
            )
    return out


class SelfScraper:
    """Scrapes ``targets`` (service name -> base URL) and posts their samples to intake.

    :meth:`once` is one round (call it every ``interval`` seconds from a thread); a target
    that does not answer is skipped and counted in :attr:`failed_scrapes`, a refused post
    counts in :attr:`failed_posts`. Each sample is tagged ``service:<name>``."""

    def __init__(
        self,
        targets: Mapping[str, str],
        intake_url: str,
        api_key: str,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._targets = dict(targets)
        self._intake = intake_url.rstrip("/")
        self._key = api_key
        self._http = http
        self._clock = clock
        self.failed_scrapes = 0
        self.failed_posts = 0

    def once(self) -> int:
        """One round; the number of series intake accepted (0 when the post failed)."""
        now = int(self._clock())
        series: list[dict[str, Any]] = []
        for name, url in sorted(self._targets.items()):
            try:
                resp = self._http.get(f"{url.rstrip('/')}/metrics")
                resp.raise_for_status()
            except httpx.HTTPError:
                self.failed_scrapes += 1
                continue
            series += datadog_series(resp.text, now, [f"service:{name}"])
        if not series:
            return 0
        try:
            resp = self._http.post(
                f"{self._intake}/api/v2/series",
                json={"series": series},
                headers={"DD-API-KEY": self._key},
            )
        except httpx.HTTPError:
            self.failed_posts += 1
            return 0
        if resp.status_code != 202:
            self.failed_posts += 1
            return 0
        return len(series)
