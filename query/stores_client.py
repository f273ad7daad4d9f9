"""Clients to the stores' internal read APIs (docs/architecture.md), routed by the registry.

:class:`StoreClient` is the contract the planner uses; :class:`HttpStoreClient` implements
it over HTTP, discovering instances in the Redis registry. Failures are split in two:
:class:`StoreUnavailable` (nobody to ask or nobody answers: retry later, HTTP 503) and
:class:`StoreReplyError` (a store answered something unusable: HTTP 502).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import redis

from query.fanout import parallel, timeout_for, warn
from query.history import TierHistory, parse_coverage
from query.metadata_writer import MetadataWriteFailed, MetadataWriter
from query.routing import NoOwner, owner
from query.segments import TIER_ORDER, TierSource
from strata.codec import merge_metadata
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from strata.rollup import Rollups
from strata.settings import CommonSettings
from strata.sketch import SketchBatch, SketchParams
from strata.sketch_codec import UnreadableSketch, decode_batch

Sids = npt.NDArray[np.uint64]

#: registry kind of each tier's sketch store (stores/sketches/: a second consumer loop of
#: the RAM and rocks processes; stores/archive/sketches.py: a third loop of the archive's)
SKETCH_KINDS: dict[str, str] = {
    "ram": "ram-sketches",
    "rocks": "rocks-sketches",
    "archive": "archive-sketches",
}
_POINT_KINDS: dict[str, str] = {tier: tier for tier in TIER_ORDER}

ARROW_STREAM = "application/vnd.apache.arrow.stream"


class StoreUnavailable(RuntimeError):
    """No store instance can answer right now (none registered, or unreachable)."""


class StoreReplyError(RuntimeError):
    """A store answered with an error status or a body that breaks the contract."""


# How long a metadata PUT waits for the owning tag index to show the update.
METADATA_VISIBLE_SECONDS = 5.0


class StoreServerError(StoreReplyError):
    """A store answered 5xx (other than 503): it is failing, so a point read falls back to
    the next tier; anything else still answers 502."""


@dataclass(frozen=True, slots=True)
class PointColumns:
    """Points as equal-length columns (sorted by (sid, ts) when they come from a store)."""

    sid: Sids
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> PointColumns:
        return cls(np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE))


class StoreClient(Protocol):
    """What the planner needs from the stores. Every call is scoped to one org."""

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids:
        """Sorted sids of (org, metric) active in [start, end] matching the filters."""
        ...

    def lookup(self, org: str, metric: str, sids: Sids) -> dict[int, tuple[str, ...]]:
        """sid -> canonical tags for the given sids of (org, metric); unknown sids omitted."""
        ...

    def resolve_filter(
        self, org: str, metric: str, start: int, end: int, tree: dict[str, Any]
    ) -> Sids:
        """Sorted sids of (org, metric) active in [start, end] matching a filter tree
        (``{"op": "all"|"tag"|"wildcard"|"and"|"or"|"not", ...}``, docs/architecture.md)."""
        ...

    def series_types(self, org: str, metric: str, sids: Sids) -> dict[int, str]:
        """sid -> metric type label (gauge, count, rate) as the tag index knows it."""
        ...

    def tier_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        """The partition of ``org|metric`` (None if no point store is registered at all) and,
        per point tier that has an instance owning it, that instance and its coverage."""
        ...

    def read_tier(
        self, source: TierSource, sids: Sids, start: int, end: int, resolution: str
    ) -> PointColumns | Rollups:
        """The point read API of ``source``: points (``raw``) or rollups (``1m``/``1h``) of
        ``sids`` in [start, end]. Raises :class:`StoreUnavailable` (unreachable, 503) or
        :class:`StoreServerError` (5xx), on which the planner falls back to the next tier,
        and :class:`StoreReplyError` for answers breaking the contract."""
        ...

    def list_metrics(self, org: str, start: int) -> list[str]:
        """Names of the org's metrics active since ``start``, sorted and deduplicated."""
        ...

    def metric_tags(self, org: str, metric: str, start: int) -> list[str]:
        """Tags of (org, metric) seen since ``start``."""
        ...


