"""The archive's internal read API: ``POST /v1/points/read`` (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stores.archive.objectstore import ObjectStoreError
from stores.archive.reader import ArchiveReader, ReadRaced
from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import ARROW_STREAM, ReadRequest, raw_stream, rollup_stream
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS


def create_app(reader: ArchiveReader, ownership: Ownership, kind: str = "archive") -> FastAPI:
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

    return app
