"""Monitors that never page on late data (issue 6, "What must be shown"), on a real
``strata up`` with the heartbeat emitter and evaluator, fed like an agent would feed it.

A feeder submits ``e2e.always`` (always 5) and ``e2e.quiet`` every second and, like the
Datadog agent, keeps what intake refused (503) and sends it again later. Monitor A is
``min(last_1m):min:e2e.always{*} < 1``; monitor B alerts on ``e2e.quiet`` above 100 and
notifies on no data after 2 minutes. Both notify a real local webhook receiver.

1. The RAM store SIGSTOPped for 60 s, then the broker for 20 s, then the inverted index for
   20 s, while points keep coming: A never leaves OK and B never goes to No Data; while the
   pipeline lags, the evaluator reports A as delayed instead of judging an incomplete
   window.
2. A real drop of ``e2e.always`` to 0 alerts within window + evaluation interval + pipeline
   lag (plus a margin for this 2-core machine), and recovers when the value is back.
3. ``e2e.quiet`` stops arriving (pipeline healthy): B goes to No Data after its
   ``no_data_timeframe``, not before.
4. The receiver got exactly one notification per transition of A (OK -> Alert, Alert -> OK)
   and one for B's No Data, and nothing else for A.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_options import MonitorOptions
from datadog_api_client.v1.model.monitor_thresholds import MonitorThresholds
from datadog_api_client.v1.model.monitor_type import MonitorType

from strata.servers import free_port
from tests.e2e.conftest import Pipeline, descendants, eventually, start_pipeline

pytestmark = pytest.mark.e2e

INTERVAL = 1  # evaluator interval (s)
MAX_DELAY = 5  # data older than this behind now: the monitor is held as delayed
WINDOW = 60


class Receiver:
    """A real HTTP webhook receiver recording every event body."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.port = free_port()
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                events.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def transitions(self, monitor_id: int) -> list[tuple[str, str]]:
        return [
            (e["transition"]["from"], e["transition"]["to"])
            for e in self.events
            if e["monitor"]["id"] == monitor_id and e["event_type"] == "transition"
        ]

    def close(self) -> None:
        self.server.shutdown()


class Feeder:
    """Submits one point per metric per second; refused payloads are kept and re-sent in
    order (the agent's retry queue), so nothing is lost while intake answers 503."""

    def __init__(self, intake: str, api_key: str) -> None:
        self.url = intake.rstrip("/") + "/api/v2/series"
        self.headers = {"DD-API-KEY": api_key}
        self.values = {"e2e.always": 5.0, "e2e.quiet": 5.0}
        self.backlog: list[dict[str, Any]] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=3.0) as http:
            while not self.stop.is_set():
                now = int(time.time())
                series = [
                    {"metric": m, "type": 3, "points": [{"timestamp": now, "value": v}]}
                    for m, v in list(self.values.items())
                ]
                self.backlog.append({"series": series})
                while self.backlog:
                    try:
                        resp = http.post(self.url, json=self.backlog[0], headers=self.headers)
                    except httpx.HTTPError:
                        resp = None
                    if resp is None or resp.status_code != 202:
                        self.refused += 1
                        break
                    self.backlog.pop(0)
                self.stop.wait(1.0)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Pipeline]:
    env = {
        "STRATA_INTERVAL_SECONDS": str(INTERVAL),
        "STRATA_MAX_DELAY_SECONDS": str(MAX_DELAY),
        "STRATA_DELIVERY_INTERVAL_SECONDS": "0.5",
        "STRATA_WEBHOOKS": json.dumps({"e2e": f"http://127.0.0.1:{receiver.port}/hook"}),
    }
    running = start_pipeline(tmp_path_factory.mktemp("monitors") / "data", env=env)
    try:
        yield running
    finally:
        running.stop()


