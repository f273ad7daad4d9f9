# datadog-api-client ships partial annotations: its constructors and to_dict() are untyped.
# mypy: disable-error-code="no-untyped-call"
"""The v2 query API through the real pipeline with the official client: submit points, then
``query_timeseries_data`` (formulas over named queries), ``query_scalar_data`` (aggregator
and limit) and ``list_tags_by_metric_name``, each compared with the reference model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ServiceException
from datadog_api_client.v2.api.metrics_api import MetricsApi
from datadog_api_client.v2.model.formula_limit import FormulaLimit
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_resource import MetricResource
from datadog_api_client.v2.model.metric_series import MetricSeries
from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_scalar_query import MetricsScalarQuery
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.query_sort_order import QuerySortOrder
from datadog_api_client.v2.model.scalar_formula_query_request import ScalarFormulaQueryRequest
from datadog_api_client.v2.model.scalar_formula_request import ScalarFormulaRequest
from datadog_api_client.v2.model.scalar_formula_request_attributes import (
    ScalarFormulaRequestAttributes,
)
from datadog_api_client.v2.model.scalar_formula_request_queries import ScalarFormulaRequestQueries
from datadog_api_client.v2.model.scalar_formula_request_type import ScalarFormulaRequestType
from datadog_api_client.v2.model.timeseries_formula_query_request import (
    TimeseriesFormulaQueryRequest,
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

from tests.e2e.conftest import Pipeline, eventually
from tests.e2e.reference import Answer, ReferenceModel, assert_same

pytestmark = pytest.mark.e2e

METRIC = "e2e.v2.requests"
HOSTS = {"web-1": "prod", "web-2": "prod", "db-1": "staging"}
STEPS = 4


def answered(call: Callable[[], Any]) -> dict[str, Any]:
    """``call()``'s body as a dict; a 503 (stores still starting) fails the check so that
    :func:`eventually` retries it."""
    try:
        body: dict[str, Any] = call().to_dict()
    except ServiceException as exc:
        raise AssertionError(f"not answered yet: {exc.status} {exc.body}") from None
    return body


def parse_timeseries(body: dict[str, Any]) -> dict[int, Answer]:
    attrs = body["data"]["attributes"]
    out: dict[int, Answer] = {}
    for series, values in zip(attrs["series"], attrs["values"], strict=True):
        points = {
            t // 1000: v for t, v in zip(attrs["times"], values, strict=True) if v is not None
        }
        out.setdefault(series["query_index"], {})[tuple(series["group_tags"])] = points
    return out


def test_v2_timeseries_scalar_and_tags_match_the_model(pipeline: Pipeline) -> None:
    base = (int(time.time()) // 60 - 6) * 60
    org = pipeline.endpoints["org"]
    model = ReferenceModel()
    series = []
    for h, (host, env) in enumerate(sorted(HOSTS.items())):
        points = [(base + 60 * i, float(10**h + i)) for i in range(STEPS)]
        series.append(
            MetricSeries(
                metric=METRIC,
                type=MetricIntakeType.GAUGE,
                points=[MetricPoint(timestamp=ts, value=v) for ts, v in points],
                resources=[MetricResource(name=host, type="host")],
                tags=[f"env:{env}"],
            )
        )
        for ts, v in points:
            model.add(org, METRIC, [f"env:{env}", f"host:{host}"], ts, v)
    intake = Configuration(host=pipeline.intake)
    intake.api_key["apiKeyAuth"] = pipeline.endpoints["api_key"]
    with ApiClient(intake) as client:
        MetricsApi(client).submit_metrics(body=MetricPayload(series=series))

    by_host = model.expected(org, METRIC, "sum", ["host"])
    prod = model.expected(org, METRIC, "sum", ["host"], scope=["env:prod"])
    want_sum: Answer = {
        g: {t: v + prod[g][t] for t, v in p.items()} for g, p in by_host.items() if g in prod
    }
    want_double: Answer = {g: {t: 2 * v for t, v in p.items()} for g, p in by_host.items()}
    totals = {g[0].removeprefix("host:"): sum(p.values()) for g, p in by_host.items()}
    top_two = sorted(totals, key=lambda h: -totals[h])[:2]

    start_ms, end_ms = (base - 60) * 1000, (base + 60 * STEPS) * 1000
    ts_body = TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=start_ms,
                to=end_ms,
                queries=TimeseriesFormulaRequestQueries(
                    [
                        MetricsTimeseriesQuery(
                            data_source=MetricsDataSource.METRICS,
                            name="a",
                            query=f"sum:{METRIC}{{*}} by {{host}}",
                        ),
                        MetricsTimeseriesQuery(
                            data_source=MetricsDataSource.METRICS,
                            name="b",
                            query=f"sum:{METRIC}{{env:prod}} by {{host}}",
                        ),
                    ]
                ),
                formulas=[QueryFormula(formula="a + b"), QueryFormula(formula="a * 2")],
            ),
        )
    )
    scalar_body = ScalarFormulaQueryRequest(
        data=ScalarFormulaRequest(
            type=ScalarFormulaRequestType.SCALAR_REQUEST,
            attributes=ScalarFormulaRequestAttributes(
                _from=start_ms,
                to=end_ms,
                queries=ScalarFormulaRequestQueries(
                    [
                        MetricsScalarQuery(
                            data_source=MetricsDataSource.METRICS,
                            name="a",
                            query=f"sum:{METRIC}{{*}} by {{host}}",
                            aggregator=MetricsAggregator.SUM,
                        )
                    ]
                ),
                formulas=[
                    QueryFormula(
                        formula="a", limit=FormulaLimit(count=2, order=QuerySortOrder.DESC)
                    )
                ],
            ),
        )
    )
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = pipeline.endpoints["api_key"]
    config.api_key["appKeyAuth"] = pipeline.endpoints["app_key"]
    with ApiClient(config) as client:
        api = MetricsApi(client)

        def timeseries() -> None:
            got = parse_timeseries(answered(lambda: api.query_timeseries_data(body=ts_body)))
            assert_same(got.get(0, {}), want_sum, "a + b")
            assert_same(got.get(1, {}), want_double, "a * 2")

        def scalar() -> None:
            columns = answered(lambda: api.query_scalar_data(body=scalar_body))["data"][
                "attributes"
            ]["columns"]
            host, number = columns
            assert host["name"] == "host" and number["name"] == "a", columns
            assert [cell[0] for cell in host["values"]] == top_two
            assert number["values"] == [totals[h] for h in top_two]

        def tags() -> None:
            got = answered(lambda: api.list_tags_by_metric_name(METRIC))["data"]["attributes"][
                "tags"
            ]
            want = {f"host:{h}" for h in HOSTS} | {f"env:{e}" for e in HOSTS.values()}
            assert set(got) == want

        eventually(timeseries, timeout=60.0, what="query_timeseries_data")
        eventually(scalar, timeout=30.0, what="query_scalar_data")
        eventually(tags, timeout=30.0, what="list_tags_by_metric_name")
