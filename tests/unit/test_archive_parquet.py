"""Archive Parquet format v1: the golden object still reads, and the writer still writes
the same schema, sort order, compression, statistics and footer metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stores.archive.parquet_io import (
    POINTS_FORMAT,
    POINTS_SCHEMA,
    SERIES_FORMAT,
    UnreadableObject,
    merge_points,
    points_metadata,
    points_table,
    read_meta,
    read_table,
    rollup_table,
    series_table,
    to_parquet,
)
from strata.codec import PointBatch, SeriesBatch
from strata.rollup import HOUR

GOLDEN = Path(__file__).parents[1] / "golden" / "archive_points_v1.parquet"
FOOTER = {
    "strata.partition": "3",
    "strata.first_offset": "1234",
    "strata.last_offset": "5678",
    "strata.max_append_ms": "1700000001000",
    "strata.topic": "strata.points",
    "strata.topic_id": "TID",
}
EXPECTED_ROWS = {
    "org": ["acme", "globex", "globex", "globex"],
    "metric": ["cpu.user", "system.load.1", "system.load.1", "system.load.1"],
    "sid": [9, 3, 7, 7],
    "ts": [1700000000, 1700000000, 1700000000, 1700000010],
    "value": [-4.0, 0.25, -2.0, 1.5],
}


def golden_input() -> list[PointBatch]:
    return [
        PointBatch(
            "globex",
            "system.load.1",
            np.array([7, 7, 3], np.uint64),
            np.array([1700000010, 1700000000, 1700000000], np.int64),
            np.array([1.5, -2.0, 0.25]),
        ),
        # A duplicate (sid, ts): the conflict rule keeps -4.0 (larger |value|).
        PointBatch(
            "acme",
            "cpu.user",
            np.array([9, 9], np.uint64),
            np.array([1700000000, 1700000000], np.int64),
            np.array([-4.0, 3.0]),
        ),
    ]


def check_file(data: bytes) -> None:
    f = pq.ParquetFile(pa.BufferReader(data))
    assert f.schema_arrow.remove_metadata() == POINTS_SCHEMA
    md = {k.decode(): v.decode() for k, v in (f.schema_arrow.metadata or {}).items()}
    assert md["strata.format"] == POINTS_FORMAT
    assert {k: md[k] for k in FOOTER} == FOOTER
    assert (md["strata.min_ts"], md["strata.max_ts"], md["strata.rows"]) == (
        "1700000000",
        "1700000010",
        "4",
    )
    rg = f.metadata.row_group(0)
    for i in range(rg.num_columns):
        col = rg.column(i)
        assert col.compression == "ZSTD"
        assert col.statistics is not None and col.statistics.has_min_max
    t = f.read()
    assert t.to_pydict() == EXPECTED_ROWS


def test_golden_object_reads() -> None:
    data = GOLDEN.read_bytes()
    check_file(data)
    meta = read_meta(data)
    assert (meta.rows, meta.min_ts, meta.max_ts, meta.max_append_ms) == (
        4,
        1700000000,
        1700000010,
        1700000001000,
    )


def test_writer_still_writes_the_golden_format() -> None:
    t = points_table(golden_input())
    data = to_parquet(t, points_metadata(t, FOOTER), 1024)
    check_file(data)
    # The physical encodings are the writer's choice, not the format: the golden object
    # (dictionary-encoded ts) reads the same as the writer's delta-encoded one.
    rg = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0)
    encodings = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(5)}
    assert "DELTA_BINARY_PACKED" in encodings["ts"]
    assert all("DELTA_BINARY_PACKED" not in encodings[c] for c in ("sid", "value"))
    assert any("DICTIONARY" in e for e in encodings["value"])


def test_filters_prune_by_sid_and_time() -> None:
    data = GOLDEN.read_bytes()
    t = read_table(data, np.array([7], np.uint64), 1700000005, 1700000020)
    assert t["value"].to_pylist() == [1.5]


def test_merge_resolves_across_objects_and_keeps_order() -> None:
    a = points_table(golden_input()[:1])
    b = points_table(golden_input()[1:])
    merged = merge_points([b, a, a])
    assert merged.to_pydict() == EXPECTED_ROWS


def test_rollups_keep_org_and_metric() -> None:
    r = rollup_table(points_table(golden_input()), HOUR)
    assert r["org"].to_pylist() == ["acme", "globex", "globex"]
    assert r["count"].to_pylist() == [1, 1, 2]
    assert r["ts"].to_pylist() == [1700000000 - 1700000000 % HOUR] * 3


def test_series_table() -> None:
    b = SeriesBatch(
        "acme",
        "cpu",
        np.array([1, 2], np.uint64),
        np.array([0, 3600], np.int64),
        np.array([0, 1], np.uint8),
        np.array([10, 0], np.uint32),
        (("env:prod", "host:a"), ()),
    )
    t = series_table([b])
    assert t["tags"].to_pylist() == [["env:prod", "host:a"], []]
    # Written, the bucket is delta-encoded and every other column, the tags' values
    # included, keeps its dictionary; it reads back the same.
    data = to_parquet(t, {"strata.format": SERIES_FORMAT}, 1024)
    f = pq.ParquetFile(pa.BufferReader(data))
    rg = f.metadata.row_group(0)
    encodings = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(7)}
    assert "DELTA_BINARY_PACKED" in encodings.pop("bucket")
    assert set(encodings) == {"org", "metric", "sid", "mtype", "interval", "tags.list.element"}
    assert all("RLE_DICTIONARY" in e for e in encodings.values())
    assert f.read().to_pydict() == t.to_pydict()


def test_garbage_is_unreadable() -> None:
    with pytest.raises(UnreadableObject):
        read_meta(b"not parquet")
    plain = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1]}), plain)
    with pytest.raises(UnreadableObject):
        read_meta(plain.getvalue().to_pybytes())


def test_points_table_is_the_conflict_rule_per_point_whatever_the_batch_order() -> None:
    """Many batches of a few (org, metric) keys, interleaved, with duplicate points within
    and across batches (and the same sid under two keys): one row per (org, metric, sid,
    ts), the conflict rule's winner, sorted; the same table for any order of the batches."""
    rng = np.random.default_rng(11)
    keys = [("acme", "cpu"), ("acme", "mem"), ("globex", "cpu"), ("b", "a")]
    batches = []
    for _ in range(60):
        org, metric = keys[int(rng.integers(len(keys)))]
        n = int(rng.integers(0, 30))
        batches.append(
            PointBatch(
                org,
                metric,
                rng.integers(1, 6, n).astype(np.uint64),
                (1_700_000_000 + 10 * rng.integers(0, 8, n)).astype(np.int64),
                rng.choice([-3.0, -1.0, 0.0, -0.0, 1.0, 2.5, 3.0], n),
            )
        )
    want: dict[tuple[str, str, int, int], float] = {}
    for b in batches:
        for s, t, v in zip(b.sid.tolist(), b.ts.tolist(), b.value.tolist(), strict=True):
            k = (b.org, b.metric, s, t)
            old = want.get(k)
            # The conflict rule: larger |value|, then larger value, then +0.0 over -0.0.
            if old is None or (abs(v), v, not np.signbit(v)) > (abs(old), old, not np.signbit(old)):
                want[k] = v
    rows = sorted(want.items())
    table = points_table(batches)
    assert table.column("org").to_pylist() == [k[0] for k, _ in rows]
    assert table.column("metric").to_pylist() == [k[1] for k, _ in rows]
    assert table.column("sid").to_pylist() == [k[2] for k, _ in rows]
    assert table.column("ts").to_pylist() == [k[3] for k, _ in rows]
    got = table.column("value").to_numpy()
    assert got.view(np.uint64).tolist() == np.array([v for _, v in rows]).view(np.uint64).tolist()
    for _ in range(3):
        shuffled = [batches[i] for i in rng.permutation(len(batches))]
        assert points_table(shuffled).equals(table)


def test_points_table_of_empty_batches_is_an_empty_table() -> None:
    """A points message may hold no points (the codec allows it): a buffer of only such
    messages makes an empty object instead of failing its upload over and over."""
    empty = PointBatch(
        "acme", "cpu", np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.float64)
    )
    table = points_table([empty, empty])
    assert table.num_rows == 0
    assert table.schema.equals(POINTS_SCHEMA)
    assert merge_points([table]).num_rows == 0
