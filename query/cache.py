"""Redis cache of complete tier segment reads (docs/query.md, "Cache").

A tier segment (:class:`query.segments.Segment`) is split into *chunks* aligned to a fixed
length per resolution (:data:`CHUNK_SECONDS`: 1 h for raw and 1m reads, 1 day for 1h
reads). A chunk is cacheable when the segment holds it whole and it ended before
``now - settle_seconds`` (its points can no longer change; the heartbeat watermark will
replace the settle time). Cacheable chunks are served from Redis when present; everything
else — missing chunks, the partial chunks at the segment's edges and the live edge — is
read from the tier in as few contiguous reads as possible, and the cacheable chunks among
them are written back. A warm refresh of a sliding 1-day dashboard therefore reads only the
newest hour (plus the sub-hour head of the range) from the stores.

Keys: ``strata:qc:<version>:<sha256>`` of (org, metric, normalised scope, tier, resolution,
chunk start, chunk end); values: Arrow IPC stream bytes (zstd) of the chunk's columns,
written with a TTL. Redis failing or slow (short socket timeout) never fails a query: the
read goes to the tiers, the error is counted, and Redis is left alone for
``retry_seconds`` so a dead Redis costs one timeout per ``retry_seconds``, not one per query.

Pure parts (:func:`scope_key`, :func:`split_segment`, :func:`fetch_ranges`,
:func:`encode`/:func:`decode`, :func:`slice_rows`, :func:`concat`) have no I/O; the Redis
and store calls live in :class:`SegmentCache`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import redis
from fastapi import APIRouter
from prometheus_client.core import Metric
from redis.backoff import NoBackoff
from redis.retry import Retry

from query.filters import FilterTree, Resolution
from query.segments import Segment
from query.stores_client import (
    HttpStoreClient,
    PointColumns,
    Sids,
    StoreClient,
    StoreReplyError,
)
from strata.observability import counter, gauge
from strata.rollup import Rollups

log = logging.getLogger(__name__)

# Bump when the key material or the value layout changes: old entries are then never read.
CACHE_VERSION = "v1"
KEY_PREFIX = f"strata:qc:{CACHE_VERSION}:"
HOUR = 3600
DAY = 86400
# Chunk length per read resolution: about 60 1m rollups or 24 1h rollups per series.
CHUNK_SECONDS: dict[str, int] = {"raw": HOUR, "1m": HOUR, "1h": DAY}

Data = PointColumns | Rollups

_POINT_COLUMNS = (("sid", np.uint64), ("ts", np.int64), ("value", np.float64))
_ROLLUP_COLUMNS = (
    ("sid", np.uint64),
    ("bucket", np.int64),
    ("count", np.int64),
    ("sum", np.float64),
    ("min", np.float64),
    ("max", np.float64),
    ("last", np.float64),
    ("last_ts", np.int64),
)
_KIND_POINTS = b"P"
_KIND_ROLLUPS = b"R"
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


class CorruptEntry(ValueError):
    """A cached value that does not decode to the columns this version writes."""


# -- keys --------------------------------------------------------------------------------------


def normalise_tree(tree: FilterTree) -> FilterTree:
    """The filter tree with ``and``/``or`` arguments flattened (``a AND (b AND c)``),
    deduplicated and sorted, and one-argument ``and``/``or`` unwrapped, so equivalent
    spellings of a scope share cache entries. Raises ``KeyError`` on a malformed tree."""
    op = tree["op"]
    if op == "not":
        return {"op": "not", "arg": normalise_tree(tree["arg"])}
    if op not in ("and", "or"):
        return dict(tree)
    args: dict[bytes, FilterTree] = {}
    for arg in tree["args"]:
        norm = normalise_tree(arg)
        flat = norm["args"] if norm["op"] == op else [norm]
        for a in flat:
            args[orjson.dumps(a, option=orjson.OPT_SORT_KEYS)] = a
    if len(args) == 1:
        return next(iter(args.values()))
    return {"op": op, "args": [args[k] for k in sorted(args)]}


def scope_key(res: Resolution) -> str:
    """Canonical text of a compiled scope: sorted, deduplicated include/exclude lists, or
    the normalised filter tree."""
    if res.tree is not None:
        body: Any = {"tree": normalise_tree(res.tree)}
    else:
        body = {"include": sorted(set(res.include)), "exclude": sorted(set(res.exclude))}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def sids_scope(sids: Sids) -> str:
    """Scope of a read that only knows its series (:func:`query.stitch.read_stitched`)."""
    return "sids:" + hashlib.sha256(np.ascontiguousarray(sids, np.uint64).tobytes()).hexdigest()


def chunk_key(
    org: str, metric: str, scope: str, tier: str, resolution: str, start: int, end: int
) -> str:
    """The Redis key of one chunk (hashed: org, metric and tags may hold any character)."""
    material = orjson.dumps([CACHE_VERSION, org, metric, scope, tier, resolution, start, end])
    return KEY_PREFIX + hashlib.sha256(material).hexdigest()


# -- chunks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """``[start, end]`` (inclusive) of a segment; ``cacheable`` when it is a whole aligned
    chunk that ended before the settle time."""

    start: int
    end: int
    cacheable: bool


def split_segment(start: int, end: int, length: int, settled_before: int) -> list[Chunk]:
    """Split [start, end] at multiples of ``length``. A piece is cacheable iff it is a whole
    chunk (``[k*length, (k+1)*length - 1]``) and its end is before ``settled_before``.
    Raises ``ValueError`` for ``start > end`` or a non-positive length."""
    if start > end:
        raise ValueError("start must not be after end")
    if length <= 0:
        raise ValueError("chunk length must be positive")
    first = start - start % length
    bounds = np.arange(first, end + 1, length, dtype=np.int64)
    los = np.maximum(bounds, start)
    his = np.minimum(bounds + length - 1, end)
    whole = (los == bounds) & (his == bounds + length - 1) & (his < settled_before)
    return [
        Chunk(lo, hi, ok)
        for lo, hi, ok in zip(los.tolist(), his.tolist(), whole.tolist(), strict=True)
    ]


def fetch_ranges(chunks: Sequence[Chunk]) -> list[tuple[int, int]]:
    """Contiguous runs of ``chunks`` (sorted by start) merged into single reads."""
    out: list[tuple[int, int]] = []
    for c in chunks:
        if out and out[-1][1] + 1 == c.start:
            out[-1] = (out[-1][0], c.end)
        else:
            out.append((c.start, c.end))
    return out


# -- columns -----------------------------------------------------------------------------------


def _times(data: Data) -> npt.NDArray[np.int64]:
    return data.ts if isinstance(data, PointColumns) else data.bucket


def _take(data: Data, keep: npt.NDArray[Any]) -> Data:
    if isinstance(data, PointColumns):
        return PointColumns(data.sid[keep], data.ts[keep], data.value[keep])
    return Rollups(*(getattr(data, name)[keep] for name, _ in _ROLLUP_COLUMNS))


def slice_rows(data: Data, lo: int, hi: int) -> Data:
    """Rows whose point time (raw) or bucket start (rollups) is in [lo, hi]."""
    t = _times(data)
    return _take(data, (t >= lo) & (t <= hi))


def concat(parts: Sequence[Data], *, empty: Data) -> Data:
    """Rows of disjoint ``parts`` (all of one kind) sorted by (sid, time); ``empty`` when
    there are none. Raises :class:`StoreReplyError` for parts of different kinds (a tier
    answering rollups to a raw read or the reverse)."""
    if not parts:
        return empty
    kinds = {type(p) for p in parts}
    if len(kinds) != 1:
        raise StoreReplyError("a tier answered points and rollups to reads of one segment")
    if len(parts) == 1:
        return parts[0]
    columns = _POINT_COLUMNS if isinstance(parts[0], PointColumns) else _ROLLUP_COLUMNS
    cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name, _ in columns}
    order = np.lexsort((cols[columns[1][0]], cols["sid"]))
    sorted_cols: list[npt.NDArray[Any]] = [cols[name][order] for name, _ in columns]
    if isinstance(parts[0], PointColumns):
        return PointColumns(*sorted_cols)
    return Rollups(*sorted_cols)


def encode(data: Data) -> bytes:
    """A kind byte then an Arrow IPC stream (zstd) of the columns."""
    kind, columns = (
        (_KIND_POINTS, _POINT_COLUMNS)
        if isinstance(data, PointColumns)
        else (_KIND_ROLLUPS, _ROLLUP_COLUMNS)
    )
    batch = pa.record_batch(
        [pa.array(np.asarray(getattr(data, name), dtype)) for name, dtype in columns],
        names=[name for name, _ in columns],
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as writer:
        writer.write_batch(batch)
    body: bytes = sink.getvalue().to_pybytes()
    return kind + body


def decode(raw: bytes) -> Data:
    """Inverse of :func:`encode`. Raises :class:`CorruptEntry` for anything else."""
    kind, body = raw[:1], raw[1:]
    if kind not in (_KIND_POINTS, _KIND_ROLLUPS):
        raise CorruptEntry(f"unknown cache entry kind {kind!r}")
    columns = _POINT_COLUMNS if kind == _KIND_POINTS else _ROLLUP_COLUMNS
    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptEntry(f"unreadable cache entry: {exc}") from None
    if table.column_names != [name for name, _ in columns]:
        raise CorruptEntry(f"cache entry has columns {table.column_names}")
    cols: list[npt.NDArray[Any]] = [
        np.asarray(table.column(name).to_numpy(), dtype=dtype) for name, dtype in columns
    ]
    return PointColumns(*cols) if kind == _KIND_POINTS else Rollups(*cols)


def _empty_like(seg: Segment) -> Data:
    return PointColumns.empty() if seg.resolution == "raw" else Rollups.empty()


# -- the Redis-backed cache ------------------------------------------------------------------


@dataclass
class CacheStats:
    """Counters since start. ``hits``/``misses``: cacheable chunks found / not found;
    ``errors``: failed or timed-out Redis calls and undecodable entries; ``skipped``:
    cacheable chunks not looked up because Redis failed less than ``retry_seconds`` ago;
    ``uncacheable``: partial or live-edge chunks read from the tiers; ``stored``: chunks
    written."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    skipped: int = 0
    uncacheable: int = 0
    stored: int = 0


