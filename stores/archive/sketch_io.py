"""Tables <-> sketch batches for archive sketch objects (docs/formats.md, "Archive sketch
objects"). No I/O.

Every sketch object (ingest, compacted day, 1 m and 1 h rollups) has the columns ``org,
metric`` (dictionary strings), ``sid: uint64``, ``ts: int64`` (the timestamp, or the bucket
start in rollup objects) and ``sketch: large_binary`` — the row's DDSketch in the sketch
encoding (:mod:`stores.archive.sketch_column`). Rows are sorted by (org, metric, sid, ts),
one per (org, metric, sid, ts). Footer ``strata.format`` = :data:`SKETCHES_FORMAT`,
``strata.step`` the seconds one row spans (1, 60 or 3600).

Merging rows is exact but not idempotent: every function here merges what it is given, so
callers hand each message's rows in exactly once (by offsets, :mod:`stores.archive.
sketch_plan`). The work is columnar: one decode of all cells, one group merge per (org,
metric), one encode — never a loop per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from stores.archive.parquet_io import SKETCHES_FORMAT, UnreadableObject, org_metric_ranks
from stores.archive.sketch_column import decode_cells, encode_cells
from strata.codec import SketchMessage
from strata.sketch import SketchBatch, SketchParams
from strata.sketch_codec import UnreadableSketch

_STR = pa.dictionary(pa.int32(), pa.string())
SKETCHES_SCHEMA = pa.schema(
    [
        ("org", _STR),
        ("metric", _STR),
        ("sid", pa.uint64()),
        ("ts", pa.int64()),
        ("sketch", pa.large_binary()),
    ]
)

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Keyed:
    """Decoded sketch rows with their (org, metric): ``keys[code[i]]`` is row ``i``'s.

    Kept between decode and encode so that compaction decodes a day once and encodes it
    and its rollups from the same rows. Rows are sorted by (org, metric, sid, ts) and one
    per (org, metric, sid, ts) once built by :meth:`merged`."""

    keys: list[tuple[str, str]]
    code: I32
    batch: SketchBatch

    @classmethod
    def merged(
        cls, keys: Sequence[tuple[str, str]], code: I32, batch: SketchBatch, step: int = 1
    ) -> Keyed:
        """``batch``'s rows merged per (key, sid, ``step`` bucket); ``keys`` sorted."""
        if code.size == 0:
            return cls(list(keys), np.empty(0, np.int32), SketchBatch.empty(batch.params))
        # Per (org, metric): sids are only unique within one. One merge per key, not per
        # row; keys are ranked so the concatenation is sorted by (org, metric, sid, ts).
        order = np.argsort(code, kind="stable")
        code = code[order]
        bounds = np.flatnonzero(np.diff(code)) + 1
        parts: list[SketchBatch] = []
        codes: list[I32] = []
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, code.size], strict=True):
            rows = batch.take(order[lo:hi])
            merged = rows.merge_by_key(rows.sid, rows.ts - rows.ts % step)
            parts.append(merged)
            codes.append(np.full(len(merged), code[lo], dtype=np.int32))
        return cls(list(keys), np.concatenate(codes), SketchBatch.concat(parts))

    def rollup(self, step: int) -> Keyed:
        """Rows merged per (org, metric, sid, ``step`` bucket), ``ts`` the bucket start."""
        return Keyed.merged(self.keys, self.code, self.batch, step)

    def take(self, mask: npt.NDArray[np.bool_]) -> Keyed:
        return Keyed(self.keys, self.code[mask], self.batch.take(mask))

    def table(self) -> pa.Table:
        """Encoded: :data:`SKETCHES_SCHEMA`, in row order."""
        offsets, data = encode_cells(self.batch)
        cells = pa.Array.from_buffers(
            pa.large_binary(), len(self.batch), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )

        def dictionary(values: Sequence[str]) -> pa.Array:
            return pa.DictionaryArray.from_arrays(
                pa.array(self.code, pa.int32()), pa.array(values, pa.string())
            )

        return pa.Table.from_arrays(
            [
                dictionary([k[0] for k in self.keys]),
                dictionary([k[1] for k in self.keys]),
                pa.array(self.batch.sid, pa.uint64()),
                pa.array(self.batch.ts, pa.int64()),
                cells,
            ],
            schema=SKETCHES_SCHEMA,
        )


