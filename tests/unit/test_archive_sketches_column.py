"""Archive sketch objects, format v1: the sketch column is the kernel's sketch encoding row by
row (checked against ``strata.sketch_codec`` for every cell), tables round-trip, and the
golden object written by the first writer still reads and is still what the writer writes.

Expected sketches are built with :meth:`Sketch.from_values` from the submitted values, never
with the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.archive.parquet_io import SKETCHES_FORMAT, UnreadableObject, read_meta, to_parquet
from stores.archive.sketch_column import decode_cells, encode_cells
from stores.archive.sketch_io import (
    SKETCHES_SCHEMA,
    merge_sketch_tables,
    sketch_table,
    sketches_metadata,
    table_sketches,
)
from strata.codec import SketchMessage
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import UnreadableSketch, decode_sketch, encode_sketch

GOLDEN = Path(__file__).parents[1] / "golden" / "archive_sketches_v1.parquet"
P = SketchParams()
FOOTER = {
    "strata.partition": "3",
    "strata.first_offset": "1234",
    "strata.last_offset": "5678",
    "strata.max_append_ms": "1700000001000",
    "strata.topic": "strata.sketches",
    "strata.topic_id": "TID",
}
WEIGHTED = Sketch.from_bins(P, [10, 12], [0.5, 1.25], zero_count=0.25, sum=2.5, min=0.0, max=1.13)


def golden_input() -> list[SketchMessage]:
    """Two orgs; one (sid, ts) arrives in two messages (merged in the object); one sketch
    has fractional counts (the encoding's float-counts flag)."""
    lat = SketchBatch.from_ragged(
        P, [9, 9], [1700000010, 1700000000], [0, 3, 6], [-3.0, 0.0, 2.0, 0.5, 1.0, 250.0]
    )
    again = SketchBatch.from_ragged(P, [9], [1700000000], [0, 1], [3.0])
    weighted = SketchBatch.from_sketches([3], [1700000005], [WEIGHTED])
    return [
        SketchMessage("globex", "db.query", weighted),
        SketchMessage("acme", "request.latency", lat),
        SketchMessage("acme", "request.latency", again),
    ]


EXPECTED = [
    ("acme", "request.latency", 9, 1700000000, Sketch.from_values([0.5, 1.0, 250.0, 3.0])),
    ("acme", "request.latency", 9, 1700000010, Sketch.from_values([-3.0, 0.0, 2.0])),
    ("globex", "db.query", 3, 1700000005, WEIGHTED),
]


def check_file(data: bytes) -> None:
    f = pq.ParquetFile(pa.BufferReader(data))
    assert f.schema_arrow.remove_metadata() == SKETCHES_SCHEMA
    md = {k.decode(): v.decode() for k, v in (f.schema_arrow.metadata or {}).items()}
    assert md["strata.format"] == SKETCHES_FORMAT == "strata-archive-sketches/1"
    assert md["strata.step"] == "1"
    assert {k: md[k] for k in FOOTER} == FOOTER
    assert (md["strata.rows"], md["strata.min_ts"], md["strata.max_ts"]) == (
        "3",
        "1700000000",
        "1700000010",
    )
    rg = f.metadata.row_group(0)
    for i in range(rg.num_columns):
        assert rg.column(i).compression == "ZSTD"
    t = f.read()
    rows = list(zip(*(t[c].to_pylist() for c in ("org", "metric", "sid", "ts")), strict=True))
    assert rows == [e[:4] for e in EXPECTED]
    # Every cell is the kernel's encoding of the expected sketch, byte for byte.
    for cell, expected in zip(t["sketch"].to_pylist(), EXPECTED, strict=True):
        assert cell == encode_sketch(expected[4])
        assert decode_sketch(cell) == expected[4]
    batch = table_sketches(t)
    assert [batch.row(i) for i in range(3)] == [e[4] for e in EXPECTED]


def test_golden_object_reads() -> None:
    data = GOLDEN.read_bytes()
    check_file(data)
    meta = read_meta(data)
    assert (meta.rows, meta.min_ts, meta.max_ts, meta.max_append_ms) == (
        3,
        1700000000,
        1700000010,
        1700000001000,
    )


def test_writer_still_writes_the_golden_format() -> None:
    t = sketch_table(golden_input(), P)
    data = to_parquet(t, sketches_metadata(t, 1, FOOTER), 1024)
    check_file(data)
    golden = pq.read_table(pa.BufferReader(GOLDEN.read_bytes()))
    assert t["sketch"].to_pylist() == golden["sketch"].to_pylist()


def random_batch(seed: int, n: int) -> SketchBatch:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 40, n)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    signs = rng.choice([-1.0, 1.0, 0.0], int(offsets[-1]), p=[0.2, 0.7, 0.1])
    values = np.round(rng.lognormal(2, 2, int(offsets[-1])), 6) * signs
    return SketchBatch.from_ragged(
        P, rng.integers(0, 50, n).astype(np.uint64), rng.integers(0, 10**6, n), offsets, values
    )


