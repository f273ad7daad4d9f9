"""The Monitors API through the official ``datadog_api_client`` v1 ``MonitorsApi``, served by
uvicorn on a real port over a real Valkey (query/routes_monitors.py, query/monitor_store.py):
create/get/list (filters, pagination)/update/delete/validate, org isolation on every call,
400s naming the field, and 503 when Redis is gone. A dict model of what each org created
is compared with every answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException, NotFoundException
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.monitor import Monitor as ClientMonitor
from datadog_api_client.v1.model.monitor_options import MonitorOptions
from datadog_api_client.v1.model.monitor_thresholds import MonitorThresholds
from datadog_api_client.v1.model.monitor_type import MonitorType
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest
from fastapi import FastAPI

from query.app import create_app
from query.monitor_store import PREFIX, MonitorStore
from query.routes_monitors import monitor_router
from query.settings import QuerySettings
from strata.keys import KeyStore, NewKeys, create_keys
from strata.servers import RunningServer, free_port
from tests.unit.query_fakes import FakeStore

pytestmark = pytest.mark.integration


@dataclass
class Served:
    url: str
    acme: NewKeys
    globex: NewKeys
    store: MonitorStore


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="query-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("query app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def served(valkey: RunningServer, tmp_path: Path) -> Iterator[Served]:
    keys_path = tmp_path / "keys.json"
    acme = create_keys(keys_path, "acme")
    globex = create_keys(keys_path, "globex")
    keys = KeyStore(keys_path, check_every=0.0)
    client = redis.Redis(port=valkey.port, socket_timeout=2)
    for key in client.scan_iter(match=f"{PREFIX}*"):
        client.delete(key)  # a fresh monitor namespace per test (the Valkey is shared)
    store = MonitorStore(client)
    app = create_app(QuerySettings(), FakeStore(), keys)
    app.include_router(monitor_router(store, keys, retry_after_seconds=3))
    with serve(app) as url:
        yield Served(url, acme, globex, store)
    store.close()


@contextmanager
def monitors_api(url: str, keys: NewKeys) -> Iterator[MonitorsApi]:
    config = Configuration(host=url)  # type: ignore[no-untyped-call]
    config.api_key["apiKeyAuth"] = keys.api_key
    config.api_key["appKeyAuth"] = keys.app_key
    with ApiClient(config) as client:
        yield MonitorsApi(client)  # type: ignore[no-untyped-call]


def new_monitor(name: str, query: str, tags: list[str], **options: Any) -> ClientMonitor:
    return ClientMonitor(
        name=name,
        type=MonitorType("metric alert"),  # type: ignore[no-untyped-call]
        query=query,
        message=f"{name} @webhook-ops",
        tags=tags,
        options=MonitorOptions(**options),
    )


def test_crud_round_trip_with_the_official_client(served: Served) -> None:
    with monitors_api(served.url, served.acme) as api:
        created = api.create_monitor(
            body=new_monitor(
                "cpu high",
                "avg(last_5m):avg:cpu{env:prod} by {host} > 80",
                ["team:infra"],
                thresholds=MonitorThresholds(critical=80.0, warning=60.0, critical_recovery=70.0),
                notify_no_data=True,
                no_data_timeframe=10,
                evaluation_delay=30,
                renotify_interval=15,
            )
        )
        assert isinstance(created, ClientMonitor) and created.id > 0
        assert created.name == "cpu high" and created.multi is True
        assert str(created.overall_state) == "No Data"
        assert created.options.thresholds.warning == 60.0
        assert created.options.no_data_timeframe == 10 and created.options.evaluation_delay == 30
        assert abs(created.created.timestamp() - time.time()) < 60
        got = api.get_monitor(created.id)
        assert got.to_dict() == created.to_dict()  # type: ignore[no-untyped-call]
        updated = api.update_monitor(
            created.id,
            body=MonitorUpdateRequest(
                name="cpu very high",
                query="avg(last_5m):avg:cpu{env:prod} by {host} > 90",
            ),
        )
        assert updated.id == created.id and updated.name == "cpu very high"
        assert updated.options.thresholds.critical == 90.0
        assert updated.options.thresholds.warning == 60.0  # options not sent: kept
        assert updated.created == created.created and updated.modified > created.modified
        assert api.get_monitor(created.id).query.endswith("> 90")
        # validate: a valid body is {} and a bad one a 400 naming the field
        assert api.validate_monitor(body=new_monitor("v", "min(last_1m):min:x{*} < 1", [])) == {}
        assert (
            api.validate_existing_monitor(
                created.id, body=new_monitor("v", "min(last_1m):min:x{*} < 1", [])
            )
            == {}
        )
        deleted = api.delete_monitor(created.id)
        assert deleted.deleted_monitor_id == created.id
        with pytest.raises(NotFoundException):
            api.get_monitor(created.id)
        with pytest.raises(NotFoundException):
            api.delete_monitor(created.id)


def test_list_filters_and_pagination_match_a_model(served: Served) -> None:
    model: dict[int, dict[str, Any]] = {}
    with monitors_api(served.url, served.acme) as api:
        for i in range(23):
            env = ("prod", "dev", "staging")[i % 3]
            tags = [f"team:{'a' if i % 2 else 'b'}", f"n:{i}"]
            name = f"{'Disk' if i % 4 == 0 else 'cpu'} monitor {i}"
            query = f"max(last_1m):max:m{i % 5}{{env:{env}}} > {i}"
            m = api.create_monitor(body=new_monitor(name, query, tags))
            model[m.id] = {"name": name, "env": f"env:{env}", "tags": tags}
    with monitors_api(served.url, served.globex) as api:
        api.create_monitor(body=new_monitor("disk globex", "max(last_1m):max:m{env:prod} > 1", []))

    def expected(
        name: str | None = None, tags: str | None = None, mtags: str | None = None
    ) -> list[int]:
        out = []
        for mid, m in sorted(model.items()):
            if name and name.lower() not in m["name"].lower():
                continue
            if tags and any(t != m["env"] for t in tags.split(",")):
                continue
            if mtags and any(t not in m["tags"] for t in mtags.split(",")):
                continue
            out.append(mid)
        return out

    with monitors_api(served.url, served.acme) as api:
        assert [m.id for m in api.list_monitors()] == expected()
        assert [m.id for m in api.list_monitors(name="disk")] == expected(name="disk")
        assert [m.id for m in api.list_monitors(tags="env:prod")] == expected(tags="env:prod")
        assert [m.id for m in api.list_monitors(tags="env:Prod")] == expected(tags="env:prod")
        assert [m.id for m in api.list_monitors(monitor_tags="team:a")] == expected(mtags="team:a")
        both = api.list_monitors(monitor_tags="team:a,n:3")
        assert [m.id for m in both] == expected(mtags="team:a,n:3") and len(both) == 1
        assert api.list_monitors(name="nothing like this") == []
        pages = [[m.id for m in api.list_monitors(page=p, page_size=5)] for p in range(6)]
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3, 0]
        assert [i for page in pages for i in page] == expected()
        walked = [m.id for m in api.list_monitors_with_pagination(page_size=4)]
        assert walked == expected()
        offset = expected()[10]
        assert [m.id for m in api.list_monitors(id_offset=offset)] == expected()[11:]
        combined = api.list_monitors(name="cpu", tags="env:dev", page=0, page_size=2)
        assert [m.id for m in combined] == [i for i in expected(name="cpu", tags="env:dev")][:2]


def test_org_isolation(served: Served) -> None:
    with monitors_api(served.url, served.acme) as api:
        mine = api.create_monitor(body=new_monitor("acme only", "max(last_1m):max:x{*} > 1", []))
    with monitors_api(served.url, served.globex) as api:
        theirs = api.create_monitor(body=new_monitor("globex", "max(last_1m):max:x{*} > 1", []))
        assert [m.id for m in api.list_monitors()] == [theirs.id]
        with pytest.raises(NotFoundException):
            api.get_monitor(mine.id)
        with pytest.raises(NotFoundException):
            api.update_monitor(mine.id, body=MonitorUpdateRequest(name="stolen"))
        with pytest.raises(NotFoundException):
            api.delete_monitor(mine.id)
        with pytest.raises(NotFoundException):
            api.validate_existing_monitor(
                mine.id, body=new_monitor("x", "max(last_1m):max:x{*} > 1", [])
            )
    with monitors_api(served.url, served.acme) as api:
        still = api.get_monitor(mine.id)
        assert still.name == "acme only" and [m.id for m in api.list_monitors()] == [mine.id]
    # Ids are global integers: the second org's monitor got the next one.
    assert theirs.id == mine.id + 1
    wrong = httpx.get(f"{served.url}/api/v1/monitor", headers={"DD-API-KEY": "nope"})
    assert wrong.status_code == 403 and wrong.json() == {"errors": ["Forbidden"]}


def headers(keys: NewKeys) -> dict[str, str]:
    return {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"type": "metric alert", "query": "avg(last_5m):avg:cpu{*} > 80",
             "options": {"thresholds": {"critical": 80, "warning": 90}}},
            "options.thresholds.warning (90) must be below options.thresholds.critical (80) "
            "for a monitor alerting on '>'",
        ),
        (
            {"type": "metric alert", "query": "avg(last_5m):avg:cpu{*}.rollup(median) > 80"},
            "query: unknown rollup method 'median'; expected one of avg, sum, min, max, count "
            "at position 31",
        ),
        (
            {"type": "log alert", "query": "avg(last_5m):avg:cpu{*} > 80"},
            "type: 'log alert' is not supported; expected one of metric alert, query alert",
        ),
        (
            {"type": "metric alert", "query": "avg(last_5m):avg:cpu{*} > 80",
             "options": {"renotify_interval": "often"}},
            "options.renotify_interval: Input should be a valid integer, unable to parse string "
            "as an integer",
        ),
        ({"query": "avg(last_5m):avg:cpu{*} > 80"}, "type: field required"),
        ([], "body: expected a JSON object"),
    ],
)  # fmt: skip
def test_bad_bodies_are_400s_naming_the_field(served: Served, body: Any, error: str) -> None:
    for path in ("/api/v1/monitor", "/api/v1/monitor/validate"):
        r = httpx.post(f"{served.url}{path}", json=body, headers=headers(served.acme))
        assert r.status_code == 400 and r.json() == {"errors": [error]}
    # The official client surfaces the same message.
    with monitors_api(served.url, served.acme) as api, pytest.raises(ApiException) as err:
        api.validate_monitor(
            body=new_monitor("bad", "avg(last_5m):avg:cpu{*} > 80", [],
                             thresholds=MonitorThresholds(critical=80.0, warning=90.0))
        )  # fmt: skip
    assert err.value.status == 400 and "options.thresholds.warning (90)" in str(err.value.body)


def test_bad_parameters_and_ids(served: Served) -> None:
    h = headers(served.acme)
    base = f"{served.url}/api/v1/monitor"
    r = httpx.get(base, params={"page_size": "5000", "page": "0"}, headers=h)
    assert r.status_code == 400
    assert r.json() == {"errors": ["parameter 'page_size' must be between 1 and 1000, got 5000"]}
    r = httpx.get(base, params={"page": "x"}, headers=h)
    assert r.json() == {"errors": ["parameter 'page' must be an integer, got 'x'"]}
    r = httpx.get(base, params={"group_states": "alert,broken"}, headers=h)
    assert r.status_code == 400 and "'group_states': unknown 'broken'" in r.json()["errors"][0]
    for bad in ("abc", "0", "-1", "99999999999999999999"):
        r = httpx.get(f"{base}/{bad}", headers=h)
        assert r.status_code == 404 and r.json() == {"errors": [f"monitor {bad} not found"]}
    r = httpx.put(f"{base}/123456", json={"name": "x"}, headers=h)
    assert r.status_code == 404 and r.json() == {"errors": ["monitor 123456 not found"]}


def test_redis_down_is_a_503(tmp_path: Path) -> None:
    keys_path = tmp_path / "keys.json"
    acme = create_keys(keys_path, "acme")
    keys = KeyStore(keys_path, check_every=0.0)
    dead = MonitorStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    app = create_app(QuerySettings(), FakeStore(), keys)
    app.include_router(monitor_router(dead, keys, retry_after_seconds=3))
    with serve(app) as url:
        body = {"type": "metric alert", "query": "avg(last_5m):avg:cpu{*} > 80"}
        for method, path, payload in (
            ("POST", "/api/v1/monitor", body),
            ("GET", "/api/v1/monitor", None),
            ("GET", "/api/v1/monitor/1", None),
            ("DELETE", "/api/v1/monitor/1", None),
        ):
            r = httpx.request(method, f"{url}{path}", json=payload, headers=headers(acme))
            assert r.status_code == 503, (method, path, r.text)
            assert r.headers["retry-after"] == "3"
            assert r.json()["errors"][0].startswith("monitor store (Redis) unavailable")
        # validation needs no Redis
        r = httpx.post(f"{url}/api/v1/monitor/validate", json=body, headers=headers(acme))
        assert r.status_code == 200 and r.json() == {}


def test_group_states_and_evaluation_status_in_answers(served: Served) -> None:
    """States written by the evaluator's store call are what GET shows (and what the
    client deserializes), filtered by ``group_states``."""
    from query.monitor_store import Transition
    from query.monitors import ALERT, OK, EvaluationStatus, GroupState

    with monitors_api(served.url, served.acme) as api:
        m = api.create_monitor(body=new_monitor("g", "avg(last_1m):avg:cpu{*} by {host} > 80", []))
        snap = served.store.get("acme", m.id)
        assert snap is not None
        groups = {"host:a": GroupState(status=ALERT, last_triggered_ts=100), "host:b": GroupState()}
        status = EvaluationStatus(101.0, False, None, 41, 100, 100)
        t = Transition("host:a", OK, ALERT, 91.0, 41, 100, 101.0)
        records = served.store.record(snap, groups, [t], ["ops"], status)
        assert records is not None and records[0].event_id == f"{m.id}:host:a:1"
        got = api.get_monitor(m.id)
        assert str(got.overall_state) == "Alert"
        assert sorted(got.state.groups) == ["host:a", "host:b"]
        assert got.state.groups["host:a"].last_triggered_ts == 100
        only = api.get_monitor(m.id, group_states="alert")
        assert sorted(only.state.groups) == ["host:a"]
        listed = api.list_monitors(group_states="ok")
        assert [sorted(x.state.groups) for x in listed] == [["host:b"]]
        # A stale snapshot (already evaluated) writes nothing.
        assert served.store.record(snap, {}, [t], ["ops"], status) is None
        assert [r.seq for r in served.store.transitions("acme", m.id)] == [1]
        assert served.store.transitions("globex", m.id) == []
    raw = httpx.get(f"{served.url}/api/v1/monitor/{m.id}", headers=headers(served.acme)).json()
    assert raw["state"]["evaluation"] == {
        "evaluated_at": 101.0, "delayed": False, "reason": None, "window_start": 41,
        "window_end": 100, "complete_through": 100,
    }  # fmt: skip