@runtime_checkable
class SketchClient(Protocol):
    """The sketch tiers of distribution metrics (docs/query.md, "Distributions"), routed
    and stitched like the point tiers."""

    def sketch_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        """As :meth:`StoreClient.tier_sources`, for the sketch stores: ``TierSource.tier``
        is the tier (``ram``, ``rocks``, ``archive``) whose sketch store owns the partition."""
        ...

    def read_sketches(
        self,
        source: TierSource,
        sids: Sids,
        start: int,
        end: int,
        resolution: str,
        step: int | None = None,
    ) -> SketchBatch:
        """``POST /v1/sketches/read`` of ``source``: one row per (sid, bucket of the
        resolution) whose bucket start is in [start, end], merged further per (sid,
        ``step`` bucket) when ``step`` is given (a multiple of the resolution's step; the
        row's time is then its ``step`` bucket start). Raises like
        :meth:`StoreClient.read_tier`."""
        ...


class Discovery(Protocol):
    """The part of :class:`strata.registry.Registry` the query service uses."""

    def discover(self, kind: str | None = None) -> list[Registration]: ...


def kind_topics(settings: CommonSettings) -> dict[str, str]:
    """The topic each registry kind must consume (for :class:`RegistryView`)."""
    topics = {kind: settings.topic_points for kind in TIER_ORDER}
    topics.update({kind: settings.topic_series for kind in ("tags", "inverted")})
    topics.update({kind: settings.topic_sketches for kind in SKETCH_KINDS.values()})
    return topics


class RegistryView:
    """Registry reads cached for ``ttl`` seconds, so one query costs one Redis round trip
    at most (instances refresh their entries every 2 s, so a second of staleness is fine)."""

    def __init__(
        self,
        registry: Discovery,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        topics: Mapping[str, str] | None = None,
    ) -> None:
        """``topics`` maps a kind to the topic its instances must consume: instances of
        another pipeline sharing the same Redis (other topic names) are never used."""
        self._registry = registry
        self._ttl = ttl
        self._clock = clock
        self._topics = dict(topics or {})
        self._cache: dict[str, tuple[float, list[Registration]]] = {}

    def topic(self, kind: str) -> str | None:
        """The topic instances of ``kind`` must consume, None when not filtered."""
        return self._topics.get(kind)

    def instances(self, kind: str) -> list[Registration]:
        now = self._clock()
        hit = self._cache.get(kind)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            found = self._registry.discover(kind)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"service registry unreachable: {exc}") from exc
        topic = self._topics.get(kind)
        if topic is not None:
            found = [r for r in found if r.topic == topic]
        self._cache[kind] = (now, found)
        return found


