# datadog-api-client ships partial annotations: its constructors and to_dict() are untyped.
# mypy: disable-error-code="no-untyped-call"
"""Distributions end to end on a real ``strata up``: both official clients, two orgs.

Each org submits distribution points through ``datadog-api-client``'s
``submit_distribution_points`` (plain and deflate) and the ``datadog`` package's
``api.Distribution.send`` (zlib), one metric per path. The RAM store keeps 15 minutes here
(``STRATA_WINDOW_HOURS``), and the points span the last 40, so every query below is
stitched from the rocks and the RAM sketch stores (checked on ``X-Strata-Tiers``).

The model keeps every value submitted per (org, metric, host, ts); percentiles read back
through the v1 API (and v2) must be within the sketch's relative accuracy (1 %) of the
exact percentile of the values of their group and bucket (``sorted(vs)[floor(q (n-1))]``,
DDSketch's definition), count/sum/min/max/avg exact.

The crash test SIGKILLs the RAM process (its sketch loop included) and the rocks process
at seeded moments while distribution points flow; ``strata up`` restarts them, RAM replays
its window from Kafka, rocks resumes from the offsets stored with its sketches, and every
count, read from each sketch store and through the query API, must then be exact — a sketch
merged twice, or lost, would show.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ServiceException
from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsApiV1
from datadog_api_client.v1.model.distribution_point import DistributionPoint
from datadog_api_client.v1.model.distribution_points_content_encoding import (
    DistributionPointsContentEncoding,
)
from datadog_api_client.v1.model.distribution_points_payload import DistributionPointsPayload
from datadog_api_client.v1.model.distribution_points_series import DistributionPointsSeries
from datadog_api_client.v1.model.distribution_points_type import DistributionPointsType
from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsApiV2
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
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

from strata.naming import canonical_tags
from strata.series_id import series_id
from strata.sketch_codec import decode_batch
from tests.e2e.conftest import Pipeline, eventually, start_pipeline
from tests.e2e.test_official_clients import Org, create_org

pytestmark = pytest.mark.e2e

RAM_WINDOW_HOURS = 0.25
ALPHA = 0.01
PATHS = ("api_plain", "api_deflate", "dogapi_zlib")
HOSTS = ("h0", "h1")
STEPS = 8  # timestamps 5 minutes apart, from 40 minutes ago
STEP = 300
Answer = dict[tuple[str, ...], dict[int, float]]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """``strata up`` whose RAM tiers keep 15 minutes (the services inherit the variable)."""
    data = tmp_path_factory.mktemp("e2e-dist") / "data"
    running = start_pipeline(data, env={"STRATA_WINDOW_HOURS": str(RAM_WINDOW_HOURS)})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def orgs(pipeline: Pipeline) -> list[Org]:
    main = Org(
        pipeline.endpoints["org"], pipeline.endpoints["api_key"], pipeline.endpoints["app_key"], 1
    )
    return [main, create_org(pipeline, "second", 3.0)]


@dataclass
class Model:
    """Every value acknowledged, per (org, metric, host, ts)."""

    values: dict[tuple[str, str, str, int], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, org: str, metric: str, host: str, ts: int, vs: list[float]) -> None:
        self.values[(org, metric, host, ts)] += vs

    def expected(self, org: str, metric: str, agg: str, by_host: bool, step: int = 1) -> Answer:
        groups: dict[tuple[str, ...], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for (o, m, host, ts), vs in self.values.items():
            if (o, m) == (org, metric):
                label = (f"host:{host}",) if by_host else ()
                groups[label][ts - ts % step] += vs
        return {g: {t: exact(agg, vs) for t, vs in b.items()} for g, b in groups.items()}


def exact(agg: str, vs: list[float]) -> float:
    if agg.startswith("p"):
        return sorted(vs)[math.floor(int(agg[1:]) / 100 * (len(vs) - 1))]
    return {
        "count": float(len(vs)),
        "sum": math.fsum(vs),
        "min": min(vs),
        "max": max(vs),
        "avg": math.fsum(vs) / len(vs),
    }[agg]


def assert_close(got: Answer, want: Answer, agg: str, what: str) -> None:
    assert want, f"{what}: the test expects nothing, so it would prove nothing"
    assert set(got) == set(want), f"{what}: groups {sorted(got)} != {sorted(want)}"
    for group, points in want.items():
        assert set(got[group]) == set(points), f"{what} {group}: {sorted(got[group])}"
        for ts, w in points.items():
            g = got[group][ts]
            bound = ALPHA * abs(w) if agg.startswith("p") else 1e-9 * max(1.0, abs(w))
            assert abs(g - w) <= bound + 1e-12, f"{what} {group} @ {ts}: {g} vs exact {w}"


def parse_v1(body: dict[str, Any]) -> Answer:
    out: Answer = {}
    for s in body.get("series") or []:
        out[tuple(sorted(s.get("tag_set") or []))] = {
            int(p[0]) // 1000: float(p[1]) for p in s["pointlist"] if p[1] is not None
        }
    return out


def workload(
    org: Org, base: int, rng: random.Random
) -> dict[str, dict[tuple[str, int], list[float]]]:
    """metric -> (host, ts) -> values (log-normal latencies, scaled per org)."""
    out: dict[str, dict[tuple[str, int], list[float]]] = {}
    for path in PATHS:
        out[f"e2e.dist.{path}"] = {
            (host, base + STEP * i): [
                round(org.offset * rng.lognormvariate(2 + h, 0.8), 4)
                for _ in range(rng.randint(20, 60))
            ]
            for h, host in enumerate(HOSTS)
            for i in range(STEPS)
        }
    out[f"e2e.dist.only.{org.name}"] = {("h0", base): [org.offset]}
    return out


def submit_api_client(
    pipeline: Pipeline,
    org: Org,
    metric: str,
    data: dict[tuple[str, int], list[float]],
    deflate: bool,
) -> None:
    # Each (host, ts) is sent as two points (two halves of its values): intake folds them.
    series = []
    for host in HOSTS:
        points = []
        for (h, ts), vs in sorted(data.items()):
            if h == host:
                half = len(vs) // 2
                points += [
                    DistributionPoint([float(ts), vs[:half]]),
                    DistributionPoint([float(ts), vs[half:]]),
                ]
        if points:
            series.append(
                DistributionPointsSeries(
                    metric=metric,
                    points=points,
                    host=host,
                    tags=["env:e2e"],
                    type=DistributionPointsType.DISTRIBUTION,
                )
            )
    config = Configuration(host=pipeline.intake, compress=deflate)
    config.api_key["apiKeyAuth"] = org.api_key
    with ApiClient(config) as client:
        api = MetricsApiV1(client)
        body = DistributionPointsPayload(series=series)
        if deflate:  # the only encoding the endpoint's spec names
            resp = api.submit_distribution_points(
                body=body, content_encoding=DistributionPointsContentEncoding.DEFLATE
            )
        else:
            resp = api.submit_distribution_points(body=body)
    assert resp.get("status") == "ok", resp


def submit_dogapi(
    pipeline: Pipeline, org: Org, metric: str, data: dict[tuple[str, int], list[float]]
) -> None:
    from datadog import api, initialize

    initialize(
        api_key=org.api_key,
        app_key=org.app_key,
        api_host=pipeline.intake,
        host_name="e2e-runner",
        hostname_from_config=False,
        mute=False,
    )
    # One request per timestamp and host: the same series' sketches arrive in many messages.
    for (host, ts), vs in sorted(data.items()):
        resp = api.Distribution.send(  # type: ignore[attr-defined]
            distributions=[
                {"metric": metric, "points": [(ts, vs)], "host": host, "tags": ["env:e2e"]}
            ],
            compress_payload=True,
        )
        assert resp.get("status") == "ok", resp


def query_v1(pipeline: Pipeline, org: Org, q: str, start: int, end: int) -> dict[str, Any]:
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = org.api_key
    config.api_key["appKeyAuth"] = org.app_key
    with ApiClient(config) as client:
        try:
            body: dict[str, Any] = (
                MetricsApiV1(client).query_metrics(_from=start, to=end, query=q).to_dict()
            )
        except ServiceException as exc:  # 503 while stores start: retried by eventually
            raise AssertionError(f"{q}: {exc.status} {exc.body}") from None
    assert body.get("status") == "ok", body
    return body


def tiers_of(pipeline: Pipeline, org: Org, q: str, start: int, end: int) -> str:
    resp = httpx.get(
        f"{pipeline.query}/api/v1/query",
        params={"from": start, "to": end, "query": q},
        headers={"DD-API-KEY": org.api_key, "DD-APPLICATION-KEY": org.app_key},
        timeout=30.0,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.headers.get("x-strata-tiers", ""))


def test_both_clients_two_orgs_percentiles_within_alpha(
    pipeline: Pipeline, orgs: list[Org]
) -> None:
    rng = random.Random(5)
    base = (int(time.time()) // 60 - 40) * 60
    start, end = base - 60, base + STEP * (STEPS - 1) + 60
    model = Model()
    for org in orgs:
        data = workload(org, base, rng)

        def submitted(org: Org = org, data: dict[str, Any] = data) -> None:
            try:  # a key created a moment ago is honoured once intake reloads keys.json
                submit_api_client(pipeline, org, "e2e.dist.probe", {("h0", base): [1.0]}, False)
            except Exception as exc:
                raise AssertionError(f"submit as {org.name}: {exc}") from exc

        eventually(submitted, timeout=30.0, what=f"keys of {org.name}")
        model.add(org.name, "e2e.dist.probe", "h0", base, [1.0])
        for metric, points in data.items():
            path = metric.rsplit(".", 1)[1]
            if path == "dogapi_zlib":
                submit_dogapi(pipeline, org, metric, points)
            else:
                submit_api_client(pipeline, org, metric, points, deflate=path == "api_deflate")
            for (host, ts), vs in points.items():
                model.add(org.name, metric, host, ts, vs)

    for org in orgs:
        first = f"p99:e2e.dist.{PATHS[0]}{{*}} by {{host}}"

        def ready(org: Org = org, q: str = first) -> None:
            want = model.expected(org.name, f"e2e.dist.{PATHS[0]}", "p99", True)
            assert_close(parse_v1(query_v1(pipeline, org, q, start, end)), want, "p99", q)

        eventually(ready, timeout=90.0, what=f"{org.name} {first}")

        def both_tiers(org: Org = org, q: str = first) -> None:
            assert tiers_of(pipeline, org, q, start, end) == "rocks,ram"

        eventually(both_tiers, timeout=30.0, what="an answer from rocks and RAM")
        for path in PATHS:
            metric = f"e2e.dist.{path}"
            for agg in ("p50", "p75", "p90", "p95", "p99", "count", "avg", "min", "max"):
                for by_host in (True, False):
                    q = f"{agg}:{metric}{{env:e2e}}" + (" by {host}" if by_host else "")

                    def matches(
                        org: Org = org,
                        q: str = q,
                        metric: str = metric,
                        agg: str = agg,
                        by_host: bool = by_host,
                    ) -> None:
                        # Every path was submitted before the first answer matched, but
                        # on a loaded machine its stores may still be applying it.
                        got = parse_v1(query_v1(pipeline, org, q, start, end))
                        want = model.expected(org.name, metric, agg, by_host)
                        assert_close(got, want, agg, f"{org.name} {q}")

                    eventually(matches, timeout=60.0, what=q)
        # Merged in time as well: 20-minute buckets of 1m sketches from both tiers.
        q = "p90:e2e.dist.api_deflate{*}.rollup(avg, 1200)"
        got = parse_v1(query_v1(pipeline, org, q, start, end))
        assert_close(
            got, model.expected(org.name, "e2e.dist.api_deflate", "p90", False, 1200), "p90", q
        )
        # The other org's private distribution does not exist here.
        for other in orgs:
            if other is not org:
                body = query_v1(pipeline, org, f"p50:e2e.dist.only.{other.name}{{*}}", start, end)
                assert body["series"] == [], f"{org.name} sees {other.name}'s metric"
        check_v2(pipeline, org, model, start, end)
        check_catalog(pipeline, org, start)


def check_catalog(pipeline: Pipeline, org: Org, start: int) -> None:
    """The distribution metrics are listed, and their metadata says ``distribution``."""
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = org.api_key
    config.api_key["appKeyAuth"] = org.app_key
    with ApiClient(config) as client:
        api = MetricsApiV1(client)
        listed = set(api.list_active_metrics(_from=start).to_dict()["metrics"])
        assert {f"e2e.dist.{p}" for p in PATHS} | {f"e2e.dist.only.{org.name}"} <= listed
        assert not any(m.startswith("e2e.dist.only.") and org.name not in m for m in listed)
        meta = api.get_metric_metadata(metric_name="e2e.dist.api_plain").to_dict()
        assert meta.get("type") == "distribution", meta


def check_v2(pipeline: Pipeline, org: Org, model: Model, start: int, end: int) -> None:
    """``query_timeseries_data`` with a percentile query and a formula over it."""
    config = Configuration(host=pipeline.query)
    config.api_key["apiKeyAuth"] = org.api_key
    config.api_key["appKeyAuth"] = org.app_key
    metric = "e2e.dist.dogapi_zlib"
    body = TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=start * 1000,
                to=(end + 1) * 1000,
                queries=TimeseriesFormulaRequestQueries(
                    [
                        MetricsTimeseriesQuery(
                            data_source=MetricsDataSource.METRICS,
                            name="a",
                            query=f"p95:{metric}{{*}} by {{host}}",
                        )
                    ]
                ),
                formulas=[QueryFormula(formula="a"), QueryFormula(formula="a * 2")],
            ),
        )
    )
    with ApiClient(config) as client:
        resp = MetricsApiV2(client).query_timeseries_data(body=body).to_dict()
    attrs = resp["data"]["attributes"]
    got: dict[int, Answer] = {}
    for series, values in zip(attrs["series"], attrs["values"], strict=True):
        got.setdefault(series["query_index"], {})[tuple(series["group_tags"])] = {
            t // 1000: v for t, v in zip(attrs["times"], values, strict=True) if v is not None
        }
    want = model.expected(org.name, metric, "p95", True)
    assert_close(got[0], want, "p95", f"v2 {org.name}")
    doubled = {g: {t: 2 * v for t, v in p.items()} for g, p in want.items()}
    assert_close(got[1], doubled, "p95", f"v2 {org.name} a * 2")


# -- crash test ----------------------------------------------------------------------------

# The RAM process three times, the rocks process (offsets in its RocksDB) twice.
KILLS = ("ram", "rocks", "ram", "rocks", "ram")
CHAOS_HOSTS = ("c0", "c1", "c2")
SPAN = 120  # seconds of timestamps, written over and over: sketches of a ts merge


@dataclass
class Flow:
    """Distribution points through intake, one request every ``interval`` seconds. Only
    acknowledged requests enter the model; intake is never killed, so every request must be
    acknowledged (a client retry could store values twice: merging is not idempotent)."""

    pipeline: Pipeline
    org: Org
    metric: str
    base: int
    rng: random.Random
    interval: float = 0.05
    model: Model = field(default_factory=Model)
    requests: int = 0
    last_ack: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=10.0) as http:
                i = 0
                while not self.stop.is_set():
                    ts = self.base + i % SPAN
                    rows = {
                        h: [float(self.rng.randint(1, 1000)) for _ in range(self.rng.randint(1, 6))]
                        for h in CHAOS_HOSTS
                    }
                    body = {
                        "series": [
                            {
                                "metric": self.metric,
                                "points": [[ts, vs]],
                                "host": h,
                                "type": "distribution",
                            }
                            for h, vs in rows.items()
                        ]
                    }
                    resp = http.post(
                        f"{self.pipeline.intake}/api/v1/distribution_points",
                        json=body,
                        headers={"DD-API-KEY": self.org.api_key},
                    )
                    assert resp.status_code == 202, resp.text
                    for h, vs in rows.items():
                        self.model.add(self.org.name, self.metric, h, ts, vs)
                    self.requests += 1
                    self.last_ack = time.monotonic()
                    i += 1
                    self.stop.wait(self.interval)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="dist-flow", daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30.0)
        if self.error is not None:
            raise self.error


def counts(batch_bytes: bytes) -> dict[tuple[int, int], float]:
    b = decode_batch(batch_bytes)
    return {(int(s), int(t)): float(c) for s, t, c in zip(b.sid, b.ts, b.count, strict=True)}


def test_ram_sketch_store_sigkilled_during_ingestion_counts_stay_exact(
    pipeline: Pipeline, orgs: list[Org]
) -> None:
    seed = random.SystemRandom().randrange(2**31)
    print(f"crash test seed {seed}")
    rng = random.Random(seed)
    org = orgs[0]
    metric = "e2e.dist.chaos"
    base = int(time.time()) - SPAN - 30
    flow = Flow(pipeline, org, metric, base, random.Random(seed + 1))
    flow.start()
    landed: dict[str, int] = defaultdict(int)
    try:
        for name in KILLS:
            time.sleep(rng.uniform(0.5, 3.0))
            old = int(pipeline.component(name)["pid"])
            os.kill(old, signal.SIGKILL)
            if time.monotonic() - flow.last_ack < 1.0 and flow.error is None:
                landed[name] += 1  # killed while points flowed

            def restarted(name: str = name, old: int = old) -> None:
                now = pipeline.component(name)
                assert now["pid"] not in (None, old) and now["phase"] == "running", now

            eventually(restarted, timeout=90.0, what=f"{name} restart")
        time.sleep(1.0)
    finally:
        flow.finish()
    assert flow.requests > 20 and landed["ram"] >= 1, (flow.requests, landed)

    sids = {h: series_id(org.name, metric, canonical_tags([f"host:{h}"])) for h in CHAOS_HOSTS}
    want = {
        (sids[h], ts): float(len(vs))
        for (o, m, h, ts), vs in flow.model.values.items()
        if (o, m) == (org.name, metric)
    }
    start, end = base - 10, base + SPAN + 10
    ram_url = str(pipeline.component("ram")["url"])
    rocks_url = str(pipeline.component("rocks")["url"])

    def exact_in(url: str) -> None:
        resp = httpx.post(
            f"{url}/v1/sketches/read",
            json={"sids": sorted(sids.values()), "from": start, "to": end},
            timeout=30.0,
        )
        assert resp.status_code == 200, resp.text
        got = counts(resp.content)
        assert got == want, f"{url}: {len(got)} rows vs {len(want)}; first diff " + str(
            next(((k, got.get(k), v) for k, v in want.items() if got.get(k) != v), None)
        )

    eventually(lambda: exact_in(ram_url), timeout=90.0, what="RAM sketches replayed exactly")
    eventually(lambda: exact_in(rocks_url), timeout=60.0, what="rocks sketches exact")
    # And through the query API (RAM serves this range; counts per host and second).
    got = parse_v1(query_v1(pipeline, org, f"count:{metric}{{*}} by {{host}}", start, end))
    expected: Answer = defaultdict(dict)
    for (o, m, h, ts), vs in flow.model.values.items():
        if (o, m) == (org.name, metric):
            expected[(f"host:{h}",)][ts] = float(len(vs))
    assert got == expected
    total = sum(np.fromiter(want.values(), float))
    print(f"{flow.requests} requests, {total:.0f} values, kills while flowing: {dict(landed)}")


def test_bad_payloads_are_refused_naming_the_field(pipeline: Pipeline) -> None:
    url = f"{pipeline.intake}/api/v1/distribution_points"
    key = {"DD-API-KEY": pipeline.endpoints["api_key"]}
    now = int(time.time())
    cases = {
        '{"series": [{"metric": "m", "points": [[1, [1]]], "type": "gauge"}]}': (
            "series[0].type: expected 'distribution'"
        ),
        '{"series": [{"metric": "m", "points": [[1, [1, "x"]]]}]}': (
            "series[0].points[0][1][1]: expected a number"
        ),
        '{"series": [{"metric": "m", "points": [[1]]}]}': (
            "series[0].points[0]: expected a [timestamp, [values]] pair"
        ),
        "{": "body: malformed JSON",
    }
    for body, message in cases.items():
        resp = httpx.post(url, content=body, headers=key, timeout=10.0)
        assert resp.status_code == 400, resp.text
        assert resp.json()["errors"][0].startswith(message), resp.text
    resp = httpx.post(url, json={"series": []}, headers={"DD-API-KEY": "0" * 32}, timeout=10.0)
    assert resp.status_code == 403
    # Points outside the window are rejected and counted, the rest accepted: 202 as v1.
    window = {
        "series": [{"metric": "e2e.dist.window", "points": [[now - 7200, [1.0]], [now, [2.0]]]}]
    }
    resp = httpx.post(url, json=window, headers=key, timeout=10.0)
    assert (resp.status_code, resp.json()) == (202, {"status": "ok"})


def test_a_percentile_monitor_alerts_on_the_slow_host_only(pipeline: Pipeline) -> None:
    """A multi-alert monitor on ``p99`` (gated on the sketch stores' watermarks, judged by
    the evaluator of ``strata up`` from merged sketches): the host whose p99 is over the
    threshold alerts, the other stays OK, and evaluation is not held as delayed."""
    key = pipeline.endpoints["api_key"]
    headers = {"DD-API-KEY": key, "DD-APPLICATION-KEY": pipeline.endpoints["app_key"]}
    rng = random.Random(11)
    stop = threading.Event()

    def feed() -> None:  # like an agent: every 2 s, this second's latencies per host
        with httpx.Client(timeout=10.0) as http:
            while not stop.is_set():
                now = int(time.time())
                series = [
                    {
                        "metric": "e2e.dist.mon",
                        "host": host,
                        "points": [
                            [now, [round(rng.lognormvariate(mu, 0.3), 3) for _ in range(50)]]
                        ],
                    }
                    for host, mu in (("slow", math.log(300)), ("fast", math.log(10)))
                ]
                # a failed send is retried on the next tick, like the agent
                with contextlib.suppress(httpx.HTTPError):
                    http.post(
                        f"{pipeline.intake}/api/v1/distribution_points",
                        json={"series": series},
                        headers={"DD-API-KEY": key},
                    )
                stop.wait(2.0)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        created = httpx.post(
            f"{pipeline.query}/api/v1/monitor",
            headers=headers,
            json={
                "name": "p99 latency per host",
                "type": "query alert",
                "query": "max(last_1m):p99:e2e.dist.mon{*} by {host} > 100",
                "message": "slow host",
                "options": {"thresholds": {"critical": 100}},
            },
            timeout=10.0,
        )
        assert created.status_code == 200, created.text
        mid = created.json()["id"]

        def judged() -> None:
            got = httpx.get(f"{pipeline.query}/api/v1/monitor/{mid}", headers=headers, timeout=10)
            state = got.json()["state"]
            statuses = {name: g["status"] for name, g in state["groups"].items()}
            assert statuses == {"host:slow": "Alert", "host:fast": "OK"}, state
            assert not (state.get("evaluation") or {}).get("delayed", True), state

        eventually(judged, timeout=120.0, what="the p99 monitor judged per host")
    finally:
        stop.set()
        feeder.join(timeout=15)


def test_agent_sketch_payloads_are_queried_back_within_the_conversion_bound(
    pipeline: Pipeline,
) -> None:
    """``POST /api/beta/sketches`` as the agent sends it (protobuf ``SketchPayload``,
    zstd and deflate bodies; bins in the agent's own index mapping, built here from its
    documented key function): p50/p99 within the stated bound (docs/formats.md, 1.786 %),
    count exact, through the query API of a real ``strata up``."""
    import zlib

    import zstandard

    from intake.agent_sketches import sketch_payload_class

    ln_gamma, bias = math.log1p(1 / 64), 1338  # datadog-agent pkg/quantile defaults
    rng = np.random.default_rng(8)
    now = int(time.time()) // 60 * 60 - 300
    values = {host: rng.lognormal(4, 0.7, 2000) for host in ("a1", "a2")}
    payload = sketch_payload_class()()
    for host, vs in values.items():
        keys = np.rint(np.log(vs) / ln_gamma).astype(np.int64) + bias
        k, n = np.unique(keys, return_counts=True)
        s = payload.sketches.add(metric="e2e.agent.latency", host=host, tags=["env:e2e"])
        s.dogsketches.add(
            ts=now,
            cnt=vs.size,
            min=float(vs.min()),
            max=float(vs.max()),
            avg=float(vs.mean()),
            sum=float(vs.sum()),
            k=k.tolist(),
            n=n.tolist(),
        )
    raw = payload.SerializeToString()
    key = pipeline.endpoints["api_key"]
    for encoding, body in (("zstd", zstandard.compress(raw)), ("deflate", zlib.compress(raw))):
        resp = httpx.post(
            f"{pipeline.intake}/api/beta/sketches",
            content=body,
            headers={
                "DD-API-KEY": key,
                "Content-Type": "application/x-protobuf",
                "Content-Encoding": encoding,
            },
            timeout=10.0,
        )
        assert resp.status_code == 202, f"{encoding}: {resp.status_code} {resp.text}"
    bad = httpx.post(
        f"{pipeline.intake}/api/beta/sketches",
        content=raw[:-3],
        headers={"DD-API-KEY": key, "Content-Type": "application/x-protobuf"},
        timeout=10.0,
    )
    assert bad.status_code == 400 and "truncated" in bad.text, bad.text

    org = Org(pipeline.endpoints["org"], key, pipeline.endpoints["app_key"], 1)
    bound = (1 + 0.01) * math.sqrt(1 + 1 / 64) - 1  # ours after the agent's bin error

    def answered() -> None:
        for agg in ("p50", "p99", "count"):
            q = f"{agg}:e2e.agent.latency{{env:e2e}} by {{host}}"
            got = parse_v1(query_v1(pipeline, org, q, now - 600, now + 60))
            for host, vs in values.items():
                # (an assertion, so that `eventually` retries until the stores applied it)
                assert (f"host:{host}",) in got, (q, got)
                values_at = list(got[(f"host:{host}",)].values())
                assert len(values_at) == 1, (q, host, got)
                value = values_at[0]
                if agg == "count":
                    assert value == 2 * vs.size, (q, value)  # posted twice, counted twice
                    continue
                doubled = np.sort(np.concatenate([vs, vs]))
                exact = doubled[math.floor(int(agg[1:]) / 100 * (doubled.size - 1))]
                assert abs(value - exact) <= (bound + 1e-9) * exact, (q, host, value, exact)

    eventually(answered, timeout=60.0, what="agent sketches queried back")
