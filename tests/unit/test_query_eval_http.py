"""The HTTP store client's side of the filter-tree contract and the series-type lookup."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from query import ast
from query.filters import compile_filter
from query.language import parse
from query.stores_client import StoreReplyError
from tests.unit.test_query_stores_client import METRIC, ORG, PART, make_client


def test_resolve_filter_posts_the_tree_without_lists() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=np.array([3, 9], dtype="<u8").tobytes())

    q = parse(f"avg:{METRIC}{{env:a OR host:web-*}}")
    assert isinstance(q, ast.MetricQuery)
    tree = compile_filter(q.filter).tree
    assert tree is not None
    sids = make_client(handler).resolve_filter(ORG, METRIC, 10, 20, tree)
    assert sids.tolist() == [3, 9]
    assert seen == [
        {
            "org": ORG,
            "metric": METRIC,
            "from": 10,
            "to": 20,
            "filter": {
                "op": "or",
                "args": [
                    {"op": "tag", "tag": "env:a"},
                    {"op": "wildcard", "pattern": "host:web-*"},
                ],
            },
            "partition": PART,  # the store refuses it unless it serves the partition
        }
    ]


def test_resolve_filter_rejects_a_torn_answer() -> None:
    client = make_client(lambda _: httpx.Response(200, content=b"123"))
    with pytest.raises(StoreReplyError, match="3 bytes of sids"):
        client.resolve_filter(ORG, METRIC, 0, 1, {"op": "all"})


def test_series_types_come_from_the_tag_index_lookup() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "series": [
                    {"sid": 1, "metric": METRIC, "type": "count", "tags": []},
                    {"sid": 2, "metric": METRIC, "type": "rate", "tags": ["a:b"]},
                    {"sid": 3, "metric": "other", "type": "gauge", "tags": []},
                ]
            },
        )

    client = make_client(handler)
    sids = np.array([1, 2, 3], dtype=np.uint64)
    assert client.series_types(ORG, METRIC, sids) == {1: "count", 2: "rate"}
    assert client.lookup(ORG, METRIC, sids) == {1: (), 2: ("a:b",)}
    assert client.series_types(ORG, METRIC, np.empty(0, np.uint64)) == {}