class HttpStoreClient:
    """:class:`StoreClient` over the stores' HTTP read APIs."""

    #: writes metric metadata through the series topic (set by query/__main__.py)
    metadata_writer: MetadataWriter | None = None

    def __init__(
        self,
        view: RegistryView,
        http: httpx.Client,
        *,
        coverage_margin_seconds: int = 0,
        clock: Callable[[], float] = time.time,
        history: TierHistory | None = None,
    ) -> None:
        """``history`` is what this process remembers of the point tiers' coverage (a new,
        empty one by default); :meth:`remember_coverage` seeds it at start."""
        self._view = view
        self._http = http
        self._margin = coverage_margin_seconds
        self._clock = clock
        self._history = history if history is not None else TierHistory()
        read_timeout = http.timeout.read
        self._timeout = float(read_timeout) if read_timeout is not None else 10.0

    def remember_coverage(self) -> None:
        """Record the coverage every registered point-tier instance advertises now (called
        once at start, then on every query). Raises :class:`StoreUnavailable` when the
        registry is unreachable."""
        for kind in (*TIER_ORDER, *SKETCH_KINDS.values()):
            self._history.observe_registrations(self._view.instances(kind))

    # -- plumbing --------------------------------------------------------------------

    def _owner(self, kind: str, org: str, metric: str) -> tuple[Registration, int]:
        """The index instance owning ``org|metric``'s partition, once it has caught up on
        it: an instance still replaying the partition (just assigned after a rebalance or a
        crash) advertises no coverage for it and would answer with part of the series.
        Returns the instance and the partition (sent along: the instance re-checks it)."""
        try:
            reg = owner(self._view.instances(kind), kind, org, metric)
        except NoOwner as exc:
            raise StoreUnavailable(str(exc)) from exc
        partition = partition_for(partition_key(org, metric), reg.partition_count)
        if partition not in reg.coverage:
            raise StoreUnavailable(
                f"{kind} store {reg.instance} is still catching up on partition {partition} "
                f"(metric {metric!r}); retry shortly"
            )
        return reg, partition

    def _request(self, reg: Registration, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = reg.address.rstrip("/") + path
        # Capped by the request's time budget (query/fanout.py): raises BudgetExceeded
        # instead of starting a call that has no time left.
        timeout = timeout_for(self._timeout)
        try:
            resp = self._http.request(method, url, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(
                f"{reg.kind} store {reg.instance} at {reg.address} unreachable: {exc}"
            ) from exc
        if resp.status_code == 503:
            raise StoreUnavailable(f"{reg.kind} store {reg.instance} is not ready")
        if resp.status_code >= 500:
            raise StoreServerError(
                f"{reg.kind} store {reg.instance} answered {resp.status_code} to {path}: "
                f"{resp.text[:200]}"
            )
        if resp.status_code != 200:
            raise StoreReplyError(
                f"{reg.kind} store {reg.instance} answered {resp.status_code} to {path}: "
                f"{resp.text[:200]}"
            )
        return resp

    def _post_json(self, reg: Registration, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._request(
            reg,
            "POST",
            path,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )

    @staticmethod
    def _json(reg: Registration, resp: httpx.Response) -> Any:
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise StoreReplyError(f"{reg.kind} store {reg.instance} sent invalid JSON") from exc

    # -- StoreClient -----------------------------------------------------------------

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
    ) -> Sids:
        reg, partition = self._owner("inverted", org, metric)
        body = {
            "org": org,
            "metric": metric,
            "from": start,
            "to": end,
            "include": list(include),
            "exclude": list(exclude),
            "partition": partition,
        }
        raw = self._post_json(reg, "/v1/resolve", body).content
        if len(raw) % 8:
            raise StoreReplyError(f"inverted store {reg.instance} sent {len(raw)} bytes of sids")
        return np.frombuffer(raw, dtype="<u8").astype(SID_DTYPE)

    def resolve_filter(
        self, org: str, metric: str, start: int, end: int, tree: dict[str, Any]
    ) -> Sids:
        reg, partition = self._owner("inverted", org, metric)
        body = {
            "org": org,
            "metric": metric,
            "from": start,
            "to": end,
            "filter": tree,
            "partition": partition,
        }
        raw = self._post_json(reg, "/v1/resolve", body).content
        if len(raw) % 8:
            raise StoreReplyError(f"inverted store {reg.instance} sent {len(raw)} bytes of sids")
        return np.frombuffer(raw, dtype="<u8").astype(SID_DTYPE)

    def _lookup(self, org: str, metric: str, sids: Sids) -> list[dict[str, Any]]:
        reg, partition = self._owner("tags", org, metric)
        body = {"org": org, "sids": sids.tolist(), "partition": partition}
        data = self._json(reg, self._post_json(reg, "/v1/series/lookup", body))
        try:
            rows = [s for s in data["series"] if s.get("metric", metric) == metric]
            for s in rows:
                s["sid"] = int(s["sid"])
                s["tags"] = tuple(str(t) for t in s["tags"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreReplyError(f"tags store {reg.instance} sent a malformed lookup") from exc
        return rows

    def lookup(self, org: str, metric: str, sids: Sids) -> dict[int, tuple[str, ...]]:
        if sids.size == 0:
            return {}
        return {s["sid"]: s["tags"] for s in self._lookup(org, metric, sids)}

    def series_types(self, org: str, metric: str, sids: Sids) -> dict[int, str]:
        if sids.size == 0:
            return {}
        return {s["sid"]: str(s.get("type", "gauge")) for s in self._lookup(org, metric, sids)}

    def tier_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        """Per point tier, its owner of the partition and coverage. A tier advertising
        nothing now (no owner registered, or catching up) comes with the coverage start
        this process last saw it advertise, if any, so its history is not mistaken for
        time before history (docs/architecture.md, "Planner: stitching tiers")."""
        return self._sources(org, metric, _POINT_KINDS)

    def sketch_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        return self._sources(org, metric, SKETCH_KINDS)

    def _sources(
        self, org: str, metric: str, kinds: Mapping[str, str]
    ) -> tuple[int | None, list[TierSource]]:
        """Per tier of ``kinds`` (tier -> registry kind of its stores), as
        :meth:`tier_sources` describes."""
        key = partition_key(org, metric)
        partition: int | None = None
        sources: list[TierSource] = []
        absent: list[tuple[str, str]] = []
        now = self._clock()
        for tier, kind in kinds.items():
            instances = self._view.instances(kind)
            self._history.observe_registrations(instances)
            try:
                reg = owner(instances, kind, org, metric)
            except NoOwner as exc:
                partition = exc.partition if partition is None else partition
                absent.append((tier, kind))
                continue
            partition = partition_for(key, reg.partition_count)
            cov = parse_coverage(reg.coverage.get(partition))
            if cov is None:
                remembered = self._history.lo(kind, partition, reg.topic)
                sources.append(
                    TierSource(
                        tier, reg.instance, reg.address, None, remembered, partition=partition
                    )
                )
                continue
            if tier == "ram":
                # RAM's lower bound is ``now - window``: it moved on since the entry was
                # published (and keeps moving during the read), so the oldest seconds it
                # advertised may be evicted already. Older tiers serve those.
                lo = cov[0] + int(max(0.0, now - reg.updated)) + self._margin
                cov = (lo, cov[1]) if lo <= cov[1] else None
            sources.append(TierSource(tier, reg.instance, reg.address, cov, partition=partition))
        if partition is not None:
            for tier, kind in absent:
                remembered = self._history.lo(kind, partition, self._view.topic(kind))
                if remembered is not None:
                    sources.append(TierSource(tier, "", "", None, remembered))
        return partition, sources

    def read_tier(
        self, source: TierSource, sids: Sids, start: int, end: int, resolution: str
    ) -> PointColumns | Rollups:
        if sids.size == 0:
            return PointColumns.empty() if resolution == "raw" else Rollups.empty()
        body: dict[str, Any] = {"sids": sids.tolist(), "from": start, "to": end}
        if resolution != "raw":
            # Omitted for raw (its default) so stores predating resolutions keep answering.
            body["resolution"] = resolution
        if source.partition is not None:
            body["partition"] = source.partition
        reg = Registration(
            kind=source.tier, instance=source.instance, address=source.address, topic=""
        )
        raw = self._post_json(reg, "/v1/points/read", body).content
        what = f"{source.tier} store {source.instance}"
        if resolution == "raw":
            return decode_points(raw, source=what)
        return decode_rollups(raw, source=what)

    def read_sketches(
        self,
        source: TierSource,
        sids: Sids,
        start: int,
        end: int,
        resolution: str,
        step: int | None = None,
    ) -> SketchBatch:
        if sids.size == 0:
            return SketchBatch.empty(SketchParams())
        body: dict[str, Any] = {
            "sids": sids.tolist(),
            "from": start,
            "to": end,
            "resolution": resolution,
        }
        if step is not None:
            body["step"] = step
        if source.partition is not None:
            body["partition"] = source.partition
        kind = SKETCH_KINDS.get(source.tier, source.tier)
        reg = Registration(kind=kind, instance=source.instance, address=source.address, topic="")
        raw = self._post_json(reg, "/v1/sketches/read", body).content
        try:
            return decode_batch(raw)
        except UnreadableSketch as exc:
            raise StoreReplyError(
                f"{kind} store {source.instance} sent an unreadable sketch batch: {exc.reason}"
            ) from exc

    def fan_out(
        self, kind: str, path: str, params: dict[str, Any], what: str
    ) -> list[tuple[Registration, Any, set[int]]]:
        """GET ``path`` from every instance of ``kind`` in parallel and return, per instance
        that answered, its JSON answer and the partitions it serves: those it owns and has
        caught up on. Callers keep only what belongs to those partitions; an instance may
        still hold data of partitions that moved away, and that data is stale.

        Instances that fail, and partitions nobody serves, are recorded as warnings
        (query/fanout.py): the caller's answer is partial, and says so. Raises
        :class:`StoreUnavailable` when no instance answers at all."""
        instances = self._view.instances(kind)
        if not instances:
            raise StoreUnavailable(f"no {kind} store instance is registered (pipeline starting?)")

        def call(reg: Registration) -> Any:
            return self._json(reg, self._request(reg, "GET", path, params=params))

        results = parallel([functools.partial(call, reg) for reg in instances])
        answers: list[tuple[Registration, Any, set[int]]] = []
        failures: list[Exception] = []
        named: set[int] = set()
        for reg, result in zip(instances, results, strict=True):
            # Down or failing (5xx): the others still answer. An answer breaking the
            # contract (bad body, 4xx) fails the request below: that is a bug, not an outage.
            if isinstance(result, StoreUnavailable | StoreServerError):
                failures.append(result)
                named.update(reg.partitions)
                warn(
                    f"{what} is partial: {kind} store {reg.instance} "
                    f"(partitions {_numbers(reg.partitions)}) did not answer: {result}"
                )
                continue
            if isinstance(result, Exception):
                raise result
            answers.append((reg, result, set(reg.partitions) & set(reg.coverage)))
        if not answers:
            raise StoreUnavailable(f"no {kind} store instance answered: {failures[0]}")
        count = max(reg.partition_count for reg in instances)
        served = set().union(*(parts for _, _, parts in answers))
        unserved = set(range(count)) - served - named
        if unserved:
            warn(
                f"{what} is partial: no live {kind} store instance serves partitions "
                f"{_numbers(unserved)} (unowned, or the owner is still catching up)"
            )
        return answers

    def list_metrics(self, org: str, start: int) -> list[str]:
        names: set[str] = set()
        answers = self.fan_out("tags", "/v1/metrics", {"org": org, "from": start}, "metric list")
        for reg, data, served in answers:
            try:
                found = [str(m) for m in data["metrics"]]
            except (KeyError, TypeError) as exc:
                raise StoreReplyError(f"tags store {reg.instance} sent a malformed list") from exc
            names.update(m for m in found if serves(reg, served, org, m))
        return sorted(names)

    def metric_tags(self, org: str, metric: str, start: int) -> list[str]:
        reg, partition = self._owner("tags", org, metric)
        # Metric names are [A-Za-z0-9_.] (normalised at intake), safe in a URL path.
        path = f"/v1/metrics/{metric}/tags"
        params = {"org": org, "from": start, "partition": partition}
        resp = self._request(reg, "GET", path, params=params)
        data = self._json(reg, resp)
        try:
            return [str(t) for t in data["tags"]]
        except (KeyError, TypeError) as exc:
            raise StoreReplyError(f"tags store {reg.instance} sent malformed tags") from exc


def _numbers(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(values)) or "none"


def serves(reg: Registration, served: set[int], org: str, metric: str) -> bool:
    """Whether ``org|metric`` lives in one of the ``served`` partitions of ``reg``."""
    return partition_for(partition_key(org, metric), reg.partition_count) in served


def decode_points(raw: bytes, *, source: str) -> PointColumns:
    """Decode an Arrow IPC stream of (sid uint64, ts int64, value float64) record batches."""
    try:
        table = pa.ipc.open_stream(raw).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreReplyError(f"{source} sent an unreadable Arrow stream: {exc}") from exc
    if table.num_rows == 0:
        return PointColumns.empty()
    try:
        cols = [
            table.column(name).to_numpy().astype(dtype, copy=False)
            for name, dtype in (("sid", SID_DTYPE), ("ts", TS_DTYPE), ("value", VALUE_DTYPE))
        ]
    except (KeyError, pa.ArrowInvalid, TypeError, ValueError) as exc:
        raise StoreReplyError(f"{source} sent Arrow columns other than sid/ts/value") from exc
    return PointColumns(cols[0], cols[1], cols[2])


_ROLLUP_COLUMNS = (
    ("sid", SID_DTYPE),
    ("ts", TS_DTYPE),
    ("count", TS_DTYPE),
    ("sum", VALUE_DTYPE),
    ("min", VALUE_DTYPE),
    ("max", VALUE_DTYPE),
    ("last", VALUE_DTYPE),
    ("last_ts", TS_DTYPE),
)


def decode_rollups(raw: bytes, *, source: str) -> Rollups:
    """Decode an Arrow IPC stream with the columns of :class:`strata.rollup.Rollups`
    (``ts`` is the bucket start), as every point tier answers ``1m``/``1h`` reads."""
    try:
        table = pa.ipc.open_stream(raw).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreReplyError(f"{source} sent an unreadable Arrow stream: {exc}") from exc
    if table.num_rows == 0:
        return Rollups.empty()
    try:
        cols = [
            table.column(name).to_numpy().astype(dtype, copy=False)
            for name, dtype in _ROLLUP_COLUMNS
        ]
    except (KeyError, pa.ArrowInvalid, TypeError, ValueError) as exc:
        names = "/".join(n for n, _ in _ROLLUP_COLUMNS)
        raise StoreReplyError(f"{source} sent Arrow columns other than {names}") from exc
    return Rollups(*cols)


# -- describe and explore (issue 4 item 6; query/routes_explore.py) -----------------------


@runtime_checkable
class ExploreClient(Protocol):
    """The tag index's catalog, describe and metadata calls. Every call is scoped to one
    org; ``None`` answers mean "no such metric in this org"."""

    def catalog(self, org: str, start: int, prefix: str) -> list[tuple[str, int]]:
        """(metric, last-seen) of the org's metrics named ``prefix...`` active since
        ``start``, sorted by name and deduplicated."""
        ...

    def describe(self, org: str, metric: str, start: int) -> list[str] | None:
        """Tags of (org, metric) seen since ``start``; None if the metric is unknown."""
        ...

    def get_metadata(self, org: str, metric: str) -> dict[str, Any] | None:
        """Stored metadata of a known metric ({} if none), None if the metric is unknown."""
        ...

    def put_metadata(self, org: str, metric: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``fields`` (None clears) into the metadata; the result, or None if the
        metric is unknown."""
        ...


class HttpExploreClient:
    """:class:`ExploreClient` over the tag index's HTTP API, routed like
    :class:`HttpStoreClient` (whose registry view and connection pool it shares)."""

    def __init__(self, base: HttpStoreClient) -> None:
        self._base = base

    def _call(self, org: str, metric: str, method: str, suffix: str, **kwargs: Any) -> Any | None:
        reg, partition = self._base._owner("tags", org, metric)
        kwargs["params"] = {**kwargs.get("params", {}), "partition": partition}
        # Metric names are [A-Za-z0-9_.] (validated by the caller), safe in a URL path.
        path = f"/v1/metrics/{metric}/{suffix}"
        url = reg.address.rstrip("/") + path
        timeout = timeout_for(self._base._timeout)
        try:
            resp = self._base._http.request(method, url, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(
                f"tags store {reg.instance} at {reg.address} unreachable: {exc}"
            ) from exc
        if resp.status_code == 404:
            return None
        if resp.status_code == 503:
            raise StoreUnavailable(f"tags store {reg.instance} is not ready")
        if resp.status_code != 200:
            raise StoreReplyError(
                f"tags store {reg.instance} answered {resp.status_code} to {path}: "
                f"{resp.text[:200]}"
            )
        return HttpStoreClient._json(reg, resp)

    def catalog(self, org: str, start: int, prefix: str) -> list[tuple[str, int]]:
        newest: dict[str, int] = {}
        params = {"org": org, "from": start, "prefix": prefix}
        for reg, data, served in self._base.fan_out(
            "tags", "/v1/catalog", params, "metric catalog"
        ):
            try:
                for row in data["metrics"]:
                    name, last = str(row["metric"]), int(row["last_seen"])
                    if serves(reg, served, org, name):
                        newest[name] = max(last, newest.get(name, last))
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreReplyError(
                    f"tags store {reg.instance} sent a malformed catalog"
                ) from exc
        return sorted(newest.items())

    def describe(self, org: str, metric: str, start: int) -> list[str] | None:
        data = self._call(org, metric, "GET", "describe", params={"org": org, "from": start})
        if data is None:
            return None
        try:
            return [str(t) for t in data["tags"]]
        except (KeyError, TypeError) as exc:
            raise StoreReplyError("tags store sent a malformed describe answer") from exc

    def _metadata(self, data: Any) -> dict[str, Any] | None:
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
            raise StoreReplyError("tags store sent malformed metadata")
        return dict(data["metadata"])

    def get_metadata(self, org: str, metric: str) -> dict[str, Any] | None:
        return self._metadata(self._call(org, metric, "GET", "metadata", params={"org": org}))

    def put_metadata(self, org: str, metric: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Through the series topic (query/metadata_writer.py): produce the update to the
        metric's partition, then wait until the owning tag index shows it, so a GET right
        after the PUT reads it."""
        writer = self._base.metadata_writer
        if writer is None:
            raise StoreUnavailable("metadata writes need a Kafka producer (not configured)")
        current = self.get_metadata(org, metric)
        if current is None:
            return None
        _, partition = self._base._owner("tags", org, metric)
        try:
            writer.write(org, metric, fields, partition)
        except MetadataWriteFailed as exc:
            raise StoreUnavailable(str(exc)) from exc
        merged = merge_metadata(current, fields)
        deadline = time.monotonic() + METADATA_VISIBLE_SECONDS
        while time.monotonic() < deadline:
            shown = self.get_metadata(org, metric) or {}
            if all(shown.get(k) == merged.get(k) for k in fields):
                return shown
            time.sleep(0.05)
        # Stored (acknowledged) but not yet applied by the owner: it will be; say so.
        warn(f"metadata of {metric!r} stored; the tag index has not applied it yet")
        return merged


def explore_client(client: object) -> ExploreClient | None:
    """The explore calls of a store client: itself if it implements them, a wrapper for
    :class:`HttpStoreClient`, else None (the explore endpoints then answer 501)."""
    if isinstance(client, HttpStoreClient):
        return HttpExploreClient(client)
    if isinstance(client, ExploreClient):
        return client
    return None