class SegmentCache:
    """Chunked, Redis-backed reads of tier segments; safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        settle_seconds: int = 300,
        ttl_seconds: int = DAY,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._settle = settle_seconds
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self._down_until = -float("inf")
        self._last_error = ""

    @classmethod
    def from_url(cls, url: str, *, timeout_seconds: float, **kwargs: Any) -> SegmentCache:
        """A cache on the Redis at ``url``; every socket operation gives up after
        ``timeout_seconds`` and is never retried (the tiers answer instead)."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, **kwargs)

    def close(self) -> None:
        self._redis.close()

    # -- counters

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def stats(self) -> dict[str, Any]:
        """The counters and whether Redis is being avoided after an error."""
        with self._lock:
            s = self._stats
            out: dict[str, Any] = {
                "hits": s.hits,
                "misses": s.misses,
                "errors": s.errors,
                "skipped": s.skipped,
                "uncacheable": s.uncacheable,
                "stored": s.stored,
            }
            out["redis"] = "down" if self._monotonic() < self._down_until else "up"
            out["last_error"] = self._last_error
        return out

    def _failed(self, what: str, exc: Exception) -> None:
        log.warning("query cache %s failed, answering uncached: %s", what, exc)
        with self._lock:
            self._stats.errors += 1
            self._down_until = self._monotonic() + self._retry
            self._last_error = f"{what}: {exc}"

    def _available(self) -> bool:
        with self._lock:
            return self._monotonic() >= self._down_until

    # -- Redis I/O

    def _get(self, keys: list[str]) -> list[bytes | None] | None:
        """Values of ``keys`` (None each when absent), or None when Redis failed."""
        if not keys:
            return []
        try:
            got: list[bytes | str | None] = self._redis.mget(keys)
            values = [v.encode() if isinstance(v, str) else v for v in got]
        except (redis.RedisError, OSError) as exc:
            self._failed("read", exc)
            return None
        return values

    def _put(self, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=self._ttl)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("write", exc)
            return
        self._count(stored=len(items))

    # -- reads

    def read(
        self, client: StoreClient, org: str, metric: str, scope: str, seg: Segment, sids: Sids
    ) -> Data:
        """What ``client.read_tier`` answers for ``seg`` limited to [seg.start, seg.end]
        (rows by point time or bucket start), complete chunks from Redis when present.
        Raises what ``client.read_tier`` raises; Redis errors are only counted."""
        settled_before = int(self._clock()) - self._settle
        chunks = split_segment(seg.start, seg.end, CHUNK_SECONDS[seg.resolution], settled_before)
        cacheable = [c for c in chunks if c.cacheable]
        keys = {
            c: chunk_key(org, metric, scope, seg.source.tier, seg.resolution, c.start, c.end)
            for c in cacheable
        }
        found: dict[Chunk, Data] = {}
        write = bool(cacheable)
        if cacheable and not self._available():
            write = False
            self._count(skipped=len(cacheable))
        elif cacheable:
            values = self._get([keys[c] for c in cacheable])
            for c, raw in zip(cacheable, values or [], strict=False):
                if raw is None:
                    continue
                try:
                    found[c] = decode(raw)
                except CorruptEntry as exc:  # re-read from the tier and overwritten
                    log.warning("query cache entry %s unreadable: %s", keys[c], exc)
                    self._count(errors=1)
            write = values is not None  # no second timeout in the same read
            if values is not None:
                self._count(hits=len(found), misses=len(cacheable) - len(found))
        self._count(uncacheable=len(chunks) - len(cacheable))

        parts: list[Data] = list(found.values())
        to_store: list[tuple[str, bytes]] = []
        missing = [c for c in chunks if c not in found]
        for lo, hi in fetch_ranges(missing):
            data = slice_rows(client.read_tier(seg.source, sids, lo, hi, seg.resolution), lo, hi)
            parts.append(data)
            for c in missing:
                if write and c.cacheable and lo <= c.start and c.end <= hi:
                    to_store.append((keys[c], encode(slice_rows(data, c.start, c.end))))
        self._put(to_store)
        return concat(parts, empty=_empty_like(seg))


