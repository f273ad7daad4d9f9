"""Intake's write routes are served ahead of FastAPI's dispatch (intake.app.IntakeApp), with
the answers and metrics FastAPI's routes would give. No broker: every request here is
answered before anything is produced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

from intake.app import IntakeApp, create_app
from intake.settings import IntakeSettings
from strata.keys import create_keys

WRITES = ("/api/v2/series", "/api/v1/series", "/api/v1/distribution_points", "/api/beta/sketches")


class Spy:
    """A FastAPI middleware that records the paths reaching FastAPI's own stack."""

    seen: list[tuple[str, str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Spy.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture
def app_and_key(tmp_path: Path) -> Iterator[tuple[IntakeApp, str]]:
    keys = create_keys(tmp_path / "keys.json", "org-a")
    settings = IntakeSettings(kafka_bootstrap="127.0.0.1:1", keys_file=tmp_path / "keys.json")
    app = create_app(settings)
    assert isinstance(app, IntakeApp)
    app.add_middleware(Spy)
    Spy.seen = []
    yield app, keys.api_key


def http_requests(client: TestClient) -> dict[tuple[str, str, str], float]:
    """(method, route, status) -> strata_intake_http_requests_total, from GET /metrics."""
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "strata_intake_http_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[(s.labels["method"], s.labels["route"], s.labels["status"])] = s.value
    return out


def test_write_posts_bypass_fastapi_and_other_requests_do_not(
    app_and_key: tuple[IntakeApp, str],
) -> None:
    app, key = app_and_key
    assert set(app.direct) == set(WRITES)
    client = TestClient(app)
    for path in WRITES:
        resp = client.post(path, content=b"{", headers={"DD-API-KEY": key})
        assert resp.status_code == 400, (path, resp.text)  # malformed JSON, named
        assert resp.json()["errors"]
    assert Spy.seen == []
    # Another method on a write route's path still goes through FastAPI: 405.
    assert client.get("/api/v2/series").status_code == 405
    assert client.get("/health").status_code == 200
    assert Spy.seen == [("GET", "/api/v2/series"), ("GET", "/health")]


def test_direct_routes_answer_refusals_like_fastapi_routes_did(
    app_and_key: tuple[IntakeApp, str],
) -> None:
    app, key = app_and_key
    client = TestClient(app)
    forbidden = client.post("/api/v2/series", content=b"{}", headers={"DD-API-KEY": "nope"})
    assert (forbidden.status_code, forbidden.json()) == (403, {"errors": ["Forbidden"]})
    too_large = client.post("/api/v2/series", content=b"x" * 512_001, headers={"DD-API-KEY": key})
    assert too_large.status_code == 413 and "512000-byte limit" in too_large.text
    encoding = client.post(
        "/api/v1/series",
        content=b"{}",
        headers={"DD-API-KEY": key, "Content-Encoding": "br"},
    )
    assert encoding.status_code == 415 and "Content-Encoding" in encoding.text
    # The same GET /api/v1/validate refusal, which FastAPI's exception handlers answer.
    validate = client.get("/api/v1/validate", headers={"DD-API-KEY": "nope"})
    assert (validate.status_code, validate.json()) == (403, {"errors": ["Forbidden"]})
    counters = app.state.intake.counters.requests_refused
    assert (counters[403], counters[413], counters[415]) == (2, 1, 1)
    counted = http_requests(client)
    assert counted[("POST", "/api/v2/series", "403")] == 1
    assert counted[("POST", "/api/v2/series", "413")] == 1
    assert counted[("POST", "/api/v1/series", "415")] == 1
    assert counted[("GET", "/api/v1/validate", "403")] == 1
    assert Spy.seen == [("GET", "/api/v1/validate"), ("GET", "/metrics")]


def test_an_unexpected_error_is_a_500_counted_under_its_route(
    app_and_key: tuple[IntakeApp, str],
) -> None:
    app, _ = app_and_key

    @app.post("/boom")
    async def boom(_request: Request) -> Response:
        return JSONResponse({})

    async def failing(_request: Request) -> Response:
        raise RuntimeError("a bug")

    app.serve_directly("/boom", failing)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/boom").status_code == 500
    assert http_requests(client)[("POST", "/boom", "500")] == 1
    with pytest.raises(RuntimeError, match="a bug"):
        TestClient(app).post("/boom")
