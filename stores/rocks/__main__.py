"""``python -m stores.rocks``: run one rocks store instance until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from stores.rocks.api import create_app
from stores.rocks.settings import DEFAULT_PORT, RocksSettings
from stores.rocks.store import RocksStore
from stores.runtime import run_store
from stores.runtime.ownership import Ownership
from stores.runtime.rocks import store_path
from stores.runtime.service import Companion
from stores.sketches.rocks import RocksSketchStore


def main() -> int:
    settings = RocksSettings.load()
    store = RocksStore(
        settings.topic_points,
        store_path(settings.data_dir, "rocks", settings.instance_id),
        settings.retention_days,
        retention_check_seconds=settings.retention_check_seconds,
        fold_delay_seconds=settings.fold_delay_seconds,
        fold_check_seconds=settings.fold_check_seconds,
        staging_max_points=settings.staging_max_points,
        future_margin_seconds=settings.future_margin_seconds,
    )

    # The sketches topic, in a second consumer loop of this process on its own RocksDB
    # (stores/sketches/): same retention and completeness rules as the points.
    sketches = Companion(
        RocksSketchStore(
            settings.topic_sketches,
            store_path(settings.data_dir, RocksSketchStore.kind, settings.instance_id),
            settings.retention_days,
            retention_check_seconds=settings.retention_check_seconds,
            future_margin_seconds=settings.future_margin_seconds,
        ),
        Ownership(),
    )

    def app(ownership: Ownership) -> FastAPI:
        return create_app(store, ownership, sketches)

    return run_store(store, settings, app, DEFAULT_PORT, companions=[sketches])


if __name__ == "__main__":
    sys.exit(main())
