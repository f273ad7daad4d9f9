"""Service registry in Redis: each store instance announces itself with a TTL.

Key ``strata:registry:<kind>:<instance>`` holds a JSON :class:`Registration`. Instances
refresh it every few seconds; a crashed instance disappears when its TTL lapses, and the
query service stops routing to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis

PREFIX = "strata:registry:"


@dataclass
class Registration:
    kind: str  # "ram", "tags", "inverted", ...
    instance: str  # unique per process
    address: str  # base URL of the internal read API
    topic: str
    partition_count: int = 0  # partitions of ``topic`` (the query service routes with it)
    partitions: list[int] = field(default_factory=list)
    # partition -> [from_ts, to_ts] the instance can answer (Unix seconds, inclusive)
    coverage: dict[int, list[int]] = field(default_factory=dict)
    # partition -> next offset to apply (everything before it is applied)
    offsets: dict[int, int] = field(default_factory=dict)
    # partition -> [marker_ms, emit_ms] of the newest heartbeat everything before which is
    # durable here: the partition is complete through marker_ms (docs/heartbeats.md)
    watermarks: dict[int, list[int]] = field(default_factory=dict)
    updated: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Registration:
        d: dict[str, Any] = json.loads(raw)
        d["coverage"] = {int(k): v for k, v in d.get("coverage", {}).items()}
        d["offsets"] = {int(k): v for k, v in d.get("offsets", {}).items()}
        d["watermarks"] = {int(k): v for k, v in d.get("watermarks", {}).items()}
        # Tolerate entries written by newer instances (rolling upgrades): drop unknown fields.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Registry:
    def __init__(self, url: str, *, socket_timeout: float = 2.0) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )

    def publish(self, reg: Registration, ttl_seconds: int = 10) -> None:
        self._redis.set(f"{PREFIX}{reg.kind}:{reg.instance}", reg.to_json(), ex=ttl_seconds)

    def withdraw(self, reg: Registration) -> None:
        self._redis.delete(f"{PREFIX}{reg.kind}:{reg.instance}")

    def discover(self, kind: str | None = None) -> list[Registration]:
        pattern = f"{PREFIX}{kind}:*" if kind else f"{PREFIX}*"
        keys = list(self._redis.scan_iter(match=pattern, count=500))
        if not keys:
            return []
        out = []
        for raw in self._redis.mget(keys):
            if raw is not None:
                out.append(Registration.from_json(raw))
        return sorted(out, key=lambda r: (r.kind, r.instance))

    def close(self) -> None:
        self._redis.close()


def watermark_of(reg: Registration, partition: int) -> int | None:
    """The instance's watermark (heartbeat marker time, ms) of ``partition``, if any."""
    mark = reg.watermarks.get(partition)
    return int(mark[0]) if mark else None


@dataclass(frozen=True, slots=True)
class Lag:
    kind: str
    instance: str
    partition: int
    complete_through_ms: int | None
    lag_seconds: float | None  # now - watermark; None before the first marker


def pipeline_lag(registrations: Iterable[Registration], now: float) -> list[Lag]:
    """End-to-end pipeline lag (now - watermark) per store instance and owned partition:
    how far behind what intake accepted each store's durable data is."""
    rows: list[Lag] = []
    for reg in registrations:
        for p in sorted(reg.partitions):
            mark = watermark_of(reg, p)
            lag = None if mark is None else round(max(0.0, now - mark / 1000), 3)
            rows.append(Lag(reg.kind, reg.instance, p, mark, lag))
    return sorted(rows, key=lambda r: (r.kind, r.partition, r.instance))
