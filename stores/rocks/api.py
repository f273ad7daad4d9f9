"""The rocks store's internal read API (docs/architecture.md, "Point read API")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import FastAPI, Response

from stores.rocks import layout
from stores.rocks.store import RocksStore
from stores.runtime.http import check_range, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import ARROW_STREAM, ReadRequest, raw_stream, rollup_stream
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS


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
