"""The RAM store's internal read API (docs/architecture.md)."""

from __future__ import annotations

from fastapi import FastAPI

from stores.ram.store import RamStore
from stores.runtime.http import make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import add_point_read
from stores.runtime.serving import ServingGuard


def create_app(store: RamStore, ownership: Ownership) -> FastAPI:
    app = make_app(store.kind, ownership.partitions, ownership.watermarks.snapshot)
    add_point_read(app, store, ServingGuard(ownership, store.coverage))
    return app
