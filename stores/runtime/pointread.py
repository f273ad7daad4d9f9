"""The point read API every point tier serves (docs/architecture.md, "Point read API"):
the request model and the Arrow IPC encodings of raw points and rollups, in one place so the
RAM, rocks and archive stores cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from strata.rollup import Rollups

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
