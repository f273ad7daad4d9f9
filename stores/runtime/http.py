"""HTTP helpers shared by the stores' internal read APIs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stores.runtime.serving import NotServing
from stores.runtime.watermarks import Watermark
from strata.observability import instrument, process_sources


class BadRequest(ValueError):
    """A request the API cannot answer; the message names the problem (HTTP 400)."""


def make_app(
    kind: str,
    partitions: Callable[[], list[int]],
    watermarks: Callable[[], dict[int, Watermark]] | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """A FastAPI app with ``GET /health`` (partitions, and heartbeat watermarks with their
    lag when given), ``GET /metrics`` (requests, and the consumer loops of this process)
    and 400 answers for bad input."""
    app = FastAPI(title=f"strata {kind} store", docs_url=None, redoc_url=None)
    instrument(app, "strata_store", labels={"kind": kind}).register(process_sources())

    # async: answered on the event loop, never queued behind reads for a worker thread
    # (sync handlers share one pool of 40 threads, and slow reads can hold all of them).
    # It only takes the short dict-copy locks of the ownership and the watermarks.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "kind": kind, "partitions": partitions()}
        if watermarks is not None:
            now_ms = int(clock() * 1000)
            out["watermarks"] = {
                str(p): {
                    "complete_through_ms": m.marker_ms,
                    "lag_seconds": round(max(0, now_ms - m.marker_ms) / 1000, 3),
                }
                for p, m in sorted(watermarks().items())
            }
        return out

    @app.exception_handler(NotServing)
    async def not_serving(_request: Request, exc: NotServing) -> JSONResponse:
        return JSONResponse({"errors": [str(exc)]}, status_code=503)

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"errors": [str(exc)]}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return JSONResponse({"errors": problems}, status_code=400)

    return app


#: bound on |from| and |to| (Unix seconds): far beyond any real time, yet far enough inside
#: int64 that arithmetic on them (bucket ends, margins) cannot overflow numpy's int64
TIME_LIMIT = 2**62


def check_range(start: int, end: int) -> None:
    """Raise :class:`BadRequest` naming the field unless ``|start|, |end| < 2**62`` and
    ``start <= end``."""
    for name, value in (("from", start), ("to", end)):
        if not -TIME_LIMIT < value < TIME_LIMIT:
            raise BadRequest(f"'{name}' ({value}) is outside (-2**62, 2**62) seconds")
    if start > end:
        raise BadRequest(f"'from' ({start}) is after 'to' ({end})")
