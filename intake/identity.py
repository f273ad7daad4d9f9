"""Bounded cache of series identities: (org, raw metric, raw tags) -> normalised identity.

Normalising a metric name and its tags and hashing the canonical set into a series id costs
more than everything else intake does for a point, and an agent sends the same series every
interval. The cache makes that work run once per series per process instead of once per
request. A raw key maps to exactly one identity (normalisation and hashing are pure), so a
hit can never give a different answer than recomputing; eviction only costs recomputation.

A miss (a series new to the process) still normalises its tags, with regular expressions,
one tag at a time; but a new series mostly brings tags the process has seen on others (the
host's region, service, environment, ...). The cache therefore also remembers what each raw
tag normalises to, so a new series of a known host costs its hash and a few dict lookups.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from itertools import islice
from typing import NamedTuple

from strata.naming import InvalidName, canonical_tags, normalize_metric_name, normalize_tag
from strata.series_id import series_id

# Share of entries dropped (oldest first) when the cache is full: evicting in slices keeps
# the amortised cost per insert O(1) without per-hit LRU bookkeeping.
_EVICT_FRACTION = 8


class SeriesIdentity(NamedTuple):
    """What a raw (metric, tags) normalises to. ``invalid`` is set (with the reason, and
    ``metric``/``tags``/``sid`` empty) when the metric name cannot be normalised."""

    metric: str
    tags: tuple[str, ...]
    sid: int
    invalid: str | None


def resolve(
    org: str,
    raw_metric: str,
    raw_tags: Iterable[str],
    tag_memo: dict[str, str | None] | None = None,
) -> SeriesIdentity:
    """The identity of one series, computed; ``tag_memo`` (raw tag -> normalised tag, None
    when it normalises to nothing) is read and filled, without bound, if given."""
    try:
        metric = normalize_metric_name(raw_metric)
    except InvalidName as exc:
        return SeriesIdentity("", (), 0, str(exc))
    tags = canonical_tags(raw_tags) if tag_memo is None else _canonical(raw_tags, tag_memo)
    return SeriesIdentity(metric, tags, series_id(org, metric, tags), None)


def _canonical(raw_tags: Iterable[str], memo: dict[str, str | None]) -> tuple[str, ...]:
    """:func:`strata.naming.canonical_tags` with each tag's normalisation memoised."""
    out = set()
    for t in raw_tags:
        try:
            n = memo[t]
        except KeyError:
            n = memo[t] = normalize_tag(t)
        if n is not None:
            out.add(n)
    return tuple(sorted(out))


class SeriesIdentities:
    """At most ``capacity`` identities, keyed by any hashable built from the raw series
    fields; the caller guarantees that a key determines (org, raw metric, raw tags).

    When full, the oldest-inserted eighth is dropped (insertion order, not use order: the
    hit path stays a plain dict lookup). Safe to share between the intake worker threads:
    a lookup is one dict operation, and inserts and eviction (misses only) hold a lock, so
    eviction never iterates a dict that another thread is growing.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._map: dict[Hashable, SeriesIdentity] = {}
        # Raw tag -> normalised tag, for misses; cleared when it outgrows ``capacity``.
        self._tags: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.get = self._map.get  # the hit path, bound once

    def __len__(self) -> int:
        return len(self._map)

    def add(
        self, key: Hashable, org: str, raw_metric: str, raw_tags: Iterable[str]
    ) -> SeriesIdentity:
        """Compute, remember and return the identity for ``key``."""
        identity = self.resolve(org, raw_metric, raw_tags)
        self.put(key, identity)
        return identity

    def resolve(self, org: str, raw_metric: str, raw_tags: Iterable[str]) -> SeriesIdentity:
        """:func:`resolve` with this cache's memo of tag normalisations (not cached)."""
        if len(self._tags) > self._capacity:
            self._tags = {}  # a fresh memo: a thread still filling the old one is harmless
        return resolve(org, raw_metric, raw_tags, self._tags)

    def put(self, key: Hashable, identity: SeriesIdentity) -> None:
        """Remember an identity computed by the caller (with :func:`resolve`)."""
        with self._lock:
            if len(self._map) >= self._capacity:
                self._evict()
            self._map[key] = identity

    def _evict(self) -> None:
        n = max(1, self._capacity // _EVICT_FRACTION)
        for key in list(islice(self._map, n)):
            self._map.pop(key, None)