@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.booleans())
@settings(max_examples=60, deadline=None)
def test_cells_are_the_kernel_encoding_of_each_row(seed: int, n: int, weighted: bool) -> None:
    batch = random_batch(seed, n)
    if weighted:  # some rows with fractional counts, others with integer ones
        extra = SketchBatch.from_sketches([1, 2], [5, 6], [WEIGHTED, Sketch.from_values([7.0])])
        batch = SketchBatch.concat([extra, batch])
    offsets, data = encode_cells(batch)
    assert offsets[0] == 0 and offsets[-1] == data.size
    for i in range(len(batch)):
        assert data[offsets[i] : offsets[i + 1]].tobytes() == encode_sketch(batch.row(i))
    back = decode_cells(offsets, data, batch.sid, batch.ts)
    assert back.sid.tolist() == batch.sid.tolist() and back.ts.tolist() == batch.ts.tolist()
    for i in range(len(batch)):
        assert back.row(i) == batch.row(i)


def test_cells_of_other_parameters_are_converted_and_broken_ones_named() -> None:
    coarse = SketchParams(0.05, 128)
    batch = SketchBatch.from_values(coarse, [1, 2], [0, 0], [3.0, 5.0])
    mixed = [encode_sketch(batch.row(0)), encode_sketch(Sketch.from_values([2.0, 4.0]))]
    offsets = np.array([0, len(mixed[0]), len(mixed[0]) + len(mixed[1])], np.int64)
    data = np.frombuffer(b"".join(mixed), np.uint8)
    sid, ts = np.array([1, 2], np.uint64), np.array([0, 0], np.int64)
    got = decode_cells(offsets, data, sid, ts, P)  # the slow path, each cell converted
    assert got.params == P and got.row(0) == batch.row(0).convert(P)
    assert got.row(1) == Sketch.from_values([2.0, 4.0])
    broken = data.copy()
    broken[offsets[1] + 2] = 9  # version 9 in the second cell
    with pytest.raises(UnreadableSketch, match="version 9"):
        decode_cells(offsets, broken, sid, ts)
    t = sketch_table([SketchMessage("acme", "m", batch)], P)
    cells = pa.array([b"SK\x01nonsense"], pa.large_binary())
    bad = t.slice(0, 1).set_column(4, "sketch", cells)
    with pytest.raises(UnreadableObject, match="unreadable sketch cell"):
        table_sketches(bad)


def test_table_round_trip_merges_each_message_once_and_sorts() -> None:
    """Merging is exact: a table's rows equal the sketches of every value sent for them,
    whatever way the values were split across messages and tables."""
    rng = np.random.default_rng(3)
    values: dict[tuple[str, int, int], list[float]] = {}
    messages = []
    for _ in range(30):
        org = str(rng.choice(["acme", "globex"]))
        n = int(rng.integers(1, 8))
        sid = rng.integers(1, 4, n).astype(np.uint64) + (10 if org == "globex" else 0)
        ts = 1_700_000_000 + rng.integers(0, 300, n)
        sizes = rng.integers(1, 10, n)
        vs = np.round(rng.lognormal(1, 1, int(sizes.sum())), 3)
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        for i in range(n):
            key = (org, int(sid[i]), int(ts[i]))
            values.setdefault(key, []).extend(vs[offsets[i] : offsets[i + 1]].tolist())
        messages.append(SketchMessage(org, "lat", SketchBatch.from_ragged(P, sid, ts, offsets, vs)))
    tables = [sketch_table(messages[i : i + 7], P) for i in range(0, 30, 7)]
    merged = merge_sketch_tables(tables, P)
    cols = (merged[c].to_pylist() for c in ("org", "sid", "ts"))
    keys = list(zip(*cols, strict=True))
    assert keys == sorted(values)
    rows = table_sketches(merged)
    for i, key in enumerate(keys):
        assert_same(rows.row(i), Sketch.from_values(values[key]))
    # A rollup: per (org, sid, minute), the sketch of the minute's values.
    minutes = merge_sketch_tables(tables, P, 60)
    per_minute: dict[tuple[str, int, int], list[float]] = {}
    for (o, s, t), got_values in values.items():
        per_minute.setdefault((o, s, t - t % 60), []).extend(got_values)
    got = table_sketches(minutes)
    mkeys = list(
        zip(minutes["org"].to_pylist(), minutes["sid"].to_pylist(), got.ts.tolist(), strict=True)
    )
    assert mkeys == sorted(per_minute)
    for i, key in enumerate(mkeys):
        assert_same(got.row(i), Sketch.from_values(per_minute[key]))


def test_empty_messages_make_an_empty_object() -> None:
    empty = SketchMessage("acme", "m", SketchBatch.empty(P))
    t = sketch_table([empty, empty], P)
    assert t.num_rows == 0 and t.schema == SKETCHES_SCHEMA
    assert sketches_metadata(t, 1, {})["strata.max_ts"] == "-1"
    assert len(table_sketches(t)) == 0 and merge_sketch_tables([t], P, 60).num_rows == 0


def assert_same(got: Sketch, want: Sketch) -> None:
    """Bin for bin and count/min/max exactly; the sum to float rounding."""
    assert (got.count, got.zero_count, got.min, got.max) == (
        want.count,
        want.zero_count,
        want.min,
        want.max,
    )
    assert got.pos_keys.tolist() == want.pos_keys.tolist()
    assert got.pos_counts.tolist() == want.pos_counts.tolist()
    assert got.neg_keys.tolist() == want.neg_keys.tolist()
    assert got.neg_counts.tolist() == want.neg_counts.tolist()
    assert got.sum == pytest.approx(want.sum, rel=1e-12, abs=1e-9)
