"""The completeness gate and the pipeline lag, read from the registry (pure routing).

A store instance publishes, per partition it owns, the newest heartbeat marker time through
which it has made everything durable (its watermark). An ``org|metric`` lives in one
partition, so a query over it is complete through ``T`` when the owner of that partition of
every store kind the query needs has a watermark ``>= T``: the gate is the minimum of those
watermarks. Only the partition that holds a metric gates it; a lagging partition elsewhere
delays nothing.

Which kinds a monitor needs: the indexes (tags, inverted: which series exist) and the point
tier serving recent data: the first of ``point_tiers`` (default RAM, then rocks) that has an
instance owning the partition. A metric queried with a percentile is read from sketches, so
it needs the sketch tier serving recent data instead (``SKETCH_TIERS``: the RAM, then the
rocks sketch store; intake writes markers into the sketches topic too). The archive is not
consulted: it serves months-old data and its watermark trails by its flush interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from query.routing import NoOwner, owner
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, watermark_of

INDEX_KINDS = ("tags", "inverted")
POINT_TIERS = ("ram", "rocks")
SKETCH_TIERS = ("ram-sketches", "rocks-sketches")


class Instances(Protocol):
    """What the gate needs of :class:`query.stores_client.RegistryView`."""

    def instances(self, kind: str) -> list[Registration]: ...


@dataclass(frozen=True, slots=True)
class Completeness:
    """Per needed store kind, the owner's watermark (ms) of the metric's partition."""

    partition: int | None
    watermarks: dict[str, int | None]

    @property
    def through_ms(self) -> int | None:
        """Complete through this time (ms), None when any needed kind has no watermark."""
        values = list(self.watermarks.values())
        if not values or any(v is None for v in values):
            return None
        return min(v for v in values if v is not None)


def completeness(
    view: Instances,
    org: str,
    metric: str,
    *,
    point_tiers: Sequence[str] = POINT_TIERS,
    indexes: Sequence[str] = INDEX_KINDS,
) -> Completeness:
    """The watermarks gating ``org|metric``: its partition's owners of the indexes and of the
    first point tier that has an owner at all (None for a needed kind without owner)."""
    key = partition_key(org, metric)
    partition: int | None = None
    marks: dict[str, int | None] = {}
    for i, kind in enumerate(point_tiers):
        try:
            reg = owner(view.instances(kind), kind, org, metric)
        except NoOwner:
            if i == len(point_tiers) - 1:
                marks[point_tiers[0]] = None  # no point tier owns it: unknown
            continue
        partition = partition_for(key, reg.partition_count)
        marks[kind] = watermark_of(reg, partition)
        break
    for kind in indexes:
        try:
            reg = owner(view.instances(kind), kind, org, metric)
        except NoOwner:
            marks[kind] = None
            continue
        marks[kind] = watermark_of(reg, partition_for(key, reg.partition_count))
    return Completeness(partition, marks)


class PipelineGate:
    """The evaluator's gate: ``gate(org, metrics, sketches)`` = complete through (Unix
    seconds) for all of ``metrics`` (read as points) and ``sketches`` (metrics read as
    sketches), None when unknown (an owner missing, no watermark yet, registry down)."""

    def __init__(
        self,
        view: Instances,
        *,
        point_tiers: Sequence[str] = POINT_TIERS,
        sketch_tiers: Sequence[str] = SKETCH_TIERS,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._view = view
        self._point_tiers = tuple(point_tiers)
        self._sketch_tiers = tuple(sketch_tiers)
        self._on_error = on_error

    def __call__(
        self, org: str, metrics: Sequence[str], sketches: Sequence[str] = ()
    ) -> int | None:
        needs = [(m, self._point_tiers) for m in metrics]
        needs += [(m, self._sketch_tiers) for m in sketches]
        through: list[int] = []
        try:
            for metric, tiers in needs:
                c = completeness(self._view, org, metric, point_tiers=tiers)
                t = c.through_ms
                if t is None:
                    return None
                through.append(t)
        except Exception as exc:  # registry unreachable: unknown, never "complete"
            if self._on_error is not None:
                self._on_error(exc)
            return None
        return min(through) // 1000 if through else None
