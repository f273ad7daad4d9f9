"""Property: every name we write parses back to the same fields and sorts by offset."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stores.archive.naming import DAY, Family, compacted_name, ingest_name, parse

offsets = st.integers(min_value=0, max_value=10**19)
tids = st.text(st.characters(codec="ascii"), min_size=1, max_size=30)


@given(tids, st.integers(0, 9999), offsets, st.integers(0, 10**6), st.sampled_from(Family))
def test_ingest_round_trip(tid: str, p: int, first: int, span: int, family: Family) -> None:
    key = ingest_name(family, tid, p, first, first + span)
    name = parse(key)
    assert (name.family, name.partition, name.first, name.last) == (family, p, first, first + span)
    assert name.key() == key


@given(tids, st.integers(0, 9999), st.integers(0, 10**6), offsets, st.integers(0, 100))
def test_compacted_round_trip(tid: str, p: int, day: int, lo: int, span: int) -> None:
    key = compacted_name(Family.POINTS, tid, p, day * DAY, lo, lo + span, "0a1b2c3d")
    name = parse(key)
    assert name.day == day * DAY and name.key() == key


@given(st.lists(offsets, min_size=2, max_size=10, unique=True))
def test_names_sort_like_offsets(firsts: list[int]) -> None:
    keys = [ingest_name(Family.POINTS, "t", 0, f, f) for f in firsts]
    assert sorted(keys) == [ingest_name(Family.POINTS, "t", 0, f, f) for f in sorted(firsts)]