def sketch_table(messages: Sequence[SketchMessage], params: SketchParams) -> pa.Table:
    """One sorted table of the rows of ``messages`` (each taken once), merged per (org,
    metric, sid, ts), in ``params``."""
    if not messages:
        return SKETCHES_SCHEMA.empty_table()
    keys = sorted({(m.org, m.metric) for m in messages})
    rank = {k: i for i, k in enumerate(keys)}
    code = np.concatenate(
        [np.full(len(m), rank[(m.org, m.metric)], dtype=np.int32) for m in messages]
    )
    batch = SketchBatch.concat([m.batch.convert(params) for m in messages])
    return Keyed.merged(keys, code, batch).table()


def table_sketches(t: pa.Table, params: SketchParams | None = None) -> SketchBatch:
    """The rows of a sketch table as a batch (in ``params`` if given). Raises
    :class:`UnreadableObject` for a cell that is not a sketch."""
    if t.num_rows == 0:
        return SketchBatch.empty(params or SketchParams())
    cells = t.column("sketch").combine_chunks()
    if cells.null_count:
        raise UnreadableObject("a sketch object holds a null sketch")
    if not pa.types.is_large_binary(cells.type):
        cells = cells.cast(pa.large_binary())
    _, offsets_buf, data_buf = cells.buffers()
    assert offsets_buf is not None and data_buf is not None
    at = cells.offset
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[at : at + len(cells) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    try:
        return decode_cells(
            offsets, data, t.column("sid").to_numpy(), t.column("ts").to_numpy(), params
        )
    except UnreadableSketch as exc:
        raise UnreadableObject(f"unreadable sketch cell: {exc.reason}") from exc


def keyed_rows(tables: Sequence[pa.Table], params: SketchParams) -> Keyed:
    """The rows of ``tables`` decoded once and merged per (org, metric, sid, ts)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return Keyed([], np.empty(0, np.int32), SketchBatch.empty(params))
    t = pa.concat_tables([_normalize(x) for x in tables]).combine_chunks()
    sorted_keys, codes = org_metric_ranks(t)
    return Keyed.merged(sorted_keys, codes, table_sketches(t, params))


def merge_sketch_tables(
    tables: Sequence[pa.Table], params: SketchParams, step: int = 1
) -> pa.Table:
    """The rows of ``tables`` merged per (org, metric, sid, ``step`` bucket), sorted; with
    ``step`` > 1 the rows' ``ts`` becomes the bucket start (a rollup)."""
    rows = keyed_rows(tables, params)
    if len(rows.batch) == 0:
        return SKETCHES_SCHEMA.empty_table()
    return (rows if step == 1 else rows.rollup(step)).table()


def _normalize(t: pa.Table) -> pa.Table:
    """Cast to :data:`SKETCHES_SCHEMA` (dictionaries differ between files)."""
    cols = [t.column(n).cast(pa.string()).dictionary_encode().cast(_STR) for n in ("org", "metric")]
    cells = t.column("sketch").cast(pa.large_binary())
    return pa.Table.from_arrays(
        [*cols, t.column("sid"), t.column("ts"), cells], schema=SKETCHES_SCHEMA
    )


def sketches_metadata(table: pa.Table, step: int, extra: dict[str, str]) -> dict[str, str]:
    """Footer of a sketch object: format, step, rows and time range (``0``/``-1`` empty)."""
    rng = pc.min_max(table.column("ts")) if table.num_rows else None
    return {
        "strata.format": SKETCHES_FORMAT,
        "strata.step": str(step),
        "strata.rows": str(table.num_rows),
        "strata.min_ts": str(rng["min"].as_py() if rng else 0),
        "strata.max_ts": str(rng["max"].as_py() if rng else -1),
        **extra,
    }
