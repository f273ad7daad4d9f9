"""The archive's internal read API: ``POST /v1/points/read`` (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stores.archive.objectstore import ObjectStoreError
from stores.archive.parquet_io import rollups_arrays
from stores.archive.reader import ArchiveReader, Columns, ReadRaced
from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS, Rollups

ARROW_STREAM = "application/vnd.apache.arrow.stream"
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
# |ts| < 2**62: far beyond any real time, and bucket arithmetic (rounding to a step,
# bucket end = start + step - 1) can never leave int64.
TS_LIMIT = 2**62
Timestamp = Annotated[int, Field(gt=-TS_LIMIT, lt=TS_LIMIT)]
RAW_SCHEMA = pa.schema([("sid", pa.uint64()), ("ts", pa.int64()), ("value", pa.float64())])
ROLLUP_SCHEMA = pa.schema(
    [
        ("sid", pa.uint64()),
        ("ts", pa.int64()),
        ("count", pa.int64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("last", pa.float64()),
        ("last_ts", pa.int64()),
    ]
)


class ReadRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sids: list[U64]
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    resolution: Literal["raw", "1m", "1h"] = "raw"


def _stream(schema: pa.Schema, arrays: list[pa.Array]) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch(arrays, schema=schema))
    return bytes(sink.getvalue().to_pybytes())


def raw_stream(cols: Columns) -> bytes:
    return _stream(RAW_SCHEMA, [pa.array(c) for c in cols])


def rollup_stream(r: Rollups) -> bytes:
    return _stream(ROLLUP_SCHEMA, rollups_arrays(r))


def create_app(reader: ArchiveReader, ownership: Ownership, kind: str = "archive") -> FastAPI:
    app = make_app(kind, ownership.partitions)

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
