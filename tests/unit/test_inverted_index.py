"""The inverted index on a real RocksDB (tmp dir): ordinal layout, idempotent apply,
bucketed resolve, filter trees over HTTP, layout-1 migration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pyroaring import BitMap64

from stores.inverted import keys
from stores.inverted.api import create_app
from stores.inverted.filters import Tag, Wildcard
from stores.inverted.index import InvertedIndex
from stores.runtime.applied import offset_key
from stores.runtime.ownership import Ownership
from stores.runtime.rocks import i64, open_db, u64
from stores.runtime.store import Record
from strata.codec import SeriesBatch
from strata.model import SID_DTYPE, TS_DTYPE

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % HOUR


def batch(org: str, metric: str, rows: Sequence[tuple[int, int, tuple[str, ...]]]) -> SeriesBatch:
    n = len(rows)
    return SeriesBatch(
        org,
        metric,
        np.array([r[0] for r in rows], dtype=SID_DTYPE),
        np.array([r[1] for r in rows], dtype=TS_DTYPE),
        np.zeros(n, dtype=np.uint8),
        np.full(n, 10, dtype=np.uint32),
        tuple(r[2] for r in rows),
    )


BIG = 2**63 + 7
ROWS: list[tuple[int, int, tuple[str, ...]]] = [
    (BIG, T0, ("env:prod", "host:web-1")),
    (2, T0, ("env:prod", "host:web-2")),
    (3, T0, ("env:dev", "host:db-1")),
    (4, T0 - 5 * HOUR, ("env:dev", "host:web-old")),
]


@pytest.fixture
def index(tmp_path: Path) -> InvertedIndex:
    idx = InvertedIndex("series", tmp_path / "inv")
    idx.apply(
        [
            Record(0, 0, 0, batch("acme", "cpu", ROWS)),
            Record(1, 0, 0, batch("globex", "cpu", [(9, T0, ("env:prod",))])),
        ]
    )
    return idx


def sids(index: InvertedIndex, tree: Any, start: int = T0, end: int = T0 + 60) -> list[int]:
    return [int(s) for s in index.resolve_filter("acme", "cpu", start, end, tree)]


def test_resolve_by_lists_and_trees(index: InvertedIndex) -> None:
    assert index.resolve("acme", "cpu", T0, T0 + 60, [], []).tolist() == [2, 3, BIG]
    assert index.resolve("acme", "cpu", T0, T0 + 60, ["env:prod"], ["host:web-2"]).tolist() == [BIG]
    assert sids(index, Wildcard("host:web-*")) == [2, BIG]
    assert sids(index, Wildcard("host:web-*"), T0 - 6 * HOUR) == [2, 4, BIG]
    assert sids(index, Wildcard("*-1")) == [3, BIG]
    assert sids(index, Tag("env:prod"), T0 - 5 * HOUR, T0 - 5 * HOUR) == []
    assert index.resolve("globex", "cpu", T0, T0, [], []).tolist() == [9]
    assert index.resolve("nobody", "cpu", T0, T0, [], []).tolist() == []


def test_apply_twice_changes_nothing(index: InvertedIndex, tmp_path: Path) -> None:
    before = {t: sids(index, Tag(t), 0, T0 + 60) for t in ("", "env:prod", "host:web-old")}
    index.apply([Record(0, 1, 0, batch("acme", "cpu", ROWS[::-1]))])
    after = {t: sids(index, Tag(t), 0, T0 + 60) for t in before}
    assert after == before
    index.close()
    again = InvertedIndex("series", tmp_path / "inv")  # survives a restart, same ordinals
    assert [int(s) for s in again.resolve("acme", "cpu", 0, T0 + 60, [], [])] == [2, 3, 4, BIG]
    again.close()


def test_ordinals_span_chunks(tmp_path: Path) -> None:
    idx = InvertedIndex("series", tmp_path / "inv")
    n = keys.CHUNK + 10
    rng = np.random.default_rng(3)
    all_sids = np.unique(rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True))
    half = n // 2
    for i, part in enumerate((all_sids[:half], all_sids[half:])):
        rows: list[tuple[int, int, tuple[str, ...]]] = [
            (int(s), T0, (f"k:{int(s) % 3}",)) for s in part
        ]
        idx.apply([Record(0, i, 0, batch("o", "m", rows))])
    got = idx.resolve("o", "m", T0, T0, [], [])
    assert np.array_equal(got, np.sort(all_sids))
    want = np.sort(all_sids[all_sids % 3 == 1])
    assert np.array_equal(idx.resolve("o", "m", T0, T0, ["k:1"], []), want)
    idx.close()


def test_layout_one_is_dropped_and_replayed(tmp_path: Path) -> None:
    db = open_db(tmp_path / "inv")
    db[b"P" + b"o\x00m\x00\x00" + i64(T0)] = BitMap64([1]).serialize()
    db[offset_key(0)] = u64(42)
    db.close()
    idx = InvertedIndex("series", tmp_path / "inv")
    assert idx.start_position(0, 0).offset == -2  # from the beginning again
    assert idx.resolve("o", "m", T0, T0, [], []).tolist() == []
    idx.close()


def post(client: TestClient, **body: Any) -> Any:
    body = {"org": "acme", "metric": "cpu", "from": T0, "to": T0 + 60, **body}
    return client.post("/v1/resolve", json=body)


def test_http_filter_and_errors(index: InvertedIndex) -> None:
    client = TestClient(create_app(index, Ownership()))
    tree = {
        "op": "or",
        "args": [{"op": "tag", "tag": "env:dev"}, {"op": "wildcard", "pattern": "host:web-2"}],
    }
    r = post(client, filter=tree)
    assert r.status_code == 200
    assert np.frombuffer(r.content, dtype="<u8").tolist() == [2, 3]
    r = post(client, filter={"op": "not", "arg": {"op": "all"}})
    assert r.status_code == 200 and r.content == b""
    r = post(client, include=["env:prod"])
    assert np.frombuffer(r.content, dtype="<u8").tolist() == [2, BIG]
    bad = post(client, filter={"op": "and", "args": [{"op": "all"}, {"op": "nand"}]})
    assert bad.status_code == 400
    assert bad.json()["errors"][0].startswith("filter.args[1].op: unknown op 'nand'")
    both = post(client, filter={"op": "all"}, include=["a"])
    assert both.status_code == 400 and "must be absent" in both.json()["errors"][0]
    nul = post(client, filter={"op": "tag", "tag": "a\x00"})
    assert nul.status_code == 400 and "filter.tag" in nul.json()["errors"][0]
