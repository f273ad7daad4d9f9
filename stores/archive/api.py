"""The archive's internal read API: ``POST /v1/points/read`` (docs/architecture.md) and,
with the sketch tier, ``POST /v1/sketches/read`` (stores/sketches/read.py)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stores.archive.objectstore import ObjectStoreError
from stores.archive.reader import ArchiveReader, ReadRaced
from stores.archive.sketches import ArchiveSketchReader
from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import ARROW_STREAM, ReadRequest, raw_stream, rollup_stream
from stores.runtime.serving import ServingGuard
from stores.sketches.read import add_sketch_read
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS


def create_app(
    reader: ArchiveReader,
    ownership: Ownership,
    kind: str = "archive",
    sketches: tuple[ArchiveSketchReader, ServingGuard] | None = None,
) -> FastAPI:
    """The read API; with ``sketches`` (the sketch reader and the guard of the sketch
    loop's partitions) also ``POST /v1/sketches/read``, the other sketch tiers' contract."""
    app = make_app(kind, ownership.partitions, ownership.watermarks.snapshot)

    # The point read API answers 400 {"errors": [...]} (architecture.md), each naming a field.
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

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        if req.from_ > req.to:
            raise BadRequest(f"from: {req.from_} is after to ({req.to})")
        sids = np.unique(np.array(req.sids, dtype=SID_DTYPE))
        try:
            if req.resolution == "raw":
                body = raw_stream(reader.read_raw(sids, req.from_, req.to))
            else:
                step = RESOLUTIONS[req.resolution]
                body = rollup_stream(reader.read_rollups(sids, req.from_, req.to, step))
        except (ObjectStoreError, ReadRaced) as exc:
            # The planner treats 5xx as "tier down" and falls back to another tier.
            return JSONResponse({"errors": [f"archive unavailable: {exc}"]}, status_code=503)
        return Response(body, media_type=ARROW_STREAM)

    if sketches is not None:
        # The shared sketch route does not know the object store: its failures answer 503
        # here, as the point route's, so the planner falls back to another tier.
        @app.exception_handler(ObjectStoreError)
        @app.exception_handler(ReadRaced)
        async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"errors": [f"archive unavailable: {exc}"]}, status_code=503)

        add_sketch_read(app, sketches[0], sketches[1])

    return app
