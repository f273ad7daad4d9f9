# datadog-api-client ships partial annotations: its constructors and to_dict() are untyped.
# mypy: disable-error-code="no-untyped-call"
"""The query language through the real stores: boolean, IN, wildcard and negated filters are
resolved by the inverted index (filter trees), arithmetic and functions by the query service,
read back with the official client and compared with an independent model."""

from __future__ import annotations

import time

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsApiV1
from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsApiV2
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_resource import MetricResource
from datadog_api_client.v2.model.metric_series import MetricSeries

from tests.e2e.conftest import Pipeline, eventually
from tests.e2e.reference import Answer, ReferenceModel, assert_same, parse_query_response

pytestmark = pytest.mark.e2e

METRIC = "e2e.lang.requests"
# host -> env; values differ per host so every filter selects a recognisable sum.
HOSTS = {"web-1": "prod", "web-2": "prod", "web-canary": "staging", "db-1": "prod"}
STEPS = 4


def test_filters_arithmetic_and_functions_through_the_real_index(pipeline: Pipeline) -> None:
    base = (int(time.time()) // 60 - 6) * 60
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
            model.add(pipeline.endpoints["org"], METRIC, [f"env:{env}", f"host:{host}"], ts, v)
    intake = Configuration(host=pipeline.intake)
    intake.api_key["apiKeyAuth"] = pipeline.endpoints["api_key"]
    with ApiClient(intake) as client:
        MetricsApiV2(client).submit_metrics(body=MetricPayload(series=series))

    org = pipeline.endpoints["org"]
    start, end = base - 60, base + 60 * STEPS

    def want(scope_hosts: set[str], by_host: bool = False, scale: float = 1.0) -> Answer:
        out: Answer = {}
        for host in scope_hosts:
            env = HOSTS[host]
            got = model.expected(
                org,
                METRIC,
                "sum",
                ["host"] if by_host else [],
                scope=[f"host:{host}", f"env:{env}"],
            )
            for group, points in got.items():
                key = group if by_host else ()
                acc = out.setdefault(key, {})
                for ts, v in points.items():
                    acc[ts] = acc.get(ts, 0.0) + v * scale
        return out

    cases: list[tuple[str, Answer]] = [
        (f"sum:{METRIC}{{host:web-*}}", want({"web-1", "web-2", "web-canary"})),
        (f"sum:{METRIC}{{host:*-canary}}", want({"web-canary"})),
        (
            f"sum:{METRIC}{{env:staging OR host:db-1}} by {{host}}",
            want({"web-canary", "db-1"}, by_host=True),
        ),
        (f"sum:{METRIC}{{host IN (web-1, db-1)}}", want({"web-1", "db-1"})),
        (f"sum:{METRIC}{{host NOT IN (web-1, db-1)}}", want({"web-2", "web-canary"})),
        (f"sum:{METRIC}{{!host:web-1,env:prod}}", want({"web-2", "db-1"})),
        (f"sum:{METRIC}{{env:prod AND NOT host:web-*}}", want({"db-1"})),
        (f"sum:{METRIC}{{host:web-1}} * 2", want({"web-1"}, scale=2.0)),
    ]
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = pipeline.endpoints["api_key"]
    config.api_key["appKeyAuth"] = pipeline.endpoints["app_key"]
    with ApiClient(config) as client:
        api = MetricsApiV1(client)
        for q, expected in cases:

            def check(q: str = q, expected: Answer = expected) -> None:
                body = api.query_metrics(_from=start, to=end, query=q).to_dict()
                assert body.get("status") == "ok", body
                assert_same(parse_query_response(body), expected, q)

            eventually(check, timeout=60.0, what=q)
