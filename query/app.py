"""The public HTTP API (FastAPI): ``/api/v1/query``, ``/api/v1/metrics``, ``/health``.

Every error is a Datadog-style ``{"errors": [...]}`` body: 400 for bad input (naming the
parameter or the query position), 403 for keys, 503 (with Retry-After) when the stores
cannot answer yet or no point tier can serve part of the range, 502 when a store answered
nonsense. Handlers are plain ``def``: the store clients are blocking, so FastAPI runs them
in its thread pool. Query answers name the point tiers that served them in the
``X-Strata-Tiers`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.exceptions import HTTPException as StarletteHTTPException

from query.cache import SegmentCache, cache_families
from query.evaluate import evaluate_all, v1_body
from query.fanout import WARNINGS_HEADER, BudgetExceeded, request_scope, warnings
from query.language import QuerySyntaxError, parse_list
from query.params import BadParameter, parse_range, parse_timestamp, required
from query.plan import TooManySeries
from query.responses import TIERS_HEADER, error_body, metrics_list_response
from query.routes_explore import explore_router
from query.routes_v2 import v2_router
from query.segments import Uncovered
from query.settings import QuerySettings
from query.stores_client import StoreClient, StoreReplyError, StoreUnavailable
from strata.keys import KeysFileError, KeyStore
from strata.observability import FunctionCollector, instrument, route_template


class Forbidden(Exception):
    """Missing keys, unknown keys, or an API and application key of different orgs."""


class KeysUnavailable(Exception):
    """No valid keys file has been loaded yet: customers cannot be told apart."""


def authenticate(request: Request, keys: KeyStore) -> str:
    """The org both keys belong to (headers win over query parameters), else Forbidden."""
    api = request.headers.get("dd-api-key") or request.query_params.get("api_key")
    app = request.headers.get("dd-application-key") or request.query_params.get("application_key")
    try:
        org = keys.org_for_api_key(api)
        app_org = keys.org_for_app_key(app)
    except KeysFileError as exc:
        raise KeysUnavailable(str(exc)) from None
    if org is None or app_org != org:
        raise Forbidden
    return org


def header_value(messages: list[str], limit: int = 2000) -> str:
    """Warnings as one HTTP header value: printable ASCII, '; '-joined, bounded."""
    text = "; ".join(messages)
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_app(settings: QuerySettings, client: StoreClient, keys: KeyStore) -> FastAPI:
    app = FastAPI(title="Strata query", docs_url=None, redoc_url=None, openapi_url=None)
    # GET /metrics: requests by route and status, partial answers, the segment cache.
    registry = instrument(app, "strata_query")
    partial = Counter(
        "strata_query_partial_answers",
        "answers carrying warnings (X-Strata-Warnings: a store or partition missing)",
        ["route"],
        registry=registry,
    )
    cache = getattr(client, "segment_cache", None)
    if isinstance(cache, SegmentCache):
        registry.register(FunctionCollector(lambda: cache_families(cache)))

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(message), status_code=status, headers=headers)

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, __: Exception) -> JSONResponse:
        return error(403, "Forbidden")

    @app.exception_handler(KeysUnavailable)
    async def _keys_unavailable(_: Request, __: Exception) -> JSONResponse:
        retry = {"Retry-After": str(settings.retry_after_seconds)}
        return error(503, "Service unavailable, retry later: key store unreadable", retry)

    @app.exception_handler(BadParameter)
    @app.exception_handler(QuerySyntaxError)
    @app.exception_handler(TooManySeries)
    async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: Exception) -> JSONResponse:
        return error(400, f"invalid request: {exc}")

    @app.exception_handler(Uncovered)
    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        retry = {"Retry-After": str(settings.retry_after_seconds)}
        return error(503, f"store unavailable: {exc}", retry)

    @app.exception_handler(BudgetExceeded)
    async def _budget(_: Request, exc: Exception) -> JSONResponse:
        return error(504, f"query timed out: {exc}")

    @app.exception_handler(StoreReplyError)
    async def _bad_gateway(_: Request, exc: Exception) -> JSONResponse:
        return error(502, f"store error: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error(exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def _scope(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Every request gets a time budget and a warning list (query/fanout.py); the sync
        # handlers run in the thread pool with a copy of this context, so they share both.
        with request_scope(settings.query_budget_seconds) as scope:
            response = await call_next(request)
            if scope.warnings:
                response.headers[WARNINGS_HEADER] = header_value(scope.warnings)
                partial.labels(route_template(request.scope)).inc()
            return response

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "kind": "query"}

    @app.get("/api/v1/query")
    def query(request: Request, response: Response) -> dict[str, Any]:
        org = authenticate(request, keys)
        params = request.query_params
        start, end = parse_range(params.get("from"), params.get("to"))
        text = required("query", params.get("query"))
        result = evaluate_all(
            parse_list(text),
            org,
            start,
            end,
            client,
            max_points=settings.max_points,
            max_series=settings.max_series,
        )
        if result.tiers:
            response.headers[TIERS_HEADER] = ",".join(result.tiers)
        return v1_body(result, text, warnings())

    @app.get("/api/v1/metrics")
    def metrics(request: Request) -> dict[str, Any]:
        org = authenticate(request, keys)
        start = parse_timestamp("from", request.query_params.get("from"))
        names = client.list_metrics(org, start)
        host = request.query_params.get("host")
        if host:
            # The tag index has no host filter; ask per metric (fine at catalog sizes).
            wanted = f"host:{host}"
            names = [m for m in names if wanted in client.metric_tags(org, m, start)]
        return metrics_list_response(start, names)

    app.include_router(explore_router(client, keys))
    app.include_router(v2_router(settings, client, keys))
    return app
