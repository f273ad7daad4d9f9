# datadog-api-client ships partial annotations: its constructors and to_dict() are untyped.
# mypy: disable-error-code="no-untyped-call"
"""Real Datadog clients against ``strata up``: two orgs, every submit path, exact read-back.

Each org submits through five paths (v2 and v1 ``submit_metrics`` of ``datadog-api-client``,
plain and gzip, and the ``datadog`` package with zlib ``compress_payload``), one metric per
path so a failure names the path. Values differ per org, so any leak between orgs shows up
as a wrong value, and each org also has a private metric the other must never see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsApiV1
from datadog_api_client.v1.model.metric_content_encoding import (
    MetricContentEncoding as EncodingV1,
)
from datadog_api_client.v1.model.metrics_payload import MetricsPayload
from datadog_api_client.v1.model.point import Point
from datadog_api_client.v1.model.series import Series
from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsApiV2
from datadog_api_client.v2.model.metric_content_encoding import (
    MetricContentEncoding as EncodingV2,
)
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_resource import MetricResource
from datadog_api_client.v2.model.metric_series import MetricSeries

from tests.e2e.conftest import Pipeline, eventually
from tests.e2e.reference import Answer, ReferenceModel, assert_same, parse_query_response

pytestmark = pytest.mark.e2e

PATHS = ("v2_plain", "v2_gzip", "v1_plain", "v1_gzip", "dogapi_zlib")
HOSTS = ("h0", "h1", "h2")
SHARDS = ("s0", "s1")
STEPS = 5

# One (tags, [(ts, value)]) entry per series.
Workload = list[tuple[str, list[str], list[tuple[int, float]]]]


class Org:
    def __init__(self, name: str, api_key: str, app_key: str, offset: float) -> None:
        self.name, self.api_key, self.app_key, self.offset = name, api_key, app_key, offset

    @property
    def private_metric(self) -> str:
        return f"e2e.only.{self.name}"


def workload(org: Org, base: int) -> dict[str, Workload]:
    """metric -> series for each submit path; values are exact binary fractions per org."""
    out: dict[str, Workload] = {}
    for p, path in enumerate(PATHS):
        metric = f"e2e.clients.{path}"
        series: Workload = []
        for h, host in enumerate(HOSTS):
            for s, shard in enumerate(SHARDS):
                points = [
                    (base + 60 * i, org.offset + p * 100 + h * 10 + s * 2.5 + i * 0.25)
                    for i in range(STEPS)
                ]
                series.append((host, [f"shard:{shard}", "env:e2e"], points))
        out[metric] = series
    out[org.private_metric] = [("h0", ["env:e2e"], [(base, org.offset)])]
    return out


def intake_config(pipeline: Pipeline, org: Org, *, compress: bool) -> Configuration:
    config = Configuration(host=pipeline.intake, compress=compress)
    config.api_key["apiKeyAuth"] = org.api_key
    return config


def submit_v2(pipeline: Pipeline, org: Org, metric: str, series: Workload, gzip: bool) -> None:
    body = MetricPayload(
        series=[
            MetricSeries(
                metric=metric,
                type=MetricIntakeType.GAUGE,
                points=[MetricPoint(timestamp=ts, value=v) for ts, v in points],
                resources=[MetricResource(name=host, type="host")],
                tags=tags,
            )
            for host, tags, points in series
        ]
    )
    with ApiClient(intake_config(pipeline, org, compress=gzip)) as client:
        api = MetricsApiV2(client)
        if gzip:
            resp = api.submit_metrics(body=body, content_encoding=EncodingV2.GZIP)
        else:
            resp = api.submit_metrics(body=body)
    assert not resp.get("errors"), resp


def submit_v1(pipeline: Pipeline, org: Org, metric: str, series: Workload, gzip: bool) -> None:
    body = MetricsPayload(
        series=[
            Series(
                metric=metric,
                type="gauge",
                points=[Point([float(ts), v]) for ts, v in points],
                host=host,
                tags=tags,
            )
            for host, tags, points in series
        ]
    )
    with ApiClient(intake_config(pipeline, org, compress=gzip)) as client:
        api = MetricsApiV1(client)
        if gzip:
            resp = api.submit_metrics(body=body, content_encoding=EncodingV1.GZIP)
        else:
            resp = api.submit_metrics(body=body)
    assert resp.get("status") == "ok", resp


def submit_dogapi(pipeline: Pipeline, org: Org, metric: str, series: Workload) -> None:
    from datadog import api, initialize

    # host_name given and config lookup off: the package must not probe the machine or
    # cloud metadata for a hostname (nothing may reach the internet).
    initialize(
        api_key=org.api_key,
        app_key=org.app_key,
        api_host=pipeline.intake,
        host_name="e2e-runner",
        hostname_from_config=False,
        mute=False,
    )
    metrics = [
        {"metric": metric, "points": points, "host": host, "tags": tags, "type": "gauge"}
        for host, tags, points in series
    ]
    resp = api.Metric.send(  # type: ignore[attr-defined]
        metrics=metrics, compress_payload=True
    )
    assert resp.get("status") == "ok", resp


def submit_all(pipeline: Pipeline, org: Org, base: int, model: ReferenceModel) -> None:
    for metric, series in workload(org, base).items():
        path = metric.rsplit(".", 1)[1]
        if path.startswith("v2"):
            submit_v2(pipeline, org, metric, series, gzip=path.endswith("gzip"))
        elif path.startswith("dogapi"):
            submit_dogapi(pipeline, org, metric, series)
        else:  # v1 paths and the private metric
            submit_v1(pipeline, org, metric, series, gzip=path.endswith("gzip"))
        # Recorded only after the 202: the model holds acknowledged points only.
        for host, tags, points in series:
            for ts, v in points:
                model.add(org.name, metric, [*tags, f"host:{host}"], ts, v)


def query_api(pipeline: Pipeline, org: Org) -> tuple[ApiClient, MetricsApiV1]:
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = org.api_key
    config.api_key["appKeyAuth"] = org.app_key
    client = ApiClient(config)
    return client, MetricsApiV1(client)


def read(api: MetricsApiV1, q: str, start: int, end: int) -> dict[str, Any]:
    resp = api.query_metrics(_from=start, to=end, query=q)
    body: dict[str, Any] = resp.to_dict()
    assert body.get("status") == "ok", body
    return body


def create_org(pipeline: Pipeline, name: str, offset: float) -> Org:
    argv = [sys.executable, "-m", "strata.cli", "keys", "create", "--org", name, "--json"]
    argv += ["--data-dir", str(pipeline.data_dir)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    keys = json.loads(out.stdout)
    return Org(keys["org"], keys["api_key"], keys["app_key"], offset)


@pytest.fixture(scope="module")
def orgs(pipeline: Pipeline) -> list[Org]:
    main = Org(
        pipeline.endpoints["org"], pipeline.endpoints["api_key"], pipeline.endpoints["app_key"], 0
    )
    return [main, create_org(pipeline, "second", 1000.0)]


def test_two_orgs_submit_with_every_client_and_read_back_exactly(
    pipeline: Pipeline, orgs: list[Org]
) -> None:
    base = (int(time.time()) // 60 - 10) * 60  # minute-aligned, 10 minutes ago
    start, end = base - 60, base + 60 * (STEPS + 1)
    model = ReferenceModel()

    def submitted(org: Org) -> Callable[[], None]:
        # A key created a moment ago is honoured once intake reloads keys.json (~1 s).
        def attempt() -> None:
            try:
                submit_all(pipeline, org, base, model)
            except Exception as exc:  # ForbiddenException until the reload
                raise AssertionError(f"submit as {org.name}: {exc}") from exc

        return attempt

    for org in orgs:
        eventually(submitted(org), timeout=30.0, what=f"submit as {org.name}")

    for org in orgs:
        check_org(pipeline, org, orgs, model, start, end)


def check_org(
    pipeline: Pipeline, org: Org, orgs: list[Org], model: ReferenceModel, start: int, end: int
) -> None:
    """Every aggregation of every path equals the model; nothing of another org shows."""
    client, api = query_api(pipeline, org)
    with client:
        for path in PATHS:
            metric = f"e2e.clients.{path}"
            for agg in ("avg", "sum", "min", "max"):
                q = f"{agg}:{metric}{{*}} by {{host}}"
                want = model.expected(org.name, metric, agg, ["host"])

                def check(q: str = q, want: Answer = want) -> None:
                    got = parse_query_response(read(api, q, start, end))
                    assert_same(got, want, f"{org.name} {q}")

                eventually(check, timeout=60.0, what=f"{org.name} {q}")
            # A tag filter through the inverted index, no grouping.
            q = f"max:{metric}{{shard:s1}}"
            got = parse_query_response(read(api, q, start, end))
            want = model.expected(org.name, metric, "max", scope=["shard:s1"])
            assert_same(got, want, f"{org.name} {q}")

        # The other org's private metric does not exist for this org.
        others = [o for o in orgs if o is not org]
        for other in others:
            body = read(api, f"sum:{other.private_metric}{{*}}", start, end)
            assert body["series"] == [], f"{org.name} sees {other.private_metric}"

        def listed() -> None:
            resp = api.list_active_metrics(_from=start).to_dict()
            names = set(resp["metrics"])
            missing = model.metrics(org.name) - names
            assert not missing, f"{org.name}: {sorted(missing)} not listed"
            leaked = {o.private_metric for o in others} & names
            assert not leaked, f"{org.name} lists {sorted(leaked)}"

        eventually(listed, timeout=60.0, what=f"{org.name} active metrics")


def test_resubmitted_and_conflicting_points_converge_to_one_answer(
    pipeline: Pipeline, orgs: list[Org]
) -> None:
    """A client retry resends the same payload; another writer sends a conflicting value for
    the same (series, ts). Acknowledged twice or in any order, each (series, ts) counts once,
    and the conflict rule (largest |value|, ties to the larger) picks the winner."""
    org = orgs[0]
    base = (int(time.time()) // 60 - 8) * 60
    metric = "e2e.redelivery"
    model = ReferenceModel()
    first: Workload = [
        (host, ["env:e2e"], [(base + 60 * i, float(10 * h + i)) for i in range(STEPS)])
        for h, host in enumerate(HOSTS)
    ]
    # Same timestamps: h0 loses (smaller |v|), h1 wins with a larger negative value, h2 ties
    # in magnitude with the opposite sign (the positive one must win).
    second: Workload = [
        ("h0", ["env:e2e"], [(base + 60 * i, 0.5) for i in range(STEPS)]),
        ("h1", ["env:e2e"], [(base + 60 * i, -1000.0 - i) for i in range(STEPS)]),
        ("h2", ["env:e2e"], [(base + 60 * i, -float(20 + i)) for i in range(STEPS)]),
    ]
    for series in (first, first, second, first):  # a retry, a conflict, a late retry
        submit_v2(pipeline, org, metric, series, gzip=False)
        for host, tags, points in series:
            for ts, v in points:
                model.add(org.name, metric, [*tags, f"host:{host}"], ts, v)

    client, api = query_api(pipeline, org)
    start, end = base - 60, base + 60 * (STEPS + 1)
    with client:
        for agg in ("sum", "min", "max"):
            q = f"{agg}:{metric}{{*}} by {{host}}"
            want = model.expected(org.name, metric, agg, ["host"])

            def check(q: str = q, want: Answer = want) -> None:
                assert_same(parse_query_response(read(api, q, start, end)), want, q)

            eventually(check, timeout=60.0, what=q)
        # Spot-check the rule itself, independent of the model.
        got = parse_query_response(read(api, f"max:{metric}{{host:h2}}", start, end))
        assert got == {(): {base + 60 * i: float(20 + i) for i in range(STEPS)}}
