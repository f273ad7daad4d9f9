"""The RAM store's internal read API (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Response

from stores.ram.store import RamStore
from stores.runtime.http import check_range, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import ARROW_STREAM, ReadRequest, raw_stream, rollup_stream
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS


def create_app(store: RamStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions)

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        check_range(req.from_, req.to)
        sids = np.array(req.sids, dtype=SID_DTYPE)
        if req.resolution == "raw":
            body = raw_stream(store.read(sids, req.from_, req.to))
        else:
            step = RESOLUTIONS[req.resolution]
            body = rollup_stream(store.read_rollups(sids, req.from_, req.to, step))
        return Response(body, media_type=ARROW_STREAM)

    return app
