"""The RAM store's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.ram.blocks import Columns
from stores.ram.store import RamStore
from stores.runtime.http import check_range, make_app
from stores.runtime.ownership import Ownership
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS, Rollups

ARROW_STREAM = "application/vnd.apache.arrow.stream"
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
SCHEMA = pa.schema([("sid", pa.uint64()), ("ts", pa.int64()), ("value", pa.float64())])
# The rollup shape every point tier answers for 1m/1h reads (docs/architecture.md).
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
    from_: int = Field(alias="from")
    to: int
    resolution: Literal["raw", "1m", "1h"] = "raw"


def _stream(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def to_arrow_stream(cols: Columns) -> bytes:
    """Columns as an Arrow IPC stream with :data:`SCHEMA` (one record batch)."""
    return _stream(pa.record_batch([pa.array(c) for c in cols], schema=SCHEMA))


def rollups_to_arrow_stream(r: Rollups) -> bytes:
    """Rollups as an Arrow IPC stream with :data:`ROLLUP_SCHEMA` (``ts`` = bucket start)."""
    cols = (r.sid, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.last_ts)
    return _stream(pa.record_batch([pa.array(c) for c in cols], schema=ROLLUP_SCHEMA))


def create_app(store: RamStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions)

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        check_range(req.from_, req.to)
        sids = np.array(req.sids, dtype=SID_DTYPE)
        if req.resolution == "raw":
            body = to_arrow_stream(store.read(sids, req.from_, req.to))
        else:
            step = RESOLUTIONS[req.resolution]
            body = rollups_to_arrow_stream(store.read_rollups(sids, req.from_, req.to, step))
        return Response(body, media_type=ARROW_STREAM)

    return app
