"""Response bodies go through the official datadog-api-client deserializers without error."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.model.metrics_list_response import MetricsListResponse
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse

from query.language import parse_query
from query.plan import GroupSeries, QueryResult, execute
from query.responses import error_body, metrics_list_response, query_response
from tests.unit.query_fakes import FakeStore


def deserialize(body: dict[str, Any], model: type) -> Any:
    with ApiClient(Configuration()) as api:  # type: ignore[no-untyped-call]
        return api.deserialize(json.dumps(body), (model,), True)


def grouped_result() -> QueryResult:
    store = FakeStore()
    store.add("o", "cpu", ["env:prod", "host:a"], [(60, 1.0), (75, 3.0), (130, 5.0)])
    store.add("o", "cpu", ["env:prod", "host:b"], [(61, 10.0)])
    store.add("o", "cpu", ["env:dev", "host:c"], [(61, 99.0)])
    q = parse_query("avg:cpu{env:prod} by {host}")
    return execute(q, "o", 0, 2990, store, max_points=300, max_series=100)


def test_query_response_deserializes_with_every_field() -> None:
    result = grouped_result()
    assert result.interval == 10
    body = query_response(result, "avg:cpu{env:prod} by {host}")
    resp = deserialize(body, MetricsQueryResponse)
    assert isinstance(resp, MetricsQueryResponse)
    assert resp.status == "ok"
    assert resp.res_type == "time_series"
    assert resp.query == "avg:cpu{env:prod} by {host}"
    assert (resp.from_date, resp.to_date) == (0, 2_990_000)
    assert resp.group_by == ["host"]
    assert len(resp.series) == 2
    a, b = resp.series
    assert a.metric == "cpu" and a.display_name == "cpu"
    assert a.scope == "env:prod,host:a"
    assert a.expression == "avg:cpu{env:prod,host:a}"
    assert a.tag_set == ["host:a"]
    assert a.aggr == "avg"
    assert [p.value for p in a.pointlist] == [[60000.0, 1.0], [70000.0, 3.0], [130000.0, 5.0]]
    assert (a.start, a.end, a.interval, a.length) == (60_000, 139_999, 10, 3)
    assert a.unit == [None, None]
    assert a.query_index == 0
    assert b.tag_set == ["host:b"]
    assert [p.value for p in b.pointlist] == [[60000.0, 10.0]]


def test_empty_query_response_deserializes() -> None:
    q = parse_query("sum:nothing{*}")
    body = query_response(QueryResult(q, 10, 20, 1, []), "sum:nothing{*}")
    resp = deserialize(body, MetricsQueryResponse)
    assert resp.series == []
    assert resp.group_by == []


def test_overflowing_value_becomes_null_not_invalid_json() -> None:
    q = parse_query("sum:m{*}")
    series = GroupSeries((), np.array([0], np.int64), np.array([np.inf]))
    body = query_response(QueryResult(q, 0, 10, 1, [series]), "sum:m{*}")
    text = json.dumps(body, allow_nan=False)  # raises if inf/NaN slipped through
    resp = deserialize(json.loads(text), MetricsQueryResponse)
    assert resp.series[0].pointlist[0].value == [0.0, None]


def test_metrics_list_response_deserializes() -> None:
    body = metrics_list_response(1_700_000_000, ["a.b", "c"])
    assert body["from"] == "1700000000"
    resp = deserialize(body, MetricsListResponse)
    assert isinstance(resp, MetricsListResponse)
    assert resp._from == "1700000000"
    assert resp.metrics == ["a.b", "c"]


def test_error_body_shape() -> None:
    assert error_body("Forbidden") == {"errors": ["Forbidden"]}
