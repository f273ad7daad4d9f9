"""Reads for the point read API: raw, 1 m (computed) and 1 h (rollup objects or computed).

A read that names its partition lists and opens only that partition's objects (under every
topic id). The sids of one read are those of one (org, metric), whose points the topic
holds in one partition, ``partition_for(org|metric, partition count)``: the query planner
sends that partition, so the other partitions' objects hold none of the read's rows and the
answer is the one an unscoped read gives, for a fraction of the listing and decoding.

A reader can race a compaction: it may list an input that is deleted before it fetches
it. The compacted output was written before that delete, so a fresh listing contains it;
the read is retried from the listing (bounded), never answered with the input missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from stores.archive.catalog import Catalog
from stores.archive.naming import Family, ObjectName
from stores.archive.objectstore import ObjectNotFound
from stores.archive.parquet_io import Meta, read_table, table_rollups
from stores.archive.plan import Listed, may_overlap, overlapping, plan_hours
from strata.conflict import resolve
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE
from strata.rollup import HOUR, Rollups, merge, rollup

Columns = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]
R = TypeVar("R")
_ATTEMPTS = 5


class ReadRaced(RuntimeError):
    """Objects kept disappearing under the reader (compaction running very fast)."""


def consistent(start: int, end: int, read: Callable[[], R]) -> R:
    """``read()`` from one listing in which every object was still there: a listed object
    that vanished (compacted away) makes it list and read again, bounded. ``read`` raises
    :class:`ObjectNotFound` when it finds a listed object gone; raises :class:`ReadRaced`
    after the last attempt (points and sketch reads alike)."""
    for _ in range(_ATTEMPTS):
        try:
            return read()
        except ObjectNotFound:
            continue  # its compacted output was written before the delete: relist
    raise ReadRaced(f"objects for [{start}, {end}] kept changing during the read")


class ArchiveReader:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def _listed(self, start: int, end: int, partition: int | None) -> list[Listed]:
        """Points objects (of ``partition`` if given) that may hold ts in ``[start, end]``,
        with their footers.

        Raises :class:`ObjectNotFound` if a listed object vanished before its footer was
        read: skipping it could lose rows whose compacted output this listing predates."""
        out = []
        for name in self._catalog.family(Family.POINTS, partition):
            if not may_overlap(name, start, end):
                continue
            meta = self._catalog.meta(name.key())
            if meta is None:
                raise ObjectNotFound(name.key())
            out.append((name, meta))
        return out

    def _fetch(self, keys: list[str], sids: npt.NDArray[np.uint64], lo: int, hi: int) -> pa.Table:
        tables = [read_table(self._catalog.objects.get(k), sids, lo, hi) for k in keys]
        tables = [t.select(["sid", "ts", "value"]) for t in tables if t.num_rows]
        if not tables:
            return pa.table(
                {
                    "sid": pa.array([], pa.uint64()),
                    "ts": pa.array([], pa.int64()),
                    "value": pa.array([], pa.float64()),
                }
            )
        return pa.concat_tables(tables)

    def read_raw(
        self, sids: npt.NDArray[np.uint64], start: int, end: int, partition: int | None = None
    ) -> Columns:
        """Points of ``sids`` with ``start <= ts <= end``, sorted, duplicates resolved;
        from the objects of ``partition`` only when given (module docstring)."""
        return self._consistent(start, end, lambda: self._read_raw(sids, start, end, partition))

    def _read_raw(
        self, sids: npt.NDArray[np.uint64], start: int, end: int, partition: int | None
    ) -> Columns:
        objs = overlapping(self._listed(start, end, partition), start, end)
        return _resolve(self._fetch([n.key() for n, _ in objs], sids, start, end))

    def read_rollups(
        self,
        sids: npt.NDArray[np.uint64],
        start: int,
        end: int,
        step: int,
        partition: int | None = None,
    ) -> Rollups:
        """Rollups for buckets whose start is in ``[start, end]`` (``partition``: as for
        :meth:`read_raw`)."""
        first = -(-start // step) * step
        last = end - end % step
        if first > last:
            return Rollups.empty()
        if step != HOUR:
            s, t, v = self.read_raw(sids, first, last + step - 1, partition)
            return rollup(s, t, v, step)
        return self._consistent(
            start, end, lambda: self._read_hours(sids, first, last + step - 1, partition)
        )

    @staticmethod
    def _consistent(start: int, end: int, read: Callable[[], R]) -> R:
        return consistent(start, end, read)

    def _read_hours(
        self, sids: npt.NDArray[np.uint64], start: int, end: int, partition: int | None
    ) -> Rollups:
        stems: dict[str, str] = {}
        for name in self._catalog.family(Family.ROLLUPS_1H, partition):
            if name.day is not None and may_overlap(name, start, end):
                stems[name.stem] = name.key()
        plan = plan_hours(self._listed(start, end, partition), stems, start, end)
        parts: list[Rollups] = []
        for key in plan.rollup_objects:
            t = read_table(self._catalog.objects.get(key), sids, start, end)
            parts.append(table_rollups(t))
        if plan.raw_ranges:
            t = self._fetch(plan.raw_objects, sids, plan.raw_ranges[0][0], plan.raw_ranges[-1][1])
            s, ts, v = _resolve(t)
            keep = np.zeros(ts.size, dtype=bool)
            for lo, hi in plan.raw_ranges:
                keep |= (ts >= lo) & (ts <= hi)
            parts.append(rollup(s[keep], ts[keep], v[keep], HOUR))
        return merge(parts, HOUR)


def _resolve(t: pa.Table) -> Columns:
    if t.num_rows == 0:
        return np.empty(0, SID_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE)
    return resolve(t["sid"].to_numpy(), t["ts"].to_numpy(), t["value"].to_numpy())


__all__ = ["ArchiveReader", "Columns", "Meta", "ObjectName", "ReadRaced", "consistent"]
