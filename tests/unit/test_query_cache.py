"""Pure parts of the query result cache: scope normalisation, keys, chunk splitting, the
Arrow IPC value codec, slicing and concatenation (query/cache.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from query.cache import (
    CHUNK_SECONDS,
    Chunk,
    CorruptEntry,
    chunk_key,
    concat,
    decode,
    encode,
    fetch_ranges,
    normalise_tree,
    scope_key,
    sids_scope,
    slice_rows,
    split_segment,
)
from query.filters import FilterTree, Resolution, compile_filter
from query.language import parse
from query.stores_client import PointColumns, StoreReplyError
from strata.rollup import Rollups, rollup

H = 3600


def _scope(text: str) -> str:
    q = parse(f"avg:m{{{text}}}")
    from query.ast import MetricQuery

    assert isinstance(q, MetricQuery)
    return scope_key(compile_filter(q.filter))


# -- scope and keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("env:prod,host:a", "host:a,env:prod"),
        ("env:prod,!host:a", "!host:a,env:prod"),
        ("host:a OR host:b", "host:b OR host:a"),
        ("host:a OR (host:b OR host:c)", "(host:c OR host:a) OR host:b"),
        ("host IN (a,b)", "host:b OR host:a"),
        ("(role:web OR role:db) AND env:prod", "env:prod AND (role:db OR role:web)"),
        ("NOT (host:a OR host:b)", "not (host:b or host:a)"),
    ],
)
def test_equivalent_scopes_share_a_key(a: str, b: str) -> None:
    assert _scope(a) == _scope(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("env:prod", "env:staging"),
        ("env:prod,host:a", "env:prod,!host:a"),
        ("host:a OR host:b", "host:a AND host:b"),
        ("web-*", "web-1"),
        ("*", "env:prod"),
    ],
)
def test_different_scopes_have_different_keys(a: str, b: str) -> None:
    assert _scope(a) != _scope(b)


def test_normalise_tree_flattens_dedupes_and_unwraps() -> None:
    t: FilterTree = {"op": "tag", "tag": "a:1"}
    u: FilterTree = {"op": "wildcard", "pattern": "b:*"}
    nested: FilterTree = {"op": "and", "args": [u, {"op": "and", "args": [t, u]}]}
    assert normalise_tree(nested) == normalise_tree({"op": "and", "args": [t, u]})
    assert normalise_tree({"op": "or", "args": [t, t]}) == t
    assert normalise_tree({"op": "not", "arg": {"op": "or", "args": [u, t]}}) == {
        "op": "not",
        "arg": normalise_tree({"op": "or", "args": [t, u]}),
    }


def test_scope_key_duplicates_in_lists() -> None:
    assert scope_key(Resolution(("a", "b", "a"), ())) == scope_key(Resolution(("b", "a"), ()))


def test_chunk_key_separates_every_component() -> None:
    base = ("acme", "cpu", "s", "ram", "1m", 0, H - 1)
    key = chunk_key(*base)
    assert key.startswith("strata:qc:v1:")
    for i, other in enumerate(("other", "cpu2", "s2", "rocks", "raw", H, 2 * H - 1)):
        changed = list(base)
        changed[i] = other
        assert chunk_key(*changed) != key  # type: ignore[arg-type]
    # A component boundary cannot be shifted into another ("a:b" + "c" vs "a" + "b:c").
    assert chunk_key("a:b", "c", "s", "ram", "1m", 0, 1) != chunk_key(
        "a", "b:c", "s", "ram", "1m", 0, 1
    )


def test_sids_scope_depends_on_the_series() -> None:
    a = np.array([1, 2], dtype=np.uint64)
    assert sids_scope(a) == sids_scope(a.copy())
    assert sids_scope(a) != sids_scope(np.array([1, 3], dtype=np.uint64))


# -- chunks --------------------------------------------------------------------------------------


def test_split_one_day_at_one_minute_keeps_only_whole_settled_hours() -> None:
    now = 100 * H + 800
    start, end = now - 86400, now
    start_min = start - start % 60 + 60  # the 1m core starts at the next minute
    chunks = split_segment(start_min, end - end % 60 - 1, CHUNK_SECONDS["1m"], now - 300)
    assert chunks[0] == Chunk(start_min, 77 * H - 1, False)  # partial head
    assert chunks[-1] == Chunk(100 * H, end - end % 60 - 1, False)  # live edge
    assert [c.cacheable for c in chunks[1:-1]] == [True] * 23
    assert all(c.end - c.start == H - 1 for c in chunks[1:-1])
    # Contiguous, no overlap, covering the segment.
    assert all(a.end + 1 == b.start for a, b in itertools.pairwise(chunks))


def test_split_settle_time_excludes_recent_whole_chunks() -> None:
    chunks = split_segment(0, 3 * H - 1, H, settled_before=2 * H + 10)
    assert [c.cacheable for c in chunks] == [True, True, False]
    chunks = split_segment(0, 3 * H - 1, H, settled_before=2 * H - 1)
    assert [c.cacheable for c in chunks] == [True, False, False]


@given(
    st.integers(-(10**7), 10**7),
    st.integers(0, 5 * 86400),
    st.sampled_from([60, H, 86400]),
    st.integers(-(10**7), 10**7),
)
def test_split_partitions_the_range(start: int, span: int, length: int, settled: int) -> None:
    chunks = split_segment(start, start + span, length, settled)
    assert chunks[0].start == start and chunks[-1].end == start + span
    assert all(a.end + 1 == b.start for a, b in itertools.pairwise(chunks))
    for c in chunks:
        assert c.start // length == c.end // length  # never crosses a chunk boundary
        whole = c.start % length == 0 and (c.end + 1) % length == 0
        assert c.cacheable == (whole and c.end < settled)


def test_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="start must not be after end"):
        split_segment(10, 9, H, 0)
    with pytest.raises(ValueError, match="chunk length must be positive"):
        split_segment(0, 9, 0, 0)


def test_fetch_ranges_merges_contiguous_chunks() -> None:
    chunks = [Chunk(0, 9, True), Chunk(10, 19, False), Chunk(30, 39, True), Chunk(40, 41, False)]
    assert fetch_ranges(chunks) == [(0, 19), (30, 41)]
    assert fetch_ranges([]) == []


# -- values --------------------------------------------------------------------------------------

sid_arrays = st.lists(st.integers(0, 2**64 - 1), max_size=40)


@given(st.data())
def test_points_round_trip(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 40))
    sid = np.array(
        data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)), np.uint64
    )
    ts = np.array(
        data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), np.int64
    )
    value = np.array(
        data.draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)), np.float64
    )
    got = decode(encode(PointColumns(sid, ts, value)))
    assert isinstance(got, PointColumns)
    np.testing.assert_array_equal(got.sid, sid)
    np.testing.assert_array_equal(got.ts, ts)
    np.testing.assert_array_equal(got.value, value)
    assert got.sid.dtype == np.uint64 and got.ts.dtype == np.int64


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 10_000), st.floats(-1e9, 1e9)),
        max_size=60,
        unique_by=lambda r: (r[0], r[1]),
    ),
    st.sampled_from([60, 3600]),
)
def test_rollups_round_trip(rows: list[tuple[int, int, float]], step: int) -> None:
    r = rollup(
        np.array([x[0] for x in rows], np.uint64),
        np.array([x[1] for x in rows], np.int64),
        np.array([x[2] for x in rows], np.float64),
        step,
    )
    got = decode(encode(r))
    assert isinstance(got, Rollups)
    for name in ("sid", "bucket", "count", "sum", "min", "max", "last", "last_ts"):
        np.testing.assert_array_equal(getattr(got, name), getattr(r, name))
        assert getattr(got, name).dtype == getattr(r, name).dtype


def test_encoding_is_compact() -> None:
    n = 60 * 100  # one hour of 1m rollups for 100 series
    sid = np.repeat(np.arange(100, dtype=np.uint64), 60)
    ts = np.tile(np.arange(0, 3600, 60, dtype=np.int64), 100)
    r = rollup(sid, ts, np.full(n, 1.5), 60)
    assert len(encode(r)) < n * 8 * 8 / 4  # well under a quarter of the raw column bytes


@pytest.mark.parametrize("raw", [b"", b"X123", b"P", b"Rnot arrow"])
def test_decode_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(raw)


def test_decode_rejects_other_columns() -> None:
    points = encode(PointColumns.empty())
    with pytest.raises(CorruptEntry, match="columns"):
        decode(b"R" + points[1:])


def test_slice_and_concat() -> None:
    pts = PointColumns(
        np.array([2, 1, 2, 1], np.uint64),
        np.array([5, 5, 70, 130], np.int64),
        np.array([1.0, 2.0, 3.0, 4.0]),
    )
    a, b = slice_rows(pts, 0, 59), slice_rows(pts, 60, 200)
    assert isinstance(a, PointColumns) and a.ts.tolist() == [5, 5]
    both = concat([b, a], empty=PointColumns.empty())
    assert isinstance(both, PointColumns)
    assert list(zip(both.sid.tolist(), both.ts.tolist(), strict=True)) == [
        (1, 5),
        (1, 130),
        (2, 5),
        (2, 70),
    ]
    assert concat([], empty=Rollups.empty()).__class__ is Rollups
    with pytest.raises(StoreReplyError, match="points and rollups"):
        concat([pts, Rollups.empty()], empty=Rollups.empty())
