"""The v1 Monitors API (issue 6 item 4), in the paths, parameters and shapes of the
official ``datadog-api-client`` ``MonitorsApi``:

- ``POST /api/v1/monitor`` create -> ``Monitor``
- ``GET /api/v1/monitor/{monitor_id}[?group_states=all|alert|warn|no data|ok,...]``
- ``GET /api/v1/monitor?name=&tags=&monitor_tags=&id_offset=&page=&page_size=&group_states=``
- ``PUT /api/v1/monitor/{monitor_id}`` update (fields present replace; ``options`` whole)
- ``DELETE /api/v1/monitor/{monitor_id}`` -> ``{"deleted_monitor_id": N}``
- ``POST /api/v1/monitor/validate`` and ``POST /api/v1/monitor/{monitor_id}/validate``
  -> ``{}`` when valid

Keys and org scoping as everywhere (:func:`query.app.authenticate`, 403): another org's
monitor is answered exactly like a missing one (404). Errors are ``{"errors": [...]}``: 400
naming the field or parameter (``options.thresholds.warning (90) must be below ...``,
``query: unknown time aggregator 'median' ... at position 0``), 404, and 503 with
``Retry-After`` when the monitor store (Redis) is unreachable. The handlers are plain
``def`` (Redis calls block), so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

import query.app  # authenticate; a module import, since query.app may include this router
from query.monitor_store import (
    MAX_PAGE_SIZE,
    ListQuery,
    MonitorStore,
    MonitorStoreUnavailable,
    Snapshot,
)
from query.monitors import STATES, InvalidMonitor, apply_update, validate_definition
from query.params import BadParameter
from query.responses import error_body
from strata.keys import KeyStore

MAX_ID = 2**63 - 1
GROUP_STATE_NAMES = frozenset({"all", *(s.lower() for s in STATES)})


class MonitorNotFound(Exception):
    def __init__(self, monitor_id: int | str) -> None:
        super().__init__(f"monitor {monitor_id} not found")


def parse_id(raw: str) -> int:
    """A path ``monitor_id``: a positive integer, else 404 (no such monitor can exist)."""
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise MonitorNotFound(raw[:40])
    return int(raw)


def int_param(name: str, raw: str | None, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"parameter '{name}' must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"parameter '{name}' must be between {low} and {high}, got {value}")
    return value


def group_states(raw: str | None) -> frozenset[str] | None:
    """``group_states=alert,warn`` as lower-case state names (``None`` when absent: all)."""
    if raw is None:
        return None
    wanted = frozenset(p.strip().lower() for p in raw.split(",") if p.strip())
    unknown = sorted(wanted - GROUP_STATE_NAMES)
    if unknown:
        choices = ", ".join(sorted(GROUP_STATE_NAMES))
        raise BadParameter(f"parameter 'group_states': unknown {unknown[0]!r}; use {choices}")
    return wanted


def list_query(request: Request) -> ListQuery:
    p = request.query_params
    return ListQuery(
        name=p.get("name") or None,
        tags=p.get("tags") or None,
        monitor_tags=p.get("monitor_tags") or None,
        id_offset=int_param("id_offset", p.get("id_offset"), 0, MAX_ID),
        page=int_param("page", p.get("page"), 0, 10**9),
        page_size=int_param("page_size", p.get("page_size"), 1, MAX_PAGE_SIZE),
    )


def monitor_router(
    store: MonitorStore, keys: KeyStore, *, retry_after_seconds: int = 1
) -> APIRouter:
    """The Monitors API over ``store``; its own errors are answered by the router itself, so
    it works in any app (403 and invalid JSON go through query/app.py's handlers)."""

    class MonitorRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except (InvalidMonitor, BadParameter) as exc:
                    return JSONResponse(error_body(str(exc)), status_code=400)
                except MonitorNotFound as exc:
                    return JSONResponse(error_body(str(exc)), status_code=404)
                except MonitorStoreUnavailable as exc:
                    headers = {"Retry-After": str(retry_after_seconds)}
                    return JSONResponse(error_body(str(exc)), status_code=503, headers=headers)

            return guarded

    router = APIRouter(route_class=MonitorRoute)

    def owned(request: Request, monitor_id: str) -> tuple[str, Snapshot]:
        org = query.app.authenticate(request, keys)
        mid = parse_id(monitor_id)
        snap = store.get(org, mid)
        if snap is None:
            raise MonitorNotFound(mid)
        return org, snap

    @router.post("/api/v1/monitor")
    def create(request: Request, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        org = query.app.authenticate(request, keys)
        definition = validate_definition(body)
        return store.create(org, definition).to_api()

    @router.post("/api/v1/monitor/validate")
    def validate(request: Request, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        query.app.authenticate(request, keys)
        validate_definition(body)
        return {}

    @router.get("/api/v1/monitor")
    def list_monitors(request: Request) -> list[dict[str, Any]]:
        org = query.app.authenticate(request, keys)
        wanted = group_states(request.query_params.get("group_states"))
        return [s.to_api(wanted) for s in store.list_monitors(org, list_query(request))]

    @router.get("/api/v1/monitor/{monitor_id}")
    def get(monitor_id: str, request: Request) -> dict[str, Any]:
        _, snap = owned(request, monitor_id)
        return snap.to_api(group_states(request.query_params.get("group_states")))

    @router.put("/api/v1/monitor/{monitor_id}")
    def update(
        monitor_id: str, request: Request, body: Annotated[Any, Body()] = None
    ) -> dict[str, Any]:
        org, snap = owned(request, monitor_id)
        definition = apply_update(snap.monitor.definition, body)
        updated = store.update(org, snap.monitor.id, definition)
        if updated is None:  # deleted meanwhile
            raise MonitorNotFound(snap.monitor.id)
        return updated.to_api()

    @router.delete("/api/v1/monitor/{monitor_id}")
    def delete(monitor_id: str, request: Request) -> dict[str, int]:
        org, snap = owned(request, monitor_id)
        if not store.delete(org, snap.monitor.id):
            raise MonitorNotFound(snap.monitor.id)
        return {"deleted_monitor_id": snap.monitor.id}

    @router.post("/api/v1/monitor/{monitor_id}/validate")
    def validate_existing(
        monitor_id: str, request: Request, body: Annotated[Any, Body()] = None
    ) -> dict[str, Any]:
        owned(request, monitor_id)
        validate_definition(body)
        return {}

    return router