def find_pid(pipeline: Pipeline, name: str) -> int:
    """A process of ``strata up`` by component name, or a server (tansu) by command."""
    if name in pipeline.state()["components"]:
        return int(pipeline.component(name)["pid"])
    for pid in descendants(pipeline.process.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(Path(c.decode(errors="replace")).name == name for c in cmd[:1]):
            return pid
    raise AssertionError(f"no {name} process under strata up")


def paused(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_monitors_wait_for_complete_data_alert_on_real_drops_and_notify_once(
    monitored: Pipeline, receiver: Receiver
) -> None:
    pipeline = monitored
    feeder = Feeder(pipeline.intake, pipeline.endpoints["api_key"])
    feeder.thread.start()
    config = Configuration(host=pipeline.query)  # type: ignore[no-untyped-call]
    config.api_key["apiKeyAuth"] = pipeline.endpoints["api_key"]
    config.api_key["appKeyAuth"] = pipeline.endpoints["app_key"]
    headers = {
        "DD-API-KEY": pipeline.endpoints["api_key"],
        "DD-APPLICATION-KEY": pipeline.endpoints["app_key"],
    }
    with ApiClient(config) as client:
        api = MonitorsApi(client)  # type: ignore[no-untyped-call]
        a = api.create_monitor(
            body=Monitor(
                name="always at least one",
                type=MonitorType("query alert"),  # type: ignore[no-untyped-call]
                query="min(last_1m):min:e2e.always{*} < 1",
                message="e2e.always dropped @webhook-e2e",
                options=MonitorOptions(thresholds=MonitorThresholds(critical=1.0)),
            )
        )
        b = api.create_monitor(
            body=Monitor(
                name="quiet goes silent",
                type=MonitorType("query alert"),  # type: ignore[no-untyped-call]
                query="avg(last_1m):avg:e2e.quiet{*} > 100",
                message="e2e.quiet stopped @webhook-e2e",
                options=MonitorOptions(
                    thresholds=MonitorThresholds(critical=100.0),
                    notify_no_data=True,
                    no_data_timeframe=2,
                ),
            )
        )
    a_id, b_id = int(a.id), int(b.id)
    history: list[tuple[float, int, str, bool]] = []  # (time, id, overall state, delayed)
    watching = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=5.0) as http:
            while not watching.is_set():
                for mid in (a_id, b_id):
                    try:
                        got = http.get(f"{pipeline.query}/api/v1/monitor/{mid}", headers=headers)
                    except httpx.HTTPError:
                        continue
                    if got.status_code == 200:
                        body = got.json()
                        delayed = bool((body["state"].get("evaluation") or {}).get("delayed"))
                        history.append((time.time(), mid, body["overall_state"], delayed))
                watching.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def state(mid: int) -> str:
        return next(h[2] for h in reversed(history) if h[1] == mid)

    def both_ok() -> None:
        assert history and state(a_id) == "OK" and state(b_id) == "OK", history[-2:]

    def a_not_delayed() -> None:
        last = next(h for h in reversed(history) if h[1] == a_id)
        assert last[2] == "OK" and not last[3], last

    try:
        eventually(both_ok, timeout=150, what="both monitors OK")
        watched_from = time.time()

        # -- 1. the pipeline lags in three ways; nothing alerts, A is held as delayed --------
        phases: list[tuple[str, float, float]] = []
        for name, seconds in (("ram", 60.0), ("tansu", 20.0), ("inverted", 20.0)):
            pid = find_pid(pipeline, name)
            started = time.time()
            paused(pid, seconds)
            phases.append((name, started, time.time()))
            eventually(a_not_delayed, timeout=90, what=f"A evaluated again after {name}")
        calm_until = time.time()
        assert feeder.refused > 0, "the broker pause should have refused some points"
        for name, start, end in phases:
            assert any(h[1] == a_id and h[3] and start <= h[0] <= end + 5 for h in history), (
                f"A was never reported delayed while {name} was stopped"
            )
        bad = [h for h in history if h[0] >= watched_from and h[2] != "OK"]
        assert not bad, f"a monitor left OK while the pipeline merely lagged: {bad[:5]}"

        # -- 2 + 3. a real drop alerts and recovers; a real silence goes to No Data ---------
        feeder.values["e2e.always"] = 0.0
        del feeder.values["e2e.quiet"]
        dropped = time.time()
        eventually(lambda: _assert_state(state(a_id), "Alert"), timeout=WINDOW + 45)
        alerted = time.time()
        assert alerted - dropped <= WINDOW + INTERVAL + MAX_DELAY + 30
        feeder.values["e2e.always"] = 5.0
        eventually(lambda: _assert_state(state(a_id), "OK"), timeout=WINDOW + 45)
        eventually(lambda: _assert_state(state(b_id), "No Data"), timeout=180)
        silent = time.time()
        first_no_data = min(
            h[0] for h in history if h[0] >= watched_from and h[1] == b_id and h[2] == "No Data"
        )
        assert first_no_data >= dropped + 100, "No Data before no_data_timeframe (2 min)"
        assert silent - dropped <= 120 + 40

        # -- 4. exactly one notification per transition ---------------------------------
        eventually(lambda: _assert_transitions(receiver, a_id, b_id), timeout=30)
        ids = [e["event_id"] for e in receiver.events]
        assert len(ids) == len(set(ids)), "a transition was notified twice"
        a_alerts = [
            e["time"]
            for e in receiver.events
            if e["monitor"]["id"] == a_id and e["transition"]["to"] == "Alert"
        ]
        assert all(t >= calm_until for t in a_alerts), "an alert while the pipeline lagged"
    finally:
        watching.set()
        feeder.stop.set()
        feeder.thread.join(5)
        watcher.join(5)


def _assert_state(got: str, want: str) -> None:
    assert got == want, got


def _assert_transitions(receiver: Receiver, a_id: int, b_id: int) -> None:
    a = [t for t in receiver.transitions(a_id) if t[1] != "OK" or t[0] != "No Data"]
    assert a == [("OK", "Alert"), ("Alert", "OK")], receiver.transitions(a_id)
    assert receiver.transitions(b_id)[-1:] == [("OK", "No Data")], receiver.transitions(b_id)


def test_every_component_exposes_metrics_and_strata_graphs_itself(monitored: Pipeline) -> None:
    """Each component's ``/metrics`` (Prometheus text) is scraped; ``strata up`` posts
    them into the internal org ``strata-internal`` every 10 s, queryable like any metric,
    and invisible to the customer org."""
    from prometheus_client.parser import text_string_to_metric_families

    urls = {name: info["url"] for name, info in monitored.state()["components"].items()}
    for name, url in urls.items():
        text = httpx.get(f"{url}/metrics", timeout=5.0).text
        names = {f.name for f in text_string_to_metric_families(text)}
        assert any(n.endswith("_requests") for n in names), (name, sorted(names)[:10])
    beat = httpx.get(f"{urls['heartbeat']}/metrics", timeout=5.0).text
    assert "strata_heartbeat_sent_total" in beat and "strata_monitors_delayed" in beat
    creds = json.loads((monitored.data_dir / "credentials.json").read_text())
    internal = creds["strata-internal"]
    own = {"DD-API-KEY": internal["api_key"], "DD-APPLICATION-KEY": internal["app_key"]}
    customer = {
        "DD-API-KEY": monitored.endpoints["api_key"],
        "DD-APPLICATION-KEY": monitored.endpoints["app_key"],
    }
    now = int(time.time())

    def ingested() -> None:
        end = int(time.time())
        params: dict[str, str | int] = {
            "from": end - 600,
            "to": end,
            "query": "max:strata_heartbeat_sent_total{*}",
        }
        resp = httpx.get(f"{monitored.query}/api/v1/query", params=params, headers=own)
        assert resp.status_code == 200, resp.text
        series = resp.json()["series"]
        assert series and series[0]["pointlist"][-1][1] > 0, series

    eventually(ingested, timeout=60, what="the pipeline's own metrics in the internal org")
    listed = httpx.get(
        f"{monitored.query}/api/v1/metrics", params={"from": now - 600}, headers=customer
    ).json()["metrics"]
    assert not any(m.startswith("strata_") for m in listed)
