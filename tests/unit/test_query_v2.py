# datadog-api-client ships partial annotations: its constructors are untyped.
# mypy: disable-error-code="no-untyped-call"
"""``POST /api/v2/query/timeseries`` and ``/scalar`` through the HTTP app over the fake store:
requests built with the official client's models, every answer through its deserializer,
values compared with an independent model of the submitted points."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import model_to_dict
from datadog_api_client.v2.model.formula_limit import FormulaLimit
from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_scalar_query import MetricsScalarQuery
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.query_sort_order import QuerySortOrder
from datadog_api_client.v2.model.scalar_formula_query_request import ScalarFormulaQueryRequest
from datadog_api_client.v2.model.scalar_formula_query_response import ScalarFormulaQueryResponse
from datadog_api_client.v2.model.scalar_formula_request import ScalarFormulaRequest
from datadog_api_client.v2.model.scalar_formula_request_attributes import (
    ScalarFormulaRequestAttributes,
)
from datadog_api_client.v2.model.scalar_formula_request_queries import ScalarFormulaRequestQueries
from datadog_api_client.v2.model.scalar_formula_request_type import ScalarFormulaRequestType
from datadog_api_client.v2.model.timeseries_formula_query_request import (
    TimeseriesFormulaQueryRequest,
)
from datadog_api_client.v2.model.timeseries_formula_query_response import (
    TimeseriesFormulaQueryResponse,
)
from datadog_api_client.v2.model.timeseries_formula_request import TimeseriesFormulaRequest
from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
    TimeseriesFormulaRequestAttributes,
)
from datadog_api_client.v2.model.timeseries_formula_request_queries import (
    TimeseriesFormulaRequestQueries,
)
from datadog_api_client.v2.model.timeseries_formula_request_type import (
    TimeseriesFormulaRequestType,
)
from fastapi.testclient import TestClient

from strata.keys import NewKeys
from tests.unit.test_query_app import T0, acme, client, globex, headers, keys_path, store

__all__ = ["acme", "client", "globex", "keys_path", "store"]  # fixtures used below

# The points of tests.unit.test_query_app's ``store`` fixture (org acme), kept apart from
# the fake so the expected answers are computed independently of the code under test.
MODEL: dict[str, dict[tuple[str, ...], dict[int, float]]] = {
    "cpu": {
        ("env:prod", "host:a"): {T0: 1.0, T0 + 5: 3.0, T0 + 20: 4.0},
        ("env:prod", "host:b"): {T0 + 1: 10.0},
        ("env:dev", "host:c", "role:db"): {T0 + 2: 100.0},
    },
    "mem": {("env:prod",): {T0: 1.0}},
}
FROM_MS, TO_MS = T0 * 1000, (T0 + 60) * 1000  # 60 one-second buckets
Groups = dict[tuple[str, ...], dict[int, float]]


def model(metric: str, space: str, by: str | None, scope: str | None = None) -> Groups:
    """Per group and second (the interval of a 60 s range): the space aggregate."""
    cells: dict[tuple[tuple[str, ...], int], list[float]] = {}
    for tags, points in MODEL[metric].items():
        if scope is not None and scope not in tags:
            continue
        group = tuple(t for t in tags if by and t.startswith(f"{by}:"))
        for ts, v in points.items():
            cells.setdefault((group, ts), []).append(v)
    reduce = {"sum": sum, "max": max, "min": min, "avg": lambda v: sum(v) / len(v)}[space]
    out: Groups = {}
    for (group, ts), vs in cells.items():
        out.setdefault(group, {})[ts] = float(reduce(vs))  # type: ignore[operator]
    return out


def combine(op: str, a: Groups, b: Groups) -> Groups:
    out: Groups = {}
    for group in a.keys() & b.keys():
        common = a[group].keys() & b[group].keys()
        out[group] = {t: _apply(op, a[group][t], b[group][t]) for t in common}
    return out


def _apply(op: str, x: float, y: float) -> float:
    return {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else math.nan}[op]


def ts_request(queries: dict[str, str], formulas: list[str] | None = None) -> dict[str, Any]:
    attrs = TimeseriesFormulaRequestAttributes(
        _from=FROM_MS,
        to=TO_MS,
        queries=TimeseriesFormulaRequestQueries(
            [
                MetricsTimeseriesQuery(data_source=MetricsDataSource.METRICS, name=n, query=q)
                for n, q in queries.items()
            ]
        ),
    )
    if formulas is not None:
        attrs.formulas = [QueryFormula(formula=f) for f in formulas]
    body = TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            attributes=attrs, type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST
        )
    )
    out: dict[str, Any] = model_to_dict(body)
    return out


def scalar_request(
    queries: dict[str, tuple[str, str]], formulas: list[QueryFormula]
) -> dict[str, Any]:
    attrs = ScalarFormulaRequestAttributes(
        _from=FROM_MS,
        to=TO_MS,
        queries=ScalarFormulaRequestQueries(
            [
                MetricsScalarQuery(
                    data_source=MetricsDataSource.METRICS,
                    name=n,
                    query=q,
                    aggregator=MetricsAggregator(agg),
                )
                for n, (q, agg) in queries.items()
            ]
        ),
        formulas=formulas,
    )
    body = ScalarFormulaQueryRequest(
        data=ScalarFormulaRequest(attributes=attrs, type=ScalarFormulaRequestType.SCALAR_REQUEST)
    )
    out: dict[str, Any] = model_to_dict(body)
    return out


def post(client: TestClient, keys: NewKeys, kind: str, body: object) -> Any:
    return client.post(f"/api/v2/query/{kind}", json=body, headers=headers(keys))


def deserialize(body: dict[str, Any], kind: type) -> Any:
    with ApiClient(Configuration()) as api:
        parsed = api.deserialize(json.dumps(body), (kind,), True)
    assert isinstance(parsed, kind)
    return parsed


def timeseries(client: TestClient, keys: NewKeys, body: dict[str, Any]) -> dict[int, Groups]:
    """Per formula index, per group: {ts: value} (nulls left out), after checking the body
    with the client's deserializer."""
    resp = post(client, keys, "timeseries", body)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    deserialize(got, TimeseriesFormulaQueryResponse)
    attrs = got["data"]["attributes"]
    assert got["data"]["type"] == "timeseries_response"
    assert attrs["times"] == [t * 1000 for t in range(T0, T0 + 60)]
    out: dict[int, Groups] = {}
    for series, values in zip(attrs["series"], attrs["values"], strict=True):
        assert len(values) == len(attrs["times"])
        points = {
            t // 1000: v for t, v in zip(attrs["times"], values, strict=True) if v is not None
        }
        out.setdefault(series["query_index"], {})[tuple(series["group_tags"])] = points
    return out


