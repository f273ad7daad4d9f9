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
from stores.runtime.serving import ServingGuard


def create_app(store: RocksStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions, ownership.watermarks.snapshot)

    add_point_read(app, store, ServingGuard(ownership, store.coverage))

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return {
            **asdict(store.stats),
            "shards": [layout.shard_name(d) for d in store.shards.days()],
        }

    return app
