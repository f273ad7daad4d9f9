"""The rocks store's internal read API (docs/architecture.md, "Point read API")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.rocks import layout
from stores.rocks.store import Columns, RocksStore
from stores.runtime.http import check_range, make_app
from stores.runtime.ownership import Ownership
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS, Rollups

ARROW_STREAM = "application/vnd.apache.arrow.stream"
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
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
    from_: int = Field(alias="from")
    to: int
    resolution: Literal["raw", "1m", "1h"] = "raw"


def _stream(schema: pa.Schema, arrays: list[Any]) -> bytes:
    batch = pa.record_batch([pa.array(a) for a in arrays], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def raw_stream(cols: Columns) -> bytes:
    return _stream(RAW_SCHEMA, list(cols))


def rollup_stream(r: Rollups) -> bytes:
    return _stream(
        ROLLUP_SCHEMA, [r.sid, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.last_ts]
    )


def create_app(store: RocksStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions)

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        check_range(req.from_, req.to)
        sids = np.array(req.sids, dtype=SID_DTYPE)
        if req.resolution == "raw":
            body = raw_stream(store.read_raw(sids, req.from_, req.to))
        else:
            step = RESOLUTIONS[req.resolution]
            body = rollup_stream(store.read_rollups(sids, req.from_, req.to, step))
        return Response(body, media_type=ARROW_STREAM)

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return {
            **asdict(store.stats),
            "shards": [layout.shard_name(d) for d in store.shards.days()],
        }

    return app
