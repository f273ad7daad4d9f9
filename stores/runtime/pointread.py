"""The point read API every point tier serves (docs/architecture.md, "Point read API"):
the request model and the Arrow IPC encodings of raw points and rollups, in one place so the
RAM, rocks and archive stores cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.runtime.http import check_range
from stores.runtime.serving import ServingGuard
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
        ("ts", pa.int64()),  # bucket start
        ("count", pa.int64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("last", pa.float64()),
        ("last_ts", pa.int64()),
    ]
)

RawColumns = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


class ReadRequest(BaseModel):
    """``POST /v1/points/read`` body; ``from``/``to`` inclusive Unix seconds."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sids: list[U64]
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    resolution: Literal["raw", "1m", "1h"] = "raw"
    #: the partition the sids belong to; when given, the read is refused (503) unless this
    #: instance serves it (stores/runtime/serving.py)
    partition: Annotated[int, Field(ge=0, lt=2**31)] | None = None


def _stream(schema: pa.Schema, arrays: list[npt.NDArray[np.generic]]) -> bytes:
    batch = pa.record_batch([pa.array(a) for a in arrays], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def raw_stream(cols: RawColumns) -> bytes:
    """Raw points (sid, ts, value) as one Arrow IPC record batch with :data:`RAW_SCHEMA`."""
    return _stream(RAW_SCHEMA, list(cols))


def rollup_stream(r: Rollups) -> bytes:
    """Rollups as one Arrow IPC record batch with :data:`ROLLUP_SCHEMA`."""
    return _stream(
        ROLLUP_SCHEMA, [r.sid, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.last_ts]
    )


Sids = npt.NDArray[np.uint64]


class PointTier(Protocol):
    """What a point tier's store offers the read API."""

    kind: str

    def read_raw(self, sids: Sids, start: int, end: int) -> RawColumns: ...

    def read_rollups(self, sids: Sids, start: int, end: int, step: int) -> Rollups: ...


def add_point_read(app: FastAPI, store: PointTier, guard: ServingGuard) -> None:
    """Mount ``POST /v1/points/read`` for a store that answers reads directly (RAM, rocks;
    the archive adds object-store failure handling of its own)."""

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        check_range(req.from_, req.to)
        sids = np.array(req.sids, dtype=SID_DTYPE)
        with guard.serving(req.partition):
            if req.resolution == "raw":
                body = raw_stream(store.read_raw(sids, req.from_, req.to))
            else:
                step = RESOLUTIONS[req.resolution]
                body = rollup_stream(store.read_rollups(sids, req.from_, req.to, step))
        return Response(body, media_type=ARROW_STREAM)
