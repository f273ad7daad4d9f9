"""The RAM store's internal read API (docs/architecture.md)."""

from __future__ import annotations

from fastapi import FastAPI

from stores.ram.store import RamStore
from stores.runtime.http import make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import add_point_read
from stores.runtime.service import Companion
from stores.runtime.serving import ServingGuard
from stores.sketches.ram import RamSketchStore
from stores.sketches.read import add_sketch_read


def create_app(store: RamStore, ownership: Ownership, sketches: Companion | None = None) -> FastAPI:
    """The read API; with ``sketches`` (a :class:`RamSketchStore` and its ownership) also
    ``POST /v1/sketches/read``."""
    app = make_app(store.kind, ownership.partitions, ownership.watermarks.snapshot)
    add_point_read(app, store, ServingGuard(ownership, store.coverage))
    if sketches is not None:
        assert isinstance(sketches.store, RamSketchStore)
        guard = ServingGuard(sketches.ownership, sketches.store.coverage)
        add_sketch_read(app, sketches.store, guard)
    return app
