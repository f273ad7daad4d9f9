"""The RAM store's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.ram.blocks import Columns
from stores.ram.store import RamStore
from stores.runtime.http import check_range, make_app
from stores.runtime.ownership import Ownership
from strata.model import SID_DTYPE

ARROW_STREAM = "application/vnd.apache.arrow.stream"
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
SCHEMA = pa.schema([("sid", pa.uint64()), ("ts", pa.int64()), ("value", pa.float64())])


class ReadRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sids: list[U64]
    from_: int = Field(alias="from")
    to: int


def to_arrow_stream(cols: Columns) -> bytes:
    """Columns as an Arrow IPC stream with :data:`SCHEMA` (one record batch)."""
    batch = pa.record_batch([pa.array(c) for c in cols], schema=SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def create_app(store: RamStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions)

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        check_range(req.from_, req.to)
        sids = np.array(req.sids, dtype=SID_DTYPE)
        return Response(
            to_arrow_stream(store.read(sids, req.from_, req.to)), media_type=ARROW_STREAM
        )

    return app
