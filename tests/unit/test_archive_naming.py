"""Object names: round trips, ordering, and rejection of foreign keys."""

from __future__ import annotations

import pytest

from stores.archive.naming import (
    BadObjectName,
    Family,
    compacted_name,
    digest,
    ingest_name,
    parse,
    parse_many,
    parse_progress,
    progress_name,
    safe_topic_id,
)


def test_ingest_name_layout_and_round_trip() -> None:
    key = ingest_name(Family.POINTS, "AbC/d+e==", 3, 1234, 5678)
    assert key == "points/AbC_d_e==/p0003/00000000000000001234-00000000000000005678.parquet"
    name = parse(key)
    assert (name.partition, name.first, name.last, name.day) == (3, 1234, 5678, None)
    assert name.key() == key and not name.compacted


def test_compacted_and_rollup_names_share_a_stem() -> None:
    dig = digest(["a", "b"])
    p = compacted_name(Family.POINTS, "tid", 1, 86400 * 3, 10, 20, dig)
    r = compacted_name(Family.ROLLUPS_1H, "tid", 1, 86400 * 3, 10, 20, dig)
    assert parse(p).stem == parse(r).stem
    assert parse(p).key() == p and parse(r).key() == r
    assert parse(r).family is Family.ROLLUPS_1H


def test_digest_is_order_independent_and_salted() -> None:
    assert digest(["x", "y"]) == digest(["y", "x"])
    assert digest(["x"], "1") != digest(["x"], "2")


@pytest.mark.parametrize(
    "key",
    [
        "points/tid/p0003/.tmp-abc",
        "points/tid/p3/00000000000000000001-00000000000000000002.parquet",
        "points/tid/p0003/00000000000000000009-00000000000000000002.parquet",
        "other/tid/p0003/00000000000000000001-00000000000000000002.parquet",
        "points/tid/p0003/d00000086400/00000000000000000001-00000000000000000002.parquet",
    ],
)
def test_foreign_names_are_rejected(key: str) -> None:
    with pytest.raises(BadObjectName):
        parse(key)
    assert parse_many([key]) == []


def test_progress_markers() -> None:
    key = progress_name("tid", 2, 99)
    assert parse_progress(key) == 99
    assert parse_progress("points/tid/p0002/x") is None
    assert parse_many([key]) == []


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        ingest_name(Family.POINTS, "t", 0, 5, 4)
    with pytest.raises(ValueError):
        compacted_name(Family.POINTS, "t", 0, 100, 1, 2, "00000000")
    assert safe_topic_id("a/b") == "a_b"