def test_queries_without_formulas_are_their_own_series(client: TestClient, acme: NewKeys) -> None:
    got = timeseries(
        client, acme, ts_request({"a": "avg:cpu{*} by {host}", "b": "sum:mem{env:prod}"})
    )
    assert got == {0: model("cpu", "avg", "host"), 1: model("mem", "sum", None)}


@pytest.mark.parametrize(
    ("formula", "op"), [("a + b", "+"), ("a - b", "-"), ("a * b", "*"), ("a / b", "/")]
)
def test_formulas_align_groups_like_the_model(
    client: TestClient, acme: NewKeys, formula: str, op: str
) -> None:
    queries = {"a": "sum:cpu{env:prod} by {host}", "b": "max:cpu{*} by {host}"}
    got = timeseries(client, acme, ts_request(queries, [formula, "a"]))
    a = model("cpu", "sum", "host", scope="env:prod")
    b = model("cpu", "max", "host")
    assert got == {0: combine(op, a, b), 1: a}


def test_numbers_functions_and_limit(client: TestClient, acme: NewKeys) -> None:
    queries = {"a": "sum:cpu{*} by {host}", "b": "sum:mem{*}"}
    body = ts_request(queries, ["a / b * 100", "-a + 1", "cumsum(a)"])
    got = timeseries(client, acme, body)
    a, b = model("cpu", "sum", "host"), model("mem", "sum", None)[()]
    # b has no group: it pairs with every group of a.
    want = {g: {t: v / b[t] * 100 for t, v in p.items() if t in b} for g, p in a.items()}
    assert got[0] == {g: p for g, p in want.items() if p}  # groups without values: left out
    assert got[0] == {("host:a",): {T0: 100.0}}
    assert got[1] == {g: {t: 1 - v for t, v in p.items()} for g, p in a.items()}
    assert got[2][("host:a",)] == {T0: 1.0, T0 + 5: 4.0, T0 + 20: 8.0}  # missing stay missing
    # limit: the top 2 groups by mean, descending (ascending: the lowest).
    body["data"]["attributes"]["formulas"] = [
        {"formula": "a", "limit": {"count": 2, "order": "desc"}},
        {"formula": "a", "limit": {"count": 1, "order": "asc"}},
    ]
    got = timeseries(client, acme, body)
    assert list(got[0]) == [("host:c",), ("host:b",)]  # in rank order
    assert set(got[1]) == {("host:a",)}


