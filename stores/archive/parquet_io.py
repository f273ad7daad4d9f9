"""Tables <-> Parquet bytes for archive objects (docs/formats.md, "Archive objects"). No I/O.

Points objects: columns ``org, metric`` (dictionary-encoded strings), ``sid: uint64,
ts: int64, value: float64``, sorted by (org, metric, sid, ts), one row per (sid, ts)
(duplicates resolved by :func:`strata.conflict.resolve`), zstd, row-group statistics on,
and key-value metadata ``strata.*`` (format version, partition, offsets, time range).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from strata.codec import PointBatch, SeriesBatch
from strata.conflict import resolve
from strata.rollup import Rollups

POINTS_FORMAT = "strata-archive-points/1"
SERIES_FORMAT = "strata-archive-series/1"
ROLLUPS_FORMAT = "strata-archive-rollups-1h/1"
#: sketch objects of every kind (ingest, compacted, rollups): stores/archive/sketch_io.py
SKETCHES_FORMAT = "strata-archive-sketches/1"

_STR = pa.dictionary(pa.int32(), pa.string())
POINTS_SCHEMA = pa.schema(
    [
        ("org", _STR),
        ("metric", _STR),
        ("sid", pa.uint64()),
        ("ts", pa.int64()),
        ("value", pa.float64()),
    ]
)
SERIES_SCHEMA = pa.schema(
    [
        ("org", _STR),
        ("metric", _STR),
        ("sid", pa.uint64()),
        ("bucket", pa.int64()),
        ("mtype", pa.uint8()),
        ("interval", pa.uint32()),
        ("tags", pa.list_(pa.string())),
    ]
)
ROLLUP_SCHEMA = pa.schema(
    [
        ("org", _STR),
        ("metric", _STR),
        ("sid", pa.uint64()),
        ("ts", pa.int64()),
        ("count", pa.int64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("last", pa.float64()),
        ("last_ts", pa.int64()),
    ]
)


class UnreadableObject(ValueError):
    """An object that is not an archive Parquet file of a version we know."""


@dataclass(frozen=True, slots=True)
class Meta:
    """What an object's footer says about it (cached by object name: objects are immutable)."""

    rows: int
    min_ts: int
    max_ts: int
    max_append_ms: int


def _dict_column(values: Sequence[str], codes: npt.NDArray[np.int32]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(values, pa.string())
    )


def points_table(batches: Sequence[PointBatch]) -> pa.Table:
    """One sorted, duplicate-free table from point batches (any order, any repeats)."""
    if not batches:
        return POINTS_SCHEMA.empty_table()
    keys = sorted({(b.org, b.metric) for b in batches})
    rank = {k: i for i, k in enumerate(keys)}
    # Each batch is one (org, metric): order the batches, not their points, by its rank.
    # The order inside a key does not matter, as resolve's answer does not depend on it.
    ranked = sorted(batches, key=lambda b: rank[(b.org, b.metric)])
    code = np.repeat(
        np.array([rank[(b.org, b.metric)] for b in ranked], dtype=np.int32),
        [len(b) for b in ranked],
    )
    sid = np.concatenate([b.sid for b in ranked])
    ts = np.concatenate([b.ts for b in ranked])
    value = np.concatenate([b.value for b in ranked])
    return _resolved_table(keys, code, sid, ts, value, grouped=True)


def _resolved_table(
    keys: Sequence[tuple[str, str]],
    code: npt.NDArray[np.int32],
    sid: npt.NDArray[np.uint64],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    *,
    grouped: bool = False,
) -> pa.Table:
    """Rows -> the table sorted by (org, metric, sid, ts), one row per point; ``grouped``:
    the rows are in ascending ``code`` order already."""
    if code.size == 0:  # e.g. only empty points messages: valid, and nothing to resolve
        return POINTS_SCHEMA.empty_table()
    if not grouped:
        order = np.argsort(code, kind="stable")
        code, sid, ts, value = code[order], sid[order], ts[order], value[order]
    # Resolve per (org, metric): sids are only unique within one. One resolve call per
    # key, not per point; keys are ranked so the concatenation is sorted by (org, metric).
    parts_c, parts_s, parts_t, parts_v = [], [], [], []
    bounds = np.flatnonzero(np.diff(code)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, code.size], strict=True):
        s, t, v = resolve(sid[lo:hi], ts[lo:hi], value[lo:hi])
        parts_c.append(np.full(s.size, code[lo], dtype=np.int32))
        parts_s.append(s)
        parts_t.append(t)
        parts_v.append(v)
    c = np.concatenate(parts_c)
    return pa.Table.from_arrays(
        [
            _dict_column([k[0] for k in keys], c),
            _dict_column([k[1] for k in keys], c),
            pa.array(np.concatenate(parts_s), pa.uint64()),
            pa.array(np.concatenate(parts_t), pa.int64()),
            pa.array(np.concatenate(parts_v), pa.float64()),
        ],
        schema=POINTS_SCHEMA,
    )


