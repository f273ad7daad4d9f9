"""The rocks store's internal read API (docs/architecture.md, "Point read API")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI

from stores.rocks import layout
from stores.rocks.store import RocksStore
from stores.runtime.http import make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import add_point_read
from stores.runtime.service import Companion
from stores.runtime.serving import ServingGuard
from stores.sketches.read import add_sketch_read
from stores.sketches.rocks import RocksSketchStore


def create_app(
    store: RocksStore, ownership: Ownership, sketches: Companion | None = None
) -> FastAPI:
    """The read API; with ``sketches`` (a :class:`RocksSketchStore` and its ownership)
    also ``POST /v1/sketches/read`` and ``GET /v1/sketches/stats``."""
    app = make_app(store.kind, ownership.partitions, ownership.watermarks.snapshot)

    add_point_read(app, store, ServingGuard(ownership, store.coverage))

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return {
            **asdict(store.stats),
            "shards": [layout.shard_name(d) for d in store.shards.days()],
        }

    if sketches is not None:
        sk = sketches.store
        assert isinstance(sk, RocksSketchStore)
        add_sketch_read(app, sk, ServingGuard(sketches.ownership, sk.coverage))

        @app.get("/v1/sketches/stats")
        def sketch_stats() -> dict[str, Any]:
            return {**asdict(sk.stats), "shards": [layout.shard_name(d) for d in sk.shards.days()]}

    return app
