"""``strata up`` as a user runs it: write, read, lose the RAM store, recover, stop cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from strata.servers import port_open
from tests.e2e.conftest import (
    Pipeline,
    descendants,
    eventually,
    start_pipeline,
    still_alive,
)
from tests.e2e.reference import ReferenceModel, assert_same, parse_query_response

pytestmark = pytest.mark.e2e

METRIC = "e2e.lifecycle.load"
HOSTS = ("web-1", "web-2", "db-1")


def minute_aligned_past(minutes_ago: int) -> int:
    return (int(time.time()) // 60 - minutes_ago) * 60


def submit(pipeline: Pipeline, model: ReferenceModel, timestamps: list[int], salt: float) -> None:
    """POST one v2 payload (every host, every timestamp); record it only once acknowledged."""
    series: list[dict[str, Any]] = []
    for h, host in enumerate(HOSTS):
        points = [{"timestamp": ts, "value": salt + h * 10 + i} for i, ts in enumerate(timestamps)]
        series.append(
            {
                "metric": METRIC,
                "type": 3,
                "points": points,
                "resources": [{"name": host, "type": "host"}],
                "tags": ["env:e2e", f"role:{host.split('-')[0]}"],
            }
        )
    resp = httpx.post(
        f"{pipeline.intake}/api/v2/series",
        json={"series": series},
        headers={"DD-API-KEY": pipeline.endpoints["api_key"]},
        timeout=30.0,
    )
    assert resp.status_code == 202, resp.text
    org = pipeline.endpoints["org"]
    for s in series:
        tags = [*s["tags"], f"host:{s['resources'][0]['name']}"]
        for p in s["points"]:
            model.add(org, METRIC, tags, p["timestamp"], p["value"])


def query(pipeline: Pipeline, q: str, start: int, end: int) -> dict[str, Any]:
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
    body: dict[str, Any] = resp.json()
    return body


def check_all(pipeline: Pipeline, model: ReferenceModel, start: int, end: int) -> None:
    org = pipeline.endpoints["org"]
    for agg in ("avg", "sum", "max"):
        got = parse_query_response(query(pipeline, f"{agg}:{METRIC}{{*}} by {{host}}", start, end))
        assert_same(got, model.expected(org, METRIC, agg, ["host"]), f"{agg} by host")
    got = parse_query_response(query(pipeline, f"sum:{METRIC}{{role:web}}", start, end))
    assert_same(got, model.expected(org, METRIC, "sum", scope=["role:web"]), "sum role:web")


def test_up_write_read_restart_and_clean_stop(tmp_path: Path) -> None:
    pipeline = start_pipeline(tmp_path / "data")
    try:
        run_scenario(pipeline)
    except BaseException:
        print(pipeline.diagnostics())
        raise
    finally:
        pipeline.stop()


def run_scenario(pipeline: Pipeline) -> None:
    endpoints = pipeline.endpoints
    for key in ("intake", "query", "api_key", "app_key", "org", "kafka", "redis"):
        assert endpoints.get(key), f"endpoints.json lacks {key}"
    assert (os.stat(pipeline.data_dir / "endpoints.json").st_mode & 0o777) == 0o600
    assert "strata is up: intake" in pipeline.text()

    model = ReferenceModel()
    first = minute_aligned_past(8)
    start, end = first - 60, first + 8 * 60
    submit(pipeline, model, [first + 60 * i for i in range(4)], salt=0.5)
    eventually(lambda: check_all(pipeline, model, start, end), what="first points")

    # Lose the RAM store: SIGKILL, so nothing is flushed or committed on the way out.
    ram = pipeline.component("ram")
    old_pid = int(ram["pid"])
    before = descendants(pipeline.process.pid)
    assert old_pid in before
    os.kill(old_pid, signal.SIGKILL)
    # Points acknowledged while the store is down must show up too (Kafka has them).
    submit(pipeline, model, [first + 60 * i for i in range(4, 7)], salt=0.25)

    def restarted() -> None:
        now = pipeline.component("ram")
        assert now["restarts"] == 1 and now["phase"] == "running", now
        assert now["pid"] not in (None, old_pid)

    eventually(restarted, timeout=90.0, what="ram store restart")
    assert "ram store exited with -9; restarting" in pipeline.text()
    eventually(lambda: check_all(pipeline, model, start, end), timeout=90.0, what="replay")

    # SIGTERM: everything stops, endpoints.json goes, no process stays behind.
    children = descendants(pipeline.process.pid)
    assert len(children) >= 7, children  # tansu, valkey, five services
    assert pipeline.stop() == 0
    assert not (pipeline.data_dir / "endpoints.json").exists()
    eventually(lambda: _none_alive(children), timeout=10.0, what="children to exit")
    for url in (endpoints["intake"], endpoints["query"]):
        assert not port_open(int(url.rsplit(":", 1)[1])), f"{url} still answers"


def _none_alive(children: dict[int, int]) -> None:
    assert still_alive(children) == [], f"left behind: {still_alive(children)}"