def org_metric_ranks(t: pa.Table) -> tuple[list[tuple[str, str]], npt.NDArray[np.int32]]:
    """The distinct (org, metric) keys of a table's rows, sorted, and each row's index in
    them: what orders merged output by (org, metric) with one sort of the keys, not rows."""
    org = t["org"].combine_chunks().cast(pa.string()).dictionary_encode()
    metric = t["metric"].combine_chunks().cast(pa.string()).dictionary_encode()
    orgs, metrics = org.dictionary.to_pylist(), metric.dictionary.to_pylist()
    width = max(1, len(metrics))
    pair = org.indices.to_numpy().astype(np.int64) * width + metric.indices.to_numpy()
    uniq, inverse = np.unique(pair, return_inverse=True)
    keys = [(orgs[u // width], metrics[u % width]) for u in uniq.tolist()]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    rank = np.empty(len(keys), dtype=np.int32)
    rank[order] = np.arange(len(keys), dtype=np.int32)
    return [keys[i] for i in order], rank[inverse]


def merge_points(tables: Sequence[pa.Table]) -> pa.Table:
    """Union of points tables, re-sorted, duplicates resolved by the conflict rule."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return POINTS_SCHEMA.empty_table()
    t = pa.concat_tables([normalize_points(x) for x in tables]).combine_chunks()
    keys, codes = org_metric_ranks(t)
    return _resolved_table(
        keys,
        codes,
        t.column("sid").to_numpy(),
        t.column("ts").to_numpy(),
        t.column("value").to_numpy(),
    )


def normalize_points(t: pa.Table) -> pa.Table:
    """Cast to :data:`POINTS_SCHEMA` (dictionaries differ between files)."""
    cols = [t.column(n).cast(pa.string()).dictionary_encode() for n in ("org", "metric")]
    rest = [t.column(n) for n in ("sid", "ts", "value")]
    return pa.Table.from_arrays(
        [c.cast(_STR) for c in cols] + rest, schema=POINTS_SCHEMA
    ).combine_chunks()


def series_table(batches: Sequence[SeriesBatch]) -> pa.Table:
    if not batches:
        return SERIES_SCHEMA.empty_table()
    # No Python work per row: org/metric are per-batch dictionary codes repeated over the
    # rows; the tag tuples are converted by pyarrow's C++ sequence converter in one call.
    lengths = np.array([len(b) for b in batches], dtype=np.int64)
    tags = list(itertools.chain.from_iterable(b.tags for b in batches))
    return pa.Table.from_arrays(
        [
            _repeated([b.org for b in batches], lengths),
            _repeated([b.metric for b in batches], lengths),
            pa.array(np.concatenate([b.sid for b in batches]), pa.uint64()),
            pa.array(np.concatenate([b.bucket for b in batches]), pa.int64()),
            pa.array(np.concatenate([b.mtype for b in batches]), pa.uint8()),
            pa.array(np.concatenate([b.interval for b in batches]), pa.uint32()),
            pa.array(tags, pa.list_(pa.string())),
        ],
        schema=SERIES_SCHEMA,
    )


def _repeated(per_batch: Sequence[str], lengths: npt.NDArray[np.int64]) -> pa.Array:
    """A dictionary column holding ``per_batch[i]`` for each of the ``lengths[i]`` rows."""
    uniq = sorted(set(per_batch))
    rank = {v: i for i, v in enumerate(uniq)}
    codes = np.array([rank[v] for v in per_batch], dtype=np.int32)
    return _dict_column(uniq, np.repeat(codes, lengths))


def rollup_table(points: pa.Table, step: int) -> pa.Table:
    """``step``-second rollups of a points table (resolved first), keeping org/metric."""
    from strata.rollup import rollup

    if points.num_rows == 0:
        return ROLLUP_SCHEMA.empty_table()
    merged = merge_points([points])
    # merge_points gives org and metric the same dictionary codes, sorted by (org, metric):
    # one rollup call per (org, metric) run of rows.
    org = merged["org"].combine_chunks()
    metric = merged["metric"].combine_chunks()
    code = org.indices.to_numpy()
    sid, ts, value = (merged[n].to_numpy() for n in ("sid", "ts", "value"))
    bounds = np.flatnonzero(np.diff(code)) + 1
    parts = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, code.size], strict=True):
        r = rollup(sid[lo:hi], ts[lo:hi], value[lo:hi], step)
        n = len(r)
        c = int(code[lo])
        parts.append(
            pa.Table.from_arrays(
                [
                    _dict_column([org.dictionary[c].as_py()], np.zeros(n, np.int32)),
                    _dict_column([metric.dictionary[c].as_py()], np.zeros(n, np.int32)),
                    *rollups_arrays(r),
                ],
                schema=ROLLUP_SCHEMA,
            )
        )
    return pa.concat_tables(parts).combine_chunks()


def table_rollups(t: pa.Table) -> Rollups:
    """The :class:`Rollups` columns of a rollups table."""
    if t.num_rows == 0:
        return Rollups.empty()
    cols = [t[n].to_numpy() for n in ("sid", "ts", "count", "sum", "min", "max", "last", "last_ts")]
    return Rollups(*cols)


def rollups_arrays(r: Rollups) -> list[pa.Array]:
    return [
        pa.array(r.sid, pa.uint64()),
        pa.array(r.bucket, pa.int64()),
        pa.array(r.count, pa.int64()),
        pa.array(r.sum, pa.float64()),
        pa.array(r.min, pa.float64()),
        pa.array(r.max, pa.float64()),
        pa.array(r.last, pa.float64()),
        pa.array(r.last_ts, pa.int64()),
    ]


def to_parquet(table: pa.Table, metadata: dict[str, str], row_group_rows: int) -> bytes:
    """Serialize with zstd and statistics; ``metadata`` goes into the footer."""
    meta = dict(table.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in metadata.items()})
    sink = pa.BufferOutputStream()
    encodings = column_encodings(table.schema)
    pq.write_table(
        table.replace_schema_metadata(meta),
        sink,
        compression="zstd",
        write_statistics=True,
        row_group_size=row_group_rows,
        use_dictionary=_dictionary_columns(table.schema, encodings),
        column_encoding=encodings,
    )
    return bytes(sink.getvalue().to_pybytes())


def column_encodings(schema: pa.Schema) -> dict[str, str]:
    """Parquet encodings chosen per column: 64-bit integers (times, buckets, counts) as
    deltas, a few bits each when sorted by time within a series, where the dictionary
    Parquet tries by default holds every distinct time once. Every other column keeps its
    dictionary: floats too, since gauges with few significant digits repeat values
    (byte-stream-split measured 1.63 against 1.35 bytes per point on bench_archive's
    gauges; docs/archive.md)."""
    return {f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_int64(f.type)}


def _dictionary_columns(schema: pa.Schema, encoded: dict[str, str]) -> list[str]:
    """The Parquet columns (leaf paths) of the fields not in ``encoded``: the writer names
    a list's values ``<name>.list.element``, and a top-level name alone would leave them
    without their dictionary."""
    return [
        f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name
        for f in schema
        if f.name not in encoded
    ]


def points_metadata(table: pa.Table, extra: dict[str, str]) -> dict[str, str]:
    ts = table.column("ts")
    rng = pc.min_max(ts) if table.num_rows else None
    return {
        "strata.format": POINTS_FORMAT,
        "strata.rows": str(table.num_rows),
        "strata.min_ts": str(rng["min"].as_py() if rng else 0),
        "strata.max_ts": str(rng["max"].as_py() if rng else -1),
        **extra,
    }


_MAGIC = b"PAR1"
FOOTER_GUESS = 64 * 1024  # bytes read from an object's end to find its footer at once


def footer_size(tail: bytes) -> int:
    """Bytes at the end of a Parquet file that hold its footer (metadata + length +
    magic), from any tail of it at least 8 bytes long."""
    if len(tail) < 8 or tail[-4:] != _MAGIC:
        raise UnreadableObject("not a Parquet file (no footer magic)")
    return int.from_bytes(tail[-8:-4], "little") + 8


def read_meta(data: bytes) -> Meta:
    """The footer summary from a whole object or from any tail of it holding the
    footer (:func:`footer_size` bytes): only the footer is parsed."""
    try:
        md = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableObject(str(exc)) from exc
    get = {k.decode(): v.decode() for k, v in md.items()}
    fmt = get.get("strata.format", "")
    if fmt not in (POINTS_FORMAT, ROLLUPS_FORMAT, SERIES_FORMAT, SKETCHES_FORMAT):
        raise UnreadableObject(f"unknown archive format {fmt!r}")
    return Meta(
        rows=int(get.get("strata.rows", "0")),
        min_ts=int(get.get("strata.min_ts", "0")),
        max_ts=int(get.get("strata.max_ts", "-1")),
        max_append_ms=int(get.get("strata.max_append_ms", "0")),
    )


def read_table(
    data: bytes,
    sids: npt.NDArray[np.uint64] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> pa.Table:
    """Rows of a points, rollups or sketch object, filtered on sid and ts (row groups whose
    statistics exclude the filter are skipped)."""
    filters: list[tuple[str, str, object]] = []
    if sids is not None:
        filters.append(("sid", "in", pa.array(sids, pa.uint64())))
    if start is not None:
        filters.append(("ts", ">=", start))
    if end is not None:
        filters.append(("ts", "<=", end))
    try:
        return pq.read_table(pa.BufferReader(data), filters=filters or None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableObject(str(exc)) from exc
