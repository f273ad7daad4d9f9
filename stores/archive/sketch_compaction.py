"""Compaction and retention of sketch objects, one (topic id, partition) at a time.

The points compaction (:mod:`stores.archive.compaction`) with one difference that shapes
everything: merging sketches is not idempotent, so which messages an object holds is read
from the offset ranges in the names (:mod:`stores.archive.sketch_plan`), never assumed
harmless to repeat. Per partition:

1. Select the objects (:func:`~stores.archive.sketch_plan.select`). A partition with a
   conflict (objects only partly inside one another) is left alone this round.
2. Read every chosen ingest object and split its rows by UTC day, leaving out the days whose
   compacted objects already hold its messages (a crashed compaction's leftover input).
3. For each touched day merge those rows with the day's compacted object(s) (exactly, each
   message once) and drop rows older than their org's retention; days whose compacted
   object may hold expired rows, or that have several, are rewritten the same way.
4. Write each day's compacted object (raw sketches, one row per (sid, ts)), named by the
   offset range of its inputs — it holds the day's sketches of every message in that range
   — then its 1 m and 1 h rollup objects (merged sketches, same stem).
5. If deleting the inputs would lower the highest offset any name holds, write a progress
   marker with it (ingest restarts after the highest offset named).
6. Delete the inputs: ingest objects, their duplicates, the superseded compacted objects
   and their rollups.

A reader listing at any moment counts each message once: before step 4 it reads the
inputs; after it, the new compacted object's range overlaps the inputs', so their rows of
that day are skipped (:meth:`~stores.archive.sketch_plan.Selection.held_days`). A
compaction whose input vanished (another one ran) gives up on the partition for the round
without deleting anything (:class:`ObjectNotFound` from the caller's loop).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pyarrow as pa

from stores.archive.catalog import Catalog
from stores.archive.naming import (
    DAY,
    Family,
    ObjectName,
    compacted_name,
    digest,
    progress_name,
)
from stores.archive.objectstore import ObjectNotFound
from stores.archive.parquet_io import Meta, read_table, to_parquet
from stores.archive.retention import CompactionReport, Retention, kept
from stores.archive.sketch_io import Keyed, keyed_rows, sketches_metadata
from stores.archive.sketch_plan import Partition, select
from strata.rollup import HOUR, MINUTE
from strata.sketch import SketchParams

log = logging.getLogger(__name__)

#: the rollup objects written beside every compacted sketch object
ROLLUPS: tuple[tuple[Family, int], ...] = ((Family.SKETCHES_1M, MINUTE), (Family.SKETCHES_1H, HOUR))


def rollup_names(name: ObjectName) -> list[ObjectName]:
    """The rollup objects that go with the compacted sketch object ``name``."""
    return [
        ObjectName(fam, name.topic_id, name.partition, name.first, name.last, name.day, name.digest)
        for fam, _ in ROLLUPS
    ]


class SketchCompactor:
    def __init__(
        self,
        catalog: Catalog,
        retention: Retention,
        *,
        row_group_rows: int = 256 * 1024,
        params: SketchParams | None = None,
    ) -> None:
        self._catalog = catalog
        self._retention = retention
        self._row_group_rows = row_group_rows
        self._params = params or SketchParams()

    def groups(self) -> dict[Partition, list[ObjectName]]:
        """The sketch objects per (topic id, partition)."""
        out: dict[Partition, list[ObjectName]] = defaultdict(list)
        for name in self._catalog.family(Family.SKETCHES):
            out[(name.topic_id, name.partition)].append(name)
        return dict(sorted(out.items()))

    def partition(
        self, tid: str, p: int, names: list[ObjectName], now: int, report: CompactionReport
    ) -> None:
        """Compact one partition (module docstring). Raises :class:`ObjectNotFound` when an
        input vanished (nothing is deleted then)."""
        sel = select(names)
        if sel.conflicts:
            log.warning(
                "sketches %s/p%d: objects only partly inside others, not compacted: %s",
                tid,
                p,
                [n.key() for n in sel.conflicts],
            )
            report.skipped += 1
            return
        objects = self._catalog.objects
        days: dict[int, list[tuple[ObjectName, pa.Table]]] = defaultdict(list)
        for n in sel.ingest:
            t = read_table(objects.get(n.key()))
            if t.num_rows == 0:
                continue
            held = sel.held_days(n)
            ts = t["ts"].to_numpy()
            day_of = ts - ts % DAY
            for day in np.unique(day_of).tolist():
                if day not in held:
                    days[int(day)].append((n, t.filter(pa.array(day_of == day))))
        expiring = now - self._retention.shortest()
        for day, objs in sel.days.items():
            metas = [self._catalog.meta(c.key()) for c in objs]
            if any(m is None for m in metas):
                raise ObjectNotFound(f"a compacted object of day {day} vanished")
            old = any(m is not None and m.min_ts < expiring for m in metas)
            if day in days or len(objs) > 1 or old:
                days[day][:0] = [(c, read_table(objects.get(c.key()))) for c in objs]
        written: set[str] = set()
        outputs: list[ObjectName] = []
        for day, parts in sorted(days.items()):
            # Decoded once: the day's rows, its compacted object and rollups come from it.
            rows = keyed_rows([t for _, t in parts], self._params)
            table = rows.table()
            live = kept(table, self._retention, now).to_numpy(zero_copy_only=False)
            expired = int(live.size - np.count_nonzero(live))
            if len(parts) == 1 and parts[0][0].compacted and not expired:
                days[day] = []  # a retention candidate with nothing expired: keep as is
                continue
            report.expired_rows += expired
            if expired == live.size:
                continue
            if expired:
                rows, table = rows.take(live), table.filter(pa.array(live))
            out = self._write(tid, p, day, parts, rows, table)
            outputs.append(out)
            written.update(x.key() for x in [out, *rollup_names(out)])
            report.outputs += 1
        doomed = {n.key(): n for n in [*sel.ingest, *sel.duplicates, *sel.superseded]}
        for parts in days.values():
            doomed.update((n.key(), n) for n, _ in parts)
        remaining = [n.last for n in names if n.key() not in doomed] + [o.last for o in outputs]
        highest = max(n.last for n in names)
        if max(remaining, default=-1) < highest:
            objects.put(progress_name(tid, p, highest, Family.SKETCHES), b"")
        for key in sorted(set(doomed) - written):
            objects.delete(key)
            self._catalog.forget(key)
            report.inputs += 1
        for n in doomed.values():
            if n.compacted:
                for r in rollup_names(n):
                    if r.key() not in written:
                        objects.delete(r.key())

    def _write(
        self,
        tid: str,
        p: int,
        day: int,
        parts: list[tuple[ObjectName, pa.Table]],
        rows: Keyed,
        table: pa.Table,
    ) -> ObjectName:
        """Write the day's compacted object, then its rollups; return its name."""
        objects = self._catalog.objects
        lo = min(n.first for n, _ in parts)
        hi = max(n.last for n, _ in parts)
        dig = digest(sorted({n.key() for n, _ in parts}), f"{table.num_rows}")
        key = compacted_name(Family.SKETCHES, tid, p, day, lo, hi, dig)
        extra = {"strata.partition": str(p), "strata.topic_id": tid, "strata.day": str(day)}
        footer = sketches_metadata(table, 1, extra)
        objects.put(key, to_parquet(table, footer, self._row_group_rows))
        self._catalog.remember(
            key, Meta(table.num_rows, int(footer["strata.min_ts"]), int(footer["strata.max_ts"]), 0)
        )
        name = ObjectName(Family.SKETCHES, tid, p, lo, hi, day, dig)
        for (_, step), rname in zip(ROLLUPS, rollup_names(name), strict=True):
            rows = rows.rollup(step)  # 1 h from the 1 m rows: far fewer to merge
            rolled = rows.table()
            meta = sketches_metadata(rolled, step, extra)
            objects.put(rname.key(), to_parquet(rolled, meta, self._row_group_rows))
        return name
