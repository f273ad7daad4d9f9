"""The sketch read API of the sketch tiers: ``POST /v1/sketches/read`` (docs/architecture.md).

Body ``{"sids": [u64...], "from": s, "to": s, "resolution": "raw"|"1m"|"1h", "partition":
p, "step": s}`` (inclusive Unix seconds; ``resolution`` defaults to ``raw``). The answer
(``application/octet-stream``) is one sketch batch in the sketch encoding
(:func:`strata.sketch_codec.encode_batch`, docs/formats.md): one row per (sid, bucket)
for the buckets whose start lies in ``[from, to]``, each the merge of every sketch of that
sid in ``[bucket, bucket + step)`` (step 1 s for ``raw``, so a row per stored timestamp),
sorted by (sid, bucket). The same contract as the point read API's rollups: the query
planner asks step-aligned ranges only, and stitching tiers never counts a value twice.

``step`` (optional, a multiple of the resolution's step) merges those rows further, per
(sid, ``step`` bucket) labelled with the bucket start (which may precede ``from``: only the
sketches inside ``[from, to]`` are in it). The query asks for its output interval, so a day
at 5-minute buckets travels as 288 sketches per series instead of 1 440; merging is exact
and associative, so the query merges such partial buckets of neighbouring tiers as before.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.runtime.http import BadRequest, check_range
from stores.runtime.pointread import U64, Timestamp
from stores.runtime.serving import ServingGuard
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS
from strata.sketch import SketchBatch
from strata.sketch_codec import encode_batch

SKETCH_MEDIA_TYPE = "application/octet-stream"
Sids = npt.NDArray[np.uint64]


class SketchReadRequest(BaseModel):
    """``POST /v1/sketches/read`` body; ``from``/``to`` inclusive Unix seconds."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sids: list[U64]
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    resolution: Literal["raw", "1m", "1h"] = "raw"
    #: refused (503) unless this instance serves the partition (stores/runtime/serving.py)
    partition: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    #: merge the answer further into buckets of this many seconds (see the module docstring)
    step: Annotated[int, Field(gt=0, le=2**31)] | None = None


class SketchTier(Protocol):
    """What a sketch tier's store offers the read API."""

    kind: str

    def read_sketches(self, sids: Sids, start: int, end: int, step: int) -> SketchBatch:
        """Rows per (sid, ``step`` bucket) for the buckets of ``sids`` whose start is in
        ``[start, end]``, sorted by (sid, bucket); ``step`` 1 is the stored rows."""
        ...


def bucket_span(start: int, end: int, step: int) -> tuple[int, int]:
    """The raw range a bucket read needs: from the first bucket starting at or after
    ``start`` to the end of the last bucket starting at or before ``end``."""
    first = -(-start // step) * step
    last = end - end % step
    return first, last + step - 1


def add_sketch_read(app: FastAPI, store: SketchTier, guard: ServingGuard) -> None:
    """Mount ``POST /v1/sketches/read`` on a store process's app."""

    @app.post("/v1/sketches/read")
    def read(req: SketchReadRequest) -> Response:
        check_range(req.from_, req.to)
        step = RESOLUTIONS[req.resolution]
        if req.step is not None and req.step % step:
            raise BadRequest(
                f"'step' ({req.step}) is not a multiple of {step} s ({req.resolution})"
            )
        sids = np.unique(np.array(req.sids, dtype=SID_DTYPE))
        with guard.serving(req.partition):
            batch = store.read_sketches(sids, req.from_, req.to, step)
        if req.step is not None and req.step > step:
            batch = batch.rollup(req.step)
        return Response(encode_batch(batch), media_type=SKETCH_MEDIA_TYPE)
