"""Compaction and retention of points objects, one (topic id, partition) at a time.
(:class:`Compactor` runs the sketch objects' pass too: :mod:`stores.archive.sketch_compaction`.)

For each partition: read every ingest object, split its rows by UTC day, and for each
touched day merge them with the day's current compacted object (duplicates resolved by
:func:`strata.conflict.resolve`), dropping rows older than their org's retention. Days
whose compacted object may hold expired rows are rewritten the same way. Then, in order:

1. write each day's new compacted object, then its 1 h rollup object (same stem);
2. if a day lost all its rows, write a progress marker holding the partition's highest
   offset (ingest restarts after the highest offset any object names; this keeps it);
3. delete the inputs (ingest objects, the superseded compacted and rollup objects).

A reader listing at any moment sees, for every row, the input or the output or both, never
neither (outputs exist before inputs go); both is harmless because reads resolve
duplicates, and :mod:`stores.archive.plan` never uses a rollup object next to raw rows of
its day. Outputs are named by their inputs (offset range + digest), so two compactions of
the same inputs write the same object; a compaction whose input vanished (another one ran)
gives up on that partition for this round without deleting anything.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stores.archive.catalog import Catalog
from stores.archive.naming import DAY, Family, ObjectName, compacted_name, digest, progress_name
from stores.archive.objectstore import ObjectNotFound
from stores.archive.parquet_io import (
    POINTS_SCHEMA,
    ROLLUPS_FORMAT,
    Meta,
    merge_points,
    points_metadata,
    read_table,
    rollup_table,
    to_parquet,
)
from stores.archive.retention import CompactionReport, Retention, drop_expired
from stores.archive.sketch_compaction import SketchCompactor
from strata.rollup import HOUR

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PartitionPass = Callable[[str, int, list[ObjectName], int, CompactionReport], None]


class Compactor:
    def __init__(
        self,
        catalog: Catalog,
        retention: Retention,
        *,
        row_group_rows: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._retention = retention
        self._row_group_rows = row_group_rows
        self._clock = clock
        self._sketches = SketchCompactor(catalog, retention, row_group_rows=row_group_rows)

    def run(self, progress: Progress | None = None) -> CompactionReport:
        """One pass over every partition of the points, then of the sketch objects."""
        now = int(self._clock())
        groups: dict[tuple[str, int], list[ObjectName]] = defaultdict(list)
        for name in self._catalog.family(Family.POINTS):
            groups[(name.topic_id, name.partition)].append(name)
        work: list[tuple[PartitionPass, str, int, list[ObjectName]]] = [
            (self._partition, tid, p, names) for (tid, p), names in sorted(groups.items())
        ]
        work += [
            (self._sketches.partition, tid, p, names)
            for (tid, p), names in self._sketches.groups().items()
        ]
        report = CompactionReport()
        for i, (compact, tid, p, names) in enumerate(work):
            try:
                compact(tid, p, names, now, report)
            except ObjectNotFound as exc:
                log.info("compaction of %s/p%d raced another one (%s); next round", tid, p, exc)
                report.skipped += 1
            report.partitions += 1
            if progress is not None:
                progress(i + 1, len(work))
        return report

    def _partition(
        self, tid: str, p: int, names: list[ObjectName], now: int, report: CompactionReport
    ) -> None:
        objects = self._catalog.objects
        raw = [n for n in names if not n.compacted]
        by_day: dict[int, list[ObjectName]] = defaultdict(list)
        for n in names:
            if n.day is not None:
                by_day[n.day].append(n)
        expiring = now - self._retention.shortest()
        tables: dict[str, pa.Table] = {n.key(): read_table(objects.get(n.key())) for n in raw}
        days: dict[int, list[tuple[ObjectName, pa.Table]]] = defaultdict(list)
        for n in raw:
            t = tables[n.key()]
            if t.num_rows == 0:
                continue
            ts = t["ts"].to_numpy()
            for day in np.unique(ts - ts % DAY).tolist():
                in_day = pc.and_(pc.greater_equal(t["ts"], day), pc.less(t["ts"], day + DAY))
                days[int(day)].append((n, t.filter(in_day)))
        for day, olds in by_day.items():
            meta = self._catalog.meta(olds[0].key())
            if day in days or len(olds) > 1 or (meta is not None and meta.min_ts < expiring):
                for o in olds:
                    days[day].append((o, read_table(objects.get(o.key()))))
        if not days and not raw:
            return
        highest = max(n.last for n in names)
        written: set[str] = set()
        emptied = False
        for day, parts in sorted(days.items()):
            merged = merge_points([t for _, t in parts])
            kept = drop_expired(merged, self._retention, now)
            if len(parts) == 1 and parts[0][0].compacted and kept.num_rows == merged.num_rows:
                days[day] = []  # a retention candidate with nothing expired: keep as is
                continue
            report.expired_rows += merged.num_rows - kept.num_rows
            inputs = sorted({n.key() for n, _ in parts})
            if kept.num_rows == 0:
                emptied = True
                continue
            lo = min(n.first for n, _ in parts)
            hi = max(n.last for n, _ in parts)
            dig = digest(inputs, f"{kept.num_rows}")
            key = compacted_name(Family.POINTS, tid, p, day, lo, hi, dig)
            footer = points_metadata(
                kept,
                {"strata.partition": str(p), "strata.topic_id": tid, "strata.day": str(day)},
            )
            objects.put(key, to_parquet(kept, footer, self._row_group_rows))
            self._catalog.remember(
                key,
                Meta(kept.num_rows, int(footer["strata.min_ts"]), int(footer["strata.max_ts"]), 0),
            )
            rkey = compacted_name(Family.ROLLUPS_1H, tid, p, day, lo, hi, dig)
            rollups = rollup_table(kept, HOUR)
            objects.put(
                rkey,
                to_parquet(rollups, {"strata.format": ROLLUPS_FORMAT}, self._row_group_rows),
            )
            written.update((key, rkey))
            report.outputs += 1
        if emptied:
            objects.put(progress_name(tid, p, highest), b"")
        doomed = {n.key() for n in raw}
        for parts in days.values():
            doomed.update(n.key() for n, _ in parts)
        superseded = [
            ObjectName(Family.ROLLUPS_1H, n.topic_id, n.partition, n.first, n.last, n.day, n.digest)
            for n in names
            if n.compacted and n.key() in doomed
        ]
        for key in sorted(doomed - written):
            objects.delete(key)
            self._catalog.forget(key)
            report.inputs += 1
        for r in superseded:
            if r.key() not in written:
                objects.delete(r.key())


__all__ = ["POINTS_SCHEMA", "CompactionReport", "Compactor", "Retention", "drop_expired"]