def test_interval_hint_coarsens_the_grid(client: TestClient, acme: NewKeys) -> None:
    body = ts_request({"a": "sum:cpu{*}"})
    body["data"]["attributes"]["interval"] = 30_000
    resp = post(client, acme, "timeseries", body)
    assert resp.status_code == 200, resp.text
    attrs = deserialize(resp.json(), TimeseriesFormulaQueryResponse).data.attributes
    assert attrs.times.value == [T0 * 1000, (T0 + 30) * 1000]
    # avg rollup per series over 30 s, then the sum over series
    assert attrs.values.value[0].value == [8 / 3 + 10 + 100, None]


def scalar(client: TestClient, keys: NewKeys, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = post(client, keys, "scalar", body)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    deserialize(got, ScalarFormulaQueryResponse)
    assert got["data"]["type"] == "scalar_response"
    columns: list[dict[str, Any]] = got["data"]["attributes"]["columns"]
    return columns


def reduced(metric: str, space: str, by: str | None, agg: str) -> dict[tuple[str, ...], float]:
    out = {}
    for group, points in model(metric, space, by).items():
        vs = [points[t] for t in sorted(points)]
        out[group] = {
            "avg": sum(vs) / len(vs),
            "sum": sum(vs),
            "min": min(vs),
            "max": max(vs),
            "last": vs[-1],
            "l2norm": math.sqrt(sum(v * v for v in vs)),
            "area": sum(abs(v) for v in vs),
        }[agg]
    return out


@pytest.mark.parametrize("agg", ["avg", "sum", "min", "max", "last", "l2norm", "area"])
def test_scalar_aggregators_match_the_model(client: TestClient, acme: NewKeys, agg: str) -> None:
    columns = scalar(
        client,
        acme,
        scalar_request({"q": ("sum:cpu{*} by {host}", agg)}, [QueryFormula(formula="q")]),
    )
    group, number = columns
    assert group["name"] == "host" and group["type"] == "group"
    assert number["name"] == "q" and number["type"] == "number"
    got = {
        ("host:" + cell[0],): v for cell, v in zip(group["values"], number["values"], strict=True)
    }
    assert got == pytest.approx(reduced("cpu", "sum", "host", agg))


def test_scalar_formulas_limits_and_parallel_columns(client: TestClient, acme: NewKeys) -> None:
    queries = {"a": ("sum:cpu{*} by {host}", "sum"), "b": ("max:cpu{*} by {host}", "max")}
    limited = FormulaLimit(count=2, order=QuerySortOrder.DESC)
    formulas = [QueryFormula(formula="a", limit=limited), QueryFormula(formula="a * 2 - b")]
    host, first, second = scalar(client, acme, scalar_request(queries, formulas))
    a = reduced("cpu", "sum", "host", "sum")
    b = reduced("cpu", "max", "host", "max")
    # rows: the first formula's (limited, ranked) groups, then the others' groups
    assert host["values"] == [["c"], ["b"], ["a"]]
    assert first["values"] == [a[("host:c",)], a[("host:b",)], None]
    assert second["values"] == [2 * a[(f"host:{h}",)] - b[(f"host:{h}",)] for h in "cba"]
    # no group: one row, no group column
    body = scalar_request({"m": ("sum:mem{*}", "sum")}, [QueryFormula(formula="m / 4")])
    assert scalar(client, acme, body) == [
        {"name": "m / 4", "type": "number", "values": [0.25], "meta": {"unit": None}}
    ]


def test_other_orgs_stay_invisible(client: TestClient, globex: NewKeys) -> None:
    got = timeseries(client, globex, ts_request({"a": "sum:cpu{*} by {host}"}))
    assert got == {0: {("host:a",): {T0: 1000.0}}}
    body = scalar_request({"a": ("sum:mem{*}", "sum")}, [QueryFormula(formula="a")])
    assert scalar(client, globex, body) == [
        {"name": "a", "type": "number", "values": [], "meta": {"unit": None}}
    ]


def test_keys_are_required(client: TestClient) -> None:
    for kind in ("timeseries", "scalar"):
        resp = client.post(f"/api/v2/query/{kind}", json=ts_request({"a": "sum:cpu{*}"}))
        assert (resp.status_code, resp.json()) == (403, {"errors": ["Forbidden"]})


def _ts(**attrs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "from": FROM_MS,
        "to": TO_MS,
        "queries": [{"data_source": "metrics", "name": "a", "query": "sum:cpu{*}"}],
    }
    base.update(attrs)
    return {"data": {"type": "timeseries_request", "attributes": base}}


BAD_TIMESERIES: list[tuple[object, str]] = [
    ([1, 2], "invalid timeseries request: body: Input should be a valid dictionary"),
    ({"data": {}}, "data.type: Field required"),
    (_ts(queries=[]), "data.attributes.queries: List should have at least 1 item"),
    (
        _ts(queries=[{"data_source": "logs", "name": "a", "query": "x"}]),
        "data.attributes.queries[0].data_source: Input should be 'metrics'",
    ),
    (_ts(to=FROM_MS), f"data.attributes.from ({FROM_MS} ms) must be before data.attributes.to"),
    (
        _ts(formulas=[{"formula": "a + c"}]),
        "data.attributes.formulas[0].formula: unknown query "
        "name 'c'; the queries are a at position 4",
    ),
    (
        _ts(formulas=[{"formula": "a +"}]),
        "data.attributes.formulas[0].formula: expected a query "
        "name, number or '(' but found 'the end' at position 3",
    ),
    (
        _ts(formulas=[{"formula": "2 * 3"}]),
        "formulas[0].formula: the formula needs at least one query name at position 0",
    ),
    (_ts(formulas=[{"formula": "top(a, 2, 'median')"}]), "top() parameter 'by' must be one of"),
    (
        _ts(queries=[{"data_source": "metrics", "name": "a", "query": "avg:cpu{*}.rollup(x)"}]),
        "data.attributes.queries[0].query: unknown rollup method 'x'; expected one of avg, sum, "
        "min, max, count at position 18",
    ),
    (
        _ts(queries=[{"data_source": "metrics", "name": "a", "query": "sum:cpu{*}"}] * 2),
        "data.attributes.queries[1].name: 'a' is used by another query",
    ),
    (_ts(interval=0), "data.attributes.interval: Input should be greater than or equal to 1"),
    (
        {"data": {"type": "scalar_request", "attributes": _ts()["data"]["attributes"]}},
        "data.type must be 'timeseries_request', got 'scalar_request'",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_TIMESERIES)
def test_bad_bodies_name_the_field(
    client: TestClient, acme: NewKeys, body: object, message: str
) -> None:
    resp = post(client, acme, "timeseries", body)
    assert resp.status_code == 400, resp.text
    [error] = resp.json()["errors"]
    assert message in error


def test_bad_scalar_bodies_name_the_field(client: TestClient, acme: NewKeys) -> None:
    body = _ts()
    body["data"]["type"] = "scalar_request"
    resp = post(client, acme, "scalar", body)
    assert resp.status_code == 400
    assert resp.json()["errors"][0].startswith("data.attributes.queries[0].aggregator must be")
    body["data"]["attributes"]["queries"][0]["aggregator"] = "sum"
    body["data"]["attributes"]["formulas"] = [{"formula": "cumsum(a)"}]
    resp = post(client, acme, "scalar", body)
    assert resp.json() == {
        "errors": [
            "data.attributes.formulas[0].formula: cumsum() works on timeseries, not on scalar "
            "queries at position 0"
        ]
    }
