"""Distribution sketches in the archive: months of DDSketches, read back like points.

The archive process runs a third consumer loop on the sketches topic (docs/archive.md,
"Sketches"): :class:`ArchiveSketchStore` is the shared :class:`~stores.archive.store.
ArchiveWriter` (per-partition buffers, objects named by offset range, start after the
highest offset named, commit only what is uploaded) turning sketch messages into ``sketches/``
objects (:mod:`stores.archive.sketch_io`). :class:`ArchiveSketchReader` answers ``POST
/v1/sketches/read`` with the contract of the other sketch tiers (:mod:`stores.sketches.read`).

Merging sketches is not idempotent, so a message must be merged exactly once, everywhere:

- in the writer, a redelivered record (an offset already buffered or uploaded) is skipped
  by the buffer, and a restarted writer resumes after the highest offset the objects name;
- in reads and compaction, which objects hold which messages is decided from the offset
  ranges in their names, never by merging "harmlessly" twice (:mod:`stores.archive.
  sketch_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from stores.archive.catalog import Catalog
from stores.archive.naming import DAY, Family
from stores.archive.objectstore import ObjectNotFound
from stores.archive.parquet_io import Meta, read_table
from stores.archive.plan import may_overlap
from stores.archive.reader import consistent
from stores.archive.sketch_compaction import ROLLUPS
from stores.archive.sketch_io import sketch_table, sketches_metadata, table_sketches
from stores.archive.sketch_plan import plan_reads, select_partitions
from stores.archive.store import ArchiveTierWriter
from stores.sketches.read import Sids, bucket_span
from strata.codec import SketchMessage, decode_sketches
from strata.sketch import SketchBatch, SketchParams

KIND = "archive-sketches"


class ArchiveSketchStore(ArchiveTierWriter[SketchMessage]):
    """Sketches topic -> ``sketches/...`` objects; advertises per-partition coverage."""

    kind = KIND
    family = Family.SKETCHES

    def __init__(
        self, topic: str, catalog: Catalog, *, params: SketchParams | None = None, **kw: Any
    ) -> None:
        super().__init__(topic, catalog, **kw)
        self.params = params or SketchParams()

    def decode(self, value: bytes) -> SketchMessage:
        return decode_sketches(value)

    def table(self, values: Sequence[SketchMessage]) -> tuple[pa.Table, dict[str, str]]:
        t = sketch_table(values, self.params)
        return t, sketches_metadata(t, 1, {})


class ArchiveSketchReader:
    """The archive's :class:`~stores.sketches.read.SketchTier`: reads any partition's
    objects (the read API's guard decides what this instance may answer)."""

    kind = KIND

    def __init__(self, catalog: Catalog, params: SketchParams | None = None) -> None:
        self._catalog = catalog
        self.params = params or SketchParams()

    def read_sketches(
        self, sids: Sids, start: int, end: int, step: int, partition: int | None = None
    ) -> SketchBatch:
        """Rows per (sid, ``step`` bucket) whose bucket start is in ``[start, end]``, each
        the merge of every archived sketch of the sid in the bucket, sorted by (sid,
        bucket); from the objects of ``partition`` only when given (the sids of one (org,
        metric) live in one partition: :mod:`stores.archive.reader`). Raises
        :class:`~stores.archive.reader.ReadRaced` if compaction kept deleting what was
        listed, :class:`~stores.archive.objectstore.ObjectStoreError`."""
        wanted = np.unique(np.asarray(sids, dtype=np.uint64))
        lo, hi = bucket_span(start, end, step) if step > 1 else (start, end)
        if wanted.size == 0 or lo > hi:
            return SketchBatch.empty(self.params)
        return consistent(start, end, lambda: self._read(wanted, lo, hi, step, partition))

    def _read(self, sids: Sids, lo: int, hi: int, step: int, partition: int | None) -> SketchBatch:
        # Selections are per (topic id, partition): one partition's listing gives that
        # partition's selections exactly as the whole family's listing does.
        selections = select_partitions(self._catalog.family(Family.SKETCHES, partition))
        footers: dict[str, Meta] = {}
        for sel in selections.values():
            for n in sel.ingest:
                meta = self._catalog.meta(n.key())
                if meta is None:  # compacted away since the listing: list again
                    raise ObjectNotFound(n.key())
                footers[n.key()] = meta
        rollups: dict[str, str] = {}
        for fam, fam_step in ROLLUPS:
            if fam_step == step:
                for name in self._catalog.family(fam, partition):
                    if name.day is not None and may_overlap(name, lo, hi):
                        rollups[name.stem] = name.key()
        reads = plan_reads(selections.values(), footers, rollups, lo, hi, step)
        parts: list[SketchBatch] = []
        for r in reads:
            t = read_table(self._catalog.objects.get(r.key), sids, lo, hi)
            if t.num_rows == 0:
                continue
            rows = table_sketches(t, self.params)
            if r.skip_days:
                day = rows.ts - rows.ts % DAY
                rows = rows.take(~np.isin(day, np.fromiter(r.skip_days, np.int64)))
            parts.append(rows)
        parts = [p for p in parts if len(p)]
        if not parts:
            return SketchBatch.empty(self.params)
        rows = SketchBatch.concat(parts)
        # Rows of one (sid, bucket) may come from several objects (a day's compacted object
        # and a later ingest object): each holds other messages, so merging is exact.
        return rows.rollup(step) if step > 1 else rows.merge_by_key()
