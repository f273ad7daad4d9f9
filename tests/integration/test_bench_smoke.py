"""Smoke test of the benchmark tools against a real ``strata up``: the workload generator and
the load driver work end to end (points accepted, visible through the query API with the
generated values, every report field filled). Speed is not checked here: docs/benchmarks.md
has the figures.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.load_driver import DriverConfig, DriverResult, prepare, run
from bench.workload import CpuOnly
from tests.e2e.conftest import Pipeline, eventually, start_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HOSTS = 20  # x 10 metrics = 200 series
RATE, DURATION, PER_REQUEST = 2000, 3.0, 200


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    running = start_pipeline(tmp_path_factory.mktemp("bench-smoke") / "data")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def result(pipeline: Pipeline) -> tuple[DriverConfig, DriverResult]:
    config = DriverConfig(
        intake=pipeline.intake,
        query=pipeline.query,
        api_key=pipeline.endpoints["api_key"],
        app_key=pipeline.endpoints["app_key"],
        rate=RATE,
        duration=DURATION,
        connections=4,
        hosts=HOSTS,
        points_per_request=PER_REQUEST,
        seed=7,
        visible_timeout=30.0,
    )
    return config, run(config)


def test_driver_reports_every_figure(result: tuple[DriverConfig, DriverResult]) -> None:
    _, r = result
    sent = int(RATE * DURATION)
    assert r.prepared_points == sent
    assert r.accepted_points == sent, r.report()
    assert r.status_counts == {202: sent // PER_REQUEST}
    assert r.requests == sent // PER_REQUEST and r.http_503 == 0 and not r.failures
    assert r.repeated_points == 0 and r.rejected_points == 0
    assert 0 < r.latency_p50_ms <= r.latency_p99_ms
    assert not math.isnan(r.first_marker_ms)
    assert r.freshness_samples >= 1 and r.markers_not_visible == 0
    assert 0 < r.freshness_p50_ms <= r.freshness_p99_ms <= r.freshness_max_ms
    assert r.points_per_second > 0
    report = r.report()
    for label in ("accepted:", "HTTP latency: p50", "503s 0", "freshness", "first marker"):
        assert label in report
    assert r.as_dict()["points_per_second"] == r.points_per_second
    assert r.config["api_key"] == "***"


def _query(pipeline: Pipeline, q: str, start: int, end: int) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{pipeline.query}/api/v1/query",
        params={"from": start, "to": end, "query": q},
        headers={
            "DD-API-KEY": pipeline.endpoints["api_key"],
            "DD-APPLICATION-KEY": pipeline.endpoints["app_key"],
        },
        timeout=30.0,
    )
    assert resp.status_code == 200, resp.text
    series: list[dict[str, Any]] = resp.json()["series"]
    return series


def test_sent_points_are_visible_with_the_generated_values(
    pipeline: Pipeline, result: tuple[DriverConfig, DriverResult]
) -> None:
    config, r = result
    # The driver's stream, regenerated independently of the run: the same seed and start.
    bodies = prepare(config, r.start)
    steps = sum(b.points for b in bodies) // (HOSTS * 10)
    ts, values = CpuOnly(HOSTS, r.start, config.seed).values(steps)
    end = int(ts[-1])
    host = 3
    want = [
        [t * 1000, float(v)] for t, v in zip(ts.tolist(), values[:, host].tolist(), strict=True)
    ]

    def one_host() -> None:
        q = f"max:cpu.usage_user{{host:host_{host}}}.rollup(max, 10)"
        (series,) = _query(pipeline, q, r.start, end)
        assert [[int(t), v] for t, v in series["pointlist"]] == want

    def every_series() -> None:
        q = "count:cpu.usage_idle{*}.rollup(avg, 10)"
        (series,) = _query(pipeline, q, r.start, end)
        assert [v for _, v in series["pointlist"]] == [float(HOSTS)] * steps

    eventually(one_host, timeout=30.0, what="the generated values of one host")
    eventually(every_series, timeout=30.0, what="every host's series")


def test_command_line_runs_against_endpoints(pipeline: Pipeline) -> None:
    """``python -m bench.load_driver --endpoints`` reads a strata up's endpoints.json."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load_driver",
            "--endpoints",
            str(pipeline.data_dir / "endpoints.json"),
            "--rate",
            "1000",
            "--duration",
            "1",
            "--hosts",
            "10",
            "--points-per-request",
            "100",
            "--connections",
            "2",
            "--seed",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "machine: " in proc.stdout and "seed 2" in proc.stdout
    assert "accepted: 1,000 points" in proc.stdout