def read_segment(
    client: StoreClient, org: str, metric: str, scope: str | None, seg: Segment, sids: Sids
) -> Data:
    """Read ``seg`` through the client's ``segment_cache`` when it has one, else straight
    from the tier. ``scope`` is :func:`scope_key` of the query's scope (None: the series
    themselves are the scope)."""
    cache = getattr(client, "segment_cache", None)
    if not isinstance(cache, SegmentCache):
        return client.read_tier(seg.source, sids, seg.start, seg.end, seg.resolution)
    return cache.read(
        client, org, metric, scope if scope is not None else sids_scope(sids), seg, sids
    )


def stats_router(cache: SegmentCache | None) -> APIRouter:
    """``GET /v1/stats``: the cache counters (``{"cache": null}`` when disabled)."""
    router = APIRouter()

    @router.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return {"cache": cache.stats() if cache is not None else None}

    return router


def cache_families(cache: SegmentCache) -> Iterator[Metric]:
    """The cache's counters as Prometheus families, read at scrape time (GET /metrics):
    ``strata_query_cache_<counter>_total``, ``strata_query_cache_redis_up`` (0 while
    Redis is avoided after an error: queries are answered uncached) and
    ``strata_query_cache_hit_ratio`` (hits / lookups since start; NaN before any)."""
    stats = cache.stats()
    for name, doc in (
        ("hits", "cacheable chunks found in Redis"),
        ("misses", "cacheable chunks looked up and not found"),
        ("errors", "failed or timed-out Redis calls and undecodable entries"),
        ("skipped", "cacheable chunks not looked up: Redis failed less than retry_seconds ago"),
        ("uncacheable", "partial or live-edge chunks read from the tiers"),
        ("stored", "chunks written to Redis"),
    ):
        yield counter(f"strata_query_cache_{name}", doc, (), [((), stats[name])])
    up = 1.0 if stats["redis"] == "up" else 0.0
    yield gauge("strata_query_cache_redis_up", "0 while Redis is being avoided", (), [((), up)])
    lookups = stats["hits"] + stats["misses"]
    ratio = stats["hits"] / lookups if lookups else float("nan")
    yield gauge("strata_query_cache_hit_ratio", "hits / (hits + misses)", (), [((), ratio)])


class CachedHttpStoreClient(HttpStoreClient):
    """:class:`HttpStoreClient` whose tier segment reads go through ``segment_cache``
    (None: uncached) — still an ``HttpStoreClient`` for the explore endpoints."""

    def __init__(self, *args: Any, segment_cache: SegmentCache | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_cache = segment_cache
