"""Pure routing: which registered store instance owns an (org, metric).

Stores consume topics keyed ``org|metric``; the instance that owns the key's partition
holds that metric's data. Each registration carries the partition count it routes with,
so the partition is computed per registration (instances agree unless topics changed).
"""

from __future__ import annotations

from collections.abc import Iterable

from strata.partitioning import partition_for, partition_key
from strata.registry import Registration


class NoOwner(LookupError):
    """No live instance of ``kind`` owns the partition (the pipeline is starting up or an
    instance died and its partitions are not yet reassigned)."""

    def __init__(self, kind: str, org: str, metric: str, partition: int | None) -> None:
        where = f"partition {partition}" if partition is not None else "any partition"
        super().__init__(
            f"no {kind} store instance owns {where} for metric {metric!r} "
            "(the pipeline may be starting; retry shortly)"
        )
        self.kind = kind
        self.partition = partition


def owner(instances: Iterable[Registration], kind: str, org: str, metric: str) -> Registration:
    """The instance of ``kind`` owning ``org|metric``; the most recently refreshed wins when
    two claim the partition (a rebalance in progress). Raises :class:`NoOwner`."""
    key = partition_key(org, metric)
    best: Registration | None = None
    partition: int | None = None
    for reg in instances:
        if reg.kind != kind or reg.partition_count <= 0:
            continue
        partition = partition_for(key, reg.partition_count)
        if partition in reg.partitions and (best is None or reg.updated > best.updated):
            best = reg
    if best is None:
        raise NoOwner(kind, org, metric, partition)
    return best
